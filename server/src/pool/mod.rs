//! A pool of servers on etcd (README.md, "A pool of servers"): each server registers under a
//! lease, tokens' bindings to sessions are claimed in transactions, and a watch keeps every
//! server's [`PoolView`] current, so routing an appliance never waits for etcd. The daemon
//! talks to the pool only through [`Pool`] (requests) and [`PoolEvent`]s (answers and
//! changes); the pool knows nothing of the daemon.

pub mod keys;
pub mod load;
pub mod placement;
mod registry;
pub mod view;

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use serde::Deserialize;
use tokio::sync::{mpsc, oneshot, watch};
use wayray_protocol::sessions::SessionId;

pub use keys::{Binding, Load, ServerRecord};
pub use view::{Changes, PoolView};

/// `[pool]` in wrsrvd's config. Without endpoints the server is on its own (the default).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PoolConfig {
    /// etcd client URLs, e.g. `["http://10.0.0.5:2379", "http://10.0.0.6:2379"]` (flag
    /// `--pool URL,URL`). Empty: no pool. Default empty.
    pub endpoints: Vec<String>,
    /// This server's name in the pool, unique within it. Default: the host name.
    pub name: String,
    /// `HOST:PORT` appliances use to reach this server's QUIC endpoint, told to them in
    /// redirects and in Welcome's pool list. Default: the listen address, which must then not be
    /// a wildcard (`0.0.0.0`).
    pub advertise: String,
    /// Sessions this server is meant to hold; placement weighs it against the sessions it runs.
    /// Default 100.
    pub capacity: u32,
    /// Lease time-to-live in seconds: a server that stops answering leaves the pool (and its
    /// sessions' bindings with it) this long after its last keep-alive. etcd raises values
    /// below about 2 s. Default 5.
    pub lease_ttl_secs: u64,
    /// Key prefix in etcd, so pools (or other programs) can share one cluster. Default `/wayray`.
    pub prefix: String,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            endpoints: Vec::new(),
            name: String::new(),
            advertise: String::new(),
            capacity: 100,
            lease_ttl_secs: 5,
            prefix: "/wayray".into(),
        }
    }
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum PoolConfigError {
    #[error("[pool] advertise is not set and the listen address {0} is a wildcard: appliances redirected here need an address they can reach; set [pool] advertise = \"HOST:PORT\"")]
    NoAdvertise(std::net::SocketAddr),
    #[error("[pool] name is not set and this machine's host name cannot be read")]
    NoName,
    #[error("[pool] capacity must be at least 1")]
    Capacity,
}

impl PoolConfig {
    pub fn enabled(&self) -> bool {
        !self.endpoints.is_empty()
    }

    /// The name this server uses in the pool.
    pub fn resolved_name(&self) -> Result<String, PoolConfigError> {
        if !self.name.is_empty() {
            return Ok(self.name.clone());
        }
        let mut buf = [0u8; 256];
        // SAFETY: gethostname writes at most `len` bytes into the buffer we own.
        let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
        if rc != 0 {
            return Err(PoolConfigError::NoName);
        }
        let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
        match std::str::from_utf8(&buf[..end]) {
            Ok(name) if !name.is_empty() => Ok(name.to_owned()),
            _ => Err(PoolConfigError::NoName),
        }
    }

    /// The address appliances are told, given the address the endpoint is bound to.
    pub fn resolved_advertise(
        &self,
        bound: std::net::SocketAddr,
    ) -> Result<String, PoolConfigError> {
        if !self.advertise.is_empty() {
            return Ok(self.advertise.clone());
        }
        if bound.ip().is_unspecified() {
            return Err(PoolConfigError::NoAdvertise(bound));
        }
        Ok(bound.to_string())
    }

    pub fn validate(&self) -> Result<(), PoolConfigError> {
        if self.capacity == 0 {
            return Err(PoolConfigError::Capacity);
        }
        Ok(())
    }
}

/// What became of a claim of a token for a session here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// The binding is this server's.
    Won,
    /// etcd is unreachable: the session goes ahead here, and the claim is made when etcd is
    /// back (a conflict then is reported as [`PoolEvent::Conflict`]).
    Offline,
    /// Another server holds the token's session.
    Lost(Binding),
}

/// From the pool to the daemon.
#[derive(Debug)]
pub enum PoolEvent {
    Claimed {
        token: String,
        session: SessionId,
        outcome: ClaimOutcome,
    },
    /// The view changed: servers came or went, bindings went.
    Changed(Changes),
    /// etcd became reachable (with a live lease), or stopped being.
    Online(bool),
    /// A binding this server made while etcd was away belongs to another server: the pool's
    /// binding stands, and the token is unbound here (its session runs on, unbound).
    Conflict {
        token: String,
        session: SessionId,
        owner: Binding,
    },
}

/// The daemon's handle on the pool.
pub struct Pool {
    pub name: String,
    /// How long after its last keep-alive a silent server leaves the pool.
    pub lease_ttl: Duration,
    requests: mpsc::UnboundedSender<registry::Request>,
    view: watch::Receiver<Arc<PoolView>>,
    writes: Arc<AtomicU64>,
}

impl Pool {
    /// Starts the registry task on the current tokio runtime. `me` is this server's record
    /// (its load is filled in later); `bindings` the tokens it already holds (sessions adopted
    /// after a restart), claimed again as soon as etcd answers.
    pub fn start(
        config: &PoolConfig,
        me: ServerRecord,
        bindings: HashMap<String, SessionId>,
    ) -> (Self, mpsc::UnboundedReceiver<PoolEvent>) {
        let (requests, rx) = mpsc::unbounded_channel();
        let (events, events_rx) = mpsc::unbounded_channel();
        let (view_tx, view) = watch::channel(Arc::new(PoolView::default()));
        let writes = Arc::new(AtomicU64::new(0));
        let registry = registry::Registry {
            settings: registry::Settings {
                endpoints: config.endpoints.clone(),
                ttl: Duration::from_secs(config.lease_ttl_secs.max(1)),
            },
            keys: keys::Keys::new(&config.prefix),
            me: me.clone(),
            lease: None,
            ours: bindings,
            released: HashMap::new(),
            cards: HashMap::new(),
            decisions: HashMap::new(),
            view: PoolView::default(),
            view_tx,
            events,
            last_load_put: None,
            writes: writes.clone(),
            failures: 0,
        };
        let span = tracing::info_span!("pool", server = %me.name);
        tokio::spawn(tracing::Instrument::instrument(registry.run(rx), span));
        (
            Self {
                name: me.name.clone(),
                lease_ttl: Duration::from_secs(config.lease_ttl_secs.max(1)),
                requests,
                view,
                writes,
            },
            events_rx,
        )
    }

    /// The pool as last seen (never waits for etcd).
    pub fn view(&self) -> Arc<PoolView> {
        self.view.borrow().clone()
    }

    /// Claim `token` for `session` here; answered by [`PoolEvent::Claimed`].
    pub fn claim(&self, token: &str, session: SessionId) {
        let _ = self.requests.send(registry::Request::Claim {
            token: token.to_owned(),
            session,
        });
    }

    /// The token's session here is now `session` (a login replaced the greeter).
    pub fn rebind(&self, token: &str, session: SessionId) {
        let _ = self.requests.send(registry::Request::Rebind {
            token: token.to_owned(),
            session,
        });
    }

    /// The token's session here ended.
    pub fn release(&self, token: &str, session: SessionId) {
        let _ = self.requests.send(registry::Request::Release {
            token: token.to_owned(),
            session,
        });
    }

    /// Records the key a card proved at its first login for the whole pool.
    pub fn enrol_card(&self, token: &str, spki: &[u8], user: &str) {
        let _ = self.requests.send(registry::Request::EnrolCard {
            token: token.to_owned(),
            record: keys::CardRecord::new(spki, user),
        });
    }

    /// An administrator approved (or revoked) an appliance here: the pool's other servers
    /// follow.
    pub fn decide_appliance(&self, fingerprint: &str, approved: bool) {
        let _ = self.requests.send(registry::Request::ApplianceDecision {
            fingerprint: fingerprint.to_owned(),
            approved,
        });
    }

    /// The pool's decision on an appliance, if an administrator made one anywhere.
    pub fn appliance_decision(
        &self,
        fingerprint: &str,
    ) -> Option<wayray_protocol::sessions::ApplianceAuthState> {
        self.view.borrow().appliances.get(fingerprint).copied()
    }

    /// The key enrolled for `token` anywhere in the pool, as last seen.
    pub fn card_key(&self, token: &str) -> Option<Vec<u8>> {
        self.view.borrow().cards.get(token).cloned()
    }

    pub fn set_load(&self, load: Load) {
        let _ = self.requests.send(registry::Request::Load(load));
    }

    /// Stops or resumes placements on `server`; the answer says whether etcd took it.
    pub fn drain(&self, server: &str, drain: bool) -> oneshot::Receiver<Result<(), String>> {
        let (reply, rx) = oneshot::channel();
        let _ = self.requests.send(registry::Request::Drain {
            server: server.to_owned(),
            drain,
            reply,
        });
        rx
    }

    /// etcd writes this server made since it started.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    /// The pool's servers as appliances need them (Welcome).
    pub fn servers_for_appliances(&self) -> Vec<wayray_protocol::PoolServer> {
        self.view()
            .servers
            .values()
            .map(ServerRecord::for_appliances)
            .collect()
    }
}
