//! Private networks on the host (App Runner's VPC side): the subnets users declare, made
//! real as bridges runway creates or as the existing bridges and interfaces they name;
//! the addresses runway holds in them for VPC connectors and interface endpoints (the
//! API hands them out, this puts them on the interfaces and takes them off); and the
//! rules that carry connectors' and endpoints' security groups (see [`crate::nft`]).
//!
//! What runway did on the host is recorded before it is done (a bridge it made, an
//! address it added), so a pass after a crash finds and removes what no longer belongs.
//! Converging is idempotent; the store says what should exist.

use crate::nft::{ConnectorRules, EndpointRules, VpcRules};
use crate::{NetConfig, NetError, Result, link, rules_lock, sync_rules};
use runway_model::network::*;
use runway_model::records::ConfigStatus;
use runway_store::{Query, Record, Store, Txn, Typed};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;
use std::sync::Arc;

/// The start of the alias of every bridge runway made for a subnet of the runtime on
/// `bridge`, which [`crate::purge`] finds them by.
pub(crate) fn alias_prefix(bridge: &str) -> String {
    format!("runway {bridge} ")
}

/// A bridge runway made for a subnet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct HostBridge {
    /// `<runtime bridge>/<name>`.
    key: String,
    runtime: String,
    name: String,
    subnet: String,
}

impl Record for HostBridge {
    const KIND: &'static str = "net-subnet-bridge";
    fn key(&self) -> &str {
        &self.key
    }
    fn parent(&self) -> Option<&str> {
        Some(&self.runtime)
    }
}

/// An address runway put on a subnet's interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct HostAddress {
    /// `<runtime bridge>/<interface>/<ip>`.
    key: String,
    runtime: String,
    interface: String,
    ip: Ipv4Addr,
    prefix: u8,
}

impl Record for HostAddress {
    const KIND: &'static str = "net-subnet-address";
    fn key(&self) -> &str {
        &self.key
    }
    fn parent(&self) -> Option<&str> {
        Some(&self.runtime)
    }
}

/// An interface endpoint whose addresses are in place, and those addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointAddresses {
    pub id: String,
    pub addrs: Vec<Ipv4Addr>,
}

/// What a pass made ready.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Converged {
    /// The endpoints whose addresses are all in place: the router should serve there.
    pub endpoints: Vec<EndpointAddresses>,
}

/// The private networks of one runtime (its bridge's rules carry theirs).
pub struct UserNetworks {
    config: NetConfig,
    store: Arc<dyn Store>,
}

impl std::fmt::Debug for UserNetworks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserNetworks")
            .field("bridge", &self.config.bridge)
            .finish_non_exhaustive()
    }
}

fn all<R: Record>(tx: &dyn Txn) -> Result<Vec<R>> {
    Ok(tx
        .load_all::<R>(&Query::default())?
        .into_iter()
        .map(|(_, r)| r)
        .collect())
}

fn held<R: Record>(tx: &dyn Txn, runtime: &str) -> Result<Vec<R>> {
    Ok(tx
        .load_all::<R>(&Query {
            parent: Some(runtime.to_string()),
            ..Query::default()
        })?
        .into_iter()
        .map(|(_, r)| r)
        .collect())
}

impl UserNetworks {
    /// The private networks of the runtime whose network is `config`.
    pub fn new(config: NetConfig, store: Arc<dyn Store>) -> UserNetworks {
        UserNetworks { config, store }
    }

    fn runtime(&self) -> &str {
        &self.config.bridge
    }

    /// Makes the host match the store: subnets' bridges and interfaces, runway's
    /// addresses on them, the rules; records subnets' and endpoints' states. An endpoint
    /// in `unserved` (whose addresses the router could not listen on, and why) is recorded
    /// failed though its addresses are in place. Blocking.
    pub fn converge(&self, unserved: &HashMap<String, String>) -> Result<Converged> {
        let store = self.store.as_ref();
        let (subnets, interfaces, endpoints) = {
            let tx = store.begin()?;
            (
                all::<SubnetRecord>(&*tx)?,
                all::<NetworkInterfaceRecord>(&*tx)?,
                all::<VpcEndpointRecord>(&*tx)?,
            )
        };
        let mut states = Vec::new();
        for subnet in &subnets {
            let outcome = self.realize(subnet);
            if let Err(message) = &outcome {
                tracing::warn!(subnet = %subnet.id, interface = %subnet.interface, %message, "subnet is not usable");
            }
            states.push((subnet.id.clone(), outcome));
        }
        self.record_subnet_states(&states)?;
        let available = |id: &str| states.iter().any(|(s, o)| s == id && o.is_ok());
        let wanted: Vec<HostAddress> = interfaces
            .iter()
            .filter(|i| available(&i.subnet_id))
            .filter_map(|i| {
                let subnet = subnets.iter().find(|s| s.id == i.subnet_id)?;
                Some(HostAddress {
                    key: format!("{}/{}/{}", self.runtime(), subnet.interface, i.ip),
                    runtime: self.runtime().to_string(),
                    interface: subnet.interface.clone(),
                    ip: i.ip,
                    prefix: subnet.cidr.prefix(),
                })
            })
            .collect();
        let placed = self.place_addresses(&wanted)?;
        self.remove_gone_bridges(&subnets)?;
        {
            let _rules = rules_lock(&self.config.bridge);
            sync_rules(&self.config, store)?;
        }
        let mut converged = Converged::default();
        let mut endpoint_states = Vec::new();
        for e in &endpoints {
            let failed = e.subnet_ids.iter().find_map(|id| {
                states
                    .iter()
                    .find(|(s, _)| s == id)
                    .and_then(|(_, o)| o.as_ref().err())
                    .map(|m| format!("subnet {id}: {m}"))
            });
            let addrs: Vec<Ipv4Addr> = interfaces
                .iter()
                .filter(|i| i.owner == InterfaceOwner::Endpoint { id: e.id.clone() })
                .map(|i| i.ip)
                .collect();
            let ready = !addrs.is_empty() && addrs.iter().all(|a| placed.contains(a));
            let failed = failed.or_else(|| unserved.get(&e.id).filter(|_| ready).cloned());
            let state = match (&failed, ready) {
                (Some(_), _) => NetworkState::Failed,
                (None, true) => NetworkState::Available,
                (None, false) => NetworkState::Pending,
            };
            if ready {
                converged.endpoints.push(EndpointAddresses {
                    id: e.id.clone(),
                    addrs,
                });
            }
            endpoint_states.push((e.id.clone(), state, failed));
        }
        self.record_endpoint_states(&endpoint_states)?;
        Ok(converged)
    }

    /// Makes one subnet's interface usable, or says why it is not.
    fn realize(&self, subnet: &SubnetRecord) -> Result<(), String> {
        let name = &subnet.interface;
        if !subnet.created {
            if !link::exists(name) {
                return Err(format!("interface {name} does not exist on this host"));
            }
            return link::promote_secondaries(name)
                .map_err(|e| format!("cannot configure interface {name}: {e}"));
        }
        let record = HostBridge {
            key: format!("{}/{name}", self.runtime()),
            runtime: self.runtime().to_string(),
            name: name.clone(),
            subnet: subnet.id.clone(),
        };
        // Recorded before the bridge exists, so that it is removed even if runway stops
        // right after making it.
        (|| -> Result<(), NetError> {
            let mut tx = self.store.begin()?;
            if tx.load::<HostBridge>(&record.key)?.is_none() {
                tx.save(&record)?;
                tx.commit()?;
            }
            Ok(())
        })()
        .map_err(|e| e.to_string())?;
        let conflicts = link::conflicting_routes(subnet.cidr, name).map_err(|e| e.to_string())?;
        if !conflicts.is_empty() {
            return Err(format!(
                "{} overlaps a route of this host: {}",
                subnet.cidr,
                conflicts.join(", ")
            ));
        }
        link::ensure_bridge(name, subnet.cidr).map_err(|e| e.to_string())?;
        link::set_alias(
            name,
            &format!("{}{}", alias_prefix(self.runtime()), subnet.id),
        )
        .map_err(|e| e.to_string())
    }

    fn record_subnet_states(&self, states: &[(String, Result<(), String>)]) -> Result<()> {
        let mut tx = self.store.begin()?;
        let mut changed = false;
        for (id, outcome) in states {
            let Some(mut subnet) = tx.load::<SubnetRecord>(id)? else {
                continue;
            };
            let (state, message) = match outcome {
                Ok(()) => (NetworkState::Available, None),
                Err(m) => (NetworkState::Failed, Some(m.clone())),
            };
            if subnet.state != state || subnet.message != message {
                subnet.state = state;
                subnet.message = message;
                tx.save(&subnet)?;
                changed = true;
            }
        }
        if changed {
            tx.commit()?;
        }
        Ok(())
    }

    fn record_endpoint_states(
        &self,
        states: &[(String, NetworkState, Option<String>)],
    ) -> Result<()> {
        let mut tx = self.store.begin()?;
        let mut changed = false;
        for (id, state, message) in states {
            let Some(mut e) = tx.load::<VpcEndpointRecord>(id)? else {
                continue;
            };
            if e.state != *state || e.message != *message {
                e.state = *state;
                e.message = message.clone();
                tx.save(&e)?;
                changed = true;
            }
        }
        if changed {
            tx.commit()?;
        }
        Ok(())
    }

    /// Adds the addresses in `wanted` and removes those runway added that are not; the
    /// addresses in place afterwards.
    fn place_addresses(&self, wanted: &[HostAddress]) -> Result<BTreeSet<Ipv4Addr>> {
        let had: Vec<HostAddress> = held(&*self.store.begin()?, self.runtime())?;
        for gone in had.iter().filter(|h| !wanted.contains(h)) {
            link::delete_address(&gone.interface, gone.ip, gone.prefix)?;
            let mut tx = self.store.begin()?;
            tx.remove::<HostAddress>(&gone.key)?;
            tx.commit()?;
        }
        let mut placed = BTreeSet::new();
        for want in wanted {
            if !had.contains(want) {
                let mut tx = self.store.begin()?;
                tx.save(want)?;
                tx.commit()?;
            }
            match link::add_address(&want.interface, want.ip, want.prefix) {
                Ok(()) => {
                    placed.insert(want.ip);
                }
                Err(e) => {
                    tracing::warn!(interface = %want.interface, ip = %want.ip, error = %e, "cannot add an address")
                }
            }
        }
        Ok(placed)
    }

    /// Removes the bridges runway made for subnets that are gone.
    fn remove_gone_bridges(&self, subnets: &[SubnetRecord]) -> Result<()> {
        let made: Vec<HostBridge> = held(&*self.store.begin()?, self.runtime())?;
        for bridge in made {
            let still = subnets
                .iter()
                .any(|s| s.created && s.id == bridge.subnet && s.interface == bridge.name);
            if !still {
                link::delete(&bridge.name)?;
                let mut tx = self.store.begin()?;
                tx.remove::<HostBridge>(&bridge.key)?;
                tx.commit()?;
                tracing::info!(bridge = %bridge.name, subnet = %bridge.subnet, "removed a subnet's bridge");
            }
        }
        Ok(())
    }
}

/// The security groups a connector or endpoint uses: those it names, or its VPC's default.
fn groups<'a>(
    named: &'a [String],
    vpc_id: &'a str,
    groups: &'a [SecurityGroupRecord],
) -> impl Iterator<Item = &'a SecurityGroupRecord> {
    groups.iter().filter(move |g| {
        if named.is_empty() {
            g.vpc_id == vpc_id && g.default
        } else {
            named.contains(&g.id)
        }
    })
}

/// What the host's rules need of the private networks in the store.
pub(crate) fn rules(store: &dyn Store) -> Result<VpcRules> {
    let tx = store.begin()?;
    let subnets = all::<SubnetRecord>(&*tx)?;
    let interfaces = all::<NetworkInterfaceRecord>(&*tx)?;
    let all_groups = all::<SecurityGroupRecord>(&*tx)?;
    let mut rules = VpcRules {
        nets: subnets.iter().map(|s| s.cidr).collect(),
        bridges: subnets
            .iter()
            .filter(|s| s.created)
            .map(|s| s.interface.clone())
            .collect(),
        interfaces: subnets.iter().map(|s| s.interface.clone()).collect(),
        ..VpcRules::default()
    };
    for c in all::<VpcConnectorRecord>(&*tx)? {
        if c.status != ConfigStatus::Active {
            continue;
        }
        let owner = InterfaceOwner::Connector { arn: c.arn.clone() };
        let nets = interfaces
            .iter()
            .filter(|i| i.owner == owner)
            .filter_map(|i| {
                let subnet = subnets.iter().find(|s| s.id == i.subnet_id)?;
                Some((subnet.cidr, i.ip))
            })
            .collect();
        let egress = groups(&c.security_groups, &c.vpc_id, &all_groups)
            .flat_map(|g| g.egress.iter().cloned())
            .collect();
        rules.connectors.push(ConnectorRules {
            id: c.short_id().to_string(),
            nets,
            egress,
            egress_address: c.egress_address,
        });
    }
    for e in all::<VpcEndpointRecord>(&*tx)? {
        let owner = InterfaceOwner::Endpoint { id: e.id.clone() };
        let ingress = groups(&e.security_group_ids, &e.vpc_id, &all_groups)
            .flat_map(|g| g.ingress.iter().cloned())
            .collect();
        rules.endpoints.push(EndpointRules {
            id: e.id.trim_start_matches("vpce-").to_string(),
            addrs: interfaces
                .iter()
                .filter(|i| i.owner == owner)
                .map(|i| i.ip)
                .collect(),
            ingress,
        });
    }
    Ok(rules)
}
