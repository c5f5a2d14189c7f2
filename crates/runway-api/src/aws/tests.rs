use super::*;
use crate::protocol::parse;

#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
#[allow(dead_code)]
struct Input {
    #[serde(default)]
    secret_string: Option<String>,
    #[serde(default)]
    overwrite: Option<bool>,
}

#[test]
fn a_malformed_member_is_named_without_its_value() {
    let err = parse::<Input>(br#"{"Overwrite": "hunter2-value"}"#).unwrap_err();
    assert_eq!(err.type_name, "SerializationException");
    assert!(
        err.message.starts_with("Overwrite: expected"),
        "{}",
        err.message
    );
    assert!(!err.message.contains("hunter2"), "{}", err.message);
    let err = parse::<Input>(br#"{"SecretString": 12345678}"#).unwrap_err();
    assert!(!err.message.contains("12345678"), "{}", err.message);
    let err = parse::<Input>(br#"{"SecretString": "hunter2"#).unwrap_err();
    assert!(!err.message.contains("hunter2"), "{}", err.message);
    assert!(parse::<Input>(b"").is_ok());
    assert!(parse::<Input>(b"[1]").is_err());
}

#[test]
fn pages_walk_every_item_once_and_refuse_foreign_tokens() {
    let items: Vec<u32> = (0..7).collect();
    let mut token = None;
    let mut seen = Vec::new();
    loop {
        let (out, next) = page(items.clone(), token.as_deref(), 3, "InvalidNextToken").unwrap();
        seen.extend(out);
        match next {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    assert_eq!(seen, items);
    let err = page(items, Some("nope"), 3, "InvalidMarkerException").unwrap_err();
    assert_eq!(err.type_name, "InvalidMarkerException");
}
