//! Failed authentication, limited per client address. Each address has an allowance of
//! failures that refills with time (a token bucket): once an address has used it up, a
//! request that carries credentials from it is refused before they are checked, until the
//! allowance has grown back. Guessing keys from one address is slowed to one try per
//! refill period, while other addresses are not affected. Every failure, and every
//! refusal now and then, is logged under [`AUTH_LOG_TARGET`] (the auth-failure log).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The `tracing` target of authentication failures; the server writes the events of this
/// target to its auth-failure log.
pub const AUTH_LOG_TARGET: &str = "runway_auth";

/// How many failures an address may have, and how fast its allowance grows back.
#[derive(Debug, Clone)]
pub struct ThrottleConfig {
    /// Failures in a row an address may have before it must wait.
    pub burst: u32,
    /// The time in which one failure's allowance grows back.
    pub refill: Duration,
    /// The most addresses remembered; beyond, those whose allowance is whole are
    /// forgotten first.
    pub max_addresses: usize,
}

impl Default for ThrottleConfig {
    /// 10 failures, then one per second.
    fn default() -> Self {
        ThrottleConfig {
            burst: 10,
            refill: Duration::from_secs(1),
            max_addresses: 65_536,
        }
    }
}

/// One failed (or refused) authentication, as logged.
#[derive(Debug, Clone, Copy)]
pub struct AuthFailure<'a> {
    /// The listener: `api` or `registry`.
    pub listener: &'static str,
    pub client: SocketAddr,
    /// The access key id (or token subject) the request named, if any.
    pub key_id: Option<&'a str>,
    /// Why it failed, as the client was told.
    pub reason: &'a str,
}

/// The failures of every client address; shared by the listeners that check credentials.
#[derive(Debug)]
pub struct AuthThrottle {
    config: ThrottleConfig,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Failures the address may still have; below zero when failures checked at once
    /// overdrew it.
    allowance: f64,
    updated: Instant,
    /// When a refusal was last logged, and how many refusals since.
    logged: Option<Instant>,
    refused: u64,
}

/// The address failures are counted under: an IPv4 address (also when mapped into IPv6),
/// or an IPv6 address's /64.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mut segments = v6.segments();
                segments[4..].fill(0);
                IpAddr::V6(segments.into())
            }
        },
    }
}

impl Default for AuthThrottle {
    fn default() -> Self {
        Self::new(ThrottleConfig::default())
    }
}

impl AuthThrottle {
    pub fn new(config: ThrottleConfig) -> Self {
        AuthThrottle {
            config,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn whole(&self) -> f64 {
        f64::from(self.config.burst.max(1))
    }

    /// Brings `bucket`'s allowance up to `now`.
    fn refill(&self, bucket: &mut Bucket, now: Instant) {
        let grown = now.saturating_duration_since(bucket.updated).as_secs_f64()
            / self.config.refill.as_secs_f64().max(1e-3);
        bucket.allowance = (bucket.allowance + grown).min(self.whole());
        bucket.updated = now;
    }

    /// Before the credentials of a request from `failure.client` are checked: `Err` with
    /// how long to wait while its address has no failures left (the request is refused
    /// unchecked; the refusal is logged now and then with `failure`'s details).
    pub fn admit(&self, failure: &AuthFailure<'_>) -> Result<(), Duration> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let refill = self.config.refill;
        let Some(bucket) = buckets.get_mut(&address_key(failure.client.ip())) else {
            return Ok(());
        };
        self.refill(bucket, now);
        if bucket.allowance >= 1.0 {
            return Ok(());
        }
        let wait = refill.mul_f64(1.0 - bucket.allowance);
        bucket.refused += 1;
        // One line per address and refill period at most: refusals cost the attacker
        // nothing, so logging each would let them fill the disk.
        if bucket
            .logged
            .is_none_or(|t| now.duration_since(t) >= refill)
        {
            tracing::warn!(
                target: AUTH_LOG_TARGET,
                listener = failure.listener,
                client = %failure.client,
                key_id = failure.key_id.unwrap_or(""),
                refused = bucket.refused,
                retry_after_ms = wait.as_millis() as u64,
                "authentication refused: too many failures from this address"
            );
            bucket.logged = Some(now);
            bucket.refused = 0;
        }
        Err(wait)
    }

    /// After credentials from `failure.client` did not check out: logs it and takes one
    /// failure from its address's allowance.
    pub fn failed(&self, failure: &AuthFailure<'_>) {
        tracing::warn!(
            target: AUTH_LOG_TARGET,
            listener = failure.listener,
            client = %failure.client,
            key_id = failure.key_id.unwrap_or(""),
            reason = failure.reason,
            "authentication failed"
        );
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= self.config.max_addresses {
            self.forget_recovered(&mut buckets, now);
        }
        if buckets.len() >= self.config.max_addresses
            && !buckets.contains_key(&address_key(failure.client.ip()))
        {
            // Every remembered address is still paying off its failures; a new one is
            // not tracked rather than growing without bound.
            return;
        }
        let whole = self.whole();
        let bucket = buckets
            .entry(address_key(failure.client.ip()))
            .or_insert(Bucket {
                allowance: whole,
                updated: now,
                logged: None,
                refused: 0,
            });
        self.refill(bucket, now);
        bucket.allowance = (bucket.allowance - 1.0).max(-whole);
    }

    /// Forgets addresses whose allowance has grown back whole.
    fn forget_recovered(&self, buckets: &mut HashMap<IpAddr, Bucket>, now: Instant) {
        let whole = self.whole();
        let refill = self.config.refill.as_secs_f64().max(1e-3);
        buckets.retain(|_, b| {
            b.allowance + now.saturating_duration_since(b.updated).as_secs_f64() / refill < whole
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(client: &str) -> AuthFailure<'_> {
        AuthFailure {
            listener: "api",
            client: client.parse().unwrap(),
            key_id: Some("RWAYEXAMPLE"),
            reason: "the signature does not match",
        }
    }

    #[test]
    fn an_address_is_refused_after_its_burst_and_others_are_not() {
        let throttle = AuthThrottle::new(ThrottleConfig {
            burst: 3,
            refill: Duration::from_millis(200),
            max_addresses: 100,
        });
        let a = failure("192.0.2.1:1000");
        for _ in 0..3 {
            assert!(throttle.admit(&a).is_ok());
            throttle.failed(&a);
        }
        let wait = throttle.admit(&a).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(200),
            "{wait:?}"
        );
        // Another port of the same address is the same client; another address is not.
        assert!(throttle.admit(&failure("192.0.2.1:2000")).is_err());
        assert!(throttle.admit(&failure("192.0.2.2:1000")).is_ok());
        // The allowance grows back: one more try after a refill period.
        std::thread::sleep(Duration::from_millis(220));
        assert!(throttle.admit(&a).is_ok());
        throttle.failed(&a);
        assert!(throttle.admit(&a).is_err());
    }

    #[test]
    fn ipv6_clients_share_their_64_and_memory_is_bounded() {
        let throttle = AuthThrottle::new(ThrottleConfig {
            burst: 1,
            refill: Duration::from_secs(60),
            max_addresses: 2,
        });
        throttle.failed(&failure("[2001:db8:1:2::1]:1"));
        assert!(throttle.admit(&failure("[2001:db8:1:2::ffff]:1")).is_err());
        assert!(throttle.admit(&failure("[2001:db8:1:3::1]:1")).is_ok());
        throttle.failed(&failure("192.0.2.9:1"));
        // Both remembered addresses still owe: a third is not tracked, and nothing grows.
        throttle.failed(&failure("192.0.2.10:1"));
        assert!(throttle.admit(&failure("192.0.2.10:1")).is_ok());
        assert_eq!(throttle.buckets.lock().unwrap().len(), 2);
    }
}
