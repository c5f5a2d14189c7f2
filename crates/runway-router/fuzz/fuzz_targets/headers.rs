//! Header rewriting (hop-by-hop removal, X-Forwarded-*, request and trace ids): no panic,
//! and no hop-by-hop header survives.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    runway_router::fuzzing::headers(data);
});
