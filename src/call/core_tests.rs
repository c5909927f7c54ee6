//! The call core in simulated time: a clock that only moves when the test moves it.

use super::*;

/// A call core and its clock.
struct Sim {
    core: CallCore,
    now: Instant,
    start: Instant,
    /// Every action so far but the events, with the second (since the answer) it came at.
    log: Vec<(f64, Action)>,
    /// The events published, with their second.
    published: Vec<(f64, CallEvent)>,
}

fn config() -> CoreConfig {
    CoreConfig {
        heartbeat: Duration::from_secs(30),
        terminate: true,
        notice: None,
        max_duration: None,
    }
}

impl Sim {
    fn answered(config: CoreConfig, granted_s: i64, final_units: bool) -> Sim {
        let start = Instant::now();
        let mut sim = Sim {
            core: CallCore::answered(start, config, granted_s, final_units),
            now: start,
            start,
            log: Vec::new(),
            published: Vec::new(),
        };
        sim.collect();
        sim
    }

    fn collect(&mut self) {
        let t = self.now.duration_since(self.start).as_secs_f64();
        while let Some(a) = self.core.poll_action() {
            self.record(t, a);
        }
    }

    fn record(&mut self, t: f64, action: Action) {
        match action {
            Action::Publish(event) => self.published.push((t, event)),
            other => self.log.push((t, other)),
        }
    }

    fn input(&mut self, input: Input) {
        self.core.handle(self.now, input);
        self.collect();
    }

    /// Runs the clock to `secs` after the answer, waking the core at each of its deadlines;
    /// `on_renew` answers each lease renewal as the store would.
    fn run_to(&mut self, secs: f64, mut on_renew: impl FnMut(f64) -> Input) {
        let end = self.start + Duration::from_secs_f64(secs);
        loop {
            match self.core.next_timeout() {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    self.core.handle_timeout(self.now);
                    let at = self.now.duration_since(self.start).as_secs_f64();
                    let mut renewals = 0;
                    while let Some(a) = self.core.poll_action() {
                        if a == Action::RenewLease {
                            renewals += 1;
                        }
                        self.record(at, a);
                    }
                    for _ in 0..renewals {
                        let answer = on_renew(at);
                        self.input(answer);
                    }
                }
                _ => break,
            }
        }
        self.now = self.now.max(end);
    }

    /// The actions other than renewals, with their times.
    fn decisions(&self) -> Vec<(f64, Action)> {
        self.log
            .iter()
            .filter(|(_, a)| *a != Action::RenewLease)
            .cloned()
            .collect()
    }

    fn hangups(&self) -> Vec<(f64, HangupCause)> {
        self.log
            .iter()
            .filter_map(|(t, a)| match a {
                Action::Hangup(c) => Some((*t, *c)),
                _ => None,
            })
            .collect()
    }
}

/// A store that grants two more heartbeats at each renewal until `credit_s` is reached,
/// then final units up to it.
fn store(credit_s: i64) -> impl FnMut(f64) -> Input {
    move |at| {
        let wanted = at as i64 + 60;
        if wanted >= credit_s {
            Input::Granted {
                seconds: credit_s,
                final_units: true,
            }
        } else {
            Input::Granted {
                seconds: wanted,
                final_units: false,
            }
        }
    }
}

#[test]
fn a_call_with_credit_renews_every_heartbeat_and_never_ends_by_itself() {
    let mut sim = Sim::answered(config(), 60, false);
    sim.run_to(600.0, store(i64::MAX));
    let renewals: Vec<f64> = sim
        .log
        .iter()
        .filter(|(_, a)| *a == Action::RenewLease)
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(renewals.len(), 20);
    assert!(renewals
        .iter()
        .enumerate()
        .all(|(i, t)| *t == 30.0 * (i + 1) as f64));
    assert!(sim.hangups().is_empty(), "{:?}", sim.log);
}

#[test]
fn credit_running_out_plays_the_notice_then_hangs_up_as_the_grant_ends() {
    let notice = Duration::from_millis(2_500);
    let mut sim = Sim::answered(
        CoreConfig {
            notice: Some(notice),
            ..config()
        },
        60,
        false,
    );
    // 100 s of credit: the renewal at 30 s grants up to 90 s, the one at 60 s final units up
    // to 100 s.
    sim.run_to(200.0, store(100));
    let decisions = sim.decisions();
    assert_eq!(decisions[0], (60.0, Action::FinalUnits), "{decisions:?}");
    // The notice starts so that it (and its margin) ends as the grant does.
    let start = 100.0 - notice.as_secs_f64() - NOTICE_MARGIN.as_secs_f64();
    assert_eq!(decisions[1].1, Action::PlayNotice);
    assert!((decisions[1].0 - start).abs() < 1e-6, "{decisions:?}");
    // Then the hang-up, after the notice has played.
    let (at, cause) = sim.hangups()[0];
    assert_eq!(cause, HangupCause::Credit);
    let end = start + notice.as_secs_f64() + NOTICE_MARGIN.as_secs_f64();
    assert!((at - end).abs() < 1e-6, "hung up at {at}, expected {end}");
    assert_eq!(sim.hangups().len(), 1);
    // Nothing more once it has ended: no renewals after the hang-up.
    assert!(sim.log.iter().all(|(t, _)| *t <= end));
}

#[test]
fn without_a_notice_the_call_ends_when_the_grant_does() {
    let mut sim = Sim::answered(config(), 45, true);
    assert_eq!(sim.decisions(), [(0.0, Action::FinalUnits)]);
    sim.run_to(100.0, store(45));
    assert_eq!(sim.hangups(), [(45.0, HangupCause::Credit)]);
}

#[test]
fn allow_lets_the_call_go_on_as_debt() {
    let mut sim = Sim::answered(
        CoreConfig {
            terminate: false,
            // A notice is only for calls that end on it.
            notice: Some(Duration::from_secs(2)),
            ..config()
        },
        45,
        true,
    );
    sim.run_to(300.0, store(45));
    assert!(sim.hangups().is_empty(), "{:?}", sim.log);
    assert!(!sim.log.iter().any(|(_, a)| *a == Action::PlayNotice));
    let debt: Vec<f64> = sim
        .log
        .iter()
        .filter(|(_, a)| *a == Action::InDebt)
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(debt, [45.0], "in debt once, when the grant ran out");
    assert!(sim.core.in_debt());
    // Renewals go on, so the usage keeps being reported.
    assert!(
        sim.log
            .iter()
            .filter(|(_, a)| *a == Action::RenewLease)
            .count()
            >= 9
    );
}

#[test]
fn the_longest_call_ends_at_max_duration() {
    let mut sim = Sim::answered(
        CoreConfig {
            max_duration: Some(Duration::from_secs(90)),
            ..config()
        },
        60,
        false,
    );
    sim.run_to(500.0, store(i64::MAX));
    assert_eq!(sim.hangups(), [(90.0, HangupCause::MaxDuration)]);
}

#[test]
fn a_requested_hang_up_ends_the_call_once() {
    // A drain whose time is up, or the API: the first cause wins, later ones are ignored.
    let mut sim = Sim::answered(config(), 60, false);
    sim.run_to(10.0, store(i64::MAX));
    sim.input(Input::HangupRequested(HangupCause::Drain));
    sim.input(Input::AgentHangup);
    sim.input(Input::MediaTimeout);
    sim.run_to(100.0, store(i64::MAX));
    assert_eq!(sim.hangups(), [(10.0, HangupCause::Drain)]);
    assert_eq!(sim.core.hung_up(), Some(HangupCause::Drain));
    assert_eq!(sim.core.next_timeout(), None);
}

#[test]
fn a_closed_lease_ends_the_call() {
    let mut sim = Sim::answered(config(), 60, false);
    sim.run_to(40.0, |_| Input::LeaseClosed);
    assert_eq!(sim.hangups(), [(30.0, HangupCause::LeaseClosed)]);
}

fn transfer() -> Input {
    Input::TransferRequested {
        id: "call_1".into(),
        target: "sip:desk@example.com".into(),
    }
}

fn told(sim: &Sim) -> Vec<String> {
    sim.log
        .iter()
        .filter_map(|(_, a)| match a {
            Action::TellAgent { id, text } => {
                assert_eq!(id, "call_1");
                Some(text.clone())
            }
            _ => None,
        })
        .collect()
}

#[test]
fn a_successful_transfer_tells_the_agent_and_ends_the_call() {
    let mut sim = Sim::answered(config(), 60, false);
    sim.input(transfer());
    assert_eq!(
        sim.decisions(),
        [(
            0.0,
            Action::Refer {
                target: "sip:desk@example.com".into()
            }
        )]
    );
    // A second transfer while the first is in progress is refused to the agent.
    sim.input(Input::TransferRequested {
        id: "call_1".into(),
        target: "sip:other@example.com".into(),
    });
    sim.input(Input::ReferAnswered { code: 202 });
    sim.input(Input::TransferProgress {
        status: 180,
        terminated: false,
    });
    sim.input(Input::TransferProgress {
        status: 200,
        terminated: true,
    });
    let told = told(&sim);
    assert_eq!(told.len(), 2, "{told:?}");
    assert!(told[0].contains("already in progress"));
    assert!(told[1].contains("transferred"));
    assert_eq!(sim.hangups(), [(0.0, HangupCause::Transferred)]);
}

#[test]
fn a_refused_or_failed_transfer_tells_the_agent_and_the_call_goes_on() {
    let mut sim = Sim::answered(config(), 60, false);
    sim.input(transfer());
    sim.input(Input::ReferAnswered { code: 603 });
    sim.input(transfer());
    sim.input(Input::ReferAnswered { code: 202 });
    sim.input(Input::TransferProgress {
        status: 486,
        terminated: true,
    });
    let told = told(&sim);
    assert!(told[0].contains("refused (SIP 603)"), "{told:?}");
    assert!(told[1].contains("answered 486"), "{told:?}");
    assert!(sim.hangups().is_empty());
    // A transfer that never reports gives up after TRANSFER_WAIT.
    sim.input(transfer());
    sim.run_to(TRANSFER_WAIT.as_secs_f64() + 1.0, store(i64::MAX));
    let told = self::told(&sim);
    assert!(told[2].contains("did not complete in time"), "{told:?}");
    assert!(sim.hangups().is_empty());
}

#[test]
fn an_api_hang_up_while_ringing_cancels_and_nothing_else_runs() {
    let start = Instant::now();
    let mut core = CallCore::dialling(start, Duration::from_secs(60));
    assert_eq!(core.next_timeout(), Some(start + Duration::from_secs(60)));
    // Before the answer the call's other rules do not apply.
    core.handle(start, Input::AgentHangup);
    core.handle(start, transfer());
    assert_eq!(core.poll_action(), None);
    core.handle(
        start + Duration::from_secs(5),
        Input::HangupRequested(HangupCause::Api),
    );
    assert_eq!(core.poll_action(), Some(Action::Hangup(HangupCause::Api)));
    assert_eq!(core.poll_action(), None);
    assert_eq!(core.next_timeout(), None);
    // The callee answers anyway (the 200 crossed the CANCEL): the call ends at once, as an
    // answered call, and still reports its grant.
    let at = start + Duration::from_secs(6);
    core.answer(at, config(), 60, true);
    assert_eq!(
        core.poll_action(),
        Some(Action::Publish(CallEvent::Answered))
    );
    assert_eq!(core.poll_action(), Some(Action::FinalUnits));
    assert_eq!(core.poll_action(), Some(Action::Hangup(HangupCause::Api)));
    assert_eq!(core.poll_action(), None);
}

#[test]
fn a_call_that_rings_out_is_given_up_and_an_answered_one_runs_its_rules_from_the_answer() {
    let start = Instant::now();
    let mut core = CallCore::dialling(start, Duration::from_secs(60));
    core.handle_timeout(start + Duration::from_secs(60));
    assert_eq!(
        core.poll_action(),
        Some(Action::Hangup(HangupCause::NoAnswer))
    );

    let mut core = CallCore::dialling(start, Duration::from_secs(60));
    let answered = start + Duration::from_secs(20);
    core.answer(
        answered,
        CoreConfig {
            max_duration: Some(Duration::from_secs(90)),
            ..config()
        },
        60,
        false,
    );
    assert_eq!(
        core.poll_action(),
        Some(Action::Publish(CallEvent::Answered))
    );
    assert_eq!(core.poll_action(), None);
    // The first renewal is a heartbeat after the answer, not after the dialling.
    assert_eq!(
        core.next_timeout(),
        Some(answered + Duration::from_secs(30))
    );
    core.handle_timeout(answered + Duration::from_secs(30));
    assert_eq!(core.poll_action(), Some(Action::RenewLease));
    core.handle(
        answered + Duration::from_secs(30),
        Input::Granted {
            seconds: 120,
            final_units: false,
        },
    );
    core.handle_timeout(answered + Duration::from_secs(60));
    assert_eq!(core.poll_action(), Some(Action::RenewLease));
    core.handle_timeout(answered + Duration::from_secs(90));
    assert_eq!(
        std::iter::from_fn(|| core.poll_action()).collect::<Vec<_>>(),
        [Action::RenewLease, Action::Hangup(HangupCause::MaxDuration)]
    );
}

#[test]
fn the_answer_and_each_turn_are_published_in_order() {
    let mut sim = Sim::answered(config(), 60, false);
    assert_eq!(sim.published, [(0.0, CallEvent::Answered)]);
    sim.run_to(12.0, store(600));
    sim.input(Input::TurnCompleted);
    sim.run_to(30.5, store(600));
    sim.input(Input::TurnCompleted);
    assert_eq!(
        sim.published,
        [
            (0.0, CallEvent::Answered),
            (12.0, CallEvent::TurnCompleted { turn: 1 }),
            (30.5, CallEvent::TurnCompleted { turn: 2 }),
        ]
    );
    // Nothing is published while a call we place still rings.
    let start = Instant::now();
    let mut dialling = CallCore::dialling(start, Duration::from_secs(60));
    assert_eq!(dialling.poll_action(), None);
}
