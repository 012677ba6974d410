//! One appliance connection: Hello/Welcome on the control stream, frames out on the display
//! stream, acks back on the control stream.

use std::{
    collections::VecDeque,
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tracing::Instrument;
use wayray_protocol::redundancy::{Delayed, LossWatch};
use wayray_protocol::{
    framing, identity, AudioCapabilities, ByeReason, ClientControl, Datagram, Encoding,
    FrameReader, Hello, Notice, ServerControl, StreamKind, Welcome, DEFAULT_MAX_MESSAGE_LEN,
    PROTOCOL_VERSION,
};

use super::governor::{Governor, LinkSample};
use super::{audio, client_auth, input, streams, Shared};
use wayray_protocol::sessions::{ApplianceId, ToSession};

use crate::cards::{self, ProofOutcome};
use crate::daemon::{now_ms, ApplianceSlot, CardCheck};

/// How long an appliance may take between connecting and saying Hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How often the session hears what the link can carry, while frames flow: an idle link's
/// estimate does not change, so an idle connection is not woken for it.
const LINK_QUALITY_INTERVAL: Duration = Duration::from_secs(1);

/// Events for one connection task from the router.
#[derive(Debug)]
pub enum ConnEvent {
    /// A framed `DisplayMessage::Frame`, shared with the buffer the daemon read it into: it is
    /// handed to quinn as it is, not copied.
    Frame {
        seq: u64,
        bytes: Bytes,
    },
    Cursor {
        bytes: Bytes,
    },
    /// The session wants the microphone (or no longer does).
    Microphone {
        open: bool,
    },
    Replaced,
    Shutdown,
    /// Why the appliance shows no desktop (e.g. it waits for approval).
    Notice(Notice),
    /// An administrator revoked this appliance: say so and close.
    Revoked,
    /// The appliance's token belongs on another server of the pool: tell it where, and close.
    Redirect(wayray_protocol::Redirect),
    /// What the appliance may forward changed (session shown, policy): tell it, and detach what
    /// is no longer covered.
    UsbPolicy(Option<crate::usb::Grant>),
}

#[derive(Debug, thiserror::Error)]
enum ConnError {
    #[error("handshake failed: {0}")]
    Handshake(#[from] quinn::ConnectionError),
    #[error("appliance did not open a control stream and say Hello in time")]
    HelloTimeout,
    #[error("control stream: {0}")]
    Read(#[from] quinn::ReadError),
    #[error("stream write: {0}")]
    Write(#[from] quinn::WriteError),
    #[error("cannot open display stream: {0}")]
    Open(quinn::ConnectionError),
    #[error("protocol violation: {0}")]
    Protocol(String),
    #[error("incompatible appliance: {0}")]
    Incompatible(ByeReason),
    #[error("the TLS handshake did not complete (replayed early data, or a refused certificate)")]
    Unconfirmed,
}

pub async fn handle(incoming: quinn::Incoming, shared: Arc<Shared>) {
    let id = shared.next_id.fetch_add(1, Ordering::Relaxed) + 1;
    let remote = incoming.remote_address();
    let span = tracing::info_span!("appliance", id, %remote);
    async move {
        match run(incoming, id, &shared).await {
            Ok(()) => tracing::info!("appliance disconnected"),
            Err(err) => tracing::warn!(%err, "appliance connection ended"),
        }
        if let Ok(mut daemon) = shared.daemon.lock() {
            daemon.appliance_gone(id);
        }
    }
    .instrument(span)
    .await
}

async fn run(incoming: quinn::Incoming, id: ApplianceId, shared: &Shared) -> Result<(), ConnError> {
    // 0.5-RTT: the Hello may arrive as 0-RTT early data from an appliance resuming an earlier
    // TLS session. Early data can be replayed by anyone who recorded it, so it is only read and
    // answered here; nothing reaches the daemon (no session is created, moved or attached)
    // until `handshake.confirmed()` says the handshake completed with this very peer.
    let (conn, mut handshake) = match incoming.accept()?.into_0rtt() {
        Ok((conn, accepted)) => (conn, Handshake::Pending(accepted)),
        // quinn always allows it on the server side; complete the handshake if it ever does not.
        Err(connecting) => (connecting.await?, Handshake::Done(true)),
    };
    let (mut ctrl_send, mut ctrl_recv) =
        match tokio::time::timeout(HELLO_TIMEOUT, conn.accept_bi()).await {
            Ok(streams) => streams?,
            Err(_) => return Err(ConnError::HelloTimeout),
        };
    let mut reader = FrameReader::new(DEFAULT_MAX_MESSAGE_LEN);
    let first = tokio::time::timeout(
        HELLO_TIMEOUT,
        read_msg_or_other_version(&mut ctrl_recv, &mut reader),
    );
    let hello = match first.await {
        Ok(Ok(Some(ClientControl::Hello(hello)))) => hello,
        Ok(Ok(Some(other))) => {
            return Err(ConnError::Protocol(format!(
                "expected Hello, got {other:?}"
            )))
        }
        Ok(Ok(None)) => {
            return Err(ConnError::Protocol(
                "control stream closed before Hello".into(),
            ))
        }
        Ok(Err(HelloRead::OtherVersion(client))) => {
            let reason = ByeReason::VersionMismatch {
                server: PROTOCOL_VERSION,
                client,
            };
            send(&mut ctrl_send, &ServerControl::Bye(reason.clone())).await?;
            let _ = ctrl_send.finish();
            // Let the Bye arrive before the connection closes.
            let _ = tokio::time::timeout(Duration::from_secs(1), conn.closed()).await;
            return Err(ConnError::Incompatible(reason));
        }
        Ok(Err(HelloRead::Failed(err))) => return Err(err),
        Err(_) => return Err(ConnError::HelloTimeout),
    };
    // The control stream was opened in 0-RTT early data (a server accepts no stream before the
    // handshake completes otherwise).
    let early = ctrl_recv.is_0rtt();
    tracing::info!(
        client = %hello.client_name,
        screen = ?(hello.capabilities.screen_width, hello.capabilities.screen_height),
        physical_size = ?hello.capabilities.physical_size,
        early_data = early,
        "hello"
    );
    // A full handshake answers once the appliance's certificate is checked (under `required` an
    // unknown one never completes it, and must not even see a Welcome); a resumed one, whose
    // certificate was checked when its ticket was issued, is answered at once.
    if !early && !handshake.confirmed(&conn).await {
        return Err(ConnError::Unconfirmed);
    }
    let welcome = match negotiate(&hello, shared) {
        Ok(w) => w,
        Err(reason) => {
            send(&mut ctrl_send, &ServerControl::Bye(reason.clone())).await?;
            let _ = ctrl_send.finish();
            // Let the Bye arrive before the connection closes.
            let _ = tokio::time::timeout(Duration::from_secs(1), conn.closed()).await;
            return Err(ConnError::Incompatible(reason));
        }
    };
    reader.set_max_len(welcome.max_message_len);
    let welcome_size = (welcome.output_width, welcome.output_height);
    let welcome_audio = welcome.audio;
    send(&mut ctrl_send, &ServerControl::Welcome(welcome)).await?;
    // No USB device is taken before a session is shown here (the daemon says when).
    send(&mut ctrl_send, &ServerControl::UsbPolicy { filter: None }).await?;
    let (usb_grant, usb_grant_rx) = watch::channel(None::<crate::usb::Grant>);

    let mut display = conn.open_uni().await.map_err(ConnError::Open)?;
    display.write_all(&[StreamKind::Display as u8]).await?;
    if !handshake.confirmed(&conn).await {
        return Err(ConnError::Unconfirmed);
    }
    // Only now, with the handshake complete: who this appliance is (its certificate).
    let identity = client_auth::peer_fingerprint(&conn);
    tracing::info!(
        identity = identity.as_deref().map(identity::short_id),
        resumed_with_early_data = early,
        "handshake confirmed"
    );

    let (tx, mut events) = mpsc::unbounded_channel();
    let output = (welcome_size.0, welcome_size.1);
    if let Ok(mut daemon) = shared.daemon.lock() {
        daemon.appliance_connected(
            id,
            ApplianceSlot {
                tx,
                remote: conn.remote_address().to_string(),
                client_name: hello.client_name.clone(),
                token: hello.token.clone(),
                session: None,
                screen: (
                    hello.capabilities.screen_width,
                    hello.capabilities.screen_height,
                ),
                physical_size: hello.capabilities.physical_size,
                output,
                keymap: hello.keymap.clone(),
                scale: shared.config.output_scale.fixed_value(),
                connected_ms: now_ms(),
                card: CardCheck::for_token(hello.token.as_deref()),
                identity: identity.clone(),
                admitted: false,
                audio: welcome_audio,
                datagrams: conn.clone(),
                arrival: hello.arrival.clone(),
                lost_wait: None,
                card_in: Default::default(),
            },
        );
    }
    let limit = shared
        .config
        .bandwidth_limit_bps(conn.remote_address().ip());
    if let Some(bps) = limit {
        tracing::info!(kbps = bps / 1000, "bandwidth cap for this appliance");
    }
    let mut governor = Governor::new(limit, Instant::now());
    // Frames the cap holds back, oldest first; the session renders nothing new while they wait
    // (they count as in flight until acknowledged), so this stays short.
    let mut held: VecDeque<(u64, Bytes)> = VecDeque::new();
    // On a lossy link, small frames also go as datagrams (see `wayray_protocol::redundancy`).
    let mut copies = FrameCopies::default();
    // When the session next hears the link's quality: at once, then a second after a frame
    // went out (none while nothing changes on screen).
    let mut link_due = Some(tokio::time::Instant::now());
    // What the session last heard of the screen: its size and physical size.
    let mut screen = (
        (
            hello.capabilities.screen_width,
            hello.capabilities.screen_height,
        ),
        hello.capabilities.physical_size,
    );
    let (output_tx, output_rx) = watch::channel(output);
    let sink = input::InputSink {
        appliance: id,
        daemon: shared.daemon.clone(),
        output: output_rx,
        order: Default::default(),
    };
    let input_task = tokio::spawn(
        input::accept(conn.clone(), sink.clone()).instrument(tracing::Span::current()),
    );
    let _abort_input = AbortOnDrop(input_task);
    let microphone_task = tokio::spawn(
        audio::microphone(conn.clone(), id, shared.daemon.clone(), sink)
            .instrument(tracing::Span::current()),
    );
    let _abort_microphone = AbortOnDrop(microphone_task);
    let usb = shared.daemon.lock().ok().map(|d| d.usb.forwarding.clone());
    let bidi_task = tokio::spawn(
        streams::accept(
            conn.clone(),
            streams::BidiContext {
                appliance: id,
                daemon: shared.daemon.clone(),
                usb_grant: usb_grant_rx,
                usb: usb.unwrap_or_else(|| {
                    std::sync::Arc::new(crate::usb::Forwarding::off("daemon gone"))
                }),
            },
        )
        .instrument(tracing::Span::current()),
    );
    let _abort_bidi = AbortOnDrop(bidi_task);
    // The counter of the last card proof taken on this connection; each is accepted once.
    let mut last_proof = 0u64;

    loop {
        let wait = governor.delay(Instant::now());
        let copy_due = copies.delayed.next_due();
        tokio::select! {
            _ = tokio::time::sleep(wait), if !held.is_empty() => {
                send_held(&mut display, &mut held, &mut governor, &mut copies, &conn).await?;
            }
            _ = sleep_until(copy_due), if copy_due.is_some() => {
                copies.send_due(&conn);
            }
            _ = tokio::time::sleep_until(link_due.unwrap_or_else(tokio::time::Instant::now)), if link_due.is_some() => {
                link_due = None;
                let sample = LinkSample { rtt: conn.rtt(), cwnd: conn.stats().path.cwnd };
                let video_bitrate = governor.video_bitrate(sample);
                tracing::trace!(rtt = ?sample.rtt, cwnd = sample.cwnd, video_bitrate, "link");
                if let Ok(mut daemon) = shared.daemon.lock() {
                    daemon.forward_to_session(id, ToSession::LinkQuality { appliance: id, video_bitrate });
                }
            }
            event = events.recv() => match event {
                Some(ConnEvent::Frame { seq, bytes }) => {
                    tracing::trace!(seq, len = bytes.len(), held = held.len(), "sending frame");
                    held.push_back((seq, bytes));
                    send_held(&mut display, &mut held, &mut governor, &mut copies, &conn).await?;
                    link_due.get_or_insert_with(|| tokio::time::Instant::now() + LINK_QUALITY_INTERVAL);
                }
                Some(ConnEvent::Cursor { bytes }) => {
                    tracing::trace!(len = bytes.len(), "sending cursor");
                    display.write_chunk(bytes).await?;
                }
                Some(ConnEvent::Microphone { open }) => {
                    tracing::debug!(open, "microphone request");
                    send(&mut ctrl_send, &ServerControl::Microphone { open }).await?;
                }
                Some(ConnEvent::Notice(notice)) => {
                    tracing::info!(%notice, "notice to the appliance");
                    send(&mut ctrl_send, &ServerControl::Notice(notice)).await?;
                }
                Some(ConnEvent::Replaced) => {
                    bye(&conn, &mut ctrl_send, ByeReason::Replaced).await;
                    return Ok(());
                }
                Some(ConnEvent::Revoked) => {
                    bye(&conn, &mut ctrl_send, ByeReason::Revoked).await;
                    return Ok(());
                }
                Some(ConnEvent::Redirect(redirect)) => {
                    tracing::info!(to = %redirect.server.name, "sent to another server of the pool");
                    let _ = send(&mut ctrl_send, &ServerControl::Redirect(redirect)).await;
                    let _ = ctrl_send.finish();
                    // The appliance closes once it has read it; close anyway after a moment.
                    let _ = tokio::time::timeout(Duration::from_millis(500), conn.closed()).await;
                    conn.close(0u32.into(), b"redirected");
                    return Ok(());
                }
                Some(ConnEvent::UsbPolicy(grant)) => {
                    let filter = grant.as_ref().map(|g| g.filter.text.clone());
                    let before = usb_grant.borrow().as_ref().map(|g| g.filter.text.clone());
                    usb_grant.send_replace(grant);
                    if filter != before {
                        tracing::info!(?filter, "USB policy for the appliance");
                        send(&mut ctrl_send, &ServerControl::UsbPolicy { filter }).await?;
                    }
                }
                Some(ConnEvent::Shutdown) | None => {
                    bye(&conn, &mut ctrl_send, ByeReason::Shutdown).await;
                    return Ok(());
                }
            },
            msg = read_msg(&mut ctrl_recv, &mut reader) => match msg {
                Ok(Some(ClientControl::FrameAck { seq })) => {
                    if let Ok(mut daemon) = shared.daemon.lock() {
                        daemon.forward_to_session(id, ToSession::FrameAck { appliance: id, seq });
                    }
                }
                Ok(Some(ClientControl::TokenProof { token, counter, proof })) => {
                    let outcome = check_proof(&conn, &token, counter, &mut last_proof, proof);
                    if let ProofOutcome::Invalid(why) = &outcome {
                        tracing::warn!(%token, counter, why, "invalid card proof");
                    }
                    if let Ok(mut daemon) = shared.daemon.lock() {
                        daemon.token_proof(id, &token, outcome);
                    }
                }
                Ok(Some(ClientControl::TokenChanged { token })) => {
                    if let Ok(mut daemon) = shared.daemon.lock() {
                        daemon.token_changed(id, token);
                    }
                }
                Ok(Some(ClientControl::ScreenChanged { width, height, physical_size })) => {
                    let current = *output_tx.borrow();
                    // Following the screen, an unusable size changes nothing; with a fixed
                    // output the screen's size and physical size still set the scale.
                    let output = if shared.follow_appliance {
                        shared.output_size_for((width, height))
                    } else {
                        (width > 0 && height > 0).then_some(current)
                    };
                    tracing::info!(screen = ?(width, height), ?physical_size, ?output, "appliance screen changed");
                    let now = ((width, height), physical_size);
                    if let Some(output) = output.filter(|o| *o != current || now != screen) {
                        screen = now;
                        output_tx.send_replace(output);
                        if let Ok(mut daemon) = shared.daemon.lock() {
                            let resize = ToSession::Resize {
                                appliance: id,
                                screen: (width, height),
                                physical_size,
                                output,
                            };
                            daemon.forward_to_session(id, resize);
                        }
                    }
                }
                Ok(Some(ClientControl::Bye(reason))) => {
                    tracing::info!(%reason, "appliance said bye");
                    return Ok(());
                }
                Ok(Some(ClientControl::Hello(_))) => {
                    let err = "second Hello on the control stream".to_string();
                    bye(&conn, &mut ctrl_send, ByeReason::ProtocolError(err.clone())).await;
                    return Err(ConnError::Protocol(err));
                }
                Ok(None) => return Ok(()),
                Err(ConnError::Protocol(err)) => {
                    bye(&conn, &mut ctrl_send, ByeReason::ProtocolError(err.clone())).await;
                    return Err(ConnError::Protocol(err));
                }
                Err(err) => return Err(err),
            },
        }
    }
}

/// Checks a card proof against this connection's exporter secret. A counter at or below the last
/// one is a replay, whatever the signature.
fn check_proof(
    conn: &quinn::Connection,
    token: &str,
    counter: u64,
    last: &mut u64,
    proof: Option<wayray_protocol::card_proof::CardProof>,
) -> ProofOutcome {
    if counter <= *last {
        return ProofOutcome::Invalid(format!(
            "proof counter {counter} was already used on this connection (a replay)"
        ));
    }
    *last = counter;
    let Some(proof) = proof else {
        return ProofOutcome::NoProof;
    };
    let mut exporter = [0u8; wayray_protocol::card_proof::EXPORTER_LEN];
    if let Err(error) = conn.export_keying_material(
        &mut exporter,
        wayray_protocol::card_proof::EXPORTER_LABEL,
        token.as_bytes(),
    ) {
        return ProofOutcome::Invalid(format!("no TLS exporter secret: {error:?}"));
    }
    cards::verify(&exporter, token, counter, &proof)
}

/// Where the TLS handshake of a connection accepted as 0.5-RTT is.
enum Handshake {
    Pending(quinn::ZeroRttAccepted),
    /// Completed (`true`) or failed (`false`).
    Done(bool),
}

impl Handshake {
    /// Waits until the handshake is over; true when it completed. The idle timeout bounds the
    /// wait for a peer that never finishes it (a replay of someone else's first flight).
    async fn confirmed(&mut self, conn: &quinn::Connection) -> bool {
        if let Handshake::Pending(accepted) = self {
            // On a server it resolves `false` either way (it reports whether *this side's*
            // 0-RTT was accepted); whether the connection is still open tells success apart.
            accepted.await;
            *self = Handshake::Done(conn.close_reason().is_none());
        }
        matches!(self, Handshake::Done(true))
    }
}

/// Writes the held frames the bandwidth cap lets through now, in order.
async fn send_held(
    display: &mut quinn::SendStream,
    held: &mut VecDeque<(u64, Bytes)>,
    governor: &mut Governor,
    copies: &mut FrameCopies,
    conn: &quinn::Connection,
) -> Result<(), ConnError> {
    while let Some((seq, bytes)) = held.front() {
        if !governor.delay(Instant::now()).is_zero() {
            break;
        }
        let len = bytes.len();
        // Handed over as it is: quinn keeps the `Bytes` until they are acknowledged.
        display.write_chunk(bytes.clone()).await?;
        governor.spend(len, Instant::now());
        copies.written(conn, *seq, bytes);
        held.pop_front();
    }
    Ok(())
}

/// Datagram copies of the small frames written to the display stream while the link loses
/// packets: a frame whose stream packet is lost still shows without waiting for QUIC's probe
/// timeout (see `wayray_protocol::redundancy`).
#[derive(Default)]
struct FrameCopies {
    watch: LossWatch,
    delayed: Delayed<bytes::Bytes>,
    /// The frame written to the display stream last (0: none yet).
    last_written: u64,
    /// Copies sent, logged when the connection ends.
    sent: u64,
}

impl Drop for FrameCopies {
    fn drop(&mut self) {
        if self.sent > 0 {
            tracing::info!(
                count = self.sent,
                lost_packets = self.watch.lost(),
                "frames copied to datagrams on this connection"
            );
        }
    }
}

impl FrameCopies {
    /// Frame `seq` (`bytes`, framed as on the stream) was just written to the display stream.
    fn written(&mut self, conn: &quinn::Connection, seq: u64, bytes: &[u8]) {
        let prev_seq = std::mem::replace(&mut self.last_written, seq);
        let now = Instant::now();
        if !self.watch.lossy(conn.stats().path.lost_packets, now) {
            return;
        }
        // Only a frame that fits one datagram; a big one is many packets anyway, whose losses
        // the later ones reveal.
        let Some(max) = conn.max_datagram_size() else {
            return;
        };
        if bytes.len() >= max {
            return;
        }
        let copy = Datagram::Frame {
            prev_seq,
            message: bytes.to_vec(),
        };
        match copy.encode() {
            Ok(datagram) if datagram.len() <= max => self.delayed.push(now, datagram.into()),
            Ok(_) => {}
            Err(err) => tracing::debug!(%err, "cannot encode a frame copy"),
        }
    }

    /// Sends the copies that are due.
    fn send_due(&mut self, conn: &quinn::Connection) {
        for datagram in self.delayed.take_due(Instant::now()) {
            match conn.send_datagram(datagram) {
                Ok(()) => self.sent += 1,
                Err(err) => tracing::debug!(%err, "cannot send a frame copy"),
            }
        }
    }
}

/// Sleeps until `due` (forever without one).
async fn sleep_until(due: Option<Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due.into()).await,
        None => std::future::pending().await,
    }
}

/// Stops the input reader when the connection handler ends, however it ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Checks the appliance's Hello against what this server speaks.
fn negotiate(hello: &Hello, shared: &Shared) -> Result<Welcome, ByeReason> {
    if hello.protocol_version != PROTOCOL_VERSION {
        return Err(ByeReason::VersionMismatch {
            server: PROTOCOL_VERSION,
            client: hello.protocol_version,
        });
    }
    if !hello.capabilities.encodings.contains(&Encoding::TilesV1) {
        return Err(ByeReason::NoCommonEncoding);
    }
    let (output_width, output_height) = shared
        .output_size_for((
            hello.capabilities.screen_width,
            hello.capabilities.screen_height,
        ))
        .unwrap_or(shared.default_output_size);
    // In a pool: this server's pool name, and every server of the pool so the appliance can
    // go to another one when this one fails.
    let (server_name, pool) = shared
        .daemon
        .lock()
        .ok()
        .and_then(|d| d.pool_for_welcome())
        .unwrap_or_else(|| (shared.server_name.clone(), Vec::new()));
    Ok(Welcome {
        protocol_version: PROTOCOL_VERSION,
        server_name,
        output_width,
        output_height,
        encoding: Encoding::TilesV1,
        max_message_len: hello
            .capabilities
            .max_message_len
            .min(DEFAULT_MAX_MESSAGE_LEN),
        audio: AudioCapabilities {
            speaker: hello.capabilities.audio.speaker && shared.config.audio,
            microphone: hello.capabilities.audio.microphone && shared.config.audio,
        },
        pool,
    })
}

async fn send(stream: &mut quinn::SendStream, msg: &ServerControl) -> Result<(), ConnError> {
    let bytes = framing::encode(msg).map_err(|e| ConnError::Protocol(e.to_string()))?;
    stream.write_all(&bytes).await?;
    Ok(())
}

async fn bye(conn: &quinn::Connection, stream: &mut quinn::SendStream, reason: ByeReason) {
    let _ = send(stream, &ServerControl::Bye(reason)).await;
    let _ = stream.finish();
    let _ = tokio::time::timeout(Duration::from_millis(500), stream.stopped()).await;
    conn.close(0u32.into(), b"bye");
}

/// Reads the next control message; `Ok(None)` when the appliance finished the stream.
/// Cancel-safe: bytes read so far stay in `reader`.
/// Why the first message gave no Hello to negotiate with.
enum HelloRead {
    /// A Hello of another protocol version, which may not decode as ours.
    OtherVersion(u16),
    Failed(ConnError),
}

/// Reads the first control message; a Hello of another protocol version is recognised by its
/// leading version before it is decoded, so that appliance is told `VersionMismatch`.
async fn read_msg_or_other_version(
    stream: &mut quinn::RecvStream,
    reader: &mut FrameReader,
) -> Result<Option<ClientControl>, HelloRead> {
    loop {
        match reader.peek_body() {
            Ok(Some(body)) => {
                if let Some(version) = Hello::peek_version(body).filter(|v| *v != PROTOCOL_VERSION)
                {
                    return Err(HelloRead::OtherVersion(version));
                }
                return read_msg(stream, reader).await.map_err(HelloRead::Failed);
            }
            // Too long: read_msg reports it as it would any other time.
            Err(_) => return read_msg(stream, reader).await.map_err(HelloRead::Failed),
            Ok(None) => {}
        }
        match stream.read_chunk(reader.wanted().max(1), true).await {
            Ok(Some(chunk)) => reader.push(&chunk.bytes),
            // Ended or failed before a whole message: read_msg says which.
            Ok(None) | Err(_) => return read_msg(stream, reader).await.map_err(HelloRead::Failed),
        }
    }
}

async fn read_msg(
    stream: &mut quinn::RecvStream,
    reader: &mut FrameReader,
) -> Result<Option<ClientControl>, ConnError> {
    loop {
        if let Some(msg) = reader
            .next::<ClientControl>()
            .map_err(|e| ConnError::Protocol(e.to_string()))?
        {
            return Ok(Some(msg));
        }
        match stream.read_chunk(reader.wanted().max(1), true).await? {
            Some(chunk) => reader.push(&chunk.bytes),
            None => {
                reader
                    .finish()
                    .map_err(|e| ConnError::Protocol(e.to_string()))?;
                return Ok(None);
            }
        }
    }
}
