//! Builds that fetch their dependencies from the public package registries, as App
//! Runner's samples do, through whatever TLS-inspecting proxy the host trusts (builds
//! trust the host's certificate authorities): a Flask app's `requirements.txt` from PyPI,
//! deployed with `runway deploy --source`, and an Express app's `package-lock.json` from
//! npm, deployed through the App Runner API from a git repository.

use crate::deploy::{get, wait_status_within};
use crate::harness::Server;
use crate::source::{assert_ok, copy_dir, git, import_base};
use std::path::Path;
use std::time::Duration;

#[test]
fn builds_install_packages_from_pypi_and_npm_and_the_apps_answer() {
    let server = Server::start_with(&[
        "--runtime-image",
        "python3=runtimes/python3:latest",
        "--runtime-image",
        "nodejs22=runtimes/nodejs22:latest",
    ]);
    import_base(&server, "python3");
    import_base(&server, "nodejs22");
    let apps = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/apps");
    let work = tempfile::tempdir().unwrap();

    // Flask from PyPI: `pip3 install -r requirements.txt` in apprunner.yaml.
    let flask = work.path().join("flask");
    copy_dir(&apps.join("flask"), &flask);
    let out = server
        .runway()
        .args(["deploy", "--source"])
        .arg(&flask)
        .output()
        .unwrap();
    let stdout = assert_ok(&out, "runway deploy --source (Flask)");
    assert!(
        stdout.contains("Successfully installed") && stdout.contains("Flask-3.0.3"),
        "pip installed Flask from PyPI:\n{stdout}"
    );
    assert!(
        stdout.contains("Trusting the image's certificate authorities and the host's"),
        "{stdout}"
    );
    let services = server.aws(&["list-services"]).ok();
    let host = services["ServiceSummaryList"][0]["ServiceUrl"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        get(&server, &host, "/"),
        (200, "Hello from Flask 3.0.3\n".into())
    );

    // Express from npm: `npm ci` of a package-lock.json, configured by API values.
    let express = work.path().join("express");
    copy_dir(&apps.join("express"), &express);
    git(&express, &["init", "-q", "-b", "main"]);
    git(&express, &["add", "."]);
    git(&express, &["commit", "-q", "-m", "express"]);
    let source = serde_json::json!({
        "CodeRepository": {
            "RepositoryUrl": format!("file://{}", express.display()),
            "SourceCodeVersion": {"Type": "BRANCH", "Value": "main"},
            "CodeConfiguration": {
                "ConfigurationSource": "API",
                "CodeConfigurationValues": {
                    "Runtime": "NODEJS_22",
                    "BuildCommand": "npm ci --omit=dev",
                    "StartCommand": "node index.js",
                    "Port": "3000"
                }
            }
        },
        "AutoDeploymentsEnabled": false
    });
    let created = server
        .aws(&[
            "create-service",
            "--service-name",
            "express",
            "--source-configuration",
            &source.to_string(),
        ])
        .ok();
    let arn = created["Service"]["ServiceArn"].as_str().unwrap();
    let service = wait_status_within(&server, arn, "RUNNING", Duration::from_secs(600));
    let host = service["ServiceUrl"].as_str().unwrap();
    assert_eq!(
        get(&server, host, "/"),
        (200, "Hello from Express 4.21.2\n".into())
    );
}
