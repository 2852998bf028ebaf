//! Hold: read the subject's identities (for a hold on one subject), count
//! what the hold keeps at every target it covers, set the store's own
//! legal hold where there is one (S3 object legal hold), and record placing
//! it as evidence. When it ends (endsAt passed, or deleted: a finalizer
//! waits for this), lift the legal holds it set, record the lifting, and
//! let the records go back to their policies' next runs. Runs and erasures
//! read the holds in force through [`in_force`].

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::{Controller, watcher};
use kube::{Api, ResourceExt};
use tokio_util::sync::CancellationToken;

use super::{Context, Error, apply_status, condition};
use crate::api::common::conditions::{EVIDENCE_STORED, VALID};
use crate::api::hold::{HeldTarget, HoldPhase};
use crate::api::{Hold, HoldStatus, IdentityName, RetentionPolicy};
use crate::plan::hold::{self as planner, HoldView};
use crate::stores::Subject;

/// The finalizer that makes a deleted Hold lift its legal holds and
/// record the lifting before it goes.
pub const FINALIZER: &str = "delenda.dev/hold-release";

/// How often a hold in force is counted again (records come and go).
pub const RECOUNT: Duration = Duration::from_secs(600);
/// How soon a hold waiting for something looks again.
pub const RETRY: Duration = Duration::from_secs(30);

/// The subject's identities from a hold's Secret: checked, as pairs.
async fn identities(ctx: &Context, namespace: &str, secret: &str) -> Result<Vec<(IdentityName, String)>, String> {
    let values = super::erasure::identity_secret(ctx, namespace, secret).await.map_err(|e| e.to_string())?;
    let mut pairs = Vec::new();
    for key in values.keys() {
        if let (Ok(kind), Ok(value)) = (key.parse::<IdentityName>(), values.get(key))
            && !value.trim().is_empty()
        {
            crate::stores::identity::Identity::new(&kind, value.trim())
                .map_err(|e| format!("{e}; correct the identity Secret {secret}"))?;
            pairs.push((kind, value.trim().to_owned()));
        }
    }
    if pairs.is_empty() {
        return Err(format!("the identity Secret {secret} holds no identity (keys like email, phone, customerId)"));
    }
    Ok(pairs)
}

/// A hold in force: its name, spec, and the subject's identities where
/// they could be read.
pub type InForce = (String, crate::api::HoldSpec, Option<Vec<(IdentityName, String)>>);

/// The holds in force in a namespace, with their subjects' identities, for
/// a run or an erasure. A hold on a subject whose identities cannot be read
/// keeps everything it covers (fail closed): its records cannot be told
/// apart.
pub async fn in_force(ctx: &Context, namespace: &str) -> Result<Vec<InForce>, Error> {
    let api: Api<Hold> = Api::namespaced(ctx.client.clone(), namespace);
    let now = Timestamp::now();
    let mut out = Vec::new();
    for hold in api.list(&ListParams::default()).await?.items {
        if !planner::in_force(&hold.spec, hold.metadata.deletion_timestamp.is_some(), now) {
            continue;
        }
        let ids = match &hold.spec.identity_secret_ref {
            Some(secret) => identities(ctx, namespace, &secret.name).await.ok(),
            None => None,
        };
        out.push((hold.name_any(), hold.spec.clone(), ids));
    }
    Ok(out)
}

/// Views of [`in_force`]'s holds, for planning.
pub fn views(holds: &[InForce]) -> Vec<HoldView<'_>> {
    holds.iter().map(|(name, spec, ids)| HoldView { name, spec, identities: ids.clone() }).collect()
}

async fn set_finalizers(api: &Api<Hold>, name: &str, finalizers: Vec<String>) -> Result<(), Error> {
    let patch = serde_json::json!({ "metadata": { "finalizers": finalizers } });
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
    Ok(())
}

async fn reconcile(cached: Arc<Hold>, ctx: Arc<Context>) -> Result<Action, Error> {
    // Whether the hold's placement is sealed already is read from the API
    // server, not the cache, which may not hold the previous pass's status.
    let Some(hold) = super::fresh(&ctx.client, cached.as_ref()).await? else { return Ok(Action::await_change()) };
    let namespace = hold.namespace().unwrap_or_default();
    let name = hold.name_any();
    let generation = hold.metadata.generation;
    let now = Timestamp::now();
    let api: Api<Hold> = Api::namespaced(ctx.client.clone(), &namespace);
    let deleting = hold.metadata.deletion_timestamp.is_some();
    let previous = hold.status.clone().unwrap_or_default();
    let mut status = previous.clone();
    status.observed_generation = generation;

    if !deleting && !hold.finalizers().iter().any(|f| f == FINALIZER) {
        let mut finalizers = hold.finalizers().to_vec();
        finalizers.push(FINALIZER.to_owned());
        set_finalizers(&api, &name, finalizers).await?;
        return Ok(Action::await_change());
    }
    if !ctx.fence.holds() {
        return Ok(Action::requeue(RETRY));
    }
    let in_force = planner::in_force(&hold.spec, deleting, now);
    if !in_force {
        return end(&ctx, &hold, &api, status, &previous, now).await;
    }

    // A hold on a subject: its identities, named in status only by digests.
    let mut subject: Option<Subject> = None;
    if let Some(secret) = &hold.spec.identity_secret_ref {
        let problem = match (&ctx.digester, identities(&ctx, &namespace, &secret.name).await) {
            (None, _) => Some((
                "NoInstallationKey",
                "the operator has no installation key (--hmac-key-file), so it cannot name the subject without personal data; runs keep everything this hold covers until it can".to_owned(),
            )),
            (_, Err(message)) => Some((
                "IdentitiesUnreadable",
                format!("{message}; until they can be read, runs keep everything this hold covers"),
            )),
            (Some(digester), Ok(pairs)) => {
                let digester = digester.for_namespace(&namespace);
                status.subject_digests = super::erasure::subject_digests(&digester, &pairs);
                subject = Some(Subject::new(pairs));
                None
            }
        };
        if let Some((reason, message)) = problem {
            status.phase = Some(HoldPhase::Pending);
            status.conditions.retain(|c| c.type_ != VALID);
            status.conditions.push(condition(
                &previous.conditions,
                VALID,
                false,
                reason,
                message.clone(),
                generation,
                now,
            ));
            if super::changed(hold.as_ref(), &status, &previous) {
                apply_status(&ctx.client, hold.as_ref(), &status).await?;
                ctx.event(hold.as_ref(), true, reason, "Place", message).await;
            }
            return Ok(Action::requeue(RETRY));
        }
    }

    // What it keeps at each target it covers.
    let policies: Api<RetentionPolicy> = Api::namespaced(ctx.client.clone(), &namespace);
    let policies = policies.list(&ListParams::default()).await?.items;
    let digester = ctx.digester.as_ref().map(|d| d.for_namespace(&namespace));
    let mut targets = Vec::new();
    for policy in &policies {
        let policy_name = policy.name_any();
        for target in &policy.spec.targets {
            if !planner::covers(&hold.spec, &policy_name, policy.spec.category.as_str(), &target.name) {
                continue;
            }
            let before = previous.targets.iter().find(|t| t.policy == policy_name && t.target == target.name);
            let mut held = HeldTarget {
                policy: policy_name.clone(),
                target: target.name.clone(),
                legal_hold_digests: before.map(|b| b.legal_hold_digests.clone()).unwrap_or_default(),
                ..HeldTarget::default()
            };
            let handle = match ctx.stores.get(&ctx.client, &namespace, &target.data_store_ref.name).await {
                Ok(h) => h,
                Err(e) => {
                    held.message = Some(format!("DataStore {}: {}", target.data_store_ref.name, e.reason()));
                    targets.push(held);
                    continue;
                }
            };
            let counted = {
                let _slot = handle.slot().await;
                match &subject {
                    Some(_) if target.subject_fields.is_empty() => {
                        Err("the target declares no subject fields: the subject's records cannot be found there, and runs delete them when due".to_owned())
                    }
                    Some(s) => handle
                        .store
                        .count_subject(target, s)
                        .await
                        .map_err(|e| crate::stores::identity::redact(&e.to_string())),
                    None => match handle.store.count_total(target).await {
                        Ok(n) => Ok(n.unwrap_or(0)),
                        Err(e) => Err(crate::stores::identity::redact(&e.to_string())),
                    },
                }
            };
            match counted {
                Ok(n) => held.records = Some(n as i64),
                Err(m) => held.message = Some(m),
            }
            // The store's own legal hold on the subject's objects.
            if let (Some(s), Some(d)) = (&subject, &digester)
                && target.objects.is_some()
                && held.message.is_none()
            {
                let _slot = handle.slot().await;
                match handle.store.place_legal_holds(target, s).await {
                    Ok(Some(keys)) => {
                        let mut mine: BTreeSet<String> = held.legal_hold_digests.iter().cloned().collect();
                        mine.extend(keys.iter().map(|k| d.digest("objectKey", k)));
                        held.legal_hold_digests = mine.into_iter().collect();
                    }
                    Ok(None) => {}
                    Err(e) => {
                        held.message =
                            Some(format!("legal holds not set: {}", crate::stores::identity::redact(&e.to_string())))
                    }
                }
            }
            held.legal_holds = (!held.legal_hold_digests.is_empty()).then_some(held.legal_hold_digests.len() as i64);
            targets.push(held);
        }
    }
    status.targets = targets;
    status.held = Some(status.targets.iter().filter_map(|t| t.records).sum());
    status.phase = Some(HoldPhase::Active);
    status.lifted_at = None;
    status.conditions.retain(|c| c.type_ != VALID);
    if status.targets.is_empty() {
        // A hold that covers nothing holds nothing: a misspelt category
        // must not read as data kept. Stalled until a policy's target falls
        // in its scope; it is looked at again as policies change.
        let note = "no RetentionPolicy target in this namespace falls in the hold's scope, so nothing is held; check the categories, targets and the subject's identity kinds against the policies";
        status.conditions.push(condition(
            &previous.conditions,
            VALID,
            false,
            "NoTargetsInScope",
            note,
            generation,
            now,
        ));
        if previous.conditions.iter().all(|c| c.type_ != VALID || c.reason != "NoTargetsInScope") {
            ctx.event(hold.as_ref(), true, "NoTargetsInScope", "Place", note.to_owned()).await;
        }
    } else {
        let note = format!("{} targets covered", status.targets.len());
        status.conditions.push(condition(&previous.conditions, VALID, true, "Valid", note, generation, now));
    }

    if previous.phase != Some(HoldPhase::Active) || previous.placed_at.is_none() {
        status.placed_at = Some(Time(now));
        let record = evidence(&hold, &status, "HoldPlaced", now);
        seal(&ctx, &hold, &mut status, &previous, &record, "Place").await;
        let note =
            format!("hold placed: {} records held at {} targets", status.held.unwrap_or(0), status.targets.len());
        ctx.event(hold.as_ref(), false, "HoldPlaced", "Place", note).await;
        tracing::info!(hold = %name, namespace = %namespace, held = status.held.unwrap_or(0), "hold placed");
    }
    if super::changed(hold.as_ref(), &status, &previous) {
        apply_status(&ctx.client, hold.as_ref(), &status).await?;
    }
    let until_end = hold
        .spec
        .ends_at
        .as_ref()
        .map(|end| Duration::from_secs(end.0.duration_since(now).as_secs().max(0) as u64 + 1));
    Ok(Action::requeue(until_end.map_or(RECOUNT, |d| d.min(RECOUNT))))
}

/// Ends a hold: lifts the legal holds it set, records the lifting, and,
/// for a deleted hold, lets it go.
async fn end(
    ctx: &Context,
    hold: &Hold,
    api: &Api<Hold>,
    mut status: HoldStatus,
    previous: &HoldStatus,
    now: Timestamp,
) -> Result<Action, Error> {
    let namespace = hold.namespace().unwrap_or_default();
    let name = hold.name_any();
    if previous.phase != Some(HoldPhase::Ended) {
        let digester = ctx.digester.as_ref().map(|d| d.for_namespace(&namespace));
        let policies: Api<RetentionPolicy> = Api::namespaced(ctx.client.clone(), &namespace);
        let policies: BTreeMap<String, RetentionPolicy> =
            policies.list(&ListParams::default()).await?.items.into_iter().map(|p| (p.name_any(), p)).collect();
        let mut failed = false;
        for held in status.targets.iter_mut().filter(|t| !t.legal_hold_digests.is_empty()) {
            let (Some(digester), Some(target)) = (
                &digester,
                policies.get(&held.policy).and_then(|p| p.spec.targets.iter().find(|t| t.name == held.target)),
            ) else {
                held.message = Some("the target or the installation key is gone: its legal holds cannot be found to lift; lift them by hand".into());
                continue;
            };
            let mine: BTreeSet<String> = held.legal_hold_digests.iter().cloned().collect();
            let ours = move |key: &str| mine.contains(&digester.digest("objectKey", key));
            let lifted = match ctx.stores.get(&ctx.client, &namespace, &target.data_store_ref.name).await {
                Ok(handle) => {
                    let _slot = handle.slot().await;
                    handle
                        .store
                        .lift_legal_holds(target, &ours)
                        .await
                        .map_err(|e| crate::stores::identity::redact(&e.to_string()))
                }
                Err(e) => Err(e.reason().to_owned()),
            };
            match lifted {
                Ok(_) => {
                    held.legal_hold_digests.clear();
                    held.legal_holds = None;
                    held.message = None;
                }
                Err(m) => {
                    failed = true;
                    held.message = Some(format!("legal holds not lifted yet: {m}"));
                }
            }
        }
        if failed {
            if super::changed(hold, &status, previous) {
                apply_status(&ctx.client, hold, &status).await?;
            }
            return Ok(Action::requeue(RETRY));
        }
        status.phase = Some(HoldPhase::Ended);
        status.lifted_at = Some(Time(now));
        let record = evidence(hold, &status, "HoldLifted", now);
        seal(ctx, hold, &mut status, previous, &record, "Lift").await;
        let why = if hold.metadata.deletion_timestamp.is_some() { "deleted" } else { "its end passed" };
        ctx.event(
            hold,
            false,
            "HoldLifted",
            "Lift",
            format!("hold lifted ({why}): the records go back to their policies' next runs"),
        )
        .await;
        tracing::info!(hold = %name, namespace = %namespace, "hold lifted");
        apply_status(&ctx.client, hold, &status).await?;
    }
    if hold.metadata.deletion_timestamp.is_some() {
        let finalizers: Vec<String> = hold.finalizers().iter().filter(|f| *f != FINALIZER).cloned().collect();
        set_finalizers(api, &name, finalizers).await?;
    }
    Ok(Action::await_change())
}

/// The evidence of placing or lifting a hold: who, why, what it covers and
/// holds, the subject only by keyed digests.
fn evidence(hold: &Hold, status: &HoldStatus, kind: &str, at: Timestamp) -> serde_json::Value {
    serde_json::json!({
        "kind": kind,
        "hold": format!("{}/{}", hold.namespace().unwrap_or_default(), hold.name_any()),
        "reason": hold.spec.reason,
        "ground": hold.spec.reason.ground(),
        "placedBy": hold.spec.placed_by,
        "reference": hold.spec.reference,
        "endsAt": hold.spec.ends_at.as_ref().map(|t| t.0.to_string()),
        "scope": hold.spec.scope,
        "subjectDigests": status.subject_digests,
        "at": at.to_string(),
        "held": status.held,
        "targets": status.targets.iter().map(|t| serde_json::json!({
            "policy": t.policy,
            "target": t.target,
            "records": t.records,
            "legalHolds": t.legal_holds,
        })).collect::<Vec<_>>(),
    })
}

/// Seals a record on the namespace's hold chain and notes where in status.
async fn seal(
    ctx: &Context,
    hold: &Hold,
    status: &mut HoldStatus,
    previous: &HoldStatus,
    record: &serde_json::Value,
    action: &str,
) {
    let chain = super::evidence::HOLD_CHAIN;
    let (digest, stored) = super::evidence::seal_for(ctx, hold, chain, record, &previous.conditions, action).await;
    if digest.is_some() {
        status.evidence_digest = digest;
    }
    status.conditions.retain(|c| c.type_ != EVIDENCE_STORED);
    status.conditions.push(stored);
}

fn error_policy(_: Arc<Hold>, error: &Error, _: Arc<Context>) -> Action {
    tracing::warn!(reason = error.reason(), error = %error, "Hold reconcile failed");
    Action::requeue(RETRY)
}

/// Runs the Hold controller until `stop` is cancelled and its reconciles in flight end.
pub async fn run(ctx: Arc<Context>, stop: CancellationToken) {
    let holds: Api<Hold> = ctx.watched();
    let controller = Controller::new(holds, watcher::Config::default());
    super::until_stopped(controller, reconcile, error_policy, ctx, stop).await;
}
