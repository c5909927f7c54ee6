//! A turn's latency marks: the conversation sets them as the turn goes; their stages and
//! histograms are the metrics' (`metrics::turns`).

pub use crate::metrics::turns::TurnTimes;
