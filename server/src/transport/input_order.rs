//! Exactly-once, in-order input from two paths: the appliance's input stream (reliable, in order,
//! but a lost packet holds every later event until QUIC retransmits it) and
//! [`Datagram::Input`](wayray_protocol::Datagram::Input) copies of the same events (sent on a
//! lossy link; unreliable, unordered). Every event has an index, its position on the stream;
//! each index is applied once, and only after every index before it, whichever copy arrives
//! first. So a key whose stream packet was lost lands as soon as its datagram copy does, and
//! never twice.

use std::collections::BTreeMap;

use wayray_protocol::InputMessage;

/// Datagram copies kept while an earlier index is missing; beyond that they are dropped (their
/// stream copies still come).
const MAX_EARLY: usize = 256;

/// Where the input of one connection is: the next index to apply and the copies that came early.
#[derive(Debug)]
pub struct InputOrder {
    /// Index of the next event to apply (counted from 1).
    next: u64,
    /// Messages read from the stream so far (the stream's own index).
    stream_read: u64,
    /// Datagram copies ahead of `next`.
    early: BTreeMap<u64, InputMessage>,
    /// Events applied from their datagram copy (their stream copy came later or not yet).
    from_copies: u64,
}

impl Default for InputOrder {
    fn default() -> Self {
        Self {
            next: 1,
            stream_read: 0,
            early: BTreeMap::new(),
            from_copies: 0,
        }
    }
}

impl Drop for InputOrder {
    fn drop(&mut self) {
        if self.from_copies > 0 {
            tracing::info!(
                count = self.from_copies,
                "input events applied from their datagram copy on this connection"
            );
        }
    }
}

impl InputOrder {
    /// The next message of the stream (`None`: it was malformed, and only its index counts).
    /// Returns the events to apply now, in order.
    pub fn stream_message(&mut self, event: Option<InputMessage>) -> Vec<Option<InputMessage>> {
        self.stream_read += 1;
        let index = self.stream_read;
        if index < self.next {
            // Its datagram copy was applied already.
            return Vec::new();
        }
        // The stream delivers every index in order, so it is never ahead of `next`.
        debug_assert_eq!(index, self.next);
        self.early.remove(&index);
        self.next = index + 1;
        let mut apply = vec![event];
        self.drain(&mut apply);
        apply
    }

    /// A datagram copy of index `seq`. Returns the events to apply now, in order.
    pub fn datagram_copy(&mut self, seq: u64, event: InputMessage) -> Vec<Option<InputMessage>> {
        if seq < self.next {
            return Vec::new();
        }
        if seq > self.next {
            if self.early.len() < MAX_EARLY {
                self.early.insert(seq, event);
            }
            return Vec::new();
        }
        self.next += 1;
        self.from_copies += 1;
        let mut apply = vec![Some(event)];
        self.drain(&mut apply);
        apply
    }

    fn drain(&mut self, apply: &mut Vec<Option<InputMessage>>) {
        while let Some(event) = self.early.remove(&self.next) {
            apply.push(Some(event));
            self.next += 1;
            self.from_copies += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(keycode: u32) -> InputMessage {
        InputMessage::Key {
            time_ms: keycode,
            keycode,
            pressed: true,
        }
    }

    fn codes(events: Vec<Option<InputMessage>>) -> Vec<u32> {
        events
            .into_iter()
            .map(|e| match e {
                Some(InputMessage::Key { keycode, .. }) => keycode,
                _ => 0,
            })
            .collect()
    }

    #[test]
    fn a_datagram_copy_goes_ahead_of_a_held_back_stream_and_the_stream_copy_is_dropped() {
        let mut order = InputOrder::default();
        assert_eq!(codes(order.stream_message(Some(key(1)))), [1]);
        // Index 2's stream packet is lost: its datagram copy applies at once.
        assert_eq!(codes(order.datagram_copy(2, key(2))), [2]);
        assert_eq!(codes(order.datagram_copy(3, key(3))), [3]);
        // The retransmitted stream brings 2 and 3 again: nothing is applied twice.
        assert!(order.stream_message(Some(key(2))).is_empty());
        assert!(order.stream_message(Some(key(3))).is_empty());
        assert_eq!(codes(order.stream_message(Some(key(4)))), [4]);
        assert!(order.datagram_copy(4, key(4)).is_empty());
    }

    #[test]
    fn a_copy_ahead_of_a_gap_waits_for_the_gap() {
        let mut order = InputOrder::default();
        assert!(order.datagram_copy(2, key(2)).is_empty());
        assert!(order.datagram_copy(3, key(3)).is_empty());
        assert_eq!(codes(order.stream_message(Some(key(1)))), [1, 2, 3]);
        assert!(order.stream_message(Some(key(2))).is_empty());
        assert!(order.stream_message(Some(key(3))).is_empty());
    }

    #[test]
    fn a_malformed_stream_message_keeps_its_index() {
        let mut order = InputOrder::default();
        assert!(order.datagram_copy(2, key(2)).is_empty());
        assert_eq!(codes(order.stream_message(None)), [0, 2]);
        assert!(order.stream_message(Some(key(2))).is_empty());
        assert_eq!(codes(order.stream_message(Some(key(3)))), [3]);
    }

    /// SplitMix64, for the shuffled arrivals below.
    fn next(state: &mut u64) -> u64 {
        *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Whatever copies arrive (lost, duplicated, reordered), interleaved with the complete
    /// stream in any way: every event is applied exactly once, in stream order.
    #[test]
    fn every_event_once_in_order_under_shuffled_arrivals() {
        for seed in 0..2000u64 {
            let mut rng = seed;
            let n = 1 + next(&mut rng) % 40;
            // Datagram copies: some lost, some twice, in a shuffled order.
            let mut copies: Vec<u64> = Vec::new();
            for i in 1..=n {
                for _ in 0..next(&mut rng) % 3 {
                    copies.push(i);
                }
            }
            for i in (1..copies.len()).rev() {
                copies.swap(i, (next(&mut rng) % (i as u64 + 1)) as usize);
            }
            let mut order = InputOrder::default();
            let mut applied = Vec::new();
            let mut stream = 1..=n;
            let mut copies = copies.into_iter();
            loop {
                let event = if next(&mut rng).is_multiple_of(2) {
                    copies
                        .next()
                        .map(|seq| order.datagram_copy(seq, key(seq as u32)))
                } else {
                    stream
                        .next()
                        .map(|i| order.stream_message(Some(key(i as u32))))
                };
                match event {
                    Some(events) => applied.extend(codes(events)),
                    None => {
                        if let Some(i) = stream.next() {
                            applied.extend(codes(order.stream_message(Some(key(i as u32)))));
                        } else if let Some(seq) = copies.next() {
                            applied.extend(codes(order.datagram_copy(seq, key(seq as u32))));
                        } else {
                            break;
                        }
                    }
                }
            }
            let expected: Vec<u32> = (1..=n as u32).collect();
            assert_eq!(applied, expected, "seed {seed}");
        }
    }
}
