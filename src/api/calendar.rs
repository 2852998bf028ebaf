//! When a record is due (principle 8), as pure functions of a record's time,
//! a calendar period, the run's "now" and a time zone.
//!
//! A record whose time is `t` is due when `t` plus the period, added on the
//! calendar of the policy's time zone, is not after now. Adding a calendar
//! period is not monotone: one month after 30 and 31 January is 28 February
//! for both, at the time of day of each, and a daylight-saving change moves
//! wall clocks back or skips an hour. So "subtract the period from now" is
//! not the inverse of "add it to t", and a cutoff computed that way deletes
//! records early. Here the cutoff is the earliest instant that is *not* due:
//! every record before it is due, and a record after it waits for a later
//! run even where its own end happens to lie before now (it is kept, never
//! deleted early).
//!
//! Every function here works in nanoseconds and is exact; the stores turn
//! the bounds into their own precision (see `stores::due`).

use jiff::civil::{Date, DateTime, Time};
use jiff::tz::{Offset, TimeZone};
use jiff::{SignedDuration, Span, Timestamp, ToSpan};

/// A period that cannot be counted on the calendar around a given instant
/// (the result would leave the years jiff can represent).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the period cannot be counted on the calendar here: {0}")]
pub struct CalendarError(String);

impl From<jiff::Error> for CalendarError {
    fn from(e: jiff::Error) -> Self {
        Self(e.to_string())
    }
}

const ONE_NS: SignedDuration = SignedDuration::from_nanos(1);
/// Bigger than the difference between any two UTC offsets jiff allows
/// (each lies within 25:59:59 of UTC).
const OFFSET_SPREAD: SignedDuration = SignedDuration::from_hours(52);

/// Reads a civil time in `tz`; where it is ambiguous (a fold) or skipped (a
/// gap), as the later of the instants it can mean, so that nothing is ever
/// judged due before every reading of its time has passed.
pub fn latest_reading(civil: DateTime, tz: &TimeZone) -> Result<Timestamp, CalendarError> {
    Ok(tz.to_ambiguous_timestamp(civil).later()?)
}

/// `t` plus `period` on the calendar of `tz`: the civil time of `t`, plus the
/// period's years and months (the day clamped to the month's last day), then
/// its weeks and days, at the same time of day, read back as the later
/// instant where that civil time is ambiguous or skipped.
pub fn end_of_period(t: Timestamp, period: Span, tz: &TimeZone) -> Result<Timestamp, CalendarError> {
    latest_reading(tz.to_datetime(t).checked_add(period)?, tz)
}

/// The cutoff of a run at `now` for `period` in `tz`: the earliest instant
/// that is not due. Every `t` before it satisfies `t + period <= now`, and
/// the cutoff itself does not, so no later instant has the first property.
///
/// The search is exact: between the zone's transitions, midnights and the
/// points where the shifted time crosses a transition, `t + period` moves
/// with `t` one for one, so each such piece is solved with one subtraction.
pub fn cutoff(period: Span, now: Timestamp, tz: &TimeZone) -> Result<Timestamp, CalendarError> {
    let end = |t: Timestamp| end_of_period(t, period, tz);
    let today = tz.to_datetime(now).date();
    // lo: every t before it is due. Its civil date is before d1, so its end
    // is before (d1 + period) + 1 day <= today - 3 days, which is more than
    // any two UTC offsets apart from now's civil time.
    let target = today.checked_sub(4.days())?;
    let mut d1 = target.checked_sub(period)?;
    while d1.checked_add(period)? > target {
        d1 = d1.yesterday()?;
    }
    let lo = Offset::UTC.to_timestamp(d1.to_datetime(Time::midnight()))?.checked_sub(OFFSET_SPREAD)?;
    // hi: not due, by the mirror argument; checked rather than trusted.
    let after = today.checked_add(4.days())?;
    let mut d2 = after.checked_sub(period)?;
    while d2.checked_add(period)? < after {
        d2 = d2.tomorrow()?;
    }
    let hi = Offset::UTC.to_timestamp(d2.to_datetime(Time::midnight()))?.checked_add(OFFSET_SPREAD)?;
    if end(hi)? <= now {
        return Err(CalendarError(format!("no instant near {hi} is past the period at {now}")));
    }
    for (a, b) in pieces(period, tz, lo, hi)? {
        let end_a = end(a)?;
        if end_a > now {
            return Ok(a);
        }
        let candidate = a.checked_add(now.duration_since(end_a))?.checked_add(ONE_NS)?;
        if candidate < b {
            return Ok(candidate);
        }
    }
    Ok(hi)
}

/// Splits `[lo, hi)` into pieces on which `end_of_period(t) - t` is
/// constant: the zone's offset at `t`, the civil date of `t` and the offset
/// the shifted civil time is read with stay the same within each.
fn pieces(
    period: Span,
    tz: &TimeZone,
    lo: Timestamp,
    hi: Timestamp,
) -> Result<Vec<(Timestamp, Timestamp)>, CalendarError> {
    // Where the zone's offset changes.
    let mut cuts = vec![lo];
    cuts.extend(tz.following(lo).map(|tr| tr.timestamp()).take_while(|&t| t < hi));
    cuts.push(hi);
    // Where the civil date changes, within each stretch of one offset.
    let mut days = Vec::new();
    for w in cuts.windows(2) {
        let (a, b) = (w[0], w[1]);
        let offset = tz.to_offset(a);
        let mut p = a;
        while p < b {
            days.push(p);
            let midnight = offset.to_datetime(p).date().tomorrow()?.to_datetime(Time::midnight());
            p = offset.to_timestamp(midnight)?.min(b);
        }
    }
    days.push(hi);
    // Where the shifted civil time crosses a switch of the offset `later`
    // reads it with: at each transition's instant read with its new offset.
    let mut out = Vec::new();
    for w in days.windows(2) {
        let (a, b) = (w[0], w[1]);
        let xa = tz.to_datetime(a).checked_add(period)?;
        let xb = xa.checked_add(b.duration_since(a))?;
        let from = latest_reading(xa, tz)?.checked_sub(OFFSET_SPREAD)?;
        let to = latest_reading(xb, tz)?.checked_add(OFFSET_SPREAD)?;
        let mut p = a;
        for tr in tz.following(from).take_while(|tr| tr.timestamp() <= to) {
            let switch = tr.offset().to_datetime(tr.timestamp());
            if xa < switch && switch < xb {
                let at = a.checked_add(switch.duration_since(xa))?;
                out.push((p, at));
                p = at;
            }
        }
        out.push((p, b));
    }
    Ok(out)
}

/// For a column of civil times written in `tz` (no zone of their own): the
/// earliest civil time whose latest reading is not before `cutoff`. Every
/// civil time before it reads as an instant before `cutoff`.
pub fn civil_cutoff(cutoff: Timestamp, tz: &TimeZone) -> Result<DateTime, CalendarError> {
    let high = tz.to_datetime(cutoff);
    // Below `low` every reading is before the cutoff: the offsets of any two
    // instants differ by less than OFFSET_SPREAD.
    let low = high.checked_sub(OFFSET_SPREAD)?;
    let from = cutoff.checked_sub(OFFSET_SPREAD.checked_mul(2).expect("small"))?;
    let mut cuts = vec![low];
    for tr in tz.following(from) {
        let switch = tr.offset().to_datetime(tr.timestamp());
        if switch >= high {
            break;
        }
        if switch > low {
            cuts.push(switch);
        }
    }
    cuts.sort();
    cuts.push(high);
    for w in cuts.windows(2) {
        let (a, b) = (w[0], w[1]);
        // Within the piece a civil time v reads as v minus one offset.
        let offset =
            Offset::from_seconds(a.duration_since(Offset::UTC.to_datetime(latest_reading(a, tz)?)).as_secs() as i32)?;
        let first = offset.to_datetime(cutoff).max(a);
        if first < b {
            return Ok(first);
        }
    }
    Ok(high)
}

/// For a column of dates (whole days in `tz`): the earliest date not wholly
/// before `cutoff`. A date before it names a day whose every instant is
/// before the cutoff.
pub fn date_cutoff(cutoff: Timestamp, tz: &TimeZone) -> Result<Date, CalendarError> {
    let mut date = tz.to_datetime(cutoff).date();
    // A later fold can move the wall clock back across midnight: an instant
    // after the cutoff may still read as an earlier date.
    let until = cutoff.checked_add(OFFSET_SPREAD)?;
    for tr in tz.following(cutoff).take_while(|tr| tr.timestamp() <= until) {
        date = date.min(tr.offset().to_datetime(tr.timestamp()).date());
    }
    Ok(date)
}

/// Rounds up to whole microseconds: for values of microsecond precision,
/// `v < round_up_micros(c)` holds exactly when `v < c`.
pub fn round_up_micros(t: Timestamp) -> Timestamp {
    let ns = t.as_nanosecond();
    let rem = ns.rem_euclid(1_000);
    if rem == 0 { t } else { Timestamp::from_nanosecond(ns - rem + 1_000).unwrap_or(t) }
}

/// [`round_up_micros`] for civil times.
pub fn round_up_micros_civil(t: DateTime) -> DateTime {
    let rem = i64::from(t.subsec_nanosecond()) % 1_000;
    if rem == 0 { t } else { t.checked_add(SignedDuration::from_nanos(1_000 - rem)).unwrap_or(t) }
}

/// Whole seconds of `t`, rounded up: for whole-second values `v`,
/// `v < round_up_seconds(c)` holds exactly when `v < c`.
pub fn round_up_seconds(t: Timestamp) -> i64 {
    let s = t.as_second();
    if t.subsec_nanosecond() > 0 { s + 1 } else { s }
}

/// Whole milliseconds of `t`, rounded up, for millisecond values.
pub fn round_up_millis(t: Timestamp) -> i64 {
    let ns = t.as_nanosecond();
    let ms = ns.div_euclid(1_000_000);
    (if ns.rem_euclid(1_000_000) > 0 { ms + 1 } else { ms }) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;
    use proptest::prelude::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn tz(name: &str) -> TimeZone {
        TimeZone::get(name).unwrap()
    }

    fn span(text: &str) -> Span {
        text.parse::<crate::api::RetentionPeriod>().unwrap().to_span()
    }

    fn due(t: Timestamp, period: Span, now: Timestamp, zone: &TimeZone) -> bool {
        end_of_period(t, period, zone).unwrap() <= now
    }

    #[test]
    fn one_month_and_a_day_counts_from_the_record_not_back_from_now() {
        // 30 January + 1 month is 28 February (clamped), + 1 day is 1 March
        // 10:00: after a run at 1 March 03:00. Counting back from now gives
        // 31 January 03:00 and would delete it.
        let (p, now, utc) = (span("1mo1d"), ts("2026-03-01T03:00:00Z"), TimeZone::UTC);
        let c = cutoff(p, now, &utc).unwrap();
        assert!(!due(ts("2026-01-30T10:00:00Z"), p, now, &utc));
        assert!(c <= ts("2026-01-30T10:00:00Z"), "{c}");
        assert_eq!(c, ts("2026-01-28T03:00:00.000000001Z"));
        assert!(due(ts("2026-01-28T03:00:00Z"), p, now, &utc));
    }

    #[test]
    fn a_cutoff_in_a_spring_forward_gap_is_not_moved_later() {
        // One day before 30 March 02:30 CEST is 29 March 02:30, a wall time
        // Amsterdam skipped. A record of 01:15Z (03:15 CEST) ends on
        // 30 March 03:15 CEST, after now: not due.
        let (p, now, ams) = (span("1d"), ts("2026-03-30T00:30:00Z"), tz("Europe/Amsterdam"));
        let c = cutoff(p, now, &ams).unwrap();
        assert!(!due(ts("2026-03-29T01:15:00Z"), p, now, &ams));
        assert_eq!(c, ts("2026-03-29T01:00:00Z"));
        assert!(due(ts("2026-03-29T00:59:59.999999999Z"), p, now, &ams));
    }

    #[test]
    fn six_months_in_amsterdam_keeps_the_wall_clock() {
        let c = cutoff(span("6mo"), ts("2026-11-28T01:30:00Z"), &tz("Europe/Amsterdam")).unwrap();
        assert_eq!(c, ts("2026-05-28T00:30:00.000000001Z"));
    }

    #[test]
    fn a_leap_day_record_waits_for_the_day_after_its_end() {
        let utc = TimeZone::UTC;
        let leap = ts("2028-02-29T12:00:00Z");
        // One year after 29 February is 28 February (clamped), at noon.
        assert_eq!(end_of_period(leap, span("1y"), &utc).unwrap(), ts("2029-02-28T12:00:00Z"));
        // At noon on 28 February 2029 it is due, but a record of
        // 28 February 2028 13:00, written before it, is not yet: the leap
        // day record waits rather than leap ahead of it.
        let c = cutoff(span("1y"), ts("2029-02-28T12:00:00Z"), &utc).unwrap();
        assert_eq!(c, ts("2028-02-28T12:00:00.000000001Z"));
        assert!(leap >= c);
        // By midnight every record of 28 and 29 February 2028 is due.
        let c = cutoff(span("1y"), ts("2029-03-01T00:00:00Z"), &utc).unwrap();
        assert!(ts("2028-02-29T23:59:59.999999999Z") < c);
    }

    #[test]
    fn civil_times_in_a_fold_read_as_the_later_instant() {
        let ams = tz("Europe/Amsterdam");
        // 25 October 2026 02:30 happens twice: 00:30Z and 01:30Z.
        let c = ts("2026-10-25T01:00:00Z");
        let x = civil_cutoff(c, &ams).unwrap();
        // 02:00 reads at the latest as 01:00Z: not before the cutoff.
        assert_eq!(x, date(2026, 10, 25).at(2, 0, 0, 0));
        assert!(latest_reading(date(2026, 10, 25).at(1, 59, 59, 999_999_999), &ams).unwrap() < c);
    }

    #[test]
    fn civil_times_in_a_gap_leave_a_hole_that_waits() {
        let ams = tz("Europe/Amsterdam");
        // 29 March 2026 02:30 does not exist; read late it is 01:30Z.
        let c = ts("2026-03-29T01:30:00Z");
        let x = civil_cutoff(c, &ams).unwrap();
        assert_eq!(x, date(2026, 3, 29).at(2, 30, 0, 0));
    }

    #[test]
    fn a_date_is_due_when_its_whole_day_is() {
        let ams = tz("Europe/Amsterdam");
        // 1 March 05:00 in Amsterdam: 28 February is wholly before it.
        assert_eq!(date_cutoff(ts("2026-03-01T04:00:00Z"), &ams).unwrap(), date(2026, 3, 1));
        // At exactly midnight Amsterdam (23:00Z) 28 February is over.
        assert_eq!(date_cutoff(ts("2026-02-28T23:00:00Z"), &ams).unwrap(), date(2026, 3, 1));
        assert_eq!(date_cutoff(ts("2026-02-28T22:59:59Z"), &ams).unwrap(), date(2026, 2, 28));
    }

    #[test]
    fn rounding_up_keeps_strict_comparisons_exact() {
        assert_eq!(round_up_micros(ts("2026-01-01T00:00:00.000000001Z")), ts("2026-01-01T00:00:00.000001Z"));
        assert_eq!(round_up_micros(ts("2026-01-01T00:00:00.000001Z")), ts("2026-01-01T00:00:00.000001Z"));
        assert_eq!(round_up_seconds(ts("1970-01-01T00:00:01.000000001Z")), 2);
        assert_eq!(round_up_seconds(ts("1970-01-01T00:00:01Z")), 1);
        assert_eq!(round_up_millis(ts("1970-01-01T00:00:01.000000001Z")), 1001);
    }

    const ZONES: &[&str] = &[
        "UTC",
        "Europe/Amsterdam",
        "America/New_York",
        "Australia/Lord_Howe",
        "Pacific/Apia",
        "America/St_Johns",
        "Asia/Kathmandu",
        "Pacific/Chatham",
        "Africa/Casablanca",
        "America/Santiago",
    ];

    fn period_strategy() -> impl Strategy<Value = Span> {
        (0i64..4, 0i64..26, 0i64..4, 0i64..45)
            .prop_filter("a period is longer than zero", |(y, m, w, d)| y + m + w + d > 0)
            .prop_map(|(y, m, w, d)| Span::new().years(y).months(m).weeks(w).days(d))
    }

    /// Instants spread over decades, and instants near a transition of the
    /// zone, a month's end or a leap day, where the calendar is irregular.
    fn now_strategy(zone: TimeZone) -> impl Strategy<Value = Timestamp> {
        let spread = (631_152_000i64..2_208_988_800).prop_map(|s| Timestamp::from_second(s).unwrap());
        let zone2 = zone.clone();
        let near_transition = (631_152_000i64..2_208_988_800, -30 * 3600i64..30 * 3600).prop_map(move |(s, d)| {
            let from = Timestamp::from_second(s).unwrap();
            let tr = zone2.following(from).next().map(|t| t.timestamp()).unwrap_or(from);
            tr.checked_add(SignedDuration::from_secs(d)).unwrap()
        });
        let month_end = (1990i16..2040, 1i8..=12, -3i64..3, 0i64..86_400).prop_map(move |(y, m, d, s)| {
            let first = date(y, m, 1).last_of_month().to_datetime(Time::midnight());
            let t = zone.to_ambiguous_timestamp(first).later().unwrap();
            t.checked_add(SignedDuration::from_secs(d * 86_400 + s)).unwrap()
        });
        prop_oneof![spread, near_transition, month_end]
    }

    fn case() -> impl Strategy<Value = (TimeZone, Span, Timestamp, Vec<i64>)> {
        prop::sample::select(ZONES).prop_flat_map(|name| {
            let zone = tz(name);
            (Just(zone.clone()), period_strategy(), now_strategy(zone), prop::collection::vec(0i64..10 * 86_400, 40))
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(600))]

        /// Everything before the cutoff is due; the cutoff itself is not.
        #[test]
        fn before_the_cutoff_exactly_the_due_records((zone, period, now, offsets) in case()) {
            let c = cutoff(period, now, &zone).unwrap();
            prop_assert!(!due(c, period, now, &zone), "the cutoff {c} is due itself (now {now}, {period})");
            prop_assert!(due(c - ONE_NS, period, now, &zone), "just before {c} is not due (now {now}, {period})");
            for back in offsets {
                let t = c - SignedDuration::from_secs(back) - ONE_NS;
                prop_assert!(due(t, period, now, &zone), "{t} is before the cutoff {c} but not due (now {now}, {period})");
            }
            // Every minute of the five days before the cutoff.
            let mut t = c - ONE_NS;
            for _ in 0..(5 * 1440) {
                prop_assert!(due(t, period, now, &zone), "{t} < {c} not due (now {now}, {period}, {zone:?})");
                t -= SignedDuration::from_secs(60);
            }
        }

        /// Where adding the period is monotone (UTC, whole days and weeks),
        /// the cutoff splits due from not due exactly.
        #[test]
        fn in_utc_with_days_the_cutoff_is_exact(days in 1i64..5000, now in 0i64..3_000_000_000, t in 0i64..3_000_000_000, ns in 0i64..1_000_000_000) {
            let (utc, period) = (TimeZone::UTC, Span::new().days(days));
            let now = Timestamp::from_second(now).unwrap();
            let t = Timestamp::from_second(t).unwrap() + SignedDuration::from_nanos(ns);
            let c = cutoff(period, now, &utc).unwrap();
            prop_assert_eq!(t < c, due(t, period, now, &utc));
        }

        /// Civil times before the civil cutoff read as instants before the cutoff; the civil cutoff does not.
        #[test]
        fn civil_cutoffs_are_exact_bounds(name in prop::sample::select(ZONES), secs in 631_152_000i64..2_208_988_800, near in any::<bool>(), shift in -7200i64..7200, backs in prop::collection::vec(1i64..4 * 86_400, 30)) {
            let zone = tz(name);
            let mut c = Timestamp::from_second(secs).unwrap();
            if near {
                c = zone.following(c).next().map(|t| t.timestamp()).unwrap_or(c) + SignedDuration::from_secs(shift);
            }
            let x = civil_cutoff(c, &zone).unwrap();
            prop_assert!(latest_reading(x, &zone).unwrap() >= c, "{x} reads before {c}");
            prop_assert!(latest_reading(x - ONE_NS, &zone).unwrap() < c);
            for back in backs {
                let v = x - SignedDuration::from_secs(back);
                prop_assert!(latest_reading(v, &zone).unwrap() < c, "{v} < {x} reads after {c}");
            }
        }

        /// A date before the date cutoff is a day wholly before the cutoff.
        #[test]
        fn date_cutoffs_are_exact_bounds(name in prop::sample::select(ZONES), secs in 631_152_000i64..2_208_988_800) {
            let zone = tz(name);
            let c = Timestamp::from_second(secs).unwrap();
            let d = date_cutoff(c, &zone).unwrap();
            let last_of_day_before = zone.to_ambiguous_timestamp(d.to_datetime(Time::midnight())).earlier().unwrap() - ONE_NS;
            prop_assert!(last_of_day_before < c);
            prop_assert!(zone.to_ambiguous_timestamp(d.tomorrow().unwrap().to_datetime(Time::midnight())).later().unwrap() > c);
        }
    }
}
