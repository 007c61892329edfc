//! Dates as Triplit stores them: milliseconds since the Unix epoch, written as JavaScript's
//! `Date.prototype.toISOString()` writes them (`2024-03-10T12:00:00.000Z`).

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date as CalendarDate, OffsetDateTime, PrimitiveDateTime, UtcOffset};

/// A point in time with millisecond precision, the resolution of a JavaScript `Date`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date(i64);

impl Date {
    /// A date from milliseconds since the Unix epoch.
    pub fn from_millis(millis: i64) -> Self {
        Date(millis)
    }

    /// Milliseconds since the Unix epoch.
    pub fn millis(self) -> i64 {
        self.0
    }

    /// The current wall-clock time.
    pub fn now() -> Self {
        let now = OffsetDateTime::now_utc();
        Date((now.unix_timestamp_nanos() / 1_000_000) as i64)
    }

    /// Parses the date forms Triplit accepts: RFC 3339 / ISO-8601 date-times (any offset),
    /// date-only strings (`2021-06-15`, taken as UTC midnight as JavaScript does), and
    /// date-times without an offset (taken as UTC).
    pub fn parse(text: &str) -> Option<Self> {
        if let Ok(at) = OffsetDateTime::parse(text, &Rfc3339) {
            return Some(Self::from_offset(at));
        }
        let date_only = format_description!("[year]-[month]-[day]");
        if let Ok(day) = CalendarDate::parse(text, &date_only) {
            return Some(Self::from_offset(day.midnight().assume_utc()));
        }
        let naive = format_description!(
            version = 2,
            "[year]-[month]-[day]T[hour]:[minute][optional [:[second][optional [.[subsecond]]]]]"
        );
        PrimitiveDateTime::parse(text, &naive).ok().map(|at| Self::from_offset(at.assume_utc()))
    }

    fn from_offset(at: OffsetDateTime) -> Self {
        Date((at.to_offset(UtcOffset::UTC).unix_timestamp_nanos() / 1_000_000) as i64)
    }

    /// The ISO-8601 form JavaScript's `toISOString` produces.
    pub fn to_iso_string(self) -> String {
        let Ok(at) = OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.0) * 1_000_000) else {
            return self.0.to_string();
        };
        let mut out = String::with_capacity(27);
        let year = at.year();
        // JavaScript switches to six-digit signed years outside 0000..=9999.
        if (0..=9999).contains(&year) {
            push_digits(&mut out, year as u32, 4);
        } else {
            out.push(if year < 0 { '-' } else { '+' });
            push_digits(&mut out, year.unsigned_abs(), 6);
        }
        out.push('-');
        push_digits(&mut out, u32::from(u8::from(at.month())), 2);
        out.push('-');
        push_digits(&mut out, u32::from(at.day()), 2);
        out.push('T');
        push_digits(&mut out, u32::from(at.hour()), 2);
        out.push(':');
        push_digits(&mut out, u32::from(at.minute()), 2);
        out.push(':');
        push_digits(&mut out, u32::from(at.second()), 2);
        out.push('.');
        push_digits(&mut out, u32::from(at.millisecond()), 3);
        out.push('Z');
        out
    }
}

/// Appends `value` zero-padded to `width` digits (without `format!`, which dominates the cost of
/// a bulk insert of dates otherwise).
fn push_digits(out: &mut String, mut value: u32, width: usize) {
    let mut buf = [b'0'; 10];
    let mut start = buf.len();
    while value > 0 {
        start -= 1;
        buf[start] = b'0' + (value % 10) as u8;
        value /= 10;
    }
    let start = start.min(buf.len() - width);
    out.push_str(std::str::from_utf8(&buf[start..]).expect("ASCII digits"));
}

impl std::fmt::Display for Date {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_iso_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_iso_strings_like_javascript() {
        let d = Date::parse("2025-03-10T12:00:00.000Z").unwrap();
        assert_eq!(d.millis(), 1_741_608_000_000);
        assert_eq!(d.to_iso_string(), "2025-03-10T12:00:00.000Z");
    }

    #[test]
    fn accepts_date_only_offsets_and_naive_forms() {
        assert_eq!(Date::parse("2021-06-15").unwrap().to_iso_string(), "2021-06-15T00:00:00.000Z");
        assert_eq!(Date::parse("2021-06-15T02:00:00+02:00").unwrap().to_iso_string(), "2021-06-15T00:00:00.000Z");
        assert_eq!(Date::parse("2021-06-15T10:20").unwrap().to_iso_string(), "2021-06-15T10:20:00.000Z");
        assert_eq!(Date::parse("2021-06-15T10:20:30.5").unwrap().to_iso_string(), "2021-06-15T10:20:30.500Z");
        assert!(Date::parse("yesterday").is_none());
        assert!(Date::parse("2021-13-01").is_none());
    }

    #[test]
    fn epoch_and_extended_years() {
        assert_eq!(Date::from_millis(0).to_iso_string(), "1970-01-01T00:00:00.000Z");
        assert_eq!(Date::from_millis(-1).to_iso_string(), "1969-12-31T23:59:59.999Z");
    }
}
