//! Builds that fetch their dependencies from the public package registries, as App
//! Runner's samples do, through whatever TLS-inspecting proxy the host trusts (builds
//! trust the host's certificate authorities): a Flask app's `requirements.txt` from PyPI,
//! deployed with `runway deploy --source`, and an Express app's `package-lock.json` from
//! npm, deployed through the App Runner API from a git repository; and a Node.js app whose
//! native dependency (bcrypt) node-gyp compiles in the build.

use crate::deploy::{get, wait_status_within};
use crate::harness::{RawRequest, Server, assert_ok};
use crate::source::{copy_dir, git, import_base};
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

    // Flask from PyPI: `pip3 install -r requirements.txt` in apprunner.yaml. What git
    // ignores stays home: the upload holds the four files of the app.
    let flask = work.path().join("flask");
    copy_dir(&apps.join("flask"), &flask);
    std::fs::write(flask.join(".gitignore"), "node_modules/\n.env\n").unwrap();
    std::fs::write(flask.join(".env"), "SECRET=do-not-upload\n").unwrap();
    std::fs::create_dir_all(flask.join("node_modules/big")).unwrap();
    std::fs::write(flask.join("node_modules/big/blob.bin"), vec![7u8; 1 << 20]).unwrap();
    // An invalid service name is refused before anything is uploaded.
    let out = server
        .runway()
        .args(["deploy", "--name", "no spaces!", "--source"])
        .arg(&flask)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).contains("Uploading"));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ServiceName"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = server.deploy_source(&flask);
    let stdout = assert_ok(&out, "runway deploy --source (Flask)");
    assert!(
        stdout.contains("Successfully installed") && stdout.contains("Flask-3.0.3"),
        "pip installed Flask from PyPI:\n{stdout}"
    );
    assert!(
        stdout.contains("Trusting the image's certificate authorities and the host's"),
        "{stdout}"
    );
    assert!(stdout.contains(": 4 files,"), "{stdout}");
    // URLs are printed whole: scheme, host and the HTTPS port.
    let port = server.https.rsplit(':').next().unwrap().to_string();
    let out = server.runway().args(["services", "ls"]).output().unwrap();
    let listed = assert_ok(&out, "runway services ls");
    assert!(
        listed.contains("https://flask-") && listed.contains(&format!(":{port}/")),
        "{listed}"
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

    // A build that fails after 3 s: its log is printed once, and the operation's times
    // and events are those of its end, not its start.
    let slow = work.path().join("slow");
    copy_dir(&apps.join("flask"), &slow);
    std::fs::write(
        slow.join("apprunner.yaml"),
        "version: 1.0\nruntime: python3\nbuild:\n  commands:\n    build:\n      - echo $((6*7))-marker; sleep 3; exit 1\nrun:\n  command: python3 app.py\n",
    )
    .unwrap();
    let out = server.deploy_source(&slow);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert_eq!(
        stdout.matches("42-marker").count(),
        1,
        "the command's output, once:\n{stdout}"
    );
    let services = server.aws(&["list-services"]).ok();
    let arn = services["ServiceSummaryList"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["ServiceName"] == "slow")
        .expect("the slow service")["ServiceArn"]
        .as_str()
        .unwrap()
        .to_string();
    // Signed by hand: the API's own epoch seconds, not the CLI's formatted times.
    let body = serde_json::json!({ "ServiceArn": arn }).to_string();
    let (status, ops) = server.raw(RawRequest {
        operation: "ListOperations",
        body: &body,
        ..Default::default()
    });
    assert_eq!(status, 200, "{ops}");
    let op = &ops["OperationSummaryList"][0];
    let seconds = |v: &serde_json::Value| v.as_f64().expect("a time in seconds");
    let took = seconds(&op["EndedAt"]) - seconds(&op["StartedAt"]);
    assert!(
        took >= 3.0,
        "the failed build took {took} s by its times: {op}"
    );
}

/// A Node.js app with a native dependency deploys from source: `npm ci` of bcrypt, whose
/// C++ node-gyp compiles in the build (App Runner's Node.js runtimes have the compilers;
/// the prebuilt binaries come from GitHub, out of reach on many machines). On nodejs14,
/// whose npm 6 brings node-gyp 5: Python 3.11 and the image's own Node.js headers.
#[test]
fn a_native_node_module_is_compiled_in_the_build_and_the_app_answers() {
    let server = Server::start_with(&["--runtime-image", "nodejs14=runtimes/nodejs14:latest"]);
    import_base(&server, "nodejs14");
    let apps = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/apps");
    let work = tempfile::tempdir().unwrap();
    let app = work.path().join("bcrypt");
    copy_dir(&apps.join("bcrypt"), &app);
    let out = server.deploy_source(&app);
    let stdout = assert_ok(&out, "runway deploy --source (bcrypt)");
    assert!(
        stdout.contains("CXX(target) Release/obj.target/bcrypt_lib/src/bcrypt.o")
            && stdout.contains("bcrypt_lib.node"),
        "node-gyp compiled bcrypt in the build:\n{stdout}"
    );
    let services = server.aws(&["list-services"]).ok();
    let host = services["ServiceSummaryList"][0]["ServiceUrl"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, body) = get(&server, &host, "/");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.starts_with("bcrypt 5.1.1 on Node.js 14.") && body.ends_with(": ok\n"),
        "{body}"
    );
}
