//! Pure planning: turning resources and the current time into decisions.
//!
//! Nothing here does I/O or reads a clock: every function takes `now`. That
//! is what makes cutoffs, scope, retention under a legal obligation,
//! deadlines and guardrails testable with plain unit and property tests.

pub mod access;
pub mod erasure;
pub mod guardrails;
pub mod hold;

use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};

use crate::api::validate::ValidSchedule;
use crate::api::{RetentionPeriod, calendar};
use crate::stores::Cutoff;

/// A planning step that cannot be taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The period reaches outside the calendar jiff can represent.
    #[error("the retention period {period} cannot be counted back from {now}: {reason}")]
    OutOfRange { period: String, now: String, reason: String },
    /// The schedule has no future occurrence.
    #[error("the schedule '{0}' never fires again")]
    NoNextRun(String),
}

impl PlanError {
    /// A low-cardinality reason for conditions, Events and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::OutOfRange { .. } => "PeriodOutOfRange",
            Self::NoNextRun(_) => "NoNextRun",
        }
    }
}

/// The cutoff of a run that starts at `now`: the earliest instant whose
/// time plus the retention period, on the calendar of `tz`, lies after
/// `now` (principle 8; see [`crate::api::calendar::cutoff`]). Computed once
/// per run and recorded in status before any delete; a resumed run reuses
/// the recorded one.
pub fn cutoff(period: RetentionPeriod, now: Timestamp, tz: &TimeZone) -> Result<Cutoff, PlanError> {
    let out_of_range =
        |reason: String| PlanError::OutOfRange { period: period.to_string(), now: now.to_string(), reason };
    let at = calendar::cutoff(period.to_span(), now, tz).map_err(|e| out_of_range(e.to_string()))?;
    Cutoff::planned_in(at, now, tz.clone()).ok_or_else(|| out_of_range("the period counts forward".into()))
}

/// When the schedule fires next, strictly after `after`.
pub fn next_run(schedule: &ValidSchedule, after: Timestamp) -> Result<Timestamp, PlanError> {
    let zoned: Zoned = after.to_zoned(schedule.time_zone.clone());
    schedule
        .cron
        .find_next_occurrence(&zoned, false)
        .map(|z| z.timestamp())
        .map_err(|_| PlanError::NoNextRun(schedule.cron.as_str().to_owned()))
}

/// The latest instant the schedule fired at or before `now`, if any within
/// the last year: a run is due when this is later than the last run started.
pub fn last_due(schedule: &ValidSchedule, now: Timestamp) -> Option<Timestamp> {
    let zoned: Zoned = now.to_zoned(schedule.time_zone.clone());
    let previous = schedule.cron.find_previous_occurrence(&zoned, true).ok()?.timestamp();
    (now.duration_since(previous).as_secs() < 366 * 86_400).then_some(previous)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::policy::Schedule;
    use crate::api::validate;
    use proptest::prelude::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn tz(name: &str) -> TimeZone {
        TimeZone::get(name).unwrap()
    }

    fn schedule(cron: &str, zone: &str) -> ValidSchedule {
        validate::schedule(&Schedule { cron: cron.into(), time_zone: zone.into() }).unwrap()
    }

    #[test]
    fn six_months_before_a_november_night_in_amsterdam_is_the_same_wall_clock_in_may() {
        // 28 Nov 2026 02:30 in Amsterdam is 01:30Z (winter time); 28 May is
        // summer time, so the same wall clock is 00:30Z.
        let c = cutoff("6mo".parse().unwrap(), ts("2026-11-28T01:30:00Z"), &tz("Europe/Amsterdam"));
        // Records up to and including that instant are due.
        assert_eq!(c.unwrap().at(), ts("2026-05-28T00:30:00.000000001Z"));
    }

    #[test]
    fn the_time_zone_decides_the_calendar_day_a_period_counts_from() {
        // 31 March 23:30Z is already 1 April 01:30 in Amsterdam (summer
        // time), still 31 March in UTC. In UTC the whole of 28 February is
        // due (it ends on 28 March) and 1 March 00:00 ends on 1 April, after
        // now; in Amsterdam records up to 1 March 01:30 (winter time) are.
        let now = ts("2026-03-31T23:30:00Z");
        let utc = cutoff("1mo".parse().unwrap(), now, &tz("UTC")).unwrap();
        let ams = cutoff("1mo".parse().unwrap(), now, &tz("Europe/Amsterdam")).unwrap();
        assert_eq!(utc.at(), ts("2026-03-01T00:00:00Z"));
        assert_eq!(ams.at(), ts("2026-03-01T00:30:00.000000001Z"));
    }

    #[test]
    fn ninety_days_is_ninety_calendar_days() {
        let c = cutoff("90d".parse().unwrap(), ts("2026-11-28T03:00:00Z"), &tz("UTC")).unwrap();
        assert_eq!(c.at(), ts("2026-08-30T03:00:00.000000001Z"));
        assert_eq!(c.run_started(), ts("2026-11-28T03:00:00Z"));
    }

    #[test]
    fn next_run_follows_the_schedules_time_zone() {
        let s = schedule("30 2 * * *", "Europe/Amsterdam");
        assert_eq!(next_run(&s, ts("2026-11-28T12:00:00Z")).unwrap(), ts("2026-11-29T01:30:00Z"));
        assert_eq!(next_run(&s, ts("2026-07-01T12:00:00Z")).unwrap(), ts("2026-07-02T00:30:00Z"));
    }

    #[test]
    fn next_run_is_strictly_after() {
        let s = schedule("0 3 * * *", "UTC");
        assert_eq!(next_run(&s, ts("2026-11-28T03:00:00Z")).unwrap(), ts("2026-11-29T03:00:00Z"));
    }

    #[test]
    fn last_due_is_the_latest_firing_at_or_before_now() {
        let s = schedule("0 3 * * *", "UTC");
        assert_eq!(last_due(&s, ts("2026-11-28T10:00:00Z")), Some(ts("2026-11-28T03:00:00Z")));
        assert_eq!(last_due(&s, ts("2026-11-28T02:59:59Z")), Some(ts("2026-11-27T03:00:00Z")));
    }

    proptest! {
        #[test]
        fn a_cutoff_is_before_now_and_moves_with_it(secs in 0i64..3_000_000_000, days in 1u32..5000,
                                                     step in 1i64..10_000_000) {
            let zone = tz("Europe/Amsterdam");
            let period = RetentionPeriod::days(days);
            let now = Timestamp::from_second(secs).unwrap();
            let later = Timestamp::from_second(secs + step).unwrap();
            let a = cutoff(period, now, &zone).unwrap().at();
            let b = cutoff(period, later, &zone).unwrap().at();
            prop_assert!(a < now);
            prop_assert!(a <= b, "the cutoff never moves back as time moves forward");
        }

        #[test]
        fn longer_periods_give_earlier_cutoffs(secs in 0i64..3_000_000_000, months in 1u32..240) {
            let zone = tz("Europe/Amsterdam");
            let now = Timestamp::from_second(secs).unwrap();
            let shorter = cutoff(RetentionPeriod::months(months), now, &zone).unwrap().at();
            let longer = cutoff(RetentionPeriod::months(months + 1), now, &zone).unwrap().at();
            prop_assert!(longer < shorter);
        }
    }
}
