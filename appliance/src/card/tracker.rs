//! What the reader's state changes mean, without talking to pcscd: which reader to follow, and
//! whether a change is a card going in or out or just noise.
//!
//! pcscd reports a change whenever any bit of a reader's state moves, and most do not concern us:
//! "in use" while a process (this one, reading the UID) talks to the card, "exclusive", a card
//! that does not answer yet. A card counts as inserted when a readable ATR appears, as removed
//! when it goes; as replaced when the ATR changes, or when pcscd's card event counter moved while
//! we were not looking (two cards of one model share their ATR, so a quick swap shows only there).

/// What pcscd says is in the reader now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observation<'a> {
    /// A card that answered reset with this ATR. `events` counts insertions and removals in this
    /// reader (the upper 16 bits of pcscd's event state).
    Card { atr: &'a [u8], events: u32 },
    /// No card, or one that does not answer (mute).
    Empty,
}

/// What the watcher must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A card came in: read its UID and tell its token.
    Inserted { atr: Vec<u8> },
    /// The card we told about is gone.
    Removed,
}

/// The card in one reader, as far as we have told anyone.
#[derive(Debug, Default)]
pub struct Tracker {
    card: Option<Seen>,
}

#[derive(Debug)]
struct Seen {
    atr: Vec<u8>,
    events: u32,
}

impl Tracker {
    /// Feeds the reader's latest state; returns the changes to act on, in order (a replaced card
    /// is [`Change::Removed`] then [`Change::Inserted`]).
    pub fn observe(&mut self, observation: Observation<'_>) -> Vec<Change> {
        match (observation, &self.card) {
            (Observation::Empty, None) => vec![],
            (Observation::Empty, Some(_)) => {
                self.card = None;
                vec![Change::Removed]
            }
            (Observation::Card { atr, events }, None) => {
                self.card = Some(Seen {
                    atr: atr.to_vec(),
                    events,
                });
                vec![Change::Inserted { atr: atr.to_vec() }]
            }
            (Observation::Card { atr, events }, Some(seen)) => {
                if seen.atr == atr && seen.events == events {
                    return vec![];
                }
                self.card = Some(Seen {
                    atr: atr.to_vec(),
                    events,
                });
                vec![Change::Removed, Change::Inserted { atr: atr.to_vec() }]
            }
        }
    }

    /// The reader went away (unplugged, or pcscd with it): whatever card was in it is gone.
    pub fn reader_gone(&mut self) -> Vec<Change> {
        match self.card.take() {
            Some(_) => vec![Change::Removed],
            None => vec![],
        }
    }

    /// The card left before we could read it (the Inserted was never told): forget it quietly, so
    /// its removal is no event either.
    pub fn forget(&mut self) {
        self.card = None;
    }
}

/// The reader to follow among those pcscd has: the one named `wanted` (exactly, else the first
/// whose name starts with it, since pcscd appends slot numbers and sometimes serial numbers to a
/// reader's name), or with no name the first reader.
pub fn choose_reader<'a>(wanted: Option<&str>, readers: &'a [String]) -> Option<&'a String> {
    match wanted {
        None => readers.first(),
        Some(wanted) => readers
            .iter()
            .find(|name| *name == wanted)
            .or_else(|| readers.iter().find(|name| name.starts_with(wanted))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ATR: &[u8] = &[0x3B, 0x02, 0x14, 0x50];
    const OTHER_ATR: &[u8] = &[0x3B, 0x00];

    fn card(atr: &[u8], events: u32) -> Observation<'_> {
        Observation::Card { atr, events }
    }

    #[test]
    fn insert_then_remove() {
        let mut tracker = Tracker::default();
        assert_eq!(tracker.observe(Observation::Empty), vec![]);
        assert_eq!(
            tracker.observe(card(ATR, 1)),
            vec![Change::Inserted { atr: ATR.to_vec() }]
        );
        assert_eq!(tracker.observe(Observation::Empty), vec![Change::Removed]);
        assert_eq!(tracker.observe(Observation::Empty), vec![]);
    }

    #[test]
    fn same_card_same_count_is_noise() {
        // pcscd reports INUSE/EXCLUSIVE flips as changes; the card and the count stay.
        let mut tracker = Tracker::default();
        tracker.observe(card(ATR, 3));
        for _ in 0..5 {
            assert_eq!(tracker.observe(card(ATR, 3)), vec![]);
        }
    }

    #[test]
    fn another_atr_is_a_swap() {
        let mut tracker = Tracker::default();
        tracker.observe(card(ATR, 1));
        assert_eq!(
            tracker.observe(card(OTHER_ATR, 1)),
            vec![
                Change::Removed,
                Change::Inserted {
                    atr: OTHER_ATR.to_vec()
                }
            ]
        );
    }

    #[test]
    fn same_atr_new_count_is_a_swap() {
        // Out and in again between two looks: another card of the same model, maybe.
        let mut tracker = Tracker::default();
        tracker.observe(card(ATR, 1));
        assert_eq!(
            tracker.observe(card(ATR, 3)),
            vec![Change::Removed, Change::Inserted { atr: ATR.to_vec() }]
        );
    }

    #[test]
    fn reader_gone_removes_the_card() {
        let mut tracker = Tracker::default();
        assert_eq!(tracker.reader_gone(), vec![]);
        tracker.observe(card(ATR, 1));
        assert_eq!(tracker.reader_gone(), vec![Change::Removed]);
        assert_eq!(tracker.observe(Observation::Empty), vec![]);
    }

    #[test]
    fn a_forgotten_card_leaves_quietly() {
        let mut tracker = Tracker::default();
        tracker.observe(card(ATR, 1));
        tracker.forget();
        assert_eq!(tracker.observe(Observation::Empty), vec![]);
        assert_eq!(
            tracker.observe(card(ATR, 1)),
            vec![Change::Inserted { atr: ATR.to_vec() }]
        );
    }

    #[test]
    fn reader_choice() {
        let readers = vec![
            "Virtual PCD 00 00".to_owned(),
            "Virtual PCD 00 01".to_owned(),
            "ACS ACR122U PICC Interface 01 00".to_owned(),
        ];
        let choose = |wanted| choose_reader(wanted, &readers).map(String::as_str);
        assert_eq!(choose(None), Some("Virtual PCD 00 00"));
        assert_eq!(choose(Some("Virtual PCD 00 01")), Some("Virtual PCD 00 01"));
        assert_eq!(
            choose(Some("ACS ACR122U")),
            Some("ACS ACR122U PICC Interface 01 00")
        );
        assert_eq!(choose(Some("Virtual PCD")), Some("Virtual PCD 00 00"));
        assert_eq!(choose(Some("Gemalto")), None);
        assert_eq!(choose_reader(None, &[]), None);
    }
}
