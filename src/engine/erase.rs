//! Carrying out an erasure plan against the stores, one target at a time:
//! erase, retain (under a legal obligation, or because the store holds the
//! records locked), skip, or list as not searched, each erased target proven
//! by a read-back. Outcomes of several passes merge (a target erased in the
//! first pass stays Erased, with its count, when the second finds nothing),
//! and the merged outcomes are sealed as evidence that names the subject
//! only by keyed digests.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde_json::json;

use super::run::Stores;
use crate::api::Mode;
use crate::api::account::RetainReason;
use crate::api::erasure::{ErasureRequestSpec, ErasureTargetOutcome};
use crate::api::policy::{RetentionPolicySpec, Target};
use crate::plan::erasure::{Action, ErasurePlan, Step};
use crate::stores::{Incomplete, PurgeOptions, Subject};

/// The words of a target's outcome, in status and evidence.
pub mod outcome {
    /// The subject's records were erased (proven by the read-back).
    pub const ERASED: &str = "Erased";
    /// A dry run found records it would erase; nothing was erased.
    pub const WOULD_ERASE: &str = "WouldErase";
    /// The records are kept: a legal obligation, or a lock in the store.
    pub const RETAINED: &str = "Retained";
    /// The target holds nothing of the subject.
    pub const NOTHING_FOUND: &str = "NothingFound";
    /// In scope, but the request gave no identity of a kind it holds.
    pub const NOT_SEARCHED: &str = "NotSearched";
    /// Not acted on, for a reason no retry changes (processor data
    /// without the controller's instruction).
    pub const SKIPPED: &str = "Skipped";
    /// It failed; the operator retries.
    pub const FAILED: &str = "Failed";
    /// Being erased now: saved with the count so far, so a process killed
    /// mid-target leaves a record of what it erased.
    pub const IN_PROGRESS: &str = "InProgress";

    /// Whether a target's outcome is final: no further pass changes it.
    pub fn is_final(outcome: &str) -> bool {
        outcome != FAILED && outcome != IN_PROGRESS
    }

    /// Whether an earlier pass's outcome can stand for this pass: the
    /// result of a search, final. Skipped and NotSearched are decided by
    /// each pass's plan anew.
    pub fn stands(outcome: &str) -> bool {
        matches!(outcome, ERASED | WOULD_ERASE | RETAINED | NOTHING_FOUND)
    }
}

/// What happened at one target in one pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepResult {
    /// The policy.
    pub policy: String,
    /// The target.
    pub target: String,
    /// One of [`outcome`]'s words.
    pub outcome: &'static str,
    /// Records of the subject found.
    pub matched: u64,
    /// Records erased.
    pub erased: u64,
    /// Records of the subject left at the read-back, when one ran.
    pub remaining: Option<u64>,
    /// For Retained: until when (none for a legal hold, which lasts until
    /// it is lifted), and under what.
    pub retained: Option<(Option<Timestamp>, String)>,
    /// For processor data: on whose behalf.
    pub on_behalf_of: Option<String>,
    /// Why it was skipped, not searched or failed.
    pub message: Option<String>,
}

/// The result of one pass over an erasure plan.
#[derive(Debug, Clone)]
pub struct ErasureResult {
    /// Per target, in plan order.
    pub steps: Vec<StepResult>,
    /// Whether every target ended with a final outcome.
    pub complete: bool,
    /// The evidence record, not yet sealed.
    pub record: serde_json::Value,
}

fn find_target<'a>(policies: &'a BTreeMap<String, RetentionPolicySpec>, step: &Step) -> Option<&'a Target> {
    policies.get(&step.policy)?.targets.iter().find(|t| t.name == step.target)
}

/// Restricts a target to the subject fields the plan matched, so a store
/// looks only where the request has identities.
fn narrowed(target: &Target, step: &Step) -> Target {
    let mut t = target.clone();
    t.subject_fields = step.fields.clone();
    t
}

/// Carries out one step of a plan.
pub async fn erase_step(
    step: &Step,
    policies: &BTreeMap<String, RetentionPolicySpec>,
    subject: &Subject,
    stores: &Stores,
    options: &PurgeOptions,
) -> StepResult {
    let mut result = StepResult {
        policy: step.policy.clone(),
        target: step.target.clone(),
        outcome: outcome::FAILED,
        matched: 0,
        erased: 0,
        remaining: None,
        retained: None,
        on_behalf_of: step.on_behalf_of.clone(),
        message: None,
    };
    match &step.action {
        Action::Skip { reason } => {
            result.outcome = outcome::SKIPPED;
            result.message = Some(reason.clone());
            return result;
        }
        Action::NotSearched { reason } => {
            result.outcome = outcome::NOT_SEARCHED;
            result.message = Some(reason.clone());
            return result;
        }
        Action::Erase | Action::Retain { .. } => {}
    }
    let Some(target) = find_target(policies, step) else {
        result.message = Some("the policy or target disappeared while the request ran".into());
        return result;
    };
    let Some(handle) = stores.get(&step.data_store) else {
        result.message = Some(format!("the DataStore {} is not ready or does not exist", step.data_store));
        return result;
    };
    let store = &handle.store;
    // One of the DataStore's slots, shared with every run on it.
    let _slot = tokio::select! {
        slot = handle.slot() => slot,
        _ = options.cancel.cancelled() => {
            result.message = Some("cancelled before it started; retried".into());
            return result;
        }
    };
    let target = narrowed(target, step);
    match &step.action {
        Action::Retain { until, under } => match store.count_subject(&target, subject).await {
            Ok(n) => {
                result.outcome = if n == 0 { outcome::NOTHING_FOUND } else { outcome::RETAINED };
                result.matched = n;
                result.retained = (n > 0).then(|| (*until, under.clone()));
                result
            }
            Err(e) => {
                result.message = Some(crate::stores::identity::redact(&e.to_string()));
                result
            }
        },
        Action::Erase => match store.erase_subject(&target, subject, options).await {
            Ok(report) => {
                let account = &report.account;
                let held = account.retained_total();
                result.matched = account.matched + held;
                result.erased = account.deleted + account.related_deleted;
                result.remaining = account.remaining;
                result.outcome = match (account.matched, held, report.dry_run) {
                    (0, 0, _) => outcome::NOTHING_FOUND,
                    (0, _, _) => outcome::RETAINED,
                    (_, _, true) => outcome::WOULD_ERASE,
                    _ => outcome::ERASED,
                };
                if held > 0 {
                    // The store keeps them (object lock, legal hold): say so, and until when.
                    let legal_hold = account.retained.iter().any(|r| r.reason == RetainReason::LegalHold);
                    let until = if legal_hold {
                        None
                    } else {
                        account.retained.iter().filter_map(|r| r.until.as_ref().map(|t| t.0)).max()
                    };
                    let reasons: Vec<String> =
                        account.retained.iter().map(|r| format!("{} {:?}", r.count, r.reason)).collect();
                    result.retained = Some((until, format!("the store keeps them: {}", reasons.join(", "))));
                }
                result.message = account.unreadable_summary().map(|u| format!("could not be judged and kept: {u}"));
                result
            }
            Err(Incomplete { error, report }) => {
                // What was erased before the failure stays counted.
                result.matched = report.account.matched;
                result.erased = report.account.deleted + report.account.related_deleted;
                result.remaining = report.account.remaining;
                result.message = Some(crate::stores::identity::redact(&error.to_string()));
                result
            }
        },
        Action::Skip { .. } | Action::NotSearched { .. } => unreachable!("returned above"),
    }
}

/// A target's outcome after this pass, given what earlier passes recorded:
/// erased counts add up, and a target erased before stays Erased when this
/// pass finds nothing left.
pub fn merge(prior: Option<&ErasureTargetOutcome>, step: &StepResult) -> ErasureTargetOutcome {
    let erased_before = prior.map_or(0, |p| p.erased.max(0) as u64);
    let erased = erased_before + step.erased;
    let outcome = match step.outcome {
        outcome::NOTHING_FOUND if erased > 0 => outcome::ERASED,
        other => other,
    };
    ErasureTargetOutcome {
        policy: step.policy.clone(),
        target: step.target.clone(),
        outcome: outcome.to_owned(),
        matched: (erased_before + step.matched) as i64,
        erased: erased as i64,
        remaining: step.remaining.map(|r| r as i64),
        retained_until: step
            .retained
            .as_ref()
            .and_then(|(t, _)| t.map(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time)),
        retained_under: step.retained.as_ref().map(|(_, u)| u.clone()),
        on_behalf_of: step.on_behalf_of.clone(),
        message: step.message.clone(),
    }
}

/// One erasure request to carry out.
pub struct ErasureJob<'a> {
    /// `namespace/name` of the request, for the evidence.
    pub request: &'a str,
    /// The request's spec.
    pub spec: &'a ErasureRequestSpec,
    /// Its plan.
    pub plan: &'a ErasurePlan,
    /// The specs of the policies in the plan, by name.
    pub policies: &'a BTreeMap<String, RetentionPolicySpec>,
    /// The subject's identities.
    pub subject: &'a Subject,
    /// Keyed digests of the identities, by kind: how the evidence names the subject.
    pub subject_digests: &'a BTreeMap<String, String>,
}

/// The evidence of a request's outcomes (merged over its passes): what was
/// erased, retained and why, skipped, not searched, on whose behalf, with
/// the subject named only by keyed digests.
pub fn evidence_record(
    job: &ErasureJob<'_>,
    outcomes: &[ErasureTargetOutcome],
    phase: &str,
    started_at: Timestamp,
    finished_at: Timestamp,
) -> serde_json::Value {
    let ErasureJob { request, spec, plan, subject_digests, .. } = *job;
    json!({
        "kind": "Erasure",
        "request": request,
        "ground": spec.ground,
        "receivedAt": spec.received_at.0.to_string(),
        "deadline": plan.deadline.to_string(),
        "identityVerification": {
            "verifiedBy": spec.identity_verification.verified_by,
            "method": spec.identity_verification.method,
            "verifiedAt": spec.identity_verification.verified_at.as_ref().map(|t| t.0.to_string()),
            "reference": spec.identity_verification.reference,
        },
        "onBehalfOf": spec.on_behalf_of,
        "mode": spec.mode,
        "subjectDigests": subject_digests,
        "phase": phase,
        "complete": outcomes.iter().all(|o| outcome::is_final(&o.outcome)),
        "startedAt": started_at.to_string(),
        "finishedAt": finished_at.to_string(),
        "targets": outcomes.iter().map(|o| json!({
            "policy": o.policy,
            "target": o.target,
            "outcome": o.outcome,
            "matched": o.matched,
            "erased": o.erased,
            "remaining": o.remaining,
            "retainedUntil": o.retained_until.as_ref().map(|t| t.0.to_string()),
            "retainedUnder": o.retained_under,
            "onBehalfOf": o.on_behalf_of,
        })).collect::<Vec<_>>(),
    })
}

/// Carries out a job's whole plan in one pass against the stores.
pub async fn run_erasure(job: &ErasureJob<'_>, stores: &Stores, options: &PurgeOptions) -> ErasureResult {
    let started_at = Timestamp::now();
    let mut steps = Vec::new();
    for step in &job.plan.steps {
        steps.push(erase_step(step, job.policies, job.subject, stores, options).await);
    }
    let outcomes: Vec<ErasureTargetOutcome> = steps.iter().map(|s| merge(None, s)).collect();
    let complete = steps.iter().all(|s| outcome::is_final(s.outcome));
    let phase = match (complete, job.spec.mode) {
        (false, _) => "Failed",
        (true, Mode::DryRun) => "Previewed",
        (true, Mode::Enforce) => "Completed",
    };
    let record = evidence_record(job, &outcomes, phase, started_at, Timestamp::now());
    ErasureResult { steps, complete, record }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(outcome: &'static str, matched: u64, erased: u64) -> StepResult {
        StepResult {
            policy: "p".into(),
            target: "t".into(),
            outcome,
            matched,
            erased,
            remaining: Some(0),
            retained: None,
            on_behalf_of: None,
            message: None,
        }
    }

    #[test]
    fn a_target_erased_in_an_earlier_pass_stays_erased_with_its_count() {
        let first = merge(None, &step(outcome::ERASED, 3, 3));
        let second = merge(Some(&first), &step(outcome::NOTHING_FOUND, 0, 0));
        assert_eq!((second.outcome.as_str(), second.matched, second.erased), ("Erased", 3, 3));
    }

    #[test]
    fn a_pass_that_failed_halfway_and_one_that_finished_add_up() {
        let failed = merge(None, &step(outcome::FAILED, 5, 2));
        assert_eq!((failed.outcome.as_str(), failed.erased), ("Failed", 2));
        let done = merge(Some(&failed), &step(outcome::ERASED, 3, 3));
        assert_eq!((done.outcome.as_str(), done.matched, done.erased), ("Erased", 5, 5));
    }

    #[test]
    fn nothing_found_stays_nothing_found_when_nothing_was_ever_erased() {
        let first = merge(None, &step(outcome::NOTHING_FOUND, 0, 0));
        assert_eq!(merge(Some(&first), &step(outcome::NOTHING_FOUND, 0, 0)).outcome, "NothingFound");
    }
}
