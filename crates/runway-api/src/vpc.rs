//! What the EC2 subset and App Runner's VPC operations share: loading private-network
//! records, and handing out and giving back the addresses runway holds in subnets (its
//! network interfaces) for connectors and endpoints, in the caller's transaction.

use runway_model::Timestamp;
use runway_model::network::*;
use runway_store::{Query, StoreError, Txn, Typed};
use std::collections::BTreeSet;

/// Every record of kind `R`, in creation order.
pub(crate) fn all<R: runway_store::Record>(tx: &dyn Txn) -> Result<Vec<R>, StoreError> {
    Ok(tx
        .load_all::<R>(&Query::default())?
        .into_iter()
        .map(|(_, r)| r)
        .collect())
}

/// The records of kind `R` whose parent is `parent`.
pub(crate) fn children<R: runway_store::Record>(
    tx: &dyn Txn,
    parent: &str,
) -> Result<Vec<R>, StoreError> {
    Ok(tx
        .load_all::<R>(&Query {
            parent: Some(parent.to_string()),
            ..Query::default()
        })?
        .into_iter()
        .map(|(_, r)| r)
        .collect())
}

/// The default security group of `vpc_id`.
pub(crate) fn default_group(
    tx: &dyn Txn,
    vpc_id: &str,
) -> Result<Option<SecurityGroupRecord>, StoreError> {
    Ok(children::<SecurityGroupRecord>(tx, vpc_id)?
        .into_iter()
        .find(|g| g.default))
}

/// The network interfaces `owner` holds.
pub(crate) fn interfaces_of(
    tx: &dyn Txn,
    owner: &InterfaceOwner,
) -> Result<Vec<NetworkInterfaceRecord>, StoreError> {
    Ok(all::<NetworkInterfaceRecord>(tx)?
        .into_iter()
        .filter(|i| i.owner == *owner)
        .collect())
}

/// A subnet with no address left to give.
#[derive(Debug)]
pub(crate) struct SubnetFull(pub String);

/// Gives `owner` an address (a network interface) in each of `subnets`.
pub(crate) fn allocate_interfaces(
    tx: &mut dyn Txn,
    subnets: &[SubnetRecord],
    owner: &InterfaceOwner,
    now: Timestamp,
) -> Result<Result<Vec<NetworkInterfaceRecord>, SubnetFull>, StoreError> {
    let mut made = Vec::new();
    for subnet in subnets {
        let used: BTreeSet<_> = children::<NetworkInterfaceRecord>(&*tx, &subnet.id)?
            .into_iter()
            .map(|i| i.ip)
            .collect();
        let Some(ip) = free_interface_address(subnet.cidr, &used) else {
            return Ok(Err(SubnetFull(subnet.id.clone())));
        };
        let record = NetworkInterfaceRecord {
            id: new_ec2_id("eni"),
            vpc_id: subnet.vpc_id.clone(),
            subnet_id: subnet.id.clone(),
            ip,
            owner: owner.clone(),
            created_at: now,
        };
        tx.create(&record)?;
        made.push(record);
    }
    Ok(Ok(made))
}

/// Gives back every address `owner` holds.
pub(crate) fn release_interfaces(
    tx: &mut dyn Txn,
    owner: &InterfaceOwner,
) -> Result<(), StoreError> {
    for i in interfaces_of(&*tx, owner)? {
        tx.remove::<NetworkInterfaceRecord>(&i.id)?;
    }
    Ok(())
}
