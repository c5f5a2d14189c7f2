//! The `runway` command-line client.

use crate::harness::Server;
use serde_json::Value;
use std::process::Output;

fn run(server: &Server, args: &[&str]) -> Output {
    server.runway().args(args).output().expect("run runway")
}

#[test]
fn deploy_list_describe_and_delete_with_the_runway_cli() {
    let server = Server::api_only();
    let out = server.runway_out(&[
        "deploy",
        "--image",
        "127.0.0.1:5000/web:v1",
        "--name",
        "webapp",
        "--port",
        "3000",
        "--env",
        "MODE=prod",
        "--no-wait",
    ]);
    assert!(out.contains("Status: OPERATION_IN_PROGRESS"), "{out}");
    assert!(out.contains(".runway.localhost"), "{out}");

    let table = server.runway_out(&["services", "ls"]);
    let mut lines = table.lines();
    assert!(lines.next().unwrap().starts_with("NAME"), "{table}");
    assert!(lines.next().unwrap().starts_with("webapp "), "{table}");

    // A second deploy of the same name updates the service and keeps its port and variables.
    server.runway_out(&[
        "deploy",
        "--image",
        "127.0.0.1:5000/web:v2",
        "--name",
        "webapp",
        "--env",
        "EXTRA=1",
        "--no-wait",
    ]);
    let described: Value = serde_json::from_str(
        &server.runway_out(&["services", "describe", "webapp", "--output", "json"]),
    )
    .unwrap();
    let image = &described["SourceConfiguration"]["ImageRepository"];
    assert_eq!(image["ImageIdentifier"], "127.0.0.1:5000/web:v2");
    assert_eq!(image["ImageConfiguration"]["Port"], "3000");
    assert_eq!(
        image["ImageConfiguration"]["RuntimeEnvironmentVariables"]["MODE"],
        "prod"
    );
    assert_eq!(
        image["ImageConfiguration"]["RuntimeEnvironmentVariables"]["EXTRA"],
        "1"
    );
    let human = server.runway_out(&["services", "describe", "webapp"]);
    assert!(human.contains("127.0.0.1:5000/web:v2"), "{human}");

    let ops: Value =
        serde_json::from_str(&server.runway_out(&["operations", "ls", "webapp", "-o", "json"]))
            .unwrap();
    let kinds: Vec<&str> = ops
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["Type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["UPDATE_SERVICE", "CREATE_SERVICE"]);
    let table = server.runway_out(&["operations", "ls", "webapp"]);
    assert!(
        table.contains("UPDATE_SERVICE") && table.contains("PENDING"),
        "{table}"
    );

    let out = server.runway_out(&["services", "delete", "webapp"]);
    assert!(out.contains("Deleting webapp"), "{out}");

    let bad = run(&server, &["services", "describe", "nope"]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no service named nope"));
    let bad = run(
        &server,
        &["deploy", "--image", "Not An Image", "--name", "webapp2"],
    );
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("InvalidRequestException"),
        "{bad:?}"
    );
}

#[test]
fn the_cli_explains_an_unreachable_server_and_a_wrong_key() {
    let server = Server::api_only();
    let out = server
        .runway()
        .args(["services", "ls", "--endpoint-url", "http://127.0.0.1:9"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("cannot reach the runway API"),
        "{out:?}"
    );

    let text = std::fs::read_to_string(server.credentials()).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("aws_secret_access_key"))
        .unwrap();
    std::fs::write(
        server.credentials(),
        text.replace(line, "aws_secret_access_key = wrong"),
    )
    .unwrap();
    let out = run(&server, &["services", "ls"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refused the access key") && stderr.contains("InvalidSignatureException"),
        "{stderr}"
    );
}

#[test]
fn runway_deploy_waits_and_prints_the_url() {
    let server = Server::start();
    crate::deploy::push_testapp(&server, "cli-app:v1");
    let image = format!("{}/cli-app:v1", server.registry_host());
    let out = server.runway_out(&[
        "deploy",
        "--image",
        &image,
        "--name",
        "cli-app",
        "--env",
        "GREETING=from the cli",
    ]);
    assert!(
        out.contains("Health check is successful"),
        "the deployment's events are shown: {out}"
    );
    let url = out
        .lines()
        .find_map(|l| l.split_once(" is running at "))
        .map(|(_, u)| u.trim().to_string());
    let url = url.unwrap_or_else(|| panic!("no URL in {out}"));
    let host = url
        .trim_start_matches("https://")
        .split(':')
        .next()
        .unwrap();
    let (status, body) = crate::deploy::get(&server, host, "/env");
    assert_eq!(status, 200);
    assert!(body.contains("from the cli"), "{body}");
}
