use super::*;
use runway_model::Timestamp;
use runway_model::records::*;
use runway_model::shapes::HttpConfiguration;

fn service() -> ServiceRecord {
    let spec: ServiceSpec = serde_json::from_value(serde_json::json!({
        "SourceConfiguration": {},
        "InstanceConfiguration": {},
        "HealthCheckConfiguration": {},
        "AutoScalingConfigurationArn": "asc",
        "NetworkConfiguration": {},
    }))
    .unwrap();
    ServiceRecord {
        arn: "arn:svc".into(),
        id: "svc1".into(),
        name: "app".into(),
        url: "app-svc1.runway.localhost".into(),
        status: ServiceStatus::Running,
        created_at: Timestamp::from_millis(0),
        updated_at: Timestamp::from_millis(0),
        deleted_at: None,
        spec,
    }
}

fn revision(id: &str, service: &ServiceRecord, http: Option<HttpConfiguration>) -> RevisionRecord {
    let mut spec = service.spec.clone();
    spec.http_configuration = http;
    RevisionRecord {
        id: id.into(),
        service_arn: service.arn.clone(),
        number: 1,
        created_at: Timestamp::from_millis(0),
        spec,
        image: None,
        status: RevisionStatus::Serving,
        message: None,
        secrets: Vec::new(),
        source_http_configuration: Some(HttpConfiguration {
            instance_protocol: Some("H2C".into()),
            ..Default::default()
        }),
    }
}

#[test]
fn the_route_applies_the_primary_revisions_http_settings() {
    let service = service();
    let mut snap = Snapshot::default();
    let fast = HttpConfiguration {
        request_timeout_seconds: Some(5),
        idle_timeout_seconds: Some(7),
        max_request_body_bytes: Some(0),
        ..Default::default()
    };
    for r in [
        revision("svc1-00001", &service, None),
        revision("svc1-00002", &service, Some(fast)),
    ] {
        snap.revisions.insert(r.id.clone(), r);
    }
    let target = |revision: &str, percent| TrafficTarget {
        revision: revision.into(),
        percent,
        tag: None,
    };
    snap.states.insert(
        service.arn.clone(),
        ServiceState {
            service_arn: service.arn.clone(),
            traffic: vec![target("svc1-00001", 10), target("svc1-00002", 90)],
            ..Default::default()
        },
    );
    snap.services.push(service);
    let table = routes(&snap, &[], &HashSet::new(), true);
    let route = &table.services[0];
    assert_eq!(route.upstream, Upstream::H2c, "apprunner.yaml's protocol");
    assert_eq!(route.request_timeout, Duration::from_secs(5));
    assert_eq!(route.idle_timeout, Duration::from_secs(7));
    assert_eq!(route.max_request_body, UNLIMITED_REQUEST_BODY);
    table.validate().unwrap();
}

#[test]
fn the_models_defaults_are_the_routers() {
    let d = HttpSettings::default();
    let r = ServiceRoute::new("s", "h");
    assert_eq!(d.request_timeout, r.request_timeout);
    assert_eq!(d.idle_timeout, r.idle_timeout);
    assert_eq!(d.max_request_body, Some(r.max_request_body));
    assert_eq!(Upstream::Http1, r.upstream);
    assert_eq!(
        Duration::from_secs(runway_model::http::MAX_REQUEST_TIMEOUT_SECONDS as u64),
        runway_router::MAX_REQUEST_TIMEOUT
    );
    assert_eq!(
        Duration::from_secs(runway_model::http::MAX_IDLE_TIMEOUT_SECONDS as u64),
        runway_router::MAX_IDLE_TIMEOUT
    );
}

#[test]
fn instances_are_told_their_region_unless_the_service_sets_it() {
    let mut service = service();
    service.arn = "arn:aws:apprunner:eu-west-3:000000000000:service/app/svc1".into();
    let mut rev = revision("r1", &service, None);
    rev.image = Some(ResolvedImage {
        repository: "builds/app".into(),
        digest: "sha256:00".into(),
    });
    let env = instance_spec(&service, &rev).unwrap().env;
    let get = |env: &[(String, String)], k: &str| {
        env.iter()
            .filter(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(get(&env, "AWS_REGION"), ["eu-west-3"]);
    assert_eq!(get(&env, "AWS_DEFAULT_REGION"), ["eu-west-3"]);

    // The service's own value wins, once.
    let image = rev
        .spec
        .source_configuration
        .image_repository
        .get_or_insert_with(Default::default);
    image
        .image_configuration
        .get_or_insert_with(Default::default)
        .runtime_environment_variables = Some(
        [("AWS_REGION".to_string(), "us-west-2".to_string())]
            .into_iter()
            .collect(),
    );
    let env = instance_spec(&service, &rev).unwrap().env;
    assert_eq!(get(&env, "AWS_REGION"), ["us-west-2"]);
    assert_eq!(get(&env, "AWS_DEFAULT_REGION"), ["eu-west-3"]);
}
