//! The daemon's side of the pool (`crate::pool`): where a token without a session here goes
//! (a redirect to the server holding its session, a placement elsewhere, or a greeter here),
//! and what the daemon does with the pool's answers and changes.

use std::time::Duration;

use tokio::sync::mpsc::UnboundedReceiver;
use wayray_protocol::{
    messages::{Notice, Redirect, RedirectReason},
    sessions::{session_id_string, ApplianceId, PoolServerInfo, SessionId, ToLauncher},
    Arrival, PoolServer,
};

use super::{now_ms, Daemon, Shared};
use crate::{
    pool::{placement, ClaimOutcome, Load, PoolEvent},
    store::{AuditEvent, AuditKind},
    transport::ConnEvent,
};

/// How often the server's load is offered to the pool (written only when it changed enough).
pub const LOAD_INTERVAL: Duration = Duration::from_secs(2);

/// Applies the pool's events to the daemon until the pool stops.
pub async fn serve(mut events: UnboundedReceiver<PoolEvent>, daemon: Shared) {
    while let Some(event) = events.recv().await {
        let Ok(mut d) = daemon.lock() else { return };
        d.pool_event(event);
    }
}

/// Offers this machine's load to the pool every [`LOAD_INTERVAL`].
pub async fn report_load(daemon: Shared) {
    let mut cpu = crate::pool::load::CpuSampler::default();
    let mut tick = tokio::time::interval(LOAD_INTERVAL);
    loop {
        tick.tick().await;
        let cpu_permille = cpu.sample();
        let (memory_used, memory_total) = crate::pool::load::memory();
        let Ok(d) = daemon.lock() else { return };
        if let Some(pool) = &d.pool {
            tracing::trace!(etcd_writes = pool.writes(), "pool load");
            pool.set_load(Load {
                sessions: d.sessions.len() as u32,
                cpu_permille,
                memory_used,
                memory_total,
            });
        }
    }
}

/// A uniform number in `[0, 1)` for placement.
fn random_unit() -> f64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        // Placement still works without randomness: always the first candidate's share.
        return 0.0;
    }
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

impl Daemon {
    /// `token` has no session on this server: in a pool, the server holding its session or the
    /// one placement picks may be another; otherwise (or when it is this one) a greeter here.
    pub(super) fn route_unbound(
        &mut self,
        appliance: ApplianceId,
        token: &str,
    ) -> Option<SessionId> {
        let Some(pool) = &self.pool else {
            return self.request_greeter(token, None);
        };
        let view = pool.view();
        let me = pool.name.clone();
        let ttl_ms = pool.lease_ttl.as_millis() as u64;
        let slot = self.appliances.get(&appliance)?;
        let arrival = slot.arrival.clone();
        if let Some((binding, server)) = view.binding(token) {
            if binding.server != me {
                if let Arrival::ServerLost { server: lost, .. } = &arrival {
                    if *lost == binding.server {
                        // The appliance could not reach it; the pool has not noticed (yet).
                        let deadline = match &slot.lost_wait {
                            Some((_, deadline)) => *deadline,
                            None => now_ms() + ttl_ms + 2000,
                        };
                        if now_ms() < deadline {
                            tracing::info!(appliance, token, server = %lost, "the token's session was on a server that stopped answering; waiting for the pool to forget it");
                            let notice = Notice::SessionServerFailed {
                                server: lost.clone(),
                            };
                            if let Some(slot) = self.appliances.get_mut(&appliance) {
                                slot.lost_wait = Some((lost.clone(), deadline));
                                self.timers.notify_one();
                                let _ = slot.tx.send(ConnEvent::Notice(notice));
                            }
                            return None;
                        }
                        tracing::info!(appliance, server = %lost, "the server the appliance lost is still in the pool; sending it back");
                    }
                }
                let server = server.for_appliances();
                self.redirect(appliance, server, RedirectReason::SessionThere);
                return None;
            }
            // Bound here to a session this daemon does not run: claimed anew below.
        }
        let notice = match &arrival {
            Arrival::ServerLost {
                server,
                showed_session: true,
            } => Some(format!(
                "Your session was on {server}, a server that failed; it could not be saved."
            )),
            _ => None,
        };
        // An appliance another server sent here, or one whose server failed, gets its session
        // here: placing it again could bounce it between servers with different views.
        let place_here = !view.online
            || matches!(
                arrival,
                Arrival::Redirected { .. } | Arrival::ServerLost { .. }
            );
        if !place_here {
            if let Some(target) = placement::choose(&view, random_unit()) {
                if target != me {
                    if let Some(server) = view.servers.get(&target) {
                        let server = server.for_appliances();
                        self.redirect(appliance, server, RedirectReason::Placed);
                        return None;
                    }
                }
            }
        }
        self.request_greeter(token, notice)
    }

    fn redirect(&mut self, appliance: ApplianceId, server: PoolServer, reason: RedirectReason) {
        let Some(slot) = self.appliances.get(&appliance) else {
            return;
        };
        tracing::info!(appliance, to = %server.name, address = %server.address, %reason, "redirecting the appliance");
        let mut event = AuditEvent::new(AuditKind::Redirected)
            .appliance(slot.identity(appliance))
            .detail(format!("to {} ({}): {reason}", server.name, server.address));
        event.token = slot.token.clone();
        let _ = slot
            .tx
            .send(ConnEvent::Redirect(Redirect { server, reason }));
        self.audit(event);
    }

    pub fn pool_event(&mut self, event: PoolEvent) {
        match event {
            PoolEvent::Claimed {
                token,
                session,
                outcome,
            } => self.claimed(token, session, outcome),
            PoolEvent::Changed(changes) => {
                if !changes.servers_gone.is_empty() {
                    tracing::info!(gone = ?changes.servers_gone, "servers left the pool");
                }
                // Appliances waiting for a failed server to leave the pool.
                let waiting: Vec<ApplianceId> = self
                    .appliances
                    .iter()
                    .filter(|(_, a)| a.session.is_none() && a.lost_wait.is_some())
                    .map(|(id, _)| *id)
                    .collect();
                for appliance in waiting {
                    self.route(appliance);
                }
            }
            PoolEvent::Online(online) => {
                tracing::info!(online, "pool connection");
            }
            PoolEvent::Conflict {
                token,
                session,
                owner,
            } => {
                if self.bindings.get(&token) == Some(&session) {
                    self.bindings.remove(&token);
                    if let Err(err) = self.store.unbind(&token) {
                        tracing::warn!(%err, "cannot record the token's unbinding");
                    }
                }
                tracing::warn!(token, session = %session_id_string(session), owner = %owner.server, "the pool binds this token to another server; unbound here");
                self.audit(
                    AuditEvent::new(AuditKind::PoolConflict)
                        .session(session)
                        .token(&token)
                        .detail(format!(
                            "bound to session {} on {} in the pool",
                            owner.session, owner.server
                        )),
                );
            }
        }
    }

    fn claimed(&mut self, token: String, session: SessionId, outcome: ClaimOutcome) {
        let Some(pending) = self.pending_greeters.remove(&session) else {
            return;
        };
        match outcome {
            ClaimOutcome::Won | ClaimOutcome::Offline => {
                if outcome == ClaimOutcome::Offline {
                    tracing::warn!(token, "etcd is unreachable: the greeter starts here and the token is claimed when etcd is back");
                }
                let Some(launcher) = self.launcher.clone() else {
                    return;
                };
                tracing::info!(token, session = %session_id_string(session), "starting a greeter");
                let _ = launcher.send(ToLauncher::GreeterRequested {
                    token,
                    session,
                    secret: pending.secret,
                    notice: pending.notice,
                });
            }
            ClaimOutcome::Lost(owner) => {
                tracing::info!(token, owner = %owner.server, "another server of the pool holds the token's session");
                // Never started: forgotten here, and its appliances routed to the owner.
                self.sessions.remove(&session);
                self.bindings.retain(|_, v| *v != session);
                if let Err(err) = self.store.destroy(
                    session,
                    "the pool gave the token to another server",
                    now_ms(),
                ) {
                    tracing::warn!(%err, "cannot record the end of a session");
                }
                let showing: Vec<ApplianceId> = self
                    .appliances
                    .iter()
                    .filter(|(_, a)| a.session == Some(session))
                    .map(|(id, _)| *id)
                    .collect();
                for appliance in showing {
                    if let Some(a) = self.appliances.get_mut(&appliance) {
                        a.session = None;
                    }
                    self.route(appliance);
                }
            }
        }
    }

    /// Appliances that waited for a lost server until its deadline: it is alive after all.
    pub(super) fn lost_waits_due(&mut self) {
        let now = now_ms();
        let due: Vec<ApplianceId> = self
            .appliances
            .iter()
            .filter(|(_, a)| a.session.is_none())
            .filter(|(_, a)| a.lost_wait.as_ref().is_some_and(|(_, d)| *d <= now))
            .map(|(id, _)| *id)
            .collect();
        for appliance in due {
            self.route(appliance);
        }
    }

    /// `wradm server list`.
    pub fn pool_servers(&self) -> Result<Vec<PoolServerInfo>, String> {
        let pool = self.pool.as_ref().ok_or(super::admin::NOT_IN_A_POOL)?;
        let view = pool.view();
        Ok(view
            .servers
            .values()
            .map(|s| PoolServerInfo {
                name: s.name.clone(),
                address: s.address.clone(),
                fingerprint: s.fingerprint.clone(),
                capacity: s.capacity,
                sessions: s.load.sessions,
                cpu_permille: s.load.cpu_permille,
                memory_used: s.load.memory_used,
                memory_total: s.load.memory_total,
                draining: view.drained.contains(&s.name),
                this_server: s.name == pool.name,
            })
            .collect())
    }

    /// The servers an appliance is told about in Welcome, and this server's pool name.
    pub fn pool_for_welcome(&self) -> Option<(String, Vec<PoolServer>)> {
        let pool = self.pool.as_ref()?;
        Some((pool.name.clone(), pool.servers_for_appliances()))
    }
}
