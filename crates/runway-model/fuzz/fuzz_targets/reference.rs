//! Image references and ARNs come straight from API input: parsing must never panic, and
//! whatever parses must print back to something that parses to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use runway_model::Arn;
use runway_model::reference::ImageReference;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = ImageReference::parse(s) {
        let again = ImageReference::parse(&r.to_string()).expect("a normalised reference parses");
        assert_eq!(again, r);
    }
    if let Some(arn) = Arn::parse(s) {
        assert_eq!(arn.to_string(), s);
    }
});
