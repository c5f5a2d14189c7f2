//! Instance networking (the reference architecture's service VPC and NAT gateway): one
//! Linux bridge per runtime with an address from a private subnet, a network namespace
//! per instance joined to it by a veth pair, addresses allocated in the store (one
//! document per address), outbound NAT to the internet, and nftables rules that keep
//! instances of different services apart and keep every instance away from the host's
//! own ports. The host (the router) reaches instances by address and port. It also makes
//! users' private networks real ([`UserNetworks`], App Runner's VPC side): subnets as
//! bridges it creates or interfaces users name, runway's addresses in them for VPC
//! connectors and interface endpoints, and rules from their security groups; an instance
//! whose service uses a connector is attached with it ([`Network::attach_with`]). With an
//! IPv6 subnet, dual-stack instances get an IPv6 address too and leave over IPv6,
//! masqueraded, under the same isolation.
//!
//! Everything goes through the `ip` and `nft` programs, called from the caller's thread,
//! which must be a blocking one: this crate never enters a namespace itself and holds no
//! unsafe code. `ip` rather than rtnetlink because creating a named namespace and
//! configuring links inside it takes `unshare`/`setns` on dedicated threads plus bind
//! mounts, which `ip netns` already does correctly; an attach costs two `ip -batch` runs
//! and one `nft` transaction, about 8 ms (see `bench/runtime`). It must never depend on the runtime, the registry, the router or the API,
//! and every operation is idempotent, so a crash at any point is repaired by repeating it
//! or by [`Network::sweep`].

#![forbid(unsafe_code)]

pub mod ipam;
mod ipv6;
mod link;
mod nft;
mod program;
mod vpc;

pub use ipam::{AddressRecord, IpamError};
pub use ipv6::Ipv6Subnet;
pub use program::ProgramError;
pub use runway_model::Subnet;
pub use vpc::{Converged, EndpointAddresses, UserNetworks};

use runway_store::{Store, StoreError};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// The bridge a runtime uses unless configured otherwise.
pub const DEFAULT_BRIDGE: &str = "runway0";
/// The subnet instances get addresses from unless configured otherwise (podman's default
/// is 10.88.0.0/16, Docker's 172.17.0.0/16: both avoided).
pub const DEFAULT_SUBNET: &str = "10.201.0.0/16";

/// What can go wrong with instance networking.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// The configuration or a name is not usable.
    #[error("invalid network configuration: {0}")]
    Config(String),
    /// Another network on this host already routes addresses of the subnet.
    #[error("subnet {subnet} overlaps a route that is not runway's: {routes}")]
    Conflict { subnet: Subnet, routes: String },
    #[error(transparent)]
    Program(#[from] ProgramError),
    #[error(transparent)]
    Ipam(#[from] IpamError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A kernel setting could not be read or written.
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
}

type Result<T, E = NetError> = std::result::Result<T, E>;

/// How a runtime's network is laid out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConfig {
    /// The bridge's name: 1 to 15 of `a-z`, `0-9` and `_` (it also names the nftables
    /// tables and prefixes the namespaces, so it must be unique on the host).
    pub bridge: String,
    /// The private subnet instances get addresses from.
    pub subnet: Subnet,
    /// The IPv6 network dual-stack instances get their second address from (and leave
    /// through, masqueraded); none: instances have IPv4 only.
    pub ipv6: Option<Ipv6Subnet>,
}

impl Default for NetConfig {
    fn default() -> Self {
        NetConfig {
            bridge: DEFAULT_BRIDGE.to_string(),
            subnet: DEFAULT_SUBNET.parse().expect("the default subnet is valid"),
            ipv6: None,
        }
    }
}

impl NetConfig {
    /// Checks the bridge name.
    pub fn validate(&self) -> Result<()> {
        let b = &self.bridge;
        if b.is_empty()
            || b.len() > 15
            || !b
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_')
        {
            return Err(NetError::Config(format!(
                "bridge name {b:?} must be 1 to 15 characters of a-z, 0-9 and _"
            )));
        }
        Ok(())
    }
}

/// An instance's place on the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub instance: String,
    pub service: String,
    /// The instance's address.
    pub ip: Ipv4Addr,
    pub subnet: Subnet,
    /// The bridge's address, the instance's default route.
    pub gateway: Ipv4Addr,
    /// Its IPv6 address, if it is dual stack.
    pub ip6: Option<Ipv6Addr>,
    /// The instance's network namespace, for the OCI runtime config.
    pub netns: PathBuf,
    /// The host end of the instance's veth pair.
    pub veth: String,
}

/// Where an instance's outbound traffic may go beyond its bridge.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Outbound<'a> {
    /// The VPC connector (its ARN) it goes through: into the connector's subnets as its
    /// security groups allow, and nowhere else they do not. None: NAT to the internet.
    pub connector: Option<&'a str>,
    /// An IPv6 address too, from the network's IPv6 subnet, and NAT to the internet over
    /// IPv6; only when the network has one, and never with a connector (whose subnets
    /// and rules are IPv4, as App Runner's VPC egress is).
    pub ipv6: bool,
}

/// The name of an instance's network namespace.
pub fn netns_name(bridge: &str, instance: &str) -> String {
    format!("{}{instance}", netns_prefix(bridge))
}

fn netns_prefix(bridge: &str) -> String {
    format!("runway-{bridge}-")
}

/// The name of the host end of an instance's veth pair: interface names are at most 15
/// bytes, so it is a digest of the bridge and the instance.
pub fn veth_name(bridge: &str, instance: &str) -> String {
    let digest = Sha256::digest(format!("{bridge}/{instance}"));
    format!("rw{}", &hex::encode(digest)[..13])
}

fn check_name(what: &str, name: &str) -> Result<()> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.')
    {
        return Err(NetError::Config(format!(
            "{what} {name:?} must be 1 to 64 characters of letters, digits, '-', '_' and '.'"
        )));
    }
    Ok(())
}

/// A runtime's network: its bridge, rules and addresses.
pub struct Network {
    config: NetConfig,
    store: Arc<dyn Store>,
    /// One lock per service whose instances are coming or going.
    services: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Network {
    /// Makes the network ready: the bridge with its gateway addresses, forwarding (IPv6
    /// too with an IPv6 subnet), and both nftables tables rebuilt from the addresses in
    /// the store. Safe to repeat.
    pub fn setup(config: NetConfig, store: Arc<dyn Store>) -> Result<Network> {
        config.validate()?;
        let conflicts = link::conflicting_routes(config.subnet, &config.bridge)?;
        if !conflicts.is_empty() {
            return Err(NetError::Conflict {
                subnet: config.subnet,
                routes: conflicts.join(", "),
            });
        }
        if let Some(ipv6) = config.ipv6 {
            let conflicts = link::conflicting_routes6(ipv6, &config.bridge)?;
            if !conflicts.is_empty() {
                return Err(NetError::Config(format!(
                    "IPv6 subnet {ipv6} overlaps a route that is not runway's: {}",
                    conflicts.join(", ")
                )));
            }
        }
        let held = ipam::all(store.as_ref(), &config.bridge)?;
        if let Some(outside) = held.iter().find(|a| !config.subnet.contains(a.ip)) {
            return Err(NetError::Config(format!(
                "instance {} holds {} on bridge {}, outside the configured subnet {}; stop \
                 its instances before changing the subnet",
                outside.instance, outside.ip, config.bridge, config.subnet
            )));
        }
        link::ensure_bridge(&config.bridge, config.subnet)?;
        enable_forwarding(IPV4_FORWARDING)?;
        if let Some(ipv6) = config.ipv6 {
            link::add_address6(&config.bridge, ipv6.gateway())?;
            enable_forwarding(IPV6_FORWARDING)?;
        }
        let network = Network {
            config,
            store,
            services: Mutex::new(HashMap::new()),
        };
        network.sync_rules()?;
        tracing::info!(
            bridge = %network.config.bridge,
            subnet = %network.config.subnet,
            "instance network ready"
        );
        Ok(network)
    }

    pub fn config(&self) -> &NetConfig {
        &self.config
    }

    fn member(&self, a: &AddressRecord) -> nft::Member {
        member(&self.config.bridge, a)
    }

    /// The IPv6 address of the instance holding `a`, if it is dual stack.
    fn ip6_of(&self, a: &AddressRecord) -> Option<Ipv6Addr> {
        let net = self.config.ipv6?;
        a.ipv6.then(|| net.address_of(a.ip))
    }

    fn attachment_of(&self, a: AddressRecord) -> Attachment {
        Attachment {
            netns: link::netns_path(&netns_name(&self.config.bridge, &a.instance)),
            veth: veth_name(&self.config.bridge, &a.instance),
            ip: a.ip,
            subnet: self.config.subnet,
            gateway: self.config.subnet.gateway(),
            ip6: self.ip6_of(&a),
            instance: a.instance,
            service: a.service,
        }
    }

    /// Rebuilds both nftables tables from the addresses and private networks in the
    /// store.
    pub fn sync_rules(&self) -> Result<()> {
        let _all = rules_lock(&self.config.bridge);
        sync_rules(&self.config, self.store.as_ref())
    }

    /// Gives `instance` (of `service`) an address, a namespace and a veth into the
    /// bridge, and lets it reach its own service's instances. Repeating it for an
    /// attached instance returns the same attachment; a partial one is rebuilt.
    pub fn attach(&self, instance: &str, service: &str) -> Result<Attachment> {
        self.attach_with(instance, service, Outbound::default())
    }

    /// Like [`Network::attach`], with the instance's outbound traffic going where
    /// `outbound` says.
    pub fn attach_with(
        &self,
        instance: &str,
        service: &str,
        outbound: Outbound<'_>,
    ) -> Result<Attachment> {
        let Outbound { connector, ipv6 } = outbound;
        let ipv6 = ipv6 && connector.is_none() && self.config.ipv6.is_some();
        check_name("instance id", instance)?;
        check_name("service id", service)?;
        let bridge = &self.config.bridge;
        let t = std::time::Instant::now();
        let (all, lock) = self.lock_service(service);
        let rules = lock.lock().unwrap_or_else(|p| p.into_inner());
        let t_lock = t.elapsed();
        let record = ipam::allocate(
            self.store.as_ref(),
            bridge,
            self.config.subnet,
            instance,
            service,
            connector,
            ipv6,
        )?;
        let attachment = self.attachment_of(record.clone());
        let ns = netns_name(bridge, instance);
        if attachment.netns.exists() && link::exists(&attachment.veth) {
            return Ok(attachment);
        }
        let t_allocate = t.elapsed();
        // The rules know the instance before it can send a packet. Adding fails if the
        // rules do not know its connector yet: a rebuild from the store then does (the
        // address is in the store already, and no rebuild ran while the locks were held).
        let added = program::run(
            "nft",
            &["-f", "-"],
            Some(&nft::add_member(bridge, &self.member(&record))),
        );
        drop((rules, all));
        let added = match added {
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::debug!(instance, error = %e, "cannot add elements; rebuilding");
                self.sync_rules()
            }
        };
        let t_rules = t.elapsed();
        let built = added.and_then(|()| {
            link::delete_namespace(&ns)?;
            link::delete(&attachment.veth)?;
            let ip6 = attachment.ip6.zip(self.config.ipv6.map(|n| n.gateway()));
            link::create_instance(
                &ns,
                &attachment.veth,
                bridge,
                (record.ip, self.config.subnet),
                ip6,
            )?;
            Ok(())
        });
        if let Err(e) = built {
            if let Err(undo) = self.detach(instance) {
                tracing::warn!(instance, error = %undo, "cannot undo a failed attach");
            }
            return Err(e);
        }
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
        tracing::debug!(
            instance,
            ip = %record.ip,
            lock_ms = ms(t_lock),
            allocate_ms = ms(t_allocate - t_lock),
            rules_ms = ms(t_rules - t_allocate),
            links_ms = ms(t.elapsed() - t_rules),
            "instance attached"
        );
        Ok(attachment)
    }

    /// The attachment of `instance`, if it holds an address.
    pub fn attachment(&self, instance: &str) -> Result<Option<Attachment>> {
        Ok(
            ipam::lookup(self.store.as_ref(), &self.config.bridge, instance)?
                .map(|a| self.attachment_of(a)),
        )
    }

    /// Removes `instance`'s namespace, veth pair and rules, and releases its address.
    /// Detaching a detached instance does nothing. The address and rules go even when
    /// removing a link fails (the error is returned after): a link a concurrent teardown
    /// or the kernel (destroying a namespace removes its veth pair a moment later) took
    /// away between checking and deleting must not leak them.
    pub fn detach(&self, instance: &str) -> Result<()> {
        let bridge = &self.config.bridge;
        let links = link::delete_namespace(&netns_name(bridge, instance))
            .and_then(|()| link::delete(&veth_name(bridge, instance)));
        let Some(service) = ipam::lookup(self.store.as_ref(), bridge, instance)?.map(|a| a.service)
        else {
            return links.map_err(Into::into);
        };
        let (all, lock) = self.lock_service(&service);
        let rules = lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut rebuild = false;
        if let Some(held) = ipam::lookup(self.store.as_ref(), bridge, instance)? {
            let last = !ipam::all(self.store.as_ref(), bridge)?
                .iter()
                .any(|a| a.service == held.service && a.instance != instance);
            let script = nft::remove_member(bridge, &self.member(&held), last);
            if let Err(e) = program::run("nft", &["-f", "-"], Some(&script)) {
                // A stale element (another tag for the address) fails the script: the
                // rebuild below repairs the sets from the store.
                tracing::debug!(instance, error = %e, "cannot remove elements; rebuilding");
                rebuild = true;
            }
        }
        ipam::release(self.store.as_ref(), bridge, instance)?;
        drop((rules, all));
        if rebuild {
            self.sync_rules()?;
        }
        links.map_err(Into::into)
    }

    /// Serialises changes to a service's rules with the address changes they follow:
    /// whether an instance is its service's last (and takes the service's chain with
    /// it) is decided and applied while no other instance of the service comes or goes.
    /// Services do not wait for each other; a rebuild of all rules waits for them all.
    /// Lock the returned mutex while holding the guard.
    fn lock_service(&self, service: &str) -> (RwLockReadGuard<'static, ()>, Arc<Mutex<()>>) {
        let all = rules_lock_shared(&self.config.bridge);
        let mut services = self.services.lock().unwrap_or_else(|p| p.into_inner());
        // Forget the locks nobody holds, so the map does not grow with every service.
        services.retain(|_, l| Arc::strong_count(l) > 1);
        let lock = services.entry(service.to_string()).or_default().clone();
        (all, lock)
    }

    /// Removes what belongs to no live instance: addresses, namespaces, veths, and rule
    /// elements (the tables are rebuilt from the store). Returns how many leftovers
    /// (addresses, namespaces, veths) were removed.
    pub fn sweep(&self, live: &HashSet<String>) -> Result<usize> {
        let bridge = &self.config.bridge;
        let mut gone = 0;
        for held in ipam::all(self.store.as_ref(), bridge)? {
            if !live.contains(&held.instance) {
                ipam::release(self.store.as_ref(), bridge, &held.instance)?;
                gone += 1;
            }
        }
        let prefix = netns_prefix(bridge);
        for ns in link::namespaces(&prefix) {
            let instance = &ns[prefix.len()..];
            if !live.contains(instance) {
                link::delete_namespace(&ns)?;
                gone += 1;
            }
        }
        let expected: HashSet<String> = live.iter().map(|i| veth_name(bridge, i)).collect();
        for port in link::ports(bridge)? {
            if !expected.contains(&port) {
                link::delete(&port)?;
                gone += 1;
            }
        }
        self.sync_rules()?;
        if gone > 0 {
            tracing::info!(bridge = %bridge, count = gone, "removed network leftovers");
        }
        Ok(gone)
    }

    /// Removes the whole network: every instance namespace and veth, the bridge, both
    /// tables, and every address and tag in the store.
    pub fn teardown(self) -> Result<()> {
        purge(&self.config.bridge)?;
        ipam::purge(self.store.as_ref(), &self.config.bridge)?;
        Ok(())
    }
}

fn member(bridge: &str, a: &AddressRecord) -> nft::Member {
    nft::Member {
        ip: a.ip,
        tag: a.tag,
        port: veth_name(bridge, &a.instance),
        connector: a
            .connector
            .as_deref()
            .map(|arn| arn.rsplit('/').next().unwrap_or(arn).to_string()),
    }
}

/// The lock over a bridge's rules. A rebuild reads the store and applies what it read,
/// so it holds the lock to write and interleaves with no other change; a change to one
/// service's instances holds it to read, beside that service's own lock
/// ([`Network::lock_service`]), so that services do not wait for each other.
fn rules_rwlock(bridge: &str) -> &'static RwLock<()> {
    // One lock per bridge for the life of the process (a process has one or two bridges),
    // shared by the bridge's [`Network`] and [`UserNetworks`].
    static LOCKS: Mutex<Option<HashMap<String, &'static RwLock<()>>>> = Mutex::new(None);
    LOCKS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get_or_insert_with(HashMap::new)
        .entry(bridge.to_string())
        .or_insert_with(|| Box::leak(Box::new(RwLock::new(()))))
}

/// The rules lock of `bridge`, to rebuild its rules.
fn rules_lock(bridge: &str) -> RwLockWriteGuard<'static, ()> {
    rules_rwlock(bridge)
        .write()
        .unwrap_or_else(|p| p.into_inner())
}

/// The rules lock of `bridge`, to change one service's rules.
fn rules_lock_shared(bridge: &str) -> RwLockReadGuard<'static, ()> {
    rules_rwlock(bridge)
        .read()
        .unwrap_or_else(|p| p.into_inner())
}

/// Rebuilds both nftables tables of `config`'s bridge from the store; the caller holds
/// the rules lock.
fn sync_rules(config: &NetConfig, store: &dyn Store) -> Result<()> {
    let held = ipam::all(store, &config.bridge)?;
    let members: Vec<_> = held.iter().map(|a| member(&config.bridge, a)).collect();
    let vpc = vpc::rules(store)?;
    let script = nft::ruleset(&config.bridge, config.subnet, config.ipv6, &members, &vpc);
    program::run("nft", &["-f", "-"], Some(&script))?;
    Ok(())
}

/// Removes everything on the host that belongs to `bridge` (namespaces, veths, the
/// bridges made for subnets, the bridge, the nftables tables), without the store: for
/// cleaning up after a test or a lost data directory.
pub fn purge(bridge: &str) -> Result<()> {
    for ns in link::namespaces(&netns_prefix(bridge)) {
        link::delete_namespace(&ns)?;
    }
    for subnet_bridge in link::with_alias(&vpc::alias_prefix(bridge)) {
        link::delete(&subnet_bridge)?;
    }
    for port in link::ports(bridge)? {
        link::delete(&port)?;
    }
    link::delete(bridge)?;
    program::run("nft", &["-f", "-"], Some(&nft::delete_tables(bridge)))?;
    Ok(())
}

/// Whether anything of `bridge` is left on the host (for tests that check cleanup).
pub fn leftovers(bridge: &str) -> Vec<String> {
    let mut found: Vec<String> = link::namespaces(&netns_prefix(bridge))
        .into_iter()
        .map(|n| format!("netns {n}"))
        .collect();
    if link::exists(bridge) {
        found.push(format!("bridge {bridge}"));
    }
    let table = nft::table(bridge);
    if let Ok(tables) = program::run("nft", &["list", "tables"], None) {
        for line in tables.lines() {
            if line.split_whitespace().last() == Some(table.as_str()) {
                found.push(line.trim().to_string());
            }
        }
    }
    found
}

const IPV4_FORWARDING: &str = "/proc/sys/net/ipv4/ip_forward";
/// IPv6 forwarding is one switch for the host: it turns it on for every interface, and
/// an interface that configures itself from router advertisements then needs
/// `accept_ra = 2` to go on doing so.
const IPV6_FORWARDING: &str = "/proc/sys/net/ipv6/conf/all/forwarding";

fn enable_forwarding(path: &str) -> Result<()> {
    let io = |source| NetError::Io {
        context: format!("cannot enable forwarding ({path})"),
        source,
    };
    if std::fs::read_to_string(path).map_err(io)?.trim() != "1" {
        std::fs::write(path, "1").map_err(io)?;
    }
    Ok(())
}
