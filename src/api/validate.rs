//! The checks the API server cannot make: cron syntax and time zone names.
//! The operator runs them on every reconcile and reports a failure in the
//! Valid condition and as an Event, with these messages.

use croner::Cron;
use jiff::tz::TimeZone;

use super::policy::{RetentionPolicySpec, Schedule};

/// A spec the API server accepted but the operator cannot act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpecError {
    /// The cron expression does not parse.
    #[error("schedule.cron '{cron}' is not a valid five-field cron expression: {reason}")]
    BadCron { cron: String, reason: String },
    /// The retention period is longer than any plausible rule.
    #[error("retention.period '{0}' is longer than {max} years; if that is really meant, split the data into a policy with a shorter period", max = super::period::MAX_YEARS)]
    PeriodTooLong(String),
    /// The time zone is unknown to the time zone database.
    #[error("schedule.timeZone '{0}' is not a known IANA time zone (like Europe/Amsterdam or UTC)")]
    UnknownTimeZone(String),
    /// A target's time zone is unknown to the time zone database.
    #[error("targets[{target}].{kind}.timeZone '{zone}' is not a known IANA time zone (like Europe/Amsterdam or UTC)")]
    UnknownTargetTimeZone { target: String, kind: &'static str, zone: String },
}

impl SpecError {
    /// A low-cardinality reason for conditions, Events and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::BadCron { .. } => "InvalidSchedule",
            Self::UnknownTimeZone(_) | Self::UnknownTargetTimeZone { .. } => "InvalidTimeZone",
            Self::PeriodTooLong(_) => "InvalidPeriod",
        }
    }
}

/// A schedule whose cron expression and time zone are known to be valid.
#[derive(Debug, Clone)]
pub struct ValidSchedule {
    /// The parsed cron expression.
    pub cron: Cron,
    /// The time zone of the schedule and of the retention calendar.
    pub time_zone: TimeZone,
}

/// Parses a schedule, or says what is wrong with it.
pub fn schedule(schedule: &Schedule) -> Result<ValidSchedule, SpecError> {
    let fields = schedule.cron.split_whitespace().count();
    let bad = |reason: String| SpecError::BadCron { cron: schedule.cron.clone(), reason };
    if fields != 5 {
        return Err(bad(format!("it has {fields} fields, not 5 (minute hour day-of-month month day-of-week)")));
    }
    let cron: Cron = schedule.cron.parse().map_err(|e: croner::errors::CronError| bad(e.to_string()))?;
    let time_zone =
        TimeZone::get(&schedule.time_zone).map_err(|_| SpecError::UnknownTimeZone(schedule.time_zone.clone()))?;
    Ok(ValidSchedule { cron, time_zone })
}

/// Every problem of a RetentionPolicy that the schema could not catch.
pub fn policy(spec: &RetentionPolicySpec) -> Vec<SpecError> {
    let mut problems: Vec<SpecError> = schedule(&spec.schedule).err().into_iter().collect();
    if spec.retention.period.is_implausibly_long() {
        problems.push(SpecError::PeriodTooLong(spec.retention.period.to_string()));
    }
    for target in &spec.targets {
        let zones = [
            ("table", target.table.as_ref().and_then(|t| t.time_zone.as_ref())),
            ("files", target.files.as_ref().and_then(|t| t.time_zone.as_ref())),
        ];
        for (kind, zone) in zones {
            if let Some(zone) = zone
                && TimeZone::get(zone).is_err()
            {
                problems.push(SpecError::UnknownTargetTimeZone {
                    target: target.name.clone(),
                    kind,
                    zone: zone.clone(),
                });
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched(cron: &str, tz: &str) -> Schedule {
        Schedule { cron: cron.into(), time_zone: tz.into() }
    }

    #[test]
    fn accepts_a_nightly_schedule_in_amsterdam() {
        let valid = schedule(&sched("30 2 * * *", "Europe/Amsterdam")).unwrap();
        assert_eq!(valid.time_zone.iana_name(), Some("Europe/Amsterdam"));
    }

    #[test]
    fn refuses_a_bad_cron_with_its_reason() {
        for cron in ["61 2 * * *", "* * * * * *", "a b c d e", "30 2 * 13 *"] {
            let err = schedule(&sched(cron, "UTC")).unwrap_err();
            assert_eq!(err.reason(), "InvalidSchedule", "{cron}");
            assert!(err.to_string().contains(cron), "{err}");
        }
    }

    #[test]
    fn a_targets_time_zone_must_be_known() {
        let mut spec: RetentionPolicySpec = serde_json::from_value(serde_json::json!({
            "category": "calls", "description": "d", "responsibleParty": "self", "legalBasis": "Contract",
            "retention": {"period": "101y"}, "schedule": {"cron": "0 3 * * *"},
            "targets": [{"name": "cdrs", "dataStoreRef": {"name": "db"},
                "table": {"name": "cdrs", "timeColumn": "at", "timeZone": "Europe/Atlantis"}}]
        }))
        .unwrap();
        let problems = policy(&spec);
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[1].to_string().contains("targets[cdrs].table.timeZone 'Europe/Atlantis'"), "{}", problems[1]);
        spec.retention.period = "1y".parse().unwrap();
        spec.targets[0].table.as_mut().unwrap().time_zone = Some("America/New_York".into());
        assert!(policy(&spec).is_empty());
        spec.targets[0].table = None;
        spec.targets[0].files = Some(
            serde_json::from_value(serde_json::json!({"glob": "*.log", "age": "LineTime",
                "lineTimeFormat": "Iso8601", "timeZone": "Europe/Atlantis"}))
            .unwrap(),
        );
        let problems = policy(&spec);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].to_string().contains("targets[cdrs].files.timeZone 'Europe/Atlantis'"), "{}", problems[0]);
    }

    #[test]
    fn refuses_an_unknown_time_zone() {
        let err = schedule(&sched("0 3 * * *", "Europe/Atlantis")).unwrap_err();
        assert_eq!(err, SpecError::UnknownTimeZone("Europe/Atlantis".into()));
        assert!(err.to_string().contains("IANA time zone"));
    }
}
