//! Health checks as App Runner defines them (HealthCheckConfiguration): a TCP connect or
//! an HTTP GET of a path (2xx or 3xx passes), every interval, each within a timeout; an
//! instance turns healthy after `healthy_threshold` consecutive passes and unhealthy
//! after `unhealthy_threshold` consecutive failures.
//!
//! A starting instance is probed quickly (from a few milliseconds apart up to the
//! interval) so that it is found healthy as soon as it serves, but its failures count
//! only one per interval, so a slow starter is not declared unhealthy sooner than the
//! configured cadence would.

use runway_model::shapes::HealthCheckConfiguration;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How an instance is probed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Probe {
    /// A TCP connection to the instance's port.
    Tcp,
    /// An HTTP GET of `path`; a 2xx or 3xx status passes.
    Http { path: String },
}

/// An instance's health check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    pub probe: Probe,
    #[serde(with = "millis")]
    pub interval: Duration,
    #[serde(with = "millis")]
    pub timeout: Duration,
    pub healthy_threshold: u32,
    pub unhealthy_threshold: u32,
}

mod millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

/// App Runner's defaults: TCP, every 5 s, 2 s timeout, healthy after 1 pass, unhealthy
/// after 5 failures.
impl Default for HealthCheck {
    fn default() -> Self {
        HealthCheck {
            probe: Probe::Tcp,
            interval: Duration::from_secs(5),
            timeout: Duration::from_secs(2),
            healthy_threshold: 1,
            unhealthy_threshold: 5,
        }
    }
}

impl HealthCheck {
    /// The check a HealthCheckConfiguration describes, with App Runner's defaults for
    /// what it leaves out and App Runner's ranges enforced (interval and timeout 1 to 20
    /// seconds, thresholds 1 to 20).
    pub fn from_config(c: &HealthCheckConfiguration) -> Result<HealthCheck, String> {
        let d = HealthCheck::default();
        let range = |name: &str, v: Option<i64>, default: u64| -> Result<u64, String> {
            match v {
                None => Ok(default),
                Some(v) if (1..=20).contains(&v) => Ok(v as u64),
                Some(v) => Err(format!(
                    "HealthCheckConfiguration.{name} must be 1 to 20, got {v}"
                )),
            }
        };
        let probe = match c.protocol.as_deref().unwrap_or("TCP") {
            "TCP" => Probe::Tcp,
            "HTTP" => Probe::Http {
                path: c
                    .path
                    .clone()
                    .filter(|p| !p.is_empty())
                    .unwrap_or_else(|| "/".into()),
            },
            other => {
                return Err(format!(
                    "HealthCheckConfiguration.Protocol must be TCP or HTTP, got {other:?}"
                ));
            }
        };
        let check = HealthCheck {
            probe,
            interval: Duration::from_secs(range("Interval", c.interval, d.interval.as_secs())?),
            timeout: Duration::from_secs(range("Timeout", c.timeout, d.timeout.as_secs())?),
            healthy_threshold: range("HealthyThreshold", c.healthy_threshold, 1)? as u32,
            unhealthy_threshold: range("UnhealthyThreshold", c.unhealthy_threshold, 5)? as u32,
        };
        check.validate()?;
        Ok(check)
    }

    /// Checks what the runtime itself needs (tests may use sub-second intervals).
    pub fn validate(&self) -> Result<(), String> {
        if self.interval.is_zero() || self.timeout.is_zero() {
            return Err("health check interval and timeout must be positive".into());
        }
        if self.healthy_threshold == 0 || self.unhealthy_threshold == 0 {
            return Err("health check thresholds must be at least 1".into());
        }
        if let Probe::Http { path } = &self.probe
            && (!path.starts_with('/')
                || path.len() > 1024
                || path.bytes().any(|b| b <= b' ' || b == 0x7f))
        {
            return Err(format!(
                "health check path {path:?} must start with '/' and hold no spaces or control characters"
            ));
        }
        Ok(())
    }
}

/// Probes `addr` once; why it failed, if it did.
pub async fn probe(addr: SocketAddr, check: &HealthCheck) -> Result<(), String> {
    match tokio::time::timeout(check.timeout, probe_inner(addr, &check.probe)).await {
        Ok(result) => result,
        Err(_) => Err(format!("no answer within {:?}", check.timeout)),
    }
}

async fn probe_inner(addr: SocketAddr, probe: &Probe) -> Result<(), String> {
    let mut stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let Probe::Http { path } = probe else {
        return Ok(());
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUser-Agent: runway-health-check\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("cannot send the request: {e}"))?;
    // The status line is all that is read: "HTTP/1.1 200 OK".
    let mut head = Vec::with_capacity(64);
    let mut buf = [0u8; 256];
    while !head.contains(&b'\n') && head.len() < 1024 {
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| format!("cannot read the response: {e}"))?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    let line = String::from_utf8_lossy(&head);
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .filter(|_| line.starts_with("HTTP/"))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| "the answer is not HTTP".to_string())?;
    if (200..400).contains(&status) {
        Ok(())
    } else {
        Err(format!("status {status}"))
    }
}

/// The health an instance is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Starting,
    Healthy,
    Unhealthy,
}

/// Counts probe results into health transitions.
#[derive(Debug, Clone)]
pub struct Tracker {
    check: HealthCheck,
    health: Health,
    passes: u32,
    failures: u32,
    last_counted: Option<Instant>,
    startup_delay: Duration,
}

/// The first delay between probes of a starting instance.
const FIRST_STARTUP_DELAY: Duration = Duration::from_millis(5);
/// The longest delay between probes of a starting instance.
const MAX_STARTUP_DELAY: Duration = Duration::from_millis(200);

impl Tracker {
    pub fn new(check: HealthCheck, health: Health) -> Tracker {
        Tracker {
            check,
            health,
            passes: 0,
            failures: 0,
            last_counted: None,
            startup_delay: FIRST_STARTUP_DELAY,
        }
    }

    /// Records a probe result at `now`; the new health if it changed.
    pub fn record(&mut self, passed: bool, now: Instant) -> Option<Health> {
        // Once running normally every probe counts; while starting, only one result
        // per interval does (the first pass always counts).
        let due = self
            .last_counted
            .is_none_or(|t| now.duration_since(t) >= self.check.interval);
        let counts = self.health != Health::Starting || due || (passed && self.passes == 0);
        if !counts {
            return None;
        }
        self.last_counted = Some(now);
        if passed {
            self.passes += 1;
            self.failures = 0;
        } else {
            self.failures += 1;
            self.passes = 0;
        }
        let next = if self.passes >= self.check.healthy_threshold {
            Health::Healthy
        } else if self.failures >= self.check.unhealthy_threshold {
            Health::Unhealthy
        } else {
            self.health
        };
        (next != self.health).then(|| {
            self.health = next;
            next
        })
    }

    /// How long to wait before the next probe.
    pub fn next_delay(&mut self) -> Duration {
        if self.health == Health::Starting {
            let d = self.startup_delay.min(self.check.interval);
            self.startup_delay = (self.startup_delay * 2).min(MAX_STARTUP_DELAY);
            d
        } else {
            self.check.interval
        }
    }
}

#[cfg(test)]
mod tests;
