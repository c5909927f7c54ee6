//! Network delay statistics for the jitter buffer: a sliding minimum of the
//! transit time (the reference "fastest path"), a forgetting histogram of
//! each packet's delay relative to that reference, and the RFC 3550
//! interarrival jitter.
//!
//! All times are in microseconds of receiver time. A packet's *transit* is
//! `arrival - timestamp / clock_rate`; its absolute value is meaningless
//! (sender and receiver clocks are unrelated) but differences between
//! packets are the network's delay variation.
//!
//! When the sender's clock runs fast or slow, transit drifts linearly (by
//! 5 ms per second at 0.5 % skew). The minimum of each 16-packet bucket is
//! kept with its arrival time; the drift rate is estimated from the oldest
//! and newest bucket minima (smoothed), and each bucket's minimum is
//! projected to the present along it before taking the smallest. The
//! reference thus neither lags behind a slow sender nor goes stale across
//! a silence gap.

/// Packets per bucket of the sliding transit minimum.
const BUCKET_PACKETS: u32 = 16;
/// Buckets in the sliding transit minimum. With 20 ms packets the window
/// spans 128 packets, about 2.5 s: long enough to contain a fast packet
/// under heavy jitter, short enough that clock skew of 0.5 % moves the
/// reference by at most about 13 ms.
const BUCKETS: usize = 8;

/// Smoothing of the clock-skew estimate per completed bucket (about 3 s).
const SKEW_SMOOTHING: f64 = 0.1;
/// Largest skew believed, as transit change per unit time (1 %).
const MAX_SKEW: f64 = 0.01;
/// Shortest window span from which a skew estimate is taken, µs.
const MIN_SKEW_SPAN_US: i64 = 1_000_000;

/// Per-packet forgetting factor of the histogram. The weight of a packet
/// halves after about 230 packets (4.6 s at 50 packets/s), so the target
/// follows a change in network conditions within seconds, and an old burst
/// of jitter stops counting after roughly 20 s.
pub(crate) const FORGET: f64 = 0.997;

/// The quantile of relative delay the buffer must cover.
pub(crate) const QUANTILE: f64 = 0.95;

/// Renormalise the histogram when the running weight passes this.
const RENORM_AT: f64 = 1e150;

/// Sliding minimum transit, relative-delay histogram and RFC 3550 jitter.
#[derive(Debug)]
pub(crate) struct DelayEstimator {
    bucket_min: [i64; BUCKETS],
    /// Arrival time of each bucket's minimum.
    bucket_at: [i64; BUCKETS],
    bucket: usize,
    /// Estimated transit drift, µs per µs.
    skew: f64,
    in_bucket: u32,
    bins: Vec<f64>,
    bin_us: i64,
    weight: f64,
    total: f64,
    jitter_us: f64,
    last_transit: Option<i64>,
}

impl DelayEstimator {
    /// `bin_us` is the histogram resolution, `span_us` the largest delay it
    /// distinguishes (larger delays fall in the last bin).
    pub(crate) fn new(bin_us: i64, span_us: i64) -> Self {
        let bin_us = bin_us.max(1);
        let bins = usize::try_from(span_us.max(0) / bin_us)
            .unwrap_or(0)
            .saturating_add(2);
        DelayEstimator {
            bucket_min: [i64::MAX; BUCKETS],
            bucket_at: [0; BUCKETS],
            bucket: 0,
            skew: 0.0,
            in_bucket: 0,
            bins: vec![0.0; bins],
            bin_us,
            weight: 1.0,
            total: 0.0,
            jitter_us: 0.0,
            last_transit: None,
        }
    }

    /// Forget the transit reference (new source, or a gap long enough that
    /// clock skew may have moved the path's transit). The histogram and
    /// the jitter estimate describe the network and are kept.
    pub(crate) fn reset_reference(&mut self) {
        self.bucket_min = [i64::MAX; BUCKETS];
        self.skew = 0.0;
        self.bucket = 0;
        self.in_bucket = 0;
        self.last_transit = None;
    }

    /// Transit of the previously observed packet, if any since the last
    /// reference reset.
    pub(crate) fn last_transit(&self) -> Option<i64> {
        self.last_transit
    }

    /// The fastest-path transit at `now_us`: the smallest bucket minimum
    /// projected to `now_us` along the estimated drift; `None` before the
    /// first packet since the last reference reset.
    pub(crate) fn reference(&self, now_us: i64) -> Option<i64> {
        let mut best = None::<i64>;
        for (m, at) in self.bucket_min.iter().zip(&self.bucket_at) {
            if *m == i64::MAX {
                continue;
            }
            let drift = (self.skew * now_us.saturating_sub(*at) as f64) as i64;
            let projected = m.saturating_add(drift);
            best = Some(best.map_or(projected, |b| b.min(projected)));
        }
        best
    }

    /// Estimated drift of transit per unit time (negative when the sender's
    /// clock is fast).
    pub(crate) fn skew(&self) -> f64 {
        self.skew
    }

    /// Record one packet's transit at `arrival_us`; returns its delay
    /// relative to the fastest-path reference (including itself), never
    /// negative.
    pub(crate) fn observe(&mut self, arrival_us: i64, transit_us: i64) -> i64 {
        if let Some(prev) = self.last_transit {
            // RFC 3550 §6.4.1: J += (|D| - J) / 16, D the transit difference
            // of consecutive arrivals.
            let d = transit_us.saturating_sub(prev).unsigned_abs() as f64;
            self.jitter_us += (d - self.jitter_us) / 16.0;
        }
        self.last_transit = Some(transit_us);

        let b = self.bucket;
        if transit_us < self.bucket_min[b] {
            self.bucket_min[b] = transit_us;
            self.bucket_at[b] = arrival_us;
        }
        let reference = self.reference(arrival_us).unwrap_or(transit_us);
        self.in_bucket += 1;
        if self.in_bucket >= BUCKET_PACKETS {
            self.close_bucket();
        }

        let relative = transit_us.saturating_sub(reference).max(0);
        self.add_to_histogram(relative);
        relative
    }

    /// Finish the current bucket, update the skew estimate from the oldest
    /// and newest bucket minima, and start a new bucket in place of the
    /// oldest.
    fn close_bucket(&mut self) {
        let newest = self.bucket;
        let oldest = (newest + 1) % BUCKETS;
        if self.bucket_min[oldest] != i64::MAX {
            let span = self.bucket_at[newest] - self.bucket_at[oldest];
            if span >= MIN_SKEW_SPAN_US {
                let rise = self.bucket_min[newest].saturating_sub(self.bucket_min[oldest]);
                let s = (rise as f64 / span as f64).clamp(-MAX_SKEW, MAX_SKEW);
                self.skew += (s - self.skew) * SKEW_SMOOTHING;
            }
        }
        self.bucket = oldest;
        self.bucket_min[oldest] = i64::MAX;
        self.in_bucket = 0;
    }

    fn add_to_histogram(&mut self, relative_us: i64) {
        let last = self.bins.len().saturating_sub(1);
        let bin = usize::try_from(relative_us / self.bin_us)
            .unwrap_or(last)
            .min(last);
        // Rather than multiplying every bin by FORGET per packet, grow the
        // weight of new packets by 1/FORGET: the same distribution, O(1).
        self.weight /= FORGET;
        if let Some(b) = self.bins.get_mut(bin) {
            *b += self.weight;
        }
        self.total += self.weight;
        if self.weight > RENORM_AT {
            let w = self.weight;
            for b in &mut self.bins {
                *b /= w;
            }
            self.total /= w;
            self.weight = 1.0;
        }
    }

    /// The upper edge of the bin holding quantile `q` of the relative
    /// delay, in µs; `None` before the first packet.
    pub(crate) fn quantile_us(&self, q: f64) -> Option<i64> {
        if self.total <= 0.0 {
            return None;
        }
        let want = self.total * q;
        let mut acc = 0.0;
        for (i, b) in self.bins.iter().enumerate() {
            acc += *b;
            if acc >= want {
                return Some((i as i64 + 1).saturating_mul(self.bin_us));
            }
        }
        Some((self.bins.len() as i64).saturating_mul(self.bin_us))
    }

    /// RFC 3550 interarrival jitter in µs.
    pub(crate) fn jitter_us(&self) -> f64 {
        self.jitter_us
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_delay_is_against_window_minimum() {
        let mut d = DelayEstimator::new(5_000, 500_000);
        assert_eq!(d.observe(0, 100_000), 0);
        assert_eq!(d.observe(20_000, 130_000), 30_000);
        assert_eq!(d.observe(40_000, 90_000), 0);
        assert_eq!(d.observe(60_000, 95_000), 5_000);
        assert_eq!(d.reference(60_000), Some(90_000));
    }

    #[test]
    fn window_minimum_expires_after_the_window() {
        let mut d = DelayEstimator::new(5_000, 500_000);
        d.observe(0, 0);
        for i in 0..(BUCKETS as i64 * BUCKET_PACKETS as i64) {
            d.observe(i * 20_000, 50_000);
        }
        let last = (BUCKETS as i64 * BUCKET_PACKETS as i64 - 1) * 20_000;
        let r = d.reference(last).unwrap();
        assert!((50_000..53_000).contains(&r), "{r}");
        d.reset_reference();
        assert_eq!(d.reference(10_000_000), None);
        assert_eq!(d.last_transit(), None);
    }

    #[test]
    fn quantile_forgets_old_delays() {
        let mut d = DelayEstimator::new(5_000, 500_000);
        assert_eq!(d.quantile_us(QUANTILE), None);
        d.observe(0, 0);
        for i in 0..400 {
            // Alternate 0 and 100 ms late: half the mass at 100 ms.
            d.observe(i * 20_000, if i % 2 == 0 { 0 } else { 100_000 });
        }
        assert_eq!(d.quantile_us(QUANTILE), Some(105_000));
        for i in 400..2_400 {
            d.observe(i * 20_000, 0);
        }
        assert_eq!(d.quantile_us(QUANTILE), Some(5_000));
    }

    #[test]
    fn histogram_survives_renormalisation() {
        let mut d = DelayEstimator::new(5_000, 100_000);
        for i in 0..200_000i64 {
            d.observe(i * 20_000, (i % 10) * 1_000);
        }
        assert!(d.weight <= RENORM_AT);
        let q = d.quantile_us(QUANTILE).unwrap();
        assert_eq!(q, 10_000);
    }

    #[test]
    fn rfc3550_jitter_of_alternating_transit() {
        let mut d = DelayEstimator::new(5_000, 100_000);
        for i in 0..1_000 {
            d.observe(i * 20_000, if i % 2 == 0 { 0 } else { 8_000 });
        }
        assert!((d.jitter_us() - 8_000.0).abs() < 1.0);
    }

    #[test]
    fn skew_is_estimated_and_the_reference_projected() {
        // Sender 0.5 % slow: transit grows 100 µs per 20 ms packet, with
        // 0-10 ms of pseudo-random jitter on top.
        let mut d = DelayEstimator::new(5_000, 500_000);
        let mut late_rel = 0;
        for i in 0..3_000i64 {
            let jitter = (i * 7_919) % 10_000;
            let rel = d.observe(i * 20_000, i * 100 + jitter);
            if i > 2_000 {
                late_rel = late_rel.max(rel);
            }
        }
        assert!((d.skew() - 0.005).abs() < 0.000_5, "skew {}", d.skew());
        // Relative delays are the jitter, not jitter plus drift lag.
        assert!(late_rel < 11_000, "{late_rel}");
        // Projected 3 s into a silence: the drift continues.
        let now = 3_000 * 20_000 + 3_000_000;
        let r = d.reference(now).unwrap();
        assert!((r - 315_000).abs() < 3_000, "{r}");
    }
}
