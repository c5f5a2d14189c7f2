//! Secrets Manager, SSM Parameter Store and KMS on runway's API endpoint, driven by the
//! AWS CLI v2 and boto3; secrets resolved into a deployed app's environment; and where a
//! secret value may and may not be found afterwards.

use crate::deploy::{get, push_testapp, wait_op, wait_status};
use crate::harness::{RawRequest, Server, raw_call};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Files under `dir` (recursively, not following links) whose bytes contain `needle`.
/// grep reads them: the data directory holds instances' ephemeral storage files of
/// gigabytes (sparse), too much for a byte-by-byte search in a debug build.
fn files_holding(dir: &Path, needle: &str) -> Vec<String> {
    let out = std::process::Command::new("grep")
        .args(["-r", "-l", "-s", "-F", "-D", "skip", "--", needle])
        .arg(dir)
        .output()
        .unwrap();
    // 0: found, 1: not found, 2: an error (such as a file gone meanwhile) besides.
    assert!(out.status.code().is_some_and(|c| c <= 2), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Asserts that neither the data directory (database, logs, bundles) nor the server's
/// log holds any of `values`.
fn assert_nowhere_at_rest(server: &Server, values: &[&str]) {
    for value in values {
        let files = files_holding(server.data_dir(), value);
        assert!(
            files.is_empty(),
            "{value:?} is stored in plaintext in {files:?}"
        );
        assert!(
            !server.log().contains(value),
            "{value:?} is in the server log"
        );
    }
}

#[test]
fn secrets_parameters_and_keys_answer_the_aws_cli_and_boto3() {
    let server = Server::api_only();
    // Each scenario expects the secrets, parameters and keys it lists to be its own.
    for script in ["kms.py", "ssm.py", "secretsmanager.py"] {
        server.boto3(script);
    }
    let value = "cli-secret-0d4c7a9e";
    let sm = |args: &[&str]| server.aws_service("secretsmanager", args);
    let mut answers = Vec::new();

    let created = sm(&[
        "create-secret",
        "--name",
        "cli/db",
        "--secret-string",
        value,
        "--tags",
        "Key=team,Value=core",
    ])
    .ok();
    let arn = created["ARN"].as_str().unwrap().to_string();
    answers.push(created.clone());
    let got = sm(&["get-secret-value", "--secret-id", "cli/db"]).ok();
    assert_eq!(got["SecretString"], value);
    assert_eq!(got["VersionStages"], json!(["AWSCURRENT"]));
    let put = sm(&[
        "put-secret-value",
        "--secret-id",
        &arn,
        "--secret-string",
        &format!("{value}-2"),
    ])
    .ok();
    answers.push(put.clone());
    let described = sm(&["describe-secret", "--secret-id", "cli/db"]).ok();
    assert_eq!(
        described["VersionIdsToStages"][put["VersionId"].as_str().unwrap()],
        json!(["AWSCURRENT"])
    );
    assert_eq!(
        described["VersionIdsToStages"][created["VersionId"].as_str().unwrap()],
        json!(["AWSPREVIOUS"])
    );
    answers.push(described);
    for i in 0..4 {
        sm(&[
            "create-secret",
            "--name",
            &format!("cli/more-{i}"),
            "--secret-string",
            "x",
        ])
        .ok();
    }
    // The CLI follows NextToken itself; --page-size makes it take several pages.
    let mine = ["--filters", "Key=name,Values=cli/"];
    let listed = sm(&[&["list-secrets", "--page-size", "2"][..], &mine].concat()).ok();
    assert_eq!(
        listed["SecretList"].as_array().unwrap().len(),
        5,
        "{listed}"
    );
    let first = sm(&[&["list-secrets", "--max-items", "2"][..], &mine].concat()).ok();
    assert_eq!(first["SecretList"].as_array().unwrap().len(), 2);
    let token = first["NextToken"].as_str().unwrap();
    let rest = sm(&[&["list-secrets", "--starting-token", token][..], &mine].concat()).ok();
    assert_eq!(rest["SecretList"].as_array().unwrap().len(), 3);
    answers.extend([listed, first, rest]);
    let versions = sm(&["list-secret-version-ids", "--secret-id", "cli/db"]).ok();
    assert_eq!(versions["Versions"].as_array().unwrap().len(), 2);
    answers.push(versions);
    let (kind, message) = sm(&["get-secret-value", "--secret-id", "cli/none"]).err();
    assert_eq!(kind, "ResourceNotFoundException", "{message}");
    let (kind, _) = sm(&[
        "delete-secret",
        "--secret-id",
        "cli/db",
        "--recovery-window-in-days",
        "3",
    ])
    .err();
    assert_eq!(kind, "InvalidParameterException");
    let deleted = sm(&[
        "delete-secret",
        "--secret-id",
        "cli/db",
        "--recovery-window-in-days",
        "7",
    ])
    .ok();
    assert!(deleted["DeletionDate"].is_string(), "{deleted}");
    assert_eq!(
        sm(&["get-secret-value", "--secret-id", "cli/db"]).err().0,
        "InvalidRequestException"
    );
    answers.push(sm(&["restore-secret", "--secret-id", "cli/db"]).ok());
    sm(&["get-secret-value", "--secret-id", "cli/db"]).ok();

    let ssm = |args: &[&str]| server.aws_service("ssm", args);
    let secure = "cli-secure-6e1f2b80";
    answers.push(
        ssm(&[
            "put-parameter",
            "--name",
            "/cli/token",
            "--value",
            secure,
            "--type",
            "SecureString",
        ])
        .ok(),
    );
    let hidden = ssm(&["get-parameter", "--name", "/cli/token"]).ok();
    assert_ne!(hidden["Parameter"]["Value"], secure);
    answers.push(hidden);
    let shown = ssm(&["get-parameter", "--name", "/cli/token", "--with-decryption"]).ok();
    assert_eq!(shown["Parameter"]["Value"], secure);
    for i in 0..5 {
        ssm(&[
            "put-parameter",
            "--name",
            &format!("/cli/p{i}"),
            "--value",
            "v",
            "--type",
            "String",
        ])
        .ok();
    }
    let by_path = ssm(&[
        "get-parameters-by-path",
        "--path",
        "/cli",
        "--page-size",
        "2",
    ])
    .ok();
    assert_eq!(
        by_path["Parameters"].as_array().unwrap().len(),
        6,
        "{by_path}"
    );
    answers.push(by_path);
    let described = ssm(&[
        "describe-parameters",
        "--page-size",
        "2",
        "--parameter-filters",
        "Key=Name,Option=BeginsWith,Values=/cli/",
    ])
    .ok();
    assert_eq!(described["Parameters"].as_array().unwrap().len(), 6);
    answers.push(described);
    assert_eq!(
        ssm(&["get-parameter", "--name", "/cli/none"]).err().0,
        "ParameterNotFound"
    );
    assert_eq!(
        ssm(&[
            "put-parameter",
            "--name",
            "/cli/token",
            "--value",
            "x",
            "--type",
            "String"
        ])
        .err()
        .0,
        "ParameterAlreadyExists"
    );

    let kms = |args: &[&str]| server.aws_service("kms", args);
    let key = kms(&["create-key", "--description", "cli"]).ok();
    let key_id = key["KeyMetadata"]["KeyId"].as_str().unwrap().to_string();
    kms(&[
        "create-alias",
        "--alias-name",
        "alias/cli",
        "--target-key-id",
        &key_id,
    ])
    .ok();
    let plain_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(plain_file.path(), "kms-cli-plaintext").unwrap();
    let encrypted = kms(&[
        "encrypt",
        "--key-id",
        "alias/cli",
        "--plaintext",
        &format!("fileb://{}", plain_file.path().display()),
        "--encryption-context",
        "purpose=test",
    ])
    .ok();
    let blob = encrypted["CiphertextBlob"].as_str().unwrap().to_string();
    let blob_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        blob_file.path(),
        base64_decode(&blob).expect("the ciphertext is base64"),
    )
    .unwrap();
    let blob_arg = format!("fileb://{}", blob_file.path().display());
    let decrypted = kms(&[
        "decrypt",
        "--ciphertext-blob",
        &blob_arg,
        "--encryption-context",
        "purpose=test",
    ])
    .ok();
    assert_eq!(
        base64_decode(decrypted["Plaintext"].as_str().unwrap()).unwrap(),
        b"kms-cli-plaintext"
    );
    assert_eq!(
        kms(&["decrypt", "--ciphertext-blob", &blob_arg]).err().0,
        "InvalidCiphertextException"
    );
    kms(&["enable-key-rotation", "--key-id", &key_id]).ok();
    assert_eq!(
        kms(&["get-key-rotation-status", "--key-id", &key_id]).ok()["KeyRotationEnabled"],
        true
    );
    let keys = kms(&["list-keys", "--page-size", "1"]).ok();
    let key_ids: Vec<&Value> = keys["Keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| &k["KeyId"])
        .collect();
    assert!(
        key_ids.len() > 3 && key_ids.contains(&&json!(key_id)),
        "{keys}"
    );
    let aliases = kms(&["list-aliases", "--key-id", &key_id]).ok();
    assert_eq!(aliases["Aliases"][0]["AliasName"], "alias/cli", "{aliases}");
    let scheduled = kms(&[
        "schedule-key-deletion",
        "--key-id",
        &key_id,
        "--pending-window-in-days",
        "7",
    ])
    .ok();
    assert_eq!(scheduled["KeyState"], "PendingDeletion");
    assert_eq!(
        kms(&["encrypt", "--key-id", &key_id, "--plaintext", "eA=="])
            .err()
            .0,
        "KMSInvalidStateException"
    );
    answers.extend([key, encrypted, keys, aliases, scheduled.clone()]);

    // A service's EncryptionConfiguration.KmsKey must be a usable key of this KMS.
    let service = |key: &str| {
        json!({
            "ServiceName": "sealed",
            "SourceConfiguration": { "ImageRepository": {
                "ImageIdentifier": "ghcr.io/acme/app:1", "ImageRepositoryType": "ECR_PUBLIC" } },
            "EncryptionConfiguration": { "KmsKey": key }
        })
        .to_string()
    };
    let unknown = "arn:aws:kms:us-east-1:000000000000:key/00000000-0000-4000-8000-000000000000";
    let (kind, message) = server
        .aws(&["create-service", "--cli-input-json", &service(unknown)])
        .err();
    assert_eq!(kind, "InvalidRequestException");
    assert!(
        message.contains("EncryptionConfiguration.KmsKey"),
        "{message}"
    );
    let (kind, message) = server
        .aws(&[
            "create-service",
            "--cli-input-json",
            &service(scheduled["KeyId"].as_str().unwrap()),
        ])
        .err();
    assert!(
        kind == "InvalidRequestException" && message.contains("pending deletion"),
        "{message}"
    );
    let usable = kms(&["create-key"]).ok();
    let created = server
        .aws(&[
            "create-service",
            "--cli-input-json",
            &service(usable["KeyMetadata"]["Arn"].as_str().unwrap()),
        ])
        .ok();
    assert_eq!(
        created["Service"]["EncryptionConfiguration"]["KmsKey"],
        usable["KeyMetadata"]["Arn"]
    );

    // The CLI signs for each service's own name; a request scoped to another is refused.
    let (status, body) = server.raw(RawRequest {
        operation: "ListSecrets",
        prefix: "secretsmanager",
        content_type: "application/x-amz-json-1.1",
        ..RawRequest::default()
    });
    assert_eq!(
        (status, body["__type"].as_str()),
        (403, Some("InvalidSignatureException"))
    );

    let answers = serde_json::to_string(&answers).unwrap();
    for v in [value, secure] {
        assert!(!answers.contains(v), "{v} in an API answer: {answers}");
    }
    // Values the boto3 scenarios stored (plain parameters are sealed too).
    assert_nowhere_at_rest(
        &server,
        &[
            value,
            secure,
            "sm-value-7f3a9c1e",
            "ssm-secure-5b2e8d41",
            "postgres://db:5432/app",
            "kms-plaintext-91c4e0d7",
        ],
    );
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).ok()
}

/// A SigV4-signed Secrets Manager call.
fn secretsmanager(api: &str, credentials: &Path, operation: &str, body: &Value) -> (u16, Value) {
    let body = body.to_string();
    // The data directory's CA, beside its credentials (for a server with --tls).
    let ca = credentials.with_file_name("certs").join("ca.pem");
    raw_call(
        api,
        credentials,
        &ca,
        RawRequest {
            operation,
            prefix: "secretsmanager",
            signing_name: "secretsmanager",
            body: &body,
            content_type: "application/x-amz-json-1.1",
            ..RawRequest::default()
        },
    )
}

#[test]
fn a_put_secret_value_killed_midway_leaves_one_version_current() {
    let mut server = Server::api_only();
    let (status, created) = secretsmanager(
        &server.api,
        &server.credentials(),
        "CreateSecret",
        &json!({"Name": "crashy", "SecretString": "v-initial", "ClientRequestToken": "c".repeat(32)}),
    );
    assert_eq!(status, 200, "{created}");
    for round in 0..3 {
        // Writers put values as fast as they can; the server is killed while they do.
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = (0..3)
            .map(|w| {
                let (api, credentials, stop) =
                    (server.api.clone(), server.credentials(), stop.clone());
                std::thread::spawn(move || {
                    let (mut acked, mut sent) = (Vec::new(), Vec::new());
                    for i in 0.. {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let value = format!("v-{round}-{w}-{i}");
                        sent.push(value.clone());
                        let call = std::panic::catch_unwind(|| {
                            secretsmanager(
                                &api,
                                &credentials,
                                "PutSecretValue",
                                &json!({"SecretId": "crashy", "SecretString": value}),
                            )
                        });
                        match call {
                            Ok((200, _)) => acked.push(value),
                            Ok(other) => panic!("PutSecretValue failed: {other:?}"),
                            // The server died under the call.
                            Err(_) => break,
                        }
                    }
                    (acked, sent)
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(400 + 150 * round));
        server.kill();
        stop.store(true, Ordering::SeqCst);
        let results: Vec<(Vec<String>, Vec<String>)> =
            writers.into_iter().map(|w| w.join().unwrap()).collect();
        let acked: Vec<&String> = results.iter().flat_map(|(a, _)| a).collect();
        let sent: Vec<&String> = results.iter().flat_map(|(_, s)| s).collect();
        assert!(!acked.is_empty(), "round {round}: no put was answered");
        server.relaunch();

        let (status, current) = secretsmanager(
            &server.api,
            &server.credentials(),
            "GetSecretValue",
            &json!({"SecretId": "crashy"}),
        );
        assert_eq!(status, 200, "round {round}: {current}");
        let value = current["SecretString"].as_str().unwrap().to_string();
        assert!(
            sent.iter().any(|s| **s == value),
            "round {round}: the current value {value} was never sent"
        );
        // Each writer's values are acknowledged in order: the current one is its last
        // acknowledged value or one it sent after (in flight when the server died).
        let (acked_by, sent_by) = results.iter().find(|(_, s)| s.contains(&value)).unwrap();
        let position = sent_by.iter().position(|s| *s == value).unwrap();
        assert!(
            position + 1 >= acked_by.len(),
            "round {round}: {value} is older than an acknowledged value of its writer"
        );
        let (_, described) = secretsmanager(
            &server.api,
            &server.credentials(),
            "DescribeSecret",
            &json!({"SecretId": "crashy"}),
        );
        let stages = described["VersionIdsToStages"].as_object().unwrap();
        let count = |label: &str| {
            stages
                .values()
                .filter(|s| s.as_array().unwrap().iter().any(|l| l == label))
                .count()
        };
        assert_eq!(count("AWSCURRENT"), 1, "round {round}: {described}");
        assert_eq!(count("AWSPREVIOUS"), 1, "round {round}: {described}");
        let (status, previous) = secretsmanager(
            &server.api,
            &server.credentials(),
            "GetSecretValue",
            &json!({"SecretId": "crashy", "VersionStage": "AWSPREVIOUS"}),
        );
        assert_eq!(status, 200, "round {round}: {previous}");
    }
}

/// The test app's environment, once it answers (it may be restarting).
fn app_env(server: &Server, host: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = get(server, host, "/env");
        if status == 200 {
            return serde_json::from_str(&body).unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "the app does not answer: {status} {body}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The app's secret variables, as `NAME=value` lines (for one assertion per state).
fn secret_vars(env: &Value) -> Vec<String> {
    ["DB_PASSWORD", "DB_USER", "API_TOKEN", "MODE"]
        .iter()
        .map(|k| format!("{k}={}", env[*k].as_str().unwrap_or("<unset>")))
        .collect()
}

#[test]
fn a_deployed_app_gets_its_secrets_in_its_environment_and_nowhere_else() {
    let mut server = Server::start();
    push_testapp(&server, "vault:v1");
    let (pw1, pw2, tok1, tok2) = (
        "db-pass-one-51c0e2",
        "db-pass-two-8d7a13",
        "api-tok-one-c4e9f0",
        "api-tok-two-2b6d85",
    );
    let secret = server
        .aws_service(
            "secretsmanager",
            &[
                "create-secret",
                "--name",
                "vault/db",
                "--secret-string",
                &json!({"user": "app", "password": pw1}).to_string(),
            ],
        )
        .ok();
    let secret_arn = secret["ARN"].as_str().unwrap().to_string();
    let partial = secret_arn.rsplit_once('-').unwrap().0.to_string();
    server
        .aws_service(
            "ssm",
            &[
                "put-parameter",
                "--name",
                "/vault/token",
                "--value",
                tok1,
                "--type",
                "SecureString",
            ],
        )
        .ok();
    server
        .aws_service(
            "ssm",
            &[
                "put-parameter",
                "--name",
                "/vault/mode",
                "--value",
                "blue",
                "--type",
                "String",
            ],
        )
        .ok();
    let references = json!({
        "DB_PASSWORD": format!("{partial}:password::"),
        "DB_USER": format!("{secret_arn}:user:AWSCURRENT:"),
        "API_TOKEN": "/vault/token",
        "MODE": "arn:aws:ssm:us-east-1:000000000000:parameter/vault/mode"
    });
    let identifier = format!("{}/vault:v1", server.registry_host());
    let image = |references: &Value| {
        json!({
            "ImageIdentifier": identifier,
            "ImageRepositoryType": "ECR",
            "ImageConfiguration": {
                "Port": "8080",
                "RuntimeEnvironmentVariables": { "GREETING": "hi" },
                "RuntimeEnvironmentSecrets": references
            }
        })
    };
    let input = json!({
        "ServiceName": "vault",
        "SourceConfiguration": { "ImageRepository": image(&references) },
        "HealthCheckConfiguration": { "Protocol": "HTTP", "Path": "/healthz", "Interval": 1, "Timeout": 1 }
    });
    let created = server
        .aws(&["create-service", "--cli-input-json", &input.to_string()])
        .ok();
    let arn = created["Service"]["ServiceArn"]
        .as_str()
        .unwrap()
        .to_string();
    let service = wait_status(&server, &arn, "RUNNING");
    let host = service["ServiceUrl"].as_str().unwrap().to_string();
    let first = [
        format!("DB_PASSWORD={pw1}"),
        "DB_USER=app".to_string(),
        format!("API_TOKEN={tok1}"),
        "MODE=blue".to_string(),
    ];
    assert_eq!(secret_vars(&app_env(&server, &host)), first);

    // The service shows references, never values.
    let mut answers = vec![created, service.clone()];
    assert_eq!(
        service["SourceConfiguration"]["ImageRepository"]["ImageConfiguration"]["RuntimeEnvironmentSecrets"],
        references
    );
    let described = server.runway_out(&["services", "describe", "vault"]);
    assert!(described.contains("/vault/token"), "{described}");

    // The instance's bundle is in memory; nothing of it is in the data directory.
    let instances: Value =
        serde_json::from_str(&server.runway_out(&["instances", "ls", "vault", "-o", "json"]))
            .unwrap();
    let instance = instances[0]["InstanceId"].as_str().unwrap().to_string();
    let bundle = Path::new("/run/runway")
        .join(&server.bridge)
        .join(&instance);
    assert!(bundle.join("config.json").exists(), "{instances}");
    assert!(runway_runtime::volatile::in_memory(&bundle));

    // A rotation reaches the app with the next deployment, not before.
    server
        .aws_service(
            "secretsmanager",
            &[
                "put-secret-value",
                "--secret-id",
                "vault/db",
                "--secret-string",
                &json!({"user": "app", "password": pw2}).to_string(),
            ],
        )
        .ok();
    server
        .aws_service(
            "ssm",
            &[
                "put-parameter",
                "--name",
                "/vault/token",
                "--value",
                tok2,
                "--overwrite",
            ],
        )
        .ok();
    assert_eq!(secret_vars(&app_env(&server, &host)), first);
    let deployment = server
        .aws(&["start-deployment", "--service-arn", &arn])
        .ok();
    let op = deployment["OperationId"].as_str().unwrap();
    assert_eq!(wait_op(&server, &arn, op), "SUCCEEDED");
    let second = [
        format!("DB_PASSWORD={pw2}"),
        "DB_USER=app".to_string(),
        format!("API_TOKEN={tok2}"),
        "MODE=blue".to_string(),
    ];
    assert_eq!(secret_vars(&app_env(&server, &host)), second);

    // A crashed app is restarted with its secrets: by the running runtime; and, when it
    // crashes while runway is down, by the runtime that adopts it after a restart; and
    // again after that.
    let _ = get(&server, &host, "/crash");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(secret_vars(&app_env(&server, &host)), second);
    let listed: Value =
        serde_json::from_str(&server.runway_out(&["instances", "ls", "vault", "-o", "json"]))
            .unwrap();
    let address = listed[0]["Address"].as_str().unwrap().to_string();
    server.kill();
    let crashed = std::process::Command::new("curl")
        .args(["-s", "--max-time", "5"])
        .arg(format!("http://{address}/crash"))
        .status()
        .unwrap();
    assert!(crashed.code().is_some());
    server.relaunch();
    assert_eq!(secret_vars(&app_env(&server, &host)), second);
    let _ = get(&server, &host, "/crash");
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(secret_vars(&app_env(&server, &host)), second);
    let restarts: Value =
        serde_json::from_str(&server.runway_out(&["instances", "ls", "vault", "-o", "json"]))
            .unwrap();
    assert_eq!(restarts.as_array().unwrap().len(), 1, "{restarts}");
    assert_eq!(restarts[0]["Restarts"], 3, "{restarts}");

    // A reference that does not resolve fails the deployment, naming it; the app keeps
    // serving what it had.
    let mut broken = references.clone();
    broken["MISSING"] = json!(format!(
        "{}vault/none",
        &partial[..partial.len() - "vault/db".len()]
    ));
    let update = server
        .aws(&[
            "update-service",
            "--service-arn",
            &arn,
            "--source-configuration",
            &json!({ "ImageRepository": image(&broken) }).to_string(),
        ])
        .ok();
    let op = update["OperationId"].as_str().unwrap();
    assert_eq!(wait_op(&server, &arn, op), "FAILED");
    let events = server.runway_out(&["events", "vault"]);
    assert!(
        events.contains("secret MISSING does not resolve") && events.contains("vault/none"),
        "{events}"
    );
    assert_eq!(secret_vars(&app_env(&server, &host)), second);
    assert_eq!(wait_status(&server, &arn, "RUNNING")["Status"], "RUNNING");

    // A service sealed with a customer key deploys while the key is usable, not after it
    // is disabled.
    let key = server.aws_service("kms", &["create-key"]).ok();
    let key_arn = key["KeyMetadata"]["Arn"].as_str().unwrap().to_string();
    let sealed = json!({
        "ServiceName": "sealed",
        "SourceConfiguration": { "ImageRepository": image(&references) },
        "EncryptionConfiguration": { "KmsKey": key_arn },
        "HealthCheckConfiguration": { "Protocol": "HTTP", "Path": "/healthz", "Interval": 1, "Timeout": 1 }
    });
    let sealed = server
        .aws(&["create-service", "--cli-input-json", &sealed.to_string()])
        .ok();
    let sealed_arn = sealed["Service"]["ServiceArn"]
        .as_str()
        .unwrap()
        .to_string();
    wait_status(&server, &sealed_arn, "RUNNING");
    server
        .aws_service("kms", &["disable-key", "--key-id", &key_arn])
        .ok();
    let deployment = server
        .aws(&["start-deployment", "--service-arn", &sealed_arn])
        .ok();
    let op = deployment["OperationId"].as_str().unwrap();
    assert_eq!(wait_op(&server, &sealed_arn, op), "FAILED");
    let sealed_events = server.runway_out(&["events", "sealed"]);
    assert!(
        sealed_events.contains("EncryptionConfiguration.KmsKey")
            && sealed_events.contains("disabled"),
        "{sealed_events}"
    );

    // Where the values are not: the data directory, the server's log, the API's answers
    // and the event log.
    answers.push(
        server
            .aws(&["describe-service", "--service-arn", &arn])
            .ok(),
    );
    answers.push(server.aws(&["list-operations", "--service-arn", &arn]).ok());
    let answers = format!(
        "{}{events}{described}",
        serde_json::to_string(&answers).unwrap()
    );
    for value in [pw1, pw2, tok1, tok2] {
        assert!(!answers.contains(value), "{value} in an answer: {answers}");
    }
    assert_nowhere_at_rest(&server, &[pw1, pw2, tok1, tok2]);
}

/// Runs `runway <args>` with `stdin`; (success, stdout, stderr).
fn runway_with_input(server: &Server, args: &[&str], stdin: &str) -> (bool, String, String) {
    use std::io::Write;
    let mut child = server
        .runway()
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_runway_cli_keeps_secrets_and_parameters_and_shows_values_only_when_asked() {
    let server = Server::api_only();
    let run = |args: &[&str], stdin: &str| runway_with_input(&server, args, stdin);
    let ok = |args: &[&str], stdin: &str| {
        let (success, out, err) = run(args, stdin);
        assert!(success, "runway {args:?}: {err}");
        out
    };
    let (one, two) = ("cli-one-6a1f", "cli-two-93be");

    assert!(
        ok(&["secrets", "create", "db/pass"], &format!("{one}\n"))
            .contains("Created arn:aws:secretsmanager:")
    );
    let described = ok(&["secrets", "get", "db/pass"], "");
    assert!(
        described.contains("AWSCURRENT") && !described.contains(one),
        "{described}"
    );
    assert_eq!(
        ok(&["secrets", "get", "db/pass", "--show-value"], ""),
        format!("{one}\n")
    );
    ok(&["secrets", "put", "db/pass"], two);
    assert_eq!(
        ok(&["secrets", "get", "db/pass", "--show-value"], ""),
        format!("{two}\n")
    );
    assert_eq!(
        ok(
            &[
                "secrets",
                "get",
                "db/pass",
                "--show-value",
                "--version-stage",
                "AWSPREVIOUS"
            ],
            ""
        ),
        format!("{one}\n")
    );
    let listed = ok(&["secrets", "ls"], "");
    assert!(
        listed.contains("db/pass") && !listed.contains(one) && !listed.contains(two),
        "{listed}"
    );
    assert!(
        ok(
            &["secrets", "rm", "db/pass", "--recovery-window-in-days", "7"],
            ""
        )
        .contains("will be deleted")
    );
    assert!(!ok(&["secrets", "ls"], "").contains("db/pass"));
    assert!(
        ok(&["secrets", "ls", "--include-planned-deletion"], "").contains("scheduled for deletion")
    );
    ok(&["secrets", "restore", "db/pass"], "");
    ok(
        &[
            "secrets",
            "rm",
            "db/pass",
            "--force-delete-without-recovery",
        ],
        "",
    );
    let (success, _, err) = run(&["secrets", "get", "db/pass"], "");
    assert!(
        !success && err.contains("ResourceNotFoundException"),
        "{err}"
    );

    ok(
        &["parameters", "put", "/app/url", "--value", "http://db:5432"],
        "",
    );
    let (success, _, err) = run(
        &[
            "parameters",
            "put",
            "/app/pw",
            "--type",
            "SecureString",
            "--value",
            one,
        ],
        "",
    );
    assert!(!success && err.contains("--value-file"), "{err}");
    ok(
        &[
            "parameters",
            "put",
            "/app/pw",
            "--type",
            "SecureString",
            "--value-file",
            "-",
        ],
        one,
    );
    let (success, _, err) = run(&["parameters", "get", "/app/pw"], "");
    assert!(
        !success && err.contains("--with-decryption") && !err.contains(one),
        "{err}"
    );
    assert_eq!(
        ok(&["parameters", "get", "/app/pw", "--with-decryption"], ""),
        format!("{one}\n")
    );
    assert_eq!(
        ok(&["parameters", "get", "/app/url"], ""),
        "http://db:5432\n"
    );
    ok(
        &[
            "parameters",
            "put",
            "/app/url",
            "--value",
            "http://db:6543",
            "--overwrite",
        ],
        "",
    );
    assert_eq!(
        ok(&["parameters", "get", "/app/url:1"], ""),
        "http://db:5432\n"
    );
    for args in [
        &["parameters", "ls"][..],
        &["parameters", "ls", "--path", "/app"],
        &["parameters", "ls", "-o", "json"],
    ] {
        let listed = ok(args, "");
        assert!(
            listed.contains("/app/pw") && listed.contains("/app/url"),
            "{listed}"
        );
        assert!(
            !listed.contains(one) && !listed.contains("http://db"),
            "{listed}"
        );
    }
    ok(&["parameters", "rm", "/app/pw"], "");
    let (success, _, err) = run(&["parameters", "get", "/app/pw"], "");
    assert!(!success && err.contains("ParameterNotFound"), "{err}");
    assert_nowhere_at_rest(&server, &[one, two]);
}

/// What the secrets-check app reports for a value: a digest, not the value.
fn digest(value: &str) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(value.as_bytes()))[..16].to_string()
}

#[test]
fn run_secrets_in_apprunner_yaml_reach_an_app_built_from_source() {
    let server = Server::start_with(&["--runtime-image", "python3=runtimes/python3:latest"]);
    crate::source::import_base(&server, "python3");
    let (pw, tok) = ("src-pw-one-0e7d", "src-tok-77a0");
    server
        .aws_service(
            "secretsmanager",
            &[
                "create-secret",
                "--name",
                "src/db",
                "--secret-string",
                &json!({ "password": pw }).to_string(),
            ],
        )
        .ok();
    server
        .aws_service(
            "ssm",
            &[
                "put-parameter",
                "--name",
                "/src/token",
                "--value",
                tok,
                "--type",
                "SecureString",
            ],
        )
        .ok();
    let app = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/apps/secrets-check");
    let deployed = server.runway_out(&[
        "deploy",
        "--source",
        app.to_str().unwrap(),
        "--name",
        "srcsecrets",
    ]);
    assert!(deployed.contains("is running at"), "{deployed}");
    let services = server.aws(&["list-services"]).ok();
    let summary = &services["ServiceSummaryList"][0];
    let host = summary["ServiceUrl"].as_str().unwrap().to_string();
    let report = app_env(&server, &host);
    assert_eq!(
        report,
        json!({ "DB_PASSWORD": digest(pw), "API_TOKEN": digest(tok) })
    );

    // (Rotation and StartDeployment are the same for services built from source: see
    // a_deployed_app_gets_its_secrets_in_its_environment_and_nowhere_else.)
    let revisions = server.runway_out(&["revisions", "ls", "srcsecrets", "-o", "json"]);
    assert!(
        revisions.contains("srcsecrets") && !revisions.contains(pw),
        "{revisions}"
    );
    assert_nowhere_at_rest(&server, &[pw, tok]);
}
