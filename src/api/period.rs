//! Retention periods in calendar units.
//!
//! A privacy statement says "6 months" and means a calendar period: counted
//! back from 28 November it ends on 28 May, not 180 days earlier. So a period
//! is kept as years, months, weeks and days, and applied to a civil date in a
//! time zone, never converted to a fixed number of seconds.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use jiff::{Span, Zoned};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest sensible period, in years: beyond it a typo is likelier than
/// a real retention rule. The operator reports a longer one as invalid
/// (`validate::policy`); parsing accepts it, so that whatever the API server
/// accepted can always be read back.
pub const MAX_YEARS: u32 = 100;

/// The most digits each unit takes (years, months, weeks, days): the same
/// bounds as the CRD's CEL rule, and small enough that any period stays
/// within the calendar that jiff can count on.
const MAX_DIGITS: [usize; 4] = [3, 4, 4, 5];

/// A retention period in calendar units: `90d`, `2w`, `6mo`, `1y`, `3 years`,
/// `1y6mo`, or an ISO 8601 date duration such as `P6M` or `P1Y6M`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RetentionPeriod {
    years: u32,
    months: u32,
    weeks: u32,
    days: u32,
}

/// Why a text is not a retention period; the message tells how to write one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeriodError {
    #[error("a retention period cannot be empty; write a number and a calendar unit, like 90d, 6mo or 1y")]
    Empty,
    #[error(
        "'{0}' is ambiguous: 'm' could mean minutes or months; write 'mo' or 'months' for months \
         (retention periods are counted in days, weeks, months and years)"
    )]
    AmbiguousMinutesOrMonths(String),
    #[error("'{unit}' in '{text}' is not a calendar unit; use d (days), w (weeks), mo (months) or y (years)")]
    UnknownUnit { text: String, unit: String },
    #[error("'{0}' has a number without a unit; write for example 90d, 6mo or 1y")]
    MissingUnit(String),
    #[error("'{0}' has a unit without a number; write for example 90d, 6mo or 1y")]
    MissingNumber(String),
    #[error("'{0}' names a unit twice or out of order; write each unit once, largest first, like 1y6mo or 2w3d")]
    UnitOrder(String),
    #[error(
        "'{0}' is an ISO 8601 duration with a time part; retention periods use only Y, M, W and D (for example P6M)"
    )]
    IsoTimePart(String),
    #[error("'{0}' is not an ISO 8601 date duration; write for example P90D, P6M or P1Y6M")]
    BadIso(String),
    #[error("a retention period must be longer than zero ('{0}')")]
    Zero(String),
    #[error("'{0}' has too many digits in one unit (at most 999 years, 9999 months, 9999 weeks or 99999 days)")]
    TooLong(String),
}

impl RetentionPeriod {
    /// A period of whole days.
    pub const fn days(days: u32) -> Self {
        Self { years: 0, months: 0, weeks: 0, days }
    }

    /// A period of whole calendar months.
    pub const fn months(months: u32) -> Self {
        Self { years: 0, months, weeks: 0, days: 0 }
    }

    /// A period of whole calendar years.
    pub const fn years(years: u32) -> Self {
        Self { years, months: 0, weeks: 0, days: 0 }
    }

    /// The period as a jiff span, for calendar arithmetic.
    pub fn to_span(self) -> Span {
        Span::new()
            .years(i64::from(self.years))
            .months(i64::from(self.months))
            .weeks(i64::from(self.weeks))
            .days(i64::from(self.days))
    }

    /// The instant this period before `now`, counted on the calendar of
    /// `now`'s time zone: months keep the day of the month, clamped to the
    /// month's last day (31 March minus one month is 28 or 29 February).
    pub fn before(self, now: &Zoned) -> Result<Zoned, jiff::Error> {
        now.checked_sub(self.to_span())
    }

    /// The instant this period after `start`, on the same calendar rules.
    pub fn after(self, start: &Zoned) -> Result<Zoned, jiff::Error> {
        start.checked_add(self.to_span())
    }

    fn check(self, text: &str) -> Result<Self, PeriodError> {
        if self == Self::default() {
            return Err(PeriodError::Zero(text.to_owned()));
        }
        Ok(self)
    }

    /// Whether the period is longer than [`MAX_YEARS`].
    pub fn is_implausibly_long(self) -> bool {
        let months = u64::from(self.years) * 12 + u64::from(self.months);
        let days = u64::from(self.weeks) * 7 + u64::from(self.days);
        months + days / 30 > u64::from(MAX_YEARS) * 12
    }

    /// Sets one unit from its digits; units come largest first, once each.
    fn set(&mut self, unit: Unit, digits: &str, last: &mut Option<Unit>, text: &str) -> Result<(), PeriodError> {
        if last.is_some_and(|l| l as u8 >= unit as u8) {
            return Err(PeriodError::UnitOrder(text.to_owned()));
        }
        if digits.len() > MAX_DIGITS[unit as usize] {
            return Err(PeriodError::TooLong(text.to_owned()));
        }
        let n: u32 = digits.parse().map_err(|_| PeriodError::TooLong(text.to_owned()))?;
        match unit {
            Unit::Years => self.years = n,
            Unit::Months => self.months = n,
            Unit::Weeks => self.weeks = n,
            Unit::Days => self.days = n,
        }
        *last = Some(unit);
        Ok(())
    }

    fn parse_iso(text: &str) -> Result<Self, PeriodError> {
        let body = &text[1..];
        if body.contains(['T', 't']) {
            return Err(PeriodError::IsoTimePart(text.to_owned()));
        }
        let mut period = Self::default();
        let mut digits = String::new();
        let mut last = None;
        for c in body.chars() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            let unit = match c {
                'Y' | 'y' => Unit::Years,
                'M' | 'm' => Unit::Months,
                'W' | 'w' => Unit::Weeks,
                'D' | 'd' => Unit::Days,
                _ => return Err(PeriodError::BadIso(text.to_owned())),
            };
            if digits.is_empty() {
                return Err(PeriodError::BadIso(text.to_owned()));
            }
            period.set(unit, &digits, &mut last, text).map_err(|e| match e {
                PeriodError::UnitOrder(_) => PeriodError::BadIso(text.to_owned()),
                other => other,
            })?;
            digits.clear();
        }
        if !digits.is_empty() || last.is_none() {
            return Err(PeriodError::BadIso(text.to_owned()));
        }
        period.check(text)
    }

    fn parse_friendly(text: &str) -> Result<Self, PeriodError> {
        let mut period = Self::default();
        let mut last = None;
        let mut rest = text.trim_start();
        if rest.is_empty() {
            return Err(PeriodError::Empty);
        }
        while !rest.is_empty() {
            let n_len = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
            if n_len == 0 {
                return Err(PeriodError::MissingNumber(text.to_owned()));
            }
            let digits = &rest[..n_len];
            rest = rest[n_len..].trim_start();
            let u_len = rest.find(|c: char| !c.is_ascii_alphabetic()).unwrap_or(rest.len());
            if u_len == 0 {
                return Err(PeriodError::MissingUnit(text.to_owned()));
            }
            let word = &rest[..u_len];
            let unit = match word.to_ascii_lowercase().as_str() {
                "d" | "day" | "days" => Unit::Days,
                "w" | "week" | "weeks" => Unit::Weeks,
                "mo" | "month" | "months" => Unit::Months,
                "y" | "yr" | "yrs" | "year" | "years" => Unit::Years,
                "m" => return Err(PeriodError::AmbiguousMinutesOrMonths(text.to_owned())),
                _ => {
                    return Err(PeriodError::UnknownUnit { text: text.to_owned(), unit: word.to_owned() });
                }
            };
            period.set(unit, digits, &mut last, text)?;
            rest = rest[u_len..].trim_start();
        }
        period.check(text)
    }
}

#[derive(Clone, Copy)]
enum Unit {
    Years = 0,
    Months = 1,
    Weeks = 2,
    Days = 3,
}

impl FromStr for RetentionPeriod {
    type Err = PeriodError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(PeriodError::Empty);
        }
        if trimmed.starts_with(['P', 'p']) { Self::parse_iso(trimmed) } else { Self::parse_friendly(trimmed) }
    }
}

impl RetentionPeriod {
    /// The period in words, as a privacy statement or an access export
    /// says it: `1 year and 6 months`, `90 days`.
    pub fn in_words(self) -> String {
        let parts: Vec<String> =
            [(self.years, "year"), (self.months, "month"), (self.weeks, "week"), (self.days, "day")]
                .into_iter()
                .filter(|(n, _)| *n != 0)
                .map(|(n, unit)| format!("{n} {unit}{}", if n == 1 { "" } else { "s" }))
                .collect();
        match parts.split_last() {
            None => "0 days".to_owned(),
            Some((last, [])) => last.clone(),
            Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
        }
    }
}

/// The canonical short form: `1y6mo`, `90d`, `2w3d`.
impl fmt::Display for RetentionPeriod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, unit) in [(self.years, "y"), (self.months, "mo"), (self.weeks, "w"), (self.days, "d")] {
            if n != 0 {
                write!(f, "{n}{unit}")?;
            }
        }
        Ok(())
    }
}

impl Serialize for RetentionPeriod {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for RetentionPeriod {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// The schema mirrors the parser closely enough for the API server to reject
/// the common mistakes with the same words; the parser stays the authority.
impl JsonSchema for RetentionPeriod {
    fn schema_name() -> Cow<'static, str> {
        "RetentionPeriod".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "maxLength": 64,
            "x-kubernetes-validations": [
                {
                    "rule": "!self.matches('^\\\\s*[0-9]+\\\\s*[mM]\\\\s*$')",
                    "message": "'m' is ambiguous (minutes or months): write 'mo' or 'months' for months"
                },
                {
                    "rule": format!("self.matches('{}')", PERIOD_PATTERN.replace('\\', "\\\\")),
                    "message": "must be numbers with calendar units, each unit once and largest first, like 90d, 2w, 6mo, 1y6mo or 3 years, or an ISO 8601 date duration like P6M"
                },
                {
                    "rule": "self.matches('[1-9]')",
                    "message": "a retention period must be longer than zero"
                }
            ]
        })
    }
}

/// The forms the API server accepts, as an RE2 pattern (CEL `matches`):
/// each unit at most once, largest first, with the parser's digit bounds.
/// Every text it accepts that holds a non-zero digit and is not a bare "m"
/// parses (a property test below holds the two together).
pub const PERIOD_PATTERN: &str = r"^\s*(P([0-9]{1,3}Y)?([0-9]{1,4}M)?([0-9]{1,4}W)?([0-9]{1,5}D)?|([0-9]{1,3}\s*(y|yrs?|years?)\s*)?([0-9]{1,4}\s*(mo|months?)\s*)?([0-9]{1,4}\s*(w|weeks?)\s*)?([0-9]{1,5}\s*(d|days?)\s*)?)\s*$";

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;
    use proptest::prelude::*;

    fn p(text: &str) -> RetentionPeriod {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn at(y: i16, m: i8, d: i8, tz: &str) -> Zoned {
        date(y, m, d).at(3, 0, 0, 0).in_tz(tz).unwrap()
    }

    #[test]
    fn parses_the_units_of_a_retention_table() {
        assert_eq!(p("90d"), RetentionPeriod::days(90));
        assert_eq!(p("90 days"), RetentionPeriod::days(90));
        assert_eq!(p("6mo"), RetentionPeriod::months(6));
        assert_eq!(p("6 months"), RetentionPeriod::months(6));
        assert_eq!(p("1 month"), RetentionPeriod::months(1));
        assert_eq!(p("1y"), RetentionPeriod::years(1));
        assert_eq!(p("3 years"), RetentionPeriod::years(3));
        assert_eq!(p("2w"), RetentionPeriod { weeks: 2, ..Default::default() });
        assert_eq!(p("1y6mo"), RetentionPeriod { years: 1, months: 6, ..Default::default() });
        assert_eq!(p("1 year 6 months"), p("1y6mo"));
    }

    #[test]
    fn parses_iso_8601_date_durations() {
        assert_eq!(p("P6M"), RetentionPeriod::months(6));
        assert_eq!(p("P90D"), RetentionPeriod::days(90));
        assert_eq!(p("P1Y6M"), p("1y6mo"));
        assert_eq!(p("P2W"), p("2w"));
    }

    #[test]
    fn rejects_a_bare_m_as_ambiguous() {
        for text in ["6m", "6M", "6 m"] {
            let err = text.parse::<RetentionPeriod>().unwrap_err();
            assert!(matches!(err, PeriodError::AmbiguousMinutesOrMonths(_)), "{text}: {err}");
            assert!(err.to_string().contains("write 'mo'"), "{err}");
        }
    }

    #[test]
    fn rejects_what_is_not_a_calendar_period() {
        for (text, needle) in [
            ("", "cannot be empty"),
            ("90", "without a unit"),
            ("d", "without a number"),
            ("6h", "not a calendar unit"),
            ("PT6H", "time part"),
            ("P6", "not an ISO 8601"),
            ("P", "not an ISO 8601"),
            ("P1M1Y", "not an ISO 8601"),
            ("0d", "longer than zero"),
            ("P0D", "longer than zero"),
            ("6mo6mo", "a unit twice or out of order"),
            ("6mo1y", "a unit twice or out of order"),
            ("1000y", "too many digits"),
            ("99999999999d", "too many digits"),
            ("-6mo", "without a number"),
        ] {
            let err = text.parse::<RetentionPeriod>().unwrap_err().to_string();
            assert!(err.contains(needle), "{text:?} gave {err:?}, wanted {needle:?}");
        }
    }

    #[test]
    fn six_months_is_a_calendar_period_not_180_days() {
        let now = at(2026, 11, 28, "Europe/Amsterdam");
        let cutoff = p("6mo").before(&now).unwrap();
        assert_eq!(cutoff.date(), date(2026, 5, 28));
        assert_ne!(cutoff.date(), p("180d").before(&now).unwrap().date());
    }

    #[test]
    fn month_arithmetic_clamps_to_the_last_day_of_a_shorter_month() {
        assert_eq!(p("1mo").before(&at(2026, 3, 31, "UTC")).unwrap().date(), date(2026, 2, 28));
        assert_eq!(p("1mo").before(&at(2028, 3, 31, "UTC")).unwrap().date(), date(2028, 2, 29));
        assert_eq!(p("6mo").before(&at(2026, 8, 31, "UTC")).unwrap().date(), date(2026, 2, 28));
        assert_eq!(p("1mo").after(&at(2026, 1, 31, "UTC")).unwrap().date(), date(2026, 2, 28));
    }

    #[test]
    fn a_year_before_a_leap_day_is_the_28th_of_february() {
        assert_eq!(p("1y").before(&at(2028, 2, 29, "UTC")).unwrap().date(), date(2027, 2, 28));
        assert_eq!(p("4y").before(&at(2028, 2, 29, "UTC")).unwrap().date(), date(2024, 2, 29));
        assert_eq!(p("P1Y").after(&at(2024, 2, 29, "UTC")).unwrap().date(), date(2025, 2, 28));
    }

    #[test]
    fn days_keep_the_wall_clock_across_a_dst_change() {
        // 29 March 2026 is the spring-forward day in Amsterdam: 90 days back
        // from 3:00 in summer time is still 3:00, in winter time.
        let now = at(2026, 6, 27, "Europe/Amsterdam");
        let cutoff = p("90d").before(&now).unwrap();
        assert_eq!(cutoff.date(), date(2026, 3, 29));
        assert_eq!(cutoff.time(), now.time());
    }

    #[test]
    fn long_periods_parse_but_are_flagged() {
        assert!(p("101y").is_implausibly_long());
        assert!(!p("100y").is_implausibly_long());
        assert!(!p("3y").is_implausibly_long());
    }

    proptest! {
        /// Whatever the API server accepts, the operator can read back: a
        /// typed watch never chokes on a period.
        #[test]
        fn every_period_the_api_server_accepts_parses(text in proptest::string::string_regex(PERIOD_PATTERN.trim_start_matches('^').trim_end_matches('$')).unwrap()) {
            let ambiguous = regex::Regex::new(r"^\s*[0-9]+\s*[mM]\s*$").unwrap().is_match(&text);
            prop_assume!(text.contains(|c: char| ('1'..='9').contains(&c)) && !ambiguous);
            let period = text.parse::<RetentionPeriod>();
            prop_assert!(period.is_ok(), "{text:?}: {period:?}");
            let now = at(2026, 11, 28, "Europe/Amsterdam");
            prop_assert!(period.unwrap().before(&now).is_ok(), "{text:?} leaves the calendar");
        }

        #[test]
        fn display_round_trips(y in 0u32..999, mo in 0u32..9999, w in 0u32..9999, d in 0u32..99999) {
            prop_assume!(y + mo + w + d > 0);
            let period = RetentionPeriod { years: y, months: mo, weeks: w, days: d };
            let text = period.to_string();
            prop_assert_eq!(text.parse::<RetentionPeriod>().unwrap(), period);
            let json = serde_json::to_string(&period).unwrap();
            prop_assert_eq!(serde_json::from_str::<RetentionPeriod>(&json).unwrap(), period);
        }

        #[test]
        fn iso_and_short_forms_agree(y in 0u32..5, mo in 0u32..24, d in 0u32..400) {
            prop_assume!(y + mo + d > 0);
            let iso: RetentionPeriod = format!("P{y}Y{mo}M{d}D").parse().unwrap();
            let short: RetentionPeriod = format!("{y}y{mo}mo{d}d").parse().unwrap();
            prop_assert_eq!(iso, short);
        }

        #[test]
        fn a_cutoff_is_never_after_now(days in 1u32..40_000, months in 0u32..1200,
                                       y in 1990i16..2090, m in 1i8..=12, d in 1i8..=28) {
            let now = at(y, m, d, "Europe/Amsterdam");
            let period = RetentionPeriod { days, months: months % 1200, ..Default::default() };
            if let Ok(cutoff) = period.before(&now) {
                prop_assert!(cutoff < now);
            }
        }

        #[test]
        fn months_back_then_forth_lands_on_or_before_the_start(months in 1u32..600,
                                       y in 1990i16..2090, m in 1i8..=12, d in 1i8..=31) {
            prop_assume!(date(y, m, 1).days_in_month() >= d);
            let now = at(y, m, d, "UTC");
            let period = RetentionPeriod::months(months);
            let back = period.before(&now).unwrap();
            let forth = period.after(&back).unwrap();
            // Clamping can only move a day back (31st -> 30th), never forward.
            prop_assert!(forth <= now);
            prop_assert!(now.date().day() - forth.date().day() <= 3);
        }
    }

    #[test]
    fn a_period_reads_in_words() {
        let words = |s: &str| s.parse::<RetentionPeriod>().unwrap().in_words();
        assert_eq!(words("1y6mo"), "1 year and 6 months");
        assert_eq!(words("90d"), "90 days");
        assert_eq!(words("P1Y2M1W3D"), "1 year, 2 months, 1 week and 3 days");
    }
}
