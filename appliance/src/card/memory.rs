//! A card reader in memory: cards go in and out when a test says so.

use tokio::sync::watch;

use super::{CardEvent, CardReader};

/// A [`CardReader`] driven by hand, for tests of what consumes one.
#[derive(Debug)]
pub struct MemoryCardReader {
    name: String,
    token: watch::Sender<Option<String>>,
}

impl MemoryCardReader {
    /// An empty reader called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            token: watch::Sender::new(None),
        }
    }

    /// Puts a card with this token in (replacing any card already in).
    pub fn insert(&self, token: impl Into<String>) {
        self.apply(CardEvent::Inserted {
            token: token.into(),
            reader: self.name.clone(),
        });
    }

    /// Takes the card out.
    pub fn remove(&self) {
        self.apply(CardEvent::Removed {
            reader: self.name.clone(),
        });
    }

    /// Applies an event as the PC/SC watcher would (its `reader` is not checked).
    pub fn apply(&self, event: CardEvent) {
        event.log();
        self.token.send_replace(event.token().map(str::to_owned));
    }
}

impl CardReader for MemoryCardReader {
    fn subscribe(&self) -> watch::Receiver<Option<String>> {
        self.token.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tokens_follow_the_card() {
        let reader = MemoryCardReader::new("test reader");
        let mut token = reader.subscribe();
        assert_eq!(*token.borrow_and_update(), None);
        reader.insert("atr12345678.04a1b2c3");
        token.changed().await.expect("reader alive");
        assert_eq!(
            token.borrow_and_update().as_deref(),
            Some("atr12345678.04a1b2c3")
        );
        assert_eq!(reader.token().as_deref(), Some("atr12345678.04a1b2c3"));
        reader.remove();
        token.changed().await.expect("reader alive");
        assert_eq!(*token.borrow_and_update(), None);
    }
}
