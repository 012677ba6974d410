//! One client connection of the session's PC/SC socket: pcsc-lite's requests, answered with
//! what the attached appliance's pcscd says (see the module documentation of `super`).
//!
//! pcsc-lite opens one connection per context (`SCardEstablishContext`), and a short one for
//! each `SCardCancel`, which names the context to wake; contexts are therefore known
//! session-wide ([`SessionPcsc`]). The appliance is reached lazily: a context costs nothing
//! until it asks for readers or a card, and it follows the session to another appliance.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc, Mutex, PoisonError,
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{unix::OwnedWriteHalf, UnixStream},
    sync::{mpsc, watch},
};
use wayray_protocol::pcsc::{PcscReply, PcscRequest, ReaderInfo};

use super::{
    codes::*,
    link::Link,
    lite::{self, Command, ReaderEntry},
    Attachment,
};

/// How long one operation may take at the appliance before the client hears
/// `SCARD_F_COMM_ERROR` (a card computing an RSA key takes seconds, not minutes).
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
/// How long opening a stream to the appliance may take.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// What the connections of one session share.
pub struct SessionPcsc {
    attachment: watch::Receiver<Option<Attachment>>,
    /// Context handle → its connection's wake-up for `SCardCancel`.
    contexts: Mutex<HashMap<u32, mpsc::UnboundedSender<()>>>,
    next_handle: AtomicU32,
}

impl SessionPcsc {
    pub fn new(attachment: watch::Receiver<Option<Attachment>>) -> Self {
        // Handles need only be unique within the session; a random start keeps a handle of a
        // previous daemon from meaning something here.
        let start = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(1);
        Self {
            attachment,
            contexts: Mutex::new(HashMap::new()),
            next_handle: AtomicU32::new(start & 0x3fff_ffff),
        }
    }

    /// A fresh, nonzero, positive handle (pcsc-lite's `SCARDHANDLE`s travel as `int32_t`).
    fn handle(&self) -> u32 {
        loop {
            let h = self.next_handle.fetch_add(1, Ordering::Relaxed) & 0x7fff_ffff;
            if h != 0 {
                return h;
            }
        }
    }

    fn contexts(&self) -> std::sync::MutexGuard<'_, HashMap<u32, mpsc::UnboundedSender<()>>> {
        self.contexts.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A card connected through this client's context.
struct Card {
    appliance: u64,
    id: u32,
    protocol: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Waiting {
    No,
    /// Registered for reader events with no appliance to ask (detached): only an attach, a
    /// stop or a cancel ends it.
    Here,
    /// A `WaitChange` is pending at the appliance.
    AtAppliance,
}

struct Conn {
    session: Arc<SessionPcsc>,
    attachment: watch::Receiver<Option<Attachment>>,
    context: Option<u32>,
    cancel: (mpsc::UnboundedSender<()>, mpsc::UnboundedReceiver<()>),
    link: Option<Link>,
    cards: HashMap<i32, Card>,
    waiting: Waiting,
}

/// Serves one client until it hangs up or sends something pcscd would not take.
pub async fn serve(stream: UnixStream, session: Arc<SessionPcsc>) {
    let (mut read, mut write) = stream.into_split();
    let mut conn = Conn {
        attachment: session.attachment.clone(),
        session,
        context: None,
        cancel: mpsc::unbounded_channel(),
        link: None,
        cards: HashMap::new(),
        waiting: Waiting::No,
    };
    let mut decoder = lite::Decoder::default();
    let mut buf = vec![0u8; 16 * 1024];
    let result: Result<(), String> = async {
        loop {
            tokio::select! {
                n = read.read(&mut buf) => {
                    let n = n.map_err(|e| e.to_string())?;
                    if n == 0 {
                        return Ok(());
                    }
                    decoder.push(buf.get(..n).unwrap_or_default());
                    while let Some(command) = decoder.next().map_err(|e| e.to_string())? {
                        if let Some(answer) = conn.handle(command).await {
                            write.write_all(&answer).await.map_err(|e| e.to_string())?;
                        }
                    }
                }
                reply = wait_reply(&mut conn.link), if conn.waiting == Waiting::AtAppliance => {
                    conn.waiting = Waiting::No;
                    if let Err(err) = reply {
                        tracing::debug!(%err, "the appliance's wait ended with an error");
                        conn.drop_link();
                    }
                    signal(&mut write, SCARD_S_SUCCESS).await?;
                }
                changed = conn.attachment.changed(), if conn.waiting != Waiting::No => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    // Attached, detached or moved: the readers changed.
                    conn.end_wait().await;
                    signal(&mut write, SCARD_S_SUCCESS).await?;
                }
                Some(()) = conn.cancel.1.recv() => {
                    if conn.waiting != Waiting::No {
                        conn.end_wait().await;
                        signal(&mut write, SCARD_E_CANCELLED).await?;
                    }
                }
            }
        }
    }
    .await;
    if let Err(err) = result {
        tracing::debug!(%err, "PC/SC client cut off");
    }
    conn.release();
}

async fn signal(write: &mut OwnedWriteHalf, rv: u32) -> Result<(), String> {
    write
        .write_all(&lite::wait_signal(rv))
        .await
        .map_err(|e| e.to_string())
}

/// The answer to the pending `WaitChange`.
async fn wait_reply(link: &mut Option<Link>) -> Result<PcscReply, super::link::LinkError> {
    match link {
        Some(link) => link.recv().await,
        None => std::future::pending().await,
    }
}

/// Resolves when the session is no longer attached to `appliance`.
async fn moved_away(attachment: &mut watch::Receiver<Option<Attachment>>, appliance: u64) {
    loop {
        if attachment.borrow_and_update().as_ref().map(|a| a.appliance) != Some(appliance) {
            return;
        }
        if attachment.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

/// Why an operation at the appliance gave no answer.
enum CallError {
    /// PC/SC said no.
    Pcsc(u32),
    /// No appliance, another one now, or the stream broke.
    Gone,
    TimedOut,
}

impl CallError {
    /// The code a card operation answers with: a card at an appliance the session left is,
    /// for the session, a card taken out.
    fn card_code(&self) -> u32 {
        match self {
            Self::Pcsc(code) => *code,
            Self::Gone => SCARD_W_REMOVED_CARD,
            Self::TimedOut => SCARD_F_COMM_ERROR,
        }
    }
}

impl Conn {
    /// Answers one request (`None`: pcscd would not answer it either).
    async fn handle(&mut self, command: Command) -> Option<Vec<u8>> {
        tracing::trace!(?command, "PC/SC request");
        Some(match command {
            Command::Version { major, minor } => {
                let ok = (major, minor) == lite::VERSION;
                if !ok {
                    tracing::warn!(major, minor, "a pcsc-lite client of another IPC version");
                }
                lite::version(if ok {
                    SCARD_S_SUCCESS
                } else {
                    SCARD_E_SERVICE_STOPPED
                })
            }
            Command::EstablishContext { scope } => {
                let context = self.session.handle();
                self.session
                    .contexts()
                    .insert(context, self.cancel.0.clone());
                if let Some(old) = self.context.replace(context) {
                    self.session.contexts().remove(&old);
                }
                lite::establish(scope, context, SCARD_S_SUCCESS)
            }
            Command::ReleaseContext { context } => {
                if self.context == Some(context) {
                    self.release();
                    lite::release(context, SCARD_S_SUCCESS)
                } else {
                    lite::release(context, SCARD_E_INVALID_HANDLE)
                }
            }
            Command::Cancel { context } => {
                let woken = self
                    .session
                    .contexts()
                    .get(&context)
                    .is_some_and(|wake| wake.send(()).is_ok());
                let rv = if woken {
                    SCARD_S_SUCCESS
                } else {
                    SCARD_E_INVALID_HANDLE
                };
                lite::handle_rv(context, rv)
            }
            Command::GetReadersState => lite::reader_table(&self.readers().await),
            Command::WaitReaderStateChange => {
                // Changes from here on end the wait.
                self.attachment.borrow_and_update();
                let readers = self.readers().await;
                self.waiting = Waiting::Here;
                if let Some(link) = self.link.as_mut() {
                    let seen = readers.iter().map(to_info).collect();
                    match link.send(&PcscRequest::WaitChange { seen }).await {
                        Ok(()) => self.waiting = Waiting::AtAppliance,
                        Err(err) => {
                            tracing::debug!(%err, "cannot ask the appliance to wait");
                            self.drop_link();
                        }
                    }
                }
                lite::reader_table(&readers)
            }
            Command::StopWaitingReaderStateChange => {
                if self.waiting == Waiting::No {
                    // Already signalled: that signal was the answer.
                    return None;
                }
                self.end_wait().await;
                lite::wait_signal(SCARD_S_SUCCESS)
            }
            Command::Connect(request) => {
                let (card, protocol, rv) = self.connect(&request).await;
                lite::connect(&request, card, protocol, rv)
            }
            Command::Reconnect(request) => {
                let result = self
                    .card_call(request.card, |card| PcscRequest::Reconnect {
                        card,
                        share_mode: request.share_mode,
                        protocols: request.protocols,
                        initialization: request.initialization,
                    })
                    .await;
                match result {
                    Ok(PcscReply::Reconnected { protocol }) => {
                        if let Some(card) = self.cards.get_mut(&request.card) {
                            card.protocol = protocol;
                        }
                        lite::reconnect(&request, protocol, SCARD_S_SUCCESS)
                    }
                    other => lite::reconnect(&request, 0, code_of(other)),
                }
            }
            Command::Disconnect { card, disposition } => {
                let rv = match self
                    .card_call(card, |card| PcscRequest::Disconnect { card, disposition })
                    .await
                {
                    // A card at an appliance the session left is disconnected already.
                    Err(CallError::Gone) => SCARD_S_SUCCESS,
                    other => code_of(other),
                };
                if rv == SCARD_S_SUCCESS {
                    self.cards.remove(&card);
                }
                lite::card_disposition(card, disposition, rv)
            }
            Command::BeginTransaction { card } => {
                let rv = code_of(
                    self.card_call(card, |card| PcscRequest::BeginTransaction { card })
                        .await,
                );
                lite::handle_rv(card as u32, rv)
            }
            Command::EndTransaction { card, disposition } => {
                let rv = code_of(
                    self.card_call(card, |card| PcscRequest::EndTransaction {
                        card,
                        disposition,
                    })
                    .await,
                );
                lite::card_disposition(card, disposition, rv)
            }
            Command::Status { card } => {
                let rv = match self
                    .card_call(card, |card| PcscRequest::Status { card })
                    .await
                {
                    Ok(PcscReply::Status { protocol, .. }) => {
                        if let Some(card) = self.cards.get_mut(&card) {
                            card.protocol = protocol;
                        }
                        SCARD_S_SUCCESS
                    }
                    other => code_of(other),
                };
                lite::handle_rv(card as u32, rv)
            }
            Command::Transmit(request) => {
                let result = self
                    .card_call(request.card, |card| PcscRequest::Transmit {
                        card,
                        apdu: request.apdu.clone(),
                        max_response: request.max_response,
                    })
                    .await;
                match result {
                    Ok(PcscReply::Transmitted { response }) => {
                        lite::transmit(&request, &response, SCARD_S_SUCCESS)
                    }
                    other => lite::transmit(&request, &[], code_of(other)),
                }
            }
            Command::Control(request) => {
                let result = self
                    .card_call(request.card, |card| PcscRequest::Control {
                        card,
                        code: request.code,
                        data: request.data.clone(),
                        max_response: request.max_response,
                    })
                    .await;
                match result {
                    Ok(PcscReply::Controlled { response }) => {
                        lite::control(&request, &response, SCARD_S_SUCCESS)
                    }
                    other => lite::control(&request, &[], code_of(other)),
                }
            }
            Command::GetAttrib(request) => {
                let result = self
                    .card_call(request.card, |card| PcscRequest::GetAttrib {
                        card,
                        attribute: request.attribute,
                        max_len: request.len,
                    })
                    .await;
                match result {
                    Ok(PcscReply::Attribute { value }) => {
                        lite::getset(&request, &value, SCARD_S_SUCCESS)
                    }
                    other => lite::getset(&request, &[], code_of(other)),
                }
            }
            Command::SetAttrib(request) => {
                let rv = code_of(
                    self.card_call(request.card, |card| PcscRequest::SetAttrib {
                        card,
                        attribute: request.attribute,
                        value: request.value.clone(),
                    })
                    .await,
                );
                lite::getset(&request, &[], rv)
            }
        })
    }

    async fn connect(&mut self, request: &lite::Connect) -> (i32, u32, u32) {
        if self.context != Some(request.context) {
            return (0, 0, SCARD_E_INVALID_HANDLE);
        }
        let readers = self.readers().await;
        if !readers.iter().any(|r| r.name == request.reader) {
            return (0, 0, SCARD_E_UNKNOWN_READER);
        }
        let result = self
            .call(PcscRequest::Connect {
                reader: request.reader.clone(),
                share_mode: request.share_mode,
                protocols: request.protocols,
            })
            .await;
        match (result, self.link.as_ref()) {
            (Ok(PcscReply::Connected { card, protocol }), Some(link)) => {
                let handle = self.session.handle() as i32;
                self.cards.insert(
                    handle,
                    Card {
                        appliance: link.appliance,
                        id: card,
                        protocol,
                    },
                );
                (handle, protocol, SCARD_S_SUCCESS)
            }
            (Ok(other), _) => (0, 0, code_of(Ok(other))),
            (Err(CallError::Gone), _) => (0, 0, SCARD_E_READER_UNAVAILABLE),
            (Err(err), _) => (0, 0, err.card_code()),
        }
    }

    /// The readers the attached appliance lends, as its pcscd sees them now; none while
    /// detached or when the appliance cannot be reached.
    async fn readers(&mut self) -> Vec<ReaderEntry> {
        match self.call(PcscRequest::Readers).await {
            Ok(PcscReply::Readers(readers)) => readers
                .into_iter()
                .map(|r| {
                    // The protocol of this client's own card in that reader, as pcscd shows it.
                    let protocol = self
                        .cards
                        .values()
                        .find(|c| Some(c.appliance) == self.link.as_ref().map(|l| l.appliance))
                        .map_or(r.protocol, |c| c.protocol);
                    ReaderEntry {
                        name: r.name,
                        events: r.events,
                        state: r.state,
                        atr: r.atr,
                        protocol,
                    }
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// A request about one of this client's cards.
    async fn card_call(
        &mut self,
        handle: i32,
        request: impl FnOnce(u32) -> PcscRequest,
    ) -> Result<PcscReply, CallError> {
        let Some(card) = self.cards.get(&handle) else {
            return Err(CallError::Pcsc(SCARD_E_INVALID_HANDLE));
        };
        let (appliance, id) = (card.appliance, card.id);
        let here = self.attachment.borrow().as_ref().map(|a| a.appliance);
        if here != Some(appliance) || self.link.as_ref().map(|l| l.appliance) != Some(appliance) {
            return Err(CallError::Gone);
        }
        self.call(request(id)).await
    }

    /// One request at the attached appliance, opening a stream there first if need be. The
    /// call is abandoned (and the stream with it) when the session leaves that appliance or the
    /// appliance takes too long: an in-flight request gets an answer, never a hang.
    async fn call(&mut self, request: PcscRequest) -> Result<PcscReply, CallError> {
        self.ensure_link().await?;
        let Some(link) = self.link.as_mut() else {
            return Err(CallError::Gone);
        };
        let appliance = link.appliance;
        let mut attachment = self.attachment.clone();
        let result = tokio::select! {
            reply = tokio::time::timeout(CALL_TIMEOUT, link.call(&request)) => match reply {
                Ok(Ok(reply)) => Ok(reply),
                Ok(Err(err)) => {
                    tracing::info!(%err, "PC/SC stream to the appliance lost");
                    Err(CallError::Gone)
                }
                Err(_) => {
                    tracing::warn!(?request, "the appliance did not answer a PC/SC request in time");
                    Err(CallError::TimedOut)
                }
            },
            () = moved_away(&mut attachment, appliance) => Err(CallError::Gone),
        };
        match result {
            Ok(PcscReply::Failed { code }) => Err(CallError::Pcsc(code)),
            Ok(reply) => Ok(reply),
            Err(err) => {
                self.drop_link();
                Err(err)
            }
        }
    }

    /// A stream to the appliance the session is attached to now (a new one if it moved).
    async fn ensure_link(&mut self) -> Result<(), CallError> {
        let here = self.attachment.borrow().clone();
        let Some(here) = here else {
            self.drop_link();
            return Err(CallError::Gone);
        };
        if self.link.as_ref().map(|l| l.appliance) == Some(here.appliance) {
            return Ok(());
        }
        self.drop_link();
        match tokio::time::timeout(OPEN_TIMEOUT, Link::open(&here)).await {
            Ok(Ok(link)) => {
                tracing::debug!(appliance = here.appliance, "PC/SC stream to the appliance");
                self.link = Some(link);
                Ok(())
            }
            Ok(Err(err)) => {
                tracing::info!(%err, "no PC/SC at the appliance");
                Err(CallError::Gone)
            }
            Err(_) => Err(CallError::TimedOut),
        }
    }

    /// Ends a wait for reader events, at the appliance too.
    async fn end_wait(&mut self) {
        let waiting = std::mem::replace(&mut self.waiting, Waiting::No);
        if waiting != Waiting::AtAppliance {
            return;
        }
        let Some(link) = self.link.as_mut() else {
            return;
        };
        let ended = async {
            link.send(&PcscRequest::StopWaiting).await?;
            link.recv().await
        };
        match tokio::time::timeout(Duration::from_secs(5), ended).await {
            Ok(Ok(PcscReply::WaitEnded { .. })) => {}
            _ => self.drop_link(),
        }
    }

    fn drop_link(&mut self) {
        if let Some(link) = self.link.take() {
            link.close();
        }
        if self.waiting == Waiting::AtAppliance {
            self.waiting = Waiting::Here;
        }
    }

    /// The context is gone: so are its cards and its stream.
    fn release(&mut self) {
        if let Some(context) = self.context.take() {
            self.session.contexts().remove(&context);
        }
        self.cards.clear();
        self.drop_link();
    }
}

/// The return code of an operation that returns nothing else.
fn code_of(result: Result<PcscReply, CallError>) -> u32 {
    match result {
        Ok(PcscReply::Done) => SCARD_S_SUCCESS,
        Ok(PcscReply::Failed { code }) => code,
        Ok(other) => {
            tracing::warn!(
                ?other,
                "the appliance answered a PC/SC request with something else"
            );
            SCARD_F_INTERNAL_ERROR
        }
        Err(err) => err.card_code(),
    }
}

fn to_info(entry: &ReaderEntry) -> ReaderInfo {
    ReaderInfo {
        name: entry.name.clone(),
        state: entry.state,
        events: entry.events,
        atr: entry.atr.clone(),
        protocol: entry.protocol,
    }
}
