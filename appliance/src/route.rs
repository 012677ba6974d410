//! Where the next connection goes, and how soon: the configured server, a server a pool
//! redirected the appliance to, or, when a pool server dies, the other servers of its pool.
//!
//! Pure bookkeeping (no I/O), driven by the supervisor with what each connection ended in:
//! - a **redirect** is followed at once, pinned by the announced key fingerprint, and counted:
//!   more than [`MAX_HOPS`] in a row without a frame shown is refused, and the appliance goes
//!   back to its configured server after the usual backoff;
//! - a pool server **lost without a goodbye** (idle timeout, reset) gets one quick retry, then
//!   the other servers of the last pool list are tried in order, quickly, each with
//!   `Arrival::ServerLost`;
//! - a failed reconnect to a pool server sends the appliance through the pool list at once;
//!   after an orderly restart (`Bye(Shutdown)`), or at boot with a pool list kept from before,
//!   only after [`FAILURES_BEFORE_POOL`] failed attempts.
//!
//! Without a pool list everything is as it was: the same server again, with backoff.

use std::collections::VecDeque;
use std::time::Duration;

use wayray_protocol::{Arrival, PoolServer, Redirect};

use crate::config::ServerAddr;

/// Redirects in a row, without a frame shown, that the appliance follows. Two servers with
/// stale views of where a session is could otherwise bounce it between them forever.
pub const MAX_HOPS: u8 = 3;

/// Failed attempts at the same server before the other servers of the pool are tried.
pub const FAILURES_BEFORE_POOL: u32 = 3;

/// Bounds the QUIC handshake plus Hello/Welcome. QUIC has no "connection refused", so this is
/// how long a stopped server costs per attempt.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The same bound while failing over to another pool server: someone is waiting for a session,
/// and a live pool server answers well within it.
pub const FAILOVER_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// One server to connect to, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub address: ServerAddr,
    /// Its name in the pool, when the appliance knows it (from a pool list, or its Welcome).
    pub name: Option<String>,
    /// `Some`: trust exactly the key with this fingerprint (a pool server); `None`: the
    /// configured trust (`--server-cert`, or `known_servers/`).
    pub fingerprint: Option<String>,
    /// What the Hello says about why the appliance comes.
    pub arrival: Arrival,
    pub connect_timeout: Duration,
}

impl Target {
    fn direct(address: ServerAddr) -> Self {
        Self {
            address,
            name: None,
            fingerprint: None,
            arrival: Arrival::Direct,
            connect_timeout: CONNECT_TIMEOUT,
        }
    }

    /// For logs and the status line: the pool name, else the address.
    pub fn label(&self) -> String {
        match &self.name {
            Some(name) => format!("{name} ({})", self.address),
            None => self.address.to_string(),
        }
    }
}

/// How soon the next attempt starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pace {
    /// At once: a redirect, or failing over to another server.
    Now,
    /// After the reconnect backoff.
    Backoff,
}

/// Why a redirect is not followed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedirectRefused {
    #[error(
        "{hops} redirects in a row without a session shown (the pool servers disagree where it \
         is); not following the one to {to}"
    )]
    TooManyHops { hops: u8, to: String },
    #[error("the redirect to {to} names no usable address ({address:?}): {reason}")]
    BadAddress {
        to: String,
        address: String,
        reason: String,
    },
}

/// The appliance's idea of where to connect next (see the module comment).
#[derive(Debug)]
pub struct Route {
    configured: ServerAddr,
    /// The latest pool list a server sent (or the one kept from before a reboot).
    pool: Vec<PoolServer>,
    /// Where reconnects go: the last server that welcomed the appliance, at first the
    /// configured one.
    home: Target,
    /// The next attempt.
    next: Target,
    /// Further servers to try, at once, if `next` fails.
    pending: VecDeque<Target>,
    /// Redirects followed in a row without a frame shown.
    hops: u8,
    /// Attempts at `home` in a row that reached no server.
    failures: u32,
    /// Failed attempts at `home` before the pool's other servers are tried.
    patience: u32,
    /// The pool server the appliance lost last, and whether it had shown frames from it.
    lost: Option<(String, bool)>,
}

impl Route {
    /// Starts at the configured server; `pool` is the list kept from an earlier run, if any.
    pub fn new(configured: ServerAddr, pool: Vec<PoolServer>) -> Self {
        let home = Target::direct(configured.clone());
        Self {
            configured,
            pool,
            next: home.clone(),
            home,
            pending: VecDeque::new(),
            hops: 0,
            failures: 0,
            patience: FAILURES_BEFORE_POOL,
            lost: None,
        }
    }

    pub fn next(&self) -> &Target {
        &self.next
    }

    pub fn pool(&self) -> &[PoolServer] {
        &self.pool
    }

    /// The server behind `next` welcomed the appliance, naming itself `server_name` and its
    /// pool `pool`. Returns true when the pool list changed (so it is stored again).
    pub fn welcomed(&mut self, server_name: &str, pool: Vec<PoolServer>) -> bool {
        let in_pool = !pool.is_empty();
        self.home = Target {
            name: in_pool.then(|| server_name.to_owned()),
            arrival: Arrival::Direct,
            connect_timeout: CONNECT_TIMEOUT,
            ..self.next.clone()
        };
        self.next = self.home.clone();
        self.pending.clear();
        self.failures = 0;
        self.patience = 1;
        self.lost = None;
        let changed = self.pool != pool;
        self.pool = pool;
        changed
    }

    /// Frames were shown: the redirects that led here are settled.
    pub fn frames_shown(&mut self) {
        self.hops = 0;
    }

    /// The server named `from` sent the appliance elsewhere. `Ok`: `next` is there, go now.
    /// `Err`: not followed; `next` is the configured server, after the backoff.
    pub fn redirected(&mut self, from: &str, redirect: &Redirect) -> Result<(), RedirectRefused> {
        let to = &redirect.server;
        self.pending.clear();
        if self.hops >= MAX_HOPS {
            let hops = self.hops + 1;
            self.hops = 0;
            self.home = Target::direct(self.configured.clone());
            self.next = self.home.clone();
            return Err(RedirectRefused::TooManyHops {
                hops,
                to: to.name.clone(),
            });
        }
        let address =
            to.address
                .parse::<ServerAddr>()
                .map_err(|reason| RedirectRefused::BadAddress {
                    to: to.name.clone(),
                    address: to.address.clone(),
                    reason,
                })?;
        self.hops += 1;
        self.next = Target {
            address,
            name: Some(to.name.clone()),
            fingerprint: Some(to.fingerprint.clone()),
            arrival: Arrival::Redirected {
                from: from.to_owned(),
                hops: self.hops,
            },
            connect_timeout: CONNECT_TIMEOUT,
        };
        Ok(())
    }

    /// The welcomed connection to `home` was lost without a goodbye. In a pool: one quick retry
    /// of the same server, then the others at once. Alone: the same server after the backoff.
    pub fn lost(&mut self, showed_session: bool) -> Pace {
        self.pending.clear();
        let Some(name) = self.home.name.clone().filter(|_| !self.pool.is_empty()) else {
            self.next = self.home.clone();
            return Pace::Backoff;
        };
        self.lost = Some((name, showed_session));
        // Should the whole list fail too, the pool is tried again only now and then.
        self.patience = FAILURES_BEFORE_POOL;
        self.next = Target {
            connect_timeout: FAILOVER_CONNECT_TIMEOUT,
            ..self.home.clone()
        };
        self.pending = self.failover_candidates();
        Pace::Now
    }

    /// The server said goodbye because it is shutting down (an orderly restart): the same
    /// server again after the backoff; should it stay away, the pool's other servers hear that
    /// it was lost.
    pub fn server_restarting(&mut self, showed_session: bool) {
        self.retry_home(showed_session);
        self.patience = FAILURES_BEFORE_POOL;
    }

    /// The connection ended for a reason a retry may heal: the same server again after the
    /// backoff; if that reconnect fails, the pool's other servers at once.
    pub fn retry_home(&mut self, showed_session: bool) {
        self.pending.clear();
        self.next = self.home.clone();
        self.lost = self.home.name.clone().map(|name| (name, showed_session));
    }

    /// The attempt at `next` reached no server (or was refused). The next pending server at
    /// once; else the home server after the backoff, and once it has failed `patience` times,
    /// the pool list.
    pub fn failed(&mut self) -> Pace {
        if let Some(target) = self.pending.pop_front() {
            self.next = target;
            return Pace::Now;
        }
        let was_home = self.next.address == self.home.address
            && self.next.fingerprint == self.home.fingerprint;
        self.next = self.home.clone();
        if !was_home {
            // Back from a redirect target or the end of the pool list.
            return Pace::Backoff;
        }
        self.failures += 1;
        if self.failures >= self.patience {
            self.failures = 0;
            self.patience = FAILURES_BEFORE_POOL;
            self.pending = self.failover_candidates();
            if let Some(target) = self.pending.pop_front() {
                self.next = target;
                return Pace::Now;
            }
        }
        Pace::Backoff
    }

    /// The pool's servers in its order, without the home server, each pinned by its key.
    fn failover_candidates(&self) -> VecDeque<Target> {
        let arrival = match &self.lost {
            Some((server, showed_session)) => Arrival::ServerLost {
                server: server.clone(),
                showed_session: *showed_session,
            },
            None => Arrival::Direct,
        };
        self.pool
            .iter()
            .filter(|server| match &self.home.name {
                Some(name) => server.name != *name,
                None => true,
            })
            .filter_map(|server| {
                let address = match server.address.parse::<ServerAddr>() {
                    Ok(address) => address,
                    Err(reason) => {
                        tracing::warn!(server = %server.name, %reason, "skipping a pool server");
                        return None;
                    }
                };
                // The configured server itself is not tried again under another trust.
                if self.home.name.is_none() && address == self.home.address {
                    return None;
                }
                Some(Target {
                    address,
                    name: Some(server.name.clone()),
                    fingerprint: Some(server.fingerprint.clone()),
                    arrival: arrival.clone(),
                    connect_timeout: FAILOVER_CONNECT_TIMEOUT,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wayray_protocol::RedirectReason;

    fn addr(text: &str) -> ServerAddr {
        text.parse().unwrap()
    }

    fn server(n: u8) -> PoolServer {
        PoolServer {
            name: format!("s{n}"),
            address: format!("10.0.0.{n}:7390"),
            fingerprint: format!("{n:064x}"),
        }
    }

    fn pool() -> Vec<PoolServer> {
        vec![server(1), server(2), server(3)]
    }

    fn redirect(n: u8) -> Redirect {
        Redirect {
            server: server(n),
            reason: RedirectReason::SessionThere,
        }
    }

    /// Connected to s1 (the configured server) with the pool list [s1, s2, s3].
    fn at_s1() -> Route {
        let mut route = Route::new(addr("10.0.0.1:7390"), Vec::new());
        assert!(route.welcomed("s1", pool()));
        route
    }

    #[test]
    fn redirect_is_followed_pinned_and_counted() {
        let mut route = at_s1();
        route.redirected("s1", &redirect(2)).unwrap();
        let next = route.next();
        assert_eq!(next.address, addr("10.0.0.2:7390"));
        assert_eq!(
            next.fingerprint.as_deref(),
            Some(server(2).fingerprint.as_str())
        );
        assert_eq!(
            next.arrival,
            Arrival::Redirected {
                from: "s1".into(),
                hops: 1
            }
        );
        // Welcomed by s2, which sends it on without a frame shown: hops keep counting.
        assert!(!route.welcomed("s2", pool()));
        route.redirected("s2", &redirect(3)).unwrap();
        assert_eq!(
            route.next().arrival,
            Arrival::Redirected {
                from: "s2".into(),
                hops: 2
            }
        );
        // Frames shown: a later redirect is the first of a new run.
        route.welcomed("s3", pool());
        route.frames_shown();
        route.redirected("s3", &redirect(1)).unwrap();
        assert_eq!(
            route.next().arrival,
            Arrival::Redirected {
                from: "s3".into(),
                hops: 1
            }
        );
    }

    #[test]
    fn hop_limit_refuses_and_goes_back_to_the_configured_server() {
        let mut route = at_s1();
        for (hop, (from, to)) in [(1, 2), (2, 1), (1, 2)].into_iter().enumerate() {
            route
                .redirected(&format!("s{from}"), &redirect(to))
                .unwrap();
            assert!(matches!(
                route.next().arrival,
                Arrival::Redirected { hops, .. } if usize::from(hops) == hop + 1
            ));
            route.welcomed(&format!("s{to}"), pool());
        }
        let refused = route.redirected("s2", &redirect(1)).unwrap_err();
        assert_eq!(
            refused,
            RedirectRefused::TooManyHops {
                hops: MAX_HOPS + 1,
                to: "s1".into()
            }
        );
        assert_eq!(route.next(), &Target::direct(addr("10.0.0.1:7390")));
        // The count starts again.
        route.welcomed("s1", pool());
        route.redirected("s1", &redirect(2)).unwrap();
        assert!(matches!(
            route.next().arrival,
            Arrival::Redirected { hops: 1, .. }
        ));
    }

    #[test]
    fn redirect_to_an_unusable_address_is_refused() {
        let mut route = at_s1();
        let mut bad = redirect(2);
        bad.server.address = "10.0.0.2:notaport".into();
        assert!(matches!(
            route.redirected("s1", &bad),
            Err(RedirectRefused::BadAddress { .. })
        ));
    }

    #[test]
    fn lost_pool_server_gets_one_quick_retry_then_the_others_in_order() {
        let mut route = at_s1();
        route.frames_shown();
        assert_eq!(route.lost(true), Pace::Now);
        // The same server once more, quickly, as a plain reconnect.
        let retry = route.next().clone();
        assert_eq!(retry.address, addr("10.0.0.1:7390"));
        assert_eq!(retry.arrival, Arrival::Direct);
        assert_eq!(
            retry.fingerprint, None,
            "the configured server keeps its own trust"
        );
        assert_eq!(retry.connect_timeout, FAILOVER_CONNECT_TIMEOUT);

        let lost = Arrival::ServerLost {
            server: "s1".into(),
            showed_session: true,
        };
        for n in [2, 3] {
            assert_eq!(route.failed(), Pace::Now);
            let next = route.next();
            assert_eq!(next.name.as_deref(), Some(format!("s{n}").as_str()));
            assert_eq!(next.fingerprint, Some(server(n).fingerprint));
            assert_eq!(next.arrival, lost);
            assert_eq!(next.connect_timeout, FAILOVER_CONNECT_TIMEOUT);
        }
        // All failed: back to s1 with the backoff, as without a pool.
        assert_eq!(route.failed(), Pace::Backoff);
        assert_eq!(route.next().address, addr("10.0.0.1:7390"));
        assert_eq!(route.next().connect_timeout, CONNECT_TIMEOUT);

        // s3 answers: it is home now, and its own loss skips it.
        route.lost(false);
        route.failed();
        route.failed();
        assert_eq!(route.next().name.as_deref(), Some("s3"));
        route.welcomed("s3", pool());
        route.lost(false);
        assert_eq!(route.next().name.as_deref(), Some("s3"));
        let mut order = Vec::new();
        while route.failed() == Pace::Now {
            order.push(route.next().name.clone().unwrap());
        }
        assert_eq!(order, ["s1", "s2"]);
    }

    #[test]
    fn a_failed_reconnect_goes_to_the_pool_at_once() {
        // s1 ended the connection for a reason a retry may heal (say, a bad frame).
        let mut route = at_s1();
        route.frames_shown();
        route.retry_home(true);
        assert_eq!(route.next().name.as_deref(), Some("s1"));
        // The reconnect fails: the others at once, told that s1 was lost.
        assert_eq!(route.failed(), Pace::Now);
        assert_eq!(route.next().name.as_deref(), Some("s2"));
        assert_eq!(
            route.next().arrival,
            Arrival::ServerLost {
                server: "s1".into(),
                showed_session: true
            }
        );
        assert_eq!(route.failed(), Pace::Now);
        assert_eq!(route.next().name.as_deref(), Some("s3"));
        // Everything down: s1 with the backoff, and the list again only now and then.
        for _ in 0..FAILURES_BEFORE_POOL {
            assert_eq!(route.failed(), Pace::Backoff);
            assert_eq!(route.next().name.as_deref(), Some("s1"));
        }
        assert_eq!(route.failed(), Pace::Now);
        assert_eq!(route.next().name.as_deref(), Some("s2"));
    }

    #[test]
    fn without_a_pool_nothing_changes() {
        let mut route = Route::new(addr("srv:7390"), Vec::new());
        assert!(!route.welcomed("test-server", Vec::new()));
        assert_eq!(route.lost(true), Pace::Backoff);
        for _ in 0..10 {
            assert_eq!(route.failed(), Pace::Backoff);
            assert_eq!(route.next(), &Target::direct(addr("srv:7390")));
        }
    }

    #[test]
    fn unreachable_home_falls_back_to_the_pool_after_a_few_attempts() {
        // Rebooted with a kept pool list; the configured server (s1) is down.
        let mut route = Route::new(addr("10.0.0.1:7390"), pool());
        for _ in 1..FAILURES_BEFORE_POOL {
            assert_eq!(route.failed(), Pace::Backoff);
            assert_eq!(route.next().address, addr("10.0.0.1:7390"));
        }
        assert_eq!(route.failed(), Pace::Now);
        // s1 is not tried again under its fingerprint; nothing was lost in this run.
        assert_eq!(route.next().name.as_deref(), Some("s2"));
        assert_eq!(route.next().arrival, Arrival::Direct);

        // After an orderly restart of s2 that does not come back: the others, ServerLost.
        let mut route = at_s1();
        route.redirected("s1", &redirect(2)).unwrap();
        route.welcomed("s2", pool());
        route.server_restarting(false);
        for _ in 1..FAILURES_BEFORE_POOL {
            assert_eq!(route.failed(), Pace::Backoff);
            assert_eq!(route.next().name.as_deref(), Some("s2"));
            assert_eq!(route.next().arrival, Arrival::Direct);
        }
        assert_eq!(route.failed(), Pace::Now);
        assert_eq!(route.next().name.as_deref(), Some("s1"));
        assert_eq!(route.next().fingerprint, Some(server(1).fingerprint));
        assert_eq!(
            route.next().arrival,
            Arrival::ServerLost {
                server: "s2".into(),
                showed_session: false
            }
        );
    }

    #[test]
    fn a_server_that_leaves_the_pool_empties_the_list() {
        let mut route = at_s1();
        assert!(route.welcomed("solo", Vec::new()));
        assert!(route.pool().is_empty());
        assert_eq!(route.lost(true), Pace::Backoff);
    }
}
