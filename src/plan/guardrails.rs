//! Guardrails: a run that would delete more than its policy allows stops
//! before its first delete, never midway.

use crate::api::policy::Guardrails;

/// What counting found at one target before anything was deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetCount {
    /// The target's name.
    pub target: String,
    /// Records past the cutoff.
    pub due: u64,
    /// Records the target holds in all, where the store can say cheaply;
    /// a percentage guardrail needs it.
    pub total: Option<u64>,
}

/// Why a run may not start deleting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GuardrailStop {
    /// More records are due over all targets than maxRecordsPerRun.
    #[error(
        "{due} records are due over all targets, more than maxRecordsPerRun {limit}; nothing was deleted. Check the policy, then raise the guardrail if this is expected"
    )]
    TooManyRecords { due: u64, limit: u64 },
    /// A larger share of one target is due than maxPercentPerRun.
    #[error("{due} of the {total} records of target {target} are due ({:.1}%), more than maxPercentPerRun {limit}%; nothing was deleted. Check the policy, then raise the guardrail if this is expected", *due as f64 * 100.0 / (*total).max(1) as f64)]
    TooLargeShare { target: String, due: u64, total: u64, limit: u8 },
    /// A percentage guardrail is set but the store could not say how many records a target holds.
    #[error("target {target} cannot report its total, so maxPercentPerRun cannot be checked; nothing was deleted")]
    TotalUnknown { target: String },
    /// While deleting, the run used up what a guardrail allows: more
    /// records became due after the count than it showed.
    #[error(
        "the run reached {guardrail} ({limit}) while deleting from target {target}, and stopped; the rest waits for the next run. More records were due than the count before the run showed: check what writes them, then raise the guardrail if this is expected"
    )]
    Reached { guardrail: String, limit: u64, target: String },
}

impl GuardrailStop {
    /// A low-cardinality reason for conditions, Events and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::TooManyRecords { .. } => "MaxRecordsExceeded",
            Self::TooLargeShare { .. } => "MaxPercentExceeded",
            Self::TotalUnknown { .. } => "TotalUnknown",
            Self::Reached { .. } => "GuardrailReached",
        }
    }
}

/// Checks the counts of a run against its guardrails.
pub fn check(guardrails: Option<&Guardrails>, counts: &[TargetCount]) -> Result<(), GuardrailStop> {
    let Some(g) = guardrails else { return Ok(()) };
    if let Some(limit) = g.max_records_per_run {
        let due: u64 = counts.iter().map(|c| c.due).sum();
        let limit = u64::try_from(limit).unwrap_or(0);
        if due > limit {
            return Err(GuardrailStop::TooManyRecords { due, limit });
        }
    }
    if let Some(limit) = g.max_percent_per_run {
        for c in counts.iter().filter(|c| c.due > 0) {
            let total = c.total.ok_or_else(|| GuardrailStop::TotalUnknown { target: c.target.clone() })?;
            // due * 100 > limit * total, in integers: no rounding lets a run slip through.
            if u128::from(c.due) * 100 > u128::from(limit) * u128::from(total) {
                return Err(GuardrailStop::TooLargeShare { target: c.target.clone(), due: c.due, total, limit });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn count(target: &str, due: u64, total: u64) -> TargetCount {
        TargetCount { target: target.into(), due, total: Some(total) }
    }

    fn rails(max_records: Option<i64>, max_percent: Option<u8>) -> Guardrails {
        Guardrails { max_records_per_run: max_records, max_percent_per_run: max_percent }
    }

    #[test]
    fn no_guardrails_allow_any_run() {
        assert_eq!(check(None, &[count("a", 1_000_000, 1_000_000)]), Ok(()));
    }

    #[test]
    fn max_records_counts_over_all_targets() {
        let g = rails(Some(100), None);
        assert_eq!(check(Some(&g), &[count("a", 60, 1000), count("b", 40, 1000)]), Ok(()));
        let err = check(Some(&g), &[count("a", 60, 1000), count("b", 41, 1000)]).unwrap_err();
        assert_eq!(err, GuardrailStop::TooManyRecords { due: 101, limit: 100 });
        assert!(err.to_string().contains("nothing was deleted"));
    }

    #[test]
    fn max_percent_is_per_target_and_exact_at_the_boundary() {
        let g = rails(None, Some(10));
        assert_eq!(check(Some(&g), &[count("a", 10, 100)]), Ok(()));
        let err = check(Some(&g), &[count("a", 11, 100)]).unwrap_err();
        assert_eq!(err.reason(), "MaxPercentExceeded");
        assert!(err.to_string().contains("target a"), "{err}");
    }

    #[test]
    fn a_percentage_needs_a_total() {
        let g = rails(None, Some(10));
        let unknown = TargetCount { target: "logs".into(), due: 5, total: None };
        assert_eq!(check(Some(&g), &[unknown]).unwrap_err().reason(), "TotalUnknown");
    }

    proptest! {
        #[test]
        fn a_run_passes_exactly_when_it_is_within_every_limit(
            dues in proptest::collection::vec((0u64..1000, 0u64..1000), 1..5),
            max_records in 1i64..3000, max_percent in 1u8..=100) {
            let counts: Vec<_> = dues.iter().enumerate()
                .map(|(i, (due, extra))| count(&format!("t{i}"), *due, due + extra)).collect();
            let g = rails(Some(max_records), Some(max_percent));
            let total_due: u64 = counts.iter().map(|c| c.due).sum();
            let within = total_due <= max_records as u64
                && counts.iter().all(|c| c.due * 100 <= u64::from(max_percent) * c.total.unwrap());
            prop_assert_eq!(check(Some(&g), &counts).is_ok(), within);
        }
    }
}
