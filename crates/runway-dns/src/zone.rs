//! The zones' contents, built whole from the configuration and the current records into
//! a hickory [`Catalog`] (it answers names, wildcards, NXDOMAIN with the SOA, and
//! referrals).

use crate::DnsError;
use hickory_proto::rr::rdata::{A, AAAA, NS, SOA, TXT};
use hickory_proto::rr::{LowerName, Name, RData, Record};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneHandler, ZoneType};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

/// The label of the validation zone under the base domain.
pub const VALIDATION_LABEL: &str = "acme-validations";
/// The label of the name server's own name under the base domain.
const NAMESERVER_LABEL: &str = "ns1";
/// TTL of address and TXT records: short, so that changes show quickly.
const TTL: u32 = 60;
/// TTL of SOA and NS records.
const ZONE_TTL: u32 = 3600;
/// How long resolvers cache a "does not exist" (the SOA minimum, RFC 2308).
const NEGATIVE_TTL: u32 = 60;

/// What the zones are: fixed for the server's life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZoneConfig {
    /// The base domain, lowercase, without a trailing dot (`runway.example.com`).
    pub base_domain: String,
    /// Where the router listens publicly: service hosts' A records (and AAAA records of
    /// dual-stack services' hosts).
    pub addresses: Vec<IpAddr>,
    /// This name server's public addresses (glue for `ns1.<base-domain>`).
    pub nameserver_addresses: Vec<IpAddr>,
    /// UDP responses per second to one client network (/24 or /56), at most; 0: no limit.
    pub rate_limit: u32,
}

impl ZoneConfig {
    /// The validation zone, `acme-validations.<base-domain>`.
    pub fn validation_zone(&self) -> String {
        format!("{VALIDATION_LABEL}.{}", self.base_domain)
    }

    /// This server's name, `ns1.<base-domain>`, for NS records and delegation.
    pub fn nameserver(&self) -> String {
        format!("{NAMESERVER_LABEL}.{}", self.base_domain)
    }
}

/// A service host, answered at the router's addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    pub name: String,
    /// Whether its AAAA records are served too (App Runner's IpAddressType DUAL_STACK);
    /// otherwise only A records, as the router serves the host to IPv4 clients only.
    pub ipv6: bool,
}

/// The records that change while the server runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Records {
    /// Service hosts (A, and AAAA if dual stack, at the router's addresses).
    pub hosts: Vec<Host>,
    /// TXT records by full name.
    pub txt: BTreeMap<String, Vec<String>>,
}

fn name(text: &str) -> Result<Name, DnsError> {
    let fqdn = if text.ends_with('.') {
        text.to_string()
    } else {
        format!("{text}.")
    };
    Name::from_ascii(&fqdn).map_err(|e| DnsError::InvalidName {
        name: text.to_string(),
        reason: e.to_string(),
    })
}

/// A zone being assembled.
struct ZoneBuilder {
    origin: Name,
    handler: InMemoryZoneHandler,
    serial: u32,
}

impl ZoneBuilder {
    fn new(origin: &str, config: &ZoneConfig, serial: u32) -> Result<Self, DnsError> {
        let origin = name(origin)?;
        let mut zone = ZoneBuilder {
            handler: InMemoryZoneHandler::empty(
                origin.clone(),
                ZoneType::Primary,
                AxfrPolicy::Deny,
            ),
            origin: origin.clone(),
            serial,
        };
        let nameserver = name(&config.nameserver())?;
        let hostmaster = name(&format!("hostmaster.{}", config.base_domain))?;
        let soa = SOA::new(
            nameserver.clone(),
            hostmaster,
            serial,
            3600,
            600,
            604_800,
            NEGATIVE_TTL,
        );
        zone.add(Record::from_rdata(
            origin.clone(),
            ZONE_TTL,
            RData::SOA(soa),
        ));
        zone.add(Record::from_rdata(
            origin,
            ZONE_TTL,
            RData::NS(NS(nameserver)),
        ));
        Ok(zone)
    }

    fn add(&mut self, record: Record) {
        self.handler.upsert_mut(record, self.serial);
    }

    fn addresses(&mut self, owner: &Name, addresses: &[IpAddr]) {
        for address in addresses {
            let data = match address {
                IpAddr::V4(v4) => RData::A(A(*v4)),
                IpAddr::V6(v6) => RData::AAAA(AAAA(*v6)),
            };
            self.add(Record::from_rdata(owner.clone(), TTL, data));
        }
    }

    fn contains(&self, owner: &Name) -> bool {
        self.origin.zone_of(owner)
    }

    fn finish(self) -> (LowerName, Arc<dyn ZoneHandler>) {
        (LowerName::new(&self.origin), Arc::new(self.handler))
    }
}

/// Builds the catalog: the base zone and the validation zone, with `records`.
pub(crate) fn catalog(
    config: &ZoneConfig,
    records: &Records,
    serial: u32,
) -> Result<Catalog, DnsError> {
    let mut base = ZoneBuilder::new(&config.base_domain, config, serial)?;
    let mut validation = ZoneBuilder::new(&config.validation_zone(), config, serial)?;
    let apex = base.origin.clone();
    base.addresses(&apex, &config.addresses);
    // The wildcard has A records only: hickory answers a name's missing type from the
    // wildcard, so a wildcard AAAA would give IPv4 services' hosts one, and the router
    // serves IPv6 clients only dual-stack services (whose hosts get AAAA by name).
    let wildcard = name(&format!("*.{}", config.base_domain))?;
    let ipv4: Vec<IpAddr> = config
        .addresses
        .iter()
        .copied()
        .filter(IpAddr::is_ipv4)
        .collect();
    base.addresses(&wildcard, &ipv4);
    base.addresses(&name(&config.nameserver())?, &config.nameserver_addresses);
    // The delegation of the validation zone, for resolvers that walk down to it.
    base.add(Record::from_rdata(
        validation.origin.clone(),
        ZONE_TTL,
        RData::NS(NS(name(&config.nameserver())?)),
    ));
    for host in &records.hosts {
        let Ok(owner) = name(&host.name) else {
            tracing::debug!(host = host.name, "not a DNS name: not served");
            continue;
        };
        if base.contains(&owner) && !validation.contains(&owner) && owner != apex {
            let addresses: Vec<IpAddr> = config
                .addresses
                .iter()
                .copied()
                .filter(|a| host.ipv6 || a.is_ipv4())
                .collect();
            base.addresses(&owner, &addresses);
        }
    }
    for (owner, values) in &records.txt {
        let owner = name(owner)?;
        let zone = if validation.contains(&owner) {
            &mut validation
        } else if base.contains(&owner) {
            &mut base
        } else {
            tracing::debug!(name = %owner, "TXT record outside runway's zones: not served");
            continue;
        };
        for value in values {
            zone.add(Record::from_rdata(
                owner.clone(),
                TTL,
                RData::TXT(TXT::new(vec![value.clone()])),
            ));
        }
    }
    let mut catalog = Catalog::new();
    for zone in [base, validation] {
        let (origin, handler) = zone.finish();
        catalog.upsert(origin, vec![handler]);
    }
    Ok(catalog)
}
