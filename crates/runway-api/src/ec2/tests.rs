use super::params::{Params, glob};
use super::xml::Xml;

#[test]
fn parameters_decode_lists_and_structures() {
    let body = b"Action=AuthorizeSecurityGroupEgress&GroupId=sg-1&\
IpPermissions.1.IpProtocol=tcp&IpPermissions.1.FromPort=5432&\
IpPermissions.1.IpRanges.2.CidrIp=10.0.2.0%2F24&IpPermissions.1.IpRanges.1.CidrIp=10.0.1.0%2F24&\
IpPermissions.10.IpProtocol=udp&Filter.1.Name=vpc-id&Filter.1.Value.1=vpc-a&Filter.1.Value.2=vpc+b";
    let p = Params::parse(Some("Version=2016-11-15"), body).unwrap();
    assert_eq!(p.get("Action"), Some("AuthorizeSecurityGroupEgress"));
    assert_eq!(p.get("Version"), Some("2016-11-15"));
    let permissions = p.items("IpPermissions");
    assert_eq!(permissions.len(), 2, "1 and 10, in number order");
    assert_eq!(permissions[0].get("IpProtocol"), Some("tcp"));
    assert_eq!(permissions[1].get("IpProtocol"), Some("udp"));
    let ranges: Vec<_> = permissions[0]
        .items("IpRanges")
        .iter()
        .map(|r| r.get("CidrIp").unwrap().to_string())
        .collect();
    assert_eq!(ranges, ["10.0.1.0/24", "10.0.2.0/24"]);
    let err = permissions[1].required("FromPort").unwrap_err();
    assert!(
        err.message.contains("IpPermissions.10.FromPort"),
        "{}",
        err.message
    );
    assert_eq!(
        p.filters().unwrap(),
        [(
            "vpc-id".to_string(),
            vec!["vpc-a".to_string(), "vpc b".to_string()]
        )]
    );
    assert!(p.int("GroupId").is_err());
}

#[test]
fn filter_values_are_globs() {
    assert!(glob("vpc-*", "vpc-0123"));
    assert!(glob("10.?.0.0/16", "10.1.0.0/16"));
    assert!(!glob("10.?.0.0/16", "10.12.0.0/16"));
    assert!(glob("exact", "exact"));
    assert!(!glob("exact", "exactly"));
}

#[test]
fn xml_is_escaped_and_lists_hold_items() {
    let mut x = Xml::default();
    x.open("a");
    x.text("name", "<&\"'>");
    x.strings("set", &["one".to_string(), "two".to_string()]);
    x.close("a");
    assert_eq!(
        x.finish(),
        "<a><name>&lt;&amp;&quot;&apos;&gt;</name><set><item>one</item><item>two</item></set></a>"
    );
}

#[test]
fn odd_forms_are_read_without_panicking() {
    for body in [
        &b""[..],
        b"&&&=&=",
        b"%",
        b"%zz=%ff",
        b"Filter.99999999999999999999.Name=x",
        b"IpPermissions.1.IpRanges.1.CidrIp=%00&IpPermissions.1.FromPort=-99999999999999999999",
        b"TagSpecification.1.Tag.1.Key=&TagSpecification.1.ResourceType=subnet",
        b"MaxResults=4&NextToken=%2F%2F",
        b"\xff\xfe=1",
    ] {
        super::read_all(body);
    }
}
