//! Who is at the appliance: the token of the smart card in its reader, which the server routes to
//! that card's session (see `wayray_protocol::Hello::token`).
//!
//! A [`CardReader`] hands out the current token as a `watch` channel: `None` while no card is in,
//! `Some("<type>.<id>")` while one is (the format is in [`token`]). The PC/SC backend,
//! [`CardWatcher`], follows one reader through pcscd; `MemoryCardReader` (in test builds) is the
//! same thing driven by hand. Without a card the appliance presents its pseudo-token instead (its
//! certificate's, see `crate::identity`), unless it is configured to require a card; that policy
//! belongs to the caller.

// Only for tests (this crate's, and of what consumes a `CardReader`).
#[cfg(test)]
mod memory;
mod pcsc;
pub mod piv;
pub mod token;
mod tracker;

use std::path::PathBuf;

use tokio::sync::watch;

#[cfg(test)]
#[allow(unused_imports)] // For consumers' tests, which may not exist yet.
pub use self::memory::MemoryCardReader;
pub use self::pcsc::{CardProver, CardWatcher, FollowedReader};

/// A card reader, as the connection loop sees it: the token of the card in it, now and as it
/// changes. The seam for testing what consumes cards with a `MemoryCardReader`.
#[allow(dead_code)] // Until a consumer takes a `dyn CardReader` rather than the watcher itself.
pub trait CardReader {
    /// The token of the card in the reader (`None`: no card). The receiver's `changed()` fires on
    /// every insertion and removal; `borrow()` is the token now.
    fn subscribe(&self) -> watch::Receiver<Option<String>>;

    /// The token now.
    fn token(&self) -> Option<String> {
        self.subscribe().borrow().clone()
    }
}

/// A card going in or out of the followed reader, as the watcher logs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CardEvent {
    Inserted { token: String, reader: String },
    Removed { reader: String },
}

impl CardEvent {
    /// The token the reader presents after this event.
    pub fn token(&self) -> Option<&str> {
        match self {
            CardEvent::Inserted { token, .. } => Some(token),
            CardEvent::Removed { .. } => None,
        }
    }

    fn log(&self) {
        match self {
            CardEvent::Inserted { token, reader } => {
                tracing::info!(%token, %reader, "card inserted")
            }
            CardEvent::Removed { reader } => tracing::info!(%reader, "card removed"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CardError {
    #[error(
        "cannot reach pcscd, the smart card daemon, at {}: {source}; start pcscd (it may also start later: the appliance then waits for it)",
        socket.display()
    )]
    #[allow(dead_code)] // Made by `CardWatcher::start`, which the appliance does not call yet.
    PcscdUnavailable {
        /// Where pcsclite looked for pcscd (`PCSCLITE_CSOCK_NAME`, else /run/pcscd/pcscd.comm).
        socket: PathBuf,
        source: ::pcsc::Error,
    },
    #[error("cannot start the card reader thread")]
    Thread(#[source] std::io::Error),
}
