//! Media worker threads: each owns a set of calls (their RTP sockets and sessions), wakes every
//! 20 ms, reads what arrived, ticks every session and sends what they produce. Calls are put
//! on the least-loaded worker. The async world reaches a call only through its `CallHandle`
//! (a bounded command channel), its playout/capture rings and the events it receives through
//! an [`EventSink`].
//!
//! Between ticks a worker waits on its command channel rather than sleeping, so that audio
//! queued for a call whose stream is held (silence suppression) starts its talkspurt at
//! once: the playout ring's waker sends the worker a `Wake` for that call.

use std::collections::HashMap;
use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};

use crate::session::{MediaEvent, MediaSession, SessionParams};
use crate::vad::{SileroModel, VadBatcher, VadError};
use crate::webrtc::{WebRtcPeer, WebRtcPort};

/// The media tick.
pub const TICK: Duration = Duration::from_millis(20);
/// Commands a worker accepts per call before the channel is full.
const COMMAND_QUEUE: usize = 4096;

/// Where a call's media events go. Implementations must not block (the call layer wraps a
/// bounded async channel and drops, counting, when it is full).
pub trait EventSink: Send {
    fn push(&mut self, event: MediaEvent);
}

/// Everything a worker needs to run one call.
pub struct CallSetup {
    pub socket: UdpSocket,
    /// The RTCP socket (RTP port + 1); None when RTCP is multiplexed or not wanted.
    pub rtcp_socket: Option<UdpSocket>,
    pub session: MediaSession,
    pub events: Box<dyn EventSink>,
    /// Dropped by the worker when the call is removed (e.g. the RTP port reservation).
    pub keepalive: Box<dyn Send>,
}

/// Everything a worker needs to run one browser call, on the engine's WebRTC port.
pub struct WebRtcSetup {
    pub peer: WebRtcPeer,
    pub session: MediaSession,
    pub events: Box<dyn EventSink>,
    pub keepalive: Box<dyn Send>,
}

enum Command {
    Add(u64, Box<Slot>),
    /// The shared WebRTC port, for the worker that carries browser calls.
    WebRtcPort(Box<WebRtcPort>),
    Update(u64, SessionParams),
    SendDtmf(u64, char, u32),
    /// Audio was queued for a call whose stream is held: start its talkspurt now.
    Wake(u64),
    Remove(u64),
}

/// Counters shared by all workers, for /metrics.
#[derive(Debug, Default)]
pub struct EngineStats {
    pub ticks: AtomicU64,
    /// When a worker last finished a tick, in ms since the Unix epoch (readiness: a stuck or
    /// dead worker stops moving it).
    pub last_tick_unix_ms: AtomicU64,
    /// Ticks that started more than one tick late (the worker was overloaded).
    pub late_ticks: AtomicU64,
    /// VAD windows inferred, and batched model runs.
    pub vad_windows: AtomicU64,
    pub vad_errors: AtomicU64,
    /// Nanoseconds spent working (not sleeping) across workers.
    pub busy_ns: AtomicU64,
    pub packets_in: AtomicU64,
    pub packets_out: AtomicU64,
    pub command_drops: AtomicU64,
    /// Talkspurts started between ticks, the moment their audio was queued.
    pub early_talkspurts: AtomicU64,
    /// How late ticks started against their schedule: counts per bucket of
    /// [`TICK_DELAY_BOUNDS_US`] (the last slot is beyond them), and the sum in µs.
    pub tick_delay: [AtomicU64; TICK_DELAY_BOUNDS_US.len() + 1],
    pub tick_delay_us_total: AtomicU64,
    /// Workers whose start hook failed (the server: could not take the configured
    /// priority, for want of permission).
    pub priority_refused: AtomicU64,
    /// Datagrams on the WebRTC port, and those that matched no browser call.
    pub webrtc_datagrams: AtomicU64,
    pub webrtc_unmatched: AtomicU64,
}

/// Upper bounds (µs) of the tick-delay buckets: what a busy machine, a descheduled worker
/// or a blocking call on the media path would show.
pub const TICK_DELAY_BOUNDS_US: [u64; 7] = [250, 500, 1_000, 2_000, 5_000, 10_000, 20_000];

impl EngineStats {
    fn tick_started(&self, delay: Duration) {
        let us = delay.as_micros().min(u128::from(u64::MAX)) as u64;
        let slot = TICK_DELAY_BOUNDS_US
            .iter()
            .position(|&b| us <= b)
            .unwrap_or(TICK_DELAY_BOUNDS_US.len());
        self.tick_delay[slot].fetch_add(1, Ordering::Relaxed);
        self.tick_delay_us_total.fetch_add(us, Ordering::Relaxed);
    }
}

struct Worker {
    commands: Sender<Command>,
    load: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

/// The pool of media worker threads.
pub struct MediaEngine {
    workers: Vec<Worker>,
    next_id: AtomicU64,
    stop: Arc<AtomicBool>,
    pub stats: Arc<EngineStats>,
    vad: bool,
}

/// Where the VAD's runtime and model are.
#[derive(Debug, Clone)]
pub struct VadModelPaths {
    pub onnxruntime: std::path::PathBuf,
    pub model: std::path::PathBuf,
}

impl MediaEngine {
    /// Starts `threads` workers (0 means one per available core), each with its own VAD
    /// model when `vad` names the ONNX Runtime library and the Silero model.
    pub fn start(threads: usize, vad: Option<&VadModelPaths>) -> Result<MediaEngine, EngineError> {
        MediaEngine::start_with(threads, vad, Arc::new(|| true))
    }

    /// [`MediaEngine::start`], each worker thread first running `on_start` (the server
    /// raises the workers' scheduling priority there; this crate has no unsafe code). When
    /// it returns false, [`EngineStats::priority_refused`] counts it.
    pub fn start_with(
        threads: usize,
        vad: Option<&VadModelPaths>,
        on_start: Arc<dyn Fn() -> bool + Send + Sync>,
    ) -> Result<MediaEngine, EngineError> {
        let threads = if threads == 0 {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        } else {
            threads
        };
        let mut models = Vec::with_capacity(threads);
        for _ in 0..threads {
            models.push(match vad {
                Some(paths) => Some(
                    SileroModel::load(&paths.onnxruntime, &paths.model)
                        .map_err(EngineError::Vad)?,
                ),
                None => None,
            });
        }
        let stop = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(EngineStats::default());
        let mut workers = Vec::with_capacity(threads);
        for (i, model) in models.into_iter().enumerate() {
            let (tx, rx) = crossbeam_channel::bounded(COMMAND_QUEUE);
            let load = Arc::new(AtomicUsize::new(0));
            let (stop, stats, worker_load) = (stop.clone(), stats.clone(), load.clone());
            let on_start = on_start.clone();
            let batcher = model.map(VadBatcher::new);
            let thread = std::thread::Builder::new()
                .name(format!("parley-media-{i}"))
                .spawn(move || {
                    if !on_start() {
                        stats.priority_refused.fetch_add(1, Ordering::Relaxed);
                    }
                    run_worker(rx, worker_load, stop, stats, batcher)
                })
                .map_err(EngineError::Socket)?;
            workers.push(Worker {
                commands: tx,
                load,
                thread: Some(thread),
            });
        }
        Ok(MediaEngine {
            workers,
            next_id: AtomicU64::new(1),
            stop,
            stats,
            vad: vad.is_some(),
        })
    }

    /// True when the workers run the VAD.
    pub fn vad_enabled(&self) -> bool {
        self.vad
    }

    pub fn worker_count(&self) -> usize {
        self.workers.len()
    }

    /// Calls per worker.
    pub fn loads(&self) -> Vec<usize> {
        self.workers
            .iter()
            .map(|w| w.load.load(Ordering::Relaxed))
            .collect()
    }

    /// Hands a call to the least-loaded worker.
    pub fn add_call(&self, setup: CallSetup) -> Result<CallHandle, EngineError> {
        setup
            .socket
            .set_nonblocking(true)
            .map_err(EngineError::Socket)?;
        // The worker polls every socket each tick; a blocking one would stall all its calls.
        if let Some(rtcp) = &setup.rtcp_socket {
            rtcp.set_nonblocking(true).map_err(EngineError::Socket)?;
        }
        let index = self
            .workers
            .iter()
            .enumerate()
            .min_by_key(|(_, w)| w.load.load(Ordering::Relaxed))
            .map(|(i, _)| i)
            .ok_or(EngineError::Stopped)?;
        let CallSetup {
            socket,
            rtcp_socket,
            session,
            events,
            keepalive,
        } = setup;
        self.add_slot(
            index,
            Transport::Rtp {
                socket,
                rtcp_socket,
            },
            session,
            events,
            keepalive,
        )
    }

    /// Opens the WebRTC port: every browser call's datagrams, on the worker that will carry
    /// browser calls (the first).
    pub fn attach_webrtc(&self, socket: UdpSocket) -> Result<(), EngineError> {
        let port = WebRtcPort::new(socket).map_err(EngineError::Socket)?;
        let worker = self.workers.first().ok_or(EngineError::Stopped)?;
        worker
            .commands
            .send(Command::WebRtcPort(Box::new(port)))
            .map_err(|_| EngineError::Stopped)
    }

    /// Hands a browser call to the worker that owns the WebRTC port.
    pub fn add_webrtc_call(&self, setup: WebRtcSetup) -> Result<CallHandle, EngineError> {
        let WebRtcSetup {
            peer,
            session,
            events,
            keepalive,
        } = setup;
        self.add_slot(
            WEBRTC_WORKER,
            Transport::WebRtc(Box::new(peer)),
            session,
            events,
            keepalive,
        )
    }

    fn add_slot(
        &self,
        index: usize,
        transport: Transport,
        session: MediaSession,
        events: Box<dyn EventSink>,
        keepalive: Box<dyn Send>,
    ) -> Result<CallHandle, EngineError> {
        let worker = self.workers.get(index).ok_or(EngineError::Stopped)?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        worker.load.fetch_add(1, Ordering::Relaxed);
        let slot = Slot {
            id,
            transport,
            session,
            events,
            _keepalive: keepalive,
        };
        if let Err(e) = worker.commands.try_send(Command::Add(id, Box::new(slot))) {
            worker.load.fetch_sub(1, Ordering::Relaxed);
            return Err(match e {
                TrySendError::Full(_) => EngineError::Busy,
                TrySendError::Disconnected(_) => EngineError::Stopped,
            });
        }
        Ok(CallHandle {
            id,
            worker: index,
            commands: worker.commands.clone(),
            stats: self.stats.clone(),
            removed: false,
        })
    }
}

impl Drop for MediaEngine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for w in &mut self.workers {
            if let Some(t) = w.thread.take() {
                let _ = t.join();
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("media socket or thread: {0}")]
    Socket(std::io::Error),
    #[error("the media worker's queue is full")]
    Busy,
    #[error("the media engine is stopped")]
    Stopped,
    #[error("cannot load the VAD: {0}")]
    Vad(VadError),
}

/// The async side's handle on one call's media. Dropping it removes the call.
pub struct CallHandle {
    id: u64,
    worker: usize,
    commands: Sender<Command>,
    stats: Arc<EngineStats>,
    removed: bool,
}

impl CallHandle {
    pub fn worker(&self) -> usize {
        self.worker
    }

    /// New negotiated parameters (re-INVITE, late answer); applied on the next tick.
    pub fn update(&self, params: SessionParams) {
        if self
            .commands
            .try_send(Command::Update(self.id, params))
            .is_err()
        {
            self.stats.command_drops.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// A waker for the call's playout producer: audio queued while the call's stream is held
    /// wakes the worker, which sends its first packet at once.
    pub fn playout_waker(&self) -> crate::playout::PlayoutWaker {
        let (id, commands, stats) = (self.id, self.commands.clone(), self.stats.clone());
        Box::new(move || {
            // A lost wake only costs the wait for the next tick.
            if commands.try_send(Command::Wake(id)).is_err() {
                stats.command_drops.fetch_add(1, Ordering::Relaxed);
            }
        })
    }

    /// Sends a DTMF digit (RFC 4733 when negotiated, in-band tones otherwise).
    pub fn send_dtmf(&self, digit: char, duration_ms: u32) {
        if self
            .commands
            .try_send(Command::SendDtmf(self.id, digit, duration_ms))
            .is_err()
        {
            self.stats.command_drops.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Ends the call's media; the worker reports final stats through the event sink.
    pub fn remove(mut self) {
        self.send_remove();
    }

    fn send_remove(&mut self) {
        if !self.removed {
            self.removed = true;
            // Removal must not be lost: fall back to a blocking send if the queue is full.
            if let Err(TrySendError::Full(cmd)) = self.commands.try_send(Command::Remove(self.id)) {
                let _ = self.commands.send(cmd);
            }
        }
    }
}

impl Drop for CallHandle {
    fn drop(&mut self) {
        self.send_remove();
    }
}

/// The worker that owns the WebRTC port and carries every browser call.
const WEBRTC_WORKER: usize = 0;

/// Datagrams the WebRTC port reads per tick: a browser call's 50 packets a second and its
/// RTCP, with room for bursts; a flood beyond it waits in the socket (or is dropped there)
/// instead of stalling the tick.
const WEBRTC_READS_PER_CALL: usize = 16;
const WEBRTC_READS_MIN: usize = 256;

/// How a call's packets come and go.
enum Transport {
    /// Its own RTP (and RTCP) port.
    Rtp {
        socket: UdpSocket,
        rtcp_socket: Option<UdpSocket>,
    },
    /// A browser peer on the worker's WebRTC port.
    WebRtc(Box<WebRtcPeer>),
}

struct Slot {
    id: u64,
    transport: Transport,
    session: MediaSession,
    events: Box<dyn EventSink>,
    /// Dropped by the worker when the call is removed (e.g. the RTP port reservation).
    _keepalive: Box<dyn Send>,
}

/// A worker's calls and scratch buffers.
struct WorkerState {
    calls: Vec<Slot>,
    /// Where each call is in `calls` (the WebRTC port routes datagrams by call id).
    index: HashMap<u64, usize>,
    webrtc: Option<Box<WebRtcPort>>,
    rx_buf: Vec<u8>,
    tx_buf: Vec<u8>,
    load: Arc<AtomicUsize>,
    stats: Arc<EngineStats>,
}

impl WorkerState {
    fn slot(&mut self, id: u64) -> Option<&mut Slot> {
        let i = *self.index.get(&id)?;
        self.calls.get_mut(i)
    }

    fn apply(&mut self, cmd: Command, now: Instant) {
        match cmd {
            Command::Add(id, slot) => {
                if let (Transport::WebRtc(peer), Some(port)) = (&slot.transport, &mut self.webrtc) {
                    port.register(id, peer);
                }
                self.index.insert(id, self.calls.len());
                self.calls.push(*slot);
            }
            Command::WebRtcPort(port) => self.webrtc = Some(port),
            Command::Update(id, params) => {
                if let Some(slot) = self.slot(id) {
                    slot.session.update(now, params);
                }
            }
            Command::SendDtmf(id, digit, ms) => {
                if let Some(slot) = self.slot(id) {
                    slot.session.send_dtmf(digit, ms);
                }
            }
            Command::Wake(id) => {
                let Some(&i) = self.index.get(&id) else {
                    return;
                };
                let Slot {
                    transport,
                    session,
                    events,
                    ..
                } = &mut self.calls[i];
                let mut emit = |e: MediaEvent| events.push(e);
                let socket = match transport {
                    Transport::Rtp { socket, .. } => socket,
                    Transport::WebRtc(peer) => {
                        if let Some(port) = self.webrtc.as_mut() {
                            if port.talkspurt(now, peer, session, &mut self.tx_buf, &mut emit) {
                                self.stats.packets_out.fetch_add(1, Ordering::Relaxed);
                                self.stats.early_talkspurts.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        return;
                    }
                };
                if let Some(tx) = session.poll_talkspurt(now, &mut self.tx_buf, &mut emit) {
                    if socket.send_to(&self.tx_buf[..tx.len], tx.to).is_ok() {
                        self.stats.packets_out.fetch_add(1, Ordering::Relaxed);
                        self.stats.early_talkspurts.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Command::Remove(id) => {
                let Some(i) = self.index.remove(&id) else {
                    return;
                };
                let mut slot = self.calls.swap_remove(i);
                if let Some(moved) = self.calls.get(i) {
                    self.index.insert(moved.id, i);
                }
                if let (Transport::WebRtc(peer), Some(port)) =
                    (&mut slot.transport, &mut self.webrtc)
                {
                    port.unregister(now, peer);
                }
                let final_stats = slot.session.stats();
                slot.events.push(MediaEvent::Closed(Box::new(final_stats)));
                self.load.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    /// What arrived on the WebRTC port, to the browser calls it is for.
    fn read_webrtc(&mut self, now: Instant) {
        let Some(port) = self.webrtc.as_mut() else {
            return;
        };
        let budget = WEBRTC_READS_MIN + WEBRTC_READS_PER_CALL * self.calls.len();
        let (calls, index) = (&mut self.calls, &self.index);
        let before = port.stats;
        port.read(&mut self.rx_buf, budget, |port, id, from, datagram| {
            let Some(slot) = index.get(&id).and_then(|&i| calls.get_mut(i)) else {
                return;
            };
            let Slot {
                transport: Transport::WebRtc(peer),
                session,
                events,
                ..
            } = slot
            else {
                return;
            };
            let mut emit = |e: MediaEvent| events.push(e);
            port.feed(now, id, peer, session, from, datagram, &mut emit);
        });
        let after = port.stats;
        self.stats
            .webrtc_datagrams
            .fetch_add(after.datagrams - before.datagrams, Ordering::Relaxed);
        self.stats
            .webrtc_unmatched
            .fetch_add(after.unmatched - before.unmatched, Ordering::Relaxed);
        // Only what reached a call counts as received media.
        let matched = (after.datagrams - before.datagrams) - (after.unmatched - before.unmatched);
        self.stats.packets_in.fetch_add(matched, Ordering::Relaxed);
    }

    /// One tick: what arrived on every call's sockets, then every session's tick and RTCP.
    /// `wall` is the tick's wall-clock time since the Unix epoch (RTCP sender reports).
    fn tick(&mut self, now: Instant, wall: Duration) {
        let ntp_now = crate::rtcp::ntp_from_unix(wall);
        self.read_webrtc(now);
        let (rx_buf, tx_buf, stats) = (&mut self.rx_buf, &mut self.tx_buf, &self.stats);
        for slot in self.calls.iter_mut() {
            let Slot {
                transport,
                session,
                events,
                ..
            } = slot;
            let mut emit = |e: MediaEvent| events.push(e);
            let (socket, rtcp_socket) = match transport {
                Transport::Rtp {
                    socket,
                    rtcp_socket,
                } => (socket, rtcp_socket),
                Transport::WebRtc(peer) => {
                    if let Some(port) = self.webrtc.as_mut() {
                        if port.tick(now, peer, session, tx_buf, &mut emit) {
                            stats.packets_out.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    continue;
                }
            };
            // Bounded per tick so a flood on one port cannot starve the other calls.
            for _ in 0..64 {
                match socket.recv_from(rx_buf) {
                    Ok((n, from)) => {
                        stats.packets_in.fetch_add(1, Ordering::Relaxed);
                        session.handle_packet(now, from, &rx_buf[..n], &mut emit);
                    }
                    Err(_) => break,
                }
            }
            if let Some(rtcp) = rtcp_socket.as_ref() {
                for _ in 0..8 {
                    match rtcp.recv_from(rx_buf) {
                        Ok((n, from)) => session.handle_rtcp(now, ntp_now, from, &rx_buf[..n]),
                        Err(_) => break,
                    }
                }
            }
            if let Some(tx) = session.tick(now, tx_buf, &mut emit) {
                if socket.send_to(&tx_buf[..tx.len], tx.to).is_ok() {
                    stats.packets_out.fetch_add(1, Ordering::Relaxed);
                }
            }
            if let Some(tx) = session.poll_rtcp(now, ntp_now, tx_buf) {
                // Without an RTCP socket, RTCP goes out multiplexed on the RTP port.
                let sock = rtcp_socket.as_ref().unwrap_or(socket);
                let _ = sock.send_to(&tx_buf[..tx.len], tx.to);
            }
        }
    }

    /// One batched VAD inference over every call with a 32 ms window ready.
    fn run_vad(&mut self, batcher: &mut VadBatcher) {
        let result = batcher.run(
            &mut self.calls,
            |slot| slot.session.vad_mut(),
            |_, slot, outcome| {
                let Slot {
                    session, events, ..
                } = slot;
                session.on_vad_window(outcome, &mut |e| events.push(e));
            },
        );
        match result {
            Ok(n) => {
                self.stats
                    .vad_windows
                    .fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(_) => {
                self.stats.vad_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn run_worker(
    commands: Receiver<Command>,
    load: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    stats: Arc<EngineStats>,
    mut vad: Option<VadBatcher>,
) {
    let mut w = WorkerState {
        calls: Vec::with_capacity(1024),
        index: HashMap::with_capacity(1024),
        webrtc: None,
        rx_buf: vec![0u8; 2048],
        tx_buf: vec![0u8; 1500],
        load,
        stats: stats.clone(),
    };
    let mut next_tick = Instant::now() + TICK;
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        // This tick was due one tick before the next.
        stats.tick_started(started.saturating_duration_since(next_tick - TICK));
        while let Ok(cmd) = commands.try_recv() {
            w.apply(cmd, started);
        }
        // Wall-clock time, read once per tick.
        let wall = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        w.tick(Instant::now(), wall);
        if let Some(batcher) = vad.as_mut() {
            w.run_vad(batcher);
        }
        stats.ticks.fetch_add(1, Ordering::Relaxed);
        stats
            .last_tick_unix_ms
            .fetch_max(wall.as_millis() as u64, Ordering::Relaxed);
        let done = Instant::now();
        stats
            .busy_ns
            .fetch_add((done - started).as_nanos() as u64, Ordering::Relaxed);
        if done > next_tick + TICK {
            // Overloaded: count it and re-anchor instead of bursting to catch up.
            stats.late_ticks.fetch_add(1, Ordering::Relaxed);
            next_tick = done + TICK;
            continue;
        }
        // Until the next tick, commands are applied as they come: a wake starts a held
        // call's talkspurt now instead of at the tick.
        loop {
            let now = Instant::now();
            if now >= next_tick {
                break;
            }
            match commands.recv_timeout(next_tick - now) {
                Ok(cmd) => {
                    let woke = Instant::now();
                    w.apply(cmd, woke);
                    stats
                        .busy_ns
                        .fetch_add(woke.elapsed().as_nanos() as u64, Ordering::Relaxed);
                }
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => {
                    // The engine is gone (and has set `stop`).
                    break;
                }
            }
        }
        next_tick += TICK;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_delays_fall_into_their_buckets() {
        let stats = EngineStats::default();
        for us in [0, 250, 251, 3_000, 20_000, 90_000] {
            stats.tick_started(Duration::from_micros(us));
        }
        let counts: Vec<u64> = stats
            .tick_delay
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        // ≤250 µs: 0 and 250; ≤500: 251; ≤5 ms: 3 ms; ≤20 ms: 20 ms; beyond: 90 ms.
        assert_eq!(counts, [2, 1, 0, 0, 1, 0, 1, 1]);
        assert_eq!(
            stats.tick_delay_us_total.load(Ordering::Relaxed),
            250 + 251 + 3_000 + 20_000 + 90_000
        );
    }
}
