//! Carrying out an erasure plan against the stores: erase, retain under a
//! legal obligation, or skip, each target proven by a read-back, and the
//! whole sealed as evidence that names the subject only by keyed digests.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde_json::json;

use super::evidence::{SealedEvidence, seal};
use super::run::Stores;
use crate::api::account::RetainReason;
use crate::api::erasure::ErasureRequestSpec;
use crate::api::policy::{RetentionPolicySpec, Target};
use crate::plan::erasure::{Action, ErasurePlan, Step};
use crate::stores::{Incomplete, PurgeOptions, StoreError, Subject};

/// What happened at one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepResult {
    /// The policy.
    pub policy: String,
    /// The target.
    pub target: String,
    /// Erased, Retained, NothingFound, Skipped or Failed.
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
    /// Why it was skipped or failed.
    pub message: Option<String>,
}

/// The result of one pass over an erasure plan.
#[derive(Debug, Clone)]
pub struct ErasureResult {
    /// Per target, in plan order.
    pub steps: Vec<StepResult>,
    /// Whether every target ended Erased, Retained or NothingFound, or was
    /// skipped for a reason no retry can change.
    pub complete: bool,
    /// The evidence.
    pub evidence: SealedEvidence,
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

async fn one(step: &Step, target: &Target, subject: &Subject, stores: &Stores, options: &PurgeOptions) -> StepResult {
    let mut result = StepResult {
        policy: step.policy.clone(),
        target: step.target.clone(),
        outcome: "Failed",
        matched: 0,
        erased: 0,
        remaining: None,
        retained: None,
        on_behalf_of: step.on_behalf_of.clone(),
        message: None,
    };
    let Some(store) = stores.get(&step.data_store).map(|h| &h.store) else {
        result.message = Some(format!("the DataStore {} is not ready or does not exist", step.data_store));
        return result;
    };
    let target = narrowed(target, step);
    let fail = |mut r: StepResult, e: StoreError| {
        r.message = Some(e.to_string());
        r
    };
    match &step.action {
        Action::Skip { reason } => {
            result.outcome = "Skipped";
            result.message = Some(reason.clone());
            result
        }
        Action::Retain { until, under } => match store.count_subject(&target, subject).await {
            Ok(n) => {
                result.outcome = if n == 0 { "NothingFound" } else { "Retained" };
                result.matched = n;
                result.retained = (n > 0).then(|| (Some(*until), under.clone()));
                result
            }
            Err(e) => fail(result, e),
        },
        Action::Erase => match store.erase_subject(&target, subject, options).await {
            Ok(report) => {
                let account = &report.account;
                let held = account.retained_total();
                result.matched = account.matched + held;
                result.erased = account.deleted + account.related_deleted;
                result.remaining = account.remaining;
                result.outcome = match (account.matched, held) {
                    (0, 0) => "NothingFound",
                    (0, _) => "Retained",
                    _ => "Erased",
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
                let mut notes = Vec::new();
                if report.dry_run && account.matched > 0 {
                    notes.push("dry run: nothing was erased".to_owned());
                }
                if let Some(unreadable) = account.unreadable_summary() {
                    notes.push(format!("could not be judged and kept: {unreadable}"));
                }
                result.message = (!notes.is_empty()).then(|| notes.join("; "));
                result
            }
            Err(Incomplete { error, report }) => {
                // What was erased before the failure stays counted.
                result.matched = report.account.matched;
                result.erased = report.account.deleted + report.account.related_deleted;
                result.remaining = report.account.remaining;
                fail(result, error)
            }
        },
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

/// Carries out a job's plan against the stores.
pub async fn run_erasure(job: &ErasureJob<'_>, stores: &Stores, options: &PurgeOptions) -> ErasureResult {
    let ErasureJob { request, spec, plan, policies, subject, subject_digests } = *job;
    let mut steps = Vec::new();
    for step in &plan.steps {
        let result = match find_target(policies, step) {
            Some(target) => one(step, target, subject, stores, options).await,
            None => StepResult {
                policy: step.policy.clone(),
                target: step.target.clone(),
                outcome: "Failed",
                matched: 0,
                erased: 0,
                remaining: None,
                retained: None,
                on_behalf_of: step.on_behalf_of.clone(),
                message: Some("the policy or target disappeared while the request ran".into()),
            },
        };
        steps.push(result);
    }
    let complete = steps.iter().all(|s| s.outcome != "Failed");
    let record = json!({
        "kind": "Erasure",
        "request": request,
        "ground": spec.ground,
        "receivedAt": spec.received_at.0.to_string(),
        "deadline": plan.deadline.to_string(),
        "identityVerification": {
            "verifiedBy": spec.identity_verification.verified_by,
            "method": spec.identity_verification.method,
            "reference": spec.identity_verification.reference,
        },
        "onBehalfOf": spec.on_behalf_of,
        "mode": spec.mode,
        "subjectDigests": subject_digests,
        "complete": complete,
        "targets": steps.iter().map(|s| json!({
            "policy": s.policy,
            "target": s.target,
            "outcome": s.outcome,
            "matched": s.matched,
            "erased": s.erased,
            "remaining": s.remaining,
            "retainedUntil": s.retained.as_ref().and_then(|(t, _)| t.map(|t| t.to_string())),
            "retainedUnder": s.retained.as_ref().map(|(_, u)| u),
            "onBehalfOf": s.on_behalf_of,
        })).collect::<Vec<_>>(),
    });
    // Sealed on its own; the controller re-seals it onto the namespace's
    // chain when it stores it.
    ErasureResult { steps, complete, evidence: seal(record, None) }
}
