"""Every validation path answers the right error type with a message naming the field,
and changes nothing. boto3's own checks are off, so the server's are what answer."""
from common import client, done, error, image_source

c = client(validate=False)
ok = client()

conn_arn = ok.create_connection(ConnectionName="probe-conn", ProviderType="GITHUB")["Connection"]["ConnectionArn"]
svc = ok.create_service(ServiceName="existing", SourceConfiguration=image_source())["Service"]
svc_arn = svc["ServiceArn"]
asc_arn = svc["AutoScalingConfigurationSummary"]["AutoScalingConfigurationArn"]
missing_svc = svc_arn[:-32] + "0" * 32


def service(**overrides):
    params = {"ServiceName": "valid-name", "SourceConfiguration": image_source()}
    params.update(overrides)
    return params


def image(**repo):
    src = image_source()
    src["ImageRepository"].update(repo)
    return src


INVALID = "InvalidRequestException"
cases = [
    # (operation, params, error type, text the message must contain)
    ("create_service", service(ServiceName="abc"), INVALID, "ServiceName"),
    ("create_service", service(ServiceName="a" * 41), INVALID, "ServiceName"),
    ("create_service", service(ServiceName="bad name"), INVALID, "ServiceName"),
    ("create_service", {"SourceConfiguration": image_source()}, INVALID, "ServiceName is required"),
    ("create_service", {"ServiceName": "valid-name"}, INVALID, "SourceConfiguration is required"),
    ("create_service", service(SourceConfiguration={}), INVALID, "SourceConfiguration"),
    ("create_service", service(SourceConfiguration={**image_source(), "CodeRepository": {"RepositoryUrl": "https://h/r"}}), INVALID, "not both"),
    ("create_service", service(SourceConfiguration=image(ImageIdentifier="Not An Image")), INVALID, "ImageIdentifier"),
    ("create_service", service(SourceConfiguration=image(ImageIdentifier="app@sha256:123")), INVALID, "ImageIdentifier"),
    ("create_service", service(SourceConfiguration=image(ImageRepositoryType="DOCKERHUB")), INVALID, "ImageRepositoryType"),
    ("create_service", service(SourceConfiguration=image(ImageConfiguration={"Port": "0"})), INVALID, "Port"),
    ("create_service", service(SourceConfiguration=image(ImageConfiguration={"Port": "http"})), INVALID, "Port"),
    ("create_service", service(SourceConfiguration=image(ImageConfiguration={"StartCommand": "a\nb"})), INVALID, "StartCommand"),
    ("create_service", service(SourceConfiguration=image(ImageConfiguration={"RuntimeEnvironmentVariables": {"AWSAPPRUNNER_X": "1"}})), INVALID, "reserved"),
    ("create_service", service(SourceConfiguration=image(ImageConfiguration={"RuntimeEnvironmentSecrets": {"DB": ""}})), INVALID, "RuntimeEnvironmentSecrets"),
    ("create_service", service(SourceConfiguration={"CodeRepository": {"RepositoryUrl": "ftp://x/y", "SourceCodeVersion": {"Type": "BRANCH", "Value": "main"}}}), INVALID, "RepositoryUrl"),
    ("create_service", service(SourceConfiguration={"CodeRepository": {"RepositoryUrl": "https://h/r", "SourceCodeVersion": {"Type": "TAG", "Value": "v1"}}}), INVALID, "SourceCodeVersion.Type"),
    ("create_service", service(SourceConfiguration={"CodeRepository": {"RepositoryUrl": "https://h/r", "SourceCodeVersion": {"Type": "BRANCH", "Value": "main"},
        "CodeConfiguration": {"ConfigurationSource": "API", "CodeConfigurationValues": {"Runtime": "COBOL_85"}}}}), INVALID, "Runtime"),
    ("create_service", service(SourceConfiguration={**image_source(), "AuthenticationConfiguration": {"ConnectionArn": conn_arn[:-32] + "f" * 32}}), INVALID, "ConnectionArn"),
    ("create_service", service(SourceConfiguration={**image_source(), "AuthenticationConfiguration": {"AccessRoleArn": "arn:aws:iam::12:role/x"}}), INVALID, "AccessRoleArn"),
    ("create_service", service(InstanceConfiguration={"Cpu": "4 vCPU", "Memory": "2 GB"}), INVALID, "Memory"),
    ("create_service", service(InstanceConfiguration={"Cpu": "3 vCPU"}), INVALID, "InstanceConfiguration.Cpu"),
    ("create_service", service(InstanceConfiguration={"Memory": "64 GB"}), INVALID, "InstanceConfiguration.Memory"),
    ("create_service", service(HealthCheckConfiguration={"Interval": 0}), INVALID, "HealthCheckConfiguration.Interval"),
    ("create_service", service(HealthCheckConfiguration={"Interval": 21}), INVALID, "HealthCheckConfiguration.Interval"),
    ("create_service", service(HealthCheckConfiguration={"Timeout": 0}), INVALID, "HealthCheckConfiguration.Timeout"),
    ("create_service", service(HealthCheckConfiguration={"HealthyThreshold": 21}), INVALID, "HealthCheckConfiguration.HealthyThreshold"),
    ("create_service", service(HealthCheckConfiguration={"UnhealthyThreshold": 0}), INVALID, "HealthCheckConfiguration.UnhealthyThreshold"),
    ("create_service", service(HealthCheckConfiguration={"Protocol": "GRPC"}), INVALID, "HealthCheckConfiguration.Protocol"),
    ("create_service", service(NetworkConfiguration={"EgressConfiguration": {"EgressType": "VPC"}}), INVALID, "VpcConnectorArn"),
    ("create_service", service(NetworkConfiguration={"IpAddressType": "IPV5"}), INVALID, "IpAddressType"),
    ("create_service", service(EncryptionConfiguration={"KmsKey": "my-key"}), INVALID, "KmsKey"),
    ("create_service", service(InstanceConfiguration={"InstanceRoleArn": "role"}), INVALID, "InstanceRoleArn"),
    ("create_service", service(ObservabilityConfiguration={"ObservabilityEnabled": True}), INVALID, "ObservabilityConfigurationArn"),
    ("create_service", service(AutoScalingConfigurationArn="not-an-arn"), INVALID, "AutoScalingConfigurationArn"),
    ("create_service", service(AutoScalingConfigurationArn=asc_arn.rsplit("/", 3)[0] + "/nope-nope"), "ResourceNotFoundException", "nope-nope"),
    ("create_service", service(Tags=[{"Key": "aws:team", "Value": "x"}]), INVALID, "aws:"),
    ("create_service", service(Tags=[{"Key": "k" * 129, "Value": "x"}]), INVALID, "Tags[0].Key"),
    ("create_service", service(Tags=[{"Key": "k", "Value": "v" * 257}]), INVALID, "Tags[0].Value"),
    ("create_service", service(Tags=[{"Key": f"k{i}", "Value": "v"} for i in range(51)]), INVALID, "50"),
    ("create_service", service(ServiceName="existing"), INVALID, "already exists"),
    ("create_service", service(ServiceName=12345), "SerializationException", "ServiceName"),
    ("describe_service", {"ServiceArn": "not-an-arn"}, INVALID, "ServiceArn"),
    ("describe_service", {"ServiceArn": conn_arn}, INVALID, "ServiceArn must be the ARN of a service"),
    ("describe_service", {"ServiceArn": missing_svc}, "ResourceNotFoundException", missing_svc),
    ("describe_service", {}, INVALID, "ServiceArn is required"),
    ("update_service", {"ServiceArn": svc_arn}, INVALID, "at least one"),
    ("update_service", {"ServiceArn": svc_arn, "HealthCheckConfiguration": {"Timeout": 99}}, INVALID, "HealthCheckConfiguration.Timeout"),
    ("update_service", {"ServiceArn": svc_arn, "SourceConfiguration": {"CodeRepository": {"RepositoryUrl": "https://h/r", "SourceCodeVersion": {"Type": "BRANCH", "Value": "main"}}}}, INVALID, "switch"),
    ("update_service", {"ServiceArn": missing_svc, "InstanceConfiguration": {"Cpu": "1 vCPU"}}, "ResourceNotFoundException", "does not exist"),
    ("pause_service", {"ServiceArn": svc_arn}, "InvalidStateException", svc_arn),
    ("resume_service", {"ServiceArn": svc_arn}, "InvalidStateException", svc_arn),
    ("list_services", {"MaxResults": 0}, INVALID, "MaxResults"),
    ("list_services", {"MaxResults": 21}, INVALID, "MaxResults"),
    ("list_services", {"MaxResults": "ten"}, "SerializationException", "MaxResults"),
    ("list_operations", {"ServiceArn": svc_arn, "MaxResults": 21}, INVALID, "MaxResults"),
    ("list_operations", {"ServiceArn": missing_svc}, "ResourceNotFoundException", "does not exist"),
    ("create_auto_scaling_configuration", {"AutoScalingConfigurationName": "abc"}, INVALID, "AutoScalingConfigurationName"),
    ("create_auto_scaling_configuration", {"AutoScalingConfigurationName": "DefaultConfiguration"}, INVALID, "reserved"),
    ("create_auto_scaling_configuration", {"AutoScalingConfigurationName": "conf", "MaxConcurrency": 0}, INVALID, "MaxConcurrency"),
    ("create_auto_scaling_configuration", {"AutoScalingConfigurationName": "conf", "MaxConcurrency": 201}, INVALID, "MaxConcurrency"),
    ("create_auto_scaling_configuration", {"AutoScalingConfigurationName": "conf", "MinSize": 26}, INVALID, "MinSize"),
    ("create_auto_scaling_configuration", {"AutoScalingConfigurationName": "conf", "MaxSize": 0}, INVALID, "MaxSize"),
    ("create_auto_scaling_configuration", {"AutoScalingConfigurationName": "conf", "MinSize": 4, "MaxSize": 3}, INVALID, "MinSize"),
    ("describe_auto_scaling_configuration", {"AutoScalingConfigurationArn": svc_arn}, INVALID, "autoscalingconfiguration"),
    ("describe_auto_scaling_configuration", {"AutoScalingConfigurationArn": asc_arn.rsplit("/", 2)[0] + "/x/y"}, INVALID, "revision"),
    ("delete_auto_scaling_configuration", {"AutoScalingConfigurationArn": asc_arn}, INVALID, "default"),
    ("create_connection", {"ConnectionName": "probe conn", "ProviderType": "GITHUB"}, INVALID, "ConnectionName"),
    ("create_connection", {"ConnectionName": "probe-2", "ProviderType": "CVS"}, INVALID, "ProviderType"),
    ("create_connection", {"ConnectionName": "probe-2"}, INVALID, "ProviderType is required"),
    ("delete_connection", {"ConnectionArn": conn_arn[:-32] + "a" * 32}, "ResourceNotFoundException", "does not exist"),
    ("create_observability_configuration", {"ObservabilityConfigurationName": "obs-1", "TraceConfiguration": {"Vendor": "JAEGER"}}, INVALID, "TraceConfiguration.Vendor"),
    ("create_observability_configuration", {"ObservabilityConfigurationName": "o"}, INVALID, "ObservabilityConfigurationName"),
    ("tag_resource", {"ResourceArn": missing_svc, "Tags": [{"Key": "a", "Value": "b"}]}, "ResourceNotFoundException", "does not exist"),
    ("tag_resource", {"ResourceArn": "arn:aws:s3:::bucket", "Tags": [{"Key": "a", "Value": "b"}]}, INVALID, "ResourceArn"),
    ("tag_resource", {"ResourceArn": svc_arn}, INVALID, "Tags is required"),
    ("untag_resource", {"ResourceArn": svc_arn, "TagKeys": ["aws:x"]}, INVALID, "TagKeys[0]"),
    ("list_tags_for_resource", {"ResourceArn": asc_arn.rsplit("/", 2)[0]}, INVALID, "full ARN"),
]

failures = []
for op, params, want_code, want_text in cases:
    code, message = error(getattr(c, op), **params)
    if code != want_code or want_text not in message:
        failures.append(f"{op}({params}) -> {code}: {message!r}; wanted {want_code} mentioning {want_text!r}")
assert not failures, "\n".join(failures)

# Nothing that failed changed anything.
assert [s["ServiceName"] for s in ok.list_services()["ServiceSummaryList"]] == ["existing"]
assert len(ok.list_operations(ServiceArn=svc_arn)["OperationSummaryList"]) == 1
assert [s["AutoScalingConfigurationName"] for s in ok.list_auto_scaling_configurations()["AutoScalingConfigurationSummaryList"]] == ["DefaultConfiguration"]
assert [x["ConnectionName"] for x in ok.list_connections()["ConnectionSummaryList"]] == ["probe-conn"]
assert ok.list_observability_configurations()["ObservabilityConfigurationSummaryList"] == []
assert ok.list_tags_for_resource(ResourceArn=svc_arn)["Tags"] == []
done(f"validation ({len(cases)} cases)")
