//! The certificate issuer's metrics. Names are defined here and nowhere else.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use runway_telemetry::Registry;

/// `runway_certificates_issued_total{kind}`: certificates the ACME CA issued, `kind`
/// `issue` (a domain's first) or `renewal`.
const ISSUED: &str = "runway_certificates_issued";
/// `runway_certificate_failures_total{kind}`: attempts that failed (the CA refused a
/// validation or could not be reached), `kind` `issue` or `renewal`.
const FAILURES: &str = "runway_certificate_failures";
/// `runway_certificate_expiry_timestamp_seconds{domain}`: when each served ACME
/// certificate expires (Unix seconds); a domain's series goes when it is disassociated.
const EXPIRY: &str = "runway_certificate_expiry_timestamp_seconds";
/// `runway_certificate_renewal_timestamp_seconds{domain}`: when each will be renewed.
const RENEWAL: &str = "runway_certificate_renewal_timestamp_seconds";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct Kind {
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct Domain {
    pub domain: String,
}

#[derive(Debug, Clone)]
pub(crate) struct CertMetrics {
    pub issued: Family<Kind, Counter>,
    pub failures: Family<Kind, Counter>,
    pub expiry: Family<Domain, Gauge>,
    pub renewal: Family<Domain, Gauge>,
}

impl CertMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = CertMetrics {
            issued: Family::default(),
            failures: Family::default(),
            expiry: Family::default(),
            renewal: Family::default(),
        };
        registry.register(
            ISSUED,
            "Certificates issued by the ACME CA, by kind (issue, renewal)",
            metrics.issued.clone(),
        );
        registry.register(
            FAILURES,
            "Certificate attempts that failed, by kind (issue, renewal)",
            metrics.failures.clone(),
        );
        registry.register(
            EXPIRY,
            "When each ACME certificate runway serves expires, in Unix seconds",
            metrics.expiry.clone(),
        );
        registry.register(
            RENEWAL,
            "When each ACME certificate runway serves will be renewed, in Unix seconds",
            metrics.renewal.clone(),
        );
        metrics
    }

    pub fn kind(renewal: bool) -> Kind {
        Kind {
            kind: if renewal { "renewal" } else { "issue" },
        }
    }

    pub fn served(&self, domain: &str, expiry: i64, renewal: i64) {
        let label = Domain {
            domain: domain.to_string(),
        };
        self.expiry.get_or_create(&label).set(expiry);
        self.renewal.get_or_create(&label).set(renewal);
    }

    pub fn forget(&self, domain: &str) {
        let label = Domain {
            domain: domain.to_string(),
        };
        self.expiry.remove(&label);
        self.renewal.remove(&label);
    }
}
