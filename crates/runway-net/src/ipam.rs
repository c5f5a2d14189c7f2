//! Address management: each instance's address is one document in the store, keyed by
//! the address itself, so two instances can never hold the same one; each service on a
//! bridge gets a small number (its tag) that the isolation rules compare.

use runway_model::Subnet;
use runway_store::{Query, Record, Store, StoreError, Typed};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::net::Ipv4Addr;

/// What can go wrong allocating addresses.
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    /// Every address of the subnet is taken.
    #[error("no free address left in {subnet}")]
    Exhausted { subnet: Subnet },
    #[error(transparent)]
    Store(#[from] StoreError),
}

type Result<T, E = IpamError> = std::result::Result<T, E>;

/// An instance's address on a bridge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressRecord {
    /// `<bridge>/<ip>`: the document id, unique per address.
    pub key: String,
    pub bridge: String,
    pub ip: Ipv4Addr,
    pub instance: String,
    pub service: String,
    /// The service's tag on this bridge.
    pub tag: u32,
    /// The VPC connector (its short id) the instance's outbound traffic goes through.
    #[serde(default)]
    pub connector: Option<String>,
    /// Whether the instance has an IPv6 address too (dual stack).
    #[serde(default)]
    pub ipv6: bool,
}

impl Record for AddressRecord {
    const KIND: &'static str = "net-address";
    fn key(&self) -> &str {
        &self.key
    }
    fn name(&self) -> Option<&str> {
        Some(&self.instance)
    }
    fn parent(&self) -> Option<&str> {
        Some(&self.bridge)
    }
}

/// A service's tag on a bridge, held while the service has an address there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TagRecord {
    /// `<bridge>/<tag>`: the document id, unique per tag.
    pub key: String,
    pub bridge: String,
    pub service: String,
    pub tag: u32,
}

impl Record for TagRecord {
    const KIND: &'static str = "net-service-tag";
    fn key(&self) -> &str {
        &self.key
    }
    fn name(&self) -> Option<&str> {
        Some(&self.service)
    }
    fn parent(&self) -> Option<&str> {
        Some(&self.bridge)
    }
}

fn on_bridge(bridge: &str, name: Option<&str>) -> Query {
    Query {
        parent: Some(bridge.to_string()),
        name: name.map(str::to_string),
        ..Query::default()
    }
}

/// The address `instance` holds on `bridge`, allocating one (and its service's tag) if
/// it holds none, recording the connector its traffic goes through and whether it is dual
/// stack. Calling it again for the same instance returns the same address.
pub fn allocate(
    store: &dyn Store,
    bridge: &str,
    subnet: Subnet,
    instance: &str,
    service: &str,
    connector: Option<&str>,
    ipv6: bool,
) -> Result<AddressRecord> {
    let mut tx = store.begin_relaxed()?;
    if let Some((_, held)) = tx
        .load_all::<AddressRecord>(&on_bridge(bridge, Some(instance)))?
        .into_iter()
        .next()
    {
        return Ok(held);
    }
    let tag = match tx
        .load_all::<TagRecord>(&on_bridge(bridge, Some(service)))?
        .into_iter()
        .next()
    {
        Some((_, t)) => t.tag,
        None => {
            let used: BTreeSet<u32> = tx
                .load_all::<TagRecord>(&on_bridge(bridge, None))?
                .into_iter()
                .map(|(_, t)| t.tag)
                .collect();
            // Tag 0 is the mark of packets that carry none, so tags start at 1.
            let tag = (1..=u32::MAX)
                .find(|t| !used.contains(t))
                .ok_or(IpamError::Exhausted { subnet })?;
            tx.create(&TagRecord {
                key: format!("{bridge}/{tag}"),
                bridge: bridge.to_string(),
                service: service.to_string(),
                tag,
            })?;
            tag
        }
    };
    let used: BTreeSet<Ipv4Addr> = tx
        .load_all::<AddressRecord>(&on_bridge(bridge, None))?
        .into_iter()
        .map(|(_, a)| a.ip)
        .collect();
    let ip = subnet
        .instance_addresses()
        .find(|ip| !used.contains(ip))
        .ok_or(IpamError::Exhausted { subnet })?;
    let record = AddressRecord {
        key: format!("{bridge}/{ip}"),
        bridge: bridge.to_string(),
        ip,
        instance: instance.to_string(),
        service: service.to_string(),
        tag,
        connector: connector.map(str::to_string),
        ipv6,
    };
    tx.create(&record)?;
    tx.commit()?;
    Ok(record)
}

/// The address `instance` holds on `bridge`, if any.
pub fn lookup(store: &dyn Store, bridge: &str, instance: &str) -> Result<Option<AddressRecord>> {
    let tx = store.read()?;
    Ok(tx
        .load_all::<AddressRecord>(&on_bridge(bridge, Some(instance)))?
        .into_iter()
        .next()
        .map(|(_, a)| a))
}

/// Every address held on `bridge`.
pub fn all(store: &dyn Store, bridge: &str) -> Result<Vec<AddressRecord>> {
    let tx = store.read()?;
    Ok(tx
        .load_all::<AddressRecord>(&on_bridge(bridge, None))?
        .into_iter()
        .map(|(_, a)| a)
        .collect())
}

/// Gives back the address `instance` holds (and its service's tag when the service holds
/// no other address); the released address, if there was one.
pub fn release(store: &dyn Store, bridge: &str, instance: &str) -> Result<Option<AddressRecord>> {
    let mut tx = store.begin_relaxed()?;
    let Some((_, held)) = tx
        .load_all::<AddressRecord>(&on_bridge(bridge, Some(instance)))?
        .into_iter()
        .next()
    else {
        return Ok(None);
    };
    tx.remove::<AddressRecord>(&held.key)?;
    let others = tx
        .load_all::<AddressRecord>(&on_bridge(bridge, None))?
        .into_iter()
        .any(|(_, a)| a.service == held.service);
    if !others {
        tx.remove::<TagRecord>(&format!("{bridge}/{}", held.tag))?;
    }
    tx.commit()?;
    Ok(Some(held))
}

/// Forgets every address and tag on `bridge`.
pub fn purge(store: &dyn Store, bridge: &str) -> Result<()> {
    let mut tx = store.begin_relaxed()?;
    for (_, a) in tx.load_all::<AddressRecord>(&on_bridge(bridge, None))? {
        tx.remove::<AddressRecord>(&a.key)?;
    }
    for (_, t) in tx.load_all::<TagRecord>(&on_bridge(bridge, None))? {
        tx.remove::<TagRecord>(&t.key)?;
    }
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests;
