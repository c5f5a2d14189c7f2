//! Identifiers as App Runner forms them.

use uuid::Uuid;

/// A resource id: 32 lowercase hex digits (the last segment of a service's ARN).
pub fn new_resource_id() -> String {
    Uuid::new_v4().simple().to_string()
}

/// An operation id: a hyphenated UUID.
pub fn new_operation_id() -> String {
    Uuid::new_v4().hyphenated().to_string()
}

/// Whether `s` is a hyphenated UUID as the API's `UUID` shape allows.
pub fn is_uuid(s: &str) -> bool {
    s.len() == 36 && Uuid::try_parse(s).is_ok()
}
