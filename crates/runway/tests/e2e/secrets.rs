//! Secrets Manager, SSM Parameter Store and KMS on runway's API endpoint, driven by the
//! AWS CLI v2 and boto3; secrets resolved into a deployed app's environment; and where a
//! secret value may and may not be found afterwards.

use crate::harness::{RawRequest, Server, raw_call};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Files under `dir` (recursively, not following links) whose bytes contain `needle`.
fn files_holding(dir: &Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file()
                && let Ok(bytes) = std::fs::read(&path)
                && bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
            {
                found.push(path.display().to_string());
            }
        }
    }
    found
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
    answers.extend([key, encrypted, keys, aliases, scheduled]);

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
    raw_call(
        api,
        credentials,
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
