//! The jitter buffer: packets in as they arrive (any order, some never), one 10 ms slot out at a
//! time, each packet at its timestamp.
//!
//! * **Playout offset.** A talkspurt starts at `local = time_us + playout`, where `playout` is
//!   the larger of the picture's offset (lip sync, see `clock.rs`, less the sink's own delay)
//!   and `base + target`: `base` is the fastest arrival (local − time_us) of the last 2 s, and
//!   `target` the spread of arrivals above it (+2 ms), kept between 20 and 80 ms. Every later
//!   slot follows 10 ms after the one before.
//! * **Adaptation.** `target` follows the measured spread continuously; a new talkspurt starts
//!   with it, and a packet arriving after its slot was played (late, dropped) stretches the
//!   running talkspurt by one concealed frame (up to `base` + 80 ms), so the next ones are in time;
//!   a talkspurt holding more delay than the jitter calls for skips a packet, at most once a
//!   second, until it does not (a long stream sheds a passing spike).
//! * **Loss.** A missing packet whose successor is here is rebuilt from the successor's in-band
//!   FEC; one further out is concealed (Opus PLC). With nothing buffered after it the talkspurt
//!   is over (the session sends nothing while silent): up to three concealed frames fade to
//!   silence, then the buffer is idle and the sink is left alone.
//!
//! Pure bookkeeping on times passed in, so it is tested without a clock.

use std::collections::{BTreeMap, VecDeque};

use wayray_protocol::AudioPacket;

/// One packet's sound.
pub const FRAME_US: u64 = 10_000;
/// Bounds of the target delay over the fastest arrival.
pub const MIN_TARGET_US: u64 = 20_000;
pub const MAX_TARGET_US: u64 = 80_000;
/// Added to the measured spread of arrivals.
const TARGET_MARGIN_US: u64 = 2_000;
/// Arrivals measured for the spread.
const JITTER_WINDOW_US: u64 = 2_000_000;
/// A packet stamped this much later than its slot belongs to a new talkspurt, even if its
/// sequence number follows on (the session continues the count across silences).
const TALKSPURT_GAP_US: u64 = 20_000;
/// Concealed frames after the last packet of a talkspurt, fading to silence.
pub const MAX_FADE: u32 = 3;
/// A talkspurt gives back at most one frame of surplus delay this often.
const SHRINK_EVERY_US: u64 = 1_000_000;
/// Longest the sound waits for a slow picture (lip sync), well within [`CAPACITY`].
const MAX_SYNC_WAIT_US: i64 = 400_000;
/// Packets held at most (640 ms, far beyond the largest target): a stalled sink cannot make
/// the buffer grow without bound.
const CAPACITY: usize = 64;

/// What happened to packets, per talkspurt and in total.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Packets pushed (late ones included).
    pub received: u64,
    /// Slots whose packet never came in time (recovered or concealed).
    pub lost: u64,
    /// Lost slots rebuilt from the next packet's in-band FEC.
    pub fec: u64,
    /// Slots filled by packet-loss concealment (losses, fades and stretches).
    pub concealed: u64,
    /// Packets that came after their slot was played, or pushed out of a full buffer.
    pub late: u64,
    /// Packets skipped to shed delay the jitter no longer calls for.
    pub skipped: u64,
}

impl Counts {
    fn add(&mut self, other: &Counts) {
        self.received += other.received;
        self.lost += other.lost;
        self.fec += other.fec;
        self.concealed += other.concealed;
        self.late += other.late;
        self.skipped += other.skipped;
    }
}

/// The sound for the next slot.
#[derive(Debug, Clone, PartialEq)]
pub enum Slot {
    /// The slot's own packet.
    Play(AudioPacket),
    /// The slot's packet is lost; decode the next one's FEC (`opus`) for it.
    Fec { time_us: u64, opus: Vec<u8> },
    /// Conceal (Opus PLC), scaling the sound linearly from `gain_from` to `gain_to`.
    Conceal { gain_from: f32, gain_to: f32 },
    /// The talkspurt is over: write nothing more.
    End,
}

/// Outcome of [`JitterBuffer::push`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    Accepted,
    /// Its slot was already played: dropped.
    Late,
    Duplicate,
}

#[derive(Debug, Clone, Copy)]
struct Playing {
    next_seq: u64,
    /// Session time of the next slot.
    slot_time: u64,
    /// local − session time at which slots are handed to the sink.
    playout: i64,
    /// Fading frames written since the last packet.
    fade: u32,
    /// Session time of the slot at the last change of `playout`.
    adjusted: u64,
}

#[derive(Debug, Default)]
pub struct JitterBuffer {
    packets: BTreeMap<u64, AudioPacket>,
    playing: Option<Playing>,
    /// Sequence numbers below this were played (or given up): a packet below is late.
    floor: Option<u64>,
    /// Session time of the last slot played, to tell a late packet from a new stream.
    last_time: u64,
    /// (arrival local µs, arrival − time_us) of the last `JITTER_WINDOW_US`.
    arrivals: VecDeque<(u64, i64)>,
    /// A late packet asked for a longer delay in the running talkspurt.
    stretch: bool,
    talkspurt: Counts,
    total: Counts,
}

impl JitterBuffer {
    pub fn new() -> Self {
        Self::default()
    }

    /// A packet that arrived at local time `arrival_us`.
    pub fn push(&mut self, packet: AudioPacket, arrival_us: u64) -> Push {
        self.talkspurt.received += 1;
        let offset = (arrival_us as i64).wrapping_sub(packet.time_us as i64);
        self.arrivals.push_back((arrival_us, offset));
        while self
            .arrivals
            .front()
            .is_some_and(|&(t, _)| arrival_us.saturating_sub(t) > JITTER_WINDOW_US)
        {
            self.arrivals.pop_front();
        }
        if let Some(floor) = self.floor {
            if packet.seq < floor {
                if packet.time_us > self.last_time + TALKSPURT_GAP_US && self.playing.is_none() {
                    // A new stream (another session) that counts from elsewhere.
                    self.floor = None;
                } else {
                    self.talkspurt.late += 1;
                    if let Some(playing) = &self.playing {
                        if playing.playout < self.base() + MAX_TARGET_US as i64 {
                            self.stretch = true;
                        }
                    }
                    return Push::Late;
                }
            }
        }
        if self.packets.contains_key(&packet.seq) {
            return Push::Duplicate;
        }
        if self.packets.len() >= CAPACITY {
            if let Some((&oldest, _)) = self.packets.iter().next() {
                self.packets.remove(&oldest);
                self.talkspurt.late += 1;
            }
        }
        self.packets.insert(packet.seq, packet);
        Push::Accepted
    }

    /// The fastest arrival offset measured (local − session µs), 0 before any.
    pub fn base(&self) -> i64 {
        self.arrivals.iter().map(|&(_, o)| o).min().unwrap_or(0)
    }

    /// The delay over [`Self::base`] that the measured jitter calls for, 20…80 ms.
    pub fn target_us(&self) -> u64 {
        let base = self.base();
        let spread = self
            .arrivals
            .iter()
            .map(|&(_, o)| o.saturating_sub(base))
            .max()
            .unwrap_or(0)
            .max(0) as u64;
        (spread + TARGET_MARGIN_US).clamp(MIN_TARGET_US, MAX_TARGET_US)
    }

    /// local − session time to hand a new talkspurt's sound to the sink: with the picture
    /// (`video_offset` less the sink's delay), but never before the jitter buffer allows.
    pub fn playout_for(&self, video_offset: Option<i64>, sink_delay_us: u64) -> i64 {
        let jitter = self.base() + self.target_us() as i64;
        match video_offset {
            // A picture slower than the buffer can wait for is not waited for.
            Some(video) => {
                jitter.max((video - sink_delay_us as i64).min(self.base() + MAX_SYNC_WAIT_US))
            }
            None => jitter,
        }
    }

    pub fn is_playing(&self) -> bool {
        self.playing.is_some()
    }

    /// The current talkspurt's playout offset.
    pub fn playout(&self) -> Option<i64> {
        self.playing.map(|p| p.playout)
    }

    /// While idle: the local time at which the earliest buffered packet starts a talkspurt.
    pub fn start_due(&self, video_offset: Option<i64>, sink_delay_us: u64) -> Option<u64> {
        if self.playing.is_some() {
            return None;
        }
        let first = self.packets.values().next()?;
        let playout = self.playout_for(video_offset, sink_delay_us);
        Some((first.time_us as i64).saturating_add(playout).max(0) as u64)
    }

    /// Starts a talkspurt with the earliest buffered packet at local time `now_us`; `false` if
    /// there is none. Started late (a packet that waited behind a jitter spike), the talkspurt
    /// keeps the delay it got rather than rushing to catch up.
    pub fn begin(&mut self, video_offset: Option<i64>, sink_delay_us: u64, now_us: u64) -> bool {
        let playout = self.playout_for(video_offset, sink_delay_us);
        let Some(first) = self.packets.values().next() else {
            return false;
        };
        let playout = playout.max((now_us as i64).wrapping_sub(first.time_us as i64));
        self.playing = Some(Playing {
            next_seq: first.seq,
            slot_time: first.time_us,
            playout,
            fade: 0,
            adjusted: first.time_us,
        });
        self.stretch = false;
        true
    }

    /// While playing: the local time at which the next slot is handed to the sink.
    pub fn slot_due(&self) -> Option<u64> {
        let p = self.playing?;
        Some((p.slot_time as i64).saturating_add(p.playout).max(0) as u64)
    }

    /// Whether `packet` continues the talkspurt at the slot (`seq`, `time`).
    fn continues(packet: &AudioPacket, seq: u64, time: u64) -> bool {
        packet.seq >= seq
            && packet.time_us <= time + (packet.seq - seq) * FRAME_US + TALKSPURT_GAP_US
    }

    /// The sound of the next slot (call at [`Self::slot_due`]).
    pub fn next(&mut self) -> Slot {
        let Some(mut p) = self.playing else {
            return Slot::End;
        };
        if self.stretch {
            self.stretch = false;
            p.playout += FRAME_US as i64;
            p.adjusted = p.slot_time;
            self.playing = Some(p);
            self.talkspurt.concealed += 1;
            return Slot::Conceal {
                gain_from: 1.0,
                gain_to: 1.0,
            };
        }
        self.maybe_shrink(&mut p);
        let (seq, time) = (p.next_seq, p.slot_time);
        let own = self
            .packets
            .get(&seq)
            .is_some_and(|pk| Self::continues(pk, seq, time));
        let own = if own { self.packets.remove(&seq) } else { None };
        let slot = if let Some(packet) = own {
            p.fade = 0;
            self.advance(&mut p);
            Slot::Play(packet)
        } else if let Some(next) = self
            .packets
            .get(&(seq + 1))
            .filter(|pk| Self::continues(pk, seq, time))
        {
            let opus = next.opus.clone();
            self.talkspurt.lost += 1;
            self.talkspurt.fec += 1;
            p.fade = 0;
            self.advance(&mut p);
            Slot::Fec {
                time_us: time,
                opus,
            }
        } else if self
            .packets
            .values()
            .any(|pk| Self::continues(pk, seq, time))
        {
            self.talkspurt.lost += 1;
            self.talkspurt.concealed += 1;
            p.fade = 0;
            self.advance(&mut p);
            Slot::Conceal {
                gain_from: 1.0,
                gain_to: 1.0,
            }
        } else if p.fade < MAX_FADE {
            // Nothing after it: probably the end of the talkspurt. The sequence number stays
            // (the next talkspurt continues the count); the clock moves on.
            p.fade += 1;
            p.slot_time += FRAME_US;
            self.talkspurt.concealed += 1;
            let step = 1.0 / MAX_FADE as f32;
            self.playing = Some(p);
            return Slot::Conceal {
                gain_from: 1.0 - (p.fade - 1) as f32 * step,
                gain_to: 1.0 - p.fade as f32 * step,
            };
        } else {
            self.playing = None;
            return Slot::End;
        };
        self.playing = Some(p);
        slot
    }

    /// A talkspurt that started with more delay than the jitter now calls for (a spike that
    /// has passed) gives a frame back, at most once a second: the slot's packet is skipped
    /// when its successor is here to play instead.
    fn maybe_shrink(&mut self, p: &mut Playing) {
        let wanted = self.base() + self.target_us() as i64;
        if p.playout < wanted + (FRAME_US + TARGET_MARGIN_US) as i64
            || p.slot_time < p.adjusted + SHRINK_EVERY_US
        {
            return;
        }
        let seq = p.next_seq;
        let both = [seq, seq + 1].iter().all(|s| {
            self.packets
                .get(s)
                .is_some_and(|pk| Self::continues(pk, seq, p.slot_time))
        });
        if both {
            self.packets.remove(&seq);
            self.talkspurt.skipped += 1;
            self.advance(p);
            p.playout -= FRAME_US as i64;
            p.adjusted = p.slot_time;
        }
    }

    fn advance(&self, p: &mut Playing) {
        p.next_seq += 1;
        p.slot_time += FRAME_US;
    }

    /// Bookkeeping after [`Self::next`] handed out a slot: the floor for late packets.
    fn settle(&mut self) {
        if let Some(p) = self.playing {
            self.floor = Some(p.next_seq);
            self.last_time = p.slot_time;
        }
    }

    /// [`Self::next`] and the late-packet floor in one.
    pub fn next_slot(&mut self) -> Slot {
        let slot = self.next();
        self.settle();
        slot
    }

    /// The counts of the talkspurt so far, which start again from zero.
    pub fn take_talkspurt(&mut self) -> Counts {
        let counts = std::mem::take(&mut self.talkspurt);
        self.total.add(&counts);
        counts
    }

    /// All counts, the running talkspurt's included.
    pub fn total(&self) -> Counts {
        let mut total = self.total;
        total.add(&self.talkspurt);
        total
    }

    /// Forgets everything buffered and measured (the card left, a new connection): the next
    /// packet starts clean.
    pub fn flush(&mut self) {
        self.packets.clear();
        self.playing = None;
        self.floor = None;
        self.last_time = 0;
        self.arrivals.clear();
        self.stretch = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: u64 = 1_000_000_000;

    fn packet(seq: u64) -> AudioPacket {
        AudioPacket {
            seq,
            time_us: T0 + seq * FRAME_US,
            opus: vec![seq as u8],
        }
    }

    /// Pushes `seq` arriving `transit` µs after its time stamp.
    fn push(jb: &mut JitterBuffer, seq: u64, transit: u64) -> Push {
        let p = packet(seq);
        let at = p.time_us + transit;
        jb.push(p, at)
    }

    fn seq_of(slot: &Slot) -> Option<u64> {
        match slot {
            Slot::Play(p) => Some(p.seq),
            _ => None,
        }
    }

    #[test]
    fn reorders_and_plays_each_packet_at_its_time() {
        let mut jb = JitterBuffer::new();
        for seq in [0, 2, 1, 3] {
            assert_eq!(push(&mut jb, seq, 1_000), Push::Accepted);
        }
        assert_eq!(push(&mut jb, 2, 1_000), Push::Duplicate);
        // No jitter: the minimum target, 20 ms after the 1 ms transit.
        assert_eq!(jb.target_us(), MIN_TARGET_US);
        assert_eq!(jb.start_due(None, 0), Some(T0 + 21_000));
        assert!(jb.begin(None, 0, 0));
        for seq in 0..4 {
            assert_eq!(jb.slot_due(), Some(T0 + seq * FRAME_US + 21_000));
            assert_eq!(seq_of(&jb.next_slot()), Some(seq));
        }
        let counts = jb.take_talkspurt();
        assert_eq!((counts.received, counts.lost, counts.late), (5, 0, 0));
    }

    #[test]
    fn recovers_a_loss_by_fec_or_concealment() {
        let mut jb = JitterBuffer::new();
        for seq in [0, 2, 5] {
            push(&mut jb, seq, 1_000);
        }
        assert!(jb.begin(None, 0, 0));
        assert_eq!(seq_of(&jb.next_slot()), Some(0));
        // 1 is missing, 2 is here: its FEC stands in for 1.
        assert_eq!(
            jb.next_slot(),
            Slot::Fec {
                time_us: T0 + FRAME_US,
                opus: vec![2]
            }
        );
        assert_eq!(seq_of(&jb.next_slot()), Some(2));
        // 3 and 4 are missing and 5 holds no FEC for 3: concealed at full level.
        let full = Slot::Conceal {
            gain_from: 1.0,
            gain_to: 1.0,
        };
        assert_eq!(jb.next_slot(), full);
        assert!(matches!(jb.next_slot(), Slot::Fec { .. }));
        assert_eq!(seq_of(&jb.next_slot()), Some(5));
        let c = jb.take_talkspurt();
        assert_eq!((c.lost, c.fec, c.concealed), (3, 2, 1));
    }

    #[test]
    fn late_packets_are_dropped_and_stretch_the_talkspurt() {
        let mut jb = JitterBuffer::new();
        push(&mut jb, 0, 1_000);
        push(&mut jb, 2, 1_000);
        assert!(jb.begin(None, 0, 0));
        let playout = jb.playout().unwrap();
        jb.next_slot();
        jb.next_slot(); // 1 by FEC
                        // 1 shows up after its slot: dropped, and the next slot stretches the delay.
        assert_eq!(push(&mut jb, 1, 45_000), Push::Late);
        assert_eq!(
            jb.next_slot(),
            Slot::Conceal {
                gain_from: 1.0,
                gain_to: 1.0
            }
        );
        assert_eq!(jb.playout(), Some(playout + FRAME_US as i64));
        assert_eq!(seq_of(&jb.next_slot()), Some(2));
        assert_eq!(jb.take_talkspurt().late, 1);
    }

    #[test]
    fn target_adapts_between_20_and_80_ms() {
        let mut jb = JitterBuffer::new();
        for seq in 0..50 {
            push(&mut jb, seq, 1_000 + (seq % 2) * 3_000);
        }
        assert_eq!(jb.target_us(), MIN_TARGET_US);
        // Arrivals spread over 40 ms: the target covers them.
        for seq in 50..100 {
            push(&mut jb, seq, 1_000 + (seq % 5) * 10_000);
        }
        assert_eq!(jb.target_us(), 42_000);
        // A huge spike is capped.
        push(&mut jb, 100, 500_000);
        assert_eq!(jb.target_us(), MAX_TARGET_US);
        // Two seconds of calm later the spike is forgotten.
        let mut jb2 = JitterBuffer::new();
        push(&mut jb2, 0, 300_000);
        for seq in 1..300 {
            push(&mut jb2, seq, 1_000);
        }
        assert_eq!(jb2.target_us(), MIN_TARGET_US);
        // Lip sync: the picture's later offset wins over the jitter buffer's, never the reverse.
        assert_eq!(jb2.playout_for(Some(60_000), 10_000), 50_000);
        assert_eq!(jb2.playout_for(Some(5_000), 10_000), 21_000);
        assert_eq!(jb2.playout_for(Some(5_000_000), 0), 401_000);
    }

    #[test]
    fn surplus_delay_is_shed_once_a_second() {
        let mut jb = JitterBuffer::new();
        // The first packet waited 60 ms (a spike); the others arrive after 1 ms.
        push(&mut jb, 0, 60_000);
        push(&mut jb, 1, 1_000);
        assert!(jb.begin(None, 0, 0));
        let start = jb.playout().unwrap();
        assert_eq!(start, 1_000 + 59_000 + 2_000);
        let mut seq = 2;
        for _ in 0..600 {
            // Packets arrive 30 ms ahead of their slots.
            while T0 + seq * FRAME_US <= jb.slot_due().unwrap() + 30_000 {
                push(&mut jb, seq, 1_000);
                seq += 1;
            }
            assert!(matches!(jb.next_slot(), Slot::Play(_)));
        }
        // The spike left the 2 s window after 200 slots; then a frame a second went, down to
        // within a frame of base + 20 ms.
        let skipped = jb.total().skipped;
        assert_eq!(skipped, 3);
        assert_eq!(jb.playout(), Some(start - 30_000));
        assert_eq!(jb.total().late, 0);
    }

    #[test]
    fn talkspurt_end_fades_then_stops_and_the_next_continues_the_count() {
        let mut jb = JitterBuffer::new();
        for seq in 0..3 {
            push(&mut jb, seq, 1_000);
        }
        assert!(jb.begin(None, 0, 0));
        for _ in 0..3 {
            assert!(matches!(jb.next_slot(), Slot::Play(_)));
        }
        let gains: Vec<(f32, f32)> = (0..MAX_FADE)
            .map(|_| match jb.next_slot() {
                Slot::Conceal { gain_from, gain_to } => (gain_from, gain_to),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(gains.first().unwrap().0, 1.0);
        assert_eq!(gains.last().unwrap().1, 0.0);
        assert_eq!(jb.next_slot(), Slot::End);
        assert!(!jb.is_playing());
        let c = jb.take_talkspurt();
        assert_eq!((c.received, c.lost, c.concealed), (3, 0, 3));

        // One second later the session plays again, continuing the count at 3.
        let mut p = packet(3);
        p.time_us += 1_000_000;
        let at = p.time_us + 1_000;
        assert_eq!(jb.push(p, at), Push::Accepted);
        assert_eq!(jb.start_due(None, 0), Some(at + 20_000));
        // Started 15 ms late: the slots keep that delay.
        assert!(jb.begin(None, 0, at + 35_000));
        assert_eq!(jb.slot_due(), Some(at + 35_000));
        assert_eq!(seq_of(&jb.next_slot()), Some(3));
    }

    #[test]
    fn a_new_talkspurt_is_not_played_early_as_a_continuation() {
        let mut jb = JitterBuffer::new();
        push(&mut jb, 0, 1_000);
        let mut later = packet(1);
        later.time_us += 500_000;
        let at = later.time_us + 1_000;
        jb.push(later, at);
        assert!(jb.begin(None, 0, 0));
        assert!(matches!(jb.next_slot(), Slot::Play(_)));
        // Seq 1 follows on but is stamped half a second later: the talkspurt fades out instead.
        assert!(matches!(jb.next_slot(), Slot::Conceal { .. }));
    }

    #[test]
    fn flush_forgets_everything() {
        let mut jb = JitterBuffer::new();
        for seq in 0..5 {
            push(&mut jb, seq, 1_000);
        }
        assert!(jb.begin(None, 0, 0));
        jb.next_slot();
        jb.flush();
        assert!(!jb.is_playing());
        assert_eq!(jb.start_due(None, 0), None);
        assert_eq!(jb.next_slot(), Slot::End);
        // Packets from before are not late after a flush: a re-attach starts clean.
        assert_eq!(push(&mut jb, 0, 1_000), Push::Accepted);
        assert_eq!(jb.total().received, 6);
    }
}
