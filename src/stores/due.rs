//! What "due" means to a store: the run's [`Cutoff`], turned into bounds
//! for each kind of time a record can hold (an instant, a civil time written
//! in some zone, a whole day, a number of seconds since 1970), and strict
//! reading of times held as text.
//!
//! The calendar arithmetic is in [`crate::api::calendar`]; this module only
//! applies it. A value that cannot be read exactly is never guessed at: it
//! is [`UnreadableReason`] and the record is kept.

use std::fmt;
use std::sync::OnceLock;

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{Span, Timestamp};
use regex::Regex;

use crate::api::account::UnreadableReason;
use crate::api::calendar::{self, CalendarError};
use crate::api::policy::{PeriodUnit, TimeFormat};

/// The instant before which records are due, fixed once per run, with the
/// run's start and the policy's time zone, from which per-record periods
/// are counted.
///
/// Only the planner (`plan`) should make one: it computes the cutoff from
/// the policy's period on the policy's calendar and records it before any
/// delete. Stores take it as given. Tests and benchmarks may build one with
/// [`Cutoff::planned`] to stand in for the planner.
#[derive(Clone)]
pub struct Cutoff {
    at: Timestamp,
    run_started: Timestamp,
    zone: TimeZone,
}

impl Cutoff {
    /// A cutoff for a run that started at `run_started`, on the UTC
    /// calendar; records whose time is before `at` are due. `None` when
    /// `at` lies after `run_started`, which no retention period can produce.
    pub fn planned(at: Timestamp, run_started: Timestamp) -> Option<Self> {
        Self::planned_in(at, run_started, TimeZone::UTC)
    }

    /// [`Cutoff::planned`] on the calendar of `zone`.
    pub fn planned_in(at: Timestamp, run_started: Timestamp, zone: TimeZone) -> Option<Self> {
        (at <= run_started).then_some(Self { at, run_started, zone })
    }

    /// Records whose time is before this instant are due.
    pub fn at(&self) -> Timestamp {
        self.at
    }

    /// The instant the run started, from which per-record periods count.
    pub fn run_started(&self) -> Timestamp {
        self.run_started
    }

    /// The calendar periods are counted on.
    pub fn zone(&self) -> &TimeZone {
        &self.zone
    }

    /// The cutoff for records that carry their own period of `amount`
    /// `unit`s, counted on the same calendar from the same start. `None` for
    /// a period that is zero, negative or longer than 100 years: such
    /// records are [`UnreadableReason::BadPeriod`].
    pub fn for_record_period(&self, amount: i64, unit: PeriodUnit) -> Option<Result<Self, CalendarError>> {
        if !(1..=max_record_period(unit)).contains(&amount) {
            return None;
        }
        let span = match unit {
            PeriodUnit::Days => Span::new().days(amount),
            PeriodUnit::Months => Span::new().months(amount),
            PeriodUnit::Years => Span::new().years(amount),
        };
        Some(calendar::cutoff(span, self.run_started, &self.zone).map(|at| Self {
            at,
            run_started: self.run_started,
            zone: self.zone.clone(),
        }))
    }

    /// The cutoff for records that carry their own period as a calendar
    /// period (an object's period tag), on the same calendar from the same
    /// start. `None` for a period longer than 100 years.
    pub fn for_period(&self, period: crate::api::RetentionPeriod) -> Option<Result<Self, CalendarError>> {
        if period.is_implausibly_long() {
            return None;
        }
        Some(calendar::cutoff(period.to_span(), self.run_started, &self.zone).map(|at| Self {
            at,
            run_started: self.run_started,
            zone: self.zone.clone(),
        }))
    }

    /// The bounds for records whose civil times and dates were written in
    /// `written_in` (instants and numbers need no zone).
    pub fn bounds(&self, written_in: Option<&TimeZone>) -> Result<Bounds, CalendarError> {
        let (civil, day) = match written_in {
            Some(zone) => (Some(calendar::civil_cutoff(self.at, zone)?), Some(calendar::date_cutoff(self.at, zone)?)),
            None => (None, None),
        };
        Ok(Bounds { instant: self.at, civil, day })
    }
}

impl PartialEq for Cutoff {
    fn eq(&self, other: &Self) -> bool {
        self.at == other.at
            && self.run_started == other.run_started
            && self.zone.iana_name() == other.zone.iana_name()
            && self.zone.to_offset(self.at) == other.zone.to_offset(self.at)
    }
}

impl fmt::Debug for Cutoff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cutoff")
            .field("at", &self.at)
            .field("run_started", &self.run_started)
            .field("zone", &self.zone.iana_name().unwrap_or("fixed offset"))
            .finish()
    }
}

/// The largest per-record period accepted in a unit: 100 years. Longer ones
/// are more likely garbage than a retention rule.
pub fn max_record_period(unit: PeriodUnit) -> i64 {
    match unit {
        PeriodUnit::Days => 36_525,
        PeriodUnit::Months => 1_200,
        PeriodUnit::Years => 100,
    }
}

/// For one cutoff: the bound below which each kind of record time is due.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bounds {
    /// Instants before this are due.
    pub instant: Timestamp,
    /// Civil times before this are due; `None` when no zone is known for
    /// them.
    pub civil: Option<DateTime>,
    /// Dates before this are due (the whole day lies before the cutoff).
    pub day: Option<Date>,
}

/// A record's time, as read from the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordTime {
    /// A point in time.
    Instant(Timestamp),
    /// A wall-clock time without a zone.
    Civil(DateTime),
    /// A whole day without a zone.
    Day(Date),
}

/// How a record stands against the bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Judgement {
    /// Past the cutoff.
    Due,
    /// Not yet.
    NotDue,
    /// Cannot be judged.
    Unreadable(UnreadableReason),
}

impl Bounds {
    /// Whether a record with this time is due.
    pub fn judge(&self, time: &RecordTime) -> Judgement {
        let due = |yes: bool| if yes { Judgement::Due } else { Judgement::NotDue };
        match time {
            RecordTime::Instant(t) => due(*t < self.instant),
            RecordTime::Civil(v) => {
                self.civil.map_or(Judgement::Unreadable(UnreadableReason::NoTimeZone), |c| due(*v < c))
            }
            RecordTime::Day(d) => self.day.map_or(Judgement::Unreadable(UnreadableReason::NoTimeZone), |c| due(*d < c)),
        }
    }
}

fn iso_shape() -> &'static Regex {
    static SHAPE: OnceLock<Regex> = OnceLock::new();
    SHAPE.get_or_init(|| {
        Regex::new(
            r"^(?<date>[0-9]{4}-[0-9]{2}-[0-9]{2})(?:[Tt ](?<time>[0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:[.,][0-9]{1,9})?)?)(?<offset>[Zz]|[+-][0-9]{2}(?::?[0-9]{2})?)?)?$",
        )
        .expect("a valid pattern")
    })
}

/// Reads a time held as text, strictly: ISO 8601 and RFC 3339 forms
/// (`2026-05-28`, `2026-05-28 14:03:00`, `2026-05-28T14:03:00.123+02:00`,
/// `...Z`, offsets with or without a colon) and RFC 2822 (`Thu, 28 May 2026
/// 14:03:00 +0200`). Numbers are read only as `format` says. Anything else,
/// an impossible date (30 February) among it, is unreadable.
pub fn read_text(text: &str, format: TimeFormat) -> Result<RecordTime, UnreadableReason> {
    let text = text.trim();
    if let Some(n) = number(text) {
        return read_number(n, format);
    }
    if let Some(m) = iso_shape().captures(text) {
        let date: Date = m["date"].parse().map_err(|_| UnreadableReason::NotATime)?;
        let Some(time) = m.name("time") else { return Ok(RecordTime::Day(date)) };
        let civil: DateTime =
            format!("{date}T{}", time.as_str().replace(',', ".")).parse().map_err(|_| UnreadableReason::NotATime)?;
        let Some(offset) = m.name("offset") else { return Ok(RecordTime::Civil(civil)) };
        let offset = match offset.as_str() {
            "Z" | "z" => "+00:00".to_owned(),
            o => o.to_owned(),
        };
        return format!("{civil}{offset}")
            .parse::<Timestamp>()
            .map(RecordTime::Instant)
            .map_err(|_| UnreadableReason::NotATime);
    }
    jiff::fmt::rfc2822::parse(text).map(|z| RecordTime::Instant(z.timestamp())).map_err(|_| UnreadableReason::NotATime)
}

/// A plain decimal number: digits with at most one point, maybe a minus.
fn number(text: &str) -> Option<&str> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    let plain = !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit() || c == '.')
        && digits.matches('.').count() <= 1
        && digits.chars().any(|c| c.is_ascii_digit());
    plain.then_some(text)
}

/// Reads a number of seconds or milliseconds since 1970, as `format` says,
/// exactly (no floating point). Zero and negative numbers are not times:
/// legacy schemas put 0 for "not set".
pub fn read_number(text: &str, format: TimeFormat) -> Result<RecordTime, UnreadableReason> {
    let digits_per_unit: usize = match format {
        TimeFormat::Native => return Err(UnreadableReason::AmbiguousNumber),
        TimeFormat::UnixSeconds => 9,
        TimeFormat::UnixMilliseconds => 6,
    };
    if text.starts_with('-') {
        return Err(UnreadableReason::NotATime);
    }
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let fraction = fraction.trim_end_matches('0');
    if fraction.len() > digits_per_unit || whole.len() > 15 {
        return Err(UnreadableReason::NotATime);
    }
    let whole: i128 = if whole.is_empty() { 0 } else { whole.parse().map_err(|_| UnreadableReason::NotATime)? };
    let fraction: i128 = format!("{fraction:0<digits_per_unit$}").parse().map_err(|_| UnreadableReason::NotATime)?;
    let nanos = whole * 10i128.pow(digits_per_unit as u32) + fraction;
    if nanos <= 0 {
        return Err(UnreadableReason::NotATime);
    }
    Timestamp::from_nanosecond(nanos).map(RecordTime::Instant).map_err(|_| UnreadableReason::NotATime)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn reads_the_iso_forms_real_tables_hold() {
        let n = TimeFormat::Native;
        assert_eq!(read_text("2026-05-28", n), Ok(RecordTime::Day(date(2026, 5, 28))));
        assert_eq!(read_text("2026-05-28 14:03", n), Ok(RecordTime::Civil(date(2026, 5, 28).at(14, 3, 0, 0))));
        assert_eq!(
            read_text("2026-05-28T14:03:00.5", n),
            Ok(RecordTime::Civil(date(2026, 5, 28).at(14, 3, 0, 500_000_000)))
        );
        assert_eq!(read_text("2026-05-28T14:03:00Z", n), Ok(RecordTime::Instant(ts("2026-05-28T14:03:00Z"))));
        assert_eq!(read_text("2026-05-28 14:03:00+0200", n), Ok(RecordTime::Instant(ts("2026-05-28T12:03:00Z"))));
        assert_eq!(read_text("2026-05-28 14:03:00+00:00", n), Ok(RecordTime::Instant(ts("2026-05-28T14:03:00Z"))));
        assert_eq!(
            read_text("2026-05-28T14:03:00.123456789-05", n),
            Ok(RecordTime::Instant(ts("2026-05-28T19:03:00.123456789Z")))
        );
        assert_eq!(
            read_text("Thu, 28 May 2026 14:03:00 +0200", n),
            Ok(RecordTime::Instant(ts("2026-05-28T12:03:00Z")))
        );
    }

    #[test]
    fn refuses_what_is_not_exactly_a_time() {
        let n = TimeFormat::Native;
        for text in [
            "2026-02-30",
            "2026-02-30 10:00:00",
            "2026-13-01",
            "0000-00-00 00:00:00",
            "yesterday",
            "now",
            "",
            "28/05/2026",
            "2026-05-28 25:00:00",
        ] {
            assert_eq!(read_text(text, n), Err(UnreadableReason::NotATime), "{text:?}");
        }
        for text in ["1716897780", "1716897780000", "2460000.5"] {
            assert_eq!(read_text(text, n), Err(UnreadableReason::AmbiguousNumber), "{text:?}");
        }
    }

    #[test]
    fn numbers_are_read_only_as_declared() {
        assert_eq!(
            read_text("1716897780", TimeFormat::UnixSeconds),
            Ok(RecordTime::Instant(ts("2024-05-28T12:03:00Z")))
        );
        assert_eq!(
            read_text("1716897780123", TimeFormat::UnixMilliseconds),
            Ok(RecordTime::Instant(ts("2024-05-28T12:03:00.123Z")))
        );
        assert_eq!(read_text("0", TimeFormat::UnixSeconds), Err(UnreadableReason::NotATime));
        assert_eq!(read_text("-5", TimeFormat::UnixSeconds), Err(UnreadableReason::NotATime));
        assert_eq!(
            read_text("1716897780.25", TimeFormat::UnixSeconds),
            Ok(RecordTime::Instant(ts("2024-05-28T12:03:00.25Z")))
        );
        assert_eq!(
            read_text("1.0000000001", TimeFormat::UnixSeconds),
            Err(UnreadableReason::NotATime),
            "finer than a nanosecond"
        );
    }

    #[test]
    fn civil_times_need_a_zone() {
        let cutoff = Cutoff::planned(ts("2026-06-01T00:00:00Z"), ts("2026-06-01T00:00:00Z")).unwrap();
        let none = cutoff.bounds(None).unwrap();
        let old = RecordTime::Civil(date(2020, 1, 1).at(0, 0, 0, 0));
        assert_eq!(none.judge(&old), Judgement::Unreadable(UnreadableReason::NoTimeZone));
        let ny = cutoff.bounds(Some(&TimeZone::get("America/New_York").unwrap())).unwrap();
        assert_eq!(ny.judge(&old), Judgement::Due);
        // 31 May 21:00 in New York is 1 June 01:00Z: after the cutoff.
        assert_eq!(ny.judge(&RecordTime::Civil(date(2026, 5, 31).at(21, 0, 0, 0))), Judgement::NotDue);
        assert_eq!(ny.judge(&RecordTime::Civil(date(2026, 5, 31).at(19, 59, 0, 0))), Judgement::Due);
        // 31 May is not wholly before midnight UTC in New York.
        assert_eq!(ny.judge(&RecordTime::Day(date(2026, 5, 31))), Judgement::NotDue);
        assert_eq!(ny.judge(&RecordTime::Day(date(2026, 5, 30))), Judgement::Due);
    }

    #[test]
    fn record_periods_count_on_the_policys_calendar() {
        let ams = TimeZone::get("Europe/Amsterdam").unwrap();
        let start = ts("2026-11-28T01:30:00Z");
        let c = Cutoff::planned_in(start, start, ams).unwrap();
        let six = c.for_record_period(6, PeriodUnit::Months).unwrap().unwrap();
        assert_eq!(six.at(), ts("2026-05-28T00:30:00.000000001Z"));
        assert!(c.for_record_period(0, PeriodUnit::Days).is_none());
        assert!(c.for_record_period(-1, PeriodUnit::Days).is_none());
        assert!(c.for_record_period(101, PeriodUnit::Years).is_none());
    }
}
