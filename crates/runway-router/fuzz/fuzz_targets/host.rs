//! Host header and request-target parsing: no panic, and accepted hosts are normalised.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    runway_router::fuzzing::host(data);
});
