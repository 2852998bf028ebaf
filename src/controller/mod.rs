//! The operator: kube-runtime controllers for DataStores, RetentionPolicies
//! and ErasureRequests, thin glue between the API server and the engine.
//!
//! Status is written with server-side apply under one field manager and
//! carries no timestamps that change on every reconcile, so a reconcile that
//! changes nothing writes nothing new.

pub mod datastore;
pub mod erasure;
pub mod evidence;
pub mod policy;

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::api::{Patch, PatchParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;

use crate::api::DataStore;
use crate::engine::connect::{self, ConnectError, Credentials, StoreHandle};
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
}

impl Context {
    /// A context for a client.
    pub fn new(client: Client, settings: &Settings) -> Arc<Self> {
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
        })
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
pub async fn apply_status<K, S>(client: &Client, obj: &K, status: &S) -> Result<(), kube::Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    S: Serialize,
{
    let api: Api<K> = Api::namespaced(client.clone(), &obj.namespace().unwrap_or_default());
    let patch = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(&obj.name_any(), &PatchParams::apply(MANAGER).force(), &Patch::Apply(&patch)).await?;
    Ok(())
}

/// Reads a Secret's data.
pub async fn read_secret(client: &Client, namespace: &str, name: &str) -> Result<Credentials, Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = api.get_opt(name).await?.ok_or_else(|| Error::NotFound {
        kind: "Secret",
        namespace: namespace.into(),
        name: name.into(),
    })?;
    let data: BTreeMap<String, Vec<u8>> = secret.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect();
    Ok(Credentials::new(name, data))
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

/// A client for the DataStore `name` in `namespace`, with its credentials
/// and limits.
pub async fn store_client(client: &Client, namespace: &str, name: &str) -> Result<StoreHandle, Error> {
    let api: Api<DataStore> = Api::namespaced(client.clone(), namespace);
    let store = api.get_opt(name).await?.ok_or_else(|| Error::NotFound {
        kind: "DataStore",
        namespace: namespace.into(),
        name: name.into(),
    })?;
    let credentials = match credentials_secret(&store) {
        Some(secret) => Some(read_secret(client, namespace, secret).await?),
        None => None,
    };
    Ok(connect::connect(&store.spec, credentials.as_ref())?)
}

/// Purge options for one DataStore: the mode, and the store's rate limit.
pub fn purge_options(mode: crate::api::Mode, rate: Option<u32>) -> crate::stores::PurgeOptions {
    let mut options = crate::stores::PurgeOptions::new(mode);
    options.max_records_per_second = rate;
    options
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
}

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
        }
    }
}

/// The Lease that elects the one instance that reconciles and deletes.
pub const LEASE: &str = "delenda-controller";

/// Runs every controller until `shutdown` resolves. With a lease namespace,
/// waits to be elected first, and stops when the lease is lost: only the
/// leader deletes. Returns whether it stopped because leadership was lost.
pub async fn run(
    client: Client,
    settings: Settings,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) -> bool {
    let (tx, rx) = tokio::sync::watch::channel(false);
    let stop = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let shutdown_tx = tx.clone();
    tokio::spawn(async move {
        shutdown.await;
        let _ = shutdown_tx.send(true);
    });

    let mut leadership = None;
    if let Some(lease_ns) = &settings.lease_namespace {
        let manager = kube_lease_manager::LeaseManagerBuilder::new(client.clone(), LEASE)
            .with_namespace(lease_ns.clone())
            .with_identity(settings.identity.clone())
            .with_duration(15)
            .with_grace(5)
            .build()
            .await;
        let manager = match manager {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(error = %e, "cannot set up leader election");
                return false;
            }
        };
        let (mut leader, task) = manager.watch().await;
        tracing::info!(identity = %settings.identity, lease = LEASE, namespace = %lease_ns, "waiting to be elected");
        let mut stopping = rx.clone();
        let elected = tokio::select! {
            elected = leader.wait_for(|l| *l) => elected.is_ok(),
            _ = stopping.wait_for(|s| *s) => false,
        };
        if !elected {
            // Closing the channel makes the manager release the lease.
            drop(leader);
            let _ = task.await;
            return false;
        }
        tracing::info!(identity = %settings.identity, "elected leader: reconciling");
        settings.metrics.set_leader(true);
        let lost_tx = tx.clone();
        let mut watch_leader = leader.clone();
        let metrics = settings.metrics.clone();
        let lost = tokio::spawn(async move {
            let lost = watch_leader.wait_for(|l| !*l).await.is_ok();
            if lost {
                tracing::warn!("lost the leader lease: stopping all work");
                metrics.set_leader(false);
                let _ = lost_tx.send(true);
            }
            lost
        });
        leadership = Some((leader, task, lost));
    }

    let ctx = Context::new(client, &settings);
    tokio::join!(
        datastore::run(ctx.clone(), stop(rx.clone())),
        policy::run(ctx.clone(), stop(rx.clone())),
        erasure::run(ctx, stop(rx)),
    );
    match leadership {
        Some((leader, task, lost)) => {
            lost.abort();
            let lost = !*leader.borrow();
            settings.metrics.set_leader(false);
            drop(leader);
            let _ = task.await;
            lost
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
