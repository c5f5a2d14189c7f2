//! Response rate limiting over UDP (BIND's RRL idea, simplified): a token bucket per
//! client network (/24 for IPv4, /56 for IPv6), so a forged source address cannot turn
//! the server into an amplifier aimed at a victim, while a resolver that shares a network
//! with others still gets its answers (a limited client retries over TCP, which is never
//! limited).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

/// Networks remembered at most; older entries are forgotten first beyond it.
const MAX_TRACKED: usize = 65_536;

#[derive(Debug)]
pub(crate) struct Limiter {
    /// Responses per second per network; 0: unlimited.
    rate: u32,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// The network a client address belongs to, for limiting.
fn network(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            IpAddr::from([a, b, c, 0])
        }
        IpAddr::V6(v6) => {
            let mut octets = v6.octets();
            octets[7..].fill(0);
            IpAddr::from(octets)
        }
    }
}

impl Limiter {
    pub(crate) fn new(rate: u32) -> Self {
        Limiter {
            rate,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Whether a response to `client` may be sent now (and counts it).
    pub(crate) fn allow(&self, client: IpAddr) -> bool {
        self.allow_at(client, Instant::now())
    }

    fn allow_at(&self, client: IpAddr, now: Instant) -> bool {
        if self.rate == 0 {
            return true;
        }
        let rate = f64::from(self.rate);
        // A burst of two seconds' worth, so a resolver's retries are not punished.
        let burst = rate * 2.0;
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_TRACKED {
            // Full buckets of idle networks carry no information: drop them.
            buckets.retain(|_, b| {
                (b.tokens + now.duration_since(b.last).as_secs_f64() * rate) < burst
            });
            if buckets.len() >= MAX_TRACKED {
                buckets.clear();
            }
        }
        let bucket = buckets.entry(network(client)).or_insert(Bucket {
            tokens: burst,
            last: now,
        });
        let refill = now.duration_since(bucket.last).as_secs_f64() * rate;
        bucket.tokens = (bucket.tokens + refill).min(burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_network_gets_its_burst_then_its_rate() {
        let limiter = Limiter::new(10);
        let start = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let neighbour: IpAddr = "192.0.2.200".parse().unwrap();
        let other: IpAddr = "198.51.100.7".parse().unwrap();
        let allowed = (0..100).filter(|_| limiter.allow_at(a, start)).count();
        assert_eq!(allowed, 20, "a burst of two seconds' worth");
        assert!(
            !limiter.allow_at(neighbour, start),
            "the same /24 shares a bucket"
        );
        assert!(
            limiter.allow_at(other, start),
            "another network has its own"
        );
        let later = start + Duration::from_millis(500);
        let allowed = (0..100).filter(|_| limiter.allow_at(a, later)).count();
        assert_eq!(allowed, 5, "refilled at 10 per second");
        assert!(Limiter::new(0).allow_at(a, start));
    }

    #[test]
    fn ipv6_clients_are_limited_by_their_56() {
        assert_eq!(
            network("2001:db8:aa:bbcc:1:2:3:4".parse().unwrap()),
            "2001:db8:aa:bb00::".parse::<IpAddr>().unwrap()
        );
    }
}
