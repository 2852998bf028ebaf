//! The conditions GitOps tools read (the kstatus conventions that Argo CD,
//! Flux and `kubectl wait` understand), derived from each kind's own
//! status at every status write, so they can never disagree with it:
//!
//! - `Ready`: the object is what its spec asks for, and nothing needs doing
//!   until the next scheduled run.
//! - `Reconciling`: the operator is working on it: a run or erasure in
//!   progress, a transient failure retried with backoff, evidence waiting
//!   for the sink.
//! - `Stalled`: it cannot progress without a person: an invalid spec, a
//!   missing key or Secret, a permanent store error, a guardrail, records
//!   that cannot be judged, an erasure past its deadline.
//!
//! At most one of the three is True at a time.

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

use super::condition;
use crate::api::common::conditions::{COMPLIANT, OVERDUE, READY, VALID};
use crate::api::datastore::DataStoreStatus;
use crate::api::erasure::{ErasurePhase, ErasureRequestStatus};
use crate::api::policy::RetentionPolicyStatus;

/// The operator is working on the object.
pub const RECONCILING: &str = "Reconciling";
/// The object cannot progress without a person.
pub const STALLED: &str = "Stalled";

/// Where an object stands, with a reason and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Standing {
    Ready(String, String),
    Reconciling(String, String),
    Stalled(String, String),
}

/// A status that can say where its object stands.
pub trait Summarize {
    /// Where the object stands, by this status.
    fn standing(&self) -> Standing;
    /// The status's conditions.
    fn conditions_mut(&mut self) -> &mut Vec<Condition>;
}

fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Reasons of a DataStore that is not Ready which retrying can cure.
const TRANSIENT_STORE: &[&str] = &["Unreachable", "KubernetesApiError", "Backend"];

impl Summarize for DataStoreStatus {
    fn standing(&self) -> Standing {
        match find(&self.conditions, READY) {
            Some(c) if c.status == "True" => Standing::Ready(c.reason.clone(), c.message.clone()),
            Some(c) if TRANSIENT_STORE.contains(&c.reason.as_str()) => {
                Standing::Reconciling(c.reason.clone(), c.message.clone())
            }
            Some(c) => Standing::Stalled(c.reason.clone(), c.message.clone()),
            None => Standing::Reconciling("Probing".into(), "the store has not been probed yet".into()),
        }
    }

    fn conditions_mut(&mut self) -> &mut Vec<Condition> {
        &mut self.conditions
    }
}

impl Summarize for RetentionPolicyStatus {
    fn standing(&self) -> Standing {
        if let Some(c) = find(&self.conditions, VALID).filter(|c| c.status == "False") {
            return Standing::Stalled(c.reason.clone(), c.message.clone());
        }
        if let Some(run) = &self.current_run {
            return Standing::Reconciling("RunInProgress".into(), format!("run {} is in progress", run.id));
        }
        let Some(c) = find(&self.conditions, COMPLIANT) else {
            return Standing::Ready("Scheduled".into(), "valid; waiting for its first run".into());
        };
        let (reason, message) = (c.reason.clone(), c.message.clone());
        match (c.status.as_str(), reason.as_str()) {
            ("True", _) | (_, "DryRun") => Standing::Ready(reason, message),
            // A spec changed after the last run: accepted, proven at the next.
            ("Unknown", "SpecChanged") => Standing::Ready(reason, message),
            ("Unknown", _) | (_, "RunFailed" | "Interrupted") => Standing::Reconciling(reason, message),
            _ => Standing::Stalled(reason, message),
        }
    }

    fn conditions_mut(&mut self) -> &mut Vec<Condition> {
        &mut self.conditions
    }
}

impl Summarize for ErasureRequestStatus {
    fn standing(&self) -> Standing {
        let phase = self.phase.unwrap_or(ErasurePhase::Pending);
        if matches!(phase, ErasurePhase::Completed | ErasurePhase::Previewed) {
            return Standing::Ready(format!("{phase:?}"), format!("the request is {phase:?}"));
        }
        if let Some(c) = find(&self.conditions, VALID).filter(|c| c.status == "False") {
            return Standing::Stalled(c.reason.clone(), c.message.clone());
        }
        if let Some(c) = find(&self.conditions, OVERDUE).filter(|c| c.status == "True") {
            return Standing::Stalled(c.reason.clone(), c.message.clone());
        }
        match phase {
            ErasurePhase::Failed => Standing::Reconciling(
                "Retrying".into(),
                format!("{} failed passes in a row; retried with backoff", self.failed_passes),
            ),
            _ => Standing::Reconciling(format!("{phase:?}"), format!("the request is {phase:?}")),
        }
    }

    fn conditions_mut(&mut self) -> &mut Vec<Condition> {
        &mut self.conditions
    }
}

impl Summarize for crate::api::HoldStatus {
    fn standing(&self) -> Standing {
        use crate::api::hold::HoldPhase;
        if let Some(c) = find(&self.conditions, VALID).filter(|c| c.status == "False") {
            return Standing::Stalled(c.reason.clone(), c.message.clone());
        }
        match self.phase {
            Some(HoldPhase::Active) => {
                let failing = self.targets.iter().filter(|t| t.message.is_some()).count();
                if failing > 0 {
                    Standing::Reconciling(
                        "TargetsNotCounted".into(),
                        format!("holding; {failing} targets could not be counted or their legal holds set; retried"),
                    )
                } else {
                    Standing::Ready("Holding".into(), format!("holding {} records", self.held.unwrap_or(0)))
                }
            }
            Some(HoldPhase::Ended) => Standing::Ready("Ended".into(), "ended; the records are released".into()),
            _ => Standing::Reconciling("Placing".into(), "the hold is being placed".into()),
        }
    }

    fn conditions_mut(&mut self) -> &mut Vec<Condition> {
        &mut self.conditions
    }
}

impl Summarize for crate::api::AccessRequestStatus {
    fn standing(&self) -> Standing {
        use crate::api::access::AccessPhase;
        use crate::api::common::conditions::EXPORT_DELETED;
        let phase = self.phase.unwrap_or(AccessPhase::Pending);
        match phase {
            AccessPhase::Expired => {
                return Standing::Ready("Expired".into(), "the export expired and was deleted".into());
            }
            AccessPhase::Completed => {
                return match find(&self.conditions, EXPORT_DELETED).filter(|c| c.status == "False") {
                    Some(c) => Standing::Reconciling(c.reason.clone(), c.message.clone()),
                    None => Standing::Ready("Completed".into(), "the export is written and waits in the bucket".into()),
                };
            }
            _ => {}
        }
        if let Some(c) = find(&self.conditions, VALID).filter(|c| c.status == "False") {
            // A store that failed is retried; everything else needs a person.
            if c.reason == "TargetsFailed" || c.reason == "ExportNotWritten" {
                return Standing::Reconciling(c.reason.clone(), c.message.clone());
            }
            return Standing::Stalled(c.reason.clone(), c.message.clone());
        }
        if let Some(c) = find(&self.conditions, OVERDUE).filter(|c| c.status == "True") {
            return Standing::Stalled(c.reason.clone(), c.message.clone());
        }
        Standing::Reconciling(format!("{phase:?}"), format!("the request is {phase:?}"))
    }

    fn conditions_mut(&mut self) -> &mut Vec<Condition> {
        &mut self.conditions
    }
}

/// An object whose status carries conditions.
pub trait Conditioned {
    /// The conditions of the status as last read.
    fn previous_conditions(&self) -> Vec<Condition>;
}

impl Conditioned for crate::api::DataStore {
    fn previous_conditions(&self) -> Vec<Condition> {
        self.status.as_ref().map(|s| s.conditions.clone()).unwrap_or_default()
    }
}

impl Conditioned for crate::api::RetentionPolicy {
    fn previous_conditions(&self) -> Vec<Condition> {
        self.status.as_ref().map(|s| s.conditions.clone()).unwrap_or_default()
    }
}

impl Conditioned for crate::api::Hold {
    fn previous_conditions(&self) -> Vec<Condition> {
        self.status.as_ref().map(|s| s.conditions.clone()).unwrap_or_default()
    }
}

impl Conditioned for crate::api::AccessRequest {
    fn previous_conditions(&self) -> Vec<Condition> {
        self.status.as_ref().map(|s| s.conditions.clone()).unwrap_or_default()
    }
}

impl Conditioned for crate::api::ErasureRequest {
    fn previous_conditions(&self) -> Vec<Condition> {
        self.status.as_ref().map(|s| s.conditions.clone()).unwrap_or_default()
    }
}

/// Sets Ready, Reconciling and Stalled on `status` from where it stands,
/// keeping the transition times of `previous` where a condition did not
/// change.
pub fn summarize<S: Summarize>(status: &mut S, previous: &[Condition], generation: Option<i64>, now: Timestamp) {
    let standing = status.standing();
    let (ready, reconciling, stalled) = match &standing {
        Standing::Ready(r, m) => ((true, r, m), None, None),
        Standing::Reconciling(r, m) => ((false, r, m), Some((r, m)), None),
        Standing::Stalled(r, m) => ((false, r, m), None, Some((r, m))),
    };
    let flag = |type_: &str, on: Option<(&String, &String)>| match on {
        Some((r, m)) => condition(previous, type_, true, r, m.clone(), generation, now),
        None => condition(previous, type_, false, "None", String::new(), generation, now),
    };
    let conditions = [
        condition(previous, READY, ready.0, ready.1, ready.2.clone(), generation, now),
        flag(RECONCILING, reconciling),
        flag(STALLED, stalled),
    ];
    let list = status.conditions_mut();
    list.retain(|c| c.type_ != READY && c.type_ != RECONCILING && c.type_ != STALLED);
    list.extend(conditions);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(type_: &str, status: &str, reason: &str) -> Condition {
        Condition {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: "m".into(),
            observed_generation: Some(1),
            last_transition_time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(Timestamp::UNIX_EPOCH),
        }
    }

    fn one_true(conditions: &[Condition]) -> &str {
        let on: Vec<&str> = conditions
            .iter()
            .filter(|c| [READY, RECONCILING, STALLED].contains(&c.type_.as_str()) && c.status == "True")
            .map(|c| c.type_.as_str())
            .collect();
        assert_eq!(on.len(), 1, "{conditions:?}");
        on[0]
    }

    #[test]
    fn a_policy_stands_by_its_validity_its_run_and_its_verdict() {
        let cases = [
            (vec![cond(VALID, "False", "InvalidPeriod")], false, STALLED),
            (vec![cond(VALID, "True", "Valid")], false, READY),
            (vec![cond(VALID, "True", "Valid")], true, RECONCILING),
            (vec![cond(VALID, "True", "Valid"), cond(COMPLIANT, "True", "Verified")], false, READY),
            (vec![cond(VALID, "True", "Valid"), cond(COMPLIANT, "False", "RunFailed")], false, RECONCILING),
            (vec![cond(VALID, "True", "Valid"), cond(COMPLIANT, "False", "UnreadableRecords")], false, STALLED),
            (vec![cond(VALID, "True", "Valid"), cond(COMPLIANT, "False", "GuardrailReached")], false, STALLED),
            (vec![cond(VALID, "True", "Valid"), cond(COMPLIANT, "False", "DryRun")], false, READY),
            (vec![cond(VALID, "True", "Valid"), cond(COMPLIANT, "Unknown", "SpecChanged")], false, READY),
            (vec![cond(VALID, "True", "Valid"), cond(COMPLIANT, "Unknown", "EvidencePending")], false, RECONCILING),
        ];
        for (conditions, running, expect) in cases {
            let mut status = RetentionPolicyStatus { conditions: conditions.clone(), ..Default::default() };
            if running {
                status.current_run = Some(serde_json::from_value(serde_json::json!({
                    "id": "r1", "cutoff": "2026-01-01T00:00:00Z", "mode": "Enforce", "startedAt": "2026-01-01T00:00:00Z"
                })).unwrap());
            }
            summarize(&mut status, &[], Some(1), Timestamp::UNIX_EPOCH);
            assert_eq!(one_true(&status.conditions), expect, "{conditions:?} running {running}");
            assert_eq!(status.conditions.len(), conditions.len() + 3, "its own conditions are kept");
        }
    }

    #[test]
    fn an_erasure_stands_by_its_phase_validity_and_deadline() {
        let cases = [
            (Some(ErasurePhase::Completed), vec![cond(OVERDUE, "True", "CompletedLate")], READY),
            (Some(ErasurePhase::Previewed), vec![], READY),
            (Some(ErasurePhase::Failed), vec![cond(VALID, "False", "NoTargetsInScope")], STALLED),
            (Some(ErasurePhase::Pending), vec![cond(VALID, "False", "NoInstallationKey")], STALLED),
            (Some(ErasurePhase::Failed), vec![cond(VALID, "True", "Valid")], RECONCILING),
            (Some(ErasurePhase::InProgress), vec![cond(OVERDUE, "True", "DeadlinePassed")], STALLED),
            (Some(ErasurePhase::InProgress), vec![cond(OVERDUE, "False", "WithinDeadline")], RECONCILING),
            (None, vec![], RECONCILING),
        ];
        for (phase, conditions, expect) in cases {
            let mut status = ErasureRequestStatus { phase, conditions, ..Default::default() };
            summarize(&mut status, &[], Some(1), Timestamp::UNIX_EPOCH);
            assert_eq!(one_true(&status.conditions), expect, "{phase:?}");
        }
    }

    #[test]
    fn a_hold_stands_by_its_phase_validity_and_targets() {
        use crate::api::HoldStatus;
        use crate::api::hold::{HeldTarget, HoldPhase};
        let counted = HeldTarget { records: Some(3), ..Default::default() };
        let failing = HeldTarget { message: Some("legal holds not set".into()), ..Default::default() };
        let cases = [
            (Some(HoldPhase::Active), vec![], vec![counted.clone()], READY),
            (Some(HoldPhase::Active), vec![], vec![counted, failing], RECONCILING),
            (Some(HoldPhase::Ended), vec![], vec![], READY),
            (Some(HoldPhase::Pending), vec![cond(VALID, "False", "IdentitiesUnreadable")], vec![], STALLED),
            (None, vec![], vec![], RECONCILING),
        ];
        for (phase, conditions, targets, expect) in cases {
            let mut status = HoldStatus { phase, conditions, targets, ..Default::default() };
            summarize(&mut status, &[], Some(1), Timestamp::UNIX_EPOCH);
            assert_eq!(one_true(&status.conditions), expect, "{phase:?}");
        }
    }

    #[test]
    fn a_datastore_that_cannot_be_reached_is_retried_one_refused_is_stalled() {
        for (ready, reason, expect) in [
            ("True", "Probed", READY),
            ("False", "Unreachable", RECONCILING),
            ("False", "AuthenticationFailed", STALLED),
            ("False", "PathNotAllowed", STALLED),
        ] {
            let mut status = DataStoreStatus { conditions: vec![cond(READY, ready, reason)], ..Default::default() };
            summarize(&mut status, &[], Some(1), Timestamp::UNIX_EPOCH);
            assert_eq!(one_true(&status.conditions), expect, "{reason}");
            let r = status.conditions.iter().find(|c| c.type_ == READY).unwrap();
            assert_eq!((r.status.as_str(), r.reason.as_str()), (ready, reason), "Ready is the probe's own");
        }
    }

    #[test]
    fn an_unchanged_standing_keeps_its_transition_times() {
        let mut first = DataStoreStatus { conditions: vec![cond(READY, "True", "Probed")], ..Default::default() };
        summarize(&mut first, &[], Some(1), Timestamp::UNIX_EPOCH);
        let mut again = DataStoreStatus { conditions: vec![cond(READY, "True", "Probed")], ..Default::default() };
        summarize(&mut again, &first.conditions, Some(1), Timestamp::now());
        assert_eq!(first.conditions, again.conditions);
    }
}
