//! App Runner ARNs: `arn:aws:apprunner:<region>:<account>:<type>/<name>/.../<id>`.

use std::fmt;

/// The App Runner resource types that have ARNs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    Service,
    AutoScalingConfiguration,
    Connection,
    ObservabilityConfiguration,
    VpcConnector,
    VpcIngressConnection,
}

impl ResourceKind {
    /// The type segment of the ARN's resource part.
    pub fn segment(self) -> &'static str {
        match self {
            ResourceKind::Service => "service",
            ResourceKind::AutoScalingConfiguration => "autoscalingconfiguration",
            ResourceKind::Connection => "connection",
            ResourceKind::ObservabilityConfiguration => "observabilityconfiguration",
            ResourceKind::VpcConnector => "vpcconnector",
            ResourceKind::VpcIngressConnection => "vpcingressconnection",
        }
    }

    fn from_segment(s: &str) -> Option<Self> {
        Some(match s {
            "service" => ResourceKind::Service,
            "autoscalingconfiguration" => ResourceKind::AutoScalingConfiguration,
            "connection" => ResourceKind::Connection,
            "observabilityconfiguration" => ResourceKind::ObservabilityConfiguration,
            "vpcconnector" => ResourceKind::VpcConnector,
            "vpcingressconnection" => ResourceKind::VpcIngressConnection,
            _ => return None,
        })
    }
}

/// A parsed App Runner ARN. `path` is what follows the type: name, then (for revisioned
/// resources) revision, then id; partial ARNs have fewer segments.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Arn {
    pub partition: String,
    pub region: String,
    pub account: String,
    pub kind: ResourceKind,
    pub path: Vec<String>,
}

/// The longest ARN the API accepts.
pub const MAX_ARN_LEN: usize = 1011;

impl Arn {
    pub fn new(region: &str, account: &str, kind: ResourceKind, path: &[&str]) -> Self {
        Arn {
            partition: "aws".to_string(),
            region: region.to_string(),
            account: account.to_string(),
            kind,
            path: path.iter().map(|s| s.to_string()).collect(),
        }
    }

    /// Parses an App Runner ARN; `None` if it is not one.
    pub fn parse(s: &str) -> Option<Arn> {
        if s.is_empty() || s.len() > MAX_ARN_LEN {
            return None;
        }
        let mut parts = s.splitn(6, ':');
        let (arn, partition, service, region, account, resource) = (
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
            parts.next()?,
        );
        let partition_ok = partition == "aws"
            || partition.strip_prefix("aws-").is_some_and(|p| {
                !p.is_empty() && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            });
        let region_ok = region.len() <= 63
            && region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if arn != "arn"
            || !partition_ok
            || service != "apprunner"
            || !region_ok
            || account.len() != 12
            || !account.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        let mut segments = resource.split('/');
        let kind = ResourceKind::from_segment(segments.next()?)?;
        let path: Vec<String> = segments.map(str::to_string).collect();
        let path_ok = !path.is_empty()
            && path.iter().all(|p| {
                !p.is_empty()
                    && p.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            });
        if !path_ok {
            return None;
        }
        Some(Arn {
            partition: partition.to_string(),
            region: region.to_string(),
            account: account.to_string(),
            kind,
            path,
        })
    }

    /// The resource name (first path segment).
    pub fn name(&self) -> &str {
        &self.path[0]
    }
}

impl fmt::Display for Arn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "arn:{}:apprunner:{}:{}:{}",
            self.partition,
            self.region,
            self.account,
            self.kind.segment()
        )?;
        for p in &self.path {
            write!(f, "/{p}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_full_and_partial_arns() {
        for s in [
            "arn:aws:apprunner:us-east-1:123456789012:service/python-app/8fe1e10304f84fd2b0df550fe98a71fa",
            "arn:aws:apprunner:us-east-1:123456789012:autoscalingconfiguration/high-availability/2/e76562f50d78042e819fead0f59672e6",
            "arn:aws:apprunner:us-east-1:123456789012:autoscalingconfiguration/high-availability",
            "arn:aws-cn:apprunner:cn-north-1:123456789012:connection/my-github/e7656250f67242d7819feade6800f59e",
        ] {
            let arn = Arn::parse(s).unwrap_or_else(|| panic!("{s} should parse"));
            assert_eq!(arn.to_string(), s);
        }
        let arn = Arn::parse("arn:aws:apprunner:us-east-1:123456789012:service/app/id").unwrap();
        assert_eq!(arn.kind, ResourceKind::Service);
        assert_eq!(arn.name(), "app");
    }

    #[test]
    fn rejects_what_is_not_an_app_runner_arn() {
        for s in [
            "",
            "service/app/id",
            "arn:aws:s3:us-east-1:123456789012:service/app/id",
            "arn:aws:apprunner:us-east-1:1234:service/app/id",
            "arn:aws:apprunner:us-east-1:123456789012:bucket/app/id",
            "arn:aws:apprunner:us-east-1:123456789012:service",
            "arn:aws:apprunner:us-east-1:123456789012:service//id",
            "arn:aws:apprunner:us-east-1:123456789012:service/a b/id",
            "arn:aws:apprunner:US-EAST-1:123456789012:service/app/id",
        ] {
            assert!(Arn::parse(s).is_none(), "{s:?} should not parse");
        }
    }
}
