//! Custom domains and their certificates: what is stored for each domain (its status,
//! the validation records users add, the certificate issued and the ACME order in
//! flight), and the rules a domain name must follow.

use crate::error::ApiError;
use crate::records::wire_enum;
use crate::time::Timestamp;
use serde::{Deserialize, Serialize};

/// App Runner's quota of custom domains per service.
pub const MAX_DOMAINS_PER_SERVICE: usize = 5;
/// The label under which ACME DNS-01 challenges are looked up (RFC 8555, section 8.4).
pub const ACME_CHALLENGE_LABEL: &str = "_acme-challenge";
/// The validation zone's label under the base domain: `_acme-challenge` CNAME records
/// point into `acme-validations.<base-domain>`.
pub const VALIDATION_ZONE_LABEL: &str = "acme-validations";

wire_enum! {
    /// Where a custom domain association is in its life (App Runner's
    /// CustomDomainAssociationStatus).
    pub enum DomainStatus {
        Creating => "CREATING",
        CreateFailed => "CREATE_FAILED",
        Active => "ACTIVE",
        Deleting => "DELETING",
        DeleteFailed => "DELETE_FAILED",
        PendingCertificateDnsValidation => "PENDING_CERTIFICATE_DNS_VALIDATION",
        BindingCertificate => "BINDING_CERTIFICATE",
    }
}

wire_enum! {
    /// Whether a validation record has done its job.
    pub enum ValidationStatus {
        PendingValidation => "PENDING_VALIDATION",
        Success => "SUCCESS",
        Failed => "FAILED",
    }
}

wire_enum! {
    /// How the CA is shown control of a name (RFC 8555 and RFC 8737).
    pub enum ChallengeKind {
        Dns01 => "dns-01",
        Http01 => "http-01",
        TlsAlpn01 => "tls-alpn-01",
    }
}

impl std::str::FromStr for ChallengeKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "dns-01" => Ok(ChallengeKind::Dns01),
            "http-01" => Ok(ChallengeKind::Http01),
            "tls-alpn-01" => Ok(ChallengeKind::TlsAlpn01),
            other => Err(format!(
                "unknown challenge type {other:?}: use dns-01, http-01 or tls-alpn-01"
            )),
        }
    }
}

/// A CNAME record the user adds: `_acme-challenge.<name>` pointing into runway's
/// validation zone, where runway answers the CA's TXT queries itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidationRecord {
    /// The name the record proves (`example.com`, `www.example.com`, `*.example.com`).
    pub identifier: String,
    /// `_acme-challenge.<identifier without *.>`.
    pub name: String,
    /// `_<random>.acme-validations.<base-domain>.`
    pub value: String,
    pub status: ValidationStatus,
}

impl ValidationRecord {
    /// The TXT record runway serves for this record's challenge: the value without its
    /// trailing dot.
    pub fn txt_name(&self) -> &str {
        self.value.strip_suffix('.').unwrap_or(&self.value)
    }
}

/// The certificate a domain serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedCertificate {
    /// The serial number, in hex.
    pub serial: String,
    pub not_before: Timestamp,
    pub not_after: Timestamp,
    /// When to renew: two thirds into its lifetime, or in the CA's suggested window.
    pub renew_at: Timestamp,
    /// How many times it has been renewed.
    #[serde(default)]
    pub renewals: u32,
    /// The ARI identifier (RFC 9773), for the renewal that replaces it.
    #[serde(default)]
    pub ari_id: Option<String>,
}

/// One challenge runway answers for an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingChallenge {
    pub identifier: String,
    pub kind: ChallengeKind,
    /// The challenge's URL at the CA.
    pub url: String,
    pub token: String,
    /// The key authorization (RFC 8555, section 8.1): what HTTP-01 answers; DNS-01 and
    /// TLS-ALPN-01 answer its digest. Public by nature.
    pub key_authorization: String,
    /// For DNS-01: the TXT record's name in runway's zones.
    #[serde(default)]
    pub txt_name: Option<String>,
}

/// Where an ACME order stands, recorded before each step is acted on so that a restart
/// resumes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum OrderStep {
    /// The order exists at the CA; its challenges are not answered yet.
    Placed,
    /// runway answers these challenges and told the CA to check them.
    Answered { challenges: Vec<PendingChallenge> },
    /// The CA validated every name; the CSR for this key (sealed with the master key)
    /// was or is being sent.
    Finalizing { key_sealed: String },
}

/// An ACME order in flight for a domain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderProgress {
    /// The order's URL at the CA.
    pub url: String,
    pub kind: ChallengeKind,
    /// Whether it renews a certificate already served.
    pub renewal: bool,
    pub started_at: Timestamp,
    #[serde(flatten)]
    pub step: OrderStep,
}

/// A domain runway serves a certificate for: a service's custom domain, or (without a
/// service) the base domain's own wildcard certificate. Keyed by the domain name, which
/// only one service may hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainRecord {
    pub domain: String,
    /// The service the domain routes to; `None` for the base domain's certificate.
    #[serde(default)]
    pub service_arn: Option<String>,
    /// `www.<domain>` too.
    pub www: bool,
    pub status: DomainStatus,
    pub validation_records: Vec<ValidationRecord>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Why the last attempt failed (or why the domain failed).
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub certificate: Option<IssuedCertificate>,
    #[serde(default)]
    pub order: Option<OrderProgress>,
    /// Attempts that failed in a row; the next waits longer.
    #[serde(default)]
    pub failures: u32,
    /// No attempt before this.
    #[serde(default)]
    pub retry_at: Option<Timestamp>,
    /// The challenge type that failed last, so that the next attempt tries another.
    #[serde(default)]
    pub failed_kind: Option<ChallengeKind>,
}

impl DomainRecord {
    /// The names the certificate covers and the router serves: the domain, then
    /// `www.<domain>` when asked (the base domain: `*.<base>` and `<base>`).
    pub fn names(&self) -> Vec<String> {
        if self.service_arn.is_none() {
            return vec![format!("*.{}", self.domain), self.domain.clone()];
        }
        let mut names = vec![self.domain.clone()];
        if self.www {
            names.push(format!("www.{}", self.domain));
        }
        names
    }
}

/// Checks a DomainName: a lowercase DNS name (uppercase is folded) of at least two
/// labels, optionally `*.` and such a name; not reserved, not under `base_domain`.
/// Returns it lowercased.
pub fn domain_name(field: &str, value: &str, base_domain: &str) -> Result<String, ApiError> {
    let invalid = |why: &str| ApiError::invalid(format!("{field}: {value:?} {why}"));
    if value.is_empty() || value.len() > 255 {
        return Err(invalid("must be 1 to 255 characters"));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'*' || b == b'.' || b == b'-')
    {
        return Err(invalid(
            "may only hold letters, digits, '-', '.' and a leading '*.'",
        ));
    }
    let name = value.to_ascii_lowercase();
    let rest = name.strip_prefix("*.").unwrap_or(&name);
    if rest.contains('*') {
        return Err(invalid(
            "may only be a wildcard as its first label (*.example.com)",
        ));
    }
    if rest.len() > 253 {
        return Err(invalid("is longer than a DNS name may be (253 characters)"));
    }
    let labels: Vec<&str> = rest.split('.').collect();
    for label in &labels {
        if label.is_empty() {
            return Err(invalid("has an empty label (two dots, or a dot at an end)"));
        }
        if label.len() > 63 {
            return Err(invalid("has a label longer than 63 characters"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(invalid("has a label that starts or ends with '-'"));
        }
    }
    let tld = labels.last().copied().unwrap_or_default();
    if labels.len() < 2 {
        return Err(invalid(
            "is a top-level domain: give a domain you own (example.com)",
        ));
    }
    if tld.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid("is an IP address, not a domain name"));
    }
    // Special-use names (RFC 6761, RFC 6762, RFC 9476) no public CA issues for.
    const RESERVED: &[&str] = &["localhost", "invalid", "local", "arpa", "alt", "internal"];
    if RESERVED.contains(&tld) {
        return Err(invalid(&format!(
            "is under .{tld}, a special-use name no certificate authority issues for"
        )));
    }
    let base = base_domain.to_ascii_lowercase();
    if rest == base || rest.ends_with(&format!(".{base}")) {
        return Err(invalid(&format!(
            "is under runway's base domain {base}: services already have names there"
        )));
    }
    Ok(name)
}

/// The name a DNS-01 challenge for `identifier` is looked up at:
/// `_acme-challenge.<identifier without *.>`.
pub fn challenge_name(identifier: &str) -> String {
    let bare = identifier.strip_prefix("*.").unwrap_or(identifier);
    format!("{ACME_CHALLENGE_LABEL}.{bare}")
}

/// The validation records for `names`: one CNAME each, to a random name in
/// `acme-validations.<base_domain>` (`random` gives 16 bytes of randomness per call).
pub fn validation_records(
    names: &[String],
    base_domain: &str,
    mut random: impl FnMut() -> [u8; 16],
) -> Vec<ValidationRecord> {
    names
        .iter()
        .map(|identifier| {
            let label: String = random().iter().map(|b| format!("{b:02x}")).collect();
            ValidationRecord {
                identifier: identifier.clone(),
                name: challenge_name(identifier),
                value: format!("_{label}.{VALIDATION_ZONE_LABEL}.{base_domain}."),
                status: ValidationStatus::PendingValidation,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(value: &str) -> Result<String, String> {
        domain_name("DomainName", value, "runway.example.net").map_err(|e| e.message)
    }

    #[test]
    fn domain_names_follow_dns_and_app_runner_rules() {
        assert_eq!(check("Example.COM").unwrap(), "example.com");
        assert_eq!(
            check("admin.login.example.com").unwrap(),
            "admin.login.example.com"
        );
        assert_eq!(check("*.example.com").unwrap(), "*.example.com");
        for (bad, why) in [
            ("", "1 to 255"),
            ("exa_mple.com", "may only hold"),
            ("example.com.", "empty label"),
            ("a..example.com", "empty label"),
            ("-a.example.com", "starts or ends"),
            ("login.*.example.com", "first label"),
            ("*.*.example.com", "first label"),
            ("com", "top-level"),
            ("*.com", "top-level"),
            ("192.168.1.10", "IP address"),
            ("app.localhost", ".localhost"),
            ("printer.local", ".local"),
            ("runway.example.net", "base domain"),
            ("app.runway.example.net", "base domain"),
            ("*.runway.example.net", "base domain"),
        ] {
            let err = check(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
            assert!(err.starts_with("DomainName: "), "{err}");
        }
        assert!(check(&format!("{}.com", "a".repeat(64))).is_err());
        assert!(check("notrunway.example.net").is_ok());
    }

    #[test]
    fn validation_records_point_each_name_into_the_validation_zone() {
        let mut n = 0u8;
        let records = validation_records(
            &["*.example.com".into(), "www.example.com".into()],
            "runway.example.net",
            || {
                n += 1;
                [n; 16]
            },
        );
        assert_eq!(records[0].name, "_acme-challenge.example.com");
        assert_eq!(
            records[0].value,
            format!("_{}.acme-validations.runway.example.net.", "01".repeat(16))
        );
        assert_eq!(
            records[1].txt_name(),
            format!("_{}.acme-validations.runway.example.net", "02".repeat(16))
        );
        assert_eq!(records[1].name, "_acme-challenge.www.example.com");
    }
}
