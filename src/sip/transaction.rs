//! The transaction layer (RFC 3261 §17, with the Accepted state of RFC 6026) as sans-I/O
//! state machines: no sockets, no clock. Each transaction is fed `now` and messages, and
//! answers with what to transmit, what to tell the transaction user, and when to wake it.
//!
//! Timers: A/B/D (INVITE client), E/F/K (non-INVITE client), G/H/I/L (INVITE server),
//! J (non-INVITE server), M (INVITE client, RFC 6026). Retransmission timers (A, E, G) run
//! only over unreliable transports.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// T1, T2 and T4 (RFC 3261 §17.1.1.1 and table 4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    pub t1: Duration,
    pub t2: Duration,
    pub t4: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        TimerConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl TimerConfig {
    /// 64*T1: the transaction timeout shared by timers B, F, H, J, L and M.
    pub fn timeout(&self) -> Duration {
        self.t1 * 64
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    A,
    B,
    D,
    E,
    F,
    G,
    H,
    I,
    J,
    K,
    L,
    M,
}

/// What a transaction asks of its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send these bytes to the transaction's peer.
    Transmit(Vec<u8>),
    /// Pass a received response to the transaction user (client transactions).
    Response { code: u16, bytes_index: usize },
    /// No final response (client) or no ACK (INVITE server) before the timeout timer: the
    /// transaction user must treat it as a 408 / a failed call.
    Timeout(Timer),
    /// The transaction is over and can be forgotten.
    Terminated,
}

/// A small set of armed timers; a transaction has at most three at once.
#[derive(Debug, Default, Clone)]
struct Timers(Vec<(Timer, Instant)>);

impl Timers {
    fn arm(&mut self, timer: Timer, at: Instant) {
        self.cancel(timer);
        self.0.push((timer, at));
    }
    fn cancel(&mut self, timer: Timer) {
        self.0.retain(|(t, _)| *t != timer);
    }
    fn clear(&mut self) {
        self.0.clear();
    }
    fn next(&self) -> Option<Instant> {
        self.0.iter().map(|(_, at)| *at).min()
    }
    /// Removes and returns the earliest timer that is due.
    fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        let (i, _) = self
            .0
            .iter()
            .enumerate()
            .filter(|(_, (_, at))| *at <= now)
            .min_by_key(|(_, (_, at))| *at)?;
        Some(self.0.swap_remove(i).0)
    }
}

/// The parts every transaction kind shares: its timers, its output queue and its retransmit
/// interval.
#[derive(Debug)]
struct Base {
    config: TimerConfig,
    reliable: bool,
    timers: Timers,
    out: VecDeque<Output>,
    interval: Duration,
    terminated: bool,
}

impl Base {
    fn new(config: TimerConfig, reliable: bool) -> Base {
        Base {
            config,
            reliable,
            timers: Timers::default(),
            out: VecDeque::new(),
            interval: config.t1,
            terminated: false,
        }
    }

    fn transmit(&mut self, bytes: &[u8]) {
        self.out.push_back(Output::Transmit(bytes.to_vec()));
    }

    /// Arms `timer` after `delay`, or fires at once when the delay is zero (RFC 3261 sets
    /// timers D, I, J and K to zero over reliable transports).
    fn arm_or_fire(&mut self, timer: Timer, now: Instant, delay: Duration) {
        self.timers.arm(timer, now + delay);
    }

    fn terminate(&mut self) {
        if !self.terminated {
            self.terminated = true;
            self.timers.clear();
            self.out.push_back(Output::Terminated);
        }
    }

    /// Doubles the retransmit interval, capped at T2 when `cap` is set.
    fn backoff(&mut self, cap: bool) -> Duration {
        self.interval = if cap {
            (self.interval * 2).min(self.config.t2)
        } else {
            self.interval * 2
        };
        self.interval
    }

    fn unreliable_or_zero(&self, d: Duration) -> Duration {
        if self.reliable {
            Duration::ZERO
        } else {
            d
        }
    }
}

/// Common surface for the transaction owner.
pub trait Transaction {
    fn next_timeout(&self) -> Option<Instant>;
    fn handle_timeout(&mut self, now: Instant);
    fn poll_output(&mut self) -> Option<Output>;
    fn is_terminated(&self) -> bool;
}

macro_rules! impl_transaction {
    ($ty:ty) => {
        impl Transaction for $ty {
            fn next_timeout(&self) -> Option<Instant> {
                self.base.timers.next()
            }
            fn handle_timeout(&mut self, now: Instant) {
                while let Some(timer) = self.base.timers.pop_due(now) {
                    self.fire(timer, now);
                }
            }
            fn poll_output(&mut self) -> Option<Output> {
                self.base.out.pop_front()
            }
            fn is_terminated(&self) -> bool {
                self.base.terminated
            }
        }
    };
}

// ---------------------------------------------------------------------------------------
// INVITE server transaction (RFC 3261 §17.2.1, RFC 6026 §7.1)

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InviteServerState {
    Proceeding,
    /// A 2xx was sent; the TU retransmits it, we absorb INVITE retransmissions (RFC 6026).
    Accepted,
    Completed,
    Confirmed,
    Terminated,
}

#[derive(Debug)]
pub struct InviteServer {
    base: Base,
    state: InviteServerState,
    last_response: Option<Vec<u8>>,
}

impl InviteServer {
    pub fn new(config: TimerConfig, reliable: bool) -> InviteServer {
        InviteServer {
            base: Base::new(config, reliable),
            state: InviteServerState::Proceeding,
            last_response: None,
        }
    }

    pub fn state(&self) -> InviteServerState {
        self.state
    }

    /// A retransmission of the INVITE arrived: replay the last response (a provisional in
    /// Proceeding, the final in Completed); absorb it otherwise.
    pub fn on_request_retransmission(&mut self) {
        if matches!(
            self.state,
            InviteServerState::Proceeding | InviteServerState::Completed
        ) {
            if let Some(last) = self.last_response.clone() {
                self.base.transmit(&last);
            }
        }
    }

    /// The TU sends a response.
    pub fn send_response(&mut self, now: Instant, code: u16, bytes: Vec<u8>) {
        if self.state != InviteServerState::Proceeding {
            return;
        }
        self.base.transmit(&bytes);
        self.last_response = Some(bytes);
        match code {
            100..=199 => {}
            200..=299 => {
                self.state = InviteServerState::Accepted;
                let l = self.base.config.timeout();
                self.base.timers.arm(Timer::L, now + l);
            }
            _ => {
                self.state = InviteServerState::Completed;
                if !self.base.reliable {
                    self.base.interval = self.base.config.t1;
                    self.base.timers.arm(Timer::G, now + self.base.interval);
                }
                let h = self.base.config.timeout();
                self.base.timers.arm(Timer::H, now + h);
            }
        }
    }

    /// An ACK matching this transaction (one for a non-2xx final response).
    pub fn on_ack(&mut self, now: Instant) {
        if self.state == InviteServerState::Completed {
            self.state = InviteServerState::Confirmed;
            self.base.timers.cancel(Timer::G);
            self.base.timers.cancel(Timer::H);
            let i = self.base.unreliable_or_zero(self.base.config.t4);
            self.base.arm_or_fire(Timer::I, now, i);
        }
    }

    fn fire(&mut self, timer: Timer, now: Instant) {
        match (timer, self.state) {
            (Timer::G, InviteServerState::Completed) => {
                if let Some(last) = self.last_response.clone() {
                    self.base.transmit(&last);
                }
                let next = self.base.backoff(true);
                self.base.timers.arm(Timer::G, now + next);
            }
            (Timer::H, InviteServerState::Completed) => {
                self.base.out.push_back(Output::Timeout(Timer::H));
                self.state = InviteServerState::Terminated;
                self.base.terminate();
            }
            (Timer::I, InviteServerState::Confirmed) | (Timer::L, InviteServerState::Accepted) => {
                self.state = InviteServerState::Terminated;
                self.base.terminate();
            }
            _ => {}
        }
    }
}
impl_transaction!(InviteServer);

// ---------------------------------------------------------------------------------------
// Non-INVITE server transaction (RFC 3261 §17.2.2)

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonInviteServerState {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

#[derive(Debug)]
pub struct NonInviteServer {
    base: Base,
    state: NonInviteServerState,
    last_response: Option<Vec<u8>>,
}

impl NonInviteServer {
    pub fn new(config: TimerConfig, reliable: bool) -> NonInviteServer {
        NonInviteServer {
            base: Base::new(config, reliable),
            state: NonInviteServerState::Trying,
            last_response: None,
        }
    }

    pub fn state(&self) -> NonInviteServerState {
        self.state
    }

    pub fn on_request_retransmission(&mut self) {
        if matches!(
            self.state,
            NonInviteServerState::Proceeding | NonInviteServerState::Completed
        ) {
            if let Some(last) = self.last_response.clone() {
                self.base.transmit(&last);
            }
        }
    }

    pub fn send_response(&mut self, now: Instant, code: u16, bytes: Vec<u8>) {
        if matches!(
            self.state,
            NonInviteServerState::Completed | NonInviteServerState::Terminated
        ) {
            return;
        }
        self.base.transmit(&bytes);
        self.last_response = Some(bytes);
        if code < 200 {
            self.state = NonInviteServerState::Proceeding;
        } else {
            self.state = NonInviteServerState::Completed;
            let j = self.base.unreliable_or_zero(self.base.config.timeout());
            self.base.arm_or_fire(Timer::J, now, j);
        }
    }

    fn fire(&mut self, timer: Timer, _now: Instant) {
        if timer == Timer::J && self.state == NonInviteServerState::Completed {
            self.state = NonInviteServerState::Terminated;
            self.base.terminate();
        }
    }
}
impl_transaction!(NonInviteServer);

// ---------------------------------------------------------------------------------------
// INVITE client transaction (RFC 3261 §17.1.1, RFC 6026 §7.2)

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InviteClientState {
    Calling,
    Proceeding,
    /// A 2xx arrived; further 2xx (retransmissions, forks) still reach the TU so that it can
    /// re-send its ACK (RFC 6026).
    Accepted,
    Completed,
    Terminated,
}

/// What the INVITE client transaction decided about a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseDisposition {
    /// Hand it to the TU.
    PassUp,
    /// A retransmission the transaction handled itself.
    Absorbed,
}

#[derive(Debug)]
pub struct InviteClient {
    base: Base,
    state: InviteClientState,
    request: Vec<u8>,
    ack: Option<Vec<u8>>,
}

impl InviteClient {
    /// Starts the transaction and queues the first transmission of the INVITE.
    pub fn new(now: Instant, config: TimerConfig, reliable: bool, request: Vec<u8>) -> Self {
        let mut base = Base::new(config, reliable);
        base.transmit(&request);
        if !reliable {
            base.timers.arm(Timer::A, now + config.t1);
        }
        base.timers.arm(Timer::B, now + config.timeout());
        InviteClient {
            base,
            state: InviteClientState::Calling,
            request,
            ack: None,
        }
    }

    pub fn state(&self) -> InviteClientState {
        self.state
    }

    /// A response arrived. For a non-2xx final the caller passes the ACK it built (RFC 3261
    /// §17.1.1.3: same branch, Request-URI and CSeq number as the INVITE, To from the
    /// response); it is sent now and replayed for each retransmitted final.
    pub fn on_response(
        &mut self,
        now: Instant,
        code: u16,
        ack_for_failure: impl FnOnce() -> Vec<u8>,
    ) -> ResponseDisposition {
        use InviteClientState::*;
        match (self.state, code) {
            (Calling | Proceeding, 100..=199) => {
                self.state = Proceeding;
                self.base.timers.cancel(Timer::A);
                ResponseDisposition::PassUp
            }
            (Calling | Proceeding, 200..=299) => {
                self.state = Accepted;
                self.base.timers.clear();
                self.base
                    .timers
                    .arm(Timer::M, now + self.base.config.timeout());
                ResponseDisposition::PassUp
            }
            (Accepted, 200..=299) => ResponseDisposition::PassUp,
            (Calling | Proceeding, 300..=699) => {
                self.state = Completed;
                self.base.timers.clear();
                let ack = ack_for_failure();
                self.base.transmit(&ack);
                self.ack = Some(ack);
                let d = self.base.unreliable_or_zero(Duration::from_secs(32));
                self.base.arm_or_fire(Timer::D, now, d);
                ResponseDisposition::PassUp
            }
            (Completed, 300..=699) => {
                if let Some(ack) = self.ack.clone() {
                    self.base.transmit(&ack);
                }
                ResponseDisposition::Absorbed
            }
            _ => ResponseDisposition::Absorbed,
        }
    }

    /// The TU gave up before any response (e.g. CANCEL was not possible): stop retransmitting.
    pub fn abandon(&mut self) {
        self.state = InviteClientState::Terminated;
        self.base.terminate();
    }

    fn fire(&mut self, timer: Timer, now: Instant) {
        use InviteClientState::*;
        match (timer, self.state) {
            (Timer::A, Calling) => {
                let request = self.request.clone();
                self.base.transmit(&request);
                let next = self.base.backoff(false);
                self.base.timers.arm(Timer::A, now + next);
            }
            (Timer::B, Calling | Proceeding) => {
                self.base.out.push_back(Output::Timeout(Timer::B));
                self.state = Terminated;
                self.base.terminate();
            }
            (Timer::D, Completed) | (Timer::M, Accepted) => {
                self.state = Terminated;
                self.base.terminate();
            }
            _ => {}
        }
    }
}
impl_transaction!(InviteClient);

// ---------------------------------------------------------------------------------------
// Non-INVITE client transaction (RFC 3261 §17.1.2)

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonInviteClientState {
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

#[derive(Debug)]
pub struct NonInviteClient {
    base: Base,
    state: NonInviteClientState,
    request: Vec<u8>,
}

impl NonInviteClient {
    pub fn new(now: Instant, config: TimerConfig, reliable: bool, request: Vec<u8>) -> Self {
        let mut base = Base::new(config, reliable);
        base.transmit(&request);
        if !reliable {
            base.timers.arm(Timer::E, now + config.t1);
        }
        base.timers.arm(Timer::F, now + config.timeout());
        NonInviteClient {
            base,
            state: NonInviteClientState::Trying,
            request,
        }
    }

    pub fn state(&self) -> NonInviteClientState {
        self.state
    }

    pub fn on_response(&mut self, now: Instant, code: u16) -> ResponseDisposition {
        use NonInviteClientState::*;
        match (self.state, code) {
            (Trying | Proceeding, 100..=199) => {
                self.state = Proceeding;
                ResponseDisposition::PassUp
            }
            (Trying | Proceeding, _) => {
                self.state = Completed;
                self.base.timers.clear();
                let k = self.base.unreliable_or_zero(self.base.config.t4);
                self.base.arm_or_fire(Timer::K, now, k);
                ResponseDisposition::PassUp
            }
            _ => ResponseDisposition::Absorbed,
        }
    }

    fn fire(&mut self, timer: Timer, now: Instant) {
        use NonInviteClientState::*;
        match (timer, self.state) {
            (Timer::E, Trying | Proceeding) => {
                let request = self.request.clone();
                self.base.transmit(&request);
                // In Proceeding the interval is T2 (RFC 3261 §17.1.2.2).
                let next = if self.state == Proceeding {
                    self.base.config.t2
                } else {
                    self.base.backoff(true)
                };
                self.base.timers.arm(Timer::E, now + next);
            }
            (Timer::F, Trying | Proceeding) => {
                self.base.out.push_back(Output::Timeout(Timer::F));
                self.state = Terminated;
                self.base.terminate();
            }
            (Timer::K, Completed) => {
                self.state = Terminated;
                self.base.terminate();
            }
            _ => {}
        }
    }
}
impl_transaction!(NonInviteClient);

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Drives a transaction's timers up to `until`, collecting the instants of transmissions.
    fn run_until<T: Transaction>(
        tx: &mut T,
        start: Instant,
        until: Instant,
    ) -> Vec<(Duration, Output)> {
        let mut seen = Vec::new();
        while let Some(o) = tx.poll_output() {
            seen.push((Duration::ZERO, o));
        }
        while let Some(at) = tx.next_timeout() {
            if at > until {
                break;
            }
            tx.handle_timeout(at);
            while let Some(o) = tx.poll_output() {
                seen.push((at - start, o));
            }
        }
        seen
    }

    fn transmit_times(seen: &[(Duration, Output)]) -> Vec<u64> {
        seen.iter()
            .filter(|(_, o)| matches!(o, Output::Transmit(_)))
            .map(|(t, _)| t.as_millis() as u64)
            .collect()
    }

    #[test]
    fn invite_client_retransmits_on_timer_a_and_times_out_on_b() {
        let t0 = Instant::now();
        let mut tx = InviteClient::new(t0, TimerConfig::default(), false, b"INVITE".to_vec());
        let seen = run_until(&mut tx, t0, t0 + Duration::from_secs(40));
        // A doubles without a cap: 0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s; B fires at 32 s.
        assert_eq!(
            transmit_times(&seen),
            vec![0, 500, 1500, 3500, 7500, 15500, 31500]
        );
        let last_two: Vec<_> = seen
            .iter()
            .rev()
            .take(2)
            .map(|(t, o)| (t.as_millis(), o.clone()))
            .collect();
        assert_eq!(last_two[1], (32000, Output::Timeout(Timer::B)));
        assert_eq!(last_two[0], (32000, Output::Terminated));
    }

    #[test]
    fn invite_client_over_tcp_sends_once() {
        let t0 = Instant::now();
        let mut tx = InviteClient::new(t0, TimerConfig::default(), true, b"INVITE".to_vec());
        let seen = run_until(&mut tx, t0, t0 + Duration::from_secs(40));
        assert_eq!(transmit_times(&seen), vec![0]);
        assert!(seen.iter().any(|(_, o)| *o == Output::Timeout(Timer::B)));
    }

    #[test]
    fn invite_client_acks_failures_and_absorbs_retransmissions() {
        let t0 = Instant::now();
        let mut tx = InviteClient::new(t0, TimerConfig::default(), false, b"INVITE".to_vec());
        while tx.poll_output().is_some() {}
        assert_eq!(
            tx.on_response(t0 + ms(100), 180, Vec::new),
            ResponseDisposition::PassUp
        );
        assert_eq!(tx.state(), InviteClientState::Proceeding);
        // No more Timer A in Proceeding.
        tx.handle_timeout(t0 + ms(600));
        assert_eq!(tx.poll_output(), None);
        let d = tx.on_response(t0 + ms(200), 486, || b"ACK".to_vec());
        assert_eq!(d, ResponseDisposition::PassUp);
        assert_eq!(tx.poll_output(), Some(Output::Transmit(b"ACK".to_vec())));
        // A retransmitted 486 is absorbed and re-ACKed.
        let d = tx.on_response(t0 + ms(300), 486, || panic!("ACK is reused"));
        assert_eq!(d, ResponseDisposition::Absorbed);
        assert_eq!(tx.poll_output(), Some(Output::Transmit(b"ACK".to_vec())));
        // Timer D (32 s over UDP) ends it.
        tx.handle_timeout(t0 + ms(200) + Duration::from_secs(31));
        assert!(!tx.is_terminated());
        tx.handle_timeout(t0 + ms(200) + Duration::from_secs(32));
        assert!(tx.is_terminated());
    }

    #[test]
    fn invite_client_accepted_passes_2xx_retransmissions_until_m() {
        let t0 = Instant::now();
        let mut tx = InviteClient::new(t0, TimerConfig::default(), false, b"INVITE".to_vec());
        assert_eq!(
            tx.on_response(t0, 200, Vec::new),
            ResponseDisposition::PassUp
        );
        assert_eq!(
            tx.on_response(t0 + ms(500), 200, Vec::new),
            ResponseDisposition::PassUp
        );
        tx.handle_timeout(t0 + Duration::from_secs(32));
        assert!(tx.is_terminated());
    }

    #[test]
    fn non_invite_client_caps_at_t2_and_uses_t2_in_proceeding() {
        let t0 = Instant::now();
        let mut tx = NonInviteClient::new(t0, TimerConfig::default(), false, b"BYE".to_vec());
        let seen = run_until(&mut tx, t0, t0 + ms(8000));
        // E: 0.5, 1, 2, 4, 4 … : sends at 0, 0.5, 1.5, 3.5, 7.5 s.
        assert_eq!(transmit_times(&seen), vec![0, 500, 1500, 3500, 7500]);
        assert_eq!(
            tx.on_response(t0 + ms(8000), 100,),
            ResponseDisposition::PassUp
        );
        assert_eq!(tx.state(), NonInviteClientState::Proceeding);
        let seen = run_until(&mut tx, t0, t0 + ms(16000));
        // Next E was armed at 7.5+4 = 11.5 s; after it, T2 again: 15.5 s.
        assert_eq!(transmit_times(&seen), vec![11500, 15500]);
        assert_eq!(
            tx.on_response(t0 + ms(16000), 200),
            ResponseDisposition::PassUp
        );
        assert_eq!(
            tx.on_response(t0 + ms(16001), 200),
            ResponseDisposition::Absorbed
        );
        tx.handle_timeout(t0 + ms(21000));
        assert!(tx.is_terminated(), "timer K = T4 ends it");
    }

    #[test]
    fn non_invite_client_times_out_on_f() {
        let t0 = Instant::now();
        let mut tx = NonInviteClient::new(t0, TimerConfig::default(), true, b"BYE".to_vec());
        let seen = run_until(&mut tx, t0, t0 + Duration::from_secs(33));
        assert_eq!(transmit_times(&seen), vec![0]);
        assert!(seen
            .iter()
            .any(|(t, o)| *o == Output::Timeout(Timer::F) && t.as_secs() == 32));
    }

    #[test]
    fn invite_server_replays_and_retransmits_final_until_ack() {
        let t0 = Instant::now();
        let mut tx = InviteServer::new(TimerConfig::default(), false);
        tx.send_response(t0, 100, b"100".to_vec());
        tx.on_request_retransmission();
        let seen = run_until(&mut tx, t0, t0);
        assert_eq!(seen.len(), 2, "100 sent, then replayed: {seen:?}");
        tx.send_response(t0 + ms(10), 486, b"486".to_vec());
        let seen = run_until(&mut tx, t0, t0 + ms(10) + ms(7600));
        // The final at 10 ms, then Timer G: +0.5, +1, +2, +4, +4 (capped at T2).
        assert_eq!(transmit_times(&seen), vec![0, 510, 1510, 3510, 7510]);
        tx.on_request_retransmission();
        assert_eq!(tx.poll_output(), Some(Output::Transmit(b"486".to_vec())));
        tx.on_ack(t0 + ms(8000));
        assert_eq!(tx.state(), InviteServerState::Confirmed);
        // Timer I = T4 absorbs further ACKs, then terminates with no Timer G firing.
        let seen = run_until(&mut tx, t0, t0 + ms(14000));
        assert_eq!(transmit_times(&seen), Vec::<u64>::new());
        assert!(tx.is_terminated());
    }

    #[test]
    fn invite_server_timer_h_reports_missing_ack() {
        let t0 = Instant::now();
        let mut tx = InviteServer::new(
            TimerConfig {
                t1: ms(50),
                ..Default::default()
            },
            false,
        );
        tx.send_response(t0, 503, b"503".to_vec());
        let seen = run_until(&mut tx, t0, t0 + Duration::from_secs(10));
        let (at, _) = seen
            .iter()
            .find(|(_, o)| *o == Output::Timeout(Timer::H))
            .expect("timer H fired");
        assert_eq!(at.as_millis(), 64 * 50);
        assert!(tx.is_terminated());
    }

    #[test]
    fn invite_server_accepted_absorbs_retransmissions_then_l_terminates() {
        let t0 = Instant::now();
        let mut tx = InviteServer::new(TimerConfig::default(), false);
        tx.send_response(t0, 200, b"200".to_vec());
        assert_eq!(tx.poll_output(), Some(Output::Transmit(b"200".to_vec())));
        tx.on_request_retransmission();
        assert_eq!(
            tx.poll_output(),
            None,
            "the TU, not the transaction, resends 2xx"
        );
        tx.send_response(t0, 486, b"486".to_vec());
        assert_eq!(tx.poll_output(), None, "no second final response");
        tx.handle_timeout(t0 + Duration::from_secs(32));
        assert!(tx.is_terminated());
    }

    #[test]
    fn non_invite_server_replays_final_and_waits_j() {
        let t0 = Instant::now();
        let mut tx = NonInviteServer::new(TimerConfig::default(), false);
        tx.on_request_retransmission();
        assert_eq!(tx.poll_output(), None, "nothing to replay while Trying");
        tx.send_response(t0, 200, b"200".to_vec());
        assert_eq!(tx.poll_output(), Some(Output::Transmit(b"200".to_vec())));
        tx.on_request_retransmission();
        assert_eq!(tx.poll_output(), Some(Output::Transmit(b"200".to_vec())));
        tx.handle_timeout(t0 + Duration::from_secs(31));
        assert!(!tx.is_terminated());
        tx.handle_timeout(t0 + Duration::from_secs(32));
        assert!(tx.is_terminated());
        // Over TCP, J is zero.
        let mut tx = NonInviteServer::new(TimerConfig::default(), true);
        tx.send_response(t0, 200, b"200".to_vec());
        tx.handle_timeout(t0);
        assert!(tx.is_terminated());
    }
}
