//! Call-quality estimate with the ITU-T G.107 E-model (narrowband).
//!
//! The E-model rates a connection on a 0–100 transmission rating scale:
//!
//! ```text
//! R = Ro − Is − Id − Ie,eff + A
//! ```
//!
//! * **Ro − Is** (signal-to-noise and simultaneous impairments) is taken at
//!   its G.107 default-parameter value, 93.2: Parley cannot observe loudness
//!   ratings, room noise or sidetone, so the defaults stand.
//! * **Id** (delay impairment) uses only G.107's pure-delay term **Idd**
//!   of the one-way mouth-to-ear delay `Ta`:
//!   `Idd = 0` for `Ta ≤ 100 ms`, otherwise
//!   `Idd = 25·((1 + X⁶)^(1/6) − 3·(1 + (X/3)⁶)^(1/6) + 2)` with
//!   `X = log2(Ta / 100)`.
//!   The talker- and listener-echo terms (Idte, Idle) are left out, which is
//!   G.107's result for well-controlled echo (high TELR/WEPL): the AI end of
//!   a Parley call has no acoustic echo path and carriers cancel line echo.
//!   So delay only costs quality above 100 ms, and then steeply.
//! * **Ie,eff** (equipment impairment with packet loss) is
//!   `Ie + (95 − Ie) · Ppl / (Ppl / BurstR + Bpl)`, with `Ppl` the loss in
//!   percent, `BurstR` the burst ratio (1 for random loss, above 1 for
//!   bursty loss) and `Ie`/`Bpl` per codec from [`Codec::impairment`].
//! * **A** (advantage factor) is 0 by default (conventional wired access).
//!
//! The rating maps to a mean opinion score by G.107's formula
//! `MOS = 1 + 0.035R + R(R − 60)(100 − R)·7·10⁻⁶`, clamped to `[1, 4.5]`.
//!
//! With no loss and low delay this gives R = 93.2 and MOS ≈ 4.41, the
//! ceiling of the narrowband scale; wideband gains (G.107.1) are not
//! modelled.

/// The default `Ro − Is` of G.107 with all parameters at their defaults.
pub const DEFAULT_RO_MINUS_IS: f64 = 93.2;

/// Codec (and concealment) entries of the impairment table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// G.711 (PCMU/PCMA) with no concealment: lost frames are silence.
    G711,
    /// G.711 with packet-loss concealment (G.711 Appendix I style).
    G711Plc,
    /// G.722 at 64 kbit/s with no concealment.
    G722,
    /// G.722 at 64 kbit/s with packet-loss concealment.
    G722Plc,
    /// Opus at 24 kbit/s or more, with its built-in concealment.
    Opus,
}

/// A codec's equipment impairment `Ie` and packet-loss robustness `Bpl`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CodecImpairment {
    /// Equipment impairment factor with no loss.
    pub ie: f64,
    /// Packet-loss robustness factor (higher is more robust).
    pub bpl: f64,
}

impl Codec {
    /// The table row for this codec.
    ///
    /// * G.711: `Ie = 0`; `Bpl = 4.3` without PLC and `25.1` with PLC, the
    ///   values of ITU-T G.113 Appendix I.
    /// * G.722: G.113's narrowband table has no G.722 entry. Assumed
    ///   `Ie = 0` (scored on the narrowband scale its quality is at least
    ///   G.711's; its wideband benefit lies outside this model) and the
    ///   same `Bpl` as G.711 without/with PLC, since both send one
    ///   independent frame per packet and conceal the same way.
    /// * Opus: assumed `Ie = 0` at 24 kbit/s or more (at least toll
    ///   quality) and `Bpl = 25.1`, i.e. its built-in concealment is rated
    ///   like G.711 Appendix I PLC, with no credit for in-band FEC. For low
    ///   bit rates pass a [`CodecImpairment`] with a higher `Ie` instead.
    pub fn impairment(self) -> CodecImpairment {
        match self {
            Codec::G711 | Codec::G722 => CodecImpairment { ie: 0.0, bpl: 4.3 },
            Codec::G711Plc | Codec::G722Plc | Codec::Opus => CodecImpairment { ie: 0.0, bpl: 25.1 },
        }
    }
}

impl From<Codec> for CodecImpairment {
    fn from(c: Codec) -> Self {
        c.impairment()
    }
}

/// Everything the E-model needs about one stream.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EModelInput {
    /// Packet loss as seen by the decoder, in percent (0..=100); include
    /// packets discarded as late.
    pub loss_percent: f64,
    /// Burst ratio: 1 for random loss, above 1 when losses cluster.
    pub burst_ratio: f64,
    /// One-way mouth-to-ear delay in milliseconds (network, jitter buffer,
    /// codec and device).
    pub one_way_delay_ms: f64,
    /// The codec's `Ie` and `Bpl`.
    pub codec: CodecImpairment,
    /// Advantage factor `A` (0 for wired access).
    pub advantage: f64,
}

impl EModelInput {
    /// Random loss, no advantage factor.
    pub fn new(
        codec: impl Into<CodecImpairment>,
        loss_percent: f64,
        one_way_delay_ms: f64,
    ) -> Self {
        EModelInput {
            loss_percent,
            burst_ratio: 1.0,
            one_way_delay_ms,
            codec: codec.into(),
            advantage: 0.0,
        }
    }

    /// The transmission rating R (can fall below 0 for hopeless links).
    pub fn r_factor(&self) -> f64 {
        let id = delay_impairment(self.one_way_delay_ms);
        let ie_eff =
            effective_equipment_impairment(self.codec, self.loss_percent, self.burst_ratio);
        let a = if self.advantage.is_finite() {
            self.advantage.clamp(0.0, 20.0)
        } else {
            0.0
        };
        DEFAULT_RO_MINUS_IS - id - ie_eff + a
    }

    /// The estimated mean opinion score, 1.0..=4.5.
    pub fn mos(&self) -> f64 {
        mos_from_r(self.r_factor())
    }
}

/// `Id` as used here: G.107's pure-delay impairment `Idd` for a one-way
/// delay of `ta_ms` (0 up to 100 ms). Negative or non-finite delays count
/// as 0; an infinite delay is capped at 10 s.
pub fn delay_impairment(ta_ms: f64) -> f64 {
    let ta = if ta_ms.is_nan() {
        0.0
    } else {
        ta_ms.clamp(0.0, 10_000.0)
    };
    if ta <= 100.0 {
        return 0.0;
    }
    let x = (ta / 100.0).log2();
    let a = (1.0 + x.powi(6)).powf(1.0 / 6.0);
    let b = (1.0 + (x / 3.0).powi(6)).powf(1.0 / 6.0);
    25.0 * (a - 3.0 * b + 2.0)
}

/// `Ie,eff = Ie + (95 − Ie) · Ppl / (Ppl / BurstR + Bpl)`. `loss_percent`
/// is clamped to 0..=100; a burst ratio that is not a positive finite
/// number counts as 1 (random loss).
pub fn effective_equipment_impairment(
    codec: CodecImpairment,
    loss_percent: f64,
    burst_ratio: f64,
) -> f64 {
    let ppl = if loss_percent.is_nan() {
        0.0
    } else {
        loss_percent.clamp(0.0, 100.0)
    };
    let burst = if burst_ratio.is_finite() && burst_ratio > 0.0 {
        burst_ratio
    } else {
        1.0
    };
    let ie = if codec.ie.is_finite() {
        codec.ie.clamp(0.0, 95.0)
    } else {
        0.0
    };
    let bpl = if codec.bpl.is_finite() && codec.bpl > 0.0 {
        codec.bpl
    } else {
        1.0
    };
    ie + (95.0 - ie) * ppl / (ppl / burst + bpl)
}

/// G.107's mapping from R to MOS, clamped to `[1, 4.5]`.
pub fn mos_from_r(r: f64) -> f64 {
    if r.is_nan() || r <= 0.0 {
        return 1.0;
    }
    if r >= 100.0 {
        return 4.5;
    }
    let mos = 1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7.0e-6;
    mos.clamp(1.0, 4.5)
}

/// Convenience: MOS for random loss with no advantage factor.
pub fn mos(codec: Codec, loss_percent: f64, one_way_delay_ms: f64) -> f64 {
    EModelInput::new(codec, loss_percent, one_way_delay_ms).mos()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Codec; 5] = [
        Codec::G711,
        Codec::G711Plc,
        Codec::G722,
        Codec::G722Plc,
        Codec::Opus,
    ];

    #[test]
    fn clean_call_is_the_narrowband_ceiling() {
        for c in ALL {
            let input = EModelInput::new(c, 0.0, 40.0);
            assert!((input.r_factor() - 93.2).abs() < 1e-9, "{c:?}");
            assert!((input.mos() - 4.41).abs() < 0.005, "{c:?}: {}", input.mos());
        }
    }

    #[test]
    fn mos_formula_reference_points() {
        assert_eq!(mos_from_r(0.0), 1.0);
        assert_eq!(mos_from_r(-20.0), 1.0);
        assert_eq!(mos_from_r(100.0), 4.5);
        assert_eq!(mos_from_r(150.0), 4.5);
        assert_eq!(mos_from_r(f64::NAN), 1.0);
        // R = 60: 1 + 2.1 + 0 exactly.
        assert!((mos_from_r(60.0) - 3.1).abs() < 1e-12);
        // R = 80: 1 + 2.8 + 80*20*20*7e-6 = 4.024.
        assert!((mos_from_r(80.0) - 4.024).abs() < 1e-12);
        // Monotonic over the whole scale.
        let mut prev = 0.0;
        for i in 0..=1000 {
            let m = mos_from_r(f64::from(i) / 10.0);
            assert!(m >= prev && (1.0..=4.5).contains(&m));
            prev = m;
        }
    }

    #[test]
    fn idd_matches_g107_shape() {
        assert_eq!(delay_impairment(0.0), 0.0);
        assert_eq!(delay_impairment(100.0), 0.0);
        // X = 1: 25 * (2^(1/6) - 3 (1 + 1/729)^(1/6) + 2).
        let expect_200 =
            25.0 * (2f64.powf(1.0 / 6.0) - 3.0 * (1.0 + 1.0 / 729.0f64).powf(1.0 / 6.0) + 2.0);
        assert!((delay_impairment(200.0) - expect_200).abs() < 1e-12);
        assert!((delay_impairment(200.0) - 3.04).abs() < 0.01);
        assert!((delay_impairment(400.0) - 24.07).abs() < 0.05);
        // Continuous just above 100 ms.
        assert!(delay_impairment(100.5) < 1e-3);
        assert_eq!(delay_impairment(-5.0), 0.0);
        assert_eq!(delay_impairment(f64::NAN), 0.0);
        assert!(delay_impairment(f64::INFINITY).is_finite());
    }

    #[test]
    fn ie_eff_known_values() {
        let g711 = Codec::G711.impairment();
        assert_eq!(effective_equipment_impairment(g711, 0.0, 1.0), 0.0);
        // 1 % random loss: 95 * 1 / (1 + 4.3).
        assert!((effective_equipment_impairment(g711, 1.0, 1.0) - 95.0 / 5.3).abs() < 1e-12);
        let plc = Codec::G711Plc.impairment();
        assert!((effective_equipment_impairment(plc, 1.0, 1.0) - 95.0 / 26.1).abs() < 1e-12);
        // Total loss stays below 95 and is finite.
        let total = effective_equipment_impairment(plc, 100.0, 1.0);
        assert!(total < 95.0 && total > 70.0);
        // Burstier loss hurts more.
        assert!(
            effective_equipment_impairment(plc, 5.0, 2.0)
                > effective_equipment_impairment(plc, 5.0, 1.0)
        );
        let custom = CodecImpairment {
            ie: 11.0,
            bpl: 19.0,
        };
        assert_eq!(effective_equipment_impairment(custom, 0.0, 1.0), 11.0);
    }

    #[test]
    fn mos_falls_with_loss() {
        for c in ALL {
            let mut prev = mos(c, 0.0, 50.0);
            for step in 1..=60 {
                let m = mos(c, f64::from(step) * 0.5, 50.0);
                assert!(
                    m < prev,
                    "{c:?} at {}%: {m} !< {prev}",
                    f64::from(step) * 0.5
                );
                prev = m;
            }
        }
    }

    #[test]
    fn mos_falls_with_delay() {
        for c in [Codec::G711, Codec::Opus] {
            let at = |d: f64| mos(c, 1.0, d);
            // No delay cost up to 100 ms, then strictly falling.
            assert_eq!(at(0.0), at(100.0));
            let mut prev = at(100.0);
            for d in (120..=800).step_by(20) {
                let m = at(f64::from(d));
                assert!(m < prev, "{c:?} at {d} ms");
                prev = m;
            }
            assert!(at(400.0) < at(150.0) - 0.3);
        }
    }

    #[test]
    fn plc_beats_no_plc() {
        for loss in [0.5, 1.0, 2.0, 5.0, 10.0, 20.0] {
            assert!(
                mos(Codec::G711Plc, loss, 60.0) > mos(Codec::G711, loss, 60.0),
                "{loss}"
            );
            assert!(
                mos(Codec::G722Plc, loss, 60.0) > mos(Codec::G722, loss, 60.0),
                "{loss}"
            );
        }
        // At 2 % loss concealment keeps G.711 fair while plain G.711 is poor.
        assert!(mos(Codec::G711Plc, 2.0, 60.0) > 4.0);
        assert!(mos(Codec::G711, 2.0, 60.0) < 3.5);
    }

    #[test]
    fn garbage_inputs_stay_in_range() {
        let bad = [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -1.0, 1e300];
        for &a in &bad {
            for &b in &bad {
                let input = EModelInput {
                    loss_percent: a,
                    burst_ratio: b,
                    one_way_delay_ms: a,
                    codec: CodecImpairment { ie: b, bpl: a },
                    advantage: b,
                };
                let m = input.mos();
                assert!((1.0..=4.5).contains(&m), "{a} {b} -> {m}");
            }
        }
    }
}
