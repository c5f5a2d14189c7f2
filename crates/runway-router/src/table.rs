//! The compiled route table the hot path reads: host name to service (and tagged
//! revision), each service with its settings and revisions by cumulative percent. It is
//! immutable; a new table is built from a [`crate::RouteTable`] and swapped in whole,
//! while revision and instance state (in-flight counts, queues, pools) carries over.

use crate::balance::{EndpointState, RevisionState};
use crate::metrics::RouterMetrics;
use crate::rand;
use crate::routes::{QueueConfig, RouteTable, TAG_SEPARATOR};
use crate::upstream::Pool;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Where a host leads.
#[derive(Debug, Clone)]
pub(crate) struct HostTarget {
    pub service: Arc<ServiceEntry>,
    /// Set for `<tag>---<default host>`: that revision, whatever its percent.
    pub tagged: Option<Arc<RevisionState>>,
}

/// A service as the hot path sees it.
#[derive(Debug)]
pub(crate) struct ServiceEntry {
    pub id: Arc<str>,
    pub paused: bool,
    pub https_redirect: bool,
    pub request_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_request_body: u64,
    pub queue: QueueConfig,
    /// Revisions with a share of traffic, with the running sum of percents.
    revisions: Vec<(u32, Arc<RevisionState>)>,
    public: bool,
    private_listeners: Box<[Box<str>]>,
    dual_stack: bool,
}

impl ServiceEntry {
    /// Whether a connection to a listener of `scope` (`None`: public), from an IPv6
    /// client if `ipv6`, may reach it.
    pub(crate) fn serves(&self, scope: Option<&str>, ipv6: bool) -> bool {
        let listener = match scope {
            None => self.public,
            Some(name) => self.private_listeners.iter().any(|l| **l == *name),
        };
        listener && (self.dual_stack || !ipv6)
    }

    /// A revision chosen by percent.
    pub(crate) fn pick(&self) -> Option<Arc<RevisionState>> {
        match self.revisions.as_slice() {
            [] => None,
            [(_, only)] => Some(only.clone()),
            all => {
                let total = all.last().map_or(0, |(sum, _)| *sum);
                let r = rand::below(total.max(1) as usize) as u32;
                all.iter()
                    .find(|(sum, _)| r < *sum)
                    .or(all.last())
                    .map(|(_, rev)| rev.clone())
            }
        }
    }
}

/// The table read on every request.
#[derive(Debug, Default)]
pub(crate) struct Table {
    pub hosts: HashMap<Box<str>, HostTarget>,
}

impl Table {
    /// Where `host` leads: its exact entry, else the wildcard `*.<parent>`.
    pub(crate) fn find(&self, host: &str) -> Option<&HostTarget> {
        self.hosts.get(host).or_else(|| {
            let (_, parent) = host.split_once('.')?;
            self.hosts.get(format!("*.{parent}").as_str())
        })
    }
}

/// Revision state that outlives tables: the live revisions, retired ones still
/// finishing requests, and instances that left a live revision (alive while requests
/// still hold them).
#[derive(Debug, Default)]
pub(crate) struct Live {
    pub revisions: HashMap<Arc<str>, Arc<RevisionState>>,
    pub draining: Vec<Arc<RevisionState>>,
    pub left: Vec<std::sync::Weak<EndpointState>>,
}

/// Builds the table for `routes` (already validated), reusing `live` state, and returns
/// it with the revisions that left (to retire once the new table is in place) and the
/// updates to apply to revisions before it is.
pub(crate) fn build(
    routes: RouteTable,
    live: &Live,
    metrics: &RouterMetrics,
    demand: &Arc<watch::Sender<crate::Demand>>,
) -> Built {
    let mut hosts = HashMap::new();
    let mut revisions_now: HashMap<Arc<str>, Arc<RevisionState>> = HashMap::new();
    let mut updates = Vec::new();
    for service in routes.services {
        let mut weighted = Vec::new();
        let mut tagged = Vec::new();
        let mut sum = 0u32;
        let default_host = service.hosts.first().cloned().unwrap_or_default();
        for revision in service.revisions {
            let state = live
                .revisions
                .get(revision.revision_id.as_str())
                .filter(|s| *s.service_id == *service.service_id)
                .cloned()
                .unwrap_or_else(|| {
                    Arc::new(RevisionState::new(
                        &revision.revision_id,
                        &service.service_id,
                        demand.clone(),
                        metrics.revision(&service.service_id, &revision.revision_id),
                    ))
                });
            let old = state.endpoints();
            let endpoints: Vec<Arc<EndpointState>> = revision
                .endpoints
                .iter()
                .map(|e| {
                    old.iter()
                        .find(|o| {
                            *o.instance_id == *e.instance_id
                                && o.addr == e.addr
                                && o.protocol == service.upstream
                        })
                        .cloned()
                        .unwrap_or_else(|| {
                            Arc::new(EndpointState::new(
                                &e.instance_id,
                                e.addr,
                                service.upstream,
                                Pool::new(service.upstream),
                            ))
                        })
                })
                .collect();
            updates.push((state.clone(), endpoints, service.max_concurrency));
            if revision.percent > 0 {
                sum += u32::from(revision.percent);
                weighted.push((sum, state.clone()));
            }
            if let Some(tag) = revision.tag {
                tagged.push((format!("{tag}{TAG_SEPARATOR}{default_host}"), state.clone()));
            }
            revisions_now.insert(state.id.clone(), state);
        }
        let entry = Arc::new(ServiceEntry {
            id: service.service_id.as_str().into(),
            paused: service.paused,
            https_redirect: service.https_redirect,
            request_timeout: service.request_timeout,
            idle_timeout: service.idle_timeout,
            max_request_body: service.max_request_body,
            queue: service.queue,
            revisions: weighted,
            public: service.public,
            dual_stack: service.dual_stack,
            private_listeners: service
                .private_listeners
                .into_iter()
                .map(String::into_boxed_str)
                .collect(),
        });
        for host in service.hosts {
            hosts.insert(
                host.into_boxed_str(),
                HostTarget {
                    service: entry.clone(),
                    tagged: None,
                },
            );
        }
        for (host, revision) in tagged {
            hosts.insert(
                host.into_boxed_str(),
                HostTarget {
                    service: entry.clone(),
                    tagged: Some(revision),
                },
            );
        }
    }
    let retired = live
        .revisions
        .iter()
        .filter(|(id, _)| !revisions_now.contains_key(*id))
        .map(|(_, state)| state.clone())
        .collect();
    Built {
        table: Table { hosts },
        revisions: revisions_now,
        updates,
        retired,
    }
}

/// The last host a connection's requests named and where it led, while the route table
/// stays the same: a keep-alive connection (or an HTTP/2 connection's streams) nearly
/// always names one host, and its requests then skip parsing it and looking it up.
#[derive(Debug)]
pub(crate) struct RouteCache {
    /// The table the target is from, held so that its address stays unique.
    pub table: Arc<Table>,
    /// The host as the client wrote it.
    pub host: http::HeaderValue,
    pub target: HostTarget,
}

/// A table and what swapping it in involves.
pub(crate) struct Built {
    pub table: Table,
    pub revisions: HashMap<Arc<str>, Arc<RevisionState>>,
    pub updates: Vec<(Arc<RevisionState>, Vec<Arc<EndpointState>>, u32)>,
    pub retired: Vec<Arc<RevisionState>>,
}
