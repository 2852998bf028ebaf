//! The operator as it is deployed: the real `delenda controller` process,
//! started and killed like a pod, against the real kube-apiserver and the
//! real PostgreSQL. These tests prove what only a separate process can:
//! a run killed mid-purge resumes with the same cutoff after a restart, a
//! store that is down yields an honest failure and a retry, and no identity
//! of a data subject reaches the process's logs, Events, status or metrics.
mod support;

use support::{eventually, manifest};

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use delenda::api::{DataStore, ErasureRequest, RetentionPolicy, RetentionPolicyStatus};
use k8s_openapi::api::core::v1::{Event, Secret};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use sqlx::{Connection, PgConnection};

/// One `delenda controller` process, its stdout and stderr going to one log
/// file. Dropping it kills the process, also when a test panics, and then
/// prints the tail of its log.
struct Operator {
    name: String,
    child: Mutex<Child>,
    log: PathBuf,
    /// Where it serves /healthz, /readyz and /metrics.
    http: String,
}

impl Operator {
    /// Starts the binary for namespace `ns` (watched, and home of the Lease)
    /// under the unique identity `name`, with JSON logs and its HTTP
    /// endpoints on a port of its own (tests run side by side).
    fn start(ns: &str, dir: &Path, name: &str, extra: &[&str]) -> Self {
        Self::start_with(ns, dir, name, extra, &[])
    }

    /// [`Operator::start`] with more environment variables.
    fn start_with(ns: &str, dir: &Path, name: &str, extra: &[&str], envs: &[(&str, String)]) -> Self {
        let log = dir.join(format!("{name}.log"));
        let http = format!("127.0.0.1:{}", free_port());
        let out = File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_delenda"))
            .args([
                "controller",
                "--log-format",
                "json",
                "--namespace",
                ns,
                "--lease-namespace",
                ns,
                "--http-addr",
                &http,
            ])
            .args(extra)
            .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
            .env("KUBECONFIG", support::setting("KUBECONFIG", "kube-apiserver"))
            .env("POD_NAME", name)
            // The `run finished` lines this file reads are info-level.
            .env("RUST_LOG", "info,kube_runtime=warn")
            .env_remove("DELENDA_HMAC_KEY_FILE")
            .env_remove("DELENDA_LOG_FORMAT")
            .env_remove("DELENDA_HTTP_ADDR")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("the delenda binary starts");
        Self { name: name.to_owned(), child: Mutex::new(child), log, http }
    }

    /// Everything the process wrote so far.
    fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics, with the log, when the process has exited.
    fn assert_running(&self) {
        if let Ok(Some(status)) = self.child.lock().unwrap().try_wait() {
            panic!("{} exited with {status}; its output:\n{}", self.name, self.output());
        }
    }

    /// SIGKILL, like a node that dies or an OOM kill: no shutdown code runs.
    fn kill(&self) {
        let mut child = self.child.lock().unwrap();
        let _ = child.kill();
        let _ = child.wait();
    }

    /// The sealed evidence records of the `run finished` lines, in the order
    /// they were logged. With `--log-format json` a line is
    /// `{"timestamp":..,"level":"INFO","fields":{"message":"run finished",
    /// "evidence":"<the sealed record as JSON text>",..},"target":..}`.
    fn evidence(&self) -> Vec<serde_json::Value> {
        self.output()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|l| l["fields"]["message"] == "run finished")
            .map(|l| {
                let text = l["fields"]["evidence"]
                    .as_str()
                    .unwrap_or_else(|| panic!("a run finished line without evidence: {l}"));
                serde_json::from_str(text).unwrap_or_else(|e| panic!("the evidence field is not JSON ({e}): {text}"))
            })
            .collect()
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let out = self.output();
            let tail: Vec<&str> = out.lines().rev().take(60).collect();
            eprintln!("--- last lines of {} ---", self.name);
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

/// A port on 127.0.0.1 where nothing listens (bound, then released).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The cluster and database every test uses, and a namespace of its own.
struct Setup {
    client: kube::Client,
    ns: String,
    conn: PgConnection,
    pg: url::Url,
    dir: tempfile::TempDir,
}

async fn setup(prefix: &str) -> Setup {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let client = support::kube_client().await;
    support::install_crds(&client).await;
    let ns = support::fresh_namespace(&client, prefix).await;
    let url = support::setting("POSTGRES_URL", "PostgreSQL");
    let pg = url::Url::parse(&url).unwrap();
    let conn = support::reach(PgConnection::connect(&url).await, "PostgreSQL");
    let dir = tempfile::tempdir().unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    secrets
        .create(
            &PostParams::default(),
            &manifest(serde_json::json!({"metadata": {"name": "db-credentials"},
            "stringData": {"username": pg.username(), "password": pg.password().unwrap()}})),
        )
        .await
        .unwrap();
    Setup { client, ns, conn, pg, dir }
}

impl Setup {
    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
    {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    async fn sql(&mut self, sql: String) {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut self.conn).await.unwrap();
    }

    async fn count(&mut self, sql: String) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(&mut self.conn).await.unwrap()
    }

    /// A PostgreSQL DataStore `name` on `port` of 127.0.0.1.
    async fn data_store(&self, name: &str, port: u16, limits: Option<serde_json::Value>) {
        let mut spec = serde_json::json!({"postgres": {"host": "127.0.0.1", "port": port,
            "database": self.pg.path().trim_start_matches('/'), "credentialsSecret": {"name": "db-credentials"}, "tls": "Disable"}});
        if let Some(limits) = limits {
            spec["limits"] = limits;
        }
        let ds: DataStore = manifest(serde_json::json!({"apiVersion": "delenda.dev/v1alpha1", "kind": "DataStore",
            "metadata": {"name": name}, "spec": spec}));
        self.api::<DataStore>().create(&PostParams::default(), &ds).await.unwrap();
    }

    /// An enforced policy over one table target, with an optional run-now token.
    async fn policy(
        &self,
        name: &str,
        store: &str,
        table: &str,
        time_column: &str,
        run_now: Option<&str>,
        subject_fields: serde_json::Value,
    ) {
        let mut metadata = serde_json::json!({"name": name});
        if let Some(token) = run_now {
            metadata["annotations"] = serde_json::json!({"delenda.dev/run-now": token});
        }
        let mut target = serde_json::json!({"name": "main", "dataStoreRef": {"name": store},
            "table": {"name": table, "timeColumn": time_column}});
        if subject_fields.as_array().is_some_and(|a| !a.is_empty()) {
            target["subjectFields"] = subject_fields;
        }
        let policy: RetentionPolicy = manifest(serde_json::json!({
            "apiVersion": "delenda.dev/v1alpha1", "kind": "RetentionPolicy", "metadata": metadata,
            "spec": {"category": name, "description": name, "responsibleParty": "self", "legalBasis": "Contract",
                "retention": {"period": "30d"}, "schedule": {"cron": "0 3 1 1 *", "timeZone": "Europe/Amsterdam"},
                "mode": "Enforce",
                "targets": [target]}
        }));
        self.api::<RetentionPolicy>().create(&PostParams::default(), &policy).await.unwrap();
    }

    async fn policy_status(&self, name: &str) -> Option<RetentionPolicyStatus> {
        self.api::<RetentionPolicy>().get(name).await.ok()?.status
    }

    async fn event_reasons(&self) -> Vec<String> {
        let events = self.api::<Event>().list(&ListParams::default()).await.unwrap();
        events.items.into_iter().filter_map(|e| e.reason).collect()
    }
}

fn condition<'a>(
    status: &'a RetentionPolicyStatus,
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    status.conditions.iter().find(|c| c.type_ == type_)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_controller_mid_purge_resumes_with_the_same_cutoff() {
    let mut s = setup("kill").await;
    let table = support::unique("visits").replace('-', "_");
    // 200,000 rows; every tenth is recent (not due), the rest are 400 days old.
    s.sql(format!(
        "CREATE TABLE {table} (id bigint PRIMARY KEY, visited_at timestamptz NOT NULL, email text NOT NULL);
         INSERT INTO {table}
           SELECT g, CASE WHEN g % 10 = 0 THEN now() - interval '1 day' ELSE now() - interval '400 days' END,
                  'visitor' || g || '@example.nl'
           FROM generate_series(1, 200000) g;
         ANALYZE {table};"
    ))
    .await;
    let not_due = format!(
        "SELECT id, visited_at::text, email FROM {table} WHERE visited_at > now() - interval '30 days' ORDER BY id"
    );
    let snapshot: Vec<(i64, String, String)> =
        sqlx::query_as(sqlx::AssertSqlSafe(not_due)).fetch_all(&mut s.conn).await.unwrap();
    assert_eq!(snapshot.len(), 20_000);

    // 180,000 due rows at 20,000 a second: a purge of about nine seconds.
    s.data_store("analytics", s.pg.port().unwrap(), Some(serde_json::json!({"maxDeletesPerSecond": 20000}))).await;
    s.policy("web-visits", "analytics", &table, "visited_at", Some("t1"), serde_json::json!([])).await;

    let started = Instant::now();
    // Both processes sign with the installation's evidence key.
    let signing_key = s.dir.path().join("signing.pem");
    let generated =
        Command::new("openssl").args(["genpkey", "-algorithm", "ed25519", "-out"]).arg(&signing_key).status();
    assert!(generated.is_ok_and(|s| s.success()), "openssl genpkey makes the signing key");
    let signing = ["--signing-key-file", signing_key.to_str().unwrap()];
    let first = Operator::start(&s.ns, s.dir.path(), &format!("{}-first", s.ns), &signing);
    let total = format!("SELECT count(*) FROM {table}");
    let (interrupted_id, cutoff) = eventually("the run to start deleting", 90, async || {
        first.assert_running();
        let run = s.policy_status("web-visits").await?.current_run?;
        (s.count(total.clone()).await < 200_000).then_some((run.id, run.cutoff))
    })
    .await;
    first.kill();
    let killed_after = started.elapsed();
    // A COMMIT already on the wire when the process died still lands.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let left_after_kill = s.count(total.clone()).await - 20_000;
    assert!(
        left_after_kill > 0,
        "the purge finished before the kill; the test proves nothing (killed after {killed_after:?})"
    );
    assert!(left_after_kill < 180_000);

    let status = s.policy_status("web-visits").await.unwrap();
    let current = status.current_run.as_ref().expect("the interrupted run stays recorded in status");
    assert_eq!(current.id, interrupted_id);
    assert_eq!(current.cutoff, cutoff, "the cutoff recorded before the first delete");
    assert!(status.last_run.is_none(), "a killed run claims nothing: {:?}", status.last_run);
    assert!(status.history.is_empty());
    let claimed = s.event_reasons().await;
    assert!(!claimed.iter().any(|r| r == "RunSucceeded"), "{claimed:?}");

    // A new process (a new pod) waits for the dead one's lease to expire,
    // then resumes the recorded run.
    let restarted = Instant::now();
    let second = Operator::start(&s.ns, s.dir.path(), &format!("{}-second", s.ns), &signing);
    let status = eventually("the resumed run to finish", 120, async || {
        second.assert_running();
        let status = s.policy_status("web-visits").await?;
        status.last_run.is_some().then_some(status)
    })
    .await;
    let resumed_in = restarted.elapsed();
    let run = status.last_run.clone().unwrap();
    assert_eq!(run.id, interrupted_id, "the same run, not a new one");
    assert_eq!(run.cutoff, cutoff, "the same cutoff");
    assert_eq!(run.outcome.as_deref(), Some("Succeeded"), "{run:?}");
    assert_eq!(
        run.targets[0].records.matched as i64, left_after_kill,
        "the resumed run found what the killed one left"
    );
    assert_eq!(run.targets[0].records.deleted as i64, left_after_kill);
    assert_eq!(run.targets[0].records.remaining, Some(0));
    assert!(status.current_run.is_none());
    assert_eq!(status.history.len(), 1, "one run, interrupted and resumed: {:?}", status.history);
    assert_eq!(condition(&status, "Compliant").map(|c| c.status.as_str()), Some("True"), "{:?}", status.conditions);
    let first_digest = run.digest.clone().unwrap();

    let rows: Vec<(i64, String, String)> =
        sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT id, visited_at::text, email FROM {table} ORDER BY id")))
            .fetch_all(&mut s.conn)
            .await
            .unwrap();
    assert_eq!(rows.len(), snapshot.len(), "every due row is gone and no other row");
    assert!(rows == snapshot, "the rows that were not due are exactly as before");

    // A second run chains its evidence to the first.
    let patch = serde_json::json!({"metadata": {"annotations": {"delenda.dev/run-now": "t2"}}});
    s.api::<RetentionPolicy>().patch("web-visits", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    let status = eventually("the second run", 60, async || {
        second.assert_running();
        let status = s.policy_status("web-visits").await?;
        (status.history.len() == 2).then_some(status)
    })
    .await;
    let run2 = status.last_run.clone().unwrap();
    assert!(run2.id.ends_with("~t2"), "{}", run2.id);
    assert_eq!(run2.outcome.as_deref(), Some("Succeeded"));
    assert_eq!(run2.targets[0].records.deleted, 0, "nothing new was due");
    assert_eq!(run2.previous_digest.as_deref(), Some(first_digest.as_str()));
    assert!(run2.cutoff.0 > cutoff.0);

    // The evidence the processes logged is the chain the status names, and
    // it verifies with the binary an auditor would use.
    let records = eventually("both runs' evidence in the logs", 10, async || {
        let records: Vec<serde_json::Value> = first.evidence().into_iter().chain(second.evidence()).collect();
        (records.len() >= 2).then_some(records)
    })
    .await;
    assert_eq!(records.len(), 2, "{records:#?}");
    assert_eq!(records[0]["digest"], first_digest.as_str());
    assert_eq!(records[0]["previousDigest"], serde_json::Value::Null);
    assert_eq!(records[0]["record"]["runId"], interrupted_id.as_str());
    let logged_cutoff: jiff::Timestamp = records[0]["record"]["cutoff"].as_str().unwrap().parse().unwrap();
    assert_eq!(logged_cutoff, cutoff.0);
    assert_eq!(records[1]["digest"], run2.digest.as_deref().unwrap());
    assert_eq!(records[1]["previousDigest"], first_digest.as_str());
    let chain = s.dir.path().join("chain.jsonl");
    std::fs::write(&chain, records.iter().map(|r| format!("{r}\n")).collect::<String>()).unwrap();
    let public = Command::new(env!("CARGO_BIN_EXE_delenda"))
        .args(["evidence", "public-key", "--signing-key-file"])
        .arg(&signing_key)
        .output()
        .unwrap();
    let public_key = s.dir.path().join("public.pem");
    std::fs::write(&public_key, &public.stdout).unwrap();
    let verify = Command::new(env!("CARGO_BIN_EXE_delenda"))
        .args(["evidence", "verify", "--public-key"])
        .arg(&public_key)
        .arg(&chain)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&verify.stdout);
    assert!(verify.status.success(), "{out}{}", String::from_utf8_lossy(&verify.stderr));
    assert!(out.starts_with("ok: chain policy/web-visits") && out.contains("2 records, 2 signatures checked"), "{out}");
    // And the chain as the cluster keeps it, checked against the status.
    let verify = Command::new(env!("CARGO_BIN_EXE_delenda"))
        .args(["evidence", "verify", "--namespace", &s.ns, "--public-key"])
        .arg(&public_key)
        .env("KUBECONFIG", support::setting("KUBECONFIG", "kube-apiserver"))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&verify.stdout);
    assert!(verify.status.success(), "{out}{}", String::from_utf8_lossy(&verify.stderr));
    assert!(out.contains("ok: chain policy/web-visits in namespace") && out.contains("2 signatures checked"), "{out}");

    eprintln!(
        "killed {killed_after:?} after start with {left_after_kill} due rows left; resumed run finished {resumed_in:?} after the restart"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_is_down_fails_clearly_and_the_run_succeeds_once_it_is_back() {
    let mut s = setup("down").await;
    let table = support::unique("orders").replace('-', "_");
    s.sql(format!(
        "CREATE TABLE {table} (id bigint PRIMARY KEY, placed_at timestamptz NOT NULL);
         INSERT INTO {table} SELECT g, now() - interval '400 days' FROM generate_series(1, 50) g;
         INSERT INTO {table} SELECT g, now() FROM generate_series(51, 60) g;"
    ))
    .await;
    // The store is "stopped" by pointing the DataStore at a port where
    // nothing listens: stopping the shared test PostgreSQL would disturb
    // every other test that uses it.
    s.data_store("orders-db", free_port(), None).await;
    s.policy("orders", "orders-db", &table, "placed_at", Some("t1"), serde_json::json!([])).await;
    let operator = Operator::start(&s.ns, s.dir.path(), &format!("{}-op", s.ns), &[]);

    let stores = s.api::<DataStore>();
    let ready = eventually("the DataStore to be found unreachable", 60, async || {
        operator.assert_running();
        let status = stores.get("orders-db").await.ok()?.status?;
        status.conditions.into_iter().find(|c| c.type_ == "Ready")
    })
    .await;
    assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("False", "Unreachable"), "{ready:?}");
    assert!(!ready.message.is_empty());

    let status = eventually("the failed run", 60, async || {
        operator.assert_running();
        let status = s.policy_status("orders").await?;
        status.last_run.is_some().then_some(status)
    })
    .await;
    let failed_at = Instant::now();
    let run = status.last_run.clone().unwrap();
    assert_eq!(run.outcome.as_deref(), Some("Failed"), "{run:?}");
    assert_eq!(run.targets[0].records.deleted, 0);
    assert_eq!(run.targets[0].records.remaining, None, "no read-back, so no claim about what remains");
    assert!(run.targets[0].message.as_deref().is_some_and(|m| !m.is_empty()), "{run:?}");
    let compliant = condition(&status, "Compliant").expect("a Compliant condition");
    assert_eq!((compliant.status.as_str(), compliant.reason.as_str()), ("False", "RunFailed"), "{compliant:?}");
    assert!(compliant.message.contains("retrying"), "{}", compliant.message);
    assert!(status.history.iter().all(|h| h.outcome == "Failed"), "{:?}", status.history);
    let reasons = eventually("a RunFailed Event", 30, async || {
        let reasons = s.event_reasons().await;
        reasons.iter().any(|r| r == "RunFailed").then_some(reasons)
    })
    .await;
    assert!(!reasons.iter().any(|r| r == "RunSucceeded"), "nothing claims success: {reasons:?}");
    assert_eq!(s.count(format!("SELECT count(*) FROM {table}")).await, 60);

    // The store is back.
    let port = s.pg.port().unwrap();
    let patch = serde_json::json!({"spec": {"postgres": {"port": port}}});
    stores.patch("orders-db", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    let status = eventually("the retried run to succeed", 120, async || {
        operator.assert_running();
        let status = s.policy_status("orders").await?;
        let compliant = condition(&status, "Compliant")?;
        if compliant.status == "True" {
            return Some(status);
        }
        // Until then, nothing in status says the data is gone.
        assert!(status.history.iter().all(|h| h.outcome == "Failed"), "{:?}", status.history);
        assert!(status.last_run.as_ref().is_none_or(|r| r.outcome.as_deref() != Some("Succeeded")));
        None
    })
    .await;
    let retried_after = failed_at.elapsed();
    let run = status.last_run.clone().unwrap();
    assert_eq!(run.outcome.as_deref(), Some("Succeeded"), "{run:?}");
    assert_eq!(run.targets[0].records.deleted, 50);
    assert_eq!(run.targets[0].records.remaining, Some(0));
    assert_eq!(condition(&status, "Compliant").unwrap().reason, "Verified");
    assert_eq!(status.history[0].outcome, "Succeeded");
    assert!(
        status.history.len() >= 2 && status.history[1..].iter().all(|h| h.outcome == "Failed"),
        "{:?}",
        status.history
    );
    assert!(
        retried_after >= Duration::from_secs(20),
        "the retry waits for its backoff (about 30 s), it came after {retried_after:?}"
    );
    let left: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT id FROM {table} ORDER BY id")))
        .fetch_all(&mut s.conn)
        .await
        .unwrap();
    assert_eq!(left, (51..=60).collect::<Vec<i64>>());
    eventually("the DataStore to be Ready again", 60, async || {
        let status = stores.get("orders-db").await.ok()?.status?;
        status.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True").then_some(())
    })
    .await;
    eventually("a RunSucceeded Event", 30, async || {
        s.event_reasons().await.iter().any(|r| r == "RunSucceeded").then_some(())
    })
    .await;
    eprintln!("the retry succeeded {retried_after:?} after the failed run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_identity_reaches_logs_events_status_or_metrics() {
    const EMAIL: &str = "jan.jansen@example.nl";
    const PHONE: &str = "+31612345678";
    let mut s = setup("pii").await;
    let table = support::unique("subscribers").replace('-', "_");
    s.sql(format!(
        "CREATE TABLE {table} (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, email text, phone text);
         INSERT INTO {table} SELECT g, now(), 'other' || g || '@example.nl', '+3120555' || lpad(g::text, 4, '0')
           FROM generate_series(1, 20) g;
         INSERT INTO {table} VALUES (21, now(), '{EMAIL}', NULL), (22, now(), '{EMAIL}', '{PHONE}'), (23, now(), NULL, '{PHONE}');"
    ))
    .await;
    s.data_store("crm", s.pg.port().unwrap(), None).await;
    s.policy(
        "subscribers",
        "crm",
        &table,
        "created_at",
        None,
        serde_json::json!([{"identity": "email", "field": "email"}, {"identity": "phone", "field": "phone"}]),
    )
    .await;
    s.api::<Secret>()
        .create(
            &PostParams::default(),
            &manifest(
                serde_json::json!({"metadata": {"name": "subject-1", "labels": {"delenda.dev/identity": "true"}},
            "stringData": {"email": EMAIL, "phone": PHONE}}),
            ),
        )
        .await
        .unwrap();
    let requests = s.api::<ErasureRequest>();
    requests
        .create(
            &PostParams::default(),
            &manifest(serde_json::json!({
                "apiVersion": "delenda.dev/v1alpha1", "kind": "ErasureRequest", "metadata": {"name": "request-1"},
                "spec": {"identitySecretRef": {"name": "subject-1"}, "ground": "ConsentWithdrawn",
                    "receivedAt": "2026-11-20T09:00:00Z", "deleteIdentitySecret": true,
                    "identityVerification": {"verifiedBy": "privacy-office", "method": "IdentityDocument"}}
            })),
        )
        .await
        .unwrap();

    let mut key = [0u8; 32];
    std::io::Read::read_exact(&mut File::open("/dev/urandom").unwrap(), &mut key).unwrap();
    let key_file = s.dir.path().join("installation-key");
    std::fs::write(&key_file, key).unwrap();
    let digester = delenda::engine::evidence::SubjectDigester::new(&key).unwrap().for_namespace(&s.ns);

    let operator =
        Operator::start(&s.ns, s.dir.path(), &format!("{}-op", s.ns), &["--hmac-key-file", key_file.to_str().unwrap()]);

    let status = eventually("the erasure request to complete", 90, async || {
        operator.assert_running();
        let status = requests.get("request-1").await.ok()?.status?;
        (status.phase == Some(delenda::api::erasure::ErasurePhase::Completed)).then_some(status)
    })
    .await;
    assert_eq!(status.summary.as_ref().unwrap().erased, 3, "{status:?}");
    assert_eq!(s.count(format!("SELECT count(*) FROM {table}")).await, 20);
    eventually("the identity Secret to be deleted", 30, async || {
        s.api::<Secret>().get_opt("subject-1").await.ok()?.is_none().then_some(())
    })
    .await;

    // The keyed digests are there, so these searches look where identities
    // would be if they leaked.
    let email_digest = digester.digest("email", EMAIL);
    let phone_digest = digester.digest("phone", PHONE);
    assert_eq!(status.subject_digests.get("email"), Some(&email_digest));
    assert_eq!(status.subject_digests.get("phone"), Some(&phone_digest));
    let log = eventually("the erasure's log line", 10, async || {
        let log = operator.output();
        log.contains("erasure pass finished").then_some(log)
    })
    .await;
    assert!(log.contains(&email_digest) && log.contains(&phone_digest), "the log names the subject by digest");

    let mut places: Vec<(String, String)> = vec![("the process's log".into(), log)];
    let events = s.api::<Event>().list(&ListParams::default()).await.unwrap();
    assert!(events.items.iter().any(|e| e.reason.as_deref() == Some("ErasureCompleted")));
    places.push(("the Events".into(), serde_json::to_string(&events).unwrap()));
    let request = serde_json::to_string(&requests.get("request-1").await.unwrap()).unwrap();
    assert!(request.contains(&email_digest) && request.contains(&phone_digest));
    places.push(("the ErasureRequest".into(), request));
    places.push((
        "the RetentionPolicies".into(),
        serde_json::to_string(&s.api::<RetentionPolicy>().list(&ListParams::default()).await.unwrap()).unwrap(),
    ));
    places.push((
        "the DataStores".into(),
        serde_json::to_string(&s.api::<DataStore>().list(&ListParams::default()).await.unwrap()).unwrap(),
    ));
    let metrics = eventually("/metrics", 30, async || {
        let resp = reqwest::get(format!("http://{}/metrics", operator.http)).await.ok()?;
        resp.status().is_success().then_some(())?;
        resp.text().await.ok()
    })
    .await;
    assert!(metrics.contains("delenda_erasure_requests"), "{metrics}");
    places.push(("/metrics".into(), metrics));

    for (place, text) in &places {
        for needle in [EMAIL, PHONE, "jansen", "612345678"] {
            assert!(!text.contains(needle), "{needle:?} leaked into {place}: {text}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_identity_of_a_held_subject_reaches_logs_events_status_evidence_or_metrics() {
    const EMAIL: &str = "jan.jansen@example.nl";
    const PHONE: &str = "+31612345678";
    let mut s = setup("pii-hold").await;
    let table = support::unique("held_subscribers").replace('-', "_");
    s.sql(format!(
        "CREATE TABLE {table} (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, email text, phone text);
         INSERT INTO {table} SELECT g, now() - interval '400 days', 'other' || g || '@example.nl', NULL
           FROM generate_series(1, 20) g;
         INSERT INTO {table} VALUES (21, now() - interval '400 days', '{EMAIL}', NULL),
           (22, now() - interval '400 days', NULL, '{PHONE}');"
    ))
    .await;
    s.data_store("crm", s.pg.port().unwrap(), None).await;
    s.api::<Secret>()
        .create(
            &PostParams::default(),
            &manifest(
                serde_json::json!({"metadata": {"name": "held-subject", "labels": {"delenda.dev/identity": "true"}},
            "stringData": {"email": EMAIL, "phone": PHONE}}),
            ),
        )
        .await
        .unwrap();
    let holds = s.api::<delenda::api::Hold>();
    holds
        .create(
            &PostParams::default(),
            &manifest(serde_json::json!({
                "apiVersion": "delenda.dev/v1alpha1", "kind": "Hold", "metadata": {"name": "objection"},
                "spec": {"identitySecretRef": {"name": "held-subject"}, "reason": "Art18ObjectionPending",
                    "placedBy": "privacy-office"}
            })),
        )
        .await
        .unwrap();
    let mut key = [0u8; 32];
    std::io::Read::read_exact(&mut File::open("/dev/urandom").unwrap(), &mut key).unwrap();
    let key_file = s.dir.path().join("installation-key");
    std::fs::write(&key_file, key).unwrap();
    let digester = delenda::engine::evidence::SubjectDigester::new(&key).unwrap().for_namespace(&s.ns);
    let operator =
        Operator::start(&s.ns, s.dir.path(), &format!("{}-op", s.ns), &["--hmac-key-file", key_file.to_str().unwrap()]);

    eventually("the hold to be placed", 60, async || {
        operator.assert_running();
        let status = holds.get("objection").await.ok()?.status?;
        (status.phase == Some(delenda::api::hold::HoldPhase::Active) && status.evidence_digest.is_some()).then_some(())
    })
    .await;
    s.policy(
        "subscribers",
        "crm",
        &table,
        "created_at",
        Some("now"),
        serde_json::json!([{"identity": "email", "field": "email"}, {"identity": "phone", "field": "phone"}]),
    )
    .await;
    let status = eventually("the run to finish", 90, async || {
        operator.assert_running();
        let status = s.policy_status("subscribers").await?;
        status.last_run.is_some().then_some(status)
    })
    .await;
    let records = &status.last_run.as_ref().unwrap().targets[0].records;
    assert_eq!((records.deleted, records.held_by("objection")), (20, 2), "{records:?}");
    assert_eq!(s.count(format!("SELECT count(*) FROM {table}")).await, 2, "the held subject's rows stay");

    let hold = serde_json::to_string(&holds.get("objection").await.unwrap()).unwrap();
    assert!(hold.contains(&digester.digest("email", EMAIL)), "the hold names the subject by digest");
    let log = eventually("the hold's log line", 10, async || {
        let log = operator.output();
        log.contains("hold placed").then_some(log)
    })
    .await;
    let mut places: Vec<(String, String)> = vec![("the process's log".into(), log), ("the Hold".into(), hold)];
    let events = s.api::<Event>().list(&ListParams::default()).await.unwrap();
    assert!(events.items.iter().any(|e| e.reason.as_deref() == Some("HoldPlaced")));
    places.push(("the Events".into(), serde_json::to_string(&events).unwrap()));
    places.push((
        "the RetentionPolicies".into(),
        serde_json::to_string(&s.api::<RetentionPolicy>().list(&ListParams::default()).await.unwrap()).unwrap(),
    ));
    let chain = delenda::controller::evidence::read_chain(&s.client, &s.ns, "holds").await.unwrap();
    assert_eq!(chain.len(), 1);
    places.push((
        "the hold's evidence".into(),
        serde_json::to_string(&chain.iter().map(|r| &r.record).collect::<Vec<_>>()).unwrap(),
    ));
    let metrics = eventually("/metrics", 30, async || {
        let resp = reqwest::get(format!("http://{}/metrics", operator.http)).await.ok()?;
        resp.status().is_success().then_some(())?;
        resp.text().await.ok()
    })
    .await;
    places.push(("/metrics".into(), metrics));
    for (place, text) in &places {
        for needle in [EMAIL, PHONE, "jansen", "612345678"] {
            assert!(!text.contains(needle), "{needle:?} leaked into {place}: {text}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_identity_of_an_access_request_reaches_logs_events_status_evidence_or_metrics() {
    const EMAIL: &str = "m.jansen@example.nl";
    const PHONE: &str = "+31612345679";
    let mut s = setup("pii-access").await;
    let table = support::unique("contacts").replace('-', "_");
    s.sql(format!(
        "CREATE TABLE {table} (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, email text, phone text);
         INSERT INTO {table} SELECT g, now(), 'other' || g || '@example.nl', NULL FROM generate_series(1, 5) g;
         INSERT INTO {table} VALUES (6, now(), '{EMAIL}', NULL), (7, now(), NULL, '{PHONE}');"
    ))
    .await;
    s.data_store("crm", s.pg.port().unwrap(), None).await;
    s.policy(
        "contacts",
        "crm",
        &table,
        "created_at",
        None,
        serde_json::json!([{"identity": "email", "field": "email"}, {"identity": "phone", "field": "phone"}]),
    )
    .await;
    s.api::<Secret>()
        .create(
            &PostParams::default(),
            &manifest(
                serde_json::json!({"metadata": {"name": "access-subject", "labels": {"delenda.dev/identity": "true"}},
                "stringData": {"email": EMAIL, "phone": PHONE}}),
            ),
        )
        .await
        .unwrap();
    let requests = s.api::<delenda::api::AccessRequest>();
    requests
        .create(
            &PostParams::default(),
            &manifest(serde_json::json!({
                "apiVersion": "delenda.dev/v1alpha1", "kind": "AccessRequest", "metadata": {"name": "inzage"},
                "spec": {"identitySecretRef": {"name": "access-subject"}, "receivedAt": "2026-11-30T09:00:00Z",
                    "identityVerification": {"verifiedBy": "privacy-office", "method": "KnownContactChannel"}}
            })),
        )
        .await
        .unwrap();
    let s3 = support::s3::store();
    let bucket = support::s3::new_bucket(&s3, false, false).await;
    let mut key = [0u8; 32];
    std::io::Read::read_exact(&mut File::open("/dev/urandom").unwrap(), &mut key).unwrap();
    let key_file = s.dir.path().join("installation-key");
    std::fs::write(&key_file, key).unwrap();
    let digester = delenda::engine::evidence::SubjectDigester::new(&key).unwrap().for_namespace(&s.ns);
    let settings = support::s3::settings();
    let envs = [
        ("DELENDA_ACCESS_EXPORT_ACCESS_KEY_ID", settings.access_key_id.clone()),
        ("DELENDA_ACCESS_EXPORT_SECRET_ACCESS_KEY", settings.secret_access_key.clone()),
    ];
    let endpoint = settings.endpoint.clone().unwrap();
    let operator = Operator::start_with(
        &s.ns,
        s.dir.path(),
        &format!("{}-op", s.ns),
        &[
            "--hmac-key-file",
            key_file.to_str().unwrap(),
            "--access-export-bucket",
            &bucket,
            "--access-export-endpoint",
            &endpoint,
            "--access-export-region",
            &settings.region,
            "--access-export-path-style",
        ],
        &envs,
    );
    let status = eventually("the export", 90, async || {
        operator.assert_running();
        let status = requests.get("inzage").await.ok()?.status?;
        (status.phase == Some(delenda::api::access::AccessPhase::Completed)).then_some(status)
    })
    .await;
    assert_eq!(status.records, Some(2), "the e-mail row and the phone row");
    // The export holds the identities, as it must; nothing else does.
    let keys = support::s3::keys(&s3, &bucket).await;
    assert_eq!(keys.len(), 2, "{keys:?}");
    let request = serde_json::to_string(&requests.get("inzage").await.unwrap()).unwrap();
    assert!(request.contains(&digester.digest("email", EMAIL)), "the request names the subject by digest");
    let log = eventually("the export's log line", 10, async || {
        let log = operator.output();
        log.contains("access request exported").then_some(log)
    })
    .await;
    let mut places: Vec<(String, String)> =
        vec![("the process's log".into(), log), ("the AccessRequest".into(), request)];
    let events = s.api::<Event>().list(&ListParams::default()).await.unwrap();
    assert!(events.items.iter().any(|e| e.reason.as_deref() == Some("AccessExported")));
    places.push(("the Events".into(), serde_json::to_string(&events).unwrap()));
    let chain = delenda::controller::evidence::read_chain(&s.client, &s.ns, "access-requests").await.unwrap();
    assert_eq!(chain.len(), 1);
    places.push((
        "the access evidence".into(),
        serde_json::to_string(&chain.iter().map(|r| &r.record).collect::<Vec<_>>()).unwrap(),
    ));
    let configmaps = s.api::<k8s_openapi::api::core::v1::ConfigMap>().list(&ListParams::default()).await.unwrap();
    places.push(("the ConfigMaps".into(), serde_json::to_string(&configmaps).unwrap()));
    let metrics = eventually("/metrics", 30, async || {
        let resp = reqwest::get(format!("http://{}/metrics", operator.http)).await.ok()?;
        resp.status().is_success().then_some(())?;
        resp.text().await.ok()
    })
    .await;
    places.push(("/metrics".into(), metrics));
    for (place, text) in &places {
        for needle in [EMAIL, PHONE, "jansen", "612345679"] {
            assert!(!text.contains(needle), "{needle:?} leaked into {place}: {text}");
        }
    }
}

impl Operator {
    /// Sends a signal (SIGTERM, SIGSTOP, SIGCONT) with kill(1).
    fn signal(&self, signal: &str) {
        let pid = self.child.lock().unwrap().id();
        let status = Command::new("kill").args([&format!("-{signal}"), &pid.to_string()]).status().unwrap();
        assert!(status.success(), "kill -{signal} {pid}");
    }

    /// Waits for the process to exit by itself, within `secs` seconds.
    fn exits_within(&self, secs: u64) -> std::process::ExitStatus {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(status) = self.child.lock().unwrap().try_wait().unwrap() {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{} did not exit within {secs} s:\n{}",
                self.name,
                self.output()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A table of `due` rows 400 days old, deleted at 20 a second.
async fn slow_run(s: &mut Setup, table: &str, due: i64) {
    s.sql(format!(
        "CREATE TABLE {table} (id bigint PRIMARY KEY, visited_at timestamptz NOT NULL);
         INSERT INTO {table} SELECT g, now() - interval '400 days' FROM generate_series(1, {due}) g;"
    ))
    .await;
    let pg_port = s.pg.port().unwrap();
    s.data_store("slow", pg_port, Some(serde_json::json!({"maxDeletesPerSecond": 20}))).await;
}

async fn wait_for_deletes(s: &mut Setup, table: &str, total: i64) {
    let started = std::time::Instant::now();
    loop {
        let left = s.count(format!("SELECT count(*) FROM {table}")).await;
        if left < total - 20 {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "the run never got going");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Issue 12, situation 2: SIGTERM mid-run stops the run after its batch in
/// flight, records it as Interrupted, and the process exits well within a
/// pod's grace period; the next instance starts the run afresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_run_interrupts_it_and_the_process_exits_promptly() {
    let mut s = setup("sigterm").await;
    let table = support::unique("visits").replace('-', "_");
    slow_run(&mut s, &table, 400).await;
    s.policy("visits", "slow", &table, "visited_at", Some("t1"), serde_json::json!([])).await;
    let first = Operator::start(&s.ns, s.dir.path(), &format!("{}-first", s.ns), &[]);
    wait_for_deletes(&mut s, &table, 400).await;
    let signalled = std::time::Instant::now();
    first.signal("TERM");
    let exit = first.exits_within(20);
    let took = signalled.elapsed();
    assert!(exit.success(), "{exit}: {}", first.output());
    assert!(took < Duration::from_secs(10), "exited {took:?} after SIGTERM; a pod's grace period is 30 s");
    let left_at_exit = s.count(format!("SELECT count(*) FROM {table}")).await;
    let status = s.policy_status("visits").await.unwrap();
    let run = status.last_run.clone().unwrap();
    assert_eq!(run.outcome.as_deref(), Some("Interrupted"), "{run:?}");
    assert_eq!(run.interrupted_by.as_deref(), Some("ShuttingDown"));
    assert!(status.current_run.is_none());
    assert_eq!(run.targets[0].records.deleted as i64, 400 - left_at_exit, "what it deleted is counted");
    assert!(left_at_exit > 0, "stopped before the end");

    // The next instance starts a new run at once and finishes it.
    let second = Operator::start(&s.ns, s.dir.path(), &format!("{}-second", s.ns), &[]);
    let status = eventually("the next run", 90, async || {
        second.assert_running();
        let status = s.policy_status("visits").await?;
        (status.history.len() == 2 && status.current_run.is_none()).then_some(status)
    })
    .await;
    assert_eq!(status.history[0].outcome, "Succeeded");
    assert_eq!(s.count(format!("SELECT count(*) FROM {table}")).await, 0);
    eprintln!("exited {took:?} after SIGTERM with {left_at_exit} rows left");
}

/// Issue 12, situation 3: a leader paused (SIGSTOP) past its lease is
/// replaced; when it runs again it deletes nothing more and writes nothing
/// over the new leader's status, because it checks its lease by its own
/// clock before every batch and every write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_paused_past_its_lease_deletes_nothing_more_when_it_wakes() {
    let mut s = setup("paused").await;
    let table = support::unique("visits").replace('-', "_");
    slow_run(&mut s, &table, 400).await;
    let leases: Api<k8s_openapi::api::coordination::v1::Lease> = s.api();
    let holder = async || leases.get_opt("delenda-controller").await.ok()??.spec?.holder_identity;
    let a = Operator::start(&s.ns, s.dir.path(), &format!("{}-a", s.ns), &[]);
    let a_name = format!("{}-a", s.ns);
    eventually("a to lead", 60, async || (holder().await? == a_name).then_some(())).await;
    let b = Operator::start(&s.ns, s.dir.path(), &format!("{}-b", s.ns), &[]);
    s.policy("visits", "slow", &table, "visited_at", Some("t1"), serde_json::json!([])).await;
    wait_for_deletes(&mut s, &table, 400).await;

    a.signal("STOP");
    let paused = std::time::Instant::now();
    let b_name = format!("{}-b", s.ns);
    eventually("b to take the lease", 60, async || (holder().await? == b_name).then_some(())).await;
    // b resumes a's run (same cutoff) and finishes it.
    let status = eventually("b to finish the run", 90, async || {
        b.assert_running();
        let status = s.policy_status("visits").await?;
        (status.current_run.is_none() && !status.history.is_empty()).then_some(status)
    })
    .await;
    assert_eq!(status.history[0].outcome, "Succeeded", "{:?}", status.last_run);
    assert_eq!(s.count(format!("SELECT count(*) FROM {table}")).await, 0);
    let written = s.api::<RetentionPolicy>().get("visits").await.unwrap().metadata.resource_version;

    // New due rows: a leader that did not check its lease would go on deleting them.
    s.sql(format!("INSERT INTO {table} SELECT g, now() - interval '400 days' FROM generate_series(1001, 1100) g"))
        .await;
    a.signal("CONT");
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(s.count(format!("SELECT count(*) FROM {table}")).await, 100, "a deleted after it woke");
    let after = s.api::<RetentionPolicy>().get("visits").await.unwrap();
    assert_eq!(after.metadata.resource_version, written, "a wrote over b's status");
    assert!(a.output().contains("no longer the leader"), "a says why it stopped:\n{}", a.output());
    eprintln!("a paused {:?}; b took over and finished", paused.elapsed());
}
