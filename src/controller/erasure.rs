//! ErasureRequest: read the subject's identities from the referenced Secret,
//! plan which targets are in scope, erase or retain, read back, and write
//! per-target outcomes, the deadline and the evidence digest to status. The
//! identities appear in status only as keyed digests.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{DeleteParams, ListParams};
use kube::runtime::controller::Action;
use kube::runtime::{Controller, watcher};
use kube::{Api, ResourceExt};

use super::{Context, Error, apply_status, condition, read_secret, store_client};
use crate::api::common::conditions::{OVERDUE, VALID};
use crate::api::erasure::{ErasurePhase, ErasureSummary, ErasureTargetOutcome};
use crate::api::{ErasureRequest, ErasureRequestStatus, IdentityName, Mode, RetentionPolicy, RetentionPolicySpec};
use crate::engine::erase::{ErasureJob, run_erasure};
use crate::engine::run::Stores;
use crate::plan::erasure::{self as planner, PolicyView};
use crate::stores::{PurgeOptions, Subject};

/// How soon a failed request is tried again.
pub const RETRY: Duration = Duration::from_secs(60);

fn overdue(
    status: &ErasureRequestStatus,
    previous: &ErasureRequestStatus,
    deadline: Timestamp,
    now: Timestamp,
    generation: Option<i64>,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    let completed = status.phase == Some(ErasurePhase::Completed);
    let late = planner::is_overdue(deadline, now, completed);
    let message = if late {
        format!("the deadline {deadline} has passed and the request is not completed")
    } else if completed {
        "completed".to_owned()
    } else {
        format!("due by {deadline}")
    };
    condition(
        &previous.conditions,
        OVERDUE,
        late,
        if late { "DeadlinePassed" } else { "WithinDeadline" },
        message,
        generation,
        now,
    )
}

async fn reconcile(request: Arc<ErasureRequest>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = request.namespace().unwrap_or_default();
    let name = request.name_any();
    let generation = request.metadata.generation;
    let now = Timestamp::now();
    let previous = request.status.clone().unwrap_or_default();
    let mut status = previous.clone();
    let deadline = planner::deadline(request.spec.received_at.0);
    status.deadline = Some(Time(deadline));
    status.observed_generation = generation;

    let uid = request.uid().unwrap_or_default();
    if previous.phase == Some(ErasurePhase::Completed) {
        ctx.metrics.erasure_state(&uid, Some(("Completed", Some(deadline))), now);
        status.conditions.retain(|c| c.type_ != OVERDUE);
        status.conditions.push(overdue(&status, &previous, deadline, now, generation));
        if status != previous {
            apply_status(&ctx.client, request.as_ref(), &status).await?;
        }
        return Ok(Action::await_change());
    }

    let Some(digester) = ctx.digester.as_ref() else {
        let message = "the operator has no installation key (--hmac-key-file), so it cannot name the subject in evidence without personal data; erasure requests wait";
        status.conditions =
            vec![condition(&previous.conditions, VALID, false, "NoInstallationKey", message, generation, now)];
        status.phase = Some(ErasurePhase::Pending);
        if status != previous {
            apply_status(&ctx.client, request.as_ref(), &status).await?;
            ctx.event(request.as_ref(), true, "NoInstallationKey", "Validate", message.into()).await;
        }
        return Ok(Action::requeue(RETRY));
    };

    let secret_name = &request.spec.identity_secret_ref.name;
    let identities = match read_secret(&ctx.client, &namespace, secret_name).await {
        Ok(c) => c,
        Err(Error::Kube(e)) => return Err(Error::Kube(e)),
        Err(e) => {
            status.phase = Some(ErasurePhase::Pending);
            status.conditions = vec![
                condition(&previous.conditions, VALID, false, e.reason(), e.to_string(), generation, now),
                overdue(&status, &previous, deadline, now, generation),
            ];
            if status != previous {
                apply_status(&ctx.client, request.as_ref(), &status).await?;
                ctx.event(request.as_ref(), true, e.reason(), "Validate", e.to_string()).await;
            }
            return Ok(Action::requeue(RETRY));
        }
    };
    let mut pairs = Vec::new();
    let mut unknown = Vec::new();
    for key in identities.keys() {
        match (key.parse::<IdentityName>(), identities.get(key)) {
            (Ok(kind), Ok(value)) if !value.trim().is_empty() => pairs.push((kind, value.trim().to_owned())),
            _ => unknown.push(key.to_owned()),
        }
    }
    let subject = Subject::new(pairs.clone());
    let kinds: BTreeSet<IdentityName> = pairs.iter().map(|(k, _)| k.clone()).collect();
    status.subject_digests = pairs.iter().map(|(k, v)| (k.to_string(), digester.digest(k.as_str(), v))).collect();

    let policy_api: Api<RetentionPolicy> = Api::namespaced(ctx.client.clone(), &namespace);
    let policies = policy_api.list(&ListParams::default()).await?.items;
    let specs: BTreeMap<String, RetentionPolicySpec> =
        policies.iter().map(|p| (p.name_any(), p.spec.clone())).collect();
    let views: Vec<PolicyView<'_>> = policies
        .iter()
        .map(|p| PolicyView { name: p.metadata.name.as_deref().unwrap_or(""), labels: p.labels(), spec: &p.spec })
        .collect();
    let plan = planner::plan(&request.spec, &views, &kinds, now);

    status.phase = Some(ErasurePhase::InProgress);
    let mut notes = format!("{} targets in scope", plan.steps.len());
    if !unknown.is_empty() {
        notes.push_str(&format!("; Secret keys that are not identity names were ignored: {}", unknown.join(", ")));
    }
    status.conditions = vec![
        condition(&previous.conditions, VALID, true, "Valid", notes, generation, now),
        overdue(&status, &previous, deadline, now, generation),
    ];
    apply_status(&ctx.client, request.as_ref(), &status).await?;

    let mut stores: Stores = BTreeMap::new();
    for step in &plan.steps {
        if !stores.contains_key(&step.data_store)
            && let Ok(s) = store_client(&ctx.client, &namespace, &step.data_store).await
        {
            stores.insert(step.data_store.clone(), s);
        }
    }
    let request_ref = format!("{namespace}/{name}");
    let options = PurgeOptions::new(request.spec.mode);
    let job = ErasureJob {
        request: &request_ref,
        spec: &request.spec,
        plan: &plan,
        policies: &specs,
        subject: &subject,
        subject_digests: &status.subject_digests,
    };
    let result = run_erasure(&job, &stores, &options).await;

    status.targets = result
        .steps
        .iter()
        .map(|s| ErasureTargetOutcome {
            policy: s.policy.clone(),
            target: s.target.clone(),
            outcome: s.outcome.to_owned(),
            matched: s.matched as i64,
            erased: s.erased as i64,
            remaining: s.remaining.map(|r| r as i64),
            retained_until: s.retained.as_ref().and_then(|(t, _)| t.map(Time)),
            retained_under: s.retained.as_ref().map(|(_, u)| u.clone()),
            on_behalf_of: s.on_behalf_of.clone(),
            message: s.message.clone(),
        })
        .collect();
    status.summary = Some(ErasureSummary {
        erased: result.steps.iter().map(|s| s.erased as i64).sum(),
        retained: result.steps.iter().filter(|s| s.outcome == "Retained").map(|s| s.matched as i64).sum(),
        failed: result.steps.iter().filter(|s| s.outcome == "Failed").count() as i64,
    });
    // The durable copy first: the digest in status is the stored record's.
    let chain = super::evidence::ERASURE_CHAIN;
    let evidence = match super::evidence::append(&ctx.client, &namespace, chain, None, &result.evidence.record).await {
        Ok(sealed) => sealed,
        Err(e) => {
            tracing::warn!(request = %name, error = %e, "could not store the erasure's evidence");
            let note = format!("the evidence is only in status and the log: {e}");
            ctx.event(request.as_ref(), true, "EvidenceNotStored", "Erase", note).await;
            result.evidence.clone()
        }
    };
    status.evidence_digest = Some(evidence.digest.to_string());
    status.phase = Some(if result.complete { ErasurePhase::Completed } else { ErasurePhase::Failed });
    status.completed_at = result.complete.then(|| Time(Timestamp::now()));
    status.conditions.retain(|c| c.type_ != OVERDUE);
    status.conditions.push(overdue(&status, &previous, deadline, now, generation));
    apply_status(&ctx.client, request.as_ref(), &status).await?;
    let phase = if result.complete { "Completed" } else { "Failed" };
    ctx.metrics.erasure_state(&uid, Some((phase, Some(deadline))), Timestamp::now());

    let summary = status.summary.clone().unwrap_or_default();
    let note = format!(
        "{} records erased, {} retained under a legal obligation, {} targets failed; evidence {}",
        summary.erased, summary.retained, summary.failed, evidence.digest
    );
    ctx.event(
        request.as_ref(),
        !result.complete,
        if result.complete { "ErasureCompleted" } else { "ErasureFailed" },
        "Erase",
        note,
    )
    .await;
    tracing::info!(request = %name, namespace = %namespace, complete = result.complete, erased = summary.erased,
        retained = summary.retained, evidence = %serde_json::to_string(&evidence).unwrap_or_default(), "erasure pass finished");

    if result.complete && request.spec.delete_identity_secret && request.spec.mode == Mode::Enforce {
        let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
        match secrets.delete(secret_name, &DeleteParams::default()).await {
            Ok(_) => {
                ctx.event(
                    request.as_ref(),
                    false,
                    "IdentitySecretDeleted",
                    "Cleanup",
                    format!("deleted the identity Secret {secret_name}"),
                )
                .await
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => return Err(Error::Kube(e)),
        }
    }
    Ok(if result.complete { Action::await_change() } else { Action::requeue(RETRY) })
}

fn error_policy(_: Arc<ErasureRequest>, error: &Error, _: Arc<Context>) -> Action {
    tracing::warn!(reason = error.reason(), error = %error, "ErasureRequest reconcile failed");
    Action::requeue(RETRY)
}

/// Runs the ErasureRequest controller until `shutdown` resolves.
pub async fn run(ctx: Arc<Context>, shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static) {
    let requests: Api<ErasureRequest> = ctx.watched();
    Controller::new(requests, watcher::Config::default())
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async {})
        .await;
}
