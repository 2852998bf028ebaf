//! ErasureRequest: read the subject's identities from the referenced Secret,
//! plan which targets are in scope, then go through them one at a time:
//! erase, retain or skip, read back, and save each target's outcome as it
//! happens, merged with earlier passes, so a restart neither loses nor
//! double-counts what was erased. The identities appear in status only as
//! keyed digests.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{DeleteParams, ListParams};
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt};
use tokio_util::sync::CancellationToken;

use super::{Context, Error, apply_status, condition, credentials_secret, read_secret};
use crate::api::common::conditions::{EVIDENCE_STORED, OVERDUE, VALID};
use crate::api::erasure::{ErasurePhase, ErasureSummary, ErasureTargetOutcome};
use crate::api::{ErasureRequest, ErasureRequestStatus, IdentityName, Mode, RetentionPolicy, RetentionPolicySpec};
use crate::engine::erase::{ErasureJob, erase_step, evidence_record, merge, outcome};
use crate::engine::run::Stores;
use crate::plan::erasure::{self as planner, PolicyView};
use crate::stores::{PurgeOptions, Subject};

/// How soon a request waiting for something (a key, a Secret) looks again.
pub const RETRY: Duration = Duration::from_secs(60);
/// How soon a request with nothing in scope looks again (a policy may be
/// added meanwhile).
pub const RECHECK: Duration = Duration::from_secs(600);

/// How long a request waits after `failures` failed passes in a row:
/// `first`, doubling up to sixteen times `first`.
pub fn backoff(first: Duration, failures: i32) -> Duration {
    let n = failures.clamp(1, 5) as u32 - 1;
    first * (1u32 << n)
}

/// What is left of the wait before the next pass of a failed request.
fn waiting(status: &ErasureRequestStatus, first: Duration, now: Timestamp) -> Option<Duration> {
    let failed = status.phase == Some(ErasurePhase::Failed);
    backoff_left(failed, status.failed_passes, status.last_pass_at.as_ref(), first, now)
}

/// What is left of the wait before the next pass of a subject's request
/// that `failed` its last `failed_passes` passes, the last ending at
/// `last_pass_at`; `None` when it may run now.
pub(super) fn backoff_left(
    failed: bool,
    failed_passes: i32,
    last_pass_at: Option<&Time>,
    first: Duration,
    now: Timestamp,
) -> Option<Duration> {
    if !failed || failed_passes == 0 {
        return None;
    }
    let since = Duration::from_secs(now.duration_since(last_pass_at?.0).as_secs().max(0) as u64);
    backoff(first, failed_passes).checked_sub(since).filter(|d| !d.is_zero())
}

fn overdue(
    status: &ErasureRequestStatus,
    previous: &[Condition],
    deadline: Timestamp,
    now: Timestamp,
    generation: Option<i64>,
) -> Condition {
    let completed = status.completed_at.as_ref().map(|t| t.0);
    if status.phase == Some(ErasurePhase::Previewed) {
        let message = "a dry run; the deadline binds the request that erases".to_owned();
        return condition(previous, OVERDUE, false, "Preview", message, generation, now);
    }
    overdue_condition(previous, deadline, now, completed, generation)
}

/// The Overdue condition of a subject's request due by `deadline`, done at
/// `completed` (if it is): True once the deadline passed without it, and
/// for the record when it completed late.
pub(super) fn overdue_condition(
    previous: &[Condition],
    deadline: Timestamp,
    now: Timestamp,
    completed: Option<Timestamp>,
    generation: Option<i64>,
) -> Condition {
    let late = planner::is_overdue(deadline, now, completed);
    let (reason, message) = match (late, completed) {
        (true, Some(at)) => ("CompletedLate", format!("completed at {at}, after the deadline {deadline}")),
        (true, None) => {
            ("DeadlinePassed", format!("the deadline {deadline} has passed and the request is not completed"))
        }
        (false, Some(at)) => ("CompletedInTime", format!("completed at {at}, within the deadline {deadline}")),
        (false, None) => ("WithinDeadline", format!("due by {deadline}")),
    };
    condition(previous, OVERDUE, late, reason, message, generation, now)
}

/// Sets the Valid condition and keeps Overdue next to it, in every branch.
fn conditions(
    status: &mut ErasureRequestStatus,
    previous: &ErasureRequestStatus,
    valid: (bool, &str, String),
    deadline: Timestamp,
    now: Timestamp,
    generation: Option<i64>,
) {
    let (ok, reason, message) = valid;
    let stored = previous.conditions.iter().find(|c| c.type_ == EVIDENCE_STORED).cloned();
    status.conditions = vec![
        condition(&previous.conditions, VALID, ok, reason, message, generation, now),
        overdue(status, &previous.conditions, deadline, now, generation),
    ];
    status.conditions.extend(stored);
}

/// Whether the last evidence record waits for its locked copy.
fn sink_pending(status: &ErasureRequestStatus) -> bool {
    status
        .conditions
        .iter()
        .any(|c| c.type_ == EVIDENCE_STORED && c.status == "False" && c.reason == super::evidence::SINK_UNAVAILABLE)
}

/// Totals over the targets' outcomes.
fn summary(targets: &[ErasureTargetOutcome]) -> ErasureSummary {
    let count = |o: &str| targets.iter().filter(|t| t.outcome == o).count() as i64;
    let sum = |o: &str| targets.iter().filter(|t| t.outcome == o).map(|t| t.matched).sum::<i64>();
    ErasureSummary {
        erased: targets.iter().map(|t| t.erased).sum(),
        would_erase: sum(outcome::WOULD_ERASE),
        retained: sum(outcome::RETAINED),
        skipped: count(outcome::SKIPPED),
        not_searched: count(outcome::NOT_SEARCHED),
        failed: count(outcome::FAILED),
    }
}

async fn reconcile(cached: Arc<ErasureRequest>, ctx: Arc<Context>) -> Result<Action, Error> {
    // What the previous pass wrote decides what this one does (whether the
    // completion is sealed already): read it from the API server, not the cache.
    let Some(request) = super::fresh(&ctx.client, cached.as_ref()).await? else { return Ok(Action::await_change()) };
    let namespace = request.namespace().unwrap_or_default();
    let name = request.name_any();
    let generation = request.metadata.generation;
    let now = Timestamp::now();
    let previous = request.status.clone().unwrap_or_default();
    let mut status = previous.clone();
    let deadline = planner::deadline(request.spec.received_at.0);
    status.deadline = Some(Time(deadline));
    status.observed_generation = generation;

    if let Some(ErasurePhase::Completed | ErasurePhase::Previewed) = previous.phase {
        status.conditions.retain(|c| c.type_ != OVERDUE);
        status.conditions.push(overdue(&status, &previous.conditions, deadline, now, generation));
        if super::changed(request.as_ref(), &status, &previous) {
            apply_status(&ctx.client, request.as_ref(), &status).await?;
        }
        return Ok(Action::await_change());
    }
    // A failed request waits out its backoff, whatever woke it.
    if let Some(wait) = waiting(&previous, ctx.erasure_retry, now) {
        status.conditions.retain(|c| c.type_ != OVERDUE);
        status.conditions.push(overdue(&status, &previous.conditions, deadline, now, generation));
        if super::changed(request.as_ref(), &status, &previous) {
            apply_status(&ctx.client, request.as_ref(), &status).await?;
        }
        return Ok(Action::requeue(wait));
    }

    let Some(digester) = ctx.digester.as_ref() else {
        let message = "the operator has no installation key (--hmac-key-file), so it cannot name the subject in evidence without personal data; erasure requests wait";
        status.phase = Some(ErasurePhase::Pending);
        conditions(&mut status, &previous, (false, "NoInstallationKey", message.into()), deadline, now, generation);
        if super::changed(request.as_ref(), &status, &previous) {
            apply_status(&ctx.client, request.as_ref(), &status).await?;
            ctx.event(request.as_ref(), true, "NoInstallationKey", "Validate", message.into()).await;
        }
        return Ok(Action::requeue(RETRY));
    };

    let secret_name = &request.spec.identity_secret_ref.name;
    let (pairs, unknown) = match request_identities(&ctx, &namespace, secret_name).await? {
        Ok(found) => found,
        Err((reason, message)) => {
            status.phase = Some(ErasurePhase::Pending);
            conditions(&mut status, &previous, (false, reason, message.clone()), deadline, now, generation);
            if super::changed(request.as_ref(), &status, &previous) {
                apply_status(&ctx.client, request.as_ref(), &status).await?;
                ctx.event(request.as_ref(), true, reason, "Validate", message).await;
            }
            return Ok(Action::requeue(RETRY));
        }
    };
    let subject = Subject::new(pairs.clone());
    let kinds: BTreeSet<IdentityName> = pairs.iter().map(|(k, _)| k.clone()).collect();
    // Digests are keyed per namespace: a request in one namespace cannot
    // tell whether an identity occurs in another's evidence.
    let digester = digester.for_namespace(&namespace);
    let subject_digests = subject_digests(&digester, &pairs);
    status.subject_digests = subject_digests.clone();

    let policy_api: Api<RetentionPolicy> = Api::namespaced(ctx.client.clone(), &namespace);
    let policies = policy_api.list(&ListParams::default()).await?.items;
    let specs: BTreeMap<String, RetentionPolicySpec> =
        policies.iter().map(|p| (p.name_any(), p.spec.clone())).collect();
    let views: Vec<PolicyView<'_>> = policies
        .iter()
        .map(|p| PolicyView { name: p.metadata.name.as_deref().unwrap_or(""), labels: p.labels(), spec: &p.spec })
        .collect();
    let mut plan = planner::plan(&request.spec, &views, &kinds, now);
    // What a Hold in force keeps is retained, not erased (Art. 17(3)(e)).
    let holds = super::hold::in_force(&ctx, &namespace).await?;
    crate::plan::hold::retain_held(
        &mut plan,
        &super::hold::views(&holds),
        |p| specs.get(p).map(|s| s.category.as_str().to_owned()),
        &pairs,
    );
    let stores = reachable_stores(&ctx, &namespace, &mut plan.steps, &specs).await;
    let request_ref = format!("{namespace}/{name}");
    let job = ErasureJob {
        request: &request_ref,
        spec: &request.spec,
        plan: &plan,
        policies: &specs,
        subject: &subject,
        subject_digests: &subject_digests,
    };

    // Nothing searchable in scope: the request cannot be carried out as
    // filed. It fails, says why, and keeps the Secret.
    if !plan.steps.iter().any(|s| s.action.searches() || matches!(s.action, planner::Action::Skip { .. })) {
        let mut kinds_wanted: Vec<&str> = plan
            .steps
            .iter()
            .flat_map(|s| specs.get(&s.policy).into_iter().flat_map(|p| p.targets.iter()))
            .flat_map(|t| t.subject_fields.iter().map(|f| f.identity.as_str()))
            .collect();
        kinds_wanted.sort_unstable();
        kinds_wanted.dedup();
        let mut message = format!(
            "no target in scope holds an identity of a kind the Secret {secret_name} gives ({}); nothing was searched and the Secret is kept",
            if kinds.is_empty() {
                "none".to_owned()
            } else {
                kinds.iter().map(IdentityName::as_str).collect::<Vec<_>>().join(", ")
            }
        );
        if !kinds_wanted.is_empty() {
            message.push_str(&format!(". The targets in scope hold: {}", kinds_wanted.join(", ")));
        }
        if !unknown.is_empty() {
            message.push_str(&format!(". Keys of the Secret that are not identity names: {}", unknown.join(", ")));
        }
        status.phase = Some(ErasurePhase::Failed);
        status.targets = plan.steps.iter().map(|s| merge(None, &not_searched(s))).collect();
        status.summary = Some(summary(&status.targets));
        conditions(&mut status, &previous, (false, "NoTargetsInScope", message.clone()), deadline, now, generation);
        if super::changed(request.as_ref(), &status, &previous) {
            apply_status(&ctx.client, request.as_ref(), &status).await?;
            ctx.event(request.as_ref(), true, "NoTargetsInScope", "Validate", message).await;
        }
        return Ok(Action::requeue(RECHECK));
    }

    status.phase = Some(ErasurePhase::InProgress);
    let searched = plan.steps.iter().filter(|s| s.action.searches()).count();
    let mut notes = format!("{} targets in scope, {searched} searched", plan.steps.len());
    if !unknown.is_empty() {
        notes.push_str(&format!("; Secret keys that are not identity names were ignored: {}", unknown.join(", ")));
    }
    conditions(&mut status, &previous, (true, "Valid", notes), deadline, now, generation);
    apply_status(&ctx.client, request.as_ref(), &status).await?;

    // One of the installation's run slots for the pass.
    let _slot = tokio::select! {
        slot = ctx.runs.clone().acquire_owned() => slot.ok(),
        _ = ctx.cancel.cancelled() => return Ok(Action::await_change()),
    };

    // The guardrail: count what the pass would erase before erasing any.
    let limit = request.spec.max_records.unwrap_or(ctx.max_erasure_records);
    if request.spec.mode == Mode::Enforce {
        let mut found = 0u64;
        for step in plan.steps.iter().filter(|s| matches!(s.action, planner::Action::Erase)) {
            let standing = previous
                .targets
                .iter()
                .any(|t| t.policy == step.policy && t.target == step.target && outcome::stands(&t.outcome));
            if !standing {
                found += count_step(step, &specs, &subject, &stores).await;
            }
        }
        if found > limit {
            let message = format!(
                "the request would erase {found} records, more than its limit of {limit} (spec.maxRecords, or the installation's --max-erasure-records); nothing was erased. If that many records are the subject's, file a new request with maxRecords of at least {found}"
            );
            status.phase = Some(ErasurePhase::Failed);
            status.failed_passes = previous.failed_passes + 1;
            status.last_pass_at = Some(Time(Timestamp::now()));
            conditions(&mut status, &previous, (false, "GuardrailReached", message.clone()), deadline, now, generation);
            apply_status(&ctx.client, request.as_ref(), &status).await?;
            ctx.event(request.as_ref(), true, "GuardrailReached", "Erase", message).await;
            return Ok(Action::requeue(backoff(ctx.erasure_retry, status.failed_passes)));
        }
    }

    // One target at a time, each outcome merged with earlier passes and
    // saved before the next; targets final in an earlier pass are not run
    // again.
    let started_at = Timestamp::now();
    let prior: BTreeMap<(String, String), ErasureTargetOutcome> =
        previous.targets.iter().map(|t| ((t.policy.clone(), t.target.clone()), t.clone())).collect();
    let mut targets: Vec<ErasureTargetOutcome> = Vec::new();
    let shared = Arc::new(Mutex::new(status.clone()));
    for step in &plan.steps {
        let key = (step.policy.clone(), step.target.clone());
        if let Some(done) = prior.get(&key).filter(|p| outcome::stands(&p.outcome)) {
            targets.push(done.clone());
            continue;
        }
        let before = prior.get(&key).cloned();
        // Erasures keep to the store's limits too, stop between batches
        // when the operator stops or loses its lease, and never delete
        // after this instance stopped leading.
        let mut base = match stores.get(&step.data_store) {
            Some(h) => h.purge_options(request.spec.mode),
            None => PurgeOptions::new(request.spec.mode),
        };
        base.cancel = ctx.cancel.child_token();
        let fence = ctx.fence.clone();
        base.gate = Some(Arc::new(move || fence.holds()));
        let (options, writer) = progress_writer(&ctx, &request, &shared, &targets, step, before.as_ref(), base);
        let result = erase_step(step, &specs, &subject, &stores, &options).await;
        drop(options);
        let _ = writer.await;
        targets.push(merge(before.as_ref(), &result));
        let mut s = shared.lock().expect("status lock").clone();
        s.targets = targets.clone();
        s.summary = Some(summary(&s.targets));
        apply_status(&ctx.client, request.as_ref(), &s).await?;
        *shared.lock().expect("status lock") = s;
    }
    status = shared.lock().expect("status lock").clone();
    status.targets = targets;

    let complete = status.targets.iter().all(|t| outcome::is_final(&t.outcome));
    let dry = request.spec.mode == Mode::DryRun;
    let phase = match (complete, dry) {
        (false, _) => ErasurePhase::Failed,
        (true, true) => ErasurePhase::Previewed,
        (true, false) => ErasurePhase::Completed,
    };
    let phase_word = match phase {
        ErasurePhase::Failed => "Failed",
        ErasurePhase::Previewed => "Previewed",
        _ => "Completed",
    };
    let finished = Timestamp::now();
    status.summary = Some(summary(&status.targets));
    status.phase = Some(phase);
    status.last_pass_at = Some(Time(finished));
    status.failed_passes = if complete { 0 } else { previous.failed_passes + 1 };
    // A preview completes nothing: Completed at stays empty.
    status.completed_at = (complete && !dry).then_some(Time(finished));

    // The evidence of a request is recorded when it completes, and when it
    // first fails: a request that keeps failing does not fill the chain. A
    // completion already sealed whose locked copy is pending is not sealed
    // again: the sink is caught up.
    let chain = super::evidence::ERASURE_CHAIN;
    let sealed_complete = match (&ctx.sink, &previous.evidence_digest) {
        (Some(_), Some(digest)) if complete && sink_pending(&previous) => {
            super::evidence::read_chain(&ctx.client, &namespace, chain)
                .await
                .ok()
                .and_then(|records| records.into_iter().find(|r| r.digest.as_str() == digest.as_str()))
                .is_some_and(|r| r.record["complete"] == true && r.record["request"] == request_ref.as_str())
        }
        _ => false,
    };
    let record_it = !sealed_complete && (complete || previous.phase != Some(ErasurePhase::Failed));
    let mut stored_condition = previous.conditions.iter().find(|c| c.type_ == EVIDENCE_STORED).cloned();
    if sealed_complete && let Some(sink) = &ctx.sink {
        let (ok, reason, message) = match super::evidence::sync_sink(&ctx.client, &namespace, chain, sink).await {
            Ok(()) => (true, "Stored", "the locked evidence sink now holds the request's record".to_owned()),
            Err(e) => (
                false,
                super::evidence::SINK_UNAVAILABLE,
                format!("the record is sealed in chain {chain} but not yet in the locked evidence sink; retried: {e}"),
            ),
        };
        stored_condition = Some(condition(&previous.conditions, EVIDENCE_STORED, ok, reason, message, generation, now));
    }
    if record_it {
        let record = evidence_record(&job, &status.targets, phase_word, started_at, finished);
        let stored =
            super::evidence::append(&ctx.client, &namespace, chain, &record, ctx.signer.as_ref(), ctx.sink.as_deref())
                .await;
        let (ok, reason, message) = super::evidence::stored_condition(chain, &stored);
        match stored {
            Ok(s) => {
                status.evidence_digest = Some(s.sealed.digest.to_string());
                // A third copy of the sealed record, for log pipelines.
                tracing::info!(request = %name, evidence = %serde_json::to_string(&s.sealed).unwrap_or_default(), "erasure evidence sealed");
            }
            Err(e) => {
                tracing::warn!(request = %name, error = %e, "could not store the erasure's evidence");
                tracing::info!(request = %name, evidence = %record, "erasure evidence");
            }
        }
        if !ok {
            ctx.event(request.as_ref(), true, "EvidenceNotStored", "Erase", message.clone()).await;
        }
        stored_condition = Some(condition(&previous.conditions, EVIDENCE_STORED, ok, reason, message, generation, now));
    }
    // Done only once the evidence is where it must be: with a sink, in the
    // locked bucket. Until then the request stays InProgress and retries.
    let evidence_held = stored_condition.as_ref().is_none_or(|c| c.status == "True");
    let (phase, phase_word) =
        if complete && !evidence_held { (ErasurePhase::InProgress, "InProgress") } else { (phase, phase_word) };
    status.phase = Some(phase);
    if phase == ErasurePhase::InProgress {
        status.completed_at = None;
    }
    status.conditions.retain(|c| c.type_ != EVIDENCE_STORED);
    status.conditions.extend(stored_condition);
    status.conditions.retain(|c| c.type_ != OVERDUE);
    status.conditions.push(overdue(&status, &previous.conditions, deadline, now, generation));
    apply_status(&ctx.client, request.as_ref(), &status).await?;

    let summary = status.summary.clone().unwrap_or_default();
    let verb = if dry {
        format!("{} records would be erased", summary.would_erase)
    } else {
        format!("{} records erased", summary.erased)
    };
    let note = format!(
        "{verb}, {} retained, {} targets skipped, {} not searched, {} failed; evidence {}",
        summary.retained,
        summary.skipped,
        summary.not_searched,
        summary.failed,
        status.evidence_digest.as_deref().unwrap_or("not recorded this pass")
    );
    let reason = match phase {
        ErasurePhase::Failed => "ErasureFailed",
        ErasurePhase::Previewed => "ErasurePreviewed",
        ErasurePhase::InProgress => "EvidencePending",
        _ => "ErasureCompleted",
    };
    // Skipped or unsearched targets are worth a look even when the request
    // completed: the subject's data there was not erased.
    let warn = !complete || !evidence_held || summary.skipped > 0 || summary.not_searched > 0;
    ctx.event(request.as_ref(), warn, reason, "Erase", note).await;
    tracing::info!(request = %name, namespace = %namespace, phase = phase_word, erased = summary.erased,
        retained = summary.retained, skipped = summary.skipped, "erasure pass finished");

    if phase == ErasurePhase::Completed
        && request.spec.delete_identity_secret
        // Checked again at the moment of deleting: only a labelled identity Secret goes.
        && identity_secret(&ctx, &namespace, secret_name).await.is_ok()
    {
        let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
        match secrets.delete(secret_name, &DeleteParams::default()).await {
            Ok(_) => {
                let note = format!("deleted the identity Secret {secret_name}");
                ctx.event(request.as_ref(), false, "IdentitySecretDeleted", "Cleanup", note).await
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(Error::Kube(e)),
        }
    }
    Ok(match phase {
        ErasurePhase::Completed | ErasurePhase::Previewed => Action::await_change(),
        ErasurePhase::InProgress => Action::requeue(ctx.erasure_retry),
        _ => Action::requeue(backoff(ctx.erasure_retry, status.failed_passes)),
    })
}

/// A subject's identities as a request's Secret gives them, and the keys
/// of the Secret that name no kind of identity.
pub(super) type RequestIdentities = (Vec<(IdentityName, String)>, Vec<String>);

/// Reads a request's identity Secret and checks every identity in it (the
/// right shape for its kind, long enough to name one person). The inner
/// error is what the request's Valid condition says (reason, message: the
/// kind of identity, never its value); the outer one an API failure.
pub(super) async fn request_identities(
    ctx: &Context,
    namespace: &str,
    secret_name: &str,
) -> Result<Result<RequestIdentities, (&'static str, String)>, Error> {
    let identities = match identity_secret(ctx, namespace, secret_name).await {
        Ok(c) => c,
        Err(Error::Kube(e)) => return Err(Error::Kube(e)),
        Err(e) => return Ok(Err((e.reason(), e.to_string()))),
    };
    let mut pairs = Vec::new();
    let mut unknown = Vec::new();
    for key in identities.keys() {
        match (key.parse::<IdentityName>(), identities.get(key)) {
            (Ok(kind), Ok(value)) if !value.trim().is_empty() => pairs.push((kind, value.trim().to_owned())),
            _ => unknown.push(key.to_owned()),
        }
    }
    let invalid: Vec<String> = pairs
        .iter()
        .filter_map(|(k, v)| crate::stores::identity::Identity::new(k, v).err().map(|e| e.to_string()))
        .collect();
    if !invalid.is_empty() {
        let message = format!("{}; correct the identity Secret {secret_name}", invalid.join("; "));
        return Ok(Err(("InvalidIdentity", message)));
    }
    Ok(Ok((pairs, unknown)))
}

/// Keyed digests of a subject's identities, by kind, with the namespace's key.
pub(super) fn subject_digests(
    digester: &crate::engine::evidence::SubjectDigester,
    pairs: &[(IdentityName, String)],
) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), digester.digest(k.as_str(), v))).collect()
}

/// The stores of the steps that search, and what their DataStores let
/// requests reach: a target outside a DataStore's allowedTargets is
/// skipped, with the reason. A DataStore that cannot be had is left out
/// (its steps fail when they run, saying so).
pub(super) async fn reachable_stores(
    ctx: &Context,
    namespace: &str,
    steps: &mut [planner::Step],
    specs: &BTreeMap<String, RetentionPolicySpec>,
) -> Stores {
    let mut stores: Stores = BTreeMap::new();
    for step in steps.iter_mut().filter(|s| s.action.searches()) {
        let Ok((handle, store_spec)) = ctx.stores.get_with_spec(&ctx.client, namespace, &step.data_store).await else {
            continue;
        };
        let target = specs.get(&step.policy).and_then(|p| p.targets.iter().find(|t| t.name == step.target));
        if let Some(outside) = target.and_then(|t| t.addresses().into_iter().find(|a| !store_spec.allows(a))) {
            step.action = planner::Action::Skip {
                reason: format!("it reaches {outside}, outside the allowedTargets of DataStore {}", step.data_store),
            };
            continue;
        }
        stores.insert(step.data_store.clone(), handle);
    }
    stores
}

/// The label an identity Secret must carry: the operator reads, and may
/// delete, only Secrets marked as holding a data subject's identities.
pub const IDENTITY_LABEL: &str = "delenda.dev/identity";

/// Reads an identity Secret, refusing one that is not labelled as such or
/// that a DataStore uses for its credentials: a request must not make the
/// operator read, or delete, a Secret that is not a subject's identities.
pub(super) async fn identity_secret(
    ctx: &Context,
    namespace: &str,
    name: &str,
) -> Result<crate::engine::connect::Credentials, Error> {
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let Some(secret) = secrets.get_metadata_opt(name).await? else {
        return Err(Error::NotFound { kind: "Secret", namespace: namespace.into(), name: name.into() });
    };
    if secret.labels().get(IDENTITY_LABEL).map(String::as_str) != Some("true") {
        return Err(Error::NotAnIdentitySecret {
            name: name.into(),
            why: format!("it does not carry the label {IDENTITY_LABEL}: \"true\""),
        });
    }
    let stores: Api<crate::api::DataStore> = Api::namespaced(ctx.client.clone(), namespace);
    if let Some(store) =
        stores.list(&ListParams::default()).await?.items.iter().find(|ds| credentials_secret(ds) == Some(name))
    {
        return Err(Error::NotAnIdentitySecret {
            name: name.into(),
            why: format!("the DataStore {} uses it for its credentials", store.name_any()),
        });
    }
    read_secret(&ctx.client, namespace, name).await
}

/// What a step would erase, counted before anything is: 0 where it cannot
/// be counted (the pass reports the failure itself).
async fn count_step(
    step: &planner::Step,
    specs: &BTreeMap<String, RetentionPolicySpec>,
    subject: &Subject,
    stores: &Stores,
) -> u64 {
    let (Some(handle), Some(target)) = (
        stores.get(&step.data_store),
        specs.get(&step.policy).and_then(|p| p.targets.iter().find(|t| t.name == step.target)),
    ) else {
        return 0;
    };
    let mut target = target.clone();
    target.subject_fields = step.fields.clone();
    let _slot = handle.slot().await;
    handle.store.count_subject(&target, subject).await.unwrap_or(0)
}

/// A step that was not searched, as a result.
fn not_searched(step: &planner::Step) -> crate::engine::erase::StepResult {
    let reason = match &step.action {
        planner::Action::NotSearched { reason } => Some(reason.clone()),
        _ => None,
    };
    crate::engine::erase::StepResult {
        policy: step.policy.clone(),
        target: step.target.clone(),
        outcome: outcome::NOT_SEARCHED,
        matched: 0,
        erased: 0,
        remaining: None,
        retained: None,
        on_behalf_of: step.on_behalf_of.clone(),
        message: reason,
    }
}

/// Purge options whose progress (records erased so far in this step) is
/// saved to status as it happens, as outcome `InProgress`: a process killed
/// mid-step leaves a record of what it erased, and the next pass adds to it.
fn progress_writer(
    ctx: &Arc<Context>,
    request: &Arc<ErasureRequest>,
    shared: &Arc<Mutex<ErasureRequestStatus>>,
    done: &[ErasureTargetOutcome],
    step: &planner::Step,
    before: Option<&ErasureTargetOutcome>,
    base: PurgeOptions,
) -> (PurgeOptions, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let options = base.with_progress(move |p| {
        let _ = tx.send(p.deleted_total);
    });
    let (ctx, request, shared) = (ctx.clone(), request.clone(), shared.clone());
    let mut targets = done.to_vec();
    let index = done.len();
    let erased_before = before.map_or(0, |b| b.erased);
    let base = ErasureTargetOutcome {
        policy: step.policy.clone(),
        target: step.target.clone(),
        outcome: outcome::IN_PROGRESS.into(),
        on_behalf_of: step.on_behalf_of.clone(),
        ..ErasureTargetOutcome::default()
    };
    let writer = tokio::spawn(async move {
        while let Some(mut erased) = rx.recv().await {
            while let Ok(later) = rx.try_recv() {
                erased = later;
            }
            let mut current = base.clone();
            current.erased = erased_before + erased as i64;
            current.matched = current.erased;
            targets.truncate(index);
            targets.push(current);
            let mut s = shared.lock().expect("status lock").clone();
            s.targets = targets.clone();
            if let Err(e) = apply_status(&ctx.client, request.as_ref(), &s).await {
                tracing::warn!(error = %e, "could not save an erasure's progress");
            } else {
                *shared.lock().expect("status lock") = s;
            }
        }
    });
    (options, writer)
}

fn error_policy(_: Arc<ErasureRequest>, error: &Error, _: Arc<Context>) -> Action {
    tracing::warn!(reason = error.reason(), error = %error, "ErasureRequest reconcile failed");
    Action::requeue(RETRY)
}

/// Runs the ErasureRequest controller until `stop` is cancelled and its reconciles in flight end.
pub async fn run(ctx: Arc<Context>, stop: CancellationToken) {
    let requests: Api<ErasureRequest> = ctx.watched();
    let controller = super::followed_controller(requests, ctx.metrics.clone(), crate::metrics::Metrics::watch_requests);
    super::until_stopped(controller, reconcile, error_policy, ctx, stop).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_request_waits_longer_after_each_failure() {
        assert_eq!(backoff(RETRY, 1), Duration::from_secs(60));
        assert_eq!(backoff(RETRY, 2), Duration::from_secs(120));
        assert_eq!(backoff(RETRY, 5), Duration::from_secs(960));
        assert_eq!(backoff(RETRY, 40), Duration::from_secs(960), "capped at sixteen minutes");
    }

    #[test]
    fn the_wait_counts_from_the_last_pass() {
        let at = |s: &str| Time(s.parse().unwrap());
        let status = ErasureRequestStatus {
            phase: Some(ErasurePhase::Failed),
            failed_passes: 2,
            last_pass_at: Some(at("2026-11-30T10:00:00Z")),
            ..ErasureRequestStatus::default()
        };
        assert_eq!(waiting(&status, RETRY, "2026-11-30T10:01:30Z".parse().unwrap()), Some(Duration::from_secs(30)));
        assert_eq!(waiting(&status, RETRY, "2026-11-30T10:02:00Z".parse().unwrap()), None);
        let pending = ErasureRequestStatus { phase: Some(ErasurePhase::Pending), ..status };
        assert_eq!(waiting(&pending, RETRY, "2026-11-30T10:00:01Z".parse().unwrap()), None);
    }
}
