//! One consistent read of everything the loops decide from.

use crate::Result;
use runway_model::domains::{DomainRecord, DomainStatus};
use runway_model::network::IngressConnectionRecord;
use runway_model::records::*;
use runway_store::{Query, Txn, Typed};
use std::collections::HashMap;

/// The stored state of every service, read in one transaction.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    /// Services that are not deleted, in creation order.
    pub services: Vec<ServiceRecord>,
    /// By service ARN.
    pub states: HashMap<String, ServiceState>,
    /// By revision id.
    pub revisions: HashMap<String, RevisionRecord>,
    /// Auto scaling configurations by ARN.
    pub scaling: HashMap<String, AutoScalingRecord>,
    /// Operations that have not ended, oldest first.
    pub unfinished: Vec<OperationRecord>,
    /// Names of ACTIVE custom domains (with `www.` when asked), by service ARN.
    pub domains: HashMap<String, Vec<String>>,
    /// VPC ingress connections the router serves (or is about to), for private routes.
    pub ingress: Vec<IngressConnectionRecord>,
}

impl Snapshot {
    pub fn load(tx: &dyn Txn) -> Result<Snapshot> {
        let all = Query::default();
        // Deleted services keep their records (describe, operations, events), but nothing
        // is decided from them: neither they nor what hangs off them is read, so a pass
        // costs what runs, not everything that ever ran.
        let services: Vec<ServiceRecord> = tx
            .load_all::<ServiceRecord>(&Query {
                current: true,
                ..Query::default()
            })?
            .into_iter()
            .map(|(_, s)| s)
            .collect();
        let mut snap = Snapshot::of(tx, services)?;
        for (_, domain) in tx.load_all::<DomainRecord>(&all)? {
            if let (Some(service), DomainStatus::Active) = (&domain.service_arn, domain.status) {
                snap.domains
                    .entry(service.clone())
                    .or_default()
                    .extend(domain.names());
            }
        }
        snap.ingress = tx
            .load_all::<IngressConnectionRecord>(&all)?
            .into_iter()
            .map(|(_, c)| c)
            .filter(|c| c.status.routed())
            .collect();
        Ok(snap)
    }

    /// What one step of service `arn`'s operation decides from: the service (unless it
    /// is deleted), its state, revisions and unfinished operations, and the auto scaling
    /// configurations. No other service is read: 200 operations in flight, each step
    /// reading every service, made a burst cost the square of its size.
    pub fn load_service(tx: &dyn Txn, arn: &str) -> Result<Snapshot> {
        let services = tx
            .load::<ServiceRecord>(arn)?
            .filter(|s| s.status != ServiceStatus::Deleted)
            .into_iter()
            .collect();
        Snapshot::of(tx, services)
    }

    /// `services`, what hangs off them, and the auto scaling configurations.
    fn of(tx: &dyn Txn, services: Vec<ServiceRecord>) -> Result<Snapshot> {
        let arns: Vec<String> = services.iter().map(|s| s.arn.clone()).collect();
        let of_services = Query {
            parents: Some(arns.clone()),
            ..Query::default()
        };
        let states = tx
            .load_all::<ServiceState>(&Query {
                ids: Some(arns),
                ..Query::default()
            })?
            .into_iter()
            .map(|(_, s)| (s.service_arn.clone(), s))
            .collect();
        let revisions = tx
            .load_all::<RevisionRecord>(&of_services)?
            .into_iter()
            .map(|(_, r)| (r.id.clone(), r))
            .collect();
        let scaling = tx
            .load_all::<AutoScalingRecord>(&Query::default())?
            .into_iter()
            .map(|(_, a)| (a.arn.clone(), a))
            .collect();
        let unfinished = tx
            .load_all::<OperationRecord>(&of_services)?
            .into_iter()
            .map(|(_, o)| o)
            .filter(|o| !o.status.is_final())
            .collect();
        Ok(Snapshot {
            services,
            states,
            revisions,
            scaling,
            unfinished,
            domains: HashMap::new(),
            ingress: Vec::new(),
        })
    }

    pub fn service(&self, arn: &str) -> Option<&ServiceRecord> {
        self.services.iter().find(|s| s.arn == arn)
    }

    pub fn state(&self, arn: &str) -> ServiceState {
        self.states
            .get(arn)
            .cloned()
            .unwrap_or_else(|| ServiceState {
                service_arn: arn.to_string(),
                next_revision: 1,
                ..Default::default()
            })
    }

    /// The service's auto scaling bounds: MinSize, MaxSize, MaxConcurrency.
    pub fn bounds(&self, service: &ServiceRecord) -> crate::autoscaler::Bounds {
        let asc = self
            .scaling
            .get(&service.spec.auto_scaling_configuration_arn);
        let get = |f: fn(&AutoScalingRecord) -> i64, default: i64| {
            asc.map_or(default, f).clamp(0, i64::from(u32::MAX)) as u32
        };
        crate::autoscaler::Bounds {
            min: get(|a| a.min_size, 1),
            max: get(|a| a.max_size, 25).max(1),
            max_concurrency: get(|a| a.max_concurrency, 100).max(1),
        }
    }
}
