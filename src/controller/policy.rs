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
use kube::runtime::{Controller, watcher};
use kube::{Api, ResourceExt};

use super::{Context, Error, apply_status, condition, condition_unknown, purge_options, store_client};
use crate::api::common::conditions::{COMPLIANT, EVIDENCE_STORED, VALID};
use crate::api::policy::{RunRecord, RunSummary, TargetRun};
use crate::api::{Mode, PreciseTime, RetentionPolicy, RetentionPolicyStatus, validate};
use crate::engine::evidence::SealedEvidence;
use crate::engine::run::{PolicyRun, RunOutcome, RunResult, Stores, run_policy};
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

/// The run-now token the last run answered, kept in the run id.
fn run_now_requested(policy: &RetentionPolicy, status: &RetentionPolicyStatus) -> Option<String> {
    let token = policy.annotations().get(RUN_NOW)?.clone();
    let answered = status.last_run.as_ref().is_some_and(|r| r.id.ends_with(&format!("~{token}")));
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
            if status != previous {
                apply_status(&ctx.client, policy.as_ref(), &status).await?;
                ctx.event(policy.as_ref(), true, reason, "Validate", message).await;
            }
            return Ok(Action::await_change());
        }
    };
    let valid =
        condition(&previous.conditions, VALID, true, "Valid", "the spec passed the operator's checks", generation, now);
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
    let retry = status.last_run.as_ref().is_some_and(|r| {
        r.outcome.as_deref() == Some("Failed")
            && r.finished_at.as_ref().is_some_and(|f| since(f.0, now) >= backoff(failures(&status)))
    });
    let run_now = run_now_requested(&policy, &status);
    let next = plan::next_run(&schedule, now).ok();
    status.next_run = next.map(Time);

    let run = if let Some(current) = status.current_run.clone() {
        // The watch cache can lag behind this process's own last write: a
        // run it has just finished still shows as current, and resuming it
        // would run it again and overwrite its record. Only the API server
        // says whether the run is still open.
        let api: Api<RetentionPolicy> = Api::namespaced(ctx.client.clone(), &namespace);
        let open = api.get(&name).await?.status.and_then(|s| s.current_run).map(|c| c.id);
        if open.as_deref() != Some(current.id.as_str()) {
            return Ok(Action::requeue(Duration::from_secs(1)));
        }
        let resumed = Cutoff::planned_in(current.cutoff.0, current.started_at.0, schedule.time_zone.clone());
        Some((current.id.clone(), resumed, current.started_at.0))
    } else if !policy.spec.suspend && (scheduled || retry || run_now.is_some()) {
        let cutoff = plan::cutoff(policy.spec.retention.period, now, &schedule.time_zone);
        if let Err(e) = &cutoff {
            ctx.event(policy.as_ref(), true, e.reason(), "Run", e.to_string()).await;
        }
        let uid = policy.uid().unwrap_or_default();
        let token = run_now.as_ref().map(|t| format!("~{t}")).unwrap_or_default();
        let id = format!("{}-{}{token}", now.as_second(), uid.get(..8).unwrap_or(&uid));
        Some((id, cutoff.ok(), now))
    } else {
        None
    };

    let Some((run_id, Some(cutoff), started)) = run else {
        if status != previous {
            apply_status(&ctx.client, policy.as_ref(), &status).await?;
        }
        let mut wait = next.map(|n| since(now, n)).unwrap_or(MAX_WAIT).min(MAX_WAIT);
        if sink_pending {
            wait = wait.min(ctx.erasure_retry);
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
    };

    // Record the run and its cutoff before anything is deleted.
    status.current_run = Some(RunRecord {
        id: run_id.clone(),
        cutoff: PreciseTime(cutoff.at()),
        mode: policy.spec.mode,
        generation,
        started_at: Time(started),
        finished_at: None,
        outcome: None,
        targets: vec![],
        digest: None,
        previous_digest: None,
    });
    apply_status(&ctx.client, policy.as_ref(), &status).await?;
    ctx.event(policy.as_ref(), false, "RunStarted", "Run", format!("run {run_id} with cutoff {}", cutoff.at())).await;
    tracing::info!(policy = %name, namespace = %namespace, run = %run_id, cutoff = %cutoff.at(), "run started");

    let mut stores: Stores = BTreeMap::new();
    for target in &policy.spec.targets {
        let ds = &target.data_store_ref.name;
        if !stores.contains_key(ds) {
            match store_client(&ctx.client, &namespace, ds).await {
                Ok(handle) => {
                    stores.insert(ds.clone(), handle);
                }
                Err(e) => tracing::warn!(policy = %name, datastore = %ds, reason = e.reason(), "store unavailable"),
            }
        }
    }
    let policy_ref = format!("{namespace}/{name}");
    let clock = std::time::Instant::now();
    let result = run_policy(
        PolicyRun {
            policy: &policy_ref,
            spec: &policy.spec,
            run_id: &run_id,
            cutoff: cutoff.clone(),
            now: Timestamp::now(),
        },
        &stores,
        |t| purge_options(policy.spec.mode, stores.get(&t.data_store_ref.name).and_then(|h| h.max_deletes_per_second)),
    )
    .await;
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
    finish(&ctx, &policy, &mut status, &previous, run_id, cutoff, started, &result).await?;
    Ok(Action::requeue(if result.outcome == RunOutcome::Failed {
        backoff(failures(&status))
    } else {
        Duration::from_secs(1)
    }))
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
) -> Result<(), Error> {
    let now = Timestamp::now();
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
    status.last_run = Some(record);
    status.current_run = None;

    let generation = policy.metadata.generation;
    let (ok, reason, message) = if result.proves_compliance(policy.spec.mode) {
        (true, "Verified", format!("run {run_id} read back nothing older than {}", cutoff.at()))
    } else {
        match (result.outcome, policy.spec.mode) {
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
    apply_status(&ctx.client, policy, status).await?;

    let deleted = result.deleted();
    let unjudged = result.targets.iter().any(|t| !t.account.unreadable.is_empty());
    let (warning, event_reason) = match result.outcome {
        RunOutcome::Succeeded if unjudged => (true, "UnreadableRecords"),
        RunOutcome::Succeeded => (false, "RunSucceeded"),
        RunOutcome::Failed => (true, "RunFailed"),
        RunOutcome::Stopped => (true, "GuardrailStop"),
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

/// Runs the RetentionPolicy controller until `shutdown` resolves.
pub async fn run(ctx: Arc<Context>, shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static) {
    let policies: Api<RetentionPolicy> = ctx.watched();
    Controller::new(policies, watcher::Config::default())
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
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
