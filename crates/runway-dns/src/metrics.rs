//! The DNS server's metrics. Names are defined here and nowhere else.

use hickory_proto::op::ResponseCode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use runway_telemetry::Registry;

/// `runway_dns_responses_total{rcode}`: responses sent, by response code
/// (`NOERROR`, `NXDOMAIN`, `REFUSED`, ...).
const RESPONSES: &str = "runway_dns_responses";
/// `runway_dns_rate_limited_total`: UDP queries not answered because their client
/// network was over the response rate limit.
const RATE_LIMITED: &str = "runway_dns_rate_limited";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct Rcode {
    pub rcode: &'static str,
}

/// A response code as dig names it.
fn mnemonic(code: ResponseCode) -> &'static str {
    match code {
        ResponseCode::NoError => "NOERROR",
        ResponseCode::FormErr => "FORMERR",
        ResponseCode::ServFail => "SERVFAIL",
        ResponseCode::NXDomain => "NXDOMAIN",
        ResponseCode::NotImp => "NOTIMP",
        ResponseCode::Refused => "REFUSED",
        _ => "OTHER",
    }
}

#[derive(Debug)]
pub(crate) struct DnsMetrics {
    responses: Family<Rcode, Counter>,
    pub rate_limited: Counter,
}

impl DnsMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let responses = Family::<Rcode, Counter>::default();
        let rate_limited = Counter::default();
        registry.register(
            RESPONSES,
            "DNS responses sent, by response code",
            responses.clone(),
        );
        registry.register(
            RATE_LIMITED,
            "UDP DNS queries dropped by the response rate limit",
            rate_limited.clone(),
        );
        DnsMetrics {
            responses,
            rate_limited,
        }
    }

    pub fn answered(&self, code: ResponseCode) {
        self.responses
            .get_or_create(&Rcode {
                rcode: mnemonic(code),
            })
            .inc();
    }
}
