//! AccessRequest: read the subject's identities (as an erasure does), plan
//! the targets in scope (the erasure's scope), count the subject's records
//! at every target against the record limit, read them, and only when every
//! target answered write the export to the installation's bucket: one JSON
//! document per target (Art. 15(1) GDPR: purposes, category, legal basis,
//! retention period, source; and the records) and a manifest with each
//! document's SHA-256. Status carries counts, digests and where the export
//! is, never a record; the completion is sealed on the namespace's
//! `access-requests` chain. When the export expires the operator deletes
//! it, lists the prefix to prove nothing remains, and seals that too.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::ListParams;
use kube::runtime::controller::Action;
use kube::runtime::{Controller, watcher};
use kube::{Api, ResourceExt};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::erasure::{backoff, backoff_left, overdue_condition, reachable_stores, request_identities, subject_digests};
use super::{Context, Error, apply_status, condition};
use crate::api::access::{AccessPhase, AccessTargetOutcome, ExportLocation};
use crate::api::common::conditions::{EVIDENCE_STORED, EXPORT_DELETED, OVERDUE, VALID};
use crate::api::{AccessRequest, AccessRequestStatus, RetentionPolicy, RetentionPolicySpec};
use crate::engine::run::Stores;
use crate::plan::access as planner;
use crate::plan::erasure::{PolicyView, Step, deadline};
use crate::stores::{StoreError, Subject, SubjectExport};

/// How soon a request waiting for something (a destination, a key, a
/// Secret) looks again.
pub const RETRY: Duration = Duration::from_secs(60);
/// How soon a request with nothing in scope looks again.
pub const RECHECK: Duration = Duration::from_secs(600);
/// The longest a completed request sleeps before looking at its expiry
/// again (kube-runtime caps a requeue well above this).
pub const WAKE: Duration = Duration::from_secs(6 * 3600);

/// Outcomes of a target.
pub mod outcome {
    /// The subject's records were read and written to the export.
    pub const EXPORTED: &str = "Exported";
    /// Searched; nothing of the subject there (its document says so).
    pub const NOTHING_FOUND: &str = "NothingFound";
    /// In scope, but no identity of a kind the target holds was given.
    pub const NOT_SEARCHED: &str = "NotSearched";
    /// Left alone, with the reason.
    pub const SKIPPED: &str = "Skipped";
    /// Could not be read; the pass failed and is retried.
    pub const FAILED: &str = "Failed";
}

/// Sets Valid and keeps Overdue next to it (and EvidenceStored and
/// ExportDeleted as they were).
fn conditions(
    status: &mut AccessRequestStatus,
    previous: &AccessRequestStatus,
    valid: (bool, &str, String),
    deadline: Timestamp,
    now: Timestamp,
    generation: Option<i64>,
) {
    let (ok, reason, message) = valid;
    let kept: Vec<Condition> = previous
        .conditions
        .iter()
        .filter(|c| c.type_ == EVIDENCE_STORED || c.type_ == EXPORT_DELETED)
        .cloned()
        .collect();
    status.conditions = vec![condition(&previous.conditions, VALID, ok, reason, message, generation, now)];
    set_overdue(status, &previous.conditions, deadline, now, generation);
    status.conditions.extend(kept);
}

fn set_overdue(
    status: &mut AccessRequestStatus,
    previous: &[Condition],
    deadline: Timestamp,
    now: Timestamp,
    generation: Option<i64>,
) {
    let completed = status.completed_at.as_ref().map(|t| t.0);
    status.conditions.retain(|c| c.type_ != OVERDUE);
    status.conditions.push(overdue_condition(previous, deadline, now, completed, generation));
}

fn set_condition(status: &mut AccessRequestStatus, c: Condition) {
    status.conditions.retain(|x| x.type_ != c.type_);
    status.conditions.push(c);
}

/// Writes the status when it changed, with a Warning Event for `reason`.
async fn stop(
    ctx: &Context,
    request: &AccessRequest,
    status: &AccessRequestStatus,
    previous: &AccessRequestStatus,
    reason: &str,
    message: String,
) -> Result<(), Error> {
    if super::changed(request, status, previous) {
        apply_status(&ctx.client, request, status).await?;
        ctx.event(request, true, reason, "Export", message).await;
    }
    Ok(())
}

/// How long a failed request still waits before its next pass.
fn waiting(status: &AccessRequestStatus, first: Duration, now: Timestamp) -> Option<Duration> {
    let failed = status.phase == Some(AccessPhase::Failed);
    backoff_left(failed, status.failed_passes, status.last_pass_at.as_ref(), first, now)
}

async fn reconcile(cached: Arc<AccessRequest>, ctx: Arc<Context>) -> Result<Action, Error> {
    // Whether the export is written, sealed or deleted already is read from
    // the API server, not the cache, which may lag the last status write.
    let Some(request) = super::fresh(&ctx.client, cached.as_ref()).await? else { return Ok(Action::await_change()) };
    let request = request.as_ref();
    let namespace = request.namespace().unwrap_or_default();
    let name = request.name_any();
    let generation = request.metadata.generation;
    let now = Timestamp::now();
    let previous = request.status.clone().unwrap_or_default();
    let mut status = previous.clone();
    let deadline = deadline(request.spec.received_at.0);
    status.deadline = Some(Time(deadline));
    status.observed_generation = generation;

    match previous.phase {
        Some(AccessPhase::Expired) => {
            set_overdue(&mut status, &previous.conditions, deadline, now, generation);
            if super::changed(request, &status, &previous) {
                apply_status(&ctx.client, request, &status).await?;
            }
            return Ok(Action::await_change());
        }
        Some(AccessPhase::Completed) => return completed(&ctx, request, status, &previous, now).await,
        _ => {}
    }
    if !ctx.fence.holds() {
        return Ok(Action::requeue(RETRY));
    }
    if let Some(wait) = waiting(&previous, ctx.erasure_retry, now) {
        return Ok(Action::requeue(wait));
    }

    let Some(destination) = ctx.export.clone() else {
        let message = "the installation configures no export destination (--access-export-bucket, or the chart's accessExport.bucket), so nothing can be exported; the request waits".to_owned();
        status.phase = Some(AccessPhase::Pending);
        conditions(&mut status, &previous, (false, "NoExportDestination", message.clone()), deadline, now, generation);
        stop(&ctx, request, &status, &previous, "NoExportDestination", message).await?;
        return Ok(Action::requeue(RETRY));
    };
    let Some(digester) = ctx.digester.as_ref() else {
        let message = "the operator has no installation key (--hmac-key-file), so it cannot name the subject in evidence without personal data; access requests wait".to_owned();
        status.phase = Some(AccessPhase::Pending);
        conditions(&mut status, &previous, (false, "NoInstallationKey", message.clone()), deadline, now, generation);
        stop(&ctx, request, &status, &previous, "NoInstallationKey", message).await?;
        return Ok(Action::requeue(RETRY));
    };
    let secret_name = &request.spec.identity_secret_ref.name;
    let (pairs, unknown) = match request_identities(&ctx, &namespace, secret_name).await? {
        Ok(found) => found,
        Err((reason, message)) => {
            status.phase = Some(AccessPhase::Pending);
            conditions(&mut status, &previous, (false, reason, message.clone()), deadline, now, generation);
            stop(&ctx, request, &status, &previous, reason, message).await?;
            return Ok(Action::requeue(RETRY));
        }
    };
    let digester = digester.for_namespace(&namespace);
    status.subject_digests = subject_digests(&digester, &pairs);
    let subject = Subject::new(pairs.clone());
    let kinds: BTreeSet<_> = pairs.iter().map(|(k, _)| k.clone()).collect();

    let policies: Api<RetentionPolicy> = Api::namespaced(ctx.client.clone(), &namespace);
    let policies = policies.list(&ListParams::default()).await?.items;
    let specs: BTreeMap<String, RetentionPolicySpec> =
        policies.iter().map(|p| (p.name_any(), p.spec.clone())).collect();
    let views: Vec<PolicyView<'_>> = policies
        .iter()
        .map(|p| PolicyView { name: p.metadata.name.as_deref().unwrap_or(""), labels: p.labels(), spec: &p.spec })
        .collect();
    let mut steps = planner::plan(&request.spec, &views, &kinds);
    let stores = reachable_stores(&ctx, &namespace, &mut steps, &specs).await;
    if !steps.iter().any(|s| s.action.searches()) {
        let mut message = format!(
            "no target in scope holds an identity of a kind the Secret {secret_name} gives ({}); nothing was read",
            kinds.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
        );
        if !unknown.is_empty() {
            message.push_str(&format!(". Keys of the Secret that are not identity names: {}", unknown.join(", ")));
        }
        status.phase = Some(AccessPhase::Failed);
        status.targets = steps.iter().map(|s| unsearched(s).unwrap_or_default()).collect();
        conditions(&mut status, &previous, (false, "NoTargetsInScope", message.clone()), deadline, now, generation);
        stop(&ctx, request, &status, &previous, "NoTargetsInScope", message).await?;
        return Ok(Action::requeue(RECHECK));
    }

    status.phase = Some(AccessPhase::InProgress);
    let searched = steps.iter().filter(|s| s.action.searches()).count();
    let notes = format!("{} targets in scope, {searched} searched", steps.len());
    conditions(&mut status, &previous, (true, "Valid", notes), deadline, now, generation);
    apply_status(&ctx.client, request, &status).await?;

    let _slot = tokio::select! {
        slot = ctx.runs.clone().acquire_owned() => slot.ok(),
        _ = ctx.cancel.cancelled() => return Ok(Action::await_change()),
    };

    // The guardrail: count over every target before anything is read.
    let limit = request.spec.max_records.unwrap_or(ctx.max_export_records);
    let mut found = 0u64;
    for step in steps.iter().filter(|s| s.action.searches()) {
        if let Some((handle, target)) = resolve(step, &specs, &stores) {
            let _slot = handle.slot().await;
            found += handle.store.count_subject(&target, &subject).await.unwrap_or(0);
        }
    }
    if found > limit {
        let message = format!(
            "the subject has {found} records in scope, more than the request may export ({limit}: spec.maxRecords, or the installation's --max-export-records); nothing was exported. If that many records are the subject's, file a new request with maxRecords of at least {found}"
        );
        return fail(&ctx, request, status, &previous, "GuardrailReached", message, deadline, now).await;
    }

    // Read every target; write nothing until all have answered.
    let mut read: Vec<(Step, Option<Result<SubjectExport, String>>)> = Vec::new();
    let mut left = limit;
    for step in &steps {
        if !step.action.searches() {
            read.push((step.clone(), None));
            continue;
        }
        let result = match resolve(step, &specs, &stores) {
            None => Err(format!("DataStore {} cannot be reached or does not exist", step.data_store)),
            Some((handle, target)) => {
                let _slot = handle.slot().await;
                match handle.store.export_subject(&target, &subject, left).await {
                    Ok(export) => Ok(export),
                    Err(e @ StoreError::ExportLimit { .. }) => {
                        let message = crate::stores::identity::redact(&e.to_string());
                        return fail(&ctx, request, status, &previous, "GuardrailReached", message, deadline, now)
                            .await;
                    }
                    Err(e) => Err(crate::stores::identity::redact(&e.to_string())),
                }
            }
        };
        if let Ok(export) = &result {
            left = left.saturating_sub(export.record_count() + export.unreadable);
        }
        read.push((step.clone(), Some(result)));
    }
    let failures: Vec<String> = read
        .iter()
        .filter_map(|(s, r)| match r {
            Some(Err(m)) => Some(format!("{}/{}: {m}", s.policy, s.target)),
            _ => None,
        })
        .collect();
    if !failures.is_empty() {
        status.targets = read.iter().map(|(s, r)| target_outcome(s, r.as_ref(), None)).collect();
        let message = format!(
            "{} targets could not be read, so nothing was exported; retried: {}",
            failures.len(),
            failures.join("; ")
        );
        return fail(&ctx, request, status, &previous, "TargetsFailed", message, deadline, now).await;
    }

    // Write the documents, then the manifest.
    let uid = request.metadata.uid.clone().unwrap_or_default();
    let prefix = planner::export_prefix(destination.prefix(), &namespace, &name, &uid);
    let exported_at = Timestamp::now();
    let mut files = Vec::new();
    let mut targets = Vec::new();
    let mut not_exported = BTreeMap::new();
    let mut written: Result<(), String> = Ok(());
    for (step, result) in &read {
        let Some(Ok(export)) = result else {
            if let Some(reason) = planner::not_exported_reason(step) {
                not_exported.insert(format!("{}/{}", step.policy, step.target), reason);
            }
            targets.push(target_outcome(step, None, None));
            continue;
        };
        let spec = &specs[&step.policy];
        let kind = stores.get(&step.data_store).map_or("unknown", |h| h.store.kind());
        let document =
            planner::target_document(&step.policy, spec, &step.target, (step.data_store.as_str(), kind), export);
        let bytes = planner::document_bytes(&document);
        let file = planner::ExportFile {
            object: planner::target_object(&prefix, &step.policy, &step.target),
            policy: step.policy.clone(),
            target: step.target.clone(),
            digest: planner::sha256(&bytes),
            records: export.record_count(),
            unreadable: export.unreadable,
        };
        if written.is_ok() {
            written = destination.put(&file.object, bytes).await.map_err(|e| e.to_string());
        }
        targets.push(target_outcome(step, Some(&Ok(export.clone())), Some(&file)));
        files.push(file);
    }
    let manifest = planner::manifest(
        &format!("{namespace}/{name}"),
        request.spec.received_at.0,
        exported_at,
        &files,
        &not_exported,
    );
    let manifest_bytes = planner::document_bytes(&manifest);
    let manifest_digest = planner::sha256(&manifest_bytes);
    if written.is_ok() {
        written = destination.put(&planner::manifest_object(&prefix), manifest_bytes).await.map_err(|e| e.to_string());
    }
    if let Err(e) = written {
        // Nothing of a failed export stays behind.
        let cleaned = destination.delete_all(&prefix).await;
        let mut message = format!("the export could not be written, so nothing was exported; retried: {e}");
        if let Err(left) = cleaned {
            message.push_str(&format!("; what was written could not all be deleted yet: {left}"));
        }
        status.targets = targets;
        return fail(&ctx, request, status, &previous, "ExportNotWritten", message, deadline, now).await;
    }

    let finished = Timestamp::now();
    status.targets = targets;
    status.records = Some(files.iter().map(|f| f.records as i64).sum());
    status.unreadable = Some(files.iter().map(|f| f.unreadable as i64).sum());
    status.export = Some(ExportLocation {
        bucket: destination.bucket().to_owned(),
        prefix: prefix.clone(),
        manifest_digest: Some(manifest_digest),
    });
    status.completed_at = Some(Time(finished));
    status.last_pass_at = Some(Time(finished));
    status.failed_passes = 0;
    status.expires_at = Some(Time(planner::expires_at(finished, destination.ttl_days())));
    status.phase = Some(AccessPhase::Completed);
    set_overdue(&mut status, &previous.conditions, deadline, now, generation);
    let record = evidence(request, &status, "AccessExported", finished);
    seal(&ctx, request, &mut status, &previous, &record, "Export").await;
    apply_status(&ctx.client, request, &status).await?;
    let note = format!(
        "exported {} records ({} unreadable) from {} targets to bucket {} under {prefix}; expires {}; evidence {}",
        status.records.unwrap_or(0),
        status.unreadable.unwrap_or(0),
        files.len(),
        destination.bucket(),
        status.expires_at.as_ref().map(|t| t.0.to_string()).unwrap_or_default(),
        status.evidence_digest.as_deref().unwrap_or("not recorded")
    );
    let warn = status.unreadable.unwrap_or(0) > 0 || !not_exported.is_empty();
    ctx.event(request, warn, "AccessExported", "Export", note).await;
    tracing::info!(request = %name, namespace = %namespace, records = status.records.unwrap_or(0),
        targets = files.len(), "access request exported");
    Ok(Action::requeue(until_expiry(&status, finished)))
}

/// The step's target as the request reads it (only the subject fields it
/// has identities for), and its store.
fn resolve<'a>(
    step: &Step,
    specs: &BTreeMap<String, RetentionPolicySpec>,
    stores: &'a Stores,
) -> Option<(&'a crate::engine::connect::StoreHandle, crate::api::policy::Target)> {
    let handle = stores.get(&step.data_store)?;
    let mut target = specs.get(&step.policy)?.targets.iter().find(|t| t.name == step.target)?.clone();
    target.subject_fields = step.fields.clone();
    Some((handle, target))
}

/// The outcome of a step that was not searched, if it was not.
fn unsearched(step: &Step) -> Option<AccessTargetOutcome> {
    let outcome = match &step.action {
        crate::plan::erasure::Action::NotSearched { .. } => outcome::NOT_SEARCHED,
        crate::plan::erasure::Action::Skip { .. } => outcome::SKIPPED,
        _ => return None,
    };
    Some(AccessTargetOutcome {
        policy: step.policy.clone(),
        target: step.target.clone(),
        outcome: outcome.into(),
        message: planner::not_exported_reason(step),
        ..AccessTargetOutcome::default()
    })
}

/// A step's outcome from what reading it gave and the file written.
fn target_outcome(
    step: &Step,
    result: Option<&Result<SubjectExport, String>>,
    file: Option<&planner::ExportFile>,
) -> AccessTargetOutcome {
    let mut out = unsearched(step).unwrap_or_else(|| AccessTargetOutcome {
        policy: step.policy.clone(),
        target: step.target.clone(),
        ..AccessTargetOutcome::default()
    });
    match result {
        None => {}
        Some(Err(message)) => {
            out.outcome = outcome::FAILED.into();
            out.message = Some(message.clone());
        }
        Some(Ok(export)) => {
            let found = export.record_count() > 0 || export.unreadable > 0;
            out.outcome = if found { outcome::EXPORTED } else { outcome::NOTHING_FOUND }.into();
            out.records = export.record_count() as i64;
            out.unreadable = export.unreadable as i64;
            out.digest = file.map(|f| f.digest.clone());
            out.object = file.map(|f| f.object.clone());
        }
    }
    out
}

/// Fails a pass: phase Failed, Valid False with the reason, an Event, and
/// a retry with backoff. Nothing was exported.
#[allow(clippy::too_many_arguments)]
async fn fail(
    ctx: &Context,
    request: &AccessRequest,
    mut status: AccessRequestStatus,
    previous: &AccessRequestStatus,
    reason: &str,
    message: String,
    deadline: Timestamp,
    now: Timestamp,
) -> Result<Action, Error> {
    status.phase = Some(AccessPhase::Failed);
    status.export = None;
    status.failed_passes = previous.failed_passes + 1;
    status.last_pass_at = Some(Time(Timestamp::now()));
    let generation = request.metadata.generation;
    conditions(&mut status, previous, (false, reason, message.clone()), deadline, now, generation);
    apply_status(&ctx.client, request, &status).await?;
    ctx.event(request, true, reason, "Export", message).await;
    tracing::info!(request = %request.name_any(), reason, "access request failed");
    Ok(Action::requeue(backoff(ctx.erasure_retry, status.failed_passes)))
}

/// How long until the export expires (at most [`WAKE`]).
fn until_expiry(status: &AccessRequestStatus, now: Timestamp) -> Duration {
    let Some(expires) = status.expires_at.as_ref() else { return WAKE };
    let secs = expires.0.duration_since(now).as_secs().max(0) as u64;
    Duration::from_secs(secs + 1).min(WAKE)
}

/// A completed request: keeps Overdue current, seals the completion if it
/// could not be sealed before, and deletes the export once it expired.
async fn completed(
    ctx: &Context,
    request: &AccessRequest,
    mut status: AccessRequestStatus,
    previous: &AccessRequestStatus,
    now: Timestamp,
) -> Result<Action, Error> {
    let generation = request.metadata.generation;
    let deadline = deadline(request.spec.received_at.0);
    set_overdue(&mut status, &previous.conditions, deadline, now, generation);
    if status.evidence_digest.is_none() {
        let at = status.completed_at.as_ref().map_or(now, |t| t.0);
        let record = evidence(request, &status, "AccessExported", at);
        seal(ctx, request, &mut status, previous, &record, "Export").await;
    }
    let expired = status.expires_at.as_ref().is_some_and(|t| t.0 <= now);
    if !expired || !ctx.fence.holds() {
        if super::changed(request, &status, previous) {
            apply_status(&ctx.client, request, &status).await?;
        }
        return Ok(Action::requeue(if expired { RETRY } else { until_expiry(&status, now) }));
    }
    let Some(location) = status.export.clone() else {
        return Ok(Action::await_change());
    };
    // Status can be written by others than the operator: delete only below
    // a prefix that names this request's own uid, never what status says alone.
    let own = planner::export_prefix(
        "",
        &request.namespace().unwrap_or_default(),
        &request.name_any(),
        &request.uid().unwrap_or_default(),
    );
    let deleted = match &ctx.export {
        Some(_) if request.uid().is_none() || !location.prefix.ends_with(&own) => Err(format!(
            "status names the export prefix {}, which is not this request's (it must end in {own}); nothing was deleted. Delete the export by hand",
            location.prefix
        )),
        Some(destination) if destination.bucket() == location.bucket => {
            destination.delete_all(&location.prefix).await.map_err(|e| e.to_string())
        }
        Some(_) => Err(format!(
            "the installation's export bucket is no longer {}, where this export lies; delete it there by hand, or configure that bucket again",
            location.bucket
        )),
        None => Err("the installation configures no export destination any more".to_owned()),
    };
    match deleted {
        Ok(objects) => {
            status.phase = Some(AccessPhase::Expired);
            status.export_deleted_at = Some(Time(now));
            let message = format!(
                "{objects} objects deleted from bucket {} under {}; a listing found none left",
                location.bucket, location.prefix
            );
            set_condition(
                &mut status,
                condition(&previous.conditions, EXPORT_DELETED, true, "Deleted", message, generation, now),
            );
            let mut record = evidence(request, &status, "AccessExportDeleted", now);
            record["objectsDeleted"] = json!(objects);
            record["remaining"] = json!(0);
            seal(ctx, request, &mut status, previous, &record, "Expire").await;
            apply_status(&ctx.client, request, &status).await?;
            let note = format!("the export expired and was deleted ({objects} objects), read back by listing");
            ctx.event(request, false, "ExportDeleted", "Expire", note).await;
            tracing::info!(request = %request.name_any(), objects, "access export deleted");
            Ok(Action::await_change())
        }
        Err(e) => {
            let message = format!("the export expired but could not be deleted; retried: {e}");
            set_condition(
                &mut status,
                condition(
                    &previous.conditions,
                    EXPORT_DELETED,
                    false,
                    "ExportNotDeleted",
                    message.clone(),
                    generation,
                    now,
                ),
            );
            if super::changed(request, &status, previous) {
                apply_status(&ctx.client, request, &status).await?;
                ctx.event(request, true, "ExportNotDeleted", "Expire", message).await;
            }
            Ok(Action::requeue(RETRY))
        }
    }
}

/// The evidence of an export made or deleted: what was read where, the
/// documents' digests, the subject only by keyed digests.
fn evidence(request: &AccessRequest, status: &AccessRequestStatus, kind: &str, at: Timestamp) -> serde_json::Value {
    json!({
        "kind": kind,
        "request": format!("{}/{}", request.namespace().unwrap_or_default(), request.name_any()),
        "uid": request.metadata.uid,
        "subjectDigests": status.subject_digests,
        "receivedAt": request.spec.received_at.0.to_string(),
        "deadline": status.deadline.as_ref().map(|t| t.0.to_string()),
        "verifiedBy": request.spec.identity_verification.verified_by,
        "verification": request.spec.identity_verification.method,
        "onBehalfOf": request.spec.on_behalf_of,
        "at": at.to_string(),
        "completedAt": status.completed_at.as_ref().map(|t| t.0.to_string()),
        "export": status.export,
        "expiresAt": status.expires_at.as_ref().map(|t| t.0.to_string()),
        "records": status.records,
        "unreadable": status.unreadable,
        "targets": status.targets.iter().map(|t| json!({
            "policy": t.policy,
            "target": t.target,
            "outcome": t.outcome,
            "records": t.records,
            "unreadable": t.unreadable,
            "sha256": t.digest,
        })).collect::<Vec<_>>(),
    })
}

/// Seals a record on the namespace's access chain and notes it in status.
async fn seal(
    ctx: &Context,
    request: &AccessRequest,
    status: &mut AccessRequestStatus,
    previous: &AccessRequestStatus,
    record: &serde_json::Value,
    action: &str,
) {
    let chain = super::evidence::ACCESS_CHAIN;
    let (digest, stored) = super::evidence::seal_for(ctx, request, chain, record, &previous.conditions, action).await;
    if digest.is_some() {
        status.evidence_digest = digest;
    }
    set_condition(status, stored);
}

fn error_policy(_: Arc<AccessRequest>, error: &Error, _: Arc<Context>) -> Action {
    tracing::warn!(reason = error.reason(), error = %error, "AccessRequest reconcile failed");
    Action::requeue(RETRY)
}

/// Runs the AccessRequest controller until `stop` is cancelled and its reconciles in flight end.
pub async fn run(ctx: Arc<Context>, stop: CancellationToken) {
    let requests: Api<AccessRequest> = ctx.watched();
    let controller = Controller::new(requests, watcher::Config::default());
    super::until_stopped(controller, reconcile, error_policy, ctx, stop).await;
}
