//! SigV4 authentication and the JSON protocol's own errors, seen from real clients.

use crate::harness::{RawRequest, Server, get};
use std::time::{Duration, SystemTime};

#[test]
fn requests_without_a_valid_signature_get_403() {
    let server = Server::api_only();

    // The AWS CLI with a wrong secret, then with a key id the server never issued.
    let text = std::fs::read_to_string(server.credentials()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let secret_line = text
        .lines()
        .find(|l| l.starts_with("aws_secret_access_key"))
        .unwrap();
    let wrong_secret = dir.path().join("wrong-secret");
    std::fs::write(
        &wrong_secret,
        text.replace(
            secret_line,
            "aws_secret_access_key = 0000000000000000000000000000000000000000",
        ),
    )
    .unwrap();
    let (kind, message) = server.aws_with(&wrong_secret, &["list-services"]).err();
    assert_eq!(kind, "InvalidSignatureException", "{message}");
    let id_line = text
        .lines()
        .find(|l| l.starts_with("aws_access_key_id"))
        .unwrap();
    let unknown_id = dir.path().join("unknown-id");
    std::fs::write(
        &unknown_id,
        text.replace(id_line, "aws_access_key_id = RWAYAAAAAAAAAAAAAAAA"),
    )
    .unwrap();
    let (kind, _) = server.aws_with(&unknown_id, &["list-services"]).err();
    assert_eq!(kind, "UnrecognizedClientException");

    let twenty_minutes_ago = SystemTime::now() - Duration::from_secs(20 * 60);
    let (status, body) = server.raw(RawRequest {
        sign_time: Some(twenty_minutes_ago),
        ..Default::default()
    });
    assert_eq!(
        (status, body["__type"].as_str()),
        (403, Some("InvalidSignatureException")),
        "{body}"
    );
    assert!(
        body["Message"].as_str().unwrap().contains("expired"),
        "{body}"
    );

    let (status, body) = server.raw(RawRequest {
        unsigned_headers: &[("x-amz-meta-extra", "added after signing")],
        ..Default::default()
    });
    assert_eq!(
        (status, body["__type"].as_str()),
        (403, Some("InvalidSignatureException")),
        "{body}"
    );
    assert!(
        body["Message"]
            .as_str()
            .unwrap()
            .contains("x-amz-meta-extra"),
        "{body}"
    );

    let (status, body) = server.raw(RawRequest {
        unsigned: true,
        ..Default::default()
    });
    assert_eq!(
        (status, body["__type"].as_str()),
        (403, Some("MissingAuthenticationTokenException")),
        "{body}"
    );

    let (status, body) = server.raw(RawRequest {
        secret: Some("not-the-secret"),
        ..Default::default()
    });
    assert_eq!(
        (status, body["__type"].as_str()),
        (403, Some("InvalidSignatureException")),
        "{body}"
    );

    // A correctly signed request still works after all of that.
    let (status, body) = server.raw(RawRequest::default());
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["ServiceSummaryList"], serde_json::json!([]));
}

#[test]
fn protocol_errors_are_aws_style() {
    let server = Server::api_only();
    let (status, body) = server.raw(RawRequest {
        operation: "LaunchRockets",
        ..Default::default()
    });
    assert_eq!(
        (status, body["__type"].as_str()),
        (400, Some("UnknownOperationException")),
        "{body}"
    );

    let (status, body) = server.raw(RawRequest {
        operation: "CreateService",
        body: "{\"ServiceName\": ",
        ..Default::default()
    });
    assert_eq!(
        (status, body["__type"].as_str()),
        (400, Some("SerializationException")),
        "{body}"
    );

    let (status, body) = server.raw(RawRequest {
        operation: "CreateService",
        body: "[1, 2]",
        ..Default::default()
    });
    assert_eq!(
        (status, body["__type"].as_str()),
        (400, Some("SerializationException")),
        "{body}"
    );

    let (status, body) = server.raw(RawRequest {
        content_type: "text/plain",
        ..Default::default()
    });
    assert_eq!(
        (status, body["__type"].as_str()),
        (400, Some("SerializationException")),
        "{body}"
    );

    let (status, body) = server.raw(RawRequest {
        operation: "ListServices",
        body: "",
        ..Default::default()
    });
    assert_eq!(status, 200, "an empty body is an empty input: {body}");

    let input = r#"{"ServiceName": "raw-service", "SourceConfiguration": {"ImageRepository": {"ImageIdentifier": "nginx", "ImageRepositoryType": "ECR_PUBLIC"}}}"#;
    let (status, body) = server.raw(RawRequest {
        operation: "CreateService",
        body: input,
        ..Default::default()
    });
    assert_eq!(status, 200, "{body}");
    let created = body["Service"]["CreatedAt"]
        .as_f64()
        .expect("timestamps are epoch seconds on the wire");
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!((now - created).abs() < 600.0, "{created} vs {now}");

    let (status, metrics) = get(&server.metrics);
    assert_eq!(status, 200);
    assert!(
        metrics.contains("runway_api_requests_total{operation=\"ListServices\",result=\"ok\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("result=\"UnknownOperationException\""),
        "{metrics}"
    );
}
