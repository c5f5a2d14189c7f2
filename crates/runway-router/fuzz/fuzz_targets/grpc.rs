//! `grpc-timeout` values from clients and `grpc-message` encoding: no panic, only
//! well-formed timeouts accepted, messages that decode back to themselves.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    runway_router::fuzzing::grpc(data);
});
