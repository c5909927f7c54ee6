//! The per-call audio queues between the async side and a media thread: lock-free SPSC rings
//! of 16 kHz PCM.
//!
//! - Playout (agent → caller): the async side (TTS, prompts) writes; the media thread reads
//!   one 20 ms frame per tick. `clear()` (barge-in) takes effect on the next tick and only
//!   discards what was queued before the call, so a reply queued right after a clear is kept.
//!   `samples_played()` tells the agent how much of its reply the caller actually heard.
//!   While the media thread holds the call's stream between talkspurts it asks to be woken:
//!   the first push after that calls the producer's waker once, so a reply starts on the
//!   wire the moment its audio is queued instead of at the next tick.
//! - Capture (caller → agent): the media thread writes decoded, resampled audio; the async side
//!   reads it for speech recognition and recording. A full capture ring drops (and counts)
//!   rather than blocking the media thread.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

/// PCM rate of every ring: the engine's internal rate.
pub const ENGINE_RATE: u32 = 16_000;

#[derive(Debug, Default)]
struct PlayoutShared {
    /// Total samples the producer has written (monotonic).
    written: AtomicU64,
    /// Samples written before this count are to be discarded (set by `clear`).
    clear_until: AtomicU64,
    /// Samples actually sent to the caller.
    played: AtomicU64,
    /// Samples discarded by clears.
    cleared: AtomicU64,
    /// The media thread holds the stream (sends nothing) and wants a wake-up with the next
    /// audio. Taken (swapped to false) by the push that wakes it, so it wakes once.
    wake_wanted: AtomicBool,
}

/// Called by the producer when audio is queued for a consumer that asked to be woken (the
/// media engine sends its worker a command). Must not block.
pub type PlayoutWaker = Box<dyn Fn() + Send + Sync>;

/// The async side's end of a call's playout queue.
pub struct PlayoutProducer {
    ring: rtrb::Producer<i16>,
    shared: Arc<PlayoutShared>,
    waker: Option<PlayoutWaker>,
}

/// The media thread's end of a call's playout queue.
pub struct PlayoutConsumer {
    ring: rtrb::Consumer<i16>,
    shared: Arc<PlayoutShared>,
    read: u64,
}

/// A playout queue holding up to `capacity` samples (at [`ENGINE_RATE`]).
pub fn playout_queue(capacity: usize) -> (PlayoutProducer, PlayoutConsumer) {
    let (producer, consumer) = rtrb::RingBuffer::new(capacity);
    let shared = Arc::new(PlayoutShared::default());
    (
        PlayoutProducer {
            ring: producer,
            shared: shared.clone(),
            waker: None,
        },
        PlayoutConsumer {
            ring: consumer,
            shared,
            read: 0,
        },
    )
}

impl PlayoutProducer {
    /// Queues as many samples as fit and returns how many; the caller paces the rest
    /// (TTS arrives faster than real time, and the ring is the backpressure).
    pub fn push(&mut self, samples: &[i16]) -> usize {
        let dropped = capture_frame(&mut self.ring, samples);
        let n = samples.len() - dropped;
        self.shared.written.fetch_add(n as u64, Ordering::Release);
        // SeqCst pairs with the consumer's `set_wake_wanted`: either it sees these samples
        // when it re-checks the ring, or this sees its request.
        if n > 0 && self.shared.wake_wanted.swap(false, Ordering::SeqCst) {
            if let Some(wake) = &self.waker {
                wake();
            }
        }
        n
    }

    /// How to wake the consumer's media thread when audio is queued while it holds the
    /// stream (see [`PlayoutConsumer::set_wake_wanted`]).
    pub fn set_waker(&mut self, waker: PlayoutWaker) {
        self.waker = Some(waker);
    }

    /// Free space in samples.
    pub fn free(&self) -> usize {
        self.ring.slots()
    }

    /// Barge-in: everything queued so far is dropped on the media thread's next tick.
    pub fn clear(&self) {
        let written = self.shared.written.load(Ordering::Acquire);
        self.shared.clear_until.fetch_max(written, Ordering::AcqRel);
    }

    /// Samples that have been sent to the caller since the queue was created.
    pub fn samples_played(&self) -> u64 {
        self.shared.played.load(Ordering::Acquire)
    }

    /// Samples dropped by `clear`.
    pub fn samples_cleared(&self) -> u64 {
        self.shared.cleared.load(Ordering::Acquire)
    }

    /// Samples written since the queue was created: the position the next push starts at.
    pub fn written(&self) -> u64 {
        self.shared.written.load(Ordering::Acquire)
    }

    /// How far the media thread has read the stream (played or cleared), in the same
    /// positions as [`PlayoutProducer::written`].
    pub fn read_position(&self) -> u64 {
        self.shared.played.load(Ordering::Acquire) + self.shared.cleared.load(Ordering::Acquire)
    }

    /// Samples written and not yet played or cleared.
    pub fn queued(&self) -> u64 {
        let written = self.shared.written.load(Ordering::Acquire);
        written
            .saturating_sub(self.shared.played.load(Ordering::Acquire))
            .saturating_sub(self.shared.cleared.load(Ordering::Acquire))
    }
}

impl PlayoutConsumer {
    /// Fills `out` with the next frame: queued audio first, silence for the rest. Returns how
    /// many samples came from the queue. Applies a pending `clear` first.
    pub fn pop_frame(&mut self, out: &mut [i16]) -> usize {
        let clear_until = self.shared.clear_until.load(Ordering::Acquire);
        if self.read < clear_until {
            let skip = (clear_until - self.read).min(self.ring.slots() as u64) as usize;
            if let Ok(chunk) = self.ring.read_chunk(skip) {
                chunk.commit_all();
                self.read += skip as u64;
                self.shared
                    .cleared
                    .fetch_add(skip as u64, Ordering::Release);
            }
        }
        let n = out.len().min(self.ring.slots());
        let mut got = 0;
        if n > 0 {
            if let Ok(chunk) = self.ring.read_chunk(n) {
                let (a, b) = chunk.as_slices();
                out[..a.len()].copy_from_slice(a);
                out[a.len()..a.len() + b.len()].copy_from_slice(b);
                chunk.commit_all();
                got = n;
            }
        }
        out[got..].fill(0);
        self.read += got as u64;
        self.shared.played.fetch_add(got as u64, Ordering::Release);
        got
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.ring.is_empty()
    }

    /// True when audio is queued that a pending `clear` will not discard.
    pub fn has_audio(&self) -> bool {
        let clear_until = self.shared.clear_until.load(Ordering::Acquire);
        self.ring.slots() as u64 > clear_until.saturating_sub(self.read)
    }

    /// Asks the producer to wake the media thread with its next push (the stream is held),
    /// or withdraws the request. Returns whether audio is already queued, so a push that
    /// raced with the request is not missed.
    pub fn set_wake_wanted(&mut self, wanted: bool) -> bool {
        self.shared.wake_wanted.store(wanted, Ordering::SeqCst);
        self.has_audio()
    }
}

/// The media thread's end of a capture ring.
pub type CaptureProducer = rtrb::Producer<i16>;
/// The async side's end of a capture ring.
pub type CaptureConsumer = rtrb::Consumer<i16>;

/// A capture ring for `capacity` samples at [`ENGINE_RATE`].
pub fn capture_queue(capacity: usize) -> (CaptureProducer, CaptureConsumer) {
    rtrb::RingBuffer::new(capacity)
}

/// Writes as much of `frame` as fits into a ring; returns how many samples did not fit.
pub fn capture_frame(ring: &mut CaptureProducer, frame: &[i16]) -> usize {
    let n = frame.len().min(ring.slots());
    if n > 0 {
        if let Ok(mut chunk) = ring.write_chunk(n) {
            let (a, b) = chunk.as_mut_slices();
            a.copy_from_slice(&frame[..a.len()]);
            b.copy_from_slice(&frame[a.len()..n]);
            chunk.commit_all();
        }
    }
    frame.len() - n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_come_out_in_order_then_silence() {
        let (mut tx, mut rx) = playout_queue(1000);
        let samples: Vec<i16> = (1..=500).collect();
        assert_eq!(tx.push(&samples), 500);
        let mut frame = [0i16; 320];
        assert_eq!(rx.pop_frame(&mut frame), 320);
        assert_eq!(frame[0], 1);
        assert_eq!(frame[319], 320);
        assert_eq!(rx.pop_frame(&mut frame), 180);
        assert_eq!(frame[179], 500);
        assert!(frame[180..].iter().all(|s| *s == 0));
        assert_eq!(tx.samples_played(), 500);
        assert_eq!(tx.queued(), 0);
    }

    #[test]
    fn push_is_bounded_by_capacity() {
        let (mut tx, _rx) = playout_queue(100);
        assert_eq!(tx.push(&[1; 150]), 100);
        assert_eq!(tx.push(&[1; 10]), 0);
        assert_eq!(tx.free(), 0);
    }

    #[test]
    fn clear_drops_only_what_was_queued_before_it() {
        let (mut tx, mut rx) = playout_queue(2000);
        tx.push(&[7; 1000]);
        let mut frame = [0i16; 320];
        rx.pop_frame(&mut frame);
        tx.clear();
        // A new reply queued after the clear, before the media thread's next tick.
        tx.push(&[9; 100]);
        assert_eq!(rx.pop_frame(&mut frame), 100);
        assert!(
            frame[..100].iter().all(|s| *s == 9),
            "the new reply survives"
        );
        assert_eq!(tx.samples_played(), 420);
        assert_eq!(tx.samples_cleared(), 680);
        assert_eq!(tx.queued(), 0);
    }

    #[test]
    fn a_held_stream_is_woken_once_by_the_next_push() {
        let (mut tx, mut rx) = playout_queue(1000);
        let wakes = Arc::new(AtomicU64::new(0));
        let counter = wakes.clone();
        tx.set_waker(Box::new(move || {
            counter.fetch_add(1, Ordering::Relaxed);
        }));
        tx.push(&[1; 10]);
        assert_eq!(wakes.load(Ordering::Relaxed), 0, "nobody asked");
        let mut frame = [0i16; 320];
        rx.pop_frame(&mut frame);
        assert!(!rx.set_wake_wanted(true), "nothing queued");
        tx.push(&[1; 10]);
        tx.push(&[1; 10]);
        assert_eq!(
            wakes.load(Ordering::Relaxed),
            1,
            "the first push wakes, once"
        );
        assert!(rx.has_audio());
        tx.clear();
        assert!(!rx.has_audio(), "a pending clear discards it");
        assert!(!rx.set_wake_wanted(true));
        tx.push(&[]);
        assert_eq!(
            wakes.load(Ordering::Relaxed),
            1,
            "an empty push does not wake"
        );
    }

    #[test]
    fn capture_drops_when_full() {
        let (mut tx, rx) = capture_queue(500);
        assert_eq!(capture_frame(&mut tx, &[1; 320]), 0);
        assert_eq!(capture_frame(&mut tx, &[2; 320]), 140);
        assert_eq!(rx.slots(), 500);
    }
}
