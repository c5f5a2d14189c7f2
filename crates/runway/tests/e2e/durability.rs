//! State survives restarts and crashes; the data directory is the server's alone.

use crate::harness::Server;
use serde_json::{Value, json};

fn snapshot(server: &Server) -> Vec<Value> {
    let services = server.aws(&["list-services"]).ok();
    let mut out = vec![services.clone()];
    for s in services["ServiceSummaryList"].as_array().unwrap() {
        let arn = s["ServiceArn"].as_str().unwrap();
        out.push(server.aws(&["describe-service", "--service-arn", arn]).ok());
        out.push(server.aws(&["list-operations", "--service-arn", arn]).ok());
        out.push(
            server
                .aws(&["list-tags-for-resource", "--resource-arn", arn])
                .ok(),
        );
    }
    out.push(server.aws(&["list-auto-scaling-configurations"]).ok());
    out.push(server.aws(&["list-connections"]).ok());
    out.push(server.aws(&["list-observability-configurations"]).ok());
    out
}

#[test]
fn everything_survives_a_restart_and_a_kill_9() {
    let mut server = Server::api_only();
    let credentials = std::fs::read_to_string(server.credentials()).unwrap();
    let service = json!({
        "ServiceName": "durable",
        "SourceConfiguration": { "ImageRepository": { "ImageIdentifier": "ghcr.io/acme/app:2", "ImageRepositoryType": "ECR" } },
        "Tags": [{ "Key": "owner", "Value": "ops" }]
    });
    let arn = server
        .aws(&["create-service", "--cli-input-json", &service.to_string()])
        .ok()["Service"]["ServiceArn"]
        .as_str()
        .unwrap()
        .to_string();
    server
        .aws(&[
            "update-service",
            "--service-arn",
            &arn,
            "--health-check-configuration",
            "Protocol=HTTP,Path=/healthz",
        ])
        .ok();
    server
        .aws(&[
            "create-auto-scaling-configuration",
            "--auto-scaling-configuration-name",
            "keep-me",
            "--max-size",
            "3",
        ])
        .ok();
    server
        .aws(&[
            "create-connection",
            "--connection-name",
            "keep-conn",
            "--provider-type",
            "GITHUB",
        ])
        .ok();
    server
        .aws(&[
            "create-observability-configuration",
            "--observability-configuration-name",
            "keep-obs",
        ])
        .ok();
    let before = snapshot(&server);

    server.restart();
    assert_eq!(
        snapshot(&server),
        before,
        "a graceful restart changes nothing"
    );
    assert_eq!(
        std::fs::read_to_string(server.credentials()).unwrap(),
        credentials,
        "the admin key is kept"
    );

    // A write, then SIGKILL right after it is acknowledged: it must be there.
    server
        .aws(&["start-deployment", "--service-arn", &arn])
        .ok();
    let before = snapshot(&server);
    server.crash_and_restart();
    assert_eq!(
        snapshot(&server),
        before,
        "an acknowledged write survives kill -9"
    );
    let ops = server.aws(&["list-operations", "--service-arn", &arn]).ok();
    assert_eq!(ops["OperationSummaryList"].as_array().unwrap().len(), 3);
}

#[test]
fn the_data_directory_is_private_and_locked() {
    use std::os::unix::fs::PermissionsExt;
    let server = Server::api_only();
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&server.credentials()), 0o600);
    assert_eq!(mode(&server.data_dir().join("master.key")), 0o600);
    // Only root may read it; with instances in user namespaces, their root's group may
    // pass through it (search only) to the layers made for it (see the README).
    let dir = std::fs::metadata(server.data_dir()).unwrap();
    match mode(server.data_dir()) {
        0o700 => {}
        0o710 => assert_eq!(std::os::unix::fs::MetadataExt::gid(&dir), 1_000_000_000),
        other => panic!("the data directory's mode is {other:o}"),
    }
    let secret = std::fs::read_to_string(server.credentials()).unwrap();
    let secret = secret
        .lines()
        .find_map(|l| l.strip_prefix("aws_secret_access_key = "))
        .unwrap();
    let db = std::fs::read(server.data_dir().join("state.db")).unwrap();
    let wal = std::fs::read(server.data_dir().join("state.db-wal")).unwrap_or_default();
    for bytes in [&db, &wal] {
        assert!(
            !bytes.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "the secret is stored sealed"
        );
    }

    let second = server
        .runway()
        .args([
            "server",
            "--api-listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(server.data_dir())
        .output()
        .unwrap();
    assert!(!second.status.success());
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("another runway server"),
        "{second:?}"
    );
}
