//! The operator at rest (issue 13): the real `delenda controller` process
//! watching one namespace of the real kube-apiserver that holds one
//! PostgreSQL DataStore and N RetentionPolicies shaped like MvS-IT's
//! (examples/mvs-it), against the same operator over the same namespace
//! shape with no policy at all.
//!
//! Each side: a fresh namespace, the DataStore and its Secret, the policies
//! (created as `kubectl apply` creates them: with the
//! `kubectl.kubernetes.io/last-applied-configuration` annotation), then the
//! operator started on it. Once every policy carries the status the operator
//! wrote for it (Valid, Resolved, for this generation) and the operator has
//! sent no request but watches and lease renewals for a few seconds, its
//! requests are counted over an idle window (one minute at full scale) and
//! its resident memory (`VmRSS`, and the peak `VmHWM`) is read from
//! `/proc/<pid>/status`. The requests are the operator's own count
//! (`delenda_kubernetes_requests_total`, by verb and resource): the test
//! environment's API server is shared by every test running at the time,
//! so its `apiserver_request_total` is only reported beside it, as the
//! count of all its clients.
//!
//! No policy is due while it is measured (each is scheduled twelve hours
//! from now), so nothing is deleted; the table the policies name exists so
//! they resolve.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use delenda::api::{DataStore, RetentionPolicy};
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

use super::{Row, Scale};

/// The number of policies.
const FULL_POLICIES: u64 = 5_000;
/// The limit on resident memory with them, in MB (MiB).
pub const GOAL_MB: f64 = 64.0;
/// Requests in an idle minute the issue measured, besides watches: keep it.
pub const IDLE_OTHER_LIMIT: f64 = 5.0;

/// What one operator process did and held.
#[derive(Clone, Debug, Default)]
pub struct Figures {
    /// Policies in its namespace.
    pub policies: usize,
    /// Of them, those whose status the operator wrote (Valid for this generation).
    pub reconciled: usize,
    /// Of them, those whose target the operator found in its table (Valid,
    /// Resolved); the others were Valid, not yet checked in the store.
    pub resolved: usize,
    /// Seconds from the process's start until every policy was reconciled.
    pub reconciled_after: f64,
    /// Resident memory after the idle window, in kB (`VmRSS`).
    pub rss_kb: u64,
    /// The process's peak resident memory, in kB (`VmHWM`).
    pub hwm_kb: u64,
    /// Of `rss_kb`, the pages of files it maps (`RssFile`: the executable's
    /// code and read-only data, the same with or without policies).
    pub file_kb: u64,
    /// The idle window, in seconds.
    pub idle_secs: f64,
    /// Requests over the idle window, by `verb resource`.
    pub idle_requests: BTreeMap<String, f64>,
    /// Every request the process sent until it was idle, by `verb resource`.
    pub busy_requests: BTreeMap<String, f64>,
    /// Requests every client of the API server sent over the idle window.
    pub apiserver_idle_requests: Option<f64>,
}

impl Figures {
    /// Requests per idle minute: watches started, lease renewals, and the
    /// rest.
    pub fn idle_per_minute(&self) -> (f64, f64, f64) {
        let per_minute = 60.0 / self.idle_secs;
        let (mut watches, mut leases, mut other) = (0.0, 0.0, 0.0);
        for (key, n) in &self.idle_requests {
            if key.starts_with("watch ") {
                watches += n;
            } else if key.ends_with(" leases") {
                leases += n;
            } else {
                other += n;
            }
        }
        (watches * per_minute, leases * per_minute, other * per_minute)
    }

    /// `VmRSS` in MiB.
    pub fn rss_mb(&self) -> f64 {
        self.rss_kb as f64 / 1024.0
    }
}

/// The scenario's row: the operator with N policies against none.
pub async fn operator(scale: &Scale) -> Vec<Row> {
    let (none, some) = measure(scale).await;
    vec![row(&none, &some)]
}

/// Both sides' figures: (no policies, N policies).
pub async fn measure(scale: &Scale) -> (Figures, Figures) {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let n = scale.n(FULL_POLICIES, 50) as usize;
    let idle = Duration::from_secs_f64((60.0 * scale.factor).clamp(12.0, 60.0));
    let client = kube_client().await;
    install_crds(&client).await;
    let none = side(&client, scale, 0, idle).await;
    let some = side(&client, scale, n, idle).await;
    (none, some)
}

/// The table row.
pub fn row(none: &Figures, some: &Figures) -> Row {
    let (watches, leases, other) = some.idle_per_minute();
    let (watches0, leases0, other0) = none.idle_per_minute();
    let per_policy_kb = (some.rss_kb as f64 - none.rss_kb as f64) / some.policies.max(1) as f64;
    let mb = some.rss_mb();
    let apiserver = some
        .apiserver_idle_requests
        .map(|r| format!("; the API server counted {:.0} requests from all its clients in that window", r))
        .unwrap_or_default();
    Row {
        shape: format!("Operator, {} RetentionPolicies, idle", some.policies),
        baseline: "the same operator, no policies".into(),
        baseline_value: none.rss_mb(),
        delenda_value: mb,
        unit: "MB",
        ratio: None,
        goal: None,
        limits: vec![
            (format!("resident memory {mb:.1} MB <= {GOAL_MB} MB ({:.2} of it)", mb / GOAL_MB), mb <= GOAL_MB),
            (
                format!("requests in an idle minute besides watches and the lease {other:.1} <= {IDLE_OTHER_LIMIT}"),
                other <= IDLE_OTHER_LIMIT,
            ),
        ],
        note: format!(
            "{per_policy_kb:.1} KB a policy; {:.1} MB of it the pages of the executable and other mapped files \
             (RssFile; {:.1} MB with none); peak (VmHWM) {:.1} MB, {:.1} MB with none; every policy reconciled \
             {:.0} s after the start ({} of them resolved in their table; any other is Valid with its check \
             in the store to be made again); an idle minute ({:.0} s measured): {watches:.1} watches started, \
             {leases:.1} lease requests, {other:.1} others (with none: {watches0:.1}, {leases0:.1}, {other0:.1}){apiserver}",
            some.file_kb as f64 / 1024.0,
            none.file_kb as f64 / 1024.0,
            some.hwm_kb as f64 / 1024.0,
            none.hwm_kb as f64 / 1024.0,
            some.reconciled_after,
            some.resolved,
            some.idle_secs,
        ),
    }
}

/// A client of the cluster in KUBECONFIG (the test environment's).
async fn kube_client() -> kube::Client {
    let path = std::env::var("KUBECONFIG")
        .expect("KUBECONFIG: start the servers with tests/env/up and load .testenv/env (scripts/bench does)");
    let kubeconfig = kube::config::Kubeconfig::read_from(&path)
        .unwrap_or_else(|e| panic!("cannot read {path} ({e}); start the servers with tests/env/up"));
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap_or_else(|e| panic!("bad kubeconfig {path}: {e}"));
    kube::Client::try_from(config).expect("a Kubernetes client")
}

async fn install_crds(client: &kube::Client) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::{Patch, PatchParams};
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in delenda::api::crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        api.patch(&name, &PatchParams::apply("delenda-bench").force(), &Patch::Apply(&crd))
            .await
            .unwrap_or_else(|e| panic!("cannot reach the kube-apiserver ({e}); start it with tests/env/up"));
        let established = kube::runtime::wait::await_condition(
            api.clone(),
            &name,
            kube::runtime::wait::conditions::is_crd_established(),
        );
        tokio::time::timeout(Duration::from_secs(60), established)
            .await
            .unwrap_or_else(|_| panic!("CRD {name} did not become Established within 60 s"))
            .expect("the CRD is watched");
    }
}

/// A name no run repeats, in letters only (digits can read as a phone
/// number to the operator's redaction).
fn unique(prefix: &str) -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).expect("after 1970").as_nanos();
    let value = ((nanos as u64 & 0xffff_ffff) << 32) | u64::from(std::process::id());
    let suffix: String = (0..16).rev().map(|i| char::from(b'a' + ((value >> (i * 4)) & 0xf) as u8)).collect();
    format!("{prefix}-{}", suffix.trim_start_matches('a'))
}

fn postgres_url() -> url::Url {
    let url = std::env::var("POSTGRES_URL")
        .expect("POSTGRES_URL: start the servers with tests/env/up and load .testenv/env (scripts/bench does)");
    url::Url::parse(&url).expect("POSTGRES_URL is a URL")
}

/// One side: a namespace with `n` policies, the operator over it, measured.
async fn side(client: &kube::Client, scale: &Scale, n: usize, idle: Duration) -> Figures {
    let ns = unique("bench-operator");
    let pg = postgres_url();
    let table = unique("bench_contacts").replace('-', "_");
    let mut conn = PgConnection::connect(pg.as_str())
        .await
        .unwrap_or_else(|e| panic!("cannot reach PostgreSQL ({e}); start it with tests/env/up"));
    let create = format!(
        "CREATE TABLE {table} (id bigint PRIMARY KEY, email text, phone text, customer_id text, service_ended_at timestamptz)"
    );
    sqlx::raw_sql(AssertSqlSafe(create)).execute(&mut conn).await.expect("the table is created");

    let namespaces: Api<Namespace> = Api::all(client.clone());
    let namespace: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": ns}})).expect("a namespace");
    namespaces.create(&PostParams::default(), &namespace).await.expect("the namespace is created");
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let secret: Secret = serde_json::from_value(serde_json::json!({"metadata": {"name": "crm-credentials"},
        "stringData": {"username": pg.username(), "password": pg.password().unwrap_or_default()}}))
    .expect("a Secret");
    secrets.create(&PostParams::default(), &secret).await.expect("the Secret is created");
    let store: DataStore = serde_json::from_value(serde_json::json!({
        "apiVersion": "delenda.dev/v1alpha1", "kind": "DataStore",
        "metadata": {"name": "crm", "labels": {"delenda.dev/statement": "mvs-it"}},
        "spec": {"postgres": {"host": pg.host_str().unwrap_or("127.0.0.1"), "port": pg.port().unwrap_or(5432),
            "database": pg.path().trim_start_matches('/'), "credentialsSecret": {"name": "crm-credentials"},
            "tls": "Disable"},
            "timeZone": "Europe/Amsterdam"}}))
    .expect("a DataStore");
    let stores: Api<DataStore> = Api::namespaced(client.clone(), &ns);
    stores.create(&PostParams::default(), &store).await.expect("the DataStore is created");

    let policies: Api<RetentionPolicy> = Api::namespaced(client.clone(), &ns);
    let created = Instant::now();
    let hour = (jiff::Timestamp::now().as_second() / 3600 + 12) % 24;
    let results: Vec<()> = futures::stream::iter(0..n)
        .map(|i| {
            let policies = policies.clone();
            let policy = policy(i, &table, hour);
            async move {
                policies.create(&PostParams::default(), &policy).await.expect("a policy is created");
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    scale.say(|| format!("{} policies created in {:.1} s", results.len(), created.elapsed().as_secs_f64()));

    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut process = Operator::start(&ns, dir.path());
    let figures = std::panic::AssertUnwindSafe(watch(client, &mut process, &policies, &stores, n, idle, scale))
        .catch_unwind()
        .await;
    drop(process);

    // Leave nothing behind: the API server's etcd is shared.
    let _ = policies.delete_collection(&DeleteParams::default(), &ListParams::default()).await;
    let _ = namespaces.delete(&ns, &DeleteParams::default()).await;
    let _ = sqlx::raw_sql(AssertSqlSafe(format!("DROP TABLE {table}"))).execute(&mut conn).await;
    figures.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// A policy like MvS-IT's row 1, number `i`, due at `hour` (UTC) each day:
/// twelve hours after the measurement starts.
fn policy(i: usize, table: &str, hour: i64) -> RetentionPolicy {
    let name = format!("contact-persons-{i:05}");
    let mut value = serde_json::json!({
        "apiVersion": "delenda.dev/v1alpha1", "kind": "RetentionPolicy",
        "metadata": {"name": name, "labels": {"delenda.dev/statement": "mvs-it", "delenda.dev/row": "1",
            "delenda.dev/service": "general"}},
        "spec": {
            "category": name,
            "description": "\"Naam, telefoonnummer en e-mailadres van de contactpersoon van uw organisatie.\" \
                (Algemeen) Name, phone number and e-mail address of the customer organisation's contact person.",
            "responsibleParty": "self",
            "legalBasis": "Contract",
            "retention": {"period": "1d"},
            "schedule": {"cron": format!("{} {hour} * * *", i % 60), "timeZone": "UTC"},
            "mode": "Enforce",
            "guardrails": {"maxRecordsPerRun": 500, "maxPercentPerRun": 10},
            "targets": [{"name": "contact-persons", "dataStoreRef": {"name": "crm"},
                "table": {"name": table, "timeColumn": "service_ended_at"},
                "subjectFields": [{"identity": "email", "field": "email"}, {"identity": "phone", "field": "phone"},
                    {"identity": "customerId", "field": "customer_id"}]}]}});
    // As `kubectl apply` creates it: the whole manifest again in an annotation.
    let applied = serde_json::to_string(&value).expect("JSON");
    value["metadata"]["annotations"] = serde_json::json!({"kubectl.kubernetes.io/last-applied-configuration": applied});
    serde_json::from_value(value).expect("a valid policy")
}

/// One `delenda controller` process; dropping it kills it.
struct Operator {
    child: Child,
    http: String,
    log: std::path::PathBuf,
}

impl Operator {
    fn start(ns: &str, dir: &Path) -> Self {
        let log = dir.join("operator.log");
        let http = format!(
            "127.0.0.1:{}",
            std::net::TcpListener::bind("127.0.0.1:0").expect("a port").local_addr().expect("an address").port()
        );
        let out = std::fs::File::create(&log).expect("a log file");
        let err = out.try_clone().expect("a log file");
        // BENCH_OPERATOR_WRAPPER runs the operator under a profiler
        // (`heaptrack -o /tmp/operator`); its memory figures are then the
        // wrapper's process's, not to be recorded.
        let wrapper = std::env::var("BENCH_OPERATOR_WRAPPER").unwrap_or_default();
        // BENCH_OPERATOR_BIN measures another build of the operator (an
        // older commit's, for a before-and-after table).
        let binary = std::env::var("BENCH_OPERATOR_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_delenda").to_owned());
        let mut words = wrapper.split_whitespace();
        let mut command = match words.next() {
            Some(program) => {
                let mut c = Command::new(program);
                c.args(words).arg(&binary);
                c
            }
            None => Command::new(&binary),
        };
        let child = command
            .args(["controller", "--namespace", ns, "--lease-namespace", ns, "--http-addr", &http])
            .env("POD_NAME", "delenda-bench")
            .env_remove("RUST_LOG")
            .env_remove("DELENDA_HMAC_KEY_FILE")
            .env_remove("DELENDA_LOG_FORMAT")
            .env_remove("DELENDA_HTTP_ADDR")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("the delenda binary starts");
        Self { child, http, log }
    }

    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("the operator exited with {status}; its output:\n{}", self.output());
        }
    }

    /// (`VmRSS`, `VmHWM`, `RssFile`) in kB.
    fn memory(&self) -> (u64, u64, u64) {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("the operator's /proc/<pid>/status");
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .unwrap_or_else(|| panic!("no {name} in /proc/<pid>/status:\n{status}"))
        };
        (field("VmRSS:"), field("VmHWM:"), field("RssFile:"))
    }

    /// `delenda_kubernetes_requests_total` by `verb resource`, or `None`
    /// while /metrics does not answer.
    async fn requests(&self) -> Option<BTreeMap<String, f64>> {
        let text = reqwest::get(format!("http://{}/metrics", self.http)).await.ok()?.text().await.ok()?;
        let mut out = BTreeMap::new();
        for line in text.lines().filter(|l| l.starts_with("delenda_kubernetes_requests_total{")) {
            let (labels, value) = line.rsplit_once(' ')?;
            let label = |k: &str| {
                labels.split(&format!("{k}=\"")).nth(1).and_then(|r| r.split('"').next()).unwrap_or("").to_owned()
            };
            out.insert(format!("{} {}", label("verb"), label("resource")), value.parse().ok()?);
        }
        Some(out)
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let out = self.output();
            let tail: Vec<&str> = out.lines().rev().take(40).collect();
            eprintln!("--- last lines of the operator ---");
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// The difference of two request counts (`after - before`), zeros left out.
fn delta(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, v)| *v > 0.0)
        .collect()
}

/// Requests that are neither watches nor the lease.
fn busy(requests: &BTreeMap<String, f64>) -> f64 {
    requests.iter().filter(|(k, _)| !k.starts_with("watch ") && !k.ends_with(" leases")).map(|(_, v)| v).sum()
}

/// The sum of the API server's `apiserver_request_total`.
async fn apiserver_requests(client: &kube::Client) -> Option<f64> {
    let request = http::Request::get("/metrics").body(Vec::new()).ok()?;
    let text = client.request_text(request).await.ok()?;
    Some(
        text.lines()
            .filter(|l| l.starts_with("apiserver_request_total{"))
            .filter_map(|l| l.rsplit_once(' ').and_then(|(_, v)| v.parse::<f64>().ok()))
            .sum(),
    )
}

/// Waits until every policy is reconciled and the process is idle, then
/// measures the idle window.
async fn watch(
    client: &kube::Client,
    process: &mut Operator,
    policies: &Api<RetentionPolicy>,
    stores: &Api<DataStore>,
    n: usize,
    idle: Duration,
    scale: &Scale,
) -> Figures {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(120) + Duration::from_millis(200 * n as u64);
    let (reconciled, resolved) = loop {
        process.assert_running();
        let store_ready = stores
            .get_opt("crm")
            .await
            .ok()
            .flatten()
            .and_then(|s| s.status)
            .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
        let list = policies.list(&ListParams::default()).await.expect("the policies are listed");
        let done: Vec<&RetentionPolicy> = list
            .items
            .iter()
            .filter(|p| {
                p.status.as_ref().is_some_and(|s| {
                    s.observed_generation == p.metadata.generation && s.conditions.iter().any(|c| c.type_ == "Valid")
                })
            })
            .collect();
        // Valid, and Resolved once its target was found in its table; a
        // check that timed out under the start's burst leaves it Valid,
        // to be checked again later. Valid False means the scenario is wrong.
        let mut resolved = 0;
        for p in &done {
            let valid = p.status.as_ref().and_then(|s| s.conditions.iter().find(|c| c.type_ == "Valid"));
            assert!(valid.is_some_and(|c| c.status == "True"), "a policy is not valid: {valid:?}");
            resolved += usize::from(valid.is_some_and(|c| c.reason == "Resolved"));
        }
        scale.say(|| {
            format!("{} of {n} policies reconciled after {:.0} s", done.len(), started.elapsed().as_secs_f64())
        });
        if store_ready && done.len() == n {
            break (done.len(), resolved);
        }
        assert!(
            Instant::now() < deadline,
            "after {:.0} s only {} of {n} policies were reconciled (DataStore ready: {store_ready})",
            started.elapsed().as_secs_f64(),
            done.len()
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    };
    let reconciled_after = started.elapsed().as_secs_f64();

    // Idle: no request but watches and the lease for a few seconds.
    let quiet = Duration::from_secs(5);
    let mut last = process.requests().await.unwrap_or_default();
    let mut since = Instant::now();
    while since.elapsed() < quiet {
        tokio::time::sleep(Duration::from_millis(500)).await;
        process.assert_running();
        let now = process.requests().await.unwrap_or_default();
        if busy(&now) != busy(&last) {
            since = Instant::now();
        }
        last = now;
        assert!(Instant::now() < deadline, "the operator did not become idle: {last:?}");
    }
    let busy_requests = last.clone();
    let server_before = apiserver_requests(client).await;
    let window = Instant::now();
    tokio::time::sleep(idle).await;
    process.assert_running();
    let after = process.requests().await.expect("the operator's /metrics answers");
    let idle_secs = window.elapsed().as_secs_f64();
    let server_after = apiserver_requests(client).await;
    let (rss_kb, hwm_kb, file_kb) = process.memory();
    Figures {
        policies: n,
        reconciled,
        resolved,
        reconciled_after,
        rss_kb,
        hwm_kb,
        file_kb,
        idle_secs,
        idle_requests: delta(&busy_requests, &after),
        busy_requests,
        apiserver_idle_requests: server_before.zip(server_after).map(|(b, a)| a - b),
    }
}
