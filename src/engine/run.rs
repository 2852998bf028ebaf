//! One run of a RetentionPolicy against its stores: count, check the
//! guardrails, purge each target in batches, read back, and seal the
//! evidence. The caller records the run id and cutoff (in status) before it
//! calls [`run_policy`], so an interrupted run resumes with the same cutoff.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use jiff::Timestamp;
use serde_json::json;

use super::evidence::{Digest, SealedEvidence, seal};
use crate::api::Mode;
use crate::api::policy::{RetentionPolicySpec, Target};
use crate::plan::guardrails::{self, GuardrailStop, TargetCount};
use crate::stores::{Cutoff, PurgeOptions, Store, StoreError};

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    /// Every target was purged (or counted, in a dry run) and read back.
    Succeeded,
    /// At least one target failed; nothing is claimed for it.
    Failed,
    /// A guardrail stopped the run before its first delete.
    Stopped,
}

impl RunOutcome {
    /// The word used in status and evidence.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "Succeeded",
            Self::Failed => "Failed",
            Self::Stopped => "Stopped",
        }
    }
}

/// What one target did in a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetResult {
    /// The target's name.
    pub name: String,
    /// Records due at the start.
    pub matched: u64,
    /// Records deleted.
    pub deleted: u64,
    /// Records still due at the read-back; `None` when the target failed
    /// before a read-back could prove anything.
    pub remaining: Option<u64>,
    /// Time spent on the target.
    pub duration_millis: u64,
    /// The failure's stable reason and its message, when it failed.
    pub error: Option<(String, String)>,
}

/// The result of a run, with its sealed evidence.
#[derive(Debug, Clone)]
pub struct RunResult {
    /// How it ended.
    pub outcome: RunOutcome,
    /// Per target, in the policy's order.
    pub targets: Vec<TargetResult>,
    /// The guardrail that stopped the run, if one did.
    pub stopped_by: Option<GuardrailStop>,
    /// When the run finished.
    pub finished: Timestamp,
    /// The evidence, chained to the policy's previous run.
    pub evidence: SealedEvidence,
}

impl RunResult {
    /// Whether the run proved that nothing past its cutoff remains: an
    /// enforced run whose every target read back zero.
    pub fn proves_compliance(&self, mode: Mode) -> bool {
        mode == Mode::Enforce
            && self.outcome == RunOutcome::Succeeded
            && self.targets.iter().all(|t| t.remaining == Some(0))
    }
}

/// One run to make.
pub struct PolicyRun<'a> {
    /// `namespace/name` of the policy, for the evidence.
    pub policy: &'a str,
    /// The policy's spec.
    pub spec: &'a RetentionPolicySpec,
    /// The run's id, recorded in status before the run.
    pub run_id: &'a str,
    /// The run's cutoff, recorded in status before the run.
    pub cutoff: Cutoff,
    /// The digest of the policy's previous run.
    pub previous_digest: Option<Digest>,
}

/// Stores by DataStore name.
pub type Stores = BTreeMap<String, Arc<dyn Store>>;

fn store_for<'s>(stores: &'s Stores, target: &Target) -> Result<&'s Arc<dyn Store>, StoreError> {
    stores.get(&target.data_store_ref.name).ok_or_else(|| StoreError::InvalidTarget {
        store: "unknown",
        detail: format!("the DataStore {} is not ready or does not exist", target.data_store_ref.name),
    })
}

fn failed(name: &str, started: Instant, matched: u64, e: &StoreError) -> TargetResult {
    TargetResult {
        name: name.to_owned(),
        matched,
        deleted: match e {
            StoreError::NotVerified { deleted, .. } | StoreError::Cancelled { deleted } => *deleted,
            _ => 0,
        },
        remaining: match e {
            StoreError::NotVerified { remaining, .. } => Some(*remaining),
            _ => None,
        },
        duration_millis: started.elapsed().as_millis() as u64,
        error: Some((e.reason().to_owned(), e.to_string())),
    }
}

/// Runs a policy once. `options` makes the purge options of each target
/// (mode, batch latency, rate limit, cancellation, progress).
pub async fn run_policy(run: PolicyRun<'_>, stores: &Stores, options: impl Fn(&Target) -> PurgeOptions) -> RunResult {
    let mode = run.spec.mode;
    let started_at = Timestamp::now();
    let mut results: Vec<TargetResult> = Vec::new();

    // Count first: a guardrail must stop the run before its first delete.
    let mut counts = Vec::new();
    let mut count_failed = false;
    let need_totals = run.spec.guardrails.as_ref().is_some_and(|g| g.max_percent_per_run.is_some());
    for target in &run.spec.targets {
        let started = Instant::now();
        let counted = match store_for(stores, target) {
            Ok(store) => match store.count_due(target, &run.cutoff).await {
                Ok(due) if need_totals => store.count_total(target).await.map(|total| (due, total)),
                Ok(due) => Ok((due, None)),
                Err(e) => Err(e),
            },
            Err(e) => Err(e),
        };
        match counted {
            Ok((due, total)) => counts.push(TargetCount { target: target.name.clone(), due, total }),
            Err(e) => {
                count_failed = true;
                results.push(failed(&target.name, started, 0, &e));
            }
        }
    }
    let stop = if count_failed { None } else { guardrails::check(run.spec.guardrails.as_ref(), &counts).err() };

    let outcome = if count_failed {
        RunOutcome::Failed
    } else if stop.is_some() {
        results = counts
            .iter()
            .map(|c| TargetResult {
                name: c.target.clone(),
                matched: c.due,
                deleted: 0,
                remaining: Some(c.due),
                duration_millis: 0,
                error: None,
            })
            .collect();
        RunOutcome::Stopped
    } else {
        let mut any_failed = false;
        for target in &run.spec.targets {
            let started = Instant::now();
            let opts = options(target);
            let purged = match store_for(stores, target) {
                Ok(store) => store.purge_due(target, &run.cutoff, &opts).await,
                Err(e) => Err(e),
            };
            results.push(match purged {
                Ok(report) => TargetResult {
                    name: target.name.clone(),
                    matched: report.matched,
                    deleted: report.deleted,
                    remaining: Some(report.remaining),
                    duration_millis: started.elapsed().as_millis() as u64,
                    error: None,
                },
                Err(e) => {
                    any_failed = true;
                    failed(&target.name, started, 0, &e)
                }
            });
        }
        if any_failed { RunOutcome::Failed } else { RunOutcome::Succeeded }
    };

    let finished = Timestamp::now();
    let record = json!({
        "kind": "RetentionRun",
        "policy": run.policy,
        "category": run.spec.category,
        "legalBasis": run.spec.legal_basis,
        "responsibleParty": run.spec.responsible_party,
        "customer": run.spec.customer,
        "period": run.spec.retention.period,
        "runId": run.run_id,
        "mode": mode,
        "cutoff": run.cutoff.at().to_string(),
        "startedAt": started_at.to_string(),
        "finishedAt": finished.to_string(),
        "outcome": outcome.as_str(),
        "stoppedBy": stop.as_ref().map(|s| s.reason()),
        "targets": results.iter().map(|t| json!({
            "name": t.name,
            "matched": t.matched,
            "deleted": t.deleted,
            "remaining": t.remaining,
            "error": t.error.as_ref().map(|(reason, _)| reason),
        })).collect::<Vec<_>>(),
    });
    RunResult { outcome, targets: results, stopped_by: stop, finished, evidence: seal(record, run.previous_digest) }
}
