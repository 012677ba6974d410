//! The session's sound: its own PipeWire (+ WirePlumber, pipewire-pulse; `services.rs`), the
//! WayRay output and microphone nodes in it (`node.rs`, on the audio thread), playback cut
//! into 10 ms frames and gated on silence (`packetizer.rs`), Opus-encoded (`encode.rs`) and
//! sent to the attached appliance's speaker as datagrams; the appliance's microphone decoded
//! back (`microphone.rs`); the volume keys (`keys.rs`). Greeters have none of it.

mod encode;
mod keys;
mod microphone;
mod node;
mod packetizer;
mod services;

use std::{ffi::OsString, path::Path, thread::JoinHandle};

use pipewire as pw;
use wayray_protocol::{AudioCapabilities, AudioPacket};

use crate::session_link::LinkTx;

/// How long the session's start waits for the WayRay nodes (typically ~20 ms).
const NODES_WAIT: std::time::Duration = std::time::Duration::from_secs(3);

/// The compositor's handle on the session's audio; dropping it stops the audio thread and the
/// audio server.
pub struct Audio {
    commands: pw::channel::Sender<node::Command>,
    thread: Option<JoinHandle<()>>,
    /// The variables that make the session's clients play into its PipeWire.
    client_env: Vec<(String, OsString)>,
    /// Dropped after the thread is joined (field order): the nodes go before the server.
    _services: services::Services,
}

impl Audio {
    /// Starts the session's audio server in `<runtime>/wayray-audio-<pid>` (with `bus` as
    /// its D-Bus) and the WayRay nodes in it (on the audio thread). When this returns the
    /// server's sockets and both nodes exist (typically ~50 ms after the start), so the
    /// clients started next reach it and have a sink to play into.
    /// `None`, after one warning, when it cannot (no PipeWire installed): the session then
    /// runs without sound.
    pub fn start(runtime: &Path, bus: Option<String>, link: LinkTx) -> Option<Audio> {
        let dir = services::audio_dir(runtime, std::process::id());
        let started = services::Services::prepare(&dir)
            .and_then(|s| s.start(&dir, bus.as_deref()).map(|()| s));
        let services = match started {
            Ok(s) => s,
            Err(err) => {
                tracing::warn!(%err, "the session has no sound");
                return None;
            }
        };
        let (commands, receiver) = pw::channel::channel();
        let socket = services::pipewire_socket(&dir);
        let (ready, nodes_up) = std::sync::mpsc::channel();
        let thread =
            std::thread::Builder::new()
                .name("audio".into())
                .spawn(move || match node::run(socket, link, receiver, ready) {
                    Ok(()) => tracing::debug!("audio thread stopped"),
                    Err(err) => tracing::warn!(%err, "the session's audio nodes stopped; no sound"),
                });
        let thread = match thread {
            Ok(t) => t,
            Err(err) => {
                tracing::warn!(%err, "cannot start the audio thread; the session has no sound");
                return None;
            }
        };
        tracing::info!(dir = %dir.display(), "the session's audio server is up");
        if nodes_up.recv_timeout(NODES_WAIT).is_err() {
            tracing::warn!("the session's audio nodes are not up yet; clients start anyway");
        }
        Some(Audio {
            commands,
            thread: Some(thread),
            client_env: services::client_env(&dir),
            _services: services,
        })
    }

    pub fn client_env(&self) -> &[(String, OsString)] {
        &self.client_env
    }

    pub fn attached(&self, appliance: u64, audio: AudioCapabilities) {
        self.send(node::Command::Attached { appliance, audio });
    }

    pub fn detached(&self, appliance: u64) {
        self.send(node::Command::Detached { appliance });
    }

    pub fn microphone(&self, appliance: u64, packet: AudioPacket) {
        self.send(node::Command::Microphone { appliance, packet });
    }

    fn send(&self, cmd: node::Command) {
        // The thread is gone (no PipeWire): nothing to tell.
        let _ = self.commands.send(cmd);
    }

    /// A volume key (XF86Audio*) pressed on the appliance: `true` if it was one and is taken.
    pub fn volume_key(&self, sym: smithay::input::keyboard::Keysym) -> bool {
        let Some(args) = keys::wpctl_args(sym) else {
            return false;
        };
        let Some(spawner) = crate::confine::spawner::global() else {
            return true;
        };
        let mut req = crate::confine::spawner::Request::new("wpctl", args.iter().copied());
        for (k, v) in &self.client_env {
            req = req.env(k, v);
        }
        match spawner.spawn(req) {
            Ok(child) => {
                tracing::debug!(?args, pid = child.pid, "volume key");
                // Reaped by the spawner; its exit status is not needed.
                drop(child);
            }
            Err(err) => tracing::warn!(%err, "cannot run wpctl for a volume key"),
        }
        true
    }
}

impl Drop for Audio {
    fn drop(&mut self) {
        self.send(node::Command::Quit);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
