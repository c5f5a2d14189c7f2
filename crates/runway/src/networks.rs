//! The network loop of `runway server`: it makes users' private networks real (subnets,
//! runway's addresses in them, the rules of their security groups: `runway-net`), serves
//! private services on the addresses of App Runner interface endpoints (HTTPS on port
//! 443 with the router's certificates), and moves VPC ingress connections through their
//! statuses once the router does what they say. Everything it decides from is in the
//! store, so a restart picks up where it was; it runs when the API changes something and
//! every few seconds otherwise.

use crate::dataplane::RouterClient;
use runway_control::Controller;
use runway_model::Timestamp;
use runway_model::network::{
    IngressConnectionRecord, IngressStatus, NetworkState, VpcEndpointRecord,
};
use runway_net::{Converged, UserNetworks};
use runway_store::{Query, Store, Typed};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// The port private services are served on at an endpoint's addresses.
pub const PRIVATE_HTTPS_PORT: u16 = 443;
/// How often the loop runs when nothing wakes it (an interface that appears, a bridge
/// someone removed).
const PERIOD: Duration = Duration::from_secs(10);

/// What the loop works with.
pub struct Networks {
    pub user: Arc<UserNetworks>,
    pub router: RouterClient,
    pub controller: Controller,
    pub store: Arc<dyn Store>,
    pub wake: Arc<Notify>,
    /// The router's public HTTPS listener: if it holds port 443 on every address, it
    /// serves the endpoints' addresses too.
    pub public_https: SocketAddr,
}

/// A private listener the loop started (in the router process).
struct Listener {
    endpoint: String,
    /// The router process listens on it (else its public listener serves it).
    own: bool,
}

impl Networks {
    /// Runs until `stopped` completes. Its listeners live in the router process and
    /// serve on while the server is down. A server that adopts a running router process
    /// starts with none it knows of: its first pass listens again on the addresses still
    /// wanted (the router process keeps those it has), and the private addresses it
    /// sends stop the router process's listeners on any others (an endpoint deleted
    /// while no server ran).
    pub async fn run(self, stopped: impl std::future::Future<Output = ()>) {
        let mut listeners: HashMap<IpAddr, Listener> = HashMap::new();
        // Endpoints whose addresses the last pass could not listen on, and why.
        let mut unserved: HashMap<String, String> = HashMap::new();
        let mut stopped = std::pin::pin!(stopped);
        loop {
            if let Err(e) = self.pass(&mut listeners, &mut unserved).await {
                tracing::error!(error = %e, "private networks: pass failed; retrying");
            }
            tokio::select! {
                _ = &mut stopped => break,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(PERIOD) => {}
            }
        }
    }

    async fn pass(
        &self,
        listeners: &mut HashMap<IpAddr, Listener>,
        unserved: &mut HashMap<String, String>,
    ) -> anyhow::Result<()> {
        let before = std::mem::take(unserved);
        let (user, failed) = (self.user.clone(), before.clone());
        let converged: Converged =
            tokio::task::spawn_blocking(move || user.converge(&failed)).await??;
        let wanted: HashMap<IpAddr, String> = converged
            .endpoints
            .iter()
            .flat_map(|e| e.addrs.iter().map(|a| (IpAddr::V4(*a), e.id.clone())))
            .collect();
        // Stop what is no longer wanted before it leaves the router's scopes.
        let gone: Vec<IpAddr> = listeners
            .iter()
            .filter(|(ip, l)| wanted.get(*ip) != Some(&l.endpoint))
            .map(|(ip, _)| *ip)
            .collect();
        for ip in gone {
            if let Some(l) = listeners.remove(&ip) {
                if l.own {
                    self.router
                        .unlisten(SocketAddr::new(ip, PRIVATE_HTTPS_PORT))
                        .await;
                }
                tracing::info!(%ip, endpoint = %l.endpoint, "private listener stopped");
            }
        }
        // Name the addresses before anything listens there, so that no connection is
        // ever taken for a public one. The router process stops its listeners on any
        // address left out (those this loop did not start: see `run`).
        self.router.set_private_addresses(wanted.clone());
        for (ip, endpoint) in &wanted {
            if listeners.contains_key(ip) {
                continue;
            }
            match self.listen(*ip).await {
                Ok(own) => {
                    tracing::info!(%ip, %endpoint, port = PRIVATE_HTTPS_PORT, "private listener started");
                    listeners.insert(
                        *ip,
                        Listener {
                            endpoint: endpoint.clone(),
                            own,
                        },
                    );
                }
                Err(e) => {
                    tracing::warn!(%ip, %endpoint, error = %e, "cannot listen for private services");
                    unserved.insert(
                        endpoint.clone(),
                        format!("cannot listen on {ip}:{PRIVATE_HTTPS_PORT}: {e}"),
                    );
                }
            }
        }
        let served: Vec<String> = converged
            .endpoints
            .iter()
            .filter(|e| {
                e.addrs
                    .iter()
                    .all(|a| listeners.contains_key(&IpAddr::V4(*a)))
            })
            .map(|e| e.id.clone())
            .collect();
        if unserved.keys().any(|e| !before.contains_key(e)) {
            // The next pass records the endpoint failed, and its connections with it.
            self.wake.notify_one();
        }
        // The routes say who is served where; once they are out, the statuses may say so.
        self.controller.publish_routes().await?;
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || settle_connections(store.as_ref(), &served)).await??;
        Ok(())
    }

    /// Starts serving HTTPS on `ip`:443 in the router process (whether it does: the
    /// router's own public listener serves the address instead when it holds port 443
    /// on every address, for the router scopes connections by the local address they
    /// reached).
    async fn listen(&self, ip: IpAddr) -> Result<bool, crate::dataplane::ListenError> {
        let addr = SocketAddr::new(ip, PRIVATE_HTTPS_PORT);
        match self.router.listen(addr).await {
            Ok(()) => Ok(true),
            Err(e)
                if e.in_use
                    && self.public_https.port() == PRIVATE_HTTPS_PORT
                    && self.public_https.ip().is_unspecified() =>
            {
                tracing::info!(%addr, "the public HTTPS listener holds the port and serves the endpoint");
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }
}

/// Moves VPC ingress connections on: to AVAILABLE once their endpoint is `served` (the
/// routes name them already), to FAILED_CREATION or FAILED_UPDATE when their endpoint
/// failed or is gone, and from PENDING_DELETION to DELETED (the routes left them out).
fn settle_connections(store: &dyn Store, served: &[String]) -> anyhow::Result<()> {
    let mut tx = store.begin()?;
    let now = Timestamp::now();
    let mut changed = false;
    for (_, mut c) in tx.load_all::<IngressConnectionRecord>(&Query::default())? {
        let endpoint = tx.load::<VpcEndpointRecord>(&c.vpc_endpoint_id)?;
        let failed = endpoint
            .as_ref()
            .is_none_or(|e| e.state == NetworkState::Failed);
        let next = match c.status {
            IngressStatus::PendingDeletion => IngressStatus::Deleted,
            IngressStatus::PendingCreation if failed => IngressStatus::FailedCreation,
            IngressStatus::PendingUpdate if failed => IngressStatus::FailedUpdate,
            IngressStatus::PendingCreation | IngressStatus::PendingUpdate
                if served.contains(&c.vpc_endpoint_id) =>
            {
                IngressStatus::Available
            }
            _ => continue,
        };
        tracing::info!(connection = %c.arn, from = %c.status, to = %next, "VPC ingress connection");
        if next == IngressStatus::Deleted {
            c.deleted_at = Some(now);
        }
        c.status = next;
        tx.save(&c)?;
        changed = true;
    }
    if changed {
        tx.commit()?;
    }
    Ok(())
}
