//! The App Runner API through the AWS CLI and boto3.

use crate::harness::Server;
use serde_json::{Value, json};

fn image_service(name: &str) -> String {
    json!({
        "ServiceName": name,
        "SourceConfiguration": {
            "ImageRepository": {
                "ImageIdentifier": "127.0.0.1:5000/hello:v1",
                "ImageRepositoryType": "ECR",
                "ImageConfiguration": { "Port": "8080", "RuntimeEnvironmentVariables": { "GREETING": "hi" } }
            }
        },
        "Tags": [{ "Key": "team", "Value": "web" }]
    })
    .to_string()
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

#[test]
fn services_go_through_their_lifecycle_with_the_aws_cli() {
    let server = Server::api_only();
    let created = server
        .aws(&[
            "create-service",
            "--cli-input-json",
            &image_service("hello"),
        ])
        .ok();
    let service = &created["Service"];
    let arn = str_of(service, "ServiceArn").to_string();
    let id = str_of(service, "ServiceId");
    assert_eq!(id.len(), 32);
    assert_eq!(
        arn,
        format!("arn:aws:apprunner:us-east-1:000000000000:service/hello/{id}")
    );
    assert_eq!(
        service["ServiceUrl"],
        format!("hello-{}.runway.localhost", &id[..8])
    );
    // Nothing runs until the controller exists: the service must not claim to be RUNNING.
    assert_eq!(service["Status"], "OPERATION_IN_PROGRESS");
    assert_eq!(
        service["InstanceConfiguration"],
        json!({ "Cpu": "1024", "Memory": "2048" })
    );
    assert_eq!(
        service["HealthCheckConfiguration"],
        json!({ "Protocol": "TCP", "Path": "/", "Interval": 5, "Timeout": 2, "HealthyThreshold": 1, "UnhealthyThreshold": 5 })
    );
    assert_eq!(
        service["SourceConfiguration"]["AutoDeploymentsEnabled"],
        true
    );
    // (AWS CLI 2.9 predates IsDefault and HasAssociatedService; boto3 checks those.)
    assert_eq!(
        service["AutoScalingConfigurationSummary"]["AutoScalingConfigurationName"],
        "DefaultConfiguration"
    );
    assert_eq!(
        service["NetworkConfiguration"]["EgressConfiguration"]["EgressType"],
        "DEFAULT"
    );

    let described = server
        .aws(&["describe-service", "--service-arn", &arn])
        .ok();
    assert_eq!(described["Service"], *service);
    let listed = server.aws(&["list-services"]).ok();
    assert_eq!(listed["ServiceSummaryList"][0]["ServiceArn"], arn);
    assert_eq!(listed["ServiceSummaryList"].as_array().unwrap().len(), 1);

    let (kind, message) = server
        .aws(&[
            "create-service",
            "--cli-input-json",
            &image_service("hello"),
        ])
        .err();
    assert_eq!(kind, "InvalidRequestException");
    assert!(message.contains("ServiceName"), "{message}");

    let updated = server
        .aws(&[
            "update-service",
            "--service-arn",
            &arn,
            "--instance-configuration",
            r#"{"Cpu":"2 vCPU","Memory":"4 GB"}"#,
        ])
        .ok();
    assert_eq!(
        updated["Service"]["InstanceConfiguration"],
        json!({ "Cpu": "2048", "Memory": "4096" })
    );
    let deployed = server
        .aws(&["start-deployment", "--service-arn", &arn])
        .ok();
    assert_eq!(str_of(&deployed, "OperationId").len(), 36);

    for op in ["pause-service", "resume-service"] {
        let (kind, message) = server.aws(&[op, "--service-arn", &arn]).err();
        assert_eq!(kind, "InvalidStateException", "{op}: {message}");
    }

    server
        .aws(&[
            "tag-resource",
            "--resource-arn",
            &arn,
            "--tags",
            "Key=env,Value=prod",
            "Key=team,Value=api",
        ])
        .ok();
    let tags = server
        .aws(&["list-tags-for-resource", "--resource-arn", &arn])
        .ok();
    assert_eq!(
        tags["Tags"],
        json!([{ "Key": "team", "Value": "api" }, { "Key": "env", "Value": "prod" }])
    );
    server
        .aws(&[
            "untag-resource",
            "--resource-arn",
            &arn,
            "--tag-keys",
            "team",
        ])
        .ok();
    let tags = server
        .aws(&["list-tags-for-resource", "--resource-arn", &arn])
        .ok();
    assert_eq!(tags["Tags"], json!([{ "Key": "env", "Value": "prod" }]));
    let (kind, _) = server
        .aws(&[
            "tag-resource",
            "--resource-arn",
            &arn,
            "--tags",
            "Key=aws:x,Value=1",
        ])
        .err();
    assert_eq!(kind, "InvalidRequestException");

    let deleted = server.aws(&["delete-service", "--service-arn", &arn]).ok();
    assert_eq!(deleted["Service"]["Status"], "OPERATION_IN_PROGRESS");
    let ops = server.aws(&["list-operations", "--service-arn", &arn]).ok();
    let kinds: Vec<&str> = ops["OperationSummaryList"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["Type"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "DELETE_SERVICE",
            "START_DEPLOYMENT",
            "UPDATE_SERVICE",
            "CREATE_SERVICE"
        ]
    );
    for op in ops["OperationSummaryList"].as_array().unwrap() {
        assert_eq!(op["Status"], "PENDING");
        assert_eq!(op["TargetArn"], arn);
        assert!(
            op["StartedAt"].as_str().unwrap().starts_with("20"),
            "the CLI shows timestamps as ISO 8601: {op}"
        );
        assert!(op.get("EndedAt").is_none());
    }
    assert_eq!(ops["OperationSummaryList"][2]["Id"], updated["OperationId"]);

    let (kind, _) = server.aws(&["delete-service", "--service-arn", &arn]).err();
    assert_eq!(kind, "InvalidStateException");
    let (kind, _) = server
        .aws(&["start-deployment", "--service-arn", &arn])
        .err();
    assert_eq!(kind, "InvalidStateException");
    let missing = arn.replace(id, "0123456789abcdef0123456789abcdef");
    let (kind, _) = server
        .aws(&["describe-service", "--service-arn", &missing])
        .err();
    assert_eq!(kind, "ResourceNotFoundException");
}

#[test]
fn connections_and_observability_configurations_with_the_aws_cli() {
    let server = Server::api_only();
    let conn = server
        .aws(&[
            "create-connection",
            "--connection-name",
            "my-github",
            "--provider-type",
            "GITHUB",
        ])
        .ok();
    let conn_arn = str_of(&conn["Connection"], "ConnectionArn").to_string();
    assert!(conn_arn.starts_with("arn:aws:apprunner:us-east-1:000000000000:connection/my-github/"));
    assert_eq!(conn["Connection"]["Status"], "PENDING_HANDSHAKE");
    let (kind, _) = server
        .aws(&[
            "create-connection",
            "--connection-name",
            "my-github",
            "--provider-type",
            "GITHUB",
        ])
        .err();
    assert_eq!(kind, "InvalidRequestException");
    let (kind, message) = server
        .aws(&[
            "create-connection",
            "--connection-name",
            "other",
            "--provider-type",
            "SVN",
        ])
        .err();
    assert_eq!(kind, "InvalidRequestException");
    assert!(message.contains("ProviderType"), "{message}");
    let listed = server
        .aws(&["list-connections", "--connection-name", "my-github"])
        .ok();
    assert_eq!(listed["ConnectionSummaryList"].as_array().unwrap().len(), 1);

    // A code service that uses the connection keeps it from being deleted.
    let code_service = json!({
        "ServiceName": "from-git",
        "SourceConfiguration": {
            "CodeRepository": {
                "RepositoryUrl": "https://git.example.com/team/app.git",
                "SourceCodeVersion": { "Type": "BRANCH", "Value": "main" },
                "CodeConfiguration": {
                    "ConfigurationSource": "API",
                    "CodeConfigurationValues": { "Runtime": "PYTHON_3", "BuildCommand": "pip install -r requirements.txt", "StartCommand": "python app.py" }
                }
            },
            "AuthenticationConfiguration": { "ConnectionArn": conn_arn }
        }
    });
    let created = server
        .aws(&[
            "create-service",
            "--cli-input-json",
            &code_service.to_string(),
        ])
        .ok();
    let values = &created["Service"]["SourceConfiguration"]["CodeRepository"]["CodeConfiguration"]
        ["CodeConfigurationValues"];
    assert_eq!(values["Port"], "8080");
    let (kind, message) = server
        .aws(&["delete-connection", "--connection-arn", &conn_arn])
        .err();
    assert_eq!(kind, "InvalidRequestException");
    assert!(message.contains("from-git"), "{message}");

    let obs1 = server
        .aws(&[
            "create-observability-configuration",
            "--observability-configuration-name",
            "tracing",
            "--trace-configuration",
            "Vendor=AWSXRAY",
        ])
        .ok();
    let obs2 = server
        .aws(&[
            "create-observability-configuration",
            "--observability-configuration-name",
            "tracing",
        ])
        .ok();
    let rev1 = &obs1["ObservabilityConfiguration"];
    let rev2 = &obs2["ObservabilityConfiguration"];
    assert_eq!(
        (
            rev1["ObservabilityConfigurationRevision"].clone(),
            rev2["ObservabilityConfigurationRevision"].clone()
        ),
        (json!(1), json!(2))
    );
    let arn1 = str_of(rev1, "ObservabilityConfigurationArn");
    let again = server
        .aws(&[
            "describe-observability-configuration",
            "--observability-configuration-arn",
            arn1,
        ])
        .ok();
    assert_eq!(again["ObservabilityConfiguration"]["Latest"], false);
    let partial = arn1.rsplit_once("/1/").unwrap().0;
    let latest = server
        .aws(&[
            "describe-observability-configuration",
            "--observability-configuration-arn",
            partial,
        ])
        .ok();
    assert_eq!(
        latest["ObservabilityConfiguration"]["ObservabilityConfigurationRevision"],
        2
    );
    let listed = server
        .aws(&["list-observability-configurations", "--latest-only"])
        .ok();
    assert_eq!(
        listed["ObservabilityConfigurationSummaryList"]
            .as_array()
            .unwrap()
            .len(),
        1
    );

    let observed = json!({
        "ServiceName": "observed",
        "SourceConfiguration": { "ImageRepository": { "ImageIdentifier": "nginx:1.27", "ImageRepositoryType": "ECR_PUBLIC" } },
        "ObservabilityConfiguration": { "ObservabilityEnabled": true, "ObservabilityConfigurationArn": arn1 }
    });
    let created = server
        .aws(&["create-service", "--cli-input-json", &observed.to_string()])
        .ok();
    assert_eq!(
        created["Service"]["SourceConfiguration"]["AutoDeploymentsEnabled"],
        false
    );
    let (kind, _) = server
        .aws(&[
            "delete-observability-configuration",
            "--observability-configuration-arn",
            arn1,
        ])
        .err();
    assert_eq!(kind, "InvalidRequestException");
    let arn2 = str_of(rev2, "ObservabilityConfigurationArn");
    let deleted = server
        .aws(&[
            "delete-observability-configuration",
            "--observability-configuration-arn",
            arn2,
        ])
        .ok();
    assert_eq!(deleted["ObservabilityConfiguration"]["Status"], "INACTIVE");
    assert!(deleted["ObservabilityConfiguration"]["DeletedAt"].is_string());
    let latest = server
        .aws(&[
            "describe-observability-configuration",
            "--observability-configuration-arn",
            partial,
        ])
        .ok();
    assert_eq!(
        latest["ObservabilityConfiguration"]["ObservabilityConfigurationRevision"],
        1
    );
    assert_eq!(latest["ObservabilityConfiguration"]["Latest"], true);

    let svc_arn = str_of(
        &server.aws(&["list-services"]).ok()["ServiceSummaryList"][0],
        "ServiceArn",
    )
    .to_string();
    server
        .aws(&["delete-service", "--service-arn", &svc_arn])
        .ok();
    let spare = server
        .aws(&[
            "create-connection",
            "--connection-name",
            "spare-conn",
            "--provider-type",
            "BITBUCKET",
        ])
        .ok();
    let spare_arn = str_of(&spare["Connection"], "ConnectionArn");
    let gone = server
        .aws(&["delete-connection", "--connection-arn", spare_arn])
        .ok();
    assert_eq!(gone["Connection"]["Status"], "DELETED");
    let (kind, _) = server
        .aws(&["delete-connection", "--connection-arn", spare_arn])
        .err();
    assert_eq!(kind, "ResourceNotFoundException");
}

#[test]
fn auto_scaling_configurations_with_boto3() {
    let server = Server::api_only();
    server.boto3("autoscaling.py");
}

#[test]
fn every_validation_path_answers_its_error_type() {
    let server = Server::api_only();
    server.boto3("validation.py");
}

#[test]
fn lists_page_with_next_token() {
    let server = Server::api_only();
    server.boto3("pagination.py");
}

#[test]
fn auto_scaling_revisions_with_the_aws_cli() {
    let server = Server::api_only();
    let first = server
        .aws(&[
            "create-auto-scaling-configuration",
            "--auto-scaling-configuration-name",
            "burst",
            "--max-concurrency",
            "50",
            "--min-size",
            "2",
            "--max-size",
            "10",
        ])
        .ok();
    let second = server
        .aws(&[
            "create-auto-scaling-configuration",
            "--auto-scaling-configuration-name",
            "burst",
        ])
        .ok();
    let (a, b) = (
        &first["AutoScalingConfiguration"],
        &second["AutoScalingConfiguration"],
    );
    assert_eq!(
        (
            a["AutoScalingConfigurationRevision"].clone(),
            b["AutoScalingConfigurationRevision"].clone()
        ),
        (json!(1), json!(2))
    );
    assert_eq!(
        (
            a["MaxConcurrency"].clone(),
            a["MinSize"].clone(),
            a["MaxSize"].clone()
        ),
        (json!(50), json!(2), json!(10))
    );
    assert_eq!(
        (
            b["MaxConcurrency"].clone(),
            b["MinSize"].clone(),
            b["MaxSize"].clone()
        ),
        (json!(100), json!(1), json!(25))
    );
    let listed = server
        .aws(&[
            "list-auto-scaling-configurations",
            "--auto-scaling-configuration-name",
            "burst",
        ])
        .ok();
    assert_eq!(
        listed["AutoScalingConfigurationSummaryList"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let described = server
        .aws(&[
            "describe-auto-scaling-configuration",
            "--auto-scaling-configuration-arn",
            str_of(a, "AutoScalingConfigurationArn"),
        ])
        .ok();
    assert_eq!(described["AutoScalingConfiguration"]["Latest"], false);
    let (kind, message) = server
        .aws(&[
            "create-auto-scaling-configuration",
            "--auto-scaling-configuration-name",
            "bad1",
            "--min-size",
            "5",
            "--max-size",
            "2",
        ])
        .err();
    assert_eq!(kind, "InvalidRequestException");
    assert!(message.contains("MinSize"), "{message}");
}

#[test]
fn extension_operations_check_their_input() {
    use crate::harness::RawRequest;
    let server = Server::api_only();
    let created = server
        .aws(&[
            "create-service",
            "--cli-input-json",
            &image_service("extended"),
        ])
        .ok();
    let arn = str_of(&created["Service"], "ServiceArn").to_string();
    let call = |operation: &str, body: serde_json::Value| {
        let body = body.to_string();
        server.raw(RawRequest {
            operation,
            prefix: "Runway",
            body: &body,
            ..Default::default()
        })
    };
    let (status, body) = call("ListRevisions", json!({ "ServiceArn": arn }));
    assert_eq!(
        (status, body["Revisions"].clone()),
        (200, json!([])),
        "{body}"
    );
    let (status, body) = call("ListServiceEvents", json!({ "ServiceArn": arn }));
    assert_eq!(status, 200, "{body}");
    let (status, body) = call("RollbackService", json!({ "ServiceArn": arn }));
    assert_eq!(
        (status, body["__type"].as_str()),
        (400, Some("InvalidRequestException")),
        "{body}"
    );
    let (status, body) = call(
        "UpdateTraffic",
        json!({ "ServiceArn": arn, "Traffic": [{ "RevisionId": "nope", "Percent": 100 }] }),
    );
    assert_eq!(
        (status, body["__type"].as_str()),
        (400, Some("ResourceNotFoundException")),
        "{body}"
    );
    assert!(
        body["Message"]
            .as_str()
            .unwrap()
            .contains("Traffic[0].RevisionId"),
        "{body}"
    );
    let (status, body) = call("UpdateTraffic", json!({ "ServiceArn": arn, "Traffic": [] }));
    assert_eq!(
        (status, body["__type"].as_str()),
        (400, Some("InvalidRequestException")),
        "{body}"
    );
    // Extension names are not App Runner operations, and the other way round.
    let (status, _) = server.raw(RawRequest {
        operation: "ListRevisions",
        body: "{}",
        ..Default::default()
    });
    assert_eq!(status, 400);
    let (status, _) = call("ListServices", json!({}));
    assert_eq!(status, 400);
}
