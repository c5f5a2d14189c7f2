use super::*;
use crate::error::ErrorKind;

fn message(r: Result<impl std::fmt::Debug>) -> String {
    let e = r.expect_err("expected a validation error");
    assert_eq!(e.kind, ErrorKind::InvalidRequest);
    e.message
}

fn image(id: &str) -> SourceConfiguration {
    SourceConfiguration {
        image_repository: Some(ImageRepository {
            image_identifier: Some(id.into()),
            image_repository_type: Some("ECR".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn service_names_follow_the_pattern() {
    assert_eq!(service_name(&Some("my_app-1".into())).unwrap(), "my_app-1");
    assert!(message(service_name(&None)).contains("ServiceName is required"));
    assert!(message(service_name(&Some("abc".into()))).contains("4 to 40"));
    assert!(message(service_name(&Some("a".repeat(41)))).contains("4 to 40"));
    assert!(message(service_name(&Some("-app".into()))).contains("ServiceName must start"));
    assert!(message(service_name(&Some("my app".into()))).contains("ServiceName"));
}

#[test]
fn cpu_and_memory_are_normalised_and_combined_as_app_runner_allows() {
    let d = instance_configuration(None).unwrap();
    assert_eq!(
        (d.cpu.as_deref(), d.memory.as_deref()),
        (Some("1024"), Some("2048"))
    );
    let c = instance_configuration(Some(&InstanceConfiguration {
        cpu: Some("0.25 vCPU".into()),
        memory: Some("0.5 GB".into()),
        ..Default::default()
    }))
    .unwrap();
    assert_eq!(
        (c.cpu.as_deref(), c.memory.as_deref()),
        (Some("256"), Some("512"))
    );
    let bad = InstanceConfiguration {
        cpu: Some("4 vCPU".into()),
        memory: Some("2 GB".into()),
        ..Default::default()
    };
    assert!(
        message(instance_configuration(Some(&bad)))
            .contains("Cpu 4096 allows Memory 8192 or 10240 or 12288")
    );
    let bad = InstanceConfiguration {
        cpu: Some("3 vCPU".into()),
        ..Default::default()
    };
    assert!(message(instance_configuration(Some(&bad))).contains("InstanceConfiguration.Cpu"));
    let bad = InstanceConfiguration {
        instance_role_arn: Some("arn:aws:iam::123:role/x".into()),
        ..Default::default()
    };
    assert!(message(instance_configuration(Some(&bad))).contains("InstanceRoleArn"));
}

#[test]
fn health_checks_get_defaults_and_ranges() {
    let d = health_check(None).unwrap();
    assert_eq!(d.protocol.as_deref(), Some("TCP"));
    assert_eq!(
        (
            d.interval,
            d.timeout,
            d.healthy_threshold,
            d.unhealthy_threshold
        ),
        (Some(5), Some(2), Some(1), Some(5))
    );
    for (cfg, field) in [
        (
            HealthCheckConfiguration {
                interval: Some(0),
                ..Default::default()
            },
            "Interval",
        ),
        (
            HealthCheckConfiguration {
                timeout: Some(21),
                ..Default::default()
            },
            "Timeout",
        ),
        (
            HealthCheckConfiguration {
                healthy_threshold: Some(0),
                ..Default::default()
            },
            "HealthyThreshold",
        ),
        (
            HealthCheckConfiguration {
                unhealthy_threshold: Some(99),
                ..Default::default()
            },
            "UnhealthyThreshold",
        ),
        (
            HealthCheckConfiguration {
                protocol: Some("UDP".into()),
                ..Default::default()
            },
            "Protocol",
        ),
        (
            HealthCheckConfiguration {
                path: Some("healthz".into()),
                ..Default::default()
            },
            "Path",
        ),
    ] {
        assert!(
            message(health_check(Some(&cfg)))
                .contains(&format!("HealthCheckConfiguration.{field}"))
        );
    }
}

#[test]
fn sources_need_exactly_one_repository() {
    let s = source_configuration("SourceConfiguration", &image("127.0.0.1:5000/app:v1")).unwrap();
    let img = s.image_repository.unwrap();
    assert_eq!(
        img.image_configuration.unwrap().port.as_deref(),
        Some("8080")
    );
    assert_eq!(s.auto_deployments_enabled, Some(true));
    assert!(
        message(source_configuration(
            "SourceConfiguration",
            &SourceConfiguration::default()
        ))
        .contains("either")
    );
    assert!(
        message(source_configuration(
            "SourceConfiguration",
            &image("Bad Image")
        ))
        .contains("ImageIdentifier")
    );
    let mut public = image("public.ecr.aws/nginx/nginx:latest");
    public
        .image_repository
        .as_mut()
        .unwrap()
        .image_repository_type = Some("ECR_PUBLIC".into());
    assert_eq!(
        source_configuration("S", &public)
            .unwrap()
            .auto_deployments_enabled,
        Some(false)
    );
    let mut bad_type = image("nginx");
    bad_type
        .image_repository
        .as_mut()
        .unwrap()
        .image_repository_type = Some("DOCKER".into());
    assert!(
        message(source_configuration("S", &bad_type))
            .contains("S.ImageRepository.ImageRepositoryType")
    );
    let mut bad_port = image("nginx");
    bad_port
        .image_repository
        .as_mut()
        .unwrap()
        .image_configuration = Some(ImageConfiguration {
        port: Some("70000".into()),
        ..Default::default()
    });
    assert!(message(source_configuration("S", &bad_port)).contains("Port"));
    let mut reserved = image("nginx");
    reserved
        .image_repository
        .as_mut()
        .unwrap()
        .image_configuration = Some(ImageConfiguration {
        runtime_environment_variables: Some(
            [("AWSAPPRUNNER_X".to_string(), "1".to_string())].into(),
        ),
        ..Default::default()
    });
    assert!(message(source_configuration("S", &reserved)).contains("reserved"));
}

#[test]
fn code_repositories_are_checked() {
    let code = |url: &str, branch: &str| SourceConfiguration {
        code_repository: Some(CodeRepository {
            repository_url: Some(url.into()),
            source_code_version: Some(SourceCodeVersion {
                kind: Some("BRANCH".into()),
                value: Some(branch.into()),
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    for url in [
        "https://git.example.com/a/b.git",
        "file:///srv/repo",
        "git@host:org/repo.git",
        "ssh://git@h/r",
        "upload://sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    ] {
        let s = source_configuration("S", &code(url, "main")).unwrap();
        let cfg = s.code_repository.unwrap().code_configuration.unwrap();
        assert_eq!(cfg.configuration_source.as_deref(), Some("REPOSITORY"));
    }
    for bad in ["ftp://x/y", "upload://sha256:abc", "upload://md5:00"] {
        assert!(message(source_configuration("S", &code(bad, "main"))).contains("RepositoryUrl"));
    }
    assert!(
        message(source_configuration("S", &code("https://h/r", "a..b")))
            .contains("SourceCodeVersion.Value")
    );
    let mut api = code("https://h/r", "main");
    api.code_repository.as_mut().unwrap().code_configuration = Some(CodeConfiguration {
        configuration_source: Some("API".into()),
        code_configuration_values: None,
    });
    assert!(
        message(source_configuration("S", &api)).contains("CodeConfigurationValues is required")
    );
    let mut escape = code("https://h/r", "main");
    escape.code_repository.as_mut().unwrap().source_directory = Some("../etc".into());
    assert!(message(source_configuration("S", &escape)).contains("SourceDirectory"));
}

#[test]
fn tags_follow_aws_rules() {
    let tag = |k: &str, v: &str| Tag {
        key: Some(k.into()),
        value: Some(v.into()),
    };
    assert_eq!(tags(&Some(vec![tag("team", "a")])).unwrap().len(), 1);
    assert!(message(tags(&Some(vec![tag("aws:owner", "a")]))).contains("aws:"));
    assert!(message(tags(&Some(vec![tag("", "a")]))).contains("Tags[0].Key"));
    assert!(message(tags(&Some(vec![tag("k", &"v".repeat(257))]))).contains("Tags[0].Value"));
    assert!(message(tags(&Some(vec![tag("k", "1"), tag("k", "2")]))).contains("more than once"));
    let many: Vec<Tag> = (0..51).map(|i| tag(&format!("k{i}"), "v")).collect();
    assert!(message(tags(&Some(many))).contains("at most 50"));
}

#[test]
fn auto_scaling_limits() {
    let req = |c, min, max| CreateAutoScalingConfigurationRequest {
        max_concurrency: c,
        min_size: min,
        max_size: max,
        ..Default::default()
    };
    assert_eq!(auto_scaling(&req(None, None, None)).unwrap(), (100, 1, 25));
    assert_eq!(
        auto_scaling(&req(Some(10), Some(0), Some(3))).unwrap(),
        (10, 0, 3)
    );
    assert!(message(auto_scaling(&req(Some(201), None, None))).contains("MaxConcurrency"));
    assert!(message(auto_scaling(&req(None, Some(26), None))).contains("MinSize"));
    assert!(message(auto_scaling(&req(None, None, Some(0)))).contains("MaxSize"));
    assert!(message(auto_scaling(&req(None, Some(5), Some(2)))).contains("must not be greater"));
}

#[test]
fn network_and_observability() {
    let d = network_configuration(None).unwrap();
    assert_eq!(
        d.egress_configuration.unwrap().egress_type.as_deref(),
        Some("DEFAULT")
    );
    let vpc = NetworkConfiguration {
        egress_configuration: Some(EgressConfiguration {
            egress_type: Some("VPC".into()),
            vpc_connector_arn: None,
        }),
        ..Default::default()
    };
    assert!(message(network_configuration(Some(&vpc))).contains("VpcConnectorArn is required"));
    let on = ServiceObservabilityConfiguration {
        observability_enabled: Some(true),
        observability_configuration_arn: None,
    };
    assert!(
        message(service_observability(&on)).contains("ObservabilityConfigurationArn is required")
    );
}

#[test]
fn arns_are_checked_for_kind() {
    let svc = Some("arn:aws:apprunner:us-east-1:123456789012:service/app/0123".to_string());
    assert!(arn("ServiceArn", &svc, ResourceKind::Service).is_ok());
    assert!(
        message(arn("ConnectionArn", &svc, ResourceKind::Connection))
            .contains("ConnectionArn must be the ARN of a connection")
    );
    assert!(
        message(arn(
            "ServiceArn",
            &Some("nope".into()),
            ResourceKind::Service
        ))
        .contains("ServiceArn is not a valid")
    );
    assert!(message(max_results(Some(0), 20)).contains("MaxResults"));
    assert_eq!(max_results(None, 20).unwrap(), 20);
}

#[test]
fn hosts_are_dns_labels() {
    assert_eq!(
        service_host(
            "My_App",
            "8fe1e10304f84fd2b0df550fe98a71fa",
            "runway.localhost"
        ),
        "my-app-8fe1e103.runway.localhost"
    );
}

#[test]
fn http_configurations_name_the_member_and_the_bounds() {
    let f = "HttpConfiguration";
    let ok = HttpConfiguration {
        instance_protocol: Some("H2C".into()),
        request_timeout_seconds: Some(3600),
        idle_timeout_seconds: Some(86400),
        max_request_body_bytes: Some(0),
    };
    assert_eq!(http_configuration(f, &ok).unwrap(), ok);
    assert_eq!(
        http_configuration(f, &HttpConfiguration::default()).unwrap(),
        HttpConfiguration::default()
    );
    let bad = |c: HttpConfiguration| message(http_configuration(f, &c));
    let m = bad(HttpConfiguration {
        instance_protocol: Some("h2c".into()),
        ..Default::default()
    });
    assert!(
        m.contains("HttpConfiguration.InstanceProtocol must be one of HTTP1, H2C"),
        "{m}"
    );
    let m = bad(HttpConfiguration {
        request_timeout_seconds: Some(3601),
        ..Default::default()
    });
    assert!(
        m.starts_with("HttpConfiguration.RequestTimeoutSeconds must be from 1"),
        "{m}"
    );
    let m = bad(HttpConfiguration {
        idle_timeout_seconds: Some(0),
        ..Default::default()
    });
    assert!(m.starts_with("HttpConfiguration.IdleTimeoutSeconds"), "{m}");
    let m = bad(HttpConfiguration {
        max_request_body_bytes: Some(-1),
        ..Default::default()
    });
    assert!(
        m.starts_with("HttpConfiguration.MaxRequestBodyBytes"),
        "{m}"
    );
}
