//! DataStore: read the credentials, probe the store, and say in a Ready
//! condition whether it answered, with its version or the reason it did not.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use tokio_util::sync::CancellationToken;

use super::{Context, Error, apply_status, condition, credentials_secret};
use crate::api::common::conditions::READY;
use crate::api::{DataStore, DataStoreStatus};

/// How often a ready store is probed again.
pub const REPROBE: Duration = Duration::from_secs(300);
/// How soon a store that did not answer is probed again.
pub const RETRY: Duration = Duration::from_secs(30);

async fn reconcile(store: Arc<DataStore>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = store.namespace().unwrap_or_default();
    let name = store.name_any();
    let previous = store.status.clone().unwrap_or_default();
    let probed = match local_path_allowed(&store, &ctx.allowed_roots) {
        Err(message) => Err(("PathNotAllowed", message)),
        Ok(()) => match ctx.stores.get(&ctx.client, &namespace, &name).await {
            Ok(handle) => {
                handle.store.probe().await.map_err(|e| (e.reason(), crate::stores::identity::redact(&e.to_string())))
            }
            Err(Error::Kube(e)) => return Err(Error::Kube(e)),
            Err(e) => Err((e.reason(), e.to_string())),
        },
    };
    let now = Timestamp::now();
    let generation = store.metadata.generation;
    let (ready, version, reason, message) = match &probed {
        Ok(report) => (
            true,
            Some(report.server_version.clone()),
            "Probed",
            format!("reached {} {}", report.kind, report.server_version),
        ),
        Err((reason, message)) => (false, previous.server_version.clone(), *reason, message.clone()),
    };
    let status = DataStoreStatus {
        store_type: store.spec.store_type().map(str::to_owned),
        server_version: version,
        observed_generation: generation,
        conditions: vec![condition(&previous.conditions, READY, ready, reason, message.clone(), generation, now)],
    };
    let was_ready = previous.conditions.iter().any(|c| c.type_ == READY && c.status == "True");
    if super::changed(store.as_ref(), &status, &previous) {
        apply_status(&ctx.client, store.as_ref(), &status).await?;
        if ready != was_ready || previous.conditions.is_empty() {
            ctx.event(store.as_ref(), !ready, reason, "Probe", message).await;
        }
    }
    tracing::info!(datastore = %name, namespace = %namespace, ready, reason, "probed");
    Ok(Action::requeue(if ready { REPROBE } else { RETRY }))
}

/// The local path of a `sqlite`, `files` or `localBuckets` DataStore, if
/// it is one.
pub fn local_path(store: &DataStore) -> Option<&str> {
    let spec = &store.spec;
    spec.sqlite
        .as_ref()
        .map(|s| s.path.as_str())
        .or(spec.files.as_ref().map(|f| f.root.as_str()))
        .or(spec.local_buckets.as_ref().map(|b| b.root.as_str()))
}

/// Whether a local DataStore's path lies below one of the installation's
/// allowed roots, after following links and `..`: a namespace user must not
/// point the operator at whatever volume is mounted into it.
pub fn local_path_allowed(store: &DataStore, roots: &[std::path::PathBuf]) -> Result<(), String> {
    let Some(path) = local_path(store) else { return Ok(()) };
    if roots.is_empty() {
        return Err(format!(
            "this installation allows no local paths; {path} is refused. An administrator allows directories with --allowed-root (the chart's allowedRoots)"
        ));
    }
    let real = std::fs::canonicalize(path).map_err(|e| format!("the path {path} cannot be resolved: {}", e.kind()))?;
    let inside = roots.iter().filter_map(|r| std::fs::canonicalize(r).ok()).any(|root| real.starts_with(&root));
    if inside {
        Ok(())
    } else {
        let allowed: Vec<String> = roots.iter().map(|r| r.display().to_string()).collect();
        Err(format!("the path {path} is outside the directories this installation allows ({})", allowed.join(", ")))
    }
}

fn error_policy(_: Arc<DataStore>, error: &Error, _: Arc<Context>) -> Action {
    tracing::warn!(reason = error.reason(), error = %error, "DataStore reconcile failed");
    Action::requeue(RETRY)
}

/// Runs the DataStore controller until `stop` is cancelled and its reconciles in flight end.
pub async fn run(ctx: Arc<Context>, stop: CancellationToken) {
    let stores: Api<DataStore> = ctx.watched();
    let secrets: Api<PartialObjectMeta<Secret>> = match &ctx.namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    let controller = super::followed_controller(stores, ctx.metrics.clone(), crate::metrics::Metrics::watch_datastores);
    let cache = controller.store();
    // A changed Secret re-probes the DataStores that use it. Only the
    // Secrets' metadata is watched: their data stays out of the cache.
    let changed = watcher(secrets, watcher::Config::default()).touched_objects();
    let controller = controller.watches_stream(changed, move |secret| {
        let namespace = secret.namespace();
        let name = secret.name_any();
        cache
            .state()
            .into_iter()
            .filter(|ds| ds.namespace() == namespace && credentials_secret(ds) == Some(name.as_str()))
            .map(|ds| ObjectRef::from_obj(ds.as_ref()))
            .collect::<Vec<_>>()
    });
    super::until_stopped(controller, reconcile, error_policy, ctx, stop).await;
}
