//! runway's registry through `runway server`: skopeo pushes into it, the `runway registry`
//! commands list and collect it, and a push to a deployed tag records a deployment.

use crate::harness::{Server, assert_ok};
use runway_registry::test_util::build_layout;
use serde_json::json;
use std::process::Command;
use std::time::{Duration, Instant};

fn skopeo_push(server: &Server, layout: &std::path::Path, tag: &str, target: &str) {
    let out = Command::new("skopeo")
        .args([
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            "--dest-creds",
            &server.creds(),
        ])
        .arg(format!("oci:{}:{tag}", layout.display()))
        .arg(format!("docker://{}/{target}", server.registry_host()))
        .output()
        .expect("run skopeo (apt-get install skopeo)");
    assert_ok(&out, "skopeo copy");
}

fn deployments(server: &Server, arn: &str) -> usize {
    let ops = server.aws(&["list-operations", "--service-arn", arn]).ok();
    ops["OperationSummaryList"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["Type"] == "START_DEPLOYMENT")
        .count()
}

#[test]
fn pushes_land_in_the_registry_and_trigger_auto_deployments() {
    let server = Server::start();
    let images = tempfile::tempdir().unwrap();
    let (one, two) = (images.path().join("one"), images.path().join("two"));
    build_layout(&one, "v1", 2, 4096).unwrap();
    build_layout(&two, "v1", 1, 4096).unwrap();

    skopeo_push(&server, &one, "v1", "team/hello:v1");
    assert_eq!(server.runway_out(&["registry", "ls"]).trim(), "team/hello");
    assert_eq!(
        server
            .runway_out(&["registry", "tags", "team/hello"])
            .trim(),
        "v1"
    );

    // The service runs the test app; the random images above are not runnable.
    crate::deploy::push_testapp(&server, "team/hello:v1");
    let image = format!("{}/team/hello:v1", server.registry_host());
    let service = json!({
        "ServiceName": "pushed",
        "SourceConfiguration": {
            "ImageRepository": { "ImageIdentifier": image, "ImageRepositoryType": "ECR" },
            "AutoDeploymentsEnabled": true
        }
    });
    let arn = server
        .aws(&["create-service", "--cli-input-json", &service.to_string()])
        .ok()["Service"]["ServiceArn"]
        .as_str()
        .unwrap()
        .to_string();
    crate::deploy::wait_status(&server, &arn, "RUNNING");
    assert_eq!(deployments(&server, &arn), 0);

    // Another tag of the repository deploys nothing; a new image on the service's tag does.
    skopeo_push(&server, &two, "v1", "team/hello:v2");
    skopeo_push(&server, &two, "v1", "team/hello:v1");
    let deadline = Instant::now() + Duration::from_secs(20);
    while deployments(&server, &arn) == 0 {
        assert!(
            Instant::now() < deadline,
            "no deployment was recorded for the push"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(deployments(&server, &arn), 1);
    // The pushed image is not runnable: the deployment is rolled back and the service runs on.
    crate::deploy::wait_status(&server, &arn, "RUNNING");

    let report = server.runway_out(&["registry", "gc", "--output", "json"]);
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert!(
        report["blobs_referenced"].as_u64().unwrap() >= 3,
        "{report}"
    );

    // Without the access key the registry answers 401 and says how to authenticate.
    let out = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %header{www-authenticate}",
        ])
        .arg(format!("{}/v2/team/hello/tags/list", server.registry))
        .output()
        .unwrap();
    let answer = String::from_utf8_lossy(&out.stdout);
    assert!(answer.starts_with("401 Bearer realm="), "{answer}");
}
