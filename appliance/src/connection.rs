//! One connection's protocol: Hello/Welcome on the control stream, then frames and cursor
//! images from the display stream decoded, shown and acknowledged, and local input sent on the
//! input stream, until either side says goodbye or the link breaks. A display plugged in or
//! swapped meanwhile is followed at once, and a new size is told to the server
//! (`ScreenChanged`), which answers with frames of that size.
//!
//! Everything the server sends is untrusted: a malformed message or frame ends the connection
//! with `Bye(ProtocolError)` (the supervisor then reconnects), never a panic.

use std::time::Duration;

use quinn::{RecvStream, SendStream};
use serde::de::DeserializeOwned;
use serde::Serialize;
use wayray_protocol::card_proof;
use wayray_protocol::cursor::CursorError;
use wayray_protocol::redundancy::{Delayed, FrameOrder, LossWatch};
use wayray_protocol::{
    framing, AudioCapabilities, ByeReason, Capabilities, ClientControl, CursorUpdate, Datagram,
    Decoder, DisplayMessage, Encoding, FrameReader, FrameUpdate, FramingError, Hello, InputMessage,
    Keymap, PhysicalSize, Redirect, ServerControl, StreamKind, Welcome, DEFAULT_MAX_MESSAGE_LEN,
    PROTOCOL_VERSION,
};

use crate::audio::Audio;
use crate::config::ScreenSize;
use crate::display::DisplaySink;
use crate::input::{Action, Input};
use crate::latency::{LatencyError, LatencyLog};
use crate::local::Local;
use crate::screen::{Screen, ScreenError};
use crate::signals::Command;
use crate::token::Tokens;

/// QUIC application close codes (ours to choose; the server only logs them).
const CLOSE_NORMAL: u32 = 0;
const CLOSE_PROTOCOL_ERROR: u32 = 1;
/// How long a goodbye waits for the server to acknowledge it before closing anyway.
const BYE_GRACE: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    #[error("cannot open the control stream")]
    OpenControl(#[source] quinn::ConnectionError),
    #[error("connection lost")]
    Lost(#[source] quinn::ConnectionError),
    #[error("cannot read from the server")]
    Read(#[source] quinn::ReadError),
    #[error("cannot send to the server")]
    Write(#[source] quinn::WriteError),
    #[error("cannot encode a message for the server")]
    Encode(#[source] FramingError),
    #[error("server sent a malformed message")]
    Malformed(#[source] FramingError),
    #[error("server closed the {0} stream")]
    StreamEnded(&'static str),
    #[error("server said goodbye: {0}")]
    ServerBye(ByeReason),
    #[error("server welcomed us with protocol v{server}, this appliance speaks v{client}")]
    VersionMismatch { server: u16, client: u16 },
    #[error("server sent {0}")]
    Unexpected(&'static str),
    #[error("server opened a stream of unknown kind {0}")]
    UnknownStream(u8),
    #[error("cannot decode frame {seq}: {reason}")]
    BadFrame { seq: u64, reason: String },
    #[error("server sent an unusable cursor image")]
    BadCursor(#[source] CursorError),
    #[error(transparent)]
    Screen(#[from] ScreenError),
    #[error(transparent)]
    Latency(#[from] LatencyError),
}

impl ConnectionError {
    /// No reconnect can help: the versions differ, or this appliance cannot show anything.
    pub fn is_fatal(&self) -> bool {
        match self {
            Self::VersionMismatch { .. } | Self::ServerBye(ByeReason::VersionMismatch { .. }) => {
                true
            }
            Self::Screen(ScreenError::Unsupported { .. }) => false,
            Self::Screen(_) | Self::Latency(_) => true,
            _ => false,
        }
    }

    /// The QUIC connection error underneath, if this is one (for a refused certificate).
    pub fn connection_error(&self) -> Option<&quinn::ConnectionError> {
        match self {
            Self::OpenControl(e) | Self::Lost(e) => Some(e),
            Self::Read(quinn::ReadError::ConnectionLost(e))
            | Self::Write(quinn::WriteError::ConnectionLost(e)) => Some(e),
            _ => None,
        }
    }

    /// The server refused the 0-RTT data the Hello went out in: say it again.
    fn is_zero_rtt_rejected(&self) -> bool {
        matches!(
            self,
            Self::Read(quinn::ReadError::ZeroRttRejected)
                | Self::Write(quinn::WriteError::ZeroRttRejected)
        )
    }

    /// The server went away without a goodbye: the link timed out, was reset, or was closed
    /// without a `Bye` (a crashed or killed server). In a pool, another server takes over.
    pub fn is_lost_without_bye(&self) -> bool {
        matches!(
            self.connection_error(),
            Some(
                quinn::ConnectionError::TimedOut
                    | quinn::ConnectionError::Reset
                    | quinn::ConnectionError::ConnectionClosed(_)
                    | quinn::ConnectionError::ApplicationClosed(_)
            )
        )
    }

    /// The server broke the protocol, so it is told why before the connection closes.
    fn is_protocol_violation(&self) -> bool {
        matches!(
            self,
            Self::Malformed(_)
                | Self::Unexpected(_)
                | Self::UnknownStream(_)
                | Self::BadFrame { .. }
                | Self::BadCursor(_)
                | Self::Screen(ScreenError::Unsupported { .. })
        )
    }
}

/// How a connection ended when it was the appliance's decision, or the server's instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// A signal, `--exit-after` or the input script asked the appliance to stop.
    Shutdown(&'static str),
    /// `--exit-after-frames` frames were shown.
    FrameBudgetSpent,
    /// The server sent the appliance to another server of its pool.
    Redirected(Redirect),
}

/// The Hello this appliance sends; `keymap` is its keyboard's current layout, `arrival` why it
/// comes to this server (a redirect, a failed pool server, or neither).
pub fn hello(
    screen: ScreenSize,
    physical_size: Option<PhysicalSize>,
    keymap: Keymap,
    token: Option<String>,
    audio: AudioCapabilities,
    arrival: wayray_protocol::Arrival,
) -> Hello {
    Hello {
        protocol_version: PROTOCOL_VERSION,
        client_name: concat!("wrclient ", env!("CARGO_PKG_VERSION")).to_owned(),
        capabilities: Capabilities {
            screen_width: screen.width,
            screen_height: screen.height,
            physical_size,
            encodings: vec![Encoding::TilesV1],
            max_message_len: DEFAULT_MAX_MESSAGE_LEN,
            audio,
        },
        keymap: Some(keymap),
        token,
        arrival,
    }
}

/// A connection the server has welcomed.
pub struct Established {
    connection: quinn::Connection,
    control_send: SendStream,
    control_recv: MessageReader,
    pub welcome: Welcome,
    /// The screen size and physical size the server last heard of (Hello, then
    /// `ScreenChanged`).
    announced: Announced,
    /// Token proofs sent on this connection: each proof's counter is one more.
    proofs: u64,
    /// The keymap a 0-RTT Hello left out, sent first on the input stream instead.
    deferred_keymap: Option<Keymap>,
}

/// Opens the control stream, sends Hello and waits for the server's answer. With `zero_rtt`
/// (a resumed TLS session) the Hello goes out as 0-RTT early data; if the server drops it, it
/// is said again once the handshake completes. Either way this returns only after the handshake
/// completed, so nothing the caller sends afterwards (input, a token proof) is early data.
pub async fn handshake(
    connection: &quinn::Connection,
    hello: Hello,
    zero_rtt: Option<quinn::ZeroRttAccepted>,
) -> Result<Established, ConnectionError> {
    let result = match zero_rtt {
        None => exchange(connection, hello).await,
        Some(accepted) => match exchange(connection, hello.clone()).await {
            Err((e, _)) if e.is_zero_rtt_rejected() => {
                accepted.await;
                tracing::info!("the server did not take the 0-RTT Hello; saying it again");
                exchange(connection, hello).await
            }
            Ok(established) => {
                let early = accepted.await;
                tracing::info!(early_data_accepted = early, "resumed the TLS session");
                Ok(established)
            }
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(established) => Ok(established),
        Err((e, Some(mut control_send))) => {
            close(connection, &mut control_send, Err(&e)).await;
            Err(e)
        }
        Err((e, None)) => {
            connection.close(CLOSE_NORMAL.into(), b"");
            Err(e)
        }
    }
}

/// A failed exchange: the error, and the control stream (for the goodbye) if it was opened.
type Failed = (ConnectionError, Option<SendStream>);

/// One Hello → Welcome exchange on a new control stream.
async fn exchange(connection: &quinn::Connection, hello: Hello) -> Result<Established, Failed> {
    let (mut control_send, recv) = connection
        .open_bi()
        .await
        .map_err(|e| (ConnectionError::OpenControl(e), None))?;
    let mut control_recv = MessageReader::new(recv, DEFAULT_MAX_MESSAGE_LEN);
    let announced = Announced {
        size: (
            hello.capabilities.screen_width,
            hello.capabilities.screen_height,
        ),
        physical_size: hello.capabilities.physical_size,
    };
    let answer = async {
        send(&mut control_send, &ClientControl::Hello(hello)).await?;
        match control_recv.next::<ServerControl>().await? {
            Some(ServerControl::Welcome(welcome))
                if welcome.protocol_version != PROTOCOL_VERSION =>
            {
                Err(ConnectionError::VersionMismatch {
                    server: welcome.protocol_version,
                    client: PROTOCOL_VERSION,
                })
            }
            Some(ServerControl::Welcome(welcome)) => Ok(welcome),
            Some(ServerControl::Bye(reason)) => Err(ConnectionError::ServerBye(reason)),
            Some(ServerControl::Notice(_)) => {
                Err(ConnectionError::Unexpected("a notice before Welcome"))
            }
            Some(ServerControl::Microphone { .. }) => Err(ConnectionError::Unexpected(
                "a microphone request before Welcome",
            )),
            Some(ServerControl::Redirect(_)) => {
                Err(ConnectionError::Unexpected("a redirect before Welcome"))
            }
            Some(ServerControl::UsbPolicy { .. }) => {
                Err(ConnectionError::Unexpected("a USB policy before Welcome"))
            }
            None => Err(ConnectionError::StreamEnded("control")),
        }
    }
    .await;
    match answer {
        Ok(welcome) => {
            // Agreed: neither side sends more than the smaller of the two limits.
            let max = welcome.max_message_len.min(DEFAULT_MAX_MESSAGE_LEN);
            control_recv.frames.set_max_len(max);
            Ok(Established {
                connection: connection.clone(),
                control_send,
                control_recv,
                welcome,
                announced,
                proofs: 0,
                deferred_keymap: None,
            })
        }
        Err(e) => Err((e, Some(control_send))),
    }
}

impl Established {
    /// Sends the proof for a card token (see `wayray_protocol::card_proof`): the card signs a
    /// challenge bound to this connection. Pseudo-tokens need none; a card that cannot prove
    /// anything is said to be one (`proof: None`), and the server's policy decides.
    async fn prove(&mut self, tokens: &Tokens, token: String) -> Result<(), ConnectionError> {
        if !card_proof::is_card_token(&token) {
            return Ok(());
        }
        self.proofs += 1;
        let counter = self.proofs;
        let mut exporter = [0u8; card_proof::EXPORTER_LEN];
        let proof = match self.connection.export_keying_material(
            &mut exporter,
            card_proof::EXPORTER_LABEL,
            token.as_bytes(),
        ) {
            Err(error) => {
                tracing::warn!(?error, "no TLS exporter secret for a card proof");
                None
            }
            Ok(()) => match tokens.prover_for(&token) {
                None => None,
                Some(prover) => {
                    let message = card_proof::challenge_message(&exporter, &token, counter);
                    let card = token.clone();
                    match tokio::task::spawn_blocking(move || prover.prove(&card, &message)).await {
                        Ok(Ok(proof)) => proof,
                        Ok(Err(error)) => {
                            tracing::warn!(%error, "the card could not prove itself");
                            None
                        }
                        Err(error) => {
                            tracing::error!(%error, "the card proof task failed");
                            None
                        }
                    }
                }
            },
        };
        tracing::info!(%token, counter, proven = proof.is_some(), "sending the card's proof");
        send(
            &mut self.control_send,
            &ClientControl::TokenProof {
                token,
                counter,
                proof,
            },
        )
        .await
    }

    /// The Hello went without this keymap (a compiled keymap is tens of kilobytes, far more than
    /// fits in the first flight of 0-RTT data); it goes first on the input stream instead,
    /// after the handshake and before any key.
    pub fn defer_keymap(&mut self, keymap: Option<Keymap>) {
        self.deferred_keymap = keymap;
    }

    /// Shows the session and sends input until one side ends the connection, then closes it
    /// (with a goodbye saying why, when the appliance is the one ending it).
    pub async fn run<S: DisplaySink>(
        mut self,
        local: &mut Local<S>,
    ) -> Result<Ended, ConnectionError> {
        local.audio.connected();
        let result = self.serve(local).await;
        local.audio.connection_ended();
        local.input.set_connected(false);
        if let Some(latency) = &mut local.latency {
            latency.forget_pending();
        }
        close(&self.connection, &mut self.control_send, result.as_ref()).await;
        result
    }

    async fn serve<S: DisplaySink>(
        &mut self,
        local: &mut Local<S>,
    ) -> Result<Ended, ConnectionError> {
        let Local {
            screen,
            input,
            commands,
            latency,
            hotplug,
            tokens,
            audio,
            usb,
        } = local;
        let (width, height) = (self.welcome.output_width, self.welcome.output_height);
        screen.resize(width, height)?;
        if let Some(pointer) = input.set_output(width, height) {
            screen.move_cursor(pointer);
        }
        match tokens.current() {
            None => screen.show_status("Insert your card"),
            Some(token) => self.prove(tokens, token).await?,
        }
        // A display plugged in while Hello was on its way.
        announce_screen(&mut self.control_send, &mut self.announced, screen).await?;
        let max_message_len = self.welcome.max_message_len.min(DEFAULT_MAX_MESSAGE_LEN);
        let mut display: Option<MessageReader> = None;
        let mut input_stream = InputStream::open(&self.connection).await?;
        if let Some(keymap) = self.deferred_keymap.take() {
            input_stream.send(&InputMessage::Keymap(keymap)).await?;
        }
        input.set_connected(true);
        // Devices leave only while this connection lasts: dropping the session gives them back.
        let usb = crate::usb::UsbSession::start(usb, &self.connection);
        // Per connection: the server starts every connection with a key frame.
        let mut decoder = Decoder::new();
        // Frames shown once, in order, from the stream or a datagram copy; input copied to
        // datagrams while the link loses packets (see `wayray_protocol::redundancy`).
        let mut frame_order = FrameOrder::default();
        let mut input_copies = InputCopies::default();
        let mut frames_from_copies = CopyCount("frames shown from their datagram copy", 0);

        loop {
            tokio::select! {
                // Signals first, so a flood of frames cannot delay a shutdown; then input, so a
                // key release never waits behind a frame.
                biased;
                command = commands.next() => match command {
                    Command::Screenshot => screen.write_screenshot(),
                    Command::Shutdown(why) => return Ok(Ended::Shutdown(why)),
                },
                () = tokens.changed() => {
                    // Right away: the server moves the session the moment the card moves.
                    let token = tokens.current();
                    tracing::info!(?token, "presenting a new token");
                    if token.is_none() {
                        screen.show_status("Insert your card");
                    }
                    // The session leaves with the card: its sound stops here now.
                    audio.stop("token changed");
                    send(&mut self.control_send, &ClientControl::TokenChanged { token: token.clone() }).await?;
                    if let Some(token) = token {
                        self.prove(tokens, token).await?;
                    }
                }
                event = input.next() => match input.route(event) {
                    Action::Exit => return Ok(Ended::Shutdown("the input script said exit")),
                    Action::SimulateHotplug { width, height } => {
                        screen.simulate_hotplug(width, height);
                        announce_screen(&mut self.control_send, &mut self.announced, screen).await?;
                    }
                    Action::Send { messages, pointer } => {
                        if let Some(pointer) = pointer {
                            screen.move_cursor(pointer);
                        }
                        for message in &messages {
                            let index = input_stream.send(message).await?;
                            input_copies.sent(&self.connection, index, message);
                            if let (Some(latency), InputMessage::Key { keycode, pressed: true, .. }) =
                                (latency.as_mut(), message)
                            {
                                latency.key_pressed(*keycode);
                            }
                        }
                    }
                },
                () = hotplug.next() => {
                    screen.rescan();
                    announce_screen(&mut self.control_send, &mut self.announced, screen).await?;
                }
                message = self.control_recv.next::<ServerControl>() => match message? {
                    Some(ServerControl::Bye(reason)) => return Err(ConnectionError::ServerBye(reason)),
                    Some(ServerControl::Welcome(_)) => {
                        return Err(ConnectionError::Unexpected("a second Welcome"))
                    }
                    Some(ServerControl::Notice(notice)) => {
                        tracing::warn!(%notice, "server notice");
                        screen.show_status(&notice.to_string());
                    }
                    Some(ServerControl::Microphone { open }) => {
                        tracing::info!(open, "the session asks for the microphone");
                        audio.microphone(open, &self.connection);
                    }
                    Some(ServerControl::Redirect(redirect)) => {
                        tracing::info!(
                            to = %redirect.server.name,
                            address = %redirect.server.address,
                            reason = %redirect.reason,
                            "the server redirects this appliance"
                        );
                        return Ok(Ended::Redirected(redirect));
                    }
                    Some(ServerControl::UsbPolicy { filter }) => usb.policy(filter),
                    None => return Err(ConnectionError::StreamEnded("control")),
                },
                datagram = self.connection.read_datagram() => {
                    let bytes = datagram.map_err(ConnectionError::Lost)?;
                    match Datagram::decode(&bytes) {
                        Ok(Datagram::Frame { prev_seq, message }) => {
                            match frame_copy(&message, max_message_len) {
                                Some(update) if frame_order.datagram(prev_seq, update.seq) => {
                                    tracing::trace!(seq = update.seq, "frame shown from its datagram copy");
                                    frames_from_copies.1 += 1;
                                    if let Some(ended) = self.show(&update, &mut decoder, screen, audio, latency, input).await? {
                                        return Ok(ended);
                                    }
                                }
                                Some(_) => {}
                                None => tracing::debug!("dropping a malformed frame copy"),
                            }
                        }
                        // Sound, or something the audio side reports as malformed.
                        _ => audio.datagram(&bytes),
                    }
                }
                () = sleep_until(input_copies.delayed.next_due()) => {
                    input_copies.send_due(&self.connection);
                }
                stream = self.connection.accept_uni() => {
                    let stream = stream.map_err(ConnectionError::Lost)?;
                    if display.is_some() {
                        return Err(ConnectionError::Unexpected("a second unidirectional stream"));
                    }
                    display = Some(open_display_stream(stream, max_message_len).await?);
                }
                message = next_display_message(&mut display) => match message? {
                    Some(DisplayMessage::Frame(update)) => {
                        // Shown already if its datagram copy came first.
                        if frame_order.stream(update.seq) {
                            if let Some(ended) = self.show(&update, &mut decoder, screen, audio, latency, input).await? {
                                return Ok(ended);
                            }
                        } else {
                            tracing::trace!(seq = update.seq, "skipping the stream copy of a frame shown already");
                        }
                    }
                    Some(DisplayMessage::Cursor(CursorUpdate::Hidden)) => screen.set_cursor(None),
                    Some(DisplayMessage::Cursor(CursorUpdate::Image(image))) => {
                        image.validate().map_err(ConnectionError::BadCursor)?;
                        screen.set_cursor(Some(&image));
                    }
                    None => return Err(ConnectionError::StreamEnded("display")),
                },
            }
        }
    }
}

impl Established {
    /// Decodes, shows and acknowledges one frame; `Some` when the appliance is to stop.
    async fn show<S: DisplaySink>(
        &mut self,
        update: &FrameUpdate,
        decoder: &mut Decoder,
        screen: &mut Screen<S>,
        audio: &mut Audio,
        latency: &mut Option<LatencyLog>,
        input: &mut Input,
    ) -> Result<Option<Ended>, ConnectionError> {
        let seq = update.seq;
        let changed = !update.tiles.is_empty() || update.video.is_some();
        let damage = decoder
            .apply(update)
            .map_err(|e| ConnectionError::BadFrame {
                seq,
                reason: e.to_string(),
            })?;
        let (width, height) = (decoder.width(), decoder.height());
        screen.present(seq, decoder.pixels(), width, height, &damage)?;
        audio.frame_presented(seq, update.time_us);
        if let (true, Some(latency)) = (changed, latency.as_mut()) {
            latency.frame_presented()?;
        }
        if let Some(pointer) = input.set_output(width, height) {
            screen.move_cursor(pointer);
        }
        // Right away: the server paces this appliance by its acknowledgements.
        send(&mut self.control_send, &ClientControl::FrameAck { seq }).await?;
        // A frame that found its display gone or swapped made the sink follow.
        announce_screen(&mut self.control_send, &mut self.announced, screen).await?;
        if screen.frame_budget_spent() {
            return Ok(Some(Ended::FrameBudgetSpent));
        }
        Ok(None)
    }
}

/// The frame in a datagram copy (framed as on the display stream); `None` if it holds anything
/// else.
fn frame_copy(message: &[u8], max_message_len: u32) -> Option<FrameUpdate> {
    let mut reader = FrameReader::new(max_message_len);
    reader.push(message);
    match reader.next::<DisplayMessage>() {
        Ok(Some(DisplayMessage::Frame(update))) if reader.buffered() == 0 => Some(update),
        _ => None,
    }
}

/// Datagram copies of the input events written to the input stream, while the link loses
/// packets: a key whose stream packet is lost still reaches the server without waiting for
/// QUIC's probe timeout, and the server applies each event once, in order.
struct InputCopies {
    watch: LossWatch,
    delayed: Delayed<Vec<u8>>,
    sent: CopyCount,
}

impl Default for InputCopies {
    fn default() -> Self {
        Self {
            watch: LossWatch::default(),
            delayed: Delayed::default(),
            sent: CopyCount("input events copied to datagrams", 0),
        }
    }
}

/// A count of copies, logged when the connection ends (if any were made): whether the link
/// needed them.
struct CopyCount(&'static str, u64);

impl Drop for CopyCount {
    fn drop(&mut self) {
        if self.1 > 0 {
            tracing::info!(count = self.1, "{} on this connection", self.0);
        }
    }
}

impl InputCopies {
    /// `message` was just written to the input stream as its `index`-th message.
    fn sent(&mut self, connection: &quinn::Connection, index: u64, message: &InputMessage) {
        // A keymap is far too big for a datagram, and nothing waits on it.
        if matches!(message, InputMessage::Keymap(_)) {
            return;
        }
        let now = std::time::Instant::now();
        if !self.watch.lossy(connection.stats().path.lost_packets, now) {
            return;
        }
        let copy = Datagram::Input {
            seq: index,
            event: message.clone(),
        };
        match copy.encode() {
            Ok(datagram) => self.delayed.push(now, datagram),
            Err(error) => tracing::debug!(%error, "cannot encode an input copy"),
        }
    }

    /// Sends the copies that are due.
    fn send_due(&mut self, connection: &quinn::Connection) {
        for datagram in self.delayed.take_due(std::time::Instant::now()) {
            match connection.send_datagram(datagram.into()) {
                Ok(()) => self.sent.1 += 1,
                Err(error) => tracing::debug!(%error, "cannot send an input copy"),
            }
        }
    }
}

/// Sleeps until `due` (forever without one).
async fn sleep_until(due: Option<std::time::Instant>) {
    match due {
        Some(due) => tokio::time::sleep_until(due.into()).await,
        None => std::future::pending().await,
    }
}

/// What the server last heard of the screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Announced {
    size: (u32, u32),
    physical_size: Option<PhysicalSize>,
}

/// Tells the server the screen's native size and physical size if they are not what the server
/// last heard of; the server resizes (and rescales) the session, and the next frames come at
/// that size.
async fn announce_screen<S: DisplaySink>(
    control_send: &mut SendStream,
    announced: &mut Announced,
    screen: &Screen<S>,
) -> Result<(), ConnectionError> {
    // A screen without a native size (headless) keeps the size announced in Hello.
    let Some(size) = screen.native_size() else {
        return Ok(());
    };
    let now = Announced {
        size,
        physical_size: screen.physical_size(),
    };
    if now == *announced {
        return Ok(());
    }
    let (width, height) = size;
    tracing::info!(
        width,
        height,
        physical_size = ?now.physical_size,
        "telling the server the screen changed"
    );
    send(
        control_send,
        &ClientControl::ScreenChanged {
            width,
            height,
            physical_size: now.physical_size,
        },
    )
    .await?;
    *announced = now;
    Ok(())
}

/// The appliance's input stream: opened once per connection, then one framed
/// [`InputMessage`] per event, written as soon as it happens; with the count of messages
/// written (the index of each event, which its datagram copy carries).
struct InputStream(SendStream, u64);

impl InputStream {
    async fn open(connection: &quinn::Connection) -> Result<Self, ConnectionError> {
        let mut stream = connection.open_uni().await.map_err(ConnectionError::Lost)?;
        // The kind byte goes out at once, so the server sees the stream before the first event.
        stream
            .write_all(&[StreamKind::Input as u8])
            .await
            .map_err(ConnectionError::Write)?;
        Ok(Self(stream, 0))
    }

    /// Writes `message`; returns its index on the stream (from 1).
    async fn send(&mut self, message: &InputMessage) -> Result<u64, ConnectionError> {
        write_message(&mut self.0, message).await?;
        self.1 += 1;
        Ok(self.1)
    }
}

/// Reads the stream-kind byte of the server's unidirectional stream; only a display stream is
/// expected from the server.
async fn open_display_stream(
    mut stream: RecvStream,
    max_message_len: u32,
) -> Result<MessageReader, ConnectionError> {
    let mut kind = [0u8];
    stream.read_exact(&mut kind).await.map_err(|e| match e {
        quinn::ReadExactError::FinishedEarly(_) => ConnectionError::StreamEnded("display"),
        quinn::ReadExactError::ReadError(e) => read_error(e),
    })?;
    match StreamKind::from_byte(kind[0]) {
        Some(StreamKind::Display) => Ok(MessageReader::new(stream, max_message_len)),
        Some(_) => Err(ConnectionError::Unexpected(
            "a stream other than a display stream",
        )),
        None => Err(ConnectionError::UnknownStream(kind[0])),
    }
}

/// The next display message, or never if the display stream is not open yet.
async fn next_display_message(
    display: &mut Option<MessageReader>,
) -> Result<Option<DisplayMessage>, ConnectionError> {
    match display {
        Some(reader) => reader.next().await,
        None => std::future::pending().await,
    }
}

/// Sends the goodbye that `result` calls for and closes the connection.
async fn close(
    connection: &quinn::Connection,
    control_send: &mut SendStream,
    result: Result<&Ended, &ConnectionError>,
) {
    let (bye, code) = match result {
        // The server closes a redirected connection itself; the appliance leaves at once.
        Ok(Ended::Redirected(_)) => (None, CLOSE_NORMAL),
        Ok(_) => (Some(ByeReason::Shutdown), CLOSE_NORMAL),
        Err(e) if e.is_protocol_violation() => (
            Some(ByeReason::ProtocolError(e.to_string())),
            CLOSE_PROTOCOL_ERROR,
        ),
        // The server ended it or the link is gone: nobody to tell.
        Err(_) => (None, CLOSE_NORMAL),
    };
    if let Some(bye) = bye {
        let said = async {
            send(control_send, &ClientControl::Bye(bye)).await?;
            let _ = control_send.finish();
            // Until the server has the goodbye (and the last FrameAck); closing sooner drops them.
            let _ = control_send.stopped().await;
            Ok::<_, ConnectionError>(())
        };
        if let Ok(Err(e)) = tokio::time::timeout(BYE_GRACE, said).await {
            tracing::debug!(error = %e, "could not say goodbye");
        }
    }
    connection.close(code.into(), b"");
}

async fn send(stream: &mut SendStream, message: &ClientControl) -> Result<(), ConnectionError> {
    write_message(stream, message).await
}

async fn write_message<T: Serialize>(
    stream: &mut SendStream,
    message: &T,
) -> Result<(), ConnectionError> {
    let bytes = framing::encode(message).map_err(ConnectionError::Encode)?;
    stream
        .write_all(&bytes)
        .await
        .map_err(ConnectionError::Write)
}

fn read_error(e: quinn::ReadError) -> ConnectionError {
    match e {
        quinn::ReadError::ConnectionLost(e) => ConnectionError::Lost(e),
        e => ConnectionError::Read(e),
    }
}

/// Whole messages from a QUIC receive stream.
struct MessageReader {
    stream: RecvStream,
    frames: FrameReader,
}

impl MessageReader {
    fn new(stream: RecvStream, max_message_len: u32) -> Self {
        Self {
            stream,
            frames: FrameReader::new(max_message_len),
        }
    }

    /// The next message, `None` when the server finished the stream cleanly between messages.
    /// Cancel-safe (bytes read are kept in the `FrameReader`), so it can sit in a `select!`.
    async fn next<T: DeserializeOwned>(&mut self) -> Result<Option<T>, ConnectionError> {
        loop {
            if let Some(message) = self.frames.next().map_err(ConnectionError::Malformed)? {
                return Ok(Some(message));
            }
            // Ask for exactly the rest of the current message: a large frame body arrives in as
            // few chunks as QUIC delivered it, and never runs into the next message.
            match self
                .stream
                .read_chunk(self.frames.wanted(), true)
                .await
                .map_err(read_error)?
            {
                Some(chunk) => self.frames.push(&chunk.bytes),
                None => {
                    self.frames.finish().map_err(ConnectionError::Malformed)?;
                    return Ok(None);
                }
            }
        }
    }
}
