//! One run of a RetentionPolicy against its stores: agree on the time with
//! every store, count, check the guardrails, purge each target in batches
//! within the guardrails' budget, read back, and seal the evidence. The
//! caller records the run id and cutoff (in status) before it calls
//! [`run_policy`], so an interrupted run resumes with the same cutoff.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use jiff::{SignedDuration, Timestamp};
use serde_json::json;

use super::connect::StoreHandle;
use crate::api::Mode;
use crate::api::account::Account;
use crate::api::policy::{RetentionPolicySpec, Target};
use crate::plan::guardrails::{self, GuardrailStop, TargetCount};
use crate::stores::{Budget, Cutoff, Incomplete, PurgeOptions, StoreError};

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunOutcome {
    /// Every target was purged (or counted, in a dry run) and read back.
    Succeeded,
    /// At least one target failed; nothing is claimed for it.
    Failed,
    /// A guardrail stopped the run: before its first delete, or when its
    /// budget of deletes ran out.
    Stopped,
    /// The run was cancelled between batches: its spec changed, it was
    /// suspended or deleted, the operator shut down or lost its lease. What
    /// was deleted before is counted; the next run starts afresh.
    Interrupted,
}

impl RunOutcome {
    /// The word used in status and evidence.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "Succeeded",
            Self::Failed => "Failed",
            Self::Stopped => "Stopped",
            Self::Interrupted => "Interrupted",
        }
    }
}

/// What one target did in a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetResult {
    /// The target's name.
    pub name: String,
    /// The store's account of the target's records, as the store made it;
    /// when the target failed, what was done before it did.
    pub account: Account,
    /// Time spent on the target.
    pub duration_millis: u64,
    /// The failure's stable reason and its message, when it failed or stopped.
    pub error: Option<(String, String)>,
}

/// The result of a run, with its evidence record (sealed where it is
/// stored, onto the policy's chain).
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
    /// The evidence record, not yet sealed.
    pub record: serde_json::Value,
}

impl RunResult {
    /// Whether the run proved that nothing past its cutoff remains: an
    /// enforced run whose every target read back zero and left nothing it
    /// could not judge.
    pub fn proves_compliance(&self, mode: Mode) -> bool {
        mode == Mode::Enforce
            && self.outcome == RunOutcome::Succeeded
            && self.targets.iter().all(|t| t.error.is_none() && t.account.proves_nothing_due_remains())
    }

    /// Records deleted over all targets.
    pub fn deleted(&self) -> u64 {
        self.targets.iter().map(|t| t.account.deleted).sum()
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
    /// The operator's clock as this attempt starts; each store's clock is
    /// compared with it before anything is deleted.
    pub now: Timestamp,
    /// Why the run was cancelled, once it is: read when a target stops
    /// with [`StoreError::Cancelled`].
    pub interruption: Interruption,
}

/// Why a run was cancelled: set by whoever cancels it, before cancelling.
#[derive(Debug, Clone, Default)]
pub struct Interruption(Arc<std::sync::Mutex<Option<String>>>);

impl Interruption {
    /// Records why (the first reason wins).
    pub fn set(&self, reason: &str) {
        let mut why = self.0.lock().expect("interruption lock");
        if why.is_none() {
            *why = Some(reason.to_owned());
        }
    }

    /// Why, if it was.
    pub fn reason(&self) -> Option<String> {
        self.0.lock().expect("interruption lock").clone()
    }
}

/// Stores by DataStore name.
pub type Stores = BTreeMap<String, StoreHandle>;

fn store_for<'s>(stores: &'s Stores, target: &Target) -> Result<&'s StoreHandle, StoreError> {
    stores.get(&target.data_store_ref.name).ok_or_else(|| StoreError::InvalidTarget {
        store: "unknown",
        detail: format!("the DataStore {} is not ready or does not exist", target.data_store_ref.name),
    })
}

/// The Hold that keeps a target whole: one on the whole target, or one on
/// a subject where the store cannot keep a subject's records apart.
fn whole_hold(stores: &Stores, target: &Target) -> Option<String> {
    if let Some(hold) = target.held.whole() {
        return Some(hold.to_owned());
    }
    let (first, _) = target.held.subjects().next()?;
    let apart = stores.get(&target.data_store_ref.name).is_some_and(|h| h.store.keeps_held_subjects());
    (!apart).then(|| first.to_owned())
}

fn failed(name: &str, started: Instant, account: Account, e: &StoreError) -> TargetResult {
    TargetResult {
        name: name.to_owned(),
        account,
        duration_millis: started.elapsed().as_millis() as u64,
        // A store's message can echo a value it met: never one into status.
        error: Some((e.reason().to_owned(), crate::stores::identity::redact(&e.to_string()))),
    }
}

/// Compares each store's clock with the operator's. A store whose clock is
/// off by more than its DataStore allows makes the whole run stop before
/// any delete: "due" depends on "now".
async fn clocks_agree(run: &PolicyRun<'_>, stores: &Stores, since: Instant) -> Vec<(String, StoreError)> {
    let mut names: Vec<&String> = run.spec.targets.iter().map(|t| &t.data_store_ref.name).collect();
    names.sort();
    names.dedup();
    let mut problems = Vec::new();
    for name in names {
        let Some(handle) = stores.get(name) else { continue };
        let clock = {
            let _slot = handle.slot().await;
            handle.store.clock().await
        };
        match clock {
            Ok(Some(theirs)) => {
                let ours = run.now + SignedDuration::try_from(since.elapsed()).unwrap_or_default();
                let skew = theirs.duration_since(ours).abs();
                if skew > SignedDuration::try_from(handle.max_clock_skew).unwrap_or(SignedDuration::MAX) {
                    problems.push((
                        name.clone(),
                        StoreError::ClockSkew {
                            store: handle.store.kind(),
                            skew_seconds: skew.as_secs(),
                            tolerance_seconds: handle.max_clock_skew.as_secs() as u32,
                        },
                    ));
                }
            }
            Ok(None) => {}
            Err(e) => problems.push((name.clone(), e)),
        }
    }
    problems
}

/// The budgets a guardrail sets for one target: maxRecordsPerRun, shared
/// by all targets, and maxPercentPerRun of the target's own total.
fn budgets(spec: &RetentionPolicySpec, run_budget: Option<&Budget>, total: Option<u64>) -> Vec<Budget> {
    let mut out: Vec<Budget> = run_budget.into_iter().cloned().collect();
    if let (Some(limit), Some(total)) = (spec.guardrails.as_ref().and_then(|g| g.max_percent_per_run), total) {
        out.push(Budget::new(u64::from(limit) * total / 100, "maxPercentPerRun"));
    }
    out
}

/// Runs a policy once. `options` makes the purge options of each target
/// (mode, batch latency, rate limit, cancellation, progress); the run adds
/// the guardrails' budgets.
pub async fn run_policy(run: PolicyRun<'_>, stores: &Stores, options: impl Fn(&Target) -> PurgeOptions) -> RunResult {
    let mode = run.spec.mode;
    let started_at = Timestamp::now();
    let since = Instant::now();
    let mut results: Vec<TargetResult> = Vec::new();

    // The stores' clocks first: nothing is counted under a "now" a store
    // disagrees with.
    let skewed = clocks_agree(&run, stores, since).await;
    // Then count: a guardrail must stop the run before its first delete.
    let mut counts = Vec::new();
    let mut count_failed = !skewed.is_empty();
    let mut held_whole: BTreeMap<String, (String, u64)> = BTreeMap::new();
    let need_totals = run.spec.guardrails.as_ref().is_some_and(|g| g.max_percent_per_run.is_some());
    for target in &run.spec.targets {
        let started = Instant::now();
        if let Some((_, first)) = skewed.first() {
            let e = skewed.iter().find(|(name, _)| *name == target.data_store_ref.name).map_or(first, |(_, e)| e);
            results.push(failed(&target.name, started, Account::default(), e));
            continue;
        }
        let counted = match store_for(stores, target) {
            Ok(handle) => {
                let _slot = handle.slot().await;
                match handle.store.count_due(target, &run.cutoff).await {
                    Ok(due) if need_totals => handle.store.count_total(target).await.map(|total| (due, total)),
                    Ok(due) => Ok((due, None)),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        };
        match counted {
            // A target a Hold keeps whole deletes nothing: none of it is due
            // for the guardrails, all of it is retained under the hold.
            Ok((due, total)) => match whole_hold(stores, target) {
                Some(hold) => {
                    held_whole.insert(target.name.clone(), (hold, due));
                    counts.push(TargetCount { target: target.name.clone(), due: 0, total })
                }
                None => counts.push(TargetCount { target: target.name.clone(), due, total }),
            },
            Err(e) => {
                count_failed = true;
                results.push(failed(&target.name, started, Account::default(), &e));
            }
        }
    }
    let mut stop = if count_failed { None } else { guardrails::check(run.spec.guardrails.as_ref(), &counts).err() };

    let outcome = if count_failed {
        RunOutcome::Failed
    } else if stop.is_some() {
        results = counts
            .iter()
            .map(|c| TargetResult {
                name: c.target.clone(),
                account: Account { matched: c.due, remaining: Some(c.due), ..Account::default() },
                duration_millis: 0,
                error: None,
            })
            .collect();
        RunOutcome::Stopped
    } else {
        let run_budget = run
            .spec
            .guardrails
            .as_ref()
            .and_then(|g| g.max_records_per_run)
            .map(|limit| Budget::new(u64::try_from(limit).unwrap_or(0), "maxRecordsPerRun"));
        let mut any_failed = false;
        let mut interrupted = false;
        for (target, count) in run.spec.targets.iter().zip(&counts) {
            let started = Instant::now();
            let mut opts = options(target);
            if mode == Mode::Enforce {
                opts.budget = budgets(run.spec, run_budget.as_ref(), count.total);
            }
            // Counted a moment ago under the same cutoff: the store need not count again.
            opts.counted_due = Some(count.due);
            if opts.stopped() {
                interrupted = true;
                break;
            }
            if let Some((hold, due)) = held_whole.get(&target.name) {
                let mut account = Account { remaining: Some(0), ..Account::default() };
                account.add_held(hold, *due);
                results.push(TargetResult {
                    name: target.name.clone(),
                    account,
                    duration_millis: started.elapsed().as_millis() as u64,
                    error: None,
                });
                continue;
            }
            let purged = match store_for(stores, target) {
                Ok(handle) => {
                    // One of the DataStore's slots, shared with every other run on it.
                    let slot = tokio::select! {
                        slot = handle.slot() => Some(slot),
                        _ = opts.cancel.cancelled() => None,
                    };
                    match slot {
                        Some(_slot) => handle.store.purge_due(target, &run.cutoff, &opts).await,
                        None => Err(Incomplete::from(StoreError::Cancelled { deleted: 0 })),
                    }
                }
                Err(e) => Err(Incomplete::from(e)),
            };
            results.push(match purged {
                Ok(report) => TargetResult {
                    name: target.name.clone(),
                    account: report.account,
                    duration_millis: started.elapsed().as_millis() as u64,
                    error: None,
                },
                Err(Incomplete { error: StoreError::BudgetSpent { guardrail, limit, deleted }, report }) => {
                    stop = Some(GuardrailStop::Reached {
                        guardrail: guardrail.to_owned(),
                        limit,
                        target: target.name.clone(),
                    });
                    let e = StoreError::BudgetSpent { guardrail, limit, deleted };
                    failed(&target.name, started, report.account, &e)
                }
                Err(Incomplete { error: error @ StoreError::Cancelled { .. }, report }) => {
                    interrupted = true;
                    failed(&target.name, started, report.account, &error)
                }
                Err(Incomplete { error, report }) => {
                    any_failed = true;
                    failed(&target.name, started, report.account, &error)
                }
            });
            if stop.is_some() || interrupted {
                // The budget is spent: the targets after this one are not touched.
                break;
            }
        }
        if interrupted {
            RunOutcome::Interrupted
        } else if any_failed {
            RunOutcome::Failed
        } else if stop.is_some() {
            RunOutcome::Stopped
        } else {
            RunOutcome::Succeeded
        }
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
        "runStartedAt": run.cutoff.run_started().to_string(),
        "timeZone": run.cutoff.zone().iana_name(),
        "startedAt": started_at.to_string(),
        "finishedAt": finished.to_string(),
        "outcome": outcome.as_str(),
        "stoppedBy": stop.as_ref().map(|s| s.reason()),
        "interruptedBy": (outcome == RunOutcome::Interrupted).then(|| run.interruption.reason().unwrap_or_else(|| "Cancelled".into())),
        "targets": results.iter().map(|t| json!({
            "name": t.name,
            "records": t.account,
            "error": t.error.as_ref().map(|(reason, _)| reason),
        })).collect::<Vec<_>>(),
    });
    RunResult { outcome, targets: results, stopped_by: stop, finished, record }
}
