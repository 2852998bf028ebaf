//! RetentionPolicy: on schedule, compute the cutoff once, record it, purge
//! every target, read back, and write the outcome, the evidence digests and
//! a Compliant condition that is true only when the read-back proved it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::runtime::controller::Action;
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use tokio_util::sync::CancellationToken;

use super::{Context, Error, apply_status, apply_status_at, condition, condition_unknown};
use crate::api::common::conditions::{COMPLIANT, EVIDENCE_STORED, VALID};
use crate::api::policy::{RunRecord, RunSummary, TargetRun};
use crate::api::{Mode, PreciseTime, RetentionPolicy, RetentionPolicyStatus, validate};
use crate::engine::evidence::SealedEvidence;
use crate::engine::run::{Interruption, PolicyRun, RunOutcome, RunResult, Stores, run_policy};
use crate::plan;
use crate::stores::Cutoff;

/// Compliant's reason while a run's evidence waits for the locked sink.
pub const EVIDENCE_PENDING: &str = "EvidencePending";
const EVIDENCE_PENDING_NOTE: &str = ". The run's evidence is sealed in the cluster but not yet locked in the evidence sink; this verdict stands once it is";

/// Annotation that asks for a run now: set it to a new value (a timestamp,
/// a ticket number) and the policy runs once, whatever its schedule.
pub const RUN_NOW: &str = "delenda.dev/run-now";
/// The number of past runs kept in status.
pub const HISTORY: usize = 10;
/// The longest wait between reconciles, so a policy is looked at even when
/// its schedule is far away (kube-runtime caps a requeue at about 180 days).
pub const MAX_WAIT: Duration = Duration::from_secs(3600);

fn since(t: Timestamp, now: Timestamp) -> Duration {
    Duration::from_secs(now.duration_since(t).as_secs().max(0) as u64)
}

/// Consecutive failed runs, newest first, for the retry backoff.
fn failures(status: &RetentionPolicyStatus) -> u32 {
    status.history.iter().take_while(|r| r.outcome == "Failed").count() as u32
}

/// 30 s after the first failure, doubling up to 16 min.
fn backoff(failures: u32) -> Duration {
    Duration::from_secs((30u64 << failures.min(6).saturating_sub(1)).min(1800))
}

/// A run-now token not yet answered: each value runs once, whatever runs
/// come after it (the answered value is kept in status).
fn run_now_requested(policy: &RetentionPolicy, status: &RetentionPolicyStatus) -> Option<String> {
    let token = policy.annotations().get(RUN_NOW)?.clone();
    let answered = status.run_now_answered.as_deref() == Some(token.as_str())
        || status.current_run.as_ref().is_some_and(|r| r.id.ends_with(&format!("~{token}")));
    (!answered && !token.is_empty() && token.len() <= 64).then_some(token)
}

async fn reconcile(policy: Arc<RetentionPolicy>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = policy.namespace().unwrap_or_default();
    let name = policy.name_any();
    let generation = policy.metadata.generation;
    // Whole seconds: the run's start is recorded in status, which keeps
    // whole seconds, and per-record periods count from it.
    let now = Timestamp::from_second(Timestamp::now().as_second()).expect("now is a valid instant");
    let mut status = policy.status.clone().unwrap_or_default();
    let previous = status.clone();
    status.observed_generation = generation;

    let problems = validate::policy(&policy.spec);
    let schedule = match (problems.first(), validate::schedule(&policy.spec.schedule)) {
        (None, Ok(s)) => s,
        (first, schedule) => {
            let reason =
                first.map_or_else(|| schedule.as_ref().err().map_or("Invalid", |e| e.reason()), |e| e.reason());
            let message = problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
            status.conditions =
                vec![condition(&previous.conditions, VALID, false, reason, message.clone(), generation, now)];
            status.next_run = None;
            if super::changed(policy.as_ref(), &status, &previous) {
                apply_status(&ctx.client, policy.as_ref(), &status).await?;
                ctx.event(policy.as_ref(), true, reason, "Validate", message).await;
            }
            return Ok(Action::await_change());
        }
    };
    // The targets are checked against their stores once per generation,
    // before every run, and at every reconcile while one does not resolve:
    // a typo shows before the first run, and its fix without one.
    let resolved_already = previous
        .conditions
        .iter()
        .any(|c| c.type_ == VALID && c.status == "True" && c.reason == RESOLVED && c.observed_generation == generation);
    let mut check = None;
    let valid = if resolved_already {
        condition(&previous.conditions, VALID, true, RESOLVED, RESOLVED_MESSAGE, generation, now)
    } else {
        let c = check_targets(&ctx, &namespace, &policy.spec).await;
        let valid = c.valid(&previous.conditions, generation, now);
        check = Some(c);
        valid
    };
    say_if_invalid(&ctx, &policy, &previous, &valid).await;
    let recheck = check.as_ref().is_some_and(|c| !c.settled());
    let mut compliant_before = previous.conditions.iter().find(|c| c.type_ == COMPLIANT).cloned();
    // A run proves compliance only for the spec it ran under: after an edit
    // (a shorter period, a new target) nobody knows until the next run.
    if let (Some(c), Some(run)) = (&compliant_before, &previous.last_run)
        && c.status != "Unknown"
        && let (Some(ran), Some(now_gen)) = (run.generation, generation)
        && ran < now_gen
    {
        let message = format!(
            "the spec changed (generation {now_gen}) after run {} (generation {ran}) proved what it did; the next run will tell",
            run.id
        );
        compliant_before =
            Some(condition_unknown(&previous.conditions, COMPLIANT, "SpecChanged", message, generation, now));
    }
    // A record the locked sink did not take yet: catch the sink up.
    let mut stored_before = previous.conditions.iter().find(|c| c.type_ == EVIDENCE_STORED).cloned();
    if let (Some(c), Some(sink)) = (&stored_before, &ctx.sink)
        && c.status == "False"
        && c.reason == super::evidence::SINK_UNAVAILABLE
    {
        let chain = super::evidence::policy_chain(&name);
        let (ok, reason, message) = match super::evidence::sync_sink(&ctx.client, &namespace, &chain, sink).await {
            Ok(()) => (true, "Stored", format!("the locked evidence sink now holds every record of chain {chain}")),
            Err(e) => (
                false,
                super::evidence::SINK_UNAVAILABLE,
                format!("chain {chain} is not yet all in the locked evidence sink; retried: {e}"),
            ),
        };
        stored_before = Some(condition(&previous.conditions, EVIDENCE_STORED, ok, reason, message, generation, now));
        // The run's verdict, held while its evidence was pending, stands now.
        if ok
            && let Some(c) = compliant_before.as_ref().filter(|c| c.reason == EVIDENCE_PENDING)
            && let Some((reason, message)) =
                c.message.strip_suffix(EVIDENCE_PENDING_NOTE).and_then(|m| m.split_once(": "))
        {
            compliant_before = Some(condition(
                &previous.conditions,
                COMPLIANT,
                reason == "Verified",
                reason,
                message,
                generation,
                now,
            ));
        }
    }
    let sink_pending = stored_before.as_ref().is_some_and(|c| c.reason == super::evidence::SINK_UNAVAILABLE);
    status.conditions = std::iter::once(valid).chain(compliant_before).chain(stored_before).collect();

    // Decide whether a run is due, or resume the one a restart interrupted.
    let last_started = status.last_run.as_ref().map(|r| r.started_at.0);
    let created = policy.metadata.creation_timestamp.as_ref().map(|t| t.0).unwrap_or(now);
    let scheduled = plan::last_due(&schedule, now).is_some_and(|fired| fired > last_started.unwrap_or(created));
    let retry = status.last_run.as_ref().is_some_and(|r| match r.outcome.as_deref() {
        Some("Failed") => r.finished_at.as_ref().is_some_and(|f| since(f.0, now) >= backoff(failures(&status))),
        // Interrupted by an edit, a shutdown or a lost lease: the run was due, so the next one starts now.
        Some("Interrupted") => r.interrupted_by.as_deref() != Some("Suspended"),
        _ => false,
    });
    let run_now = run_now_requested(&policy, &status);
    let next = plan::next_run(&schedule, now).ok();
    status.next_run = next.map(Time);

    let wanted = status.current_run.is_some() || (!policy.spec.suspend && (scheduled || retry || run_now.is_some()));
    if !wanted {
        if super::changed(policy.as_ref(), &status, &previous) {
            apply_status(&ctx.client, policy.as_ref(), &status).await?;
        }
        let mut wait = next.map(|n| since(now, n)).unwrap_or(MAX_WAIT).min(MAX_WAIT);
        if sink_pending {
            wait = wait.min(ctx.erasure_retry);
        }
        if recheck {
            wait = wait.min(super::datastore::REPROBE);
        }
        // A failed run is retried when its backoff ends: that wake-up must
        // come from here too, since the requeue the failed run asked for is
        // replaced by the reconcile its own status write triggers.
        if let Some(finished) = status
            .last_run
            .as_ref()
            .filter(|r| r.outcome.as_deref() == Some("Failed"))
            .and_then(|r| r.finished_at.as_ref())
        {
            wait = wait.min(backoff(failures(&status)).saturating_sub(since(finished.0, now)));
        }
        return Ok(Action::requeue(wait.max(Duration::from_secs(1))));
    }

    // A run is wanted. Wait for one of the installation's run slots, then
    // decide on the policy as the API server has it now, not as the cache
    // had it: the cache may not yet hold this operator's own last write.
    let _slot = tokio::select! {
        slot = ctx.runs.clone().acquire_owned() => slot.ok(),
        _ = ctx.cancel.cancelled() => return Ok(Action::await_change()),
    };
    let api: Api<RetentionPolicy> = Api::namespaced(ctx.client.clone(), &namespace);
    let Some(fresh) = api.get_opt(&name).await? else { return Ok(Action::await_change()) };
    let fresh_status = fresh.status.as_ref();
    let fresh_run = fresh_status.and_then(|s| s.current_run.as_ref());
    // The decision to run was made on the cache, which may not hold this
    // operator's own last run yet: a run it finished (whose start says the
    // schedule was served) or a run-now token it answered. Either makes
    // the decision stale, and running on it would run twice.
    let last_id = |s: Option<&RetentionPolicyStatus>| s.and_then(|s| s.last_run.as_ref()).map(|r| r.id.clone());
    let answered = |s: Option<&RetentionPolicyStatus>| s.and_then(|s| s.run_now_answered.clone());
    if fresh.metadata.generation != generation
        || fresh_run != status.current_run.as_ref()
        || last_id(fresh_status) != last_id(Some(&previous))
        || answered(fresh_status) != answered(Some(&previous))
    {
        // Something changed meanwhile: decide again on what is there now.
        return Ok(Action::requeue(Duration::from_millis(200)));
    }
    let mut resource_version = fresh.metadata.resource_version.clone();

    // The stores, what their DataStores let policies reach, and whether
    // each target still resolves: checked again just before the run.
    let fresh_check = check.is_none();
    let check = match check {
        Some(c) => c,
        None => check_targets(&ctx, &namespace, &policy.spec).await,
    };
    let valid = check.valid(&previous.conditions, generation, now);
    if fresh_check {
        say_if_invalid(&ctx, &policy, &previous, &valid).await;
    }
    status.conditions.retain(|c| c.type_ != VALID);
    status.conditions.insert(0, valid);
    if !(check.refused.is_empty() && check.unresolved.is_empty()) && status.current_run.is_none() {
        // Outside what the DataStore allows, or not there at all: nothing
        // of the policy runs (a run counts every target before it deletes
        // anything, and would fail on it). The run waits for the fix.
        if super::changed(policy.as_ref(), &status, &previous) {
            apply_status(&ctx.client, policy.as_ref(), &status).await?;
        }
        return Ok(Action::requeue(super::datastore::REPROBE));
    }
    let stores: Stores = check.stores;

    if let Some(current) = status.current_run.clone() {
        // A run a restart interrupted resumes with its recorded cutoff, but
        // only under the spec it started with, and not when suspended.
        let why = if policy.spec.suspend {
            Some(INTERRUPTED_SUSPENDED)
        } else if current.generation.is_some() && current.generation != generation {
            Some(INTERRUPTED_SPEC_CHANGED)
        } else {
            None
        };
        if let Some(why) = why
            && let Some(cutoff) = Cutoff::planned_in(current.cutoff.0, current.started_at.0, schedule.time_zone.clone())
        {
            let result = interrupted_before_resuming(&policy, &namespace, &current, &cutoff, why);
            finish(
                &ctx,
                &policy,
                &mut status,
                &previous,
                current.id.clone(),
                cutoff,
                current.started_at.0,
                &result,
                resource_version,
            )
            .await?;
            return Ok(Action::requeue(Duration::from_secs(1)));
        }
    }

    let (run_id, cutoff, started) = if let Some(current) = status.current_run.clone() {
        let Some(resumed) = Cutoff::planned_in(current.cutoff.0, current.started_at.0, schedule.time_zone.clone())
        else {
            return Ok(Action::requeue(MAX_WAIT));
        };
        (current.id.clone(), resumed, current.started_at.0)
    } else {
        let now = Timestamp::from_second(Timestamp::now().as_second()).expect("now is a valid instant");
        let cutoff = match plan::cutoff(policy.spec.retention.period, now, &schedule.time_zone) {
            Ok(c) => c,
            Err(e) => {
                ctx.event(policy.as_ref(), true, e.reason(), "Run", e.to_string()).await;
                return Ok(Action::requeue(MAX_WAIT));
            }
        };
        let uid = policy.uid().unwrap_or_default();
        let token = run_now.as_ref().map(|t| format!("~{t}")).unwrap_or_default();
        let id = format!("{}-{}{token}", now.as_second(), uid.get(..8).unwrap_or(&uid));
        // Record the run, its cutoff, its spec's generation and the token it
        // answers before anything is deleted.
        status.current_run = Some(Box::new(RunRecord {
            id: id.clone(),
            cutoff: PreciseTime(cutoff.at()),
            mode: policy.spec.mode,
            generation,
            interrupted_by: None,
            started_at: Time(now),
            finished_at: None,
            outcome: None,
            targets: vec![],
            digest: None,
            previous_digest: None,
        }));
        if let Some(token) = &run_now {
            status.run_now_answered = Some(token.clone());
        }
        if !ctx.fence.holds() {
            return Ok(Action::await_change());
        }
        resource_version = apply_status_at(&ctx.client, policy.as_ref(), &status, resource_version.as_deref()).await?;
        ctx.event(policy.as_ref(), false, "RunStarted", "Run", format!("run {id} with cutoff {}", cutoff.at())).await;
        tracing::info!(policy = %name, namespace = %namespace, run = %id, cutoff = %cutoff.at(), "run started");
        (id, cutoff, now)
    };

    // The run stops between batches when the operator stops or loses its
    // lease, or when this policy is edited, suspended or deleted.
    let cancel = ctx.cancel.child_token();
    let interruption = Interruption::default();
    let guard = watch_for_interruptions(&ctx, &policy, generation, cancel.clone(), interruption.clone());
    let fence = ctx.fence.clone();
    let gate: crate::stores::Gate = Arc::new(move || fence.holds());
    let policy_ref = format!("{namespace}/{name}");
    // The Holds in force keep what they cover out of this run.
    let holds = super::hold::in_force(&ctx, &namespace).await?;
    let views = super::hold::views(&holds);
    let mut spec = policy.spec.clone();
    let category = spec.category.as_str().to_owned();
    for t in spec.targets.iter_mut() {
        t.held = crate::plan::hold::held_at(&views, &name, &category, &t.name);
    }
    let clock = std::time::Instant::now();
    let result = run_policy(
        PolicyRun {
            policy: &policy_ref,
            spec: &spec,
            run_id: &run_id,
            cutoff: cutoff.clone(),
            now: Timestamp::now(),
            interruption: interruption.clone(),
        },
        &stores,
        |t| {
            let mut options = match stores.get(&t.data_store_ref.name) {
                Some(h) => h.purge_options(policy.spec.mode),
                None => crate::stores::PurgeOptions::new(policy.spec.mode),
            };
            options.cancel = cancel.clone();
            options.gate = Some(gate.clone());
            options
        },
    )
    .await;
    guard.abort();
    if result.outcome == RunOutcome::Interrupted && interruption.reason().is_none() {
        interruption.set(ctx.stop_reason());
    }
    let kinds: BTreeMap<&str, &str> = policy
        .spec
        .targets
        .iter()
        .filter_map(|t| stores.get(&t.data_store_ref.name).map(|h| (t.name.as_str(), h.store.kind())))
        .collect();
    let deleted: Vec<(&str, u64)> =
        result.targets.iter().filter_map(|t| kinds.get(t.name.as_str()).map(|k| (*k, t.account.deleted))).collect();
    let mode = if policy.spec.mode == Mode::Enforce { "Enforce" } else { "DryRun" };
    ctx.metrics.run_finished(result.outcome.as_str(), mode, clock.elapsed().as_secs_f64(), &deleted);
    let mut result = result;
    if result.outcome == RunOutcome::Interrupted {
        result.record["interruptedBy"] = serde_json::json!(interruption.reason());
    }
    finish(&ctx, &policy, &mut status, &previous, run_id.clone(), cutoff, started, &result, resource_version).await?;
    Ok(Action::requeue(if result.outcome == RunOutcome::Failed {
        backoff(failures(&status))
    } else {
        Duration::from_secs(1)
    }))
}

/// Valid's reason once every target resolved in its store.
pub const RESOLVED: &str = "Resolved";
const RESOLVED_MESSAGE: &str = "the spec passed the operator's checks, and every target resolves in its store";
/// How long one target's check may take before it counts as not checked.
const CHECK_TIMEOUT: Duration = Duration::from_secs(15);

/// The policy's targets as their stores see them, without reading a record.
struct TargetCheck {
    /// Clients of the DataStores that exist.
    stores: Stores,
    /// Targets outside their DataStore's allowedTargets.
    refused: Vec<String>,
    /// Targets that do not resolve: a reason and a message for each.
    unresolved: Vec<(&'static str, String)>,
    /// Targets that could not be checked now (a store unreachable, a
    /// Secret missing): neither resolved nor not.
    unchecked: Vec<String>,
}

impl TargetCheck {
    /// Whether there is nothing to look at again before the next run.
    fn settled(&self) -> bool {
        self.refused.is_empty() && self.unresolved.is_empty() && self.unchecked.is_empty()
    }

    /// The Valid condition this check makes.
    fn valid(
        &self,
        previous: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
        generation: Option<i64>,
        now: Timestamp,
    ) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
        if !self.refused.is_empty() {
            let message = format!("{}; nothing was run", self.refused.join("; "));
            return condition(previous, VALID, false, "TargetNotAllowed", message, generation, now);
        }
        if let Some((reason, _)) = self.unresolved.first() {
            let message = format!(
                "{}; no run starts until every target resolves",
                self.unresolved.iter().map(|(_, m)| m.as_str()).collect::<Vec<_>>().join("; ")
            );
            return condition(previous, VALID, false, reason, message, generation, now);
        }
        if !self.unchecked.is_empty() {
            let message = format!(
                "the spec passed the operator's checks; not yet checked in their stores: {}",
                self.unchecked.join("; ")
            );
            return condition(previous, VALID, true, "Valid", message, generation, now);
        }
        condition(previous, VALID, true, RESOLVED, RESOLVED_MESSAGE, generation, now)
    }
}

/// Checks each target: its DataStore exists, allows it, and finds what it
/// names (the table and columns, the bucket, the index pattern and time
/// field, the file root). Answers that need a person go to `unresolved`;
/// a store that cannot answer now leaves its targets `unchecked`.
async fn check_targets(ctx: &Context, namespace: &str, spec: &crate::api::policy::RetentionPolicySpec) -> TargetCheck {
    let mut check = TargetCheck { stores: BTreeMap::new(), refused: vec![], unresolved: vec![], unchecked: vec![] };
    let mut silent: BTreeMap<&str, String> = BTreeMap::new();
    for target in &spec.targets {
        let ds = &target.data_store_ref.name;
        let handle = match ctx.stores.get_with_spec(&ctx.client, namespace, ds).await {
            Ok((handle, spec)) => {
                check.refused.extend(target.addresses().into_iter().filter(|a| !spec.allows(a)).map(|a| {
                    format!("target {} reaches {a}, outside the allowedTargets of DataStore {ds}", target.name)
                }));
                check.stores.insert(ds.clone(), handle.clone());
                handle
            }
            // Missing DataStores and Secrets, and DataStores no client can
            // be made from, wait for a person; the API server's own errors
            // are retried.
            Err(e @ (Error::NotFound { .. } | Error::Connect(_))) => {
                check.unresolved.push((e.reason(), format!("target {}: {e}", target.name)));
                continue;
            }
            Err(e) => {
                check.unchecked.push(format!("target {} (DataStore {ds}: {})", target.name, e.reason()));
                continue;
            }
        };
        // A store that did not answer for one target is not asked again
        // for the next: the reconcile waits for one timeout, not one each.
        if let Some(why) = silent.get(ds.as_str()) {
            check.unchecked.push(format!("target {} ({why})", target.name));
            continue;
        }
        // One of the DataStore's slots, as a run takes: the check opens a
        // connection too, and `limits.maxConcurrency` holds for it.
        let _slot = handle.slot().await;
        match tokio::time::timeout(CHECK_TIMEOUT, handle.store.check_target(target)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) if !e.is_transient() && !matches!(e.reason(), "Unreachable" | "AuthenticationFailed") => {
                let message = crate::stores::identity::redact(&format!("target {}: {e}", target.name));
                check.unresolved.push((e.reason(), message));
            }
            Ok(Err(e)) => {
                check.unchecked.push(format!("target {} ({})", target.name, e.reason()));
                silent.insert(ds.as_str(), e.reason().to_owned());
            }
            Err(_) => {
                let why = format!("no answer in {} s", CHECK_TIMEOUT.as_secs());
                check.unchecked.push(format!("target {} ({why})", target.name));
                silent.insert(ds.as_str(), why);
            }
        }
    }
    check
}

/// An Event when Valid turns False, or False for another reason.
async fn say_if_invalid(
    ctx: &Context,
    policy: &RetentionPolicy,
    previous: &RetentionPolicyStatus,
    valid: &k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition,
) {
    let before = previous.conditions.iter().find(|c| c.type_ == VALID);
    let new = before.is_none_or(|b| b.status != valid.status || b.reason != valid.reason || b.message != valid.message);
    if valid.status == "False" && new {
        ctx.event(policy, true, &valid.reason, "Validate", valid.message.clone()).await;
    }
}

/// Reasons a run is interrupted.
pub const INTERRUPTED_SPEC_CHANGED: &str = "SpecChanged";
/// The policy was suspended.
pub const INTERRUPTED_SUSPENDED: &str = "Suspended";
/// The policy was deleted.
pub const INTERRUPTED_DELETED: &str = "PolicyDeleted";

/// Watches the policy while it runs: an edit, a suspension or its deletion
/// cancels the run, so nothing more is deleted under a spec that no longer
/// holds.
fn watch_for_interruptions(
    ctx: &Context,
    policy: &RetentionPolicy,
    generation: Option<i64>,
    cancel: tokio_util::sync::CancellationToken,
    interruption: Interruption,
) -> tokio::task::JoinHandle<()> {
    let api: Api<RetentionPolicy> = Api::namespaced(ctx.client.clone(), &policy.namespace().unwrap_or_default());
    let uid = policy.uid();
    let config = watcher::Config::default().fields(&format!("metadata.name={}", policy.name_any()));
    tokio::spawn(async move {
        let mut events = std::pin::pin!(watcher(api, config));
        while let Some(event) = events.next().await {
            let why = match event {
                Ok(watcher::Event::Delete(_)) => Some(INTERRUPTED_DELETED),
                Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) => {
                    if p.uid() != uid || p.metadata.deletion_timestamp.is_some() {
                        Some(INTERRUPTED_DELETED)
                    } else if p.metadata.generation != generation {
                        Some(if p.spec.suspend { INTERRUPTED_SUSPENDED } else { INTERRUPTED_SPEC_CHANGED })
                    } else {
                        None
                    }
                }
                Ok(watcher::Event::InitDone | watcher::Event::Init) => None,
                Err(e) => {
                    tracing::debug!(error = %e, "watching a running policy");
                    None
                }
            };
            if let Some(why) = why {
                interruption.set(why);
                cancel.cancel();
                return;
            }
        }
    })
}

/// The result of a run that a restart left behind and that cannot resume:
/// its spec changed or it was suspended meanwhile. It deleted what it did
/// before the restart; this records its end.
fn interrupted_before_resuming(
    policy: &RetentionPolicy,
    namespace: &str,
    current: &RunRecord,
    cutoff: &Cutoff,
    why: &str,
) -> RunResult {
    let finished = Timestamp::now();
    let record = serde_json::json!({
        "kind": "RetentionRun",
        "policy": format!("{namespace}/{}", policy.name_any()),
        "category": policy.spec.category,
        "legalBasis": policy.spec.legal_basis,
        "period": policy.spec.retention.period,
        "runId": current.id,
        "mode": current.mode,
        "cutoff": cutoff.at().to_string(),
        "startedAt": current.started_at.0.to_string(),
        "finishedAt": finished.to_string(),
        "outcome": RunOutcome::Interrupted.as_str(),
        "interruptedBy": why,
        "targets": [],
    });
    RunResult { outcome: RunOutcome::Interrupted, targets: vec![], stopped_by: None, finished, record }
}

#[allow(clippy::too_many_arguments)]
async fn finish(
    ctx: &Context,
    policy: &RetentionPolicy,
    status: &mut RetentionPolicyStatus,
    previous: &RetentionPolicyStatus,
    run_id: String,
    cutoff: Cutoff,
    started: Timestamp,
    result: &RunResult,
    resource_version: Option<String>,
) -> Result<(), Error> {
    let now = Timestamp::now();
    // Fenced: an instance that no longer leads writes nothing, neither
    // evidence nor status; the leader resumes the run from its record.
    if !ctx.fence.holds() {
        tracing::warn!(policy = %policy.name_any(), run = %run_id, outcome = result.outcome.as_str(),
            "no longer the leader: the run's end is not written; the leader resumes it");
        return Ok(());
    }
    // The durable copy first: the digest in status is the stored record's.
    let namespace = policy.namespace().unwrap_or_default();
    let chain = super::evidence::policy_chain(&policy.name_any());
    let stored = super::evidence::append(
        &ctx.client,
        &namespace,
        &chain,
        &result.record,
        ctx.signer.as_ref(),
        ctx.sink.as_deref(),
    )
    .await;
    let (stored_ok, stored_reason, stored_message) = super::evidence::stored_condition(&chain, &stored);
    let evidence: Option<SealedEvidence> = match stored {
        Ok(s) => Some(s.sealed),
        Err(e) => {
            tracing::warn!(policy = %policy.name_any(), error = %e, "could not store the run's evidence");
            let note = format!("the evidence of run {run_id} is only in status and the log: {e}");
            ctx.event(policy, true, "EvidenceNotStored", "Run", note).await;
            tracing::info!(policy = %policy.name_any(), run = %run_id, evidence = %result.record, "run evidence");
            None
        }
    };
    if !stored_ok && evidence.is_some() {
        ctx.event(policy, true, stored_reason, "Run", stored_message.clone()).await;
    }
    let evidence = evidence.as_ref();
    let record = RunRecord {
        id: run_id.clone(),
        cutoff: PreciseTime(cutoff.at()),
        mode: policy.spec.mode,
        generation: status.current_run.as_ref().and_then(|c| c.generation).or(policy.metadata.generation),
        interrupted_by: result.record["interruptedBy"].as_str().map(str::to_owned),
        started_at: Time(started),
        finished_at: Some(Time(result.finished)),
        outcome: Some(result.outcome.as_str().into()),
        targets: result
            .targets
            .iter()
            .map(|t| TargetRun {
                name: t.name.clone(),
                records: t.account.clone(),
                duration_millis: t.duration_millis as i64,
                reason: t.error.as_ref().map(|(r, _)| r.clone()),
                message: t.error.as_ref().map(|(_, m)| m.clone()),
            })
            .collect(),
        digest: evidence.map(|e| e.digest.to_string()),
        previous_digest: evidence.and_then(|e| e.previous_digest.as_ref()).map(|d| d.to_string()),
    };
    status.history.insert(
        0,
        RunSummary {
            id: run_id.clone(),
            cutoff: PreciseTime(cutoff.at()),
            outcome: result.outcome.as_str().into(),
            deleted: result.deleted() as i64,
            digest: evidence.map(|e| e.digest.to_string()),
        },
    );
    status.history.truncate(HISTORY);
    status.last_run = Some(Box::new(record));
    status.current_run = None;

    let generation = policy.metadata.generation;
    let (ok, reason, message) = if result.proves_compliance(policy.spec.mode) {
        (true, "Verified", format!("run {run_id} read back nothing older than {}", cutoff.at()))
    } else {
        match (result.outcome, policy.spec.mode) {
            (RunOutcome::Interrupted, _) => (
                false,
                "Interrupted",
                format!(
                    "run {run_id} was interrupted ({}) after deleting {} records; the next run starts afresh",
                    result.record["interruptedBy"].as_str().unwrap_or("Cancelled"),
                    result.deleted()
                ),
            ),
            (RunOutcome::Stopped, _) => (
                false,
                result.stopped_by.as_ref().map(|s| s.reason()).unwrap_or("Stopped"),
                result.stopped_by.as_ref().map(|s| s.to_string()).unwrap_or_default(),
            ),
            (RunOutcome::Failed, _) => {
                let first = result.targets.iter().find_map(|t| t.error.clone()).unwrap_or_default();
                // A clock that disagrees stops the whole run; say so by name.
                let reason = if first.0 == "ClockSkew" { "ClockSkew" } else { "RunFailed" };
                (false, reason, format!("run {run_id} failed; retrying with backoff: {}", first.1))
            }
            (RunOutcome::Succeeded, Mode::DryRun) => {
                let due: u64 = result.targets.iter().map(|t| t.account.matched).sum();
                (false, "DryRun", format!("dry run {run_id}: {due} records are past the cutoff; nothing was deleted"))
            }
            (RunOutcome::Succeeded, Mode::Enforce) => {
                let unreadable: Vec<String> = result
                    .targets
                    .iter()
                    .filter_map(|t| t.account.unreadable_summary().map(|s| format!("target {}: {s}", t.name)))
                    .collect();
                if unreadable.is_empty() {
                    (false, "NotVerified", "the read-back did not prove compliance".into())
                } else {
                    (
                        false,
                        "UnreadableRecords",
                        format!(
                            "run {run_id} deleted what was due, but some records could not be judged and were kept: {}",
                            unreadable.join("; ")
                        ),
                    )
                }
            }
        }
    };
    // A run is proven only once its evidence is where it must be: with a
    // sink, locked there. Until then Compliant waits, holding the verdict.
    let compliant = if stored_reason == super::evidence::SINK_UNAVAILABLE {
        let pending = format!("{reason}: {message}{EVIDENCE_PENDING_NOTE}");
        condition_unknown(&previous.conditions, COMPLIANT, EVIDENCE_PENDING, pending, generation, now)
    } else {
        condition(&previous.conditions, COMPLIANT, ok, reason, message.clone(), generation, now)
    };
    let stored =
        condition(&previous.conditions, EVIDENCE_STORED, stored_ok, stored_reason, stored_message, generation, now);
    status.conditions.retain(|c| c.type_ != COMPLIANT && c.type_ != EVIDENCE_STORED);
    status.conditions.push(compliant);
    status.conditions.push(stored);
    // The write is conditional on the object as this run last saw it. A
    // conflict means someone else wrote meanwhile: a user's edit (then this
    // instance, still leading, writes again on the fresh object) or another
    // instance (then this one no longer leads, and stops).
    let mut written = apply_status_at(&ctx.client, policy, status, resource_version.as_deref()).await;
    if let Err(kube::Error::Api(e)) = &written
        && e.code == 409
        && ctx.fence.holds()
    {
        let api: Api<RetentionPolicy> = Api::namespaced(ctx.client.clone(), &namespace);
        let fresh = api.get_opt(&policy.name_any()).await?.and_then(|p| p.metadata.resource_version);
        written = apply_status_at(&ctx.client, policy, status, fresh.as_deref()).await;
    }
    match written {
        Ok(_) => {}
        // Deleted while it ran: its evidence is in the chain, which outlives it.
        Err(kube::Error::Api(e)) if e.code == 404 => {
            tracing::info!(policy = %policy.name_any(), run = %run_id, "the policy was deleted; its run's end is in the evidence");
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    }

    let deleted = result.deleted();
    let unjudged = result.targets.iter().any(|t| !t.account.unreadable.is_empty());
    let (warning, event_reason) = match result.outcome {
        RunOutcome::Succeeded if unjudged => (true, "UnreadableRecords"),
        RunOutcome::Succeeded => (false, "RunSucceeded"),
        RunOutcome::Failed => (true, "RunFailed"),
        RunOutcome::Stopped => (true, "GuardrailStop"),
        RunOutcome::Interrupted => (true, "RunInterrupted"),
    };
    ctx.event(policy, warning, event_reason, "Run", format!("run {run_id}: {deleted} records deleted; {message}"))
        .await;
    tracing::info!(
        policy = %policy.name_any(),
        run = %run_id,
        outcome = result.outcome.as_str(),
        deleted,
        digest = %evidence.map(|e| e.digest.to_string()).unwrap_or_default(),
        // A third copy of the sealed record, for log pipelines.
        evidence = %evidence.map(|e| serde_json::to_string(e).unwrap_or_default()).unwrap_or_default(),
        "run finished"
    );
    Ok(())
}

fn error_policy(_: Arc<RetentionPolicy>, error: &Error, _: Arc<Context>) -> Action {
    tracing::warn!(reason = error.reason(), error = %error, "RetentionPolicy reconcile failed");
    Action::requeue(Duration::from_secs(30))
}

/// RetentionPolicies reconciled at once. Unbounded, the first pass over
/// thousands of new policies reads each one's DataStore and Secret, checks
/// its targets and writes its status all at once: a connection to the API
/// server per request, hundreds of megabytes that the allocator keeps after
/// the burst, and lease renewals starved until the lease is lost (measured
/// in `bench/`, docs/performance.md). A reconcile waiting for one of the
/// run slots (`--max-concurrent-runs`) holds one of these too, so while more
/// policies than this are due at once, other reconciles wait for runs to end.
pub const CONCURRENT_RECONCILES: u16 = 64;

/// Runs the RetentionPolicy controller until `stop` is cancelled and its reconciles in flight end.
pub async fn run(ctx: Arc<Context>, stop: CancellationToken) {
    let policies: Api<RetentionPolicy> = ctx.watched();
    let controller = super::followed_controller(policies, ctx.metrics.clone(), crate::metrics::Metrics::watch_policies);
    let controller =
        controller.with_config(kube::runtime::controller::Config::default().concurrency(CONCURRENT_RECONCILES));
    super::until_stopped(controller, reconcile, error_policy, ctx, stop).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_thirty_seconds_to_sixteen_minutes() {
        assert_eq!(backoff(0), Duration::from_secs(30));
        assert_eq!(backoff(1), Duration::from_secs(30));
        assert_eq!(backoff(2), Duration::from_secs(60));
        assert_eq!(backoff(3), Duration::from_secs(120));
        assert_eq!(backoff(6), Duration::from_secs(960));
        assert_eq!(backoff(20), Duration::from_secs(960), "capped");
    }
}
