//! The operator: kube-runtime controllers for DataStores, RetentionPolicies,
//! ErasureRequests, Holds and AccessRequests, thin glue between the API server and the engine.
//!
//! Status is written with server-side apply under one field manager and
//! carries no timestamps that change on every reconcile, so a reconcile that
//! changes nothing writes nothing new.

pub mod access;
pub mod datastore;
pub mod erasure;
pub mod evidence;
pub mod hold;
pub mod kstatus;
pub mod lease;
pub mod policy;
pub mod registry;

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::api::DataStore;
use crate::engine::connect::{ConnectError, Credentials};
use crate::engine::evidence::SubjectDigester;

/// The field manager of every status the operator writes.
pub const MANAGER: &str = "delenda-controller";

/// What every reconciler shares.
pub struct Context {
    /// The Kubernetes client.
    pub client: Client,
    /// Publishes Events.
    pub recorder: Recorder,
    /// Keyed digests of identities; without an installation key erasure
    /// requests wait.
    pub digester: Option<SubjectDigester>,
    /// The one namespace watched, or every namespace when `None`.
    pub namespace: Option<String>,
    /// The metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The first wait of a failed erasure request (see [`Settings`]).
    pub erasure_retry: std::time::Duration,
    /// Signs evidence.
    pub signer: Option<crate::engine::evidence::Signer>,
    /// The locked copy of the evidence.
    pub sink: Option<Arc<crate::engine::sink::EvidenceSink>>,
    /// Cancelled at shutdown and when the lease is lost: every run stops
    /// after its batch in flight.
    pub cancel: CancellationToken,
    /// Whether this instance still leads, by its own clock; asked before
    /// every batch and every status write of a run.
    pub fence: lease::Fence,
    /// Cancelled when the process is asked to stop (as opposed to losing
    /// its lease).
    pub shutdown: CancellationToken,
    /// One client per DataStore, shared by every run.
    pub stores: registry::Registry,
    /// Runs at once, over every policy and request.
    pub runs: Arc<tokio::sync::Semaphore>,
    /// Directories that `sqlite`, `files` and `localBuckets` DataStores may
    /// reach; none may when empty.
    pub allowed_roots: Vec<std::path::PathBuf>,
    /// Records an erasure request may erase unless it says otherwise.
    pub max_erasure_records: u64,
    /// Where access requests write their exports; they wait without one.
    pub export: Option<Arc<crate::engine::export::ExportDestination>>,
    /// Records an access request may export unless it says otherwise.
    pub max_export_records: u64,
}

impl Context {
    /// A context for a client.
    pub fn new(
        client: Client,
        settings: &Settings,
        cancel: CancellationToken,
        shutdown: CancellationToken,
        fence: lease::Fence,
    ) -> Arc<Self> {
        let reporter = Reporter { controller: MANAGER.into(), instance: Some(settings.identity.clone()) };
        Arc::new(Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            digester: settings.digester.clone(),
            namespace: settings.namespace.clone(),
            metrics: settings.metrics.clone(),
            erasure_retry: settings.erasure_retry,
            signer: settings.signer.clone(),
            sink: settings.sink.clone(),
            cancel,
            fence,
            shutdown,
            stores: registry::Registry::default(),
            runs: Arc::new(tokio::sync::Semaphore::new(settings.max_concurrent_runs.max(1))),
            allowed_roots: settings.allowed_roots.clone(),
            max_erasure_records: settings.max_erasure_records,
            export: settings.export.clone(),
            max_export_records: settings.max_export_records,
        })
    }

    /// Why the runs in flight were cancelled from above.
    pub fn stop_reason(&self) -> &'static str {
        if self.shutdown.is_cancelled() { "ShuttingDown" } else { "LeaseLost" }
    }

    /// The API of a kind, in the watched namespace or in all.
    pub fn watched<K>(&self) -> Api<K>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
    {
        match &self.namespace {
            Some(ns) => Api::namespaced(self.client.clone(), ns),
            None => Api::all(self.client.clone()),
        }
    }

    /// Publishes an Event about `obj`; a failure to publish is logged, never fatal.
    pub async fn event<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        warning: bool,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let event = Event {
            type_: if warning { EventType::Warning } else { EventType::Normal },
            reason: reason.into(),
            note: Some(note),
            action: action.into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &obj.object_ref(&())).await {
            tracing::warn!(error = %e, reason, "could not publish an Event");
        }
    }
}

/// A controller of `K` over the watched namespace (or all) whose cache the
/// metrics read: `follow` hands the cache to them each time it holds a
/// full list (the first, and after every relist), never before, so a
/// scrape never reports an empty cluster that is not. The event is seen
/// after the reflector applied it.
///
/// (Waiting on the cache's `wait_until_ready` instead would race the
/// controller, which waits on the same one-waker channel.)
pub fn followed_controller<K>(
    api: Api<K>,
    metrics: Arc<crate::metrics::Metrics>,
    follow: fn(&crate::metrics::Metrics, kube::runtime::reflector::Store<K>),
) -> kube::runtime::Controller<K>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
{
    use futures::TryStreamExt;
    use kube::runtime::{WatchStreamExt, reflector, watcher};
    let (reader, writer) = reflector::store();
    let cache = reader.clone();
    let stream = reflector(writer, watcher(api, watcher::Config::default()).modify(slim::<K>))
        .inspect_ok(move |event| {
            if matches!(event, watcher::Event::InitDone) {
                follow(&metrics, cache.clone());
            }
        })
        .applied_objects();
    kube::runtime::Controller::for_stream(stream, reader)
}

/// Runs `controller` with `reconcile` until `stop` is cancelled and the
/// reconciles in flight have finished, counting each finished reconcile.
///
/// kube-runtime holds every reconcile until the controller's cache has its
/// first full list, and its graceful shutdown waits for the held runner
/// too: a controller stopped before that list arrived (a pod told to stop
/// as it starts, an API server slow to answer the first list) waited
/// forever, and the operator never exited. No reconcile can have started
/// before the cache was filled, so such a controller is dropped at once.
/// Once `stop` is cancelled the controller no longer reads its watch, so a
/// cache that is not filled then never will be.
pub async fn until_stopped<K, Fut>(
    controller: kube::runtime::Controller<K>,
    reconcile: impl FnMut(Arc<K>, Arc<Context>) -> Fut,
    error_policy: impl Fn(Arc<K>, &Fut::Error, Arc<Context>) -> kube::runtime::controller::Action,
    ctx: Arc<Context>,
    stop: CancellationToken,
) where
    K: Clone + Resource + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    K::DynamicType: Eq + std::hash::Hash + Clone + std::fmt::Debug + Unpin,
    Fut: futures::TryFuture<Ok = kube::runtime::controller::Action> + Send + 'static,
    Fut::Error: std::error::Error + Send + 'static,
{
    use futures::{FutureExt, StreamExt};
    let cache = controller.store();
    let reconciles = controller
        .graceful_shutdown_on(stop.clone().cancelled_owned())
        .run(reconcile, error_policy, ctx)
        .for_each(|_| async { reconciled() });
    let never_filled = async {
        stop.cancelled().await;
        if cache.wait_until_ready().now_or_never().is_some() {
            // Filled (or its writer gone): the controller ends by itself.
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        () = reconciles => {}
        () = never_filled => tracing::debug!("stopped before its first list arrived: nothing ran, nothing to wait for"),
    }
}

/// Reconciles finished so far, over every controller.
static RECONCILED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Notes a finished reconcile (the controllers' streams call it).
pub(crate) fn reconciled() {
    RECONCILED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// How often the allocator is asked to give back what a burst of
/// reconciles freed.
pub const TRIM_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Gives free memory back to the system every [`TRIM_EVERY`] in which a
/// reconcile finished, until `stop`. A burst (the first pass over thousands
/// of policies, a relist) frees most of what it allocated, but glibc's
/// allocator keeps those pages while long-lived objects (the cached
/// policies, which the burst replaced one by one) sit between them: the
/// resident memory stayed at the burst's peak. `malloc_trim` returns every
/// wholly free page, wherever it lies. Nothing is trimmed while nothing
/// happens, so an idle operator does no work for it.
pub async fn trim_memory(stop: CancellationToken) {
    let mut seen = 0;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TRIM_EVERY) => {}
            _ = stop.cancelled() => return,
        }
        let now = RECONCILED.load(std::sync::atomic::Ordering::Relaxed);
        if now != seen {
            seen = now;
            trim();
        }
    }
}

/// Returns the allocator's free pages to the system (glibc only; other
/// allocators return them on their own or not at all).
pub fn trim() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The annotation `kubectl apply` keeps the whole last applied manifest in.
pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Strips what the operator never reads from an object before it enters a
/// cache: `metadata.managedFields` (a tree of every field each manager set,
/// often larger than the object itself) and [`LAST_APPLIED`] (the object
/// again, as text). Every reconcile, metric and Event reads the rest; a
/// decision that seals evidence or deletes reads the object afresh
/// ([`fresh`]), whole.
pub fn slim<K: Resource>(obj: &mut K) {
    let meta = obj.meta_mut();
    // `None`, not an empty list or map: an emptied map keeps its first node
    // (540 bytes for the annotations), a cleared list its capacity.
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
        if annotations.is_empty() {
            meta.annotations = None;
        }
    }
}

/// Why a reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The API server refused or failed a request.
    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    /// A DataStore could not be turned into a client.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// A referenced object does not exist.
    #[error("{kind} {name} does not exist in namespace {namespace}")]
    NotFound { kind: &'static str, namespace: String, name: String },
    /// A Secret named as a subject's identities that may not be used so.
    #[error(
        "the Secret {name} is refused as an identity Secret: {why}. An identity Secret carries the label delenda.dev/identity: \"true\" and holds nothing else; it is never deleted otherwise"
    )]
    NotAnIdentitySecret { name: String, why: String },
}

impl Error {
    /// A low-cardinality reason for conditions, Events and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Kube(_) => "KubernetesApiError",
            Self::Connect(e) => e.reason(),
            Self::NotFound { kind: "Secret", .. } => "SecretNotFound",
            Self::NotFound { kind: "DataStore", .. } => "DataStoreNotFound",
            Self::NotFound { .. } => "CrdNotEstablished",
            Self::NotAnIdentitySecret { .. } => "NotAnIdentitySecret",
        }
    }
}

/// A condition, keeping the previous transition time when its status did
/// not change, so an unchanged condition writes no new value.
pub fn condition(
    previous: &[Condition],
    type_: &str,
    ok: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    let status = if ok { "True" } else { "False" };
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == status)
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time,
    }
}

/// A condition whose truth is not known (status `Unknown`), keeping the
/// previous transition time when it was Unknown already.
pub fn condition_unknown(
    previous: &[Condition],
    type_: &str,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    let last_transition_time = previous
        .iter()
        .find(|c| c.type_ == type_ && c.status == "Unknown")
        .map(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    Condition {
        type_: type_.into(),
        status: "Unknown".into(),
        reason: reason.into(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time,
    }
}

/// Applies `status` to `obj` with server-side apply under [`MANAGER`].
/// The object as the API server holds it now, or `None` when it is gone.
///
/// A reconcile is handed the watch cache's copy, which can lag this
/// operator's own last status write: a reconcile that seals evidence on
/// that copy would seal a record the previous pass already sealed. Every
/// reconciler whose decisions seal evidence or delete reads the object
/// afresh first (a quorum read).
pub async fn fresh<K>(client: &Client, cached: &K) -> Result<Option<Arc<K>>, kube::Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), &cached.namespace().unwrap_or_default());
    Ok(api.get_opt(&cached.name_any()).await?.map(Arc::new))
}

pub async fn apply_status<K, S>(client: &Client, obj: &K, status: &S) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + kstatus::Conditioned,
    S: Serialize + Clone + kstatus::Summarize,
{
    apply_status_at(client, obj, status, None).await.map(|_| ())
}

/// Whether writing `status` would change `previous`, the status as last
/// read, once Ready, Reconciling and Stalled are derived: the test for a
/// write, and for the Event that goes with it.
pub(crate) fn changed<K: Resource + kstatus::Conditioned, S: Clone + PartialEq + kstatus::Summarize>(
    obj: &K,
    status: &S,
    previous: &S,
) -> bool {
    summarized(obj, status) != *previous
}

/// `status` with Ready, Reconciling and Stalled set from where it stands.
fn summarized<K: Resource + kstatus::Conditioned, S: Clone + kstatus::Summarize>(obj: &K, status: &S) -> S {
    let mut status = status.clone();
    kstatus::summarize(&mut status, &obj.previous_conditions(), obj.meta().generation, Timestamp::now());
    status
}

/// Applies `status` like [`apply_status`], on condition that the object is
/// still at `resource_version` when one is given: a writer whose view is
/// stale fails with a conflict instead of overwriting. Returns the new
/// resourceVersion.
pub async fn apply_status_at<K, S>(
    client: &Client,
    obj: &K,
    status: &S,
    resource_version: Option<&str>,
) -> Result<Option<String>, kube::Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + kstatus::Conditioned,
    S: Serialize + Clone + kstatus::Summarize,
{
    let status = &summarized(obj, status);
    let api: Api<K> = Api::namespaced(client.clone(), &obj.namespace().unwrap_or_default());
    let mut patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    if let Some(version) = resource_version {
        patch["metadata"] = serde_json::json!({ "resourceVersion": version });
    }
    let written =
        api.patch_status(&obj.name_any(), &PatchParams::apply(MANAGER).force(), &Patch::Apply(&patch)).await?;
    Ok(written.meta().resource_version.clone())
}

/// Reads a Secret's data.
pub async fn read_secret(client: &Client, namespace: &str, name: &str) -> Result<Credentials, Error> {
    Ok(read_secret_with_version(client, namespace, name).await?.0)
}

/// Reads a Secret's data and its resourceVersion.
pub async fn read_secret_with_version(
    client: &Client,
    namespace: &str,
    name: &str,
) -> Result<(Credentials, String), Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = api.get_opt(name).await?.ok_or_else(|| Error::NotFound {
        kind: "Secret",
        namespace: namespace.into(),
        name: name.into(),
    })?;
    let version = secret.metadata.resource_version.clone().unwrap_or_default();
    let data: BTreeMap<String, Vec<u8>> = secret.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect();
    Ok((Credentials::new(name, data), version))
}

/// The name of the credentials Secret a DataStore refers to, if any.
pub fn credentials_secret(store: &DataStore) -> Option<&str> {
    let spec = &store.spec;
    spec.postgres
        .as_ref()
        .map(|s| s.credentials_secret.name.as_str())
        .or(spec.mysql.as_ref().map(|s| s.credentials_secret.name.as_str()))
        .or(spec.s3.as_ref().map(|s| s.credentials_secret.name.as_str()))
        .or(spec.opensearch.as_ref().and_then(|s| s.credentials_secret.as_ref()).map(|s| s.name.as_str()))
}

/// Waits until the CRDs of all three kinds are Established.
pub async fn wait_for_crds(client: &Client, timeout: std::time::Duration) -> Result<(), Error> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::runtime::wait::{await_condition, conditions::is_crd_established};
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in crate::api::crds() {
        let name = crd.metadata.name.unwrap_or_default();
        tracing::info!(crd = %name, "waiting for the CRD to be established");
        tokio::time::timeout(timeout, await_condition(api.clone(), &name, is_crd_established()))
            .await
            .map_err(|_| Error::NotFound {
                kind: "CustomResourceDefinition",
                namespace: String::new(),
                name: name.clone(),
            })?
            .map_err(|e| Error::Kube(kube::Error::Service(Box::new(e))))?;
    }
    Ok(())
}

/// How the operator runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// This instance's name in Events and in the Lease (the pod's name).
    pub identity: String,
    /// The installation key's digester.
    pub digester: Option<SubjectDigester>,
    /// The one namespace watched, or every namespace.
    pub namespace: Option<String>,
    /// Where the leader-election Lease lives; `None` runs without election
    /// (one replica only).
    pub lease_namespace: Option<String>,
    /// The metrics the controllers update.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// How long an erasure request waits after its first failed pass; the
    /// wait doubles with each failure in a row, up to sixteen times this.
    /// Evidence waiting for the locked sink is retried this often too.
    pub erasure_retry: std::time::Duration,
    /// The key that signs every evidence record; unsigned without one.
    pub signer: Option<crate::engine::evidence::Signer>,
    /// The locked bucket every evidence record is also written to.
    pub sink: Option<Arc<crate::engine::sink::EvidenceSink>>,
    /// Policy runs and erasure passes at once, over every namespace.
    pub max_concurrent_runs: usize,
    /// Directories that `sqlite`, `files` and `localBuckets` DataStores may
    /// reach (their paths must lie below one); none may when empty.
    pub allowed_roots: Vec<std::path::PathBuf>,
    /// Records an erasure request may erase, over all its targets, unless
    /// the request sets its own `maxRecords`.
    pub max_erasure_records: u64,
    /// The bucket access requests export to; without one they wait.
    pub export: Option<Arc<crate::engine::export::ExportDestination>>,
    /// Records an access request may export, over all its targets, unless
    /// the request sets its own `maxRecords`.
    pub max_export_records: u64,
}

/// Runs at once by default.
pub const DEFAULT_MAX_CONCURRENT_RUNS: usize = 4;
/// Records an erasure may erase by default.
pub const DEFAULT_MAX_ERASURE_RECORDS: u64 = 10_000;
/// Records an access request may export by default.
pub const DEFAULT_MAX_EXPORT_RECORDS: u64 = 100_000;

impl Default for Settings {
    fn default() -> Self {
        Self {
            identity: MANAGER.to_owned(),
            digester: None,
            namespace: None,
            lease_namespace: None,
            metrics: Arc::default(),
            erasure_retry: erasure::RETRY,
            signer: None,
            sink: None,
            max_concurrent_runs: DEFAULT_MAX_CONCURRENT_RUNS,
            allowed_roots: Vec::new(),
            max_erasure_records: DEFAULT_MAX_ERASURE_RECORDS,
            export: None,
            max_export_records: DEFAULT_MAX_EXPORT_RECORDS,
        }
    }
}

/// The Lease that elects the one instance that reconciles and deletes.
pub const LEASE: &str = "delenda-controller";

/// Runs every controller until `shutdown` resolves. With a lease namespace,
/// waits to be elected first, and stops when the lease is lost: only the
/// leader deletes, and every batch first checks, by the process's own
/// monotonic clock, that the lease is still held with margin. Shutdown and
/// a lost lease cancel the runs in flight between batches; they end
/// `Interrupted`. Returns whether it stopped because leadership was lost.
pub async fn run(
    client: Client,
    settings: Settings,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> bool {
    let cancel = CancellationToken::new();
    let stopping = CancellationToken::new();
    {
        let (cancel, stopping) = (cancel.clone(), stopping.clone());
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!("shutting down: runs in flight stop after their batch");
            stopping.cancel();
            cancel.cancel();
        });
    }

    let mut election = None;
    let fence = match &settings.lease_namespace {
        Some(lease_ns) => {
            let config = lease::LeaseConfig::new(LEASE, lease_ns, &settings.identity);
            let started = lease::Election::start(client.clone(), config);
            let mut leading = started.leading.clone();
            tracing::info!(identity = %settings.identity, lease = LEASE, namespace = %lease_ns, "waiting to be elected");
            let elected = tokio::select! {
                elected = leading.wait_for(|l| *l) => elected.is_ok(),
                _ = stopping.cancelled() => false,
            };
            if !elected {
                started.stop().await;
                return false;
            }
            tracing::info!(identity = %settings.identity, "elected leader: reconciling");
            settings.metrics.set_leader(true);
            let fence = started.fence.clone();
            let (cancel, metrics) = (cancel.clone(), settings.metrics.clone());
            let watcher = tokio::spawn(async move {
                let lost = leading.wait_for(|l| !*l).await.is_ok();
                if lost {
                    tracing::warn!("lost the leader lease: stopping all work");
                    metrics.set_leader(false);
                    cancel.cancel();
                }
                lost
            });
            election = Some((started, watcher));
            fence
        }
        None => lease::Fence::always(),
    };

    let ctx = Context::new(client, &settings, cancel.clone(), stopping.clone(), fence);
    let trimmer = tokio::spawn(trim_memory(cancel.clone()));
    tokio::join!(
        datastore::run(ctx.clone(), cancel.clone()),
        policy::run(ctx.clone(), cancel.clone()),
        erasure::run(ctx.clone(), cancel.clone()),
        hold::run(ctx.clone(), cancel.clone()),
        access::run(ctx, cancel.clone()),
    );
    // The controllers stopped: their caches no longer follow the cluster.
    settings.metrics.unwatch();
    trimmer.abort();
    match election {
        Some((started, watcher)) => {
            let lost = !stopping.is_cancelled();
            watcher.abort();
            settings.metrics.set_leader(false);
            started.stop().await;
            lost
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slim_strips_managed_fields_and_the_last_applied_copy_and_keeps_the_rest() {
        let mut policy: crate::api::RetentionPolicy = serde_json::from_value(serde_json::json!({
            "apiVersion": "delenda.dev/v1alpha1", "kind": "RetentionPolicy",
            "metadata": {"name": "p", "namespace": "shop", "generation": 3, "uid": "u",
                "labels": {"delenda.dev/row": "1"},
                "annotations": {LAST_APPLIED: "{\"spec\":{}}", "delenda.dev/run-now": "t1"},
                "managedFields": [{"manager": "kubectl", "operation": "Update", "apiVersion": "delenda.dev/v1alpha1",
                    "fieldsType": "FieldsV1", "fieldsV1": {"f:spec": {"f:mode": {}}}}]},
            "spec": {"category": "c", "description": "d", "responsibleParty": "self", "legalBasis": "Contract",
                "retention": {"period": "30d"}, "schedule": {"cron": "0 3 * * *"},
                "targets": [{"name": "t", "dataStoreRef": {"name": "db"}, "table": {"name": "x", "timeColumn": "at"}}]}}))
        .unwrap();
        let whole = policy.clone();
        slim(&mut policy);
        assert!(policy.metadata.managed_fields.as_ref().is_none_or(Vec::is_empty));
        let annotations = policy.metadata.annotations.clone().unwrap();
        assert!(!annotations.contains_key(LAST_APPLIED));
        assert_eq!(annotations.get(policy::RUN_NOW).map(String::as_str), Some("t1"));
        assert_eq!(policy.metadata.labels, whole.metadata.labels);
        assert_eq!((policy.metadata.generation, policy.metadata.uid.clone()), (Some(3), Some("u".to_owned())));
        assert_eq!(serde_json::to_value(&policy.spec).unwrap(), serde_json::to_value(&whole.spec).unwrap());
        // Annotations that held only the last applied copy go whole.
        let mut applied = whole.clone();
        applied.metadata.annotations.as_mut().unwrap().remove(policy::RUN_NOW);
        slim(&mut applied);
        assert_eq!((applied.metadata.annotations, applied.metadata.managed_fields), (None, None));
    }

    #[test]
    fn an_unchanged_condition_keeps_its_transition_time() {
        let then: Timestamp = "2026-11-01T00:00:00Z".parse().unwrap();
        let now: Timestamp = "2026-11-28T00:00:00Z".parse().unwrap();
        let first = condition(&[], "Ready", true, "Probed", "ok", Some(1), then);
        let again = condition(std::slice::from_ref(&first), "Ready", true, "Probed", "ok", Some(1), now);
        assert_eq!(again, first);
        let flipped = condition(&[first], "Ready", false, "Unreachable", "down", Some(1), now);
        assert_eq!(flipped.last_transition_time, Time(now));
    }
}
