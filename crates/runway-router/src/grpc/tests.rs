use super::*;
use http::HeaderValue;

#[test]
fn grpc_requests_are_told_by_their_content_type() {
    let with = |value: &'static str| {
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(value));
        is_grpc(&headers)
    };
    assert!(with("application/grpc"));
    assert!(with("application/grpc+proto"));
    assert!(with("application/grpc-web"));
    assert!(!with("application/json"));
    assert!(!is_grpc(&HeaderMap::new()));
}
