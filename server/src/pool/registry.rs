//! The task that keeps this server's place in the pool: its registration under a lease, the
//! lease's keep-alive, the watch that keeps the [`PoolView`] current, and the token bindings
//! this server claims and releases. etcd may be unreachable at any time: requests are then
//! answered from what is known here, recorded, and reconciled when etcd answers again (see
//! README.md, "A pool of servers").

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, PutOptions, Txn, TxnOp,
    TxnOpResponse, WatchOptions,
};
use tokio::sync::{mpsc, oneshot, watch};
use wayray_protocol::sessions::{session_id_string, SessionId};

use super::{
    keys::{Binding, CardRecord, Keys, Load, ServerRecord},
    view::{Changes, PoolView},
    ClaimOutcome, PoolEvent,
};

/// Each etcd call gets this long before the registry counts etcd as unreachable.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// A CPU change this small is not worth an etcd write (thousandths of CPU).
const CPU_STEP: u32 = 100;
/// CPU and memory changes are written at most this often; a change in the number of sessions
/// (what placement weighs most) at the next load report (every 2 s).
const LOAD_REFRESH: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("etcd: {0}")]
    Etcd(#[from] etcd_client::Error),
    #[error("etcd did not answer within {CALL_TIMEOUT:?}")]
    Timeout,
    #[error("the lease expired (etcd did not hear from this server in time)")]
    LeaseLost,
    #[error("the {0} stream from etcd ended")]
    StreamEnded(&'static str),
    #[error("another server is registered as {0:?} (a different key); pool names must be unique")]
    NameTaken(String),
    #[error("cannot encode a record: {0}")]
    Encode(#[from] serde_json::Error),
}

pub(super) enum Request {
    Claim {
        token: String,
        session: SessionId,
    },
    Rebind {
        token: String,
        session: SessionId,
    },
    Release {
        token: String,
        session: SessionId,
    },
    Load(Load),
    /// An administrator approved or revoked an appliance.
    ApplianceDecision {
        fingerprint: String,
        approved: bool,
    },
    /// A card's key, recorded for good unless the pool already has one for its token.
    EnrolCard {
        token: String,
        record: CardRecord,
    },
    Drain {
        server: String,
        drain: bool,
        reply: oneshot::Sender<Result<(), String>>,
    },
}

pub(super) struct Settings {
    pub endpoints: Vec<String>,
    pub ttl: Duration,
}

pub(super) struct Registry {
    pub settings: Settings,
    pub keys: Keys,
    pub me: ServerRecord,
    pub lease: Option<i64>,
    /// Bindings this server holds or means to hold (claimed while etcd was away).
    pub ours: HashMap<String, SessionId>,
    /// Bindings released while etcd was away: deleted when it is back, if still ours there.
    pub released: HashMap<String, SessionId>,
    /// Card enrolments made while etcd was away: written when it is back.
    pub cards: HashMap<String, CardRecord>,
    /// Appliance decisions made while etcd was away (fingerprint → approved).
    pub decisions: HashMap<String, bool>,
    pub view: PoolView,
    pub view_tx: watch::Sender<Arc<PoolView>>,
    pub events: mpsc::UnboundedSender<PoolEvent>,
    pub last_load_put: Option<(Load, Instant)>,
    /// etcd writes (puts, deletes, transactions that wrote) since start, for the figures.
    pub writes: Arc<AtomicU64>,
    /// Connections that failed in a row (each to the next member).
    pub failures: usize,
}

enum Ended {
    Stopped,
}

async fn call<T>(
    f: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, RegistryError> {
    match tokio::time::timeout(CALL_TIMEOUT, f).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(RegistryError::Timeout),
    }
}

impl Registry {
    pub async fn run(mut self, mut requests: mpsc::UnboundedReceiver<Request>) {
        let mut backoff = Duration::from_millis(200);
        // One member at a time, the next one after a failure: a client balancing over all
        // endpoints kept sending calls to a dead member, and the lease expired meanwhile.
        let members = self.settings.endpoints.len().max(1);
        let mut next_member = 0usize;
        loop {
            let endpoint = self.settings.endpoints[next_member % members].clone();
            next_member += 1;
            let options = ConnectOptions::new()
                .with_connect_timeout(CALL_TIMEOUT)
                .with_keep_alive(Duration::from_secs(1), CALL_TIMEOUT);
            let connect = Client::connect([endpoint.clone()], Some(options));
            tokio::pin!(connect);
            let client = loop {
                tokio::select! {
                    c = &mut connect => break c.map_err(RegistryError::from),
                    r = requests.recv() => match r {
                        Some(r) => self.offline(r),
                        None => return,
                    },
                }
            };
            let result = match client {
                Ok(client) => self.online(client, &mut requests, &mut backoff).await,
                Err(err) => Err(err),
            };
            // Failures in a row since the registry was last in the pool.
            self.failures += 1;
            let round_done = self.failures >= members;
            match result {
                Ok(Ended::Stopped) => return,
                // Another member may answer at once; only a whole round of failures means
                // etcd is away.
                Err(err) if !round_done => {
                    tracing::info!(%err, member = %endpoint, "etcd member unreachable; trying the next one");
                    continue;
                }
                Err(err) => {
                    if self.view.online {
                        tracing::warn!(%err, "lost the pool's etcd; serving from what this server knows");
                        self.set_online(false);
                    } else {
                        tracing::debug!(%err, retry_in = ?backoff, "etcd still unreachable");
                    }
                }
            }
            let sleep = tokio::time::sleep(backoff);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    () = &mut sleep => break,
                    r = requests.recv() => match r {
                        Some(r) => self.offline(r),
                        None => return,
                    },
                }
            }
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    fn set_online(&mut self, online: bool) {
        self.view.online = online;
        self.publish(Changes::default());
        let _ = self.events.send(PoolEvent::Online(online));
    }

    fn publish(&mut self, changes: Changes) {
        self.view_tx.send_replace(Arc::new(self.view.clone()));
        if !changes.is_empty() {
            let _ = self.events.send(PoolEvent::Changed(changes));
        }
    }

    /// A request while etcd is unreachable.
    fn offline(&mut self, request: Request) {
        match request {
            Request::Claim { token, session } => {
                self.ours.insert(token.clone(), session);
                self.released.remove(&token);
                let _ = self.events.send(PoolEvent::Claimed {
                    token,
                    session,
                    outcome: ClaimOutcome::Offline,
                });
            }
            Request::Rebind { token, session } => {
                self.released.remove(&token);
                self.ours.insert(token, session);
            }
            Request::Release { token, session } => {
                if self.ours.get(&token) == Some(&session) {
                    self.ours.remove(&token);
                    self.released.insert(token, session);
                }
            }
            Request::Load(load) => self.me.load = load,
            Request::EnrolCard { token, record } => {
                self.cards.insert(token, record);
            }
            Request::ApplianceDecision {
                fingerprint,
                approved,
            } => {
                self.decisions.insert(fingerprint, approved);
            }
            Request::Drain { reply, .. } => {
                let _ = reply.send(Err(
                    "the pool's etcd is unreachable from this server; try again later".into(),
                ));
            }
        }
    }

    async fn online(
        &mut self,
        mut client: Client,
        requests: &mut mpsc::UnboundedReceiver<Request>,
        backoff: &mut Duration,
    ) -> Result<Ended, RegistryError> {
        // The lease: the one from before a reconnect if etcd still holds it, else a new one
        // (and then every binding of ours is written again under it).
        let mut lease = None;
        if let Some(id) = self.lease {
            let (mut keeper, mut stream) = call(client.lease_keep_alive(id)).await?;
            call(keeper.keep_alive()).await?;
            match call(stream.message()).await? {
                Some(r) if r.ttl() > 0 => lease = Some((id, keeper, stream)),
                _ => {
                    tracing::warn!("the pool lease expired while etcd was away; registering again")
                }
            }
        }
        let (lease_id, mut keeper, mut keepalive) = match lease {
            Some(l) => l,
            None => {
                let ttl = self.settings.ttl.as_secs().max(1) as i64;
                let id = call(client.lease_grant(ttl, None)).await?.id();
                self.lease = Some(id);
                let (keeper, stream) = call(client.lease_keep_alive(id)).await?;
                (id, keeper, stream)
            }
        };
        self.register(&mut client, lease_id).await?;
        self.reconcile(&mut client, lease_id).await?;
        let mut watch_stream = self.read_and_watch(&mut client).await?;
        *backoff = Duration::from_millis(200);
        self.failures = 0;
        tracing::info!(
            server = %self.me.name,
            servers = self.view.servers.len(),
            bindings = self.view.bindings.len(),
            revision = self.view.revision,
            "in the pool"
        );
        self.set_online(true);

        let mut tick = tokio::time::interval(self.settings.ttl / 3);
        let mut last_alive = Instant::now();
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if last_alive.elapsed() > self.settings.ttl {
                        return Err(RegistryError::LeaseLost);
                    }
                    call(keeper.keep_alive()).await?;
                }
                message = keepalive.message() => match message? {
                    Some(r) if r.ttl() > 0 => last_alive = Instant::now(),
                    Some(_) => {
                        self.lease = None;
                        return Err(RegistryError::LeaseLost);
                    }
                    None => return Err(RegistryError::StreamEnded("lease keep-alive")),
                },
                message = watch_stream.message() => match message? {
                    Some(response) if response.canceled() => {
                        if response.compact_revision() > 0 {
                            // The revision to resume from is compacted away: read it all again.
                            tracing::info!(compacted = response.compact_revision(), "watch compacted; reading the pool again");
                            watch_stream = self.read_and_watch(&mut client).await?;
                        } else {
                            return Err(RegistryError::StreamEnded("watch (cancelled)"));
                        }
                    }
                    Some(response) => {
                        let mut changes = Changes::default();
                        for event in response.events() {
                            let Some(kv) = event.kv() else { continue };
                            let Ok(key) = kv.key_str() else { continue };
                            changes.merge(match event.event_type() {
                                EventType::Put => self.view.put(&self.keys, key, kv.value()),
                                EventType::Delete => self.view.delete(&self.keys, key),
                            });
                            self.view.revision = self.view.revision.max(kv.mod_revision());
                        }
                        if let Some(header) = response.header() {
                            self.view.revision = self.view.revision.max(header.revision());
                        }
                        self.publish(changes);
                    }
                    None => return Err(RegistryError::StreamEnded("watch")),
                },
                request = requests.recv() => match request {
                    None => return Ok(Ended::Stopped),
                    Some(request) => self.handle(&mut client, lease_id, request).await?,
                },
            }
        }
    }

    /// Writes this server's record under `lease`, refusing to take over another server's name.
    async fn register(&mut self, client: &mut Client, lease: i64) -> Result<(), RegistryError> {
        let key = self.keys.server(&self.me.name);
        let value = serde_json::to_vec(&self.me)?;
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key.clone(),
                value.clone(),
                Some(PutOptions::new().with_lease(lease)),
            )])
            .or_else([TxnOp::get(key.clone(), None)]);
        let response = call(client.txn(txn)).await?;
        self.count_write();
        if !response.succeeded() {
            let existing = first_kv(&response.op_responses());
            let ours = existing.as_ref().is_some_and(|(value, kv_lease)| {
                *kv_lease == lease
                    || serde_json::from_slice::<ServerRecord>(value)
                        .is_ok_and(|r| r.fingerprint == self.me.fingerprint)
            });
            if !ours {
                return Err(RegistryError::NameTaken(self.me.name.clone()));
            }
            // Our own record from before a restart or under an older lease.
            call(client.put(key, value, Some(PutOptions::new().with_lease(lease)))).await?;
            self.count_write();
        }
        self.last_load_put = Some((self.me.load, Instant::now()));
        Ok(())
    }

    /// Claims, once etcd answers again, what was claimed while it did not, and deletes what was
    /// released meanwhile. A token another server claimed in the meantime stays theirs: the
    /// daemon hears of the conflict and unbinds it here.
    async fn reconcile(&mut self, client: &mut Client, lease: i64) -> Result<(), RegistryError> {
        let ours: Vec<(String, SessionId)> =
            self.ours.iter().map(|(t, s)| (t.clone(), *s)).collect();
        for (token, session) in ours {
            match self.claim(client, lease, &token, session).await? {
                ClaimOutcome::Lost(owner) => {
                    tracing::warn!(token, owner = %owner.server, "a binding made while etcd was away is another server's now");
                    self.ours.remove(&token);
                    let _ = self.events.send(PoolEvent::Conflict {
                        token,
                        session,
                        owner,
                    });
                }
                ClaimOutcome::Won | ClaimOutcome::Offline => {}
            }
        }
        let released: Vec<(String, SessionId)> = self.released.drain().collect();
        for (token, session) in released {
            self.release(client, &token, session).await?;
        }
        let cards: Vec<(String, CardRecord)> = self.cards.drain().collect();
        for (token, record) in cards {
            self.enrol_card(client, &token, &record).await?;
        }
        let decisions: Vec<(String, bool)> = self.decisions.drain().collect();
        for (fingerprint, approved) in decisions {
            self.decide(client, &fingerprint, approved).await?;
        }
        Ok(())
    }

    /// Reads the whole prefix into the view and starts a watch right after that read.
    async fn read_and_watch(
        &mut self,
        client: &mut Client,
    ) -> Result<etcd_client::WatchStream, RegistryError> {
        let prefix = self.keys.all().to_owned();
        let response =
            call(client.get(prefix.clone(), Some(GetOptions::new().with_prefix()))).await?;
        let mut fresh = PoolView::default();
        for kv in response.kvs() {
            if let Ok(key) = kv.key_str() {
                fresh.put(&self.keys, key, kv.value());
            }
        }
        let revision = response.header().map_or(0, |h| h.revision());
        fresh.revision = revision;
        let changes = self.view.replace(fresh);
        self.publish(changes);
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(revision + 1);
        call(client.watch(prefix, Some(options))).await
    }

    async fn handle(
        &mut self,
        client: &mut Client,
        lease: i64,
        request: Request,
    ) -> Result<(), RegistryError> {
        match request {
            Request::Claim { token, session } => {
                self.ours.insert(token.clone(), session);
                let outcome = match self.claim(client, lease, &token, session).await {
                    Ok(outcome) => outcome,
                    Err(err) => {
                        // Kept in `ours`: claimed again once etcd answers.
                        let _ = self.events.send(PoolEvent::Claimed {
                            token,
                            session,
                            outcome: ClaimOutcome::Offline,
                        });
                        return Err(err);
                    }
                };
                if let ClaimOutcome::Lost(owner) = &outcome {
                    self.ours.remove(&token);
                    // Known now, before the watch says so: the daemon redirects at once.
                    self.view.bindings.insert(token.clone(), owner.clone());
                    self.publish(Changes::default());
                }
                let _ = self.events.send(PoolEvent::Claimed {
                    token,
                    session,
                    outcome,
                });
            }
            Request::Rebind { token, session } => {
                let previous = self.ours.insert(token.clone(), session);
                let key = self.keys.binding(&token);
                let value = serde_json::to_vec(&Binding::new(&self.me.name, session))?;
                let replaced = match previous {
                    Some(old) if old != session => {
                        let old = serde_json::to_vec(&Binding::new(&self.me.name, old))?;
                        let txn = Txn::new()
                            .when([Compare::value(key.clone(), CompareOp::Equal, old)])
                            .and_then([TxnOp::put(
                                key,
                                value,
                                Some(PutOptions::new().with_lease(lease)),
                            )]);
                        let ok = call(client.txn(txn)).await?.succeeded();
                        if ok {
                            self.count_write();
                        }
                        ok
                    }
                    _ => false,
                };
                if !replaced {
                    if let ClaimOutcome::Lost(owner) =
                        self.claim(client, lease, &token, session).await?
                    {
                        self.ours.remove(&token);
                        let _ = self.events.send(PoolEvent::Conflict {
                            token,
                            session,
                            owner,
                        });
                    }
                }
            }
            Request::Release { token, session } => {
                if self.ours.get(&token) == Some(&session) {
                    self.ours.remove(&token);
                    if let Err(err) = self.release(client, &token, session).await {
                        self.released.insert(token, session);
                        return Err(err);
                    }
                }
            }
            Request::Load(load) => {
                self.me.load = load;
                let due = match self.last_load_put {
                    None => true,
                    Some((last, at)) => {
                        last.sessions != load.sessions
                            || (at.elapsed() >= LOAD_REFRESH
                                && (last.cpu_permille.abs_diff(load.cpu_permille) >= CPU_STEP
                                    || last.memory_used.abs_diff(load.memory_used) * 20
                                        > load.memory_total.max(1)))
                    }
                };
                if due {
                    let value = serde_json::to_vec(&self.me)?;
                    let key = self.keys.server(&self.me.name);
                    call(client.put(key, value, Some(PutOptions::new().with_lease(lease)))).await?;
                    self.count_write();
                    self.last_load_put = Some((load, Instant::now()));
                }
            }
            Request::EnrolCard { token, record } => {
                if let Err(err) = self.enrol_card(client, &token, &record).await {
                    self.cards.insert(token, record);
                    return Err(err);
                }
            }
            Request::ApplianceDecision {
                fingerprint,
                approved,
            } => {
                if let Err(err) = self.decide(client, &fingerprint, approved).await {
                    self.decisions.insert(fingerprint, approved);
                    return Err(err);
                }
            }
            Request::Drain {
                server,
                drain,
                reply,
            } => {
                let key = self.keys.drain(&server);
                let result = if drain {
                    call(client.put(key, Vec::new(), None)).await.map(|_| ())
                } else {
                    call(client.delete(key, None)).await.map(|_| ())
                };
                match result {
                    Ok(()) => {
                        self.count_write();
                        tracing::info!(server, drain, "pool drain changed");
                        let _ = reply.send(Ok(()));
                    }
                    Err(err) => {
                        let _ = reply.send(Err(format!("etcd: {err}")));
                        return Err(err);
                    }
                }
            }
        }
        Ok(())
    }

    /// Creates the token's binding to `session` here if no server holds it (or this one does).
    async fn claim(
        &mut self,
        client: &mut Client,
        lease: i64,
        token: &str,
        session: SessionId,
    ) -> Result<ClaimOutcome, RegistryError> {
        let key = self.keys.binding(token);
        let value = serde_json::to_vec(&Binding::new(&self.me.name, session))?;
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(
                key.clone(),
                value.clone(),
                Some(PutOptions::new().with_lease(lease)),
            )])
            .or_else([TxnOp::get(key.clone(), None)]);
        let response = call(client.txn(txn)).await?;
        if response.succeeded() {
            self.count_write();
            tracing::debug!(token, session = %session_id_string(session), "claimed");
            return Ok(ClaimOutcome::Won);
        }
        let existing = first_kv(&response.op_responses())
            .and_then(|(value, _)| serde_json::from_slice::<Binding>(&value).ok());
        match existing {
            Some(owner) if owner.server != self.me.name => Ok(ClaimOutcome::Lost(owner)),
            // Ours already (under an older lease or for an older session), or unreadable:
            // this server's session is the token's now.
            _ => {
                call(client.put(key, value, Some(PutOptions::new().with_lease(lease)))).await?;
                self.count_write();
                Ok(ClaimOutcome::Won)
            }
        }
    }

    /// Deletes the token's binding if it still names `session` here.
    async fn release(
        &mut self,
        client: &mut Client,
        token: &str,
        session: SessionId,
    ) -> Result<(), RegistryError> {
        let key = self.keys.binding(token);
        let value = serde_json::to_vec(&Binding::new(&self.me.name, session))?;
        let txn = Txn::new()
            .when([Compare::value(key.clone(), CompareOp::Equal, value)])
            .and_then([TxnOp::delete(key, None)]);
        if call(client.txn(txn)).await?.succeeded() {
            self.count_write();
        }
        Ok(())
    }

    /// Writes the card's key unless the pool already holds one for the token (the first
    /// enrolment stands, as in each server's store).
    async fn enrol_card(
        &mut self,
        client: &mut Client,
        token: &str,
        record: &CardRecord,
    ) -> Result<(), RegistryError> {
        let key = self.keys.card(token);
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, serde_json::to_vec(record)?, None)]);
        if call(client.txn(txn)).await?.succeeded() {
            self.count_write();
            tracing::info!(token, "card enrolled in the pool");
        }
        Ok(())
    }

    /// Records an administrator's decision on an appliance for the whole pool (the latest
    /// decision stands).
    async fn decide(
        &mut self,
        client: &mut Client,
        fingerprint: &str,
        approved: bool,
    ) -> Result<(), RegistryError> {
        let value: &[u8] = if approved { b"approved" } else { b"revoked" };
        call(client.put(self.keys.appliance(fingerprint), value, None)).await?;
        self.count_write();
        Ok(())
    }

    fn count_write(&self) {
        self.writes.fetch_add(1, Ordering::Relaxed);
    }
}

/// The value and lease of the first key a transaction's `get` returned.
fn first_kv(responses: &[TxnOpResponse]) -> Option<(Vec<u8>, i64)> {
    responses.iter().find_map(|r| match r {
        TxnOpResponse::Get(get) => get
            .kvs()
            .first()
            .map(|kv| (kv.value().to_vec(), kv.lease())),
        _ => None,
    })
}
