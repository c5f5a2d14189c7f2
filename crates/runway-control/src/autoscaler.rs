//! The concurrency autoscaler, after Knative's KPA: every tick it takes the concurrency
//! the router measured for a revision, averages it over a stable window (60 s) and a panic
//! window (6 s), and proposes an instance count so that each instance sees `target =
//! MaxConcurrency x target utilization` requests at once. A burst that needs twice the
//! current capacity within the panic window puts the revision in panic mode, where it only
//! scales up, until the stable window has caught up. Scale-down is rate limited; MinSize 0
//! lets an idle revision go to zero after a grace period.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How the autoscaler behaves; the defaults are Knative's.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalerConfig {
    pub stable_window: Duration,
    pub panic_window: Duration,
    /// Panic when the panic window wants this many times the ready instances.
    pub panic_threshold: f64,
    /// The share of MaxConcurrency each instance is aimed at.
    pub target_utilization: f64,
    /// At most this many times the ready instances in one step up.
    pub max_scale_up_rate: f64,
    /// At most ready / this many instances in one step down.
    pub max_scale_down_rate: f64,
    /// How long a revision with MinSize 0 stays at one instance after its last request.
    pub scale_to_zero_grace: Duration,
}

impl Default for ScalerConfig {
    fn default() -> Self {
        ScalerConfig {
            stable_window: Duration::from_secs(60),
            panic_window: Duration::from_secs(6),
            panic_threshold: 2.0,
            target_utilization: 0.7,
            max_scale_up_rate: 1000.0,
            max_scale_down_rate: 2.0,
            scale_to_zero_grace: Duration::from_secs(30),
        }
    }
}

/// A revision's bounds, from its service's auto scaling configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub min: u32,
    pub max: u32,
    pub max_concurrency: u32,
}

/// The autoscaler of one revision.
#[derive(Debug)]
pub struct Decider {
    config: ScalerConfig,
    /// (when, average concurrency since the previous sample), oldest first.
    samples: VecDeque<(Instant, f64)>,
    panic_since: Option<Instant>,
    max_panic: u32,
    last_active: Option<Instant>,
}

impl Decider {
    /// A decider for a revision that has `ready` instances now. Like Knative, it starts in
    /// panic mode when more than one instance is ready: with no history yet, it must not
    /// scale a loaded revision down.
    pub fn new(config: ScalerConfig, now: Instant, ready: u32) -> Self {
        Decider {
            config,
            samples: VecDeque::new(),
            panic_since: (ready > 1).then_some(now),
            max_panic: ready,
            last_active: Some(now),
        }
    }

    /// Records the revision's average concurrency since the previous sample.
    pub fn record(&mut self, now: Instant, concurrency: f64) {
        let concurrency = if concurrency.is_finite() {
            concurrency.max(0.0)
        } else {
            0.0
        };
        if concurrency > 0.0 {
            self.last_active = Some(now);
        }
        self.samples.push_back((now, concurrency));
        while let Some((t, _)) = self.samples.front() {
            if now.duration_since(*t) > self.config.stable_window {
                self.samples.pop_front();
            } else {
                break;
            }
        }
    }

    /// Marks demand the router saw (a request waiting with no instance): a revision at
    /// zero must come back at once.
    pub fn poke(&mut self, now: Instant) {
        self.last_active = Some(now);
    }

    fn average(&self, now: Instant, window: Duration) -> Option<f64> {
        let recent: Vec<f64> = self
            .samples
            .iter()
            .filter(|(t, _)| now.duration_since(*t) < window)
            .map(|(_, c)| *c)
            .collect();
        (!recent.is_empty()).then(|| recent.iter().sum::<f64>() / recent.len() as f64)
    }

    /// Whether the decider is in panic mode.
    pub fn panicking(&self) -> bool {
        self.panic_since.is_some()
    }

    /// The instance count the revision should have, given `ready` instances now.
    pub fn decide(&mut self, now: Instant, ready: u32, bounds: Bounds) -> u32 {
        let c = &self.config;
        let (stable, panic) = match (
            self.average(now, c.stable_window),
            self.average(now, c.panic_window),
        ) {
            (Some(s), Some(p)) => (s, p),
            (Some(s), None) => (s, s),
            // No data yet: keep what there is, within bounds.
            _ => return clamp(ready.max(self.max_panic), bounds, self.recently_active(now)),
        };
        let target = (f64::from(bounds.max_concurrency.max(1)) * c.target_utilization).max(0.01);
        let ready_f = f64::from(ready.max(1));
        let max_up = (c.max_scale_up_rate * ready_f).ceil();
        let max_down = (ready_f / c.max_scale_down_rate).floor();
        let want_stable = (stable / target).ceil();
        let want_panic = (panic / target).ceil();
        let desired_stable = want_stable.clamp(max_down, max_up.max(max_down)) as u32;
        let desired_panic = want_panic.clamp(max_down, max_up.max(max_down)) as u32;

        let over_threshold = want_panic / ready_f >= c.panic_threshold;
        match self.panic_since {
            _ if over_threshold => self.panic_since = Some(now),
            Some(since) if now.duration_since(since) > c.stable_window => {
                self.panic_since = None;
                self.max_panic = 0;
            }
            _ => {}
        }
        let desired = if self.panic_since.is_some() {
            // In panic, only scale up, to the larger of the two views.
            self.max_panic = self.max_panic.max(desired_stable.max(desired_panic));
            self.max_panic
        } else {
            desired_stable
        };
        clamp(desired, bounds, self.recently_active(now))
    }

    fn recently_active(&self, now: Instant) -> bool {
        self.last_active
            .is_some_and(|t| now.duration_since(t) < self.config.scale_to_zero_grace)
    }
}

/// Clamps to the bounds; a revision that may go to zero keeps one instance while it was
/// active within the grace period.
fn clamp(desired: u32, bounds: Bounds, recently_active: bool) -> u32 {
    let floor = if bounds.min == 0 && recently_active {
        1
    } else {
        bounds.min
    };
    desired.max(floor).min(bounds.max.max(floor))
}

#[cfg(test)]
mod tests;
