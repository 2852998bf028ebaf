//! Dates written in object keys and file names, like `calls/{yyyy}/{mm}/{dd}/`
//! or `access-{yyyy}-{mm}-{dd}.log`.
//!
//! A name names a whole period (a day, a month), and any record in it may be
//! from the period's last instant. So a name is due only when the period's
//! end is at or before the cutoff: `calls/2024/05/` is due for a cutoff of
//! 1 June 2024 00:00 UTC, not for one of 31 May 12:00. Dates are read as UTC.
//! A name that does not match the pattern, or names an impossible date
//! (month 13, 30 February), is never due.

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};
use regex::Regex;

/// A compiled date pattern.
#[derive(Clone, Debug)]
pub struct NameDate {
    regex: Regex,
    /// Capture group of each unit, when present: year, month, day, hour.
    groups: [Option<usize>; 4],
}

const UNITS: [(&str, &str); 4] =
    [("{yyyy}", "([0-9]{4})"), ("{mm}", "([0-9]{2})"), ("{dd}", "([0-9]{2})"), ("{hh}", "([0-9]{2})")];

impl NameDate {
    /// Compiles `pattern`. With `whole` the pattern must match the whole
    /// name (file names); otherwise the start of it (key prefixes), and a
    /// pattern that ends in a placeholder must not be followed by a digit.
    pub fn compile(pattern: &str, whole: bool) -> Result<Self, String> {
        let mut regex = String::from("^");
        let mut groups = [None; 4];
        let mut group = 0;
        let mut rest = pattern;
        while !rest.is_empty() {
            let next = UNITS.iter().enumerate().filter_map(|(i, (p, _))| rest.find(p).map(|at| (at, i))).min();
            let Some((at, unit)) = next else {
                regex.push_str(&regex::escape(rest));
                break;
            };
            regex.push_str(&regex::escape(&rest[..at]));
            if groups[unit].is_some() {
                return Err(format!("the date pattern names {} twice", UNITS[unit].0));
            }
            group += 1;
            groups[unit] = Some(group);
            regex.push_str(UNITS[unit].1);
            rest = &rest[at + UNITS[unit].0.len()..];
        }
        if pattern.contains('{') && regex.contains("\\{") {
            return Err("the date pattern has a placeholder other than {yyyy}, {mm}, {dd} and {hh}".to_owned());
        }
        let present = groups.map(|g| g.is_some());
        match present {
            [false, ..] => return Err("the date pattern must contain {yyyy}".to_owned()),
            [_, false, true, _] => return Err("a date pattern with {dd} needs {mm}".to_owned()),
            [_, _, false, true] => return Err("a date pattern with {hh} needs {dd}".to_owned()),
            _ => {}
        }
        if whole {
            regex.push('$');
        } else if pattern.ends_with('}') {
            regex.push_str("(?:$|[^0-9])");
        }
        let regex = Regex::new(&regex).map_err(|e| format!("the date pattern cannot be compiled: {e}"))?;
        Ok(Self { regex, groups })
    }

    /// The end of the period that `name` names (exclusive), or `None` when
    /// the name does not match or its date is impossible.
    pub fn period_end(&self, name: &str) -> Option<Timestamp> {
        let caps = self.regex.captures(name)?;
        let num = |i: usize| -> Option<Option<i16>> {
            match self.groups[i] {
                None => Some(None),
                Some(g) => caps.get(g)?.as_str().parse().ok().map(Some),
            }
        };
        let (year, month, day, hour) = (num(0)??, num(1)?, num(2)?, num(3)?);
        if hour.is_some_and(|h| !(0..24).contains(&h)) {
            return None;
        }
        let date = Date::new(year, month.unwrap_or(1) as i8, day.unwrap_or(1) as i8).ok()?;
        let start: DateTime = date.at(hour.unwrap_or(0) as i8, 0, 0, 0);
        let end = match (month, day, hour) {
            (_, _, Some(_)) => start.checked_add(1.hour()),
            (_, Some(_), None) => start.checked_add(1.day()),
            (Some(_), None, None) => start.checked_add(1.month()),
            (None, None, None) => start.checked_add(1.year()),
        }
        .ok()?;
        end.to_zoned(TimeZone::UTC).ok().map(|z| z.timestamp())
    }

    /// Whether `name` is due for a cutoff: its whole period lies before it.
    pub fn is_due(&self, name: &str, cutoff: Timestamp) -> bool {
        self.period_end(name).is_some_and(|end| end <= cutoff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn a_day_is_due_only_when_it_has_ended() {
        let p = NameDate::compile("calls/{yyyy}/{mm}/{dd}/", false).unwrap();
        assert_eq!(p.period_end("calls/2024/05/31/x.wav"), Some(ts("2024-06-01T00:00:00Z")));
        assert!(p.is_due("calls/2024/05/31/x.wav", ts("2024-06-01T00:00:00Z")));
        assert!(!p.is_due("calls/2024/05/31/x.wav", ts("2024-05-31T23:59:59Z")));
    }

    #[test]
    fn impossible_or_unmatched_names_are_never_due() {
        let p = NameDate::compile("calls/{yyyy}/{mm}/{dd}/", false).unwrap();
        for name in [
            "calls/2024/13/01/a",
            "calls/2023/02/29/a",
            "calls/2024/5/01/a",
            "other/2024/05/01/a",
            "calls/2024/05/01",
            "xcalls/2024/05/01/a",
        ] {
            assert_eq!(p.period_end(name), None, "{name}");
        }
    }

    #[test]
    fn months_and_hours_name_their_whole_period() {
        let m = NameDate::compile("{yyyy}-{mm}", false).unwrap();
        assert_eq!(m.period_end("2024-12/a"), Some(ts("2025-01-01T00:00:00Z")));
        assert_eq!(m.period_end("2024-123"), None, "a digit after the last placeholder");
        let h = NameDate::compile("access-{yyyy}{mm}{dd}{hh}.log", true).unwrap();
        assert_eq!(h.period_end("access-2024010223.log"), Some(ts("2024-01-03T00:00:00Z")));
        assert_eq!(h.period_end("access-2024010224.log"), None);
        assert_eq!(h.period_end("access-2024010223.log.gz"), None, "whole names only");
    }

    #[test]
    fn bad_patterns_are_refused() {
        assert!(NameDate::compile("{mm}/{dd}", false).is_err());
        assert!(NameDate::compile("{yyyy}/{dd}", false).is_err());
        assert!(NameDate::compile("{yyyy}/{yyyy}", false).is_err());
        assert!(NameDate::compile("{yyyy}/{month}", false).is_err());
    }
}
