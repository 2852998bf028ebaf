//! Prometheus metrics.
//!
//! Two sorts:
//! - counters and a histogram the controllers update as runs finish (their
//!   labels are of low cardinality: outcomes, modes, store types);
//! - gauges computed at scrape time from the objects the controllers watch
//!   (their reflector caches), so they are never stale: after a restart
//!   they say what the cluster says, not what this process happened to
//!   see. These carry the object's `namespace` and `name` (never an
//!   identity, which lives only in a Secret and in status as a keyed
//!   digest), so an alert names what to look at.
//!
//! Only the leader watches, so only the leader exports the object gauges;
//! every replica exports `delenda_leader`. Until a cache holds its first
//! full list, its gauges are absent rather than zero.

use std::sync::{Arc, RwLock};

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::ResourceExt;
use kube::runtime::reflector::Store;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::api::common::conditions::{COMPLIANT, EVIDENCE_STORED, READY};
use crate::api::erasure::ErasurePhase;
use crate::api::{DataStore, ErasureRequest, RetentionPolicy};

/// Labels of a run.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunLabels {
    /// Succeeded, Failed or Stopped.
    pub outcome: String,
    /// Enforce or DryRun.
    pub mode: String,
}

/// Labels naming a kind of store.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreLabels {
    /// postgres, mysql, sqlite, s3, opensearch or files.
    pub store_type: String,
}

/// Labels of a request to the Kubernetes API.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// get, list, watch, create, update, patch, delete or deletecollection.
    pub verb: String,
    /// The resource, with its subresource after a slash
    /// (`retentionpolicies/status`); never an object's name.
    pub resource: String,
}

impl RequestLabels {
    /// The labels of a request with `method` to `path` with `query`, the
    /// way the API server names them (`apiserver_request_total`).
    pub fn of(method: &str, path: &str, query: Option<&str>) -> Self {
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        // /api/v1/... or /apis/<group>/<version>/...
        let rest: &[&str] = match segments.as_slice() {
            ["api", _, rest @ ..] => rest,
            ["apis", _, _, rest @ ..] => rest,
            other => other,
        };
        // Namespaced: namespaces/<ns>/<resource>[/<name>[/<subresource>]];
        // a namespace itself is the resource `namespaces`.
        let rest = match rest {
            ["namespaces", _, resource, tail @ ..] => [&[*resource][..], tail].concat(),
            other => other.to_vec(),
        };
        let resource = match rest.as_slice() {
            [] => "other".to_owned(),
            [resource] | [resource, _] => (*resource).to_owned(),
            [resource, _, sub, ..] => format!("{resource}/{sub}"),
        };
        let named = rest.len() >= 2;
        let watch = query.is_some_and(|q| q.split('&').any(|kv| kv == "watch=true" || kv == "watch=1"));
        let verb = match method {
            "GET" if watch => "watch",
            "GET" if named => "get",
            "GET" => "list",
            "POST" => "create",
            "PUT" => "update",
            "PATCH" => "patch",
            "DELETE" if named => "delete",
            "DELETE" => "deletecollection",
            _ => "other",
        };
        Self { verb: verb.to_owned(), resource }
    }
}

/// The outcomes a run ends with, each a series of
/// `delenda_policy_last_run_outcome`.
pub const OUTCOMES: [&str; 4] = ["Succeeded", "Failed", "Stopped", "Interrupted"];

/// The phases of erasure requests, each a series of `delenda_erasure_requests`.
pub const PHASES: [&str; 5] = ["Pending", "InProgress", "Completed", "Previewed", "Failed"];

/// The reflector caches the gauges are computed from; each is set once its
/// controller's first list is in, and cleared when the controllers stop.
#[derive(Default)]
pub struct Watched {
    datastores: RwLock<Option<Store<DataStore>>>,
    policies: RwLock<Option<Store<RetentionPolicy>>>,
    requests: RwLock<Option<Store<ErasureRequest>>>,
}

impl std::fmt::Debug for Watched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Watched")
    }
}

/// The objects as a scrape sees them.
#[derive(Default, Clone, Debug)]
pub struct Objects {
    /// The DataStores, or `None` while not watched.
    pub datastores: Option<Vec<Arc<DataStore>>>,
    /// The RetentionPolicies, or `None` while not watched.
    pub policies: Option<Vec<Arc<RetentionPolicy>>>,
    /// The ErasureRequests, or `None` while not watched.
    pub requests: Option<Vec<Arc<ErasureRequest>>>,
}

impl Watched {
    fn objects(&self) -> Objects {
        fn state<K>(slot: &RwLock<Option<Store<K>>>) -> Option<Vec<Arc<K>>>
        where
            K: kube::Resource<DynamicType = ()> + Clone + 'static,
        {
            slot.read().expect("metrics lock").as_ref().map(Store::state)
        }
        Objects {
            datastores: state(&self.datastores),
            policies: state(&self.policies),
            requests: state(&self.requests),
        }
    }
}

/// Every metric the operator exports.
pub struct Metrics {
    registry: Registry,
    runs: Family<RunLabels, Counter>,
    deleted: Family<StoreLabels, Counter>,
    run_duration: Histogram,
    leader: Gauge,
    requests: Family<RequestLabels, Counter>,
    watched: Arc<Watched>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("delenda");
        let runs = Family::<RunLabels, Counter>::default();
        let deleted = Family::<StoreLabels, Counter>::default();
        let run_duration = Histogram::new(exponential_buckets(0.05, 2.0, 16));
        let leader = Gauge::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let watched = Arc::new(Watched::default());
        // The `_total` suffix is added by the library (registering it by
        // hand panics in debug builds).
        registry.register("policy_runs", "Finished RetentionPolicy runs", runs.clone());
        registry.register("records_deleted", "Records deleted, by store type", deleted.clone());
        registry.register("policy_run_duration_seconds", "Duration of RetentionPolicy runs", run_duration.clone());
        registry.register("leader", "1 while this instance holds the leader lease", leader.clone());
        registry.register(
            "kubernetes_requests",
            "Requests this process sent to the Kubernetes API, by verb and resource (a watch counts once, when it starts)",
            requests.clone(),
        );
        registry.register_collector(Box::new(ObjectGauges { source: Source::Watched(watched.clone()) }));
        Self { registry, runs, deleted, run_duration, leader, requests, watched }
    }

    /// Records a finished run.
    pub fn run_finished(&self, outcome: &str, mode: &str, seconds: f64, deleted_by_store: &[(&str, u64)]) {
        self.runs.get_or_create(&RunLabels { outcome: outcome.into(), mode: mode.into() }).inc();
        self.run_duration.observe(seconds);
        for (store_type, n) in deleted_by_store {
            self.deleted.get_or_create(&StoreLabels { store_type: (*store_type).into() }).inc_by(*n);
        }
    }

    /// Counts a request to the Kubernetes API.
    pub fn kubernetes_request(&self, method: &::http::Method, uri: &::http::Uri) {
        self.requests.get_or_create(&RequestLabels::of(method.as_str(), uri.path(), uri.query())).inc();
    }

    /// A Kubernetes client for `config` whose every request is counted in
    /// `delenda_kubernetes_requests_total`, and whose idle connections are
    /// few and short-lived ([`ApiPool::default`]).
    pub fn counted_client(self: &Arc<Self>, config: kube::Config) -> Result<kube::Client, kube::Error> {
        let metrics = self.clone();
        api_client(config, ApiPool::default(), move |request: &::http::Request<kube::client::Body>| {
            metrics.kubernetes_request(request.method(), request.uri());
        })
    }

    /// Records whether this instance leads.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// Computes the DataStore gauges from `store` from now on.
    pub fn watch_datastores(&self, store: Store<DataStore>) {
        *self.watched.datastores.write().expect("metrics lock") = Some(store);
    }

    /// Computes the RetentionPolicy gauges from `store` from now on.
    pub fn watch_policies(&self, store: Store<RetentionPolicy>) {
        *self.watched.policies.write().expect("metrics lock") = Some(store);
    }

    /// Computes the ErasureRequest gauges from `store` from now on.
    pub fn watch_requests(&self, store: Store<ErasureRequest>) {
        *self.watched.requests.write().expect("metrics lock") = Some(store);
    }

    /// Forgets every cache: the controllers stopped (shutdown or a lost
    /// lease), so this instance no longer speaks for the objects.
    pub fn unwatch(&self) {
        *self.watched.datastores.write().expect("metrics lock") = None;
        *self.watched.policies.write().expect("metrics lock") = None;
        *self.watched.requests.write().expect("metrics lock") = None;
    }

    /// The metrics in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

/// The collector of the object gauges.
#[derive(Debug)]
struct ObjectGauges {
    source: Source,
}

/// Where the collector reads the objects.
#[derive(Debug)]
enum Source {
    /// The controllers' caches, at the scrape's time.
    Watched(Arc<Watched>),
    /// Fixed objects at a fixed time (tests).
    Fixed(Objects, Timestamp),
}

type Labels = Vec<(&'static str, String)>;
type FloatGauge = Gauge<f64, std::sync::atomic::AtomicU64>;

/// One gauge family being filled.
struct Gauges {
    name: &'static str,
    help: &'static str,
    family: Family<Labels, FloatGauge>,
}

impl Gauges {
    fn new(name: &'static str, help: &'static str) -> Self {
        Self { name, help, family: Family::default() }
    }

    fn set(&self, labels: Labels, value: f64) {
        self.family.get_or_create(&labels).set(value);
    }

    fn encode(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let metric = encoder.encode_descriptor(self.name, self.help, None, self.family.metric_type())?;
        self.family.encode(metric)
    }
}

fn object(namespace: Option<String>, name: String) -> Labels {
    vec![("namespace", namespace.unwrap_or_default()), ("name", name)]
}

fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

fn seconds(t: Timestamp) -> f64 {
    t.as_millisecond() as f64 / 1000.0
}

/// The start of a run, from its id (`<unix seconds>-<uid>[~token]`): the
/// history keeps no times of its own.
fn started_at(run_id: &str) -> Option<f64> {
    run_id.split('-').next()?.parse::<i64>().ok().map(|s| s as f64)
}

/// Every object gauge, computed from `objects` at `now`. A kind not watched
/// (a follower, a cache still listing) exports its families empty.
fn gauges(objects: &Objects, now: Timestamp) -> Vec<Gauges> {
    let mut out = Vec::new();

    // ErasureRequests.
    let phases = Gauges::new("erasure_requests", "ErasureRequests by phase");
    let overdue = Gauges::new("erasure_requests_overdue", "ErasureRequests past their deadline and not completed");
    let nearest = Gauges::new(
        "erasure_seconds_to_nearest_deadline",
        "Seconds until the nearest deadline of an ErasureRequest that is not completed (negative when overdue; 0 when none is open)",
    );
    let deadlines = Gauges::new(
        "erasure_request_deadline_timestamp_seconds",
        "Deadline (Unix time) of each ErasureRequest not yet Completed or Previewed, by namespace and name",
    );
    if let Some(requests) = &objects.requests {
        let mut counts = [0u32; PHASES.len()];
        let mut open = Vec::new();
        for request in requests {
            let status = request.status.clone().unwrap_or_default();
            let phase = status.phase.unwrap_or(ErasurePhase::Pending);
            let word = match phase {
                ErasurePhase::Pending => "Pending",
                ErasurePhase::InProgress => "InProgress",
                ErasurePhase::Completed => "Completed",
                ErasurePhase::Previewed => "Previewed",
                ErasurePhase::Failed => "Failed",
            };
            if let Some(i) = PHASES.iter().position(|p| *p == word) {
                counts[i] += 1;
            }
            if matches!(phase, ErasurePhase::Completed | ErasurePhase::Previewed) {
                continue;
            }
            let deadline = crate::plan::erasure::deadline(request.spec.received_at.0);
            deadlines.set(object(request.namespace(), request.name_any()), seconds(deadline));
            open.push(deadline);
        }
        for (phase, n) in PHASES.iter().zip(counts) {
            phases.set(vec![("phase", (*phase).to_owned())], f64::from(n));
        }
        overdue.set(vec![], open.iter().filter(|d| **d < now).count() as f64);
        let soonest = open.iter().min().map(|d| d.duration_since(now).as_secs()).unwrap_or(0);
        nearest.set(vec![], soonest as f64);
    }
    out.extend([phases, overdue, nearest, deadlines]);

    // RetentionPolicies.
    let outcome = Gauges::new(
        "policy_last_run_outcome",
        "1 for the outcome of each RetentionPolicy's last finished run (Succeeded, Failed, Stopped by a guardrail, Interrupted), 0 for the others",
    );
    let last_run = Gauges::new(
        "policy_last_run_timestamp_seconds",
        "When each RetentionPolicy's last finished run ended (Unix time)",
    );
    let last_success = Gauges::new(
        "policy_last_success_timestamp_seconds",
        "When each RetentionPolicy's newest Succeeded run among those kept in status (the last and ten before it) ended, or, for one before the last, started (Unix time)",
    );
    let failures = Gauges::new(
        "policy_consecutive_failed_runs",
        "Failed runs in a row, newest first, of each RetentionPolicy (at most the ten kept in status)",
    );
    let compliant = Gauges::new(
        "policy_compliant",
        "1 when the RetentionPolicy's Compliant condition is True (the last run read back nothing past its cutoff), 0 when False or Unknown; absent before the first run",
    );
    let remaining = Gauges::new(
        "policy_records_remaining",
        "Records past the cutoff that the last run's read-back still found, over the targets that could count them",
    );
    let unreadable = Gauges::new(
        "policy_records_unreadable",
        "Records the last run could not judge and kept (fail closed), over all targets",
    );
    let deleted_last =
        Gauges::new("policy_last_run_records_deleted", "Records the last finished run of each RetentionPolicy deleted");
    let next_run = Gauges::new("policy_next_run_timestamp_seconds", "When each RetentionPolicy runs next (Unix time)");
    if let Some(policies) = &objects.policies {
        for policy in policies {
            let labels = object(policy.namespace(), policy.name_any());
            let Some(status) = &policy.status else { continue };
            if let Some(next) = &status.next_run {
                next_run.set(labels.clone(), seconds(next.0));
            }
            if let Some(c) = find(&status.conditions, COMPLIANT) {
                compliant.set(labels.clone(), if c.status == "True" { 1.0 } else { 0.0 });
            }
            failures.set(labels.clone(), status.history.iter().take_while(|r| r.outcome == "Failed").count() as f64);
            let Some(run) = &status.last_run else { continue };
            let ended = run.finished_at.as_ref().map(|t| seconds(t.0));
            let said = run.outcome.as_deref().unwrap_or_default();
            for o in OUTCOMES {
                let mut l = labels.clone();
                l.push(("outcome", o.to_owned()));
                outcome.set(l, if said == o { 1.0 } else { 0.0 });
            }
            if let Some(ended) = ended {
                last_run.set(labels.clone(), ended);
            }
            let success = if said == "Succeeded" {
                ended
            } else {
                status.history.iter().skip(1).find(|r| r.outcome == "Succeeded").and_then(|r| started_at(&r.id))
            };
            if let Some(success) = success {
                last_success.set(labels.clone(), success);
            }
            let known: Vec<u64> = run.targets.iter().filter_map(|t| t.records.remaining).collect();
            if !known.is_empty() {
                remaining.set(labels.clone(), known.iter().sum::<u64>() as f64);
            }
            unreadable
                .set(labels.clone(), run.targets.iter().map(|t| t.records.unreadable_total()).sum::<u64>() as f64);
            deleted_last.set(labels, run.targets.iter().map(|t| t.records.deleted).sum::<u64>() as f64);
        }
    }
    out.extend([outcome, last_run, last_success, failures, compliant, remaining, unreadable, deleted_last, next_run]);

    // DataStores.
    let ready = Gauges::new(
        "datastore_ready",
        "1 when the DataStore's Ready condition is True (its last probe reached the store), 0 otherwise, by namespace, name and store type",
    );
    if let Some(stores) = &objects.datastores {
        for store in stores {
            let mut labels = object(store.namespace(), store.name_any());
            labels.push(("store_type", store.spec.store_type().unwrap_or_default().to_owned()));
            let ok = store.status.as_ref().and_then(|s| find(&s.conditions, READY)).is_some_and(|c| c.status == "True");
            ready.set(labels, if ok { 1.0 } else { 0.0 });
        }
    }
    out.push(ready);

    // Evidence: the EvidenceStored condition of policies and requests.
    let stored = Gauges::new(
        "evidence_stored",
        "1 when the object's EvidenceStored condition is True (its last evidence is in the cluster's chain and, with a sink, locked there), 0 when not; by kind, namespace and name (ErasureRequests until they are Completed or Previewed)",
    );
    let evidence = |kind: &str, namespace: Option<String>, name: String, conditions: &[Condition]| {
        if let Some(c) = find(conditions, EVIDENCE_STORED) {
            let mut labels = object(namespace, name);
            labels.push(("kind", kind.to_owned()));
            stored.set(labels, if c.status == "True" { 1.0 } else { 0.0 });
        }
    };
    for policy in objects.policies.iter().flatten() {
        let conditions = policy.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default();
        evidence("RetentionPolicy", policy.namespace(), policy.name_any(), conditions);
    }
    // A finished request's evidence is stored (it finishes only then): one
    // series per request ever filed would grow without end.
    let open = |r: &&Arc<ErasureRequest>| {
        !matches!(r.status.as_ref().and_then(|s| s.phase), Some(ErasurePhase::Completed | ErasurePhase::Previewed))
    };
    for request in objects.requests.iter().flatten().filter(open) {
        let conditions = request.status.as_ref().map(|s| s.conditions.as_slice()).unwrap_or_default();
        evidence("ErasureRequest", request.namespace(), request.name_any(), conditions);
    }
    out.push(stored);
    out
}

impl Collector for ObjectGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (objects, now) = match &self.source {
            Source::Watched(watched) => (watched.objects(), Timestamp::now()),
            Source::Fixed(objects, now) => (objects.clone(), *now),
        };
        for family in gauges(&objects, now) {
            family.encode(&mut encoder)?;
        }
        Ok(())
    }
}

/// The object gauges of `objects` at `now` in the text format, as a scrape
/// would see them (for tests of the computation).
pub fn encode_objects(objects: Objects, now: Timestamp) -> String {
    let mut registry = Registry::with_prefix("delenda");
    registry.register_collector(Box::new(ObjectGauges { source: Source::Fixed(objects, now) }));
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &registry).expect("writing to a String cannot fail");
    out
}

/// The idle connections a client keeps to the API server. The controllers
/// send bursts (a start reconciles up to 64 policies at once over
/// HTTP/1.1, a connection each); hyper keeps every connection of a burst
/// open for 90 s by default, connections the API server holds for nothing
/// at rest. A handful, briefly, covers the steady traffic (lease renewals,
/// status writes). (Measured: the operator's resident memory with 5,000
/// policies did not change with it; docs/performance.md.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApiPool {
    /// Idle connections kept for reuse; more are closed when their
    /// request is done.
    pub max_idle: usize,
    /// How long an idle connection is kept.
    pub idle_timeout: std::time::Duration,
}

impl Default for ApiPool {
    fn default() -> Self {
        Self { max_idle: 4, idle_timeout: std::time::Duration::from_secs(15) }
    }
}

/// A Kubernetes client for `config` that calls `on_request` with every
/// request it sends: the stack `kube`'s `ClientBuilder` builds (TLS from
/// the config, connect, read and write timeouts, base URI, retries of
/// server errors, authentication, extra headers), but with an idle pool
/// as `pool` says, which kube's builder cannot set. kube's per-request
/// `HTTP` debug spans are left out: the operator logs what its requests
/// failed with where it handles them. A config that needs
/// what only kube's builder does (a proxy; an exec plugin, whose client
/// certificate may expire) gets kube's builder, with its default pool.
pub fn api_client<F>(config: kube::Config, pool: ApiPool, on_request: F) -> Result<kube::Client, kube::Error>
where
    F: Fn(&::http::Request<kube::client::Body>) + Clone + Send + Sync + 'static,
{
    use kube::client::ConfigExt as _;
    use tower::ServiceBuilder;

    let layer = tower::util::MapRequestLayer::new(move |request: ::http::Request<kube::client::Body>| {
        on_request(&request);
        request
    });
    if config.proxy_url.is_some() || config.auth_info.exec.is_some() {
        return Ok(kube::client::ClientBuilder::try_from(config)?.with_layer(&layer).build());
    }
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Set only when none is: another one installed meanwhile is as good.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    }
    let mut http = hyper_util::client::legacy::connect::HttpConnector::new();
    http.enforce_http(false);
    let mut connector = hyper_timeout::TimeoutConnector::new(config.rustls_https_connector_with_connector(http)?);
    connector.set_connect_timeout(config.connect_timeout);
    connector.set_read_timeout(config.read_timeout);
    connector.set_write_timeout(config.write_timeout);
    connector.set_reset_reader_on_write(config.reset_reader_on_write);
    let hyper = hyper_util::client::legacy::Builder::new(hyper_util::rt::TokioExecutor::new())
        .pool_max_idle_per_host(pool.max_idle)
        .pool_idle_timeout(pool.idle_timeout)
        .pool_timer(hyper_util::rt::TokioTimer::new())
        .build(connector);
    let retry =
        config.default_retry.then(|| tower::retry::RetryLayer::new(kube::client::retry::RetryPolicy::server_retry()));
    let service = ServiceBuilder::new()
        .layer(layer)
        .layer(config.base_uri_layer())
        .option_layer(retry)
        .option_layer(config.auth_layer()?)
        .layer(config.extra_headers_layer()?)
        .map_err(tower::BoxError::from)
        .service(hyper);
    Ok(kube::Client::new(service, config.default_namespace))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn request(name: &str, received: &str, phase: Option<&str>) -> Arc<ErasureRequest> {
        let mut value = serde_json::json!({"apiVersion": "delenda.dev/v1alpha1", "kind": "ErasureRequest",
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {"identitySecretRef": {"name": "s"}, "ground": "ConsentWithdrawn", "receivedAt": received,
                "identityVerification": {"verifiedBy": "privacy-office", "method": "IdentityDocument"}}});
        if let Some(phase) = phase {
            value["status"] = serde_json::json!({"phase": phase,
                "conditions": [{"type": "EvidenceStored", "status": if phase == "Completed" { "True" } else { "False" },
                    "reason": "r", "message": "", "lastTransitionTime": "2026-11-01T00:00:00Z"}]});
        }
        Arc::new(serde_json::from_value(value).unwrap())
    }

    fn policy(name: &str, status: serde_json::Value) -> Arc<RetentionPolicy> {
        Arc::new(
            serde_json::from_value(serde_json::json!({"apiVersion": "delenda.dev/v1alpha1", "kind": "RetentionPolicy",
                "metadata": {"name": name, "namespace": "shop"},
                "spec": {"category": "c", "description": "d", "responsibleParty": "self", "legalBasis": "Contract",
                    "retention": {"period": "30d"}, "schedule": {"cron": "0 3 * * *"},
                    "targets": [{"name": "t", "dataStoreRef": {"name": "db"}, "table": {"name": "x", "timeColumn": "at"}}]},
                "status": status}))
            .unwrap(),
        )
    }

    fn run(id: &str, outcome: &str, finished: &str, deleted: u64, remaining: Option<u64>) -> serde_json::Value {
        let mut records = serde_json::json!({"matched": deleted, "deleted": deleted});
        if let Some(r) = remaining {
            records["remaining"] = r.into();
        }
        serde_json::json!({"id": id, "cutoff": "2026-10-01T00:00:00.000000000Z", "mode": "Enforce",
            "startedAt": "2026-11-27T23:59:00Z", "finishedAt": finished, "outcome": outcome,
            "targets": [{"name": "t", "records": records}]})
    }

    fn summary(id: &str, outcome: &str) -> serde_json::Value {
        serde_json::json!({"id": id, "cutoff": "2026-10-01T00:00:00.000000000Z", "outcome": outcome, "deleted": 0})
    }

    fn condition(type_: &str, status: &str) -> serde_json::Value {
        serde_json::json!({"type": type_, "status": status, "reason": "r", "message": "",
            "lastTransitionTime": "2026-11-01T00:00:00Z"})
    }

    fn datastore(name: &str, ready: Option<&str>) -> Arc<DataStore> {
        let mut value = serde_json::json!({"apiVersion": "delenda.dev/v1alpha1", "kind": "DataStore",
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {"postgres": {"host": "db", "database": "shop", "credentialsSecret": {"name": "c"}}}});
        if let Some(ready) = ready {
            value["status"] = serde_json::json!({"conditions": [condition("Ready", ready)]});
        }
        Arc::new(serde_json::from_value(value).unwrap())
    }

    fn line(text: &str, prefix: &str) -> Option<f64> {
        text.lines()
            .find(|l| l.starts_with(prefix) && l[prefix.len()..].starts_with(' '))
            .map(|l| l.rsplit_once(' ').unwrap().1.parse().unwrap())
    }

    #[test]
    fn requests_are_labelled_by_verb_and_resource_never_by_name() {
        let of = |m: &str, p: &str, q: Option<&str>| {
            let l = RequestLabels::of(m, p, q);
            format!("{} {}", l.verb, l.resource)
        };
        let ns = "/apis/delenda.dev/v1alpha1/namespaces/shop";
        assert_eq!(of("GET", &format!("{ns}/retentionpolicies"), Some("limit=500")), "list retentionpolicies");
        assert_eq!(
            of("GET", &format!("{ns}/retentionpolicies"), Some("watch=true&resourceVersion=9&timeoutSeconds=290")),
            "watch retentionpolicies"
        );
        assert_eq!(of("GET", &format!("{ns}/retentionpolicies/row-1"), None), "get retentionpolicies");
        assert_eq!(
            of("PATCH", &format!("{ns}/retentionpolicies/row-1/status"), Some("fieldManager=x&force=true")),
            "patch retentionpolicies/status"
        );
        assert_eq!(of("GET", "/api/v1/namespaces/shop/secrets/db", None), "get secrets");
        assert_eq!(of("PUT", "/apis/coordination.k8s.io/v1/namespaces/shop/leases/l", None), "update leases");
        assert_eq!(of("POST", "/apis/events.k8s.io/v1/namespaces/shop/events", None), "create events");
        assert_eq!(of("DELETE", &format!("{ns}/retentionpolicies"), None), "deletecollection retentionpolicies");
        assert_eq!(of("DELETE", &format!("{ns}/retentionpolicies/row-1"), None), "delete retentionpolicies");
        assert_eq!(of("GET", "/api/v1/namespaces/shop", None), "get namespaces");
        assert_eq!(
            of("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/x.delenda.dev", None),
            "get customresourcedefinitions"
        );
        assert_eq!(of("GET", "/version", None), "list version");
        let m = Metrics::new();
        m.kubernetes_request(&http::Method::GET, &"/api/v1/namespaces/shop/secrets/db".parse().unwrap());
        m.kubernetes_request(&http::Method::GET, &"/api/v1/namespaces/shop/secrets/other".parse().unwrap());
        let text = m.encode();
        assert_eq!(line(&text, r#"delenda_kubernetes_requests_total{verb="get",resource="secrets"}"#), Some(2.0));
        assert!(!text.contains("shop") && !text.contains("\"db\""), "{text}");
    }

    #[test]
    fn runs_and_deletes_are_counted_by_low_cardinality_labels() {
        let m = Metrics::new();
        m.run_finished("Succeeded", "Enforce", 1.5, &[("postgres", 120), ("s3", 4)]);
        m.run_finished("Succeeded", "Enforce", 0.5, &[("postgres", 5)]);
        let text = m.encode();
        assert!(text.contains(r#"delenda_policy_runs_total{outcome="Succeeded",mode="Enforce"} 2"#), "{text}");
        assert!(text.contains(r#"delenda_records_deleted_total{store_type="postgres"} 125"#), "{text}");
        assert!(text.contains("delenda_policy_run_duration_seconds_count 2"), "{text}");
    }

    #[test]
    fn erasure_gauges_are_computed_from_the_requests_at_scrape_time() {
        let objects = Objects {
            requests: Some(vec![
                request("late", "2026-10-20T00:00:00Z", Some("Failed")),
                request("soon", "2026-11-01T12:00:00Z", Some("InProgress")),
                request("new", "2026-11-27T00:00:00Z", None),
                request("done", "2026-09-01T00:00:00Z", Some("Completed")),
            ]),
            ..Objects::default()
        };
        let text = encode_objects(objects.clone(), at("2026-11-28T00:00:00Z"));
        let deadline = |name: &str| {
            line(
                &text,
                &format!(r#"delenda_erasure_request_deadline_timestamp_seconds{{namespace="shop",name="{name}"}}"#),
            )
        };
        // One calendar month after receipt.
        assert_eq!(deadline("late"), Some(at("2026-11-20T00:00:00Z").as_second() as f64), "{text}");
        assert_eq!(deadline("soon"), Some(at("2026-12-01T12:00:00Z").as_second() as f64));
        assert_eq!(deadline("new"), Some(at("2026-12-27T00:00:00Z").as_second() as f64), "no status yet");
        assert_eq!(deadline("done"), None, "a completed request has no deadline left");
        assert_eq!(line(&text, "delenda_erasure_requests_overdue"), Some(1.0));
        assert_eq!(line(&text, "delenda_erasure_seconds_to_nearest_deadline"), Some(-8.0 * 86400.0));
        assert_eq!(line(&text, r#"delenda_erasure_requests{phase="Pending"}"#), Some(1.0));
        assert_eq!(line(&text, r#"delenda_erasure_requests{phase="Completed"}"#), Some(1.0));
        assert_eq!(line(&text, r#"delenda_erasure_requests{phase="Previewed"}"#), Some(0.0), "every phase, zero too");
        assert_eq!(
            line(&text, r#"delenda_evidence_stored{namespace="shop",name="late",kind="ErasureRequest"}"#),
            Some(0.0)
        );
        assert_eq!(
            line(&text, r#"delenda_evidence_stored{namespace="shop",name="done",kind="ErasureRequest"}"#),
            None,
            "a completed request's evidence is stored: no series for each request ever filed"
        );
        // Later, without anything changing but the clock: never stale.
        let later = encode_objects(objects, at("2026-12-02T00:00:00Z"));
        assert_eq!(line(&later, "delenda_erasure_requests_overdue"), Some(2.0), "{later}");
    }

    #[test]
    fn policy_gauges_say_how_the_last_run_ended_and_when_one_last_succeeded() {
        let failing = policy(
            "failing",
            serde_json::json!({
                "lastRun": run("1764374400-abcdefgh", "Failed", "2026-11-29T00:01:00Z", 0, None),
                "history": [summary("1764374400-abcdefgh", "Failed"), summary("1764288000-abcdefgh", "Failed"),
                    summary("1764201600-abcdefgh~t1", "Succeeded"), summary("1764115200-abcdefgh", "Failed")],
                "conditions": [condition("Compliant", "False"), condition("EvidenceStored", "True")]}),
        );
        let fine = policy(
            "fine",
            serde_json::json!({
                "nextRun": "2026-11-30T03:00:00Z",
                "lastRun": run("1764374400-bcdefghi", "Succeeded", "2026-11-29T00:02:00Z", 12, Some(0)),
                "history": [summary("1764374400-bcdefghi", "Succeeded")],
                "conditions": [condition("Compliant", "True"), condition("EvidenceStored", "True")]}),
        );
        let stopped = policy(
            "stopped",
            serde_json::json!({"lastRun": run("1764374400-cdefghij", "Stopped", "2026-11-29T00:03:00Z", 0, None),
                "history": [summary("1764374400-cdefghij", "Stopped")]}),
        );
        let never = policy("never", serde_json::Value::Null);
        let objects = Objects { policies: Some(vec![failing, fine, stopped, never]), ..Objects::default() };
        let text = encode_objects(objects, at("2026-11-29T01:00:00Z"));
        let get = |metric: &str, name: &str, extra: &str| {
            line(&text, &format!(r#"delenda_{metric}{{namespace="shop",name="{name}"{extra}}}"#))
        };
        assert_eq!(get("policy_last_run_outcome", "failing", r#",outcome="Failed""#), Some(1.0), "{text}");
        assert_eq!(get("policy_last_run_outcome", "failing", r#",outcome="Succeeded""#), Some(0.0));
        assert_eq!(get("policy_last_run_outcome", "stopped", r#",outcome="Stopped""#), Some(1.0));
        assert_eq!(get("policy_consecutive_failed_runs", "failing", ""), Some(2.0));
        assert_eq!(get("policy_consecutive_failed_runs", "fine", ""), Some(0.0));
        // The success before the last run: its start, from its id.
        assert_eq!(get("policy_last_success_timestamp_seconds", "failing", ""), Some(1764201600.0));
        assert_eq!(
            get("policy_last_success_timestamp_seconds", "fine", ""),
            Some(at("2026-11-29T00:02:00Z").as_second() as f64)
        );
        assert_eq!(get("policy_last_success_timestamp_seconds", "stopped", ""), None);
        assert_eq!(get("policy_compliant", "fine", ""), Some(1.0));
        assert_eq!(get("policy_compliant", "failing", ""), Some(0.0));
        assert_eq!(get("policy_compliant", "never", ""), None, "no verdict before the first run");
        assert_eq!(get("policy_records_remaining", "fine", ""), Some(0.0));
        assert_eq!(get("policy_records_remaining", "failing", ""), None, "nothing counted, nothing claimed");
        assert_eq!(get("policy_last_run_records_deleted", "fine", ""), Some(12.0));
        assert_eq!(
            get("policy_next_run_timestamp_seconds", "fine", ""),
            Some(at("2026-11-30T03:00:00Z").as_second() as f64)
        );
        assert_eq!(get("policy_last_run_outcome", "never", r#",outcome="Failed""#), None);
        assert_eq!(
            line(&text, r#"delenda_evidence_stored{namespace="shop",name="fine",kind="RetentionPolicy"}"#),
            Some(1.0)
        );
    }

    #[test]
    fn a_datastore_is_ready_only_when_its_ready_condition_is_true() {
        let objects = Objects {
            datastores: Some(vec![
                datastore("up", Some("True")),
                datastore("down", Some("False")),
                datastore("new", None),
            ]),
            ..Objects::default()
        };
        let text = encode_objects(objects, at("2026-11-29T00:00:00Z"));
        let ready = |name: &str| {
            line(&text, &format!(r#"delenda_datastore_ready{{namespace="shop",name="{name}",store_type="postgres"}}"#))
        };
        assert_eq!(ready("up"), Some(1.0), "{text}");
        assert_eq!(ready("down"), Some(0.0));
        assert_eq!(ready("new"), Some(0.0), "not probed yet is not Ready");
    }

    #[test]
    fn a_replica_that_watches_nothing_exports_no_object_gauges() {
        let m = Metrics::new();
        m.set_leader(false);
        let text = m.encode();
        assert!(text.contains("delenda_leader 0"), "{text}");
        for name in ["delenda_erasure_requests_overdue ", "delenda_datastore_ready{", "delenda_erasure_requests{"] {
            assert!(!text.lines().any(|l| l.starts_with(name)), "{name} without a cache to read:\n{text}");
        }
        // The families are described all the same.
        assert!(text.contains("# TYPE delenda_erasure_request_deadline_timestamp_seconds gauge"), "{text}");
    }
}
