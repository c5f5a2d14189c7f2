use super::*;
use runway_model::shapes::HttpConfiguration;

fn revision(id: &str, api: Option<&str>, source: Option<&str>) -> RevisionRecord {
    let config = |p: Option<&str>| {
        p.map(|p| HttpConfiguration {
            instance_protocol: Some(p.into()),
            ..Default::default()
        })
    };
    let mut spec: ServiceSpec = serde_json::from_value(serde_json::json!({
        "SourceConfiguration": {},
        "InstanceConfiguration": {},
        "HealthCheckConfiguration": {},
        "AutoScalingConfigurationArn": "asc",
        "NetworkConfiguration": {},
    }))
    .unwrap();
    spec.http_configuration = config(api);
    RevisionRecord {
        id: id.into(),
        service_arn: "arn".into(),
        number: 1,
        created_at: runway_model::Timestamp::from_millis(0),
        spec,
        image: None,
        status: RevisionStatus::Serving,
        message: None,
        secrets: Vec::new(),
        source_http_configuration: config(source),
    }
}

#[test]
fn traffic_goes_to_revisions_of_one_protocol() {
    let http1 = revision("a", None, None);
    let yaml_h2c = revision("b", None, Some("H2C"));
    let api_h2c = revision("c", Some("H2C"), Some("HTTP1"));
    let api_http1 = revision("d", Some("HTTP1"), Some("H2C"));
    assert!(one_protocol(&[&yaml_h2c, &api_h2c]).is_ok());
    assert!(one_protocol(&[&http1, &api_http1]).is_ok());
    assert!(one_protocol(&[]).is_ok());
    let Err(crate::OpError::Api(e)) = one_protocol(&[&http1, &api_http1, &yaml_h2c]) else {
        panic!("a split between HTTP1 and H2C was allowed");
    };
    assert!(
        e.message
            .contains("revision a speaks HTTP1 and revision b speaks H2C"),
        "{}",
        e.message
    );
}
