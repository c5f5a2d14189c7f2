//! The EC2 subset reads every form a client with a valid signature sends: no form may
//! make parsing it, or reading its lists, structures, filters and tags, panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    runway_api::fuzzing::ec2_params(data);
});
