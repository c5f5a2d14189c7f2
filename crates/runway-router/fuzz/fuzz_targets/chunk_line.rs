//! Chunk-size lines of chunked responses from instances: no panic, and what is accepted
//! is a well-formed line whose size is its hex digits' value.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    runway_router::fuzzing::chunk_line(data);
});
