//! Business hours of an account, in the account's own time zone.
//!
//! Outbound SMS to a contact are held until the account opens: a clinic in São Paulo must not
//! text its patients at 3 a.m. their time because the server runs on UTC. Hours are wall-clock
//! intervals per weekday, written as JSON:
//!
//! ```json
//! {"timezone": "America/Sao_Paulo",
//!  "weekly": {"mon": [["09:00", "18:00"]],
//!             "tue": [["09:00", "12:00"], ["13:00", "18:00"]],
//!             "sat": [["10:00", "14:00"]]}}
//! ```
//!
//! A day that is absent (or has an empty list) is closed. An interval includes its start and
//! excludes its end; "24:00" may end one, so a night shift is written as two intervals, one
//! ending at "24:00" and one starting at "00:00" the next day. Intervals of a day must not
//! overlap; they may touch.
//!
//! Around daylight-saving changes the hours stay wall-clock hours:
//! - when the clocks spring forward past an opening time (02:30 on the Sunday in March in
//!   America/New_York, where 02:00 to 03:00 never happens), the account opens at the end of
//!   the gap (03:00 new time), the first instant the local clock reads later than 02:30. We
//!   neither skip the day nor open an hour late at 03:30.
//! - when the clocks fall back, a local time that happens twice is open both times if it lies
//!   within an interval; an opening time in the repeated hour opens at its first occurrence.

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use serde_json::{Map, Value};

/// The weekday keys of `weekly`, Monday first, as in [`jiff::civil::Weekday`]'s
/// Monday-zero offset.
const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

const MINUTES_PER_DAY: u16 = 24 * 60;

/// How many days past the local date of the asked instant [`BusinessHours::next_open`]
/// looks: a week, plus one day so that a day whose only opening fell in a skipped DST hour
/// is found again a week later.
const LOOKAHEAD_DAYS: u8 = 8;

/// A bad business-hours document. [`HoursError::field`] is the path of the offending value
/// (`timezone`, `weekly.tue[1]`, `weekly.mon[0][1]`; `$` for the document itself), for an
/// HTTP 400 body that points at it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HoursError {
    #[error("{field}: expected {expected}")]
    WrongType {
        field: String,
        expected: &'static str,
    },
    #[error("{field}: missing")]
    Missing { field: String },
    #[error("{field}: unknown key (expected {expected})")]
    UnknownKey {
        field: String,
        expected: &'static str,
    },
    #[error("{field}: unknown time zone \"{name}\"")]
    UnknownTimeZone { field: String, name: String },
    #[error("{field}: \"{value}\" is not a time of day (HH:MM, 00:00 to 24:00)")]
    BadTime { field: String, value: String },
    #[error("{field}: 24:00 can only end an interval")]
    MidnightStart { field: String },
    #[error("{field}: start {start} is not before end {end}")]
    StartNotBeforeEnd {
        field: String,
        start: String,
        end: String,
    },
    #[error("{field}: {interval} overlaps {other_field} {other}")]
    Overlap {
        field: String,
        interval: String,
        other_field: String,
        other: String,
    },
}

impl HoursError {
    /// The path of the value at fault.
    pub fn field(&self) -> &str {
        match self {
            HoursError::WrongType { field, .. }
            | HoursError::Missing { field }
            | HoursError::UnknownKey { field, .. }
            | HoursError::UnknownTimeZone { field, .. }
            | HoursError::BadTime { field, .. }
            | HoursError::MidnightStart { field }
            | HoursError::StartNotBeforeEnd { field, .. }
            | HoursError::Overlap { field, .. } => field,
        }
    }
}

/// Open from `start` (included) to `end` (excluded), in minutes after local midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Interval {
    start: u16,
    end: u16,
}

impl Interval {
    fn contains(self, minute: u16) -> bool {
        self.start <= minute && minute < self.end
    }
}

impl std::fmt::Display for Interval {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", clock(self.start), clock(self.end))
    }
}

/// When an account may send: weekly wall-clock intervals in one IANA time zone.
#[derive(Debug, Clone)]
pub struct BusinessHours {
    /// The zone's IANA name, kept for `to_json`.
    tz_name: String,
    tz: TimeZone,
    /// Intervals per weekday, Monday first, sorted by start and not overlapping.
    weekly: [Vec<Interval>; 7],
}

impl PartialEq for BusinessHours {
    fn eq(&self, other: &Self) -> bool {
        self.tz_name == other.tz_name && self.weekly == other.weekly
    }
}

impl BusinessHours {
    /// Reads the JSON form (see the module documentation). Unknown keys are errors, as
    /// everywhere in Parley's configuration.
    pub fn from_json(v: &Value) -> Result<BusinessHours, HoursError> {
        let doc = v.as_object().ok_or(HoursError::WrongType {
            field: "$".into(),
            expected: "an object with \"timezone\" and \"weekly\"",
        })?;
        if let Some(key) = doc.keys().find(|k| *k != "timezone" && *k != "weekly") {
            return Err(HoursError::UnknownKey {
                field: key.clone(),
                expected: "timezone, weekly",
            });
        }
        let (tz_name, tz) = parse_time_zone(doc.get("timezone"))?;
        let days = doc
            .get("weekly")
            .ok_or(HoursError::Missing {
                field: "weekly".into(),
            })?
            .as_object()
            .ok_or(HoursError::WrongType {
                field: "weekly".into(),
                expected: "an object of days (mon, tue, wed, thu, fri, sat, sun)",
            })?;
        let mut weekly: [Vec<Interval>; 7] = Default::default();
        for (key, intervals) in days {
            let field = format!("weekly.{key}");
            let day = DAYS
                .iter()
                .position(|d| d == key)
                .ok_or(HoursError::UnknownKey {
                    field: field.clone(),
                    expected: "mon, tue, wed, thu, fri, sat, sun",
                })?;
            weekly[day] = parse_day(&field, intervals)?;
        }
        Ok(BusinessHours {
            tz_name,
            tz,
            weekly,
        })
    }

    /// The JSON form, which [`BusinessHours::from_json`] reads back to an equal value.
    /// Closed days are left out; each day's intervals come sorted by start.
    pub fn to_json(&self) -> Value {
        let mut weekly = Map::new();
        for (key, intervals) in DAYS.iter().zip(&self.weekly) {
            if intervals.is_empty() {
                continue;
            }
            let pairs = intervals
                .iter()
                .map(|iv| Value::from(vec![clock(iv.start), clock(iv.end)]))
                .collect();
            weekly.insert((*key).to_string(), Value::Array(pairs));
        }
        serde_json::json!({ "timezone": self.tz_name, "weekly": weekly })
    }

    /// The IANA name of the account's time zone.
    pub fn timezone(&self) -> &str {
        &self.tz_name
    }

    /// Whether the account is open at `at_ms` (Unix milliseconds). Instants outside the
    /// years -9999 to 9999 count as closed.
    pub fn is_open(&self, at_ms: i64) -> bool {
        Timestamp::from_millisecond(at_ms).is_ok_and(|at| self.open_at(at))
    }

    /// `at_ms` itself when the account is open then, else the Unix milliseconds at which it
    /// next opens. `None` when it never opens (every day closed), or when no opening falls
    /// within the next 8 days (only possible near the end of representable time).
    pub fn next_open(&self, at_ms: i64) -> Option<i64> {
        if self.weekly.iter().all(Vec::is_empty) {
            return None;
        }
        let at = Timestamp::from_millisecond(at_ms).ok()?;
        if self.open_at(at) {
            return Some(at_ms);
        }
        // The account goes from closed to open only where the local clock reaches an interval's
        // start, or where it jumps (a DST transition, landing inside an interval or past a
        // start that the jump skipped). So the next opening is the earliest of those instants
        // after `at` at which it is open; testing each with `open_at` keeps this function in
        // agreement with `is_open` whatever the time zone does.
        let first_day = self.tz.to_datetime(at).date();
        let horizon = at.checked_add(SignedDuration::from_hours(
            24 * (i64::from(LOOKAHEAD_DAYS) + 2),
        ));
        let transitions = self
            .tz
            .following(at)
            .map(|t| t.timestamp())
            .take_while(|t| horizon.as_ref().is_ok_and(|h| t <= h));
        let starts = std::iter::successors(Some(first_day), |d| d.tomorrow().ok())
            .take(usize::from(LOOKAHEAD_DAYS) + 1)
            .flat_map(|date| self.start_instants(date));
        starts
            .chain(transitions)
            .filter(|t| *t > at && self.open_at(*t))
            .min()
            .map(Timestamp::as_millisecond)
    }

    fn open_at(&self, at: Timestamp) -> bool {
        let local = self.tz.to_datetime(at);
        // jiff keeps hours in 0..=23 and minutes in 0..=59, so the conversions cannot fail.
        let hour = u16::try_from(local.hour()).unwrap_or(0);
        let minute = u16::try_from(local.minute()).unwrap_or(0);
        self.intervals_on(local.date())
            .iter()
            .any(|iv| iv.contains(hour * 60 + minute))
    }

    fn intervals_on(&self, date: Date) -> &[Interval] {
        let day = usize::try_from(date.weekday().to_monday_zero_offset()).unwrap_or(0);
        &self.weekly[day % 7]
    }

    /// The instants at which the local clock shows each interval start of `date`: one per
    /// start normally, two when the clocks fall back over it, and none usable when they
    /// spring forward over it (both readings are then tried and rejected by `open_at`, and
    /// the transition itself is the opening).
    fn start_instants(&self, date: Date) -> Vec<Timestamp> {
        let mut instants = Vec::new();
        for iv in self.intervals_on(date) {
            let (hour, minute) = (iv.start / 60, iv.start % 60);
            let (Ok(hour), Ok(minute)) = (i8::try_from(hour), i8::try_from(minute)) else {
                continue;
            };
            let local = self.tz.to_ambiguous_timestamp(date.at(hour, minute, 0, 0));
            instants.extend(local.earlier().ok());
            instants.extend(local.later().ok());
        }
        instants
    }
}

fn parse_time_zone(value: Option<&Value>) -> Result<(String, TimeZone), HoursError> {
    let field = || "timezone".to_string();
    let name = value
        .ok_or_else(|| HoursError::Missing { field: field() })?
        .as_str()
        .ok_or_else(|| HoursError::WrongType {
            field: field(),
            expected: "a time zone name such as \"America/Sao_Paulo\"",
        })?;
    let tz = TimeZone::get(name).map_err(|_| HoursError::UnknownTimeZone {
        field: field(),
        name: name.to_string(),
    })?;
    // The database's spelling, so "america/sao_paulo" is stored as "America/Sao_Paulo".
    let canonical = tz.iana_name().unwrap_or(name).to_string();
    Ok((canonical, tz))
}

fn parse_day(field: &str, value: &Value) -> Result<Vec<Interval>, HoursError> {
    let items = value.as_array().ok_or_else(|| HoursError::WrongType {
        field: field.to_string(),
        expected: "a list of [\"HH:MM\", \"HH:MM\"] pairs",
    })?;
    // Parse all, keeping each interval's position in the input for error messages.
    let mut intervals = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let item_field = format!("{field}[{i}]");
        intervals.push((i, parse_interval(&item_field, item)?));
    }
    intervals.sort_by_key(|(_, iv)| iv.start);
    // Sorted by start, two intervals overlap only if some neighbouring pair does.
    for pair in intervals.windows(2) {
        let ((i, earlier), (j, later)) = (pair[0], pair[1]);
        if later.start < earlier.end {
            // Blame the one listed second: the first one listed is what the author built on.
            let ((blamed, iv), (other, other_iv)) = if i < j {
                ((j, later), (i, earlier))
            } else {
                ((i, earlier), (j, later))
            };
            return Err(HoursError::Overlap {
                field: format!("{field}[{blamed}]"),
                interval: iv.to_string(),
                other_field: format!("{field}[{other}]"),
                other: other_iv.to_string(),
            });
        }
    }
    Ok(intervals.into_iter().map(|(_, iv)| iv).collect())
}

fn parse_interval(field: &str, value: &Value) -> Result<Interval, HoursError> {
    let wrong = || HoursError::WrongType {
        field: field.to_string(),
        expected: "a pair [\"HH:MM\", \"HH:MM\"]",
    };
    let [start, end] = value.as_array().map(Vec::as_slice).ok_or_else(wrong)? else {
        return Err(wrong());
    };
    let start = parse_clock(&format!("{field}[0]"), start)?;
    let end = parse_clock(&format!("{field}[1]"), end)?;
    if start == MINUTES_PER_DAY {
        return Err(HoursError::MidnightStart {
            field: format!("{field}[0]"),
        });
    }
    if start >= end {
        return Err(HoursError::StartNotBeforeEnd {
            field: field.to_string(),
            start: clock(start),
            end: clock(end),
        });
    }
    Ok(Interval { start, end })
}

/// "HH:MM" to minutes after midnight, "24:00" included. Exactly two digits each, so that
/// what is stored is what `to_json` writes back.
fn parse_clock(field: &str, value: &Value) -> Result<u16, HoursError> {
    let text = value.as_str().ok_or_else(|| HoursError::WrongType {
        field: field.to_string(),
        expected: "a time of day \"HH:MM\"",
    })?;
    let bad = || HoursError::BadTime {
        field: field.to_string(),
        value: text.to_string(),
    };
    let bytes = text.as_bytes();
    if bytes.len() != 5 || bytes[2] != b':' {
        return Err(bad());
    }
    let two_digits = |b: &[u8]| -> Option<u16> {
        match b {
            [t @ b'0'..=b'9', u @ b'0'..=b'9'] => {
                Some(u16::from(t - b'0') * 10 + u16::from(u - b'0'))
            }
            _ => None,
        }
    };
    let (hour, minute) = two_digits(&bytes[..2])
        .zip(two_digits(&bytes[3..]))
        .ok_or_else(bad)?;
    let minutes = hour * 60 + minute;
    if minute >= 60 || minutes > MINUTES_PER_DAY {
        return Err(bad());
    }
    Ok(minutes)
}

/// Minutes after midnight as "HH:MM".
fn clock(minutes: u16) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ms(rfc3339: &str) -> i64 {
        rfc3339
            .parse::<Timestamp>()
            .expect("test timestamp")
            .as_millisecond()
    }

    fn hours(v: Value) -> BusinessHours {
        BusinessHours::from_json(&v).expect("valid hours")
    }

    fn error(v: Value) -> String {
        match BusinessHours::from_json(&v) {
            Ok(h) => panic!("accepted {v}: {h:?}"),
            Err(e) => e.to_string(),
        }
    }

    fn sao_paulo() -> BusinessHours {
        hours(json!({
            "timezone": "America/Sao_Paulo",
            "weekly": {
                "mon": [["09:00", "18:00"]],
                "tue": [["09:00", "12:00"], ["13:00", "18:00"]],
                "fri": [["09:00", "18:00"]],
                "sat": [["10:00", "14:00"]],
            }
        }))
    }

    #[test]
    fn hours_round_trip_through_json() {
        let h = sao_paulo();
        assert_eq!(h.timezone(), "America/Sao_Paulo");
        assert_eq!(BusinessHours::from_json(&h.to_json()), Ok(h.clone()));
        assert_eq!(
            h.to_json()["weekly"]["tue"],
            json!([["09:00", "12:00"], ["13:00", "18:00"]])
        );
        assert!(h.to_json()["weekly"].get("sun").is_none());
        // Intervals listed out of order are stored sorted; the zone name takes the
        // database's spelling.
        let h = hours(json!({
            "timezone": "america/sao_paulo",
            "weekly": {"wed": [["13:00", "24:00"], ["00:00", "12:00"]], "thu": []}
        }));
        assert_eq!(
            h.to_json(),
            json!({"timezone": "America/Sao_Paulo",
                   "weekly": {"wed": [["00:00", "12:00"], ["13:00", "24:00"]]}})
        );
    }

    #[test]
    fn hours_open_and_closed_at_boundaries() {
        // São Paulo has kept UTC-3 all year since 2019. 2025-03-10 is a Monday.
        let h = sao_paulo();
        assert!(!h.is_open(ms("2025-03-10T11:59:59.999Z"))); // Mon 08:59:59.999
        assert!(h.is_open(ms("2025-03-10T12:00:00Z"))); // Mon 09:00
        assert!(h.is_open(ms("2025-03-10T20:59:59.999Z"))); // Mon 17:59:59.999
        assert!(!h.is_open(ms("2025-03-10T21:00:00Z"))); // Mon 18:00
        assert!(!h.is_open(ms("2025-03-11T15:30:00Z"))); // Tue 12:30, lunch
        assert!(h.is_open(ms("2025-03-11T16:00:00Z"))); // Tue 13:00
        assert!(!h.is_open(ms("2025-03-12T15:00:00Z"))); // Wed, closed all day
        assert!(!h.is_open(ms("2025-03-16T15:00:00Z"))); // Sun
        assert!(!h.is_open(i64::MAX));
        assert!(!h.is_open(i64::MIN));
    }

    #[test]
    fn hours_end_at_midnight_join_the_next_day() {
        let h = hours(json!({
            "timezone": "UTC",
            "weekly": {"fri": [["20:00", "24:00"]], "sat": [["00:00", "02:00"]]}
        }));
        // 2025-03-14 is a Friday.
        assert!(!h.is_open(ms("2025-03-14T19:59:59Z")));
        assert!(h.is_open(ms("2025-03-14T23:59:59.999Z")));
        assert!(h.is_open(ms("2025-03-15T00:00:00Z")));
        assert!(h.is_open(ms("2025-03-15T01:59:59.999Z")));
        assert!(!h.is_open(ms("2025-03-15T02:00:00Z")));
        assert_eq!(
            h.next_open(ms("2025-03-15T02:00:00Z")),
            Some(ms("2025-03-21T20:00:00Z"))
        );
    }

    #[test]
    fn hours_next_open_is_now_later_today_or_after_the_weekend() {
        let h = sao_paulo();
        let open = ms("2025-03-10T13:00:00Z"); // Mon 10:00
        assert_eq!(h.next_open(open), Some(open));
        // Mon 07:00: opens at 09:00 the same day.
        assert_eq!(
            h.next_open(ms("2025-03-10T10:00:00Z")),
            Some(ms("2025-03-10T12:00:00Z"))
        );
        // Tue 12:15, lunch: reopens at 13:00.
        assert_eq!(
            h.next_open(ms("2025-03-11T15:15:00Z")),
            Some(ms("2025-03-11T16:00:00Z"))
        );
        // Fri 19:00: Saturday 10:00.
        assert_eq!(
            h.next_open(ms("2025-03-14T22:00:00Z")),
            Some(ms("2025-03-15T13:00:00Z"))
        );
        // Sat 14:00, after Saturday's hours: across Sunday to Monday 09:00.
        assert_eq!(
            h.next_open(ms("2025-03-15T17:00:00Z")),
            Some(ms("2025-03-17T12:00:00Z"))
        );
        // A week that opens once: from just after, the next opening is 7 days on.
        let weekly_once = hours(json!({
            "timezone": "America/Sao_Paulo",
            "weekly": {"wed": [["09:00", "10:00"]]}
        }));
        assert_eq!(
            weekly_once.next_open(ms("2025-03-12T13:00:00Z")),
            Some(ms("2025-03-19T12:00:00Z"))
        );
    }

    #[test]
    fn hours_never_open() {
        let h = hours(json!({"timezone": "Europe/Lisbon", "weekly": {}}));
        assert!(!h.is_open(ms("2025-03-10T12:00:00Z")));
        assert_eq!(h.next_open(ms("2025-03-10T12:00:00Z")), None);
        assert_eq!(h.next_open(i64::MAX), None);
    }

    #[test]
    fn hours_new_york_spring_forward_opens_at_end_of_gap() {
        // 2025-03-09 (Sunday): at 02:00 EST the clocks go to 03:00 EDT (07:00 UTC). 02:30
        // never happens; the account opens at 03:00 EDT, the first instant after 02:30.
        let h = hours(json!({
            "timezone": "America/New_York",
            "weekly": {"sun": [["02:30", "05:00"]], "mon": [["09:00", "17:00"]]}
        }));
        assert!(!h.is_open(ms("2025-03-09T06:59:59.999Z"))); // 01:59:59.999 EST
        assert!(h.is_open(ms("2025-03-09T07:00:00Z"))); // 03:00 EDT
        assert!(h.is_open(ms("2025-03-09T08:59:59Z"))); // 04:59:59 EDT
        assert!(!h.is_open(ms("2025-03-09T09:00:00Z"))); // 05:00 EDT
        assert_eq!(
            h.next_open(ms("2025-03-09T05:00:00Z")), // Sun 00:00 EST
            Some(ms("2025-03-09T07:00:00Z"))
        );
        // Monday 09:00 is now EDT, UTC-4.
        assert_eq!(
            h.next_open(ms("2025-03-09T09:00:00Z")),
            Some(ms("2025-03-10T13:00:00Z"))
        );
        // The Sunday after, 02:30 exists again, in EDT.
        assert_eq!(
            h.next_open(ms("2025-03-11T00:00:00Z")),
            Some(ms("2025-03-16T06:30:00Z"))
        );
        // The Monday before the change, 09:00 was still EST, UTC-5.
        assert_eq!(
            h.next_open(ms("2025-03-03T00:00:00Z")),
            Some(ms("2025-03-03T14:00:00Z"))
        );
    }

    #[test]
    fn hours_lisbon_spring_forward_and_fall_back() {
        // Lisbon is UTC+0 in winter and UTC+1 in summer. 2025-03-30 (Sunday): 01:00 WET
        // becomes 02:00 WEST (01:00 UTC), so 01:30 is skipped.
        let h = hours(json!({
            "timezone": "Europe/Lisbon",
            "weekly": {"sun": [["01:30", "03:00"]], "mon": [["09:00", "18:00"]]}
        }));
        assert_eq!(
            h.next_open(ms("2025-03-30T00:00:00Z")), // 00:00 WET
            Some(ms("2025-03-30T01:00:00Z"))         // 02:00 WEST
        );
        assert!(!h.is_open(ms("2025-03-30T00:59:59Z")));
        assert!(h.is_open(ms("2025-03-30T01:00:00Z")));
        assert!(!h.is_open(ms("2025-03-30T02:00:00Z"))); // 03:00 WEST
                                                         // Monday 09:00 WEST is 08:00 UTC.
        assert_eq!(
            h.next_open(ms("2025-03-30T02:00:00Z")),
            Some(ms("2025-03-31T08:00:00Z"))
        );

        // 2025-10-26 (Sunday): 02:00 WEST becomes 01:00 WET (01:00 UTC), so 01:00-01:59
        // happens twice, and an interval within it is open twice.
        let h = hours(json!({
            "timezone": "Europe/Lisbon",
            "weekly": {"sun": [["01:00", "01:30"]]}
        }));
        assert_eq!(
            h.next_open(ms("2025-10-25T23:00:00Z")), // 00:00 WEST
            Some(ms("2025-10-26T00:00:00Z"))         // first 01:00, WEST
        );
        assert!(h.is_open(ms("2025-10-26T00:15:00Z"))); // 01:15 WEST
        assert!(!h.is_open(ms("2025-10-26T00:45:00Z"))); // 01:45 WEST
        assert_eq!(
            h.next_open(ms("2025-10-26T00:45:00Z")),
            Some(ms("2025-10-26T01:00:00Z")) // second 01:00, WET
        );
        assert!(!h.is_open(ms("2025-10-26T01:30:00Z"))); // 01:30 WET
    }

    #[test]
    fn hours_errors_name_the_field() {
        let cases = [
            (
                json!({"timezone": "UTC", "weekly": {"tue": [["09:00", "11:00"], ["13:00", "12:00"]]}}),
                "weekly.tue[1]: start 13:00 is not before end 12:00",
            ),
            (
                json!({"timezone": "UTC", "weekly": {"mon": [["09:00", "09:00"]]}}),
                "weekly.mon[0]: start 09:00 is not before end 09:00",
            ),
            (
                json!({"timezone": "Mars/Base", "weekly": {}}),
                "timezone: unknown time zone \"Mars/Base\"",
            ),
            (
                json!({"timezone": 3, "weekly": {}}),
                "timezone: expected a time zone name such as \"America/Sao_Paulo\"",
            ),
            (json!({"weekly": {}}), "timezone: missing"),
            (json!({"timezone": "UTC"}), "weekly: missing"),
            (
                json!({"timezone": "UTC", "weekly": {}, "holidays": []}),
                "holidays: unknown key (expected timezone, weekly)",
            ),
            (
                json!({"timezone": "UTC", "weekly": {"monday": [["09:00", "17:00"]]}}),
                "weekly.monday: unknown key (expected mon, tue, wed, thu, fri, sat, sun)",
            ),
            (
                json!({"timezone": "UTC", "weekly": {"mon": [["09:00", "25:00"]]}}),
                "weekly.mon[0][1]: \"25:00\" is not a time of day (HH:MM, 00:00 to 24:00)",
            ),
            (
                json!({"timezone": "UTC", "weekly": {"mon": [["9:00", "17:00"]]}}),
                "weekly.mon[0][0]: \"9:00\" is not a time of day (HH:MM, 00:00 to 24:00)",
            ),
            (
                json!({"timezone": "UTC", "weekly": {"mon": [["09:60", "17:00"]]}}),
                "weekly.mon[0][0]: \"09:60\" is not a time of day (HH:MM, 00:00 to 24:00)",
            ),
            (
                json!({"timezone": "UTC", "weekly": {"mon": [["24:00", "24:00"]]}}),
                "weekly.mon[0][0]: 24:00 can only end an interval",
            ),
            (
                json!({"timezone": "UTC", "weekly": {"wed": [["09:00", "12:00"], ["11:00", "13:00"]]}}),
                "weekly.wed[1]: 11:00-13:00 overlaps weekly.wed[0] 09:00-12:00",
            ),
            (
                json!({"timezone": "UTC", "weekly": {"wed": [["11:00", "13:00"], ["09:00", "12:00"]]}}),
                "weekly.wed[1]: 09:00-12:00 overlaps weekly.wed[0] 11:00-13:00",
            ),
            (
                json!({"timezone": "UTC", "weekly": {"fri": [["09:00"]]}}),
                "weekly.fri[0]: expected a pair [\"HH:MM\", \"HH:MM\"]",
            ),
            (
                json!({"timezone": "UTC", "weekly": {"fri": [[900, 1700]]}}),
                "weekly.fri[0][0]: expected a time of day \"HH:MM\"",
            ),
            (
                json!({"timezone": "UTC", "weekly": {"fri": "09:00-17:00"}}),
                "weekly.fri: expected a list of [\"HH:MM\", \"HH:MM\"] pairs",
            ),
            (
                json!({"timezone": "UTC", "weekly": []}),
                "weekly: expected an object of days (mon, tue, wed, thu, fri, sat, sun)",
            ),
            (
                json!("9 to 5"),
                "$: expected an object with \"timezone\" and \"weekly\"",
            ),
        ];
        for (input, message) in cases {
            assert_eq!(error(input), message);
        }
        let e = BusinessHours::from_json(&json!({"timezone": "Mars/Base", "weekly": {}}));
        assert_eq!(
            e.map_err(|e| e.field().to_string()),
            Err("timezone".to_string())
        );
    }

    #[test]
    fn hours_bundled_time_zones_are_there_without_the_system_copy() {
        // The fallback for hosts without /usr/share/zoneinfo (jiff's tzdb-bundle-always).
        let bundled = jiff::tz::TimeZoneDatabase::bundled();
        for name in ["America/Sao_Paulo", "America/New_York", "Europe/Lisbon"] {
            assert!(bundled.get(name).is_ok(), "{name} is not bundled");
        }
    }

    #[test]
    fn hours_touching_intervals_are_allowed() {
        let h = hours(json!({
            "timezone": "UTC",
            "weekly": {"thu": [["09:00", "12:00"], ["12:00", "18:00"]]}
        }));
        // 2025-03-13 is a Thursday.
        assert!(h.is_open(ms("2025-03-13T12:00:00Z")));
    }
}
