//! The store keeps times as milliseconds since the Unix epoch; the API shows them as RFC 3339
//! UTC, and billing needs calendar months (free minutes reset monthly). Civil-date arithmetic
//! on the proleptic Gregorian calendar (Howard Hinnant's days-from-civil algorithms).

const MS_PER_DAY: i64 = 86_400_000;

/// Days since 1970-01-01 of a civil date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The civil date of a day count since 1970-01-01.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    let next = if m == 12 {
        days_from_civil(y + 1, 1, 1)
    } else {
        days_from_civil(y, m + 1, 1)
    };
    (next - days_from_civil(y, m, 1)) as u32
}

/// `ms` plus `months` calendar months, the day clamped to the month's length (Jan 31 + 1
/// month = Feb 28 or 29), the time of day kept.
pub fn add_months(ms: i64, months: u32) -> i64 {
    let days = ms.div_euclid(MS_PER_DAY);
    let time = ms.rem_euclid(MS_PER_DAY);
    let (y, m, d) = civil_from_days(days);
    let total = (m - 1) + months;
    let (y, m) = (y + i64::from(total / 12), total % 12 + 1);
    let d = d.min(days_in_month(y, m));
    days_from_civil(y, m, d) * MS_PER_DAY + time
}

/// RFC 3339 UTC with milliseconds, e.g. `2026-12-03T19:44:22.123Z`.
pub fn rfc3339(ms: i64) -> String {
    let days = ms.div_euclid(MS_PER_DAY);
    let t = ms.rem_euclid(MS_PER_DAY);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        t / 3_600_000,
        t / 60_000 % 60,
        t / 1000 % 60,
        t % 1000
    )
}

/// Serializes a store time as RFC 3339.
pub fn ser_time<S: serde::Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(*ms))
}

/// Serializes an optional store time as RFC 3339 or null.
pub fn ser_opt_time<S: serde::Serializer>(ms: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    match ms {
        Some(ms) => s.serialize_str(&rfc3339(*ms)),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(1_796_327_062_123), "2026-12-03T19:44:22.123Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn months_are_calendar_months() {
        let jan31 = days_from_civil(2026, 1, 31) * MS_PER_DAY + 3_600_000;
        assert_eq!(rfc3339(add_months(jan31, 1)), "2026-02-28T01:00:00.000Z");
        assert_eq!(rfc3339(add_months(jan31, 13)), "2027-02-28T01:00:00.000Z");
        let leap = days_from_civil(2028, 1, 31) * MS_PER_DAY;
        assert_eq!(rfc3339(add_months(leap, 1)), "2028-02-29T00:00:00.000Z");
        let dec = days_from_civil(2026, 12, 3) * MS_PER_DAY;
        assert_eq!(rfc3339(add_months(dec, 1)), "2027-01-03T00:00:00.000Z");
        for z in [-800_000, -1, 0, 1, 20_000, 2_000_000] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
    }
}

/// Parses RFC 3339 (`2026-12-03T19:44:22Z`, with optional fraction and a `Z` or `±hh:mm`
/// offset) into milliseconds since the epoch.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let s = s.trim();
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if b[13] != b':' || b[16] != b':' || !(1..=12).contains(&mo) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    if d < 1 || d > i64::from(days_in_month(y, mo as u32)) {
        return None;
    }
    let mut rest = &s[19..];
    let mut ms = 0;
    if let Some(frac) = rest.strip_prefix('.') {
        let digits = frac.chars().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        let padded = format!("{:0<3}", &frac[..digits.min(3)]);
        ms = padded.parse::<i64>().ok()?;
        rest = &frac[digits..];
    }
    let offset_min = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            if rest.len() != 6 || rest.as_bytes()[3] != b':' {
                return None;
            }
            sign * (rest[1..3].parse::<i64>().ok()? * 60 + rest[4..6].parse::<i64>().ok()?)
        }
    };
    let days = days_from_civil(y, mo as u32, d as u32);
    Some(days * MS_PER_DAY + ((h * 60 + mi - offset_min) * 60 + sec) * 1000 + ms)
}

#[cfg(test)]
mod parse_tests {
    use super::*;

    #[test]
    fn parses_what_it_formats_and_offsets() {
        for ms in [0, 1_796_327_062_123, 951_782_400_000] {
            assert_eq!(parse_rfc3339(&rfc3339(ms)), Some(ms));
        }
        assert_eq!(
            parse_rfc3339("2026-12-03T20:44:22+01:00"),
            parse_rfc3339("2026-12-03T19:44:22Z")
        );
        assert_eq!(
            parse_rfc3339("2026-12-03T19:44:22.5Z"),
            Some(1_796_327_062_500)
        );
        for bad in [
            "2026-02-30T00:00:00Z",
            "2026-12-03",
            "yesterday",
            "2026-12-03T19:44:22",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}
