//! Translations from stored records to what the runtime and the router take.

use crate::snapshot::Snapshot;
use runway_model::arn::Arn;
use runway_model::http::{HttpSettings, InstanceProtocol};
use runway_model::records::{RevisionRecord, ServiceRecord};
use runway_router::{
    Endpoint, RevisionRoute, RouteTable, ServiceRoute, UNLIMITED_REQUEST_BODY, Upstream,
};
use runway_runtime::{HealthCheck, ImageRef, InstanceSpec, InstanceState, InstanceStatus, Probe};
use std::collections::HashSet;
use std::time::Duration;

/// How a revision's instances are run; `None` if the revision has no image yet.
pub(crate) fn instance_spec(
    service: &ServiceRecord,
    revision: &RevisionRecord,
) -> Option<InstanceSpec> {
    let image = revision.image.as_ref()?;
    let spec = &revision.spec;
    let config = spec
        .source_configuration
        .image_repository
        .as_ref()
        .and_then(|i| i.image_configuration.clone())
        .unwrap_or_default();
    let number = |v: &Option<String>, default: u32| {
        v.as_deref().and_then(|s| s.parse().ok()).unwrap_or(default)
    };
    let health = &spec.health_check_configuration;
    let secs =
        |v: Option<i64>, default: u64| Duration::from_secs(v.map_or(default, |n| n.max(1) as u64));
    let probe = match health.protocol.as_deref() {
        Some("HTTP") => Probe::Http {
            path: health.path.clone().unwrap_or_else(|| "/".into()),
        },
        _ => Probe::Tcp,
    };
    let mut env: Vec<(String, String)> = config
        .runtime_environment_variables
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    // App Runner's instances are told their region as the AWS SDKs look for it, so that
    // `boto3.client("s3")` and the like work without one in the code; a service that sets
    // either variable keeps its own.
    if let Some(arn) = Arn::parse(&service.arn) {
        for name in ["AWS_REGION", "AWS_DEFAULT_REGION"] {
            if !env.iter().any(|(k, _)| k == name) {
                env.push((name.to_string(), arn.region.clone()));
            }
        }
    }
    Some(InstanceSpec {
        service_id: service.id.clone(),
        revision_id: revision.id.clone(),
        image: ImageRef {
            repository: image.repository.clone(),
            digest: image.digest.clone(),
        },
        start_command: config.start_command.clone(),
        env,
        // Resolved from the revision's pins when an instance starts.
        secrets: Default::default(),
        port: config
            .port
            .as_deref()
            .and_then(|p| p.parse().ok())
            .unwrap_or(8080),
        cpu_units: number(&spec.instance_configuration.cpu, 1024),
        memory_mb: number(&spec.instance_configuration.memory, 2048),
        health: HealthCheck {
            probe,
            interval: secs(health.interval, 5),
            timeout: secs(health.timeout, 2),
            healthy_threshold: health.healthy_threshold.map_or(1, |n| n.max(1) as u32),
            unhealthy_threshold: health.unhealthy_threshold.map_or(5, |n| n.max(1) as u32),
        },
        vpc_connector: spec
            .network_configuration
            .egress_configuration
            .as_ref()
            .filter(|e| e.egress_type.as_deref() == Some("VPC"))
            .and_then(|e| e.vpc_connector_arn.clone()),
        ipv6: spec.network_configuration.ip_address_type.as_deref() == Some("DUAL_STACK"),
    })
}

/// Sets a route's HTTP settings. The router applies one set per service: its primary
/// revision's (the one with the most traffic), so a deployment's settings take effect
/// when its traffic switches.
fn apply_http(route: &mut ServiceRoute, http: &HttpSettings) {
    route.upstream = match http.protocol {
        InstanceProtocol::Http1 => Upstream::Http1,
        InstanceProtocol::H2c => Upstream::H2c,
    };
    route.request_timeout = http.request_timeout;
    route.idle_timeout = http.idle_timeout;
    route.max_request_body = http.max_request_body.unwrap_or(UNLIMITED_REQUEST_BODY);
}

/// The route table: every service with traffic, its revisions by percent and tag, and
/// their healthy instances that are not being drained.
pub(crate) fn routes(
    snap: &Snapshot,
    instances: &[InstanceStatus],
    draining: &HashSet<String>,
    https_redirect: bool,
) -> RouteTable {
    let mut services = Vec::new();
    for service in &snap.services {
        let state = snap.state(&service.arn);
        if state.traffic.is_empty() {
            continue;
        }
        let mut route = ServiceRoute::new(service.id.clone(), service.url.clone());
        if let Some(domains) = snap.domains.get(&service.arn) {
            route.hosts.extend(domains.iter().cloned());
        }
        if let Some(primary) = state
            .primary_revision()
            .and_then(|id| snap.revisions.get(id))
        {
            apply_http(&mut route, &primary.http_settings());
        }
        route.paused = state.paused;
        route.https_redirect = https_redirect;
        route.max_concurrency = snap.bounds(service).max_concurrency;
        route.public = service
            .spec
            .network_configuration
            .ingress_configuration
            .as_ref()
            .and_then(|i| i.is_publicly_accessible)
            != Some(false);
        route.dual_stack = service
            .spec
            .network_configuration
            .ip_address_type
            .as_deref()
            == Some("DUAL_STACK");
        route.private_listeners = snap
            .ingress
            .iter()
            .filter(|c| c.service_arn == service.arn)
            .map(|c| c.vpc_endpoint_id.clone())
            .collect();
        route.revisions = state
            .traffic
            .iter()
            .map(|t| RevisionRoute {
                revision_id: t.revision.clone(),
                percent: t.percent,
                tag: t.tag.clone(),
                endpoints: instances
                    .iter()
                    .filter(|i| {
                        i.revision_id == t.revision
                            && i.state == InstanceState::Healthy
                            && !draining.contains(i.id.as_str())
                    })
                    .map(|i| Endpoint {
                        instance_id: i.id.to_string(),
                        addr: i.addr,
                    })
                    .collect(),
            })
            .collect();
        services.push(route);
    }
    RouteTable { services }
}

#[cfg(test)]
mod tests;
