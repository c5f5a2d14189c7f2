//! CreateService input as the API parses and validates it: no input may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use runway_model::shapes::CreateServiceRequest;
use runway_model::validate;

fuzz_target!(|data: &[u8]| {
    let Ok(req) = serde_json::from_slice::<CreateServiceRequest>(data) else {
        return;
    };
    let _ = validate::service_name(&req.service_name);
    if let Some(src) = &req.source_configuration {
        let _ = validate::source_configuration("SourceConfiguration", src);
    }
    let _ = validate::instance_configuration(req.instance_configuration.as_ref());
    let _ = validate::health_check(req.health_check_configuration.as_ref());
    let _ = validate::network_configuration(req.network_configuration.as_ref());
    let _ = validate::tags(&req.tags);
    if let Some(o) = &req.observability_configuration {
        let _ = validate::service_observability(o);
    }
    if let Some(e) = &req.encryption_configuration {
        let _ = validate::encryption_configuration(e);
    }
});
