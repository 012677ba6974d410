//! The PC/SC backend: one thread follows one reader through pcscd and publishes the token of the
//! card in it.
//!
//! The thread blocks in SCardGetStatusChange on the reader and on `\\?PnP?\Notification` (readers
//! plugged in later), feeds what it sees to the [`Tracker`], and on an insertion connects (shared),
//! asks for the UID, and leaves the card as it was. pcscd may start after the appliance, restart or
//! die: the thread then waits for it, retrying with a growing delay, and meanwhile presents no
//! card (one may have been pulled while nobody was watching). Dropping the [`CardWatcher`] stops
//! the thread: SCardCancel wakes it, and every wait is bounded by [`POLL`] for the one case
//! SCardCancel misses (a cancel that lands just before the wait begins).

use std::ffi::CStr;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ::pcsc::{
    Context, Disposition, Error as PcscError, Protocols, ReaderState, Scope, ShareMode, State,
    MAX_BUFFER_SIZE, PNP_NOTIFICATION,
};
use tokio::sync::watch;

use super::piv::{self, PivError};
use super::token::{card_token, hex, trim_atr, uid_from_response, GET_UID};
use super::tracker::{choose_reader, Change, Observation, Tracker};
use super::{CardError, CardEvent, CardReader};

/// The longest one wait in pcscd lasts before the thread looks at its stop flag again.
const POLL: Duration = Duration::from_secs(1);
/// Waiting for pcscd: the first retry, doubling up to the second.
const RETRY_FIRST: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// How long [`CardWatcher::start`] waits for the first look at the reader.
const FIRST_LOOK: Duration = Duration::from_secs(3);
/// How long a card that is in but cannot be asked for its UID gets before it is named by its ATR
/// instead, and how often it is asked meanwhile.
const READ_PATIENCE: Duration = Duration::from_secs(2);
const READ_RETRY: Duration = Duration::from_millis(100);
/// How soon a card that pcscd says is in, but that could not be read, is looked at again.
const UNREAD_RETRY: Duration = Duration::from_millis(250);

/// Follows one card reader through pcscd (see the module documentation).
///
/// Starting blocks until the card in the reader, if any, is known (a few milliseconds; at most
/// [`FIRST_LOOK`]), and dropping blocks until the thread has stopped (normally at once, at most
/// [`POLL`]): from async code, do both outside the runtime or in `spawn_blocking`.
pub struct CardWatcher {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl CardWatcher {
    /// Follows the reader named `reader` (exactly, else the first whose name starts with it; it
    /// may be plugged in later), or the first reader pcscd has or gets. Fails when pcscd cannot be
    /// reached now; if it goes away later, the watcher waits for it to come back.
    #[allow(dead_code)] // The appliance starts with `start_waiting`; tests and tools use this.
    pub fn start(reader: Option<String>) -> Result<Self, CardError> {
        let context =
            Context::establish(Scope::User).map_err(|source| CardError::PcscdUnavailable {
                socket: pcscd_socket(),
                source,
            })?;
        Self::spawn(reader, Some(context))
    }

    /// Like [`CardWatcher::start`], but when pcscd is not running yet (it may start after the
    /// appliance) the watcher waits for it, presenting no card meanwhile.
    pub fn start_waiting(reader: Option<String>) -> Result<Self, CardError> {
        Self::spawn(reader, None)
    }

    fn spawn(reader: Option<String>, context: Option<Context>) -> Result<Self, CardError> {
        let shared = Arc::new(Shared {
            token: watch::Sender::new(None),
            card: Mutex::new(None),
            stop: Mutex::new(false),
            wake: Condvar::new(),
            context: Mutex::new(None),
            followed: Mutex::new(None),
        });
        let (first_look, looked) = mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("card-reader".into())
            .spawn({
                let shared = Arc::clone(&shared);
                move || run(&shared, reader.as_deref(), context, first_look)
            })
            .map_err(CardError::Thread)?;
        // So that the first Hello already carries the card that was in the reader at start.
        let _ = looked.recv_timeout(FIRST_LOOK);
        Ok(Self {
            shared,
            thread: Some(thread),
        })
    }

    /// The token of the card in the reader (`None`: no card, no reader, or no pcscd). After the
    /// watcher is dropped, `changed()` on the receiver returns an error.
    pub fn subscribe(&self) -> watch::Receiver<Option<String>> {
        self.shared.token.subscribe()
    }

    /// The reader followed, for lending it to the session.
    pub fn followed(&self) -> FollowedReader {
        FollowedReader {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Has the card in the reader prove itself; see [`CardProver`].
    pub fn prover(&self) -> CardProver {
        CardProver {
            shared: Arc::clone(&self.shared),
        }
    }
}

/// Asks the card now in the reader to sign a proof challenge with its PIV card authentication
/// key (see `wayray_protocol::card_proof`). Cheap to clone; blocking, so call it from
/// `spawn_blocking`.
#[derive(Clone)]
pub struct CardProver {
    shared: Arc<Shared>,
}

/// Why no proof could be made for a card that should be able to give one.
#[derive(Debug, thiserror::Error)]
pub enum ProveError {
    #[error("the card for token {0} is no longer in the reader")]
    CardGone(String),
    #[error("cannot reach the card through pcscd: {0}")]
    Pcsc(#[from] PcscError),
    #[error(transparent)]
    Piv(#[from] PivError),
}

impl CardProver {
    /// The proof for `token`'s card over `message`. `Ok(None)`: the card cannot prove anything
    /// (no PIV application or no card authentication certificate).
    pub fn prove(
        &self,
        token: &str,
        message: &[u8],
    ) -> Result<Option<wayray_protocol::card_proof::CardProof>, ProveError> {
        let (reader, certificate) = match lock(&self.shared.card).as_ref() {
            Some(card) if card.token == token => (card.reader.clone(), card.certificate.clone()),
            _ => return Err(ProveError::CardGone(token.to_owned())),
        };
        let Some(certificate) = certificate else {
            return Ok(None);
        };
        let digest = ring::digest::digest(&ring::digest::SHA256, message);
        let digest: [u8; 32] = digest
            .as_ref()
            .try_into()
            .map_err(|_| PivError::Malformed("a SHA-256 digest that is not 32 bytes"))?;
        let context = Context::establish(Scope::User)?;
        let card = context.connect(&reader, ShareMode::Shared, Protocols::ANY)?;
        let signature = piv::sign_digest(&mut |apdu| transmit(&card, apdu), &digest);
        if let Err((_, error)) = card.disconnect(Disposition::LeaveCard) {
            tracing::debug!(%error, "SCardDisconnect");
        }
        Ok(Some(wayray_protocol::card_proof::CardProof {
            certificate,
            signature: signature?,
        }))
    }
}

/// One APDU through pcscd, its answer as bytes.
fn transmit(card: &::pcsc::Card, apdu: &[u8]) -> Result<Vec<u8>, PivError> {
    let mut buffer = [0; MAX_BUFFER_SIZE];
    card.transmit(apdu, &mut buffer)
        .map(<[u8]>::to_vec)
        .map_err(|error| PivError::Transmit(error.to_string()))
}

impl CardReader for CardWatcher {
    fn subscribe(&self) -> watch::Receiver<Option<String>> {
        CardWatcher::subscribe(self)
    }
}

impl Drop for CardWatcher {
    fn drop(&mut self) {
        *lock(&self.shared.stop) = true;
        self.shared.wake.notify_all();
        if let Some(context) = lock(&self.shared.context).as_ref() {
            if let Err(error) = context.cancel() {
                tracing::debug!(%error, "SCardCancel");
            }
        }
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the card reader thread panicked");
            }
        }
    }
}

/// Where pcsclite looks for pcscd, for error messages.
fn pcscd_socket() -> PathBuf {
    std::env::var_os("PCSCLITE_CSOCK_NAME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/run/pcscd/pcscd.comm"))
}

/// What the watcher and its thread share.
struct Shared {
    token: watch::Sender<Option<String>>,
    /// The card in the reader, for proofs.
    card: Mutex<Option<PresentCard>>,
    stop: Mutex<bool>,
    wake: Condvar,
    /// The context the thread is waiting in, for SCardCancel.
    context: Mutex<Option<Context>>,
    /// The reader followed now, by its full name.
    followed: Mutex<Option<String>>,
}

/// The reader a [`CardWatcher`] follows, by name: the one reader lent to the session's PC/SC
/// (see `crate::pcsc`). Cheap to clone.
#[derive(Clone)]
pub struct FollowedReader {
    shared: Arc<Shared>,
}

impl FollowedReader {
    /// Its name now; `None` while no reader is followed (none plugged in, pcscd away).
    pub fn name(&self) -> Option<String> {
        lock(&self.shared.followed).clone()
    }
}

impl Shared {
    fn stopped(&self) -> bool {
        *lock(&self.stop)
    }

    /// Sleeps for `duration`, or less if the watcher is dropped meanwhile.
    fn sleep(&self, duration: Duration) {
        let stop = lock(&self.stop);
        let _ = self
            .wake
            .wait_timeout_while(stop, duration, |stop| !*stop)
            .unwrap_or_else(PoisonError::into_inner);
    }

    fn publish(&self, event: &CardEvent, card: Option<PresentCard>) {
        event.log();
        *lock(&self.card) = card;
        self.token.send_replace(event.token().map(str::to_owned));
    }
}

/// What a proof needs of the card in the reader.
struct PresentCard {
    token: String,
    reader: std::ffi::CString,
    /// Its PIV card authentication certificate; `None`: it cannot prove anything.
    certificate: Option<Vec<u8>>,
}

/// A lock that a panicking holder did not spoil: the data behind these (a flag, a handle) has no
/// invariant to break.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The thread: connect to pcscd (again and again if need be) and follow the reader.
fn run(
    shared: &Shared,
    wanted: Option<&str>,
    mut context: Option<Context>,
    first_look: mpsc::SyncSender<()>,
) {
    let mut first_look = Some(first_look);
    let mut delay = RETRY_FIRST;
    let mut waiting = false;
    while !shared.stopped() {
        let context = match context
            .take()
            .map_or_else(|| Context::establish(Scope::User), Ok)
        {
            Ok(context) => context,
            Err(error) => {
                if !waiting {
                    tracing::warn!(
                        socket = %pcscd_socket().display(),
                        %error,
                        "pcscd is not reachable; waiting for it (no card until then)"
                    );
                    waiting = true;
                }
                looked(&mut first_look);
                shared.sleep(delay);
                delay = (delay * 2).min(RETRY_MAX);
                continue;
            }
        };
        if waiting {
            tracing::info!("pcscd is reachable");
            waiting = false;
        }
        delay = RETRY_FIRST;
        *lock(&shared.context) = Some(context.clone());
        let mut follower = Follower::new(&context, wanted, shared);
        let result = follower.follow(&mut first_look);
        *lock(&shared.context) = None;
        if let Err(error) = result {
            tracing::warn!(%error, "lost pcscd; reconnecting");
            follower.reader_gone();
            looked(&mut first_look);
            shared.sleep(delay);
        }
    }
}

/// Tells [`CardWatcher::spawn`] that the first look is done (once).
fn looked(first_look: &mut Option<mpsc::SyncSender<()>>) {
    if let Some(sender) = first_look.take() {
        let _ = sender.try_send(());
    }
}

/// One connection to pcscd, following one reader.
struct Follower<'a> {
    context: &'a Context,
    wanted: Option<&'a str>,
    shared: &'a Shared,
    /// `[0]`: the PnP pseudo-reader; `[1]`: the reader followed, once there is one.
    states: Vec<ReaderState>,
    reader: String,
    tracker: Tracker,
    said_waiting: bool,
    /// pcscd says a card is in, but it could not be read (it left, or pcscd has not noticed
    /// that it was swapped): look again soon even if pcscd reports no change, since a swap it
    /// missed never will be reported.
    unread: bool,
}

/// What came of asking a new card for its UID (and its PIV certificate).
enum UidRead {
    /// The card answered, with its UID or without one, and its certificate if it has one.
    Answered(Option<Vec<u8>>, Option<Vec<u8>>),
    /// The card left before it could be asked.
    Gone,
}

impl<'a> Follower<'a> {
    fn new(context: &'a Context, wanted: Option<&'a str>, shared: &'a Shared) -> Self {
        Self {
            context,
            wanted,
            shared,
            states: vec![ReaderState::new(PNP_NOTIFICATION(), State::UNAWARE)],
            reader: String::new(),
            tracker: Tracker::default(),
            said_waiting: false,
            unread: false,
        }
    }

    /// Follows until the watcher is dropped (`Ok`) or pcscd fails (`Err`).
    fn follow(&mut self, first_look: &mut Option<mpsc::SyncSender<()>>) -> Result<(), PcscError> {
        loop {
            if self.shared.stopped() {
                return Ok(());
            }
            if self.states.len() == 1 && !self.pick_reader()? {
                // No reader to look at: that is the first look.
                looked(first_look);
            }
            let wait = if self.unread { UNREAD_RETRY } else { POLL };
            match self.context.get_status_change(wait, &mut self.states) {
                Ok(()) => {}
                Err(PcscError::Timeout) if self.unread => {
                    // Forget what we know of the reader, so the next wait returns its state now.
                    if let Some(state) = self.states.get_mut(1) {
                        *state = ReaderState::new(state.name().to_owned(), State::UNAWARE);
                    }
                    continue;
                }
                Err(PcscError::Timeout | PcscError::Cancelled) => continue,
                // Older pcsclite says so instead of waiting on PnP alone.
                Err(PcscError::NoReadersAvailable) => {
                    self.shared.sleep(POLL);
                    continue;
                }
                Err(error) => return Err(error),
            }
            tracing::trace!(pnp = ?self.states[0].event_state(), "pcscd reports a change");
            self.states[0].sync_current_state();
            if self.states.len() > 1 {
                self.look();
                looked(first_look);
            }
        }
    }

    /// Picks the reader to follow among those pcscd has now; `false` if there is none.
    fn pick_reader(&mut self) -> Result<bool, PcscError> {
        let readers = self.context.list_readers_owned()?;
        let names: Vec<String> = readers
            .iter()
            .map(|name| name.to_string_lossy().into_owned())
            .collect();
        let Some(index) = choose_reader(self.wanted, &names)
            .and_then(|chosen| names.iter().position(|name| name == chosen))
        else {
            if !self.said_waiting {
                tracing::info!(
                    wanted = self.wanted.unwrap_or("any"),
                    available = ?names,
                    "waiting for a card reader"
                );
                self.said_waiting = true;
            }
            return Ok(false);
        };
        let (Some(name), Some(cname)) = (names.get(index), readers.get(index)) else {
            return Ok(false);
        };
        tracing::info!(reader = %name, "following card reader");
        self.said_waiting = false;
        self.reader = name.clone();
        *lock(&self.shared.followed) = Some(name.clone());
        self.tracker = Tracker::default();
        self.states
            .push(ReaderState::new(cname.clone(), State::UNAWARE));
        Ok(true)
    }

    /// Acts on the followed reader's state after a wait returned.
    fn look(&mut self) {
        let Some(state) = self.states.get_mut(1) else {
            return;
        };
        let event = state.event_state();
        if event.intersects(State::UNKNOWN | State::IGNORE) {
            tracing::info!(reader = %self.reader, "card reader went away");
            self.reader_gone();
            // Do not spin if pcscd lists a reader it then says it does not know.
            self.shared.sleep(READ_RETRY);
            return;
        }
        let atr = trim_atr(state.atr()).to_vec();
        let events = state.event_count();
        state.sync_current_state();
        let observation =
            if event.contains(State::PRESENT) && !event.contains(State::MUTE) && !atr.is_empty() {
                Observation::Card { atr: &atr, events }
            } else {
                if event.contains(State::MUTE) {
                    tracing::debug!(reader = %self.reader, "card does not answer (mute)");
                }
                Observation::Empty
            };
        tracing::trace!(reader = %self.reader, ?event, atr = %hex(&atr), "reader state");
        self.unread = false;
        for change in self.tracker.observe(observation) {
            self.act(change);
        }
    }

    /// The followed reader is gone, or pcscd is: whatever card was in it is too.
    fn reader_gone(&mut self) {
        self.states.truncate(1);
        *lock(&self.shared.followed) = None;
        for change in self.tracker.reader_gone() {
            self.act(change);
        }
    }

    fn act(&mut self, change: Change) {
        match change {
            Change::Removed => self.shared.publish(
                &CardEvent::Removed {
                    reader: self.reader.clone(),
                },
                None,
            ),
            Change::Inserted { atr } => match self.read_uid(&atr) {
                UidRead::Answered(uid, certificate) => {
                    let token = card_token(&atr, uid.as_deref());
                    let present = self.states.get(1).map(|state| PresentCard {
                        token: token.clone(),
                        reader: state.name().to_owned(),
                        certificate,
                    });
                    self.shared.publish(
                        &CardEvent::Inserted {
                            token,
                            reader: self.reader.clone(),
                        },
                        present,
                    )
                }
                UidRead::Gone => {
                    tracing::debug!(reader = %self.reader, "card left before it could be read");
                    self.tracker.forget();
                    self.unread = true;
                }
            },
        }
    }

    /// Asks the card in the followed reader for its UID. When that fails without an answer, the
    /// card may be on its way out (pcscd takes a moment to notice; vpcd then says "not
    /// transacted" rather than "removed") or held by another process: ask again while the card
    /// is still there, for up to [`READ_PATIENCE`], and only then name it by its ATR.
    fn read_uid(&self, atr: &[u8]) -> UidRead {
        let Some(reader) = self.states.get(1).map(|state| state.name().to_owned()) else {
            return UidRead::Gone;
        };
        let started = Instant::now();
        loop {
            let error = match self.try_read_uid(&reader) {
                Ok((uid, certificate)) => {
                    if uid.is_none() {
                        tracing::debug!(reader = %self.reader, "card has no UID; naming it by its ATR");
                    }
                    return UidRead::Answered(uid, certificate);
                }
                Err(PcscError::RemovedCard | PcscError::NoSmartcard) => return UidRead::Gone,
                Err(error) => error,
            };
            if !self.card_still_in(&reader, atr) {
                return UidRead::Gone;
            }
            if started.elapsed() >= READ_PATIENCE || self.shared.stopped() {
                tracing::warn!(
                    reader = %self.reader,
                    %error,
                    "cannot ask the card for its UID; naming it by its ATR"
                );
                return UidRead::Answered(None, None);
            }
            tracing::debug!(reader = %self.reader, %error, "cannot read the card yet; asking again");
            self.shared.sleep(READ_RETRY);
        }
    }

    /// Whether pcscd still sees a card with this ATR in the reader.
    fn card_still_in(&self, reader: &CStr, atr: &[u8]) -> bool {
        let mut states = [ReaderState::new(reader.to_owned(), State::UNAWARE)];
        match self.context.get_status_change(Duration::ZERO, &mut states) {
            Ok(()) => {
                let state = states[0].event_state();
                state.contains(State::PRESENT)
                    && !state.contains(State::MUTE)
                    && trim_atr(states[0].atr()) == atr
            }
            Err(_) => false,
        }
    }

    /// Connect (shared), GET DATA for the UID, read the PIV card authentication certificate if
    /// the card has one, disconnect leaving the card as it was.
    #[allow(clippy::type_complexity)]
    fn try_read_uid(&self, reader: &CStr) -> Result<(Option<Vec<u8>>, Option<Vec<u8>>), PcscError> {
        let card = self
            .context
            .connect(reader, ShareMode::Shared, Protocols::ANY)?;
        let mut buffer = [0; MAX_BUFFER_SIZE];
        let answer = card
            .transmit(&GET_UID, &mut buffer)
            .map(|response| uid_from_response(response).map(<[u8]>::to_vec))
            .map(|uid| {
                let certificate =
                    match piv::read_card_auth_certificate(&mut |apdu| transmit(&card, apdu)) {
                        Ok(certificate) => Some(certificate),
                        Err(error) => {
                            tracing::info!(reader = %self.reader, %error, "the card cannot prove its identity");
                            None
                        }
                    };
                (uid, certificate)
            });
        if let Err((_, error)) = card.disconnect(Disposition::LeaveCard) {
            tracing::debug!(reader = %self.reader, %error, "SCardDisconnect");
        }
        answer
    }
}
