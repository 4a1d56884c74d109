//! [`Health`]: whether a server is taken out of the ring after failing,
//! and when it comes back. twemproxy's `auto_eject_hosts`,
//! `server_failure_limit` and `server_retry_timeout`, which the client's
//! options and the proxy's pool configuration both follow.
//!
//! No I/O and no clock of its own: the caller says when something failed
//! or succeeded and passes the time, so the rules are testable and the
//! caller decides what sharing it needs (the client wraps one per server in
//! a mutex; the proxy's single-threaded workers hold theirs plainly).

use std::time::{Duration, Instant};

/// The ejection rules of a pool of servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthPolicy {
    /// Take a server out after `failure_limit` consecutive failures; off,
    /// failures are only counted.
    pub auto_eject: bool,
    pub failure_limit: u32,
    /// How long an ejected server stays out.
    pub retry_timeout: Duration,
    /// A failure reaching the limit while the server is already out
    /// restarts its retry wait (the client, as twemproxy); off, it is only
    /// counted (the proxy).
    pub extend_ejection: bool,
}

/// One server's failure count and ejection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Health {
    failures: u32,
    ejected_until: Option<Instant>,
}

impl Health {
    pub fn new() -> Health {
        Health::default()
    }

    /// A request to the server succeeded: the failure run is broken.
    pub fn succeeded(&mut self) {
        self.failures = 0;
    }

    /// Counts a failure at `now`; true when it ejects the server (the
    /// caller then rebuilds its ring and counts the ejection).
    pub fn failed(&mut self, p: &HealthPolicy, now: Instant) -> bool {
        self.failures = self.failures.wrapping_add(1);
        let eject = p.auto_eject
            && self.failures >= p.failure_limit
            && (p.extend_ejection || self.ejected_until.is_none());
        if eject {
            self.failures = 0;
            self.ejected_until = Some(now + p.retry_timeout);
        }
        eject
    }

    /// Brings the server back once its retry time has come; true when it
    /// did (the caller rebuilds its ring). The failure count is kept.
    pub fn readmit_if_due(&mut self, now: Instant) -> bool {
        if self.ejected_until.is_some_and(|t| t <= now) {
            self.ejected_until = None;
            return true;
        }
        false
    }

    pub fn is_ejected(&self) -> bool {
        self.ejected_until.is_some()
    }

    /// When an ejected server is due back, for the caller's timer.
    pub fn ejected_until(&self) -> Option<Instant> {
        self.ejected_until
    }

    /// Consecutive failures counted since the last success or ejection.
    pub fn failures(&self) -> u32 {
        self.failures
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(extend: bool) -> HealthPolicy {
        HealthPolicy {
            auto_eject: true,
            failure_limit: 2,
            retry_timeout: Duration::from_secs(30),
            extend_ejection: extend,
        }
    }

    #[test]
    fn ejects_at_the_limit_and_readmits_after_retry() {
        let p = policy(true);
        let t0 = Instant::now();
        let mut h = Health::new();
        assert!(!h.failed(&p, t0));
        assert_eq!(h.failures(), 1);
        assert!(h.failed(&p, t0));
        assert!(h.is_ejected());
        assert_eq!(h.failures(), 0);
        assert_eq!(h.ejected_until(), Some(t0 + p.retry_timeout));
        assert!(!h.readmit_if_due(t0 + Duration::from_secs(29)));
        assert!(h.is_ejected());
        assert!(h.readmit_if_due(t0 + p.retry_timeout));
        assert!(!h.is_ejected());
        assert!(!h.readmit_if_due(t0 + p.retry_timeout));
    }

    #[test]
    fn success_breaks_the_run() {
        let p = policy(true);
        let t0 = Instant::now();
        let mut h = Health::new();
        assert!(!h.failed(&p, t0));
        h.succeeded();
        assert!(!h.failed(&p, t0));
        assert!(!h.is_ejected());
    }

    #[test]
    fn without_auto_eject_failures_only_count() {
        let p = HealthPolicy {
            auto_eject: false,
            ..policy(true)
        };
        let mut h = Health::new();
        for _ in 0..10 {
            assert!(!h.failed(&p, Instant::now()));
        }
        assert_eq!(h.failures(), 10);
        assert!(!h.is_ejected());
    }

    #[test]
    fn failures_while_ejected() {
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(10);
        // The client's rule: the retry wait starts again.
        let p = policy(true);
        let mut h = Health::new();
        h.failed(&p, t0);
        h.failed(&p, t0);
        h.failed(&p, later);
        assert!(h.failed(&p, later));
        assert_eq!(h.ejected_until(), Some(later + p.retry_timeout));
        // The proxy's rule: counted, the wait stands.
        let p = policy(false);
        let mut h = Health::new();
        h.failed(&p, t0);
        h.failed(&p, t0);
        assert!(!h.failed(&p, later));
        assert!(!h.failed(&p, later));
        assert_eq!(h.failures(), 2);
        assert_eq!(h.ejected_until(), Some(t0 + p.retry_timeout));
    }

    #[test]
    fn limit_zero_ejects_on_first_failure() {
        let p = HealthPolicy {
            failure_limit: 0,
            ..policy(true)
        };
        assert!(Health::new().failed(&p, Instant::now()));
    }
}
