//! runway's HTTP settings as the API, the CLI and apprunner.yaml read them: the
//! extension operation's input, validated and resolved, and the duration and size texts.
//! No input may panic, and what validation accepts must resolve within the bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use runway_model::http::{self, HttpSettings};
use runway_model::shapes::UpdateServiceHttpConfigurationRequest;
use runway_model::validate;
use std::time::Duration;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = http::parse_duration(text);
        let _ = http::parse_size(text);
    }
    let Ok(req) = serde_json::from_slice::<UpdateServiceHttpConfigurationRequest>(data) else {
        return;
    };
    let Some(cfg) = &req.http_configuration else {
        return;
    };
    if let Ok(cfg) = validate::http_configuration("HttpConfiguration", cfg) {
        let s = HttpSettings::resolve(Some(&cfg), None);
        assert!(s.request_timeout >= Duration::from_secs(1));
        assert!(s.request_timeout.as_secs() <= http::MAX_REQUEST_TIMEOUT_SECONDS as u64);
        assert!(s.idle_timeout.as_secs() <= http::MAX_IDLE_TIMEOUT_SECONDS as u64);
        assert_eq!(HttpSettings::resolve(Some(&s.to_wire()), None), s);
    }
});
