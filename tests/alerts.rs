//! The alerts of the chart's PrometheusRule and the Grafana dashboard,
//! judged by promtool against series the real operator exported.
//!
//! Each test runs the real `delenda controller` against the test API server
//! and PostgreSQL, makes the situations happen (an overdue ErasureRequest,
//! one due within a week, a policy whose store is down, one a guardrail
//! stopped, a DataStore that is not Ready, evidence the sink cannot take, a
//! standby alone), scrapes `/metrics`, and turns the scraped series into the
//! `input_series` of a `promtool test rules` file whose rules are the ones
//! `helm template` renders. Each alert must fire for exactly the objects it
//! should, with the labels and annotations the chart gives it, and for no
//! other.
mod support;

use support::{eventually, manifest};

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use delenda::api::{DataStore, ErasureRequest, RetentionPolicy, RetentionPolicyStatus};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::PostParams;
use serde_yaml::Value;
use sqlx::{Connection, PgConnection};

/// The promtool binary `tests/env/up promtool` built.
fn promtool() -> String {
    support::setting("PROMTOOL", "promtool")
}

/// How long the input series last, in one-minute steps, and when the
/// alerts are evaluated: past every rule's `for`.
const STEPS: u32 = 90;
const EVAL: &str = "45m";

// --- the operator --------------------------------------------------------

/// One `delenda controller` process; dropping it kills it (and prints the
/// tail of its log when a test panics).
struct Operator {
    name: String,
    child: Child,
    log: PathBuf,
    http: String,
}

impl Operator {
    fn start(ns: &str, dir: &Path, name: &str, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let log = dir.join(format!("{name}.log"));
        let http =
            format!("127.0.0.1:{}", std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port());
        let out = File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_delenda"))
            .args(["controller", "--namespace", ns, "--lease-namespace", ns, "--http-addr", &http])
            .args(extra)
            .env("KUBECONFIG", support::setting("KUBECONFIG", "kube-apiserver"))
            .env("POD_NAME", name)
            .env("RUST_LOG", "info,kube_runtime=warn")
            .env_remove("DELENDA_HMAC_KEY_FILE")
            .env_remove("DELENDA_HTTP_ADDR")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("the delenda binary starts");
        Self { name: name.to_owned(), child, log, http }
    }

    /// `/metrics` as Prometheus would scrape it, once the scrape shows
    /// `ready` (a predicate on the text); fails after `secs` seconds with
    /// the last scrape.
    async fn scrape_when(&mut self, what: &str, secs: u64, ready: impl Fn(&str) -> bool) -> Scrape {
        let url = format!("http://{}/metrics", self.http);
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
        let mut last = String::new();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("{} exited with {status}", self.name);
            }
            if let Ok(response) = reqwest::get(&url).await
                && let Ok(text) = response.text().await
            {
                if ready(&text) {
                    return Scrape { text, at: jiff::Timestamp::now(), instance: self.http.clone() };
                }
                last = text;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out after {secs}s waiting for {what}; the last scrape:\n{last}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let out = std::fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!("--- last lines of {} ---", self.name);
            for line in out.lines().rev().take(40).collect::<Vec<_>>().into_iter().rev() {
                eprintln!("{line}");
            }
        }
    }
}

// --- scraped series into promtool input ----------------------------------

/// One scrape of `/metrics`: its text, when, and from where.
struct Scrape {
    text: String,
    at: jiff::Timestamp,
    instance: String,
}

/// A sample of the text format: name, labels, value.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// The samples of a scrape (the text format: `name{k="v",...} value`).
fn samples(text: &str) -> Vec<Sample> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()) {
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("a sample without a value: {line}"));
        let value: f64 = value.parse().unwrap_or_else(|e| panic!("{e}: {line}"));
        let (name, labels) = match series.split_once('{') {
            None => (series.to_owned(), BTreeMap::new()),
            Some((name, rest)) => (name.to_owned(), parse_labels(rest.strip_suffix('}').expect("labels end with }"))),
        };
        out.push(Sample { name, labels, value });
    }
    out
}

fn parse_labels(mut rest: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"").expect("a label is key=\"value\"");
        let mut value = String::new();
        let mut chars = after.char_indices();
        let end = loop {
            match chars.next().expect("a label value ends with a quote") {
                (_, '\\') => match chars.next().unwrap().1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (i, '"') => break i,
                (_, c) => value.push(c),
            }
        };
        labels.insert(key.to_owned(), value);
        rest = after[end + 1..].trim_start_matches(',');
    }
    labels
}

fn series_text(name: &str, labels: &BTreeMap<String, String>) -> String {
    let inner: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")))
        .collect();
    format!("{name}{{{}}}", inner.join(","))
}

/// The scraped series as promtool `input_series`, as Prometheus would store
/// them when scraping the operator's pod in `release_ns` with the chart's
/// monitors: the target's `job` and `instance` added, and its `namespace`
/// where the series has none of its own (`honorLabels: true`). promtool's
/// clock starts at 0, the instant of the scrape: every `_timestamp_seconds`
/// value is moved by the scrape's Unix time, so `deadline - time()` is the
/// same in the test as it was in the cluster when scraped.
fn input_series(scrapes: &[&Scrape], release_ns: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for scrape in scrapes {
        let at = scrape.at.as_millisecond() as f64 / 1000.0;
        for s in samples(&scrape.text) {
            let mut labels = s.labels.clone();
            labels.entry("namespace".into()).or_insert_with(|| release_ns.to_owned());
            labels.insert("job".into(), "delenda".into());
            labels.insert("instance".into(), scrape.instance.clone());
            let value = if s.name.ends_with("_timestamp_seconds") { s.value - at } else { s.value };
            let mut entry = serde_yaml::Mapping::new();
            entry.insert("series".into(), series_text(&s.name, &labels).into());
            entry.insert("values".into(), format!("{value}+0x{STEPS}").into());
            out.push(Value::Mapping(entry));
        }
    }
    out
}

// --- the rules ----------------------------------------------------------

/// `spec` of the PrometheusRule the chart renders into `release_ns`: a
/// Prometheus rule file (`groups:`).
fn rendered_rules(release_ns: &str) -> Value {
    let chart = support::node::chart_dir();
    let out = support::node::helm(&[
        "template",
        "delenda",
        chart.to_str().unwrap(),
        "--namespace",
        release_ns,
        "--set",
        "prometheusRule.enabled=true",
        "--show-only",
        "templates/prometheusrule.yaml",
    ])
    .unwrap_or_else(|e| panic!("helm template: {e}"));
    let rule: Value = serde_yaml::from_str(&out).unwrap();
    assert_eq!(rule["kind"], "PrometheusRule");
    rule["spec"].clone()
}

/// Each alerting rule by name.
fn alert_rules(rules: &Value) -> BTreeMap<String, Value> {
    rules["groups"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_sequence().unwrap().iter())
        .filter_map(|r| Some((r["alert"].as_str()?.to_owned(), r.clone())))
        .collect()
}

/// The alerts the issue names, in the chart's spelling.
const ALERTS: [&str; 7] = [
    "DelendaErasureOverdue",
    "DelendaErasureDeadlineWithin7Days",
    "DelendaRetentionRunFailing",
    "DelendaGuardrailStopped",
    "DelendaDataStoreNotReady",
    "DelendaNoLeader",
    "DelendaEvidenceNotStored",
];

/// An annotation template with `{{ $labels.X }}` filled in, as Prometheus
/// expands it.
fn expand(template: &str, labels: &BTreeMap<String, String>) -> String {
    let mut out = template.to_owned();
    for (k, v) in labels {
        out = out.replace(&format!("{{{{ $labels.{k} }}}}"), v);
    }
    assert!(!out.contains("{{"), "an annotation uses more than $labels, which this test does not expand: {template}");
    out
}

/// One alert expected to fire: the series' labels (the rule adds its own).
type Firing = BTreeMap<String, String>;

fn labels(pairs: &[(&str, &str)]) -> Firing {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

/// A promtool test case: `expected` names, for every alert of the chart,
/// the alerts that must fire at EVAL (none, for an alert not named).
fn test_case(rules: &Value, input: Vec<Value>, expected: &BTreeMap<&str, Vec<Firing>>) -> Value {
    let by_name = alert_rules(rules);
    let mut checks = Vec::new();
    for (name, rule) in &by_name {
        let mut exp = Vec::new();
        for series in expected.get(name.as_str()).into_iter().flatten() {
            let mut all = series.clone();
            for (k, v) in rule["labels"].as_mapping().unwrap() {
                all.insert(k.as_str().unwrap().to_owned(), v.as_str().unwrap().to_owned());
            }
            let annotations: BTreeMap<String, String> = rule["annotations"]
                .as_mapping()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.as_str().unwrap().to_owned(), expand(v.as_str().unwrap(), series)))
                .collect();
            exp.push(
                serde_yaml::to_value(serde_json::json!({"exp_labels": all, "exp_annotations": annotations})).unwrap(),
            );
        }
        checks.push(serde_yaml::to_value(serde_json::json!({"eval_time": EVAL, "alertname": name})).unwrap());
        checks.last_mut().unwrap()["exp_alerts"] = Value::Sequence(exp);
    }
    for name in expected.keys() {
        assert!(by_name.contains_key(*name), "the chart has no alert {name}");
    }
    let mut case = serde_yaml::Mapping::new();
    case.insert("interval".into(), "1m".into());
    case.insert("input_series".into(), Value::Sequence(input));
    case.insert("alert_rule_test".into(), Value::Sequence(checks));
    Value::Mapping(case)
}

/// Runs `promtool test rules` on `cases` over `rules`; returns whether it
/// passed and what it said.
fn promtool_test(dir: &Path, label: &str, rules: &Value, cases: Vec<Value>) -> (bool, String) {
    let rule_file = dir.join(format!("{label}-rules.yaml"));
    std::fs::write(&rule_file, serde_yaml::to_string(rules).unwrap()).unwrap();
    let test = serde_yaml::to_value(serde_json::json!({
        "rule_files": [rule_file.to_str().unwrap()],
        "evaluation_interval": "1m",
    }))
    .unwrap();
    let mut test = test;
    test["tests"] = Value::Sequence(cases);
    let test_file = dir.join(format!("{label}-test.yaml"));
    std::fs::write(&test_file, serde_yaml::to_string(&test).unwrap()).unwrap();
    let out = support::reach(Command::new(promtool()).args(["test", "rules"]).arg(&test_file).output(), "promtool");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), format!("{said}\n(test file: {})", test_file.display()))
}

fn assert_passes(dir: &Path, label: &str, rules: &Value, cases: Vec<Value>) {
    let (ok, said) = promtool_test(dir, label, rules, cases);
    assert!(ok && said.contains("SUCCESS"), "promtool test rules failed ({label}):\n{said}");
}

// --- the cluster ---------------------------------------------------------

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
    let credentials = serde_json::json!({"metadata": {"name": "db-credentials"},
        "stringData": {"username": pg.username(), "password": pg.password().unwrap()}});
    secrets.create(&PostParams::default(), &manifest(credentials)).await.unwrap();
    Setup { client, ns, conn, pg, dir }
}

impl Setup {
    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
    {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// A table of `old` rows 400 days old and `recent` rows a day old.
    async fn table(&mut self, prefix: &str, old: u32, recent: u32) -> String {
        let table = support::unique(prefix).replace('-', "_");
        let sql = format!(
            "CREATE TABLE {table} (id bigint PRIMARY KEY, visited_at timestamptz NOT NULL);
             INSERT INTO {table} SELECT g, now() - interval '400 days' FROM generate_series(1, {old}) g;
             INSERT INTO {table} SELECT g, now() - interval '1 day' FROM generate_series({old} + 1, {old} + {recent}) g;"
        );
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut self.conn).await.unwrap();
        table
    }

    async fn data_store(&self, name: &str, port: u16) {
        let ds: DataStore = manifest(serde_json::json!({"apiVersion": "delenda.dev/v1alpha1", "kind": "DataStore",
            "metadata": {"name": name},
            "spec": {"postgres": {"host": "127.0.0.1", "port": port, "database": self.pg.path().trim_start_matches('/'),
                "credentialsSecret": {"name": "db-credentials"}, "tls": "Disable"}}}));
        self.api::<DataStore>().create(&PostParams::default(), &ds).await.unwrap();
    }

    /// An enforced policy over one table, asked to run now.
    async fn policy(&self, name: &str, store: &str, table: &str, guardrails: Option<serde_json::Value>) {
        let mut spec = serde_json::json!({"category": name, "description": name, "responsibleParty": "self",
            "legalBasis": "Contract", "retention": {"period": "30d"},
            "schedule": {"cron": "0 3 1 1 *", "timeZone": "Europe/Amsterdam"}, "mode": "Enforce",
            "targets": [{"name": "main", "dataStoreRef": {"name": store},
                "table": {"name": table, "timeColumn": "visited_at"}}]});
        if let Some(g) = guardrails {
            spec["guardrails"] = g;
        }
        let policy: RetentionPolicy = manifest(serde_json::json!({"apiVersion": "delenda.dev/v1alpha1",
            "kind": "RetentionPolicy", "metadata": {"name": name, "annotations": {"delenda.dev/run-now": "alerts"}},
            "spec": spec}));
        self.api::<RetentionPolicy>().create(&PostParams::default(), &policy).await.unwrap();
    }

    /// An ErasureRequest received `days_ago` days ago, with its identity
    /// Secret. No installation key is given to the operator, so it waits:
    /// what matters here is its deadline.
    async fn erasure_request(&self, name: &str, days_ago: i64) {
        let secret = serde_json::json!({"metadata": {"name": format!("{name}-identity"),
            "labels": {"delenda.dev/identity": "true"}}, "stringData": {"email": "subject@example.org"}});
        self.api::<Secret>().create(&PostParams::default(), &manifest(secret)).await.unwrap();
        let received = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24 * days_ago);
        let request: ErasureRequest = manifest(serde_json::json!({"apiVersion": "delenda.dev/v1alpha1",
            "kind": "ErasureRequest", "metadata": {"name": name},
            "spec": {"identitySecretRef": {"name": format!("{name}-identity")}, "ground": "ConsentWithdrawn",
                "receivedAt": received.to_string(),
                "identityVerification": {"verifiedBy": "privacy-office", "method": "IdentityDocument"}}}));
        self.api::<ErasureRequest>().create(&PostParams::default(), &request).await.unwrap();
    }

    async fn last_outcome(&self, name: &str) -> Option<String> {
        let status: RetentionPolicyStatus = self.api::<RetentionPolicy>().get(name).await.ok()?.status?;
        status.last_run?.outcome
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The value of the sample `name` whose labels include `with`.
fn value(scrape: &Scrape, name: &str, with: &[(&str, &str)]) -> Option<f64> {
    samples(&scrape.text)
        .into_iter()
        .find(|s| s.name == name && with.iter().all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v)))
        .map(|s| s.value)
}

// --- the tests -----------------------------------------------------------

#[test]
fn the_rendered_rules_pass_promtool_check_and_name_a_runbook_section_each() {
    let rules = rendered_rules("delenda-system");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rules.yaml");
    std::fs::write(&file, serde_yaml::to_string(&rules).unwrap()).unwrap();
    let out = support::reach(Command::new(promtool()).args(["check", "rules"]).arg(&file).output(), "promtool");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool check rules:\n{said}");
    assert!(said.contains(&format!("SUCCESS: {} rules found", ALERTS.len())), "{said}");

    let by_name = alert_rules(&rules);
    assert_eq!(by_name.keys().map(String::as_str).collect::<BTreeSet<_>>(), ALERTS.into_iter().collect());
    // Each runbook_url points at a section of docs/alerts.md, by the anchor
    // GitHub gives a heading (lower case, no spaces).
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/alerts.md")).unwrap();
    let anchors: BTreeSet<String> =
        doc.lines().filter_map(|l| l.strip_prefix("### ")).map(|h| h.trim().to_lowercase()).collect();
    for (name, rule) in &by_name {
        let url = rule["annotations"]["runbook_url"].as_str().unwrap_or_else(|| panic!("{name} has no runbook_url"));
        let (page, anchor) = url.split_once('#').unwrap_or_else(|| panic!("{name}: {url} names no section"));
        assert!(page.ends_with("/docs/alerts.md"), "{name}: {url}");
        assert_eq!(anchor, name.to_lowercase(), "{name}: {url}");
        assert!(anchors.contains(anchor), "docs/alerts.md has no section {anchor} for {name}");
        for key in ["summary", "description"] {
            assert!(rule["annotations"][key].as_str().is_some_and(|s| !s.is_empty()), "{name} has no {key}");
        }
        assert!(["critical", "warning"].contains(&rule["labels"]["severity"].as_str().unwrap_or_default()), "{name}");
    }
    // The PrometheusRule exists only when asked for.
    let chart = support::node::chart_dir();
    let off = support::node::helm(&["template", "delenda", chart.to_str().unwrap()]).unwrap();
    assert!(!off.contains("kind: PrometheusRule"), "a PrometheusRule is rendered by default");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_alert_fires_for_the_objects_in_its_situation_and_no_other() {
    let mut s = setup("alerts").await;
    let visits = s.table("visits", 5, 5).await;
    let capped = s.table("capped", 5, 0).await;
    s.data_store("analytics", s.pg.port().unwrap()).await;
    // Nothing listens on this port: the store is down.
    s.data_store("down", free_port()).await;
    s.policy("visits", "analytics", &visits, None).await;
    s.policy("broken", "down", &visits, None).await;
    s.policy("capped", "analytics", &capped, Some(serde_json::json!({"maxRecordsPerRun": 2}))).await;
    s.erasure_request("overdue", 40).await;
    s.erasure_request("soon", 27).await;
    s.erasure_request("fresh", 1).await;

    let mut operator = Operator::start(&s.ns, s.dir.path(), &format!("{}-leader", s.ns), &[], &[]);
    for (policy, outcome) in [("visits", "Succeeded"), ("broken", "Failed"), ("capped", "Stopped")] {
        let said = eventually(&format!("the run of {policy}"), 90, async || s.last_outcome(policy).await).await;
        assert_eq!(said, outcome, "policy {policy}");
    }
    let scrape = operator
        .scrape_when("the metrics of every object", 60, |t| {
            t.contains("delenda_leader 1")
                && t.contains(r#"delenda_datastore_ready{namespace=""#)
                && t.lines().filter(|l| l.starts_with("delenda_policy_last_run_outcome{")).count() == 12
                && t.lines().filter(|l| l.starts_with("delenda_erasure_request_deadline_timestamp_seconds{")).count()
                    == 3
                && samples(t).iter().any(|s| s.name == "delenda_datastore_ready" && s.value == 0.0)
        })
        .await;
    let ns = s.ns.as_str();
    fn object<'a>(ns: &'a str, name: &'a str) -> [(&'a str, &'a str); 2] {
        [("namespace", ns), ("name", name)]
    }
    // The metrics say what the cluster says.
    assert_eq!(value(&scrape, "delenda_datastore_ready", &object(ns, "analytics")), Some(1.0));
    assert_eq!(value(&scrape, "delenda_datastore_ready", &object(ns, "down")), Some(0.0));
    assert_eq!(value(&scrape, "delenda_policy_compliant", &object(ns, "visits")), Some(1.0));
    assert_eq!(value(&scrape, "delenda_policy_records_remaining", &object(ns, "visits")), Some(0.0));
    assert_eq!(value(&scrape, "delenda_records_deleted_total", &[("store_type", "postgres")]), Some(5.0));
    let status = s.api::<RetentionPolicy>().get("visits").await.unwrap().status.unwrap();
    let deleted: u64 = status.last_run.unwrap().targets.iter().map(|t| t.records.deleted).sum();
    assert_eq!(value(&scrape, "delenda_policy_last_run_records_deleted", &object(ns, "visits")), Some(deleted as f64));
    assert!(value(&scrape, "delenda_policy_consecutive_failed_runs", &object(ns, "broken")).unwrap() >= 1.0);
    assert_eq!(value(&scrape, "delenda_erasure_requests_overdue", &[]), Some(1.0));
    let now = scrape.at.as_second() as f64;
    let last_success = value(&scrape, "delenda_policy_last_success_timestamp_seconds", &object(ns, "visits")).unwrap();
    assert!((now - 300.0..=now).contains(&last_success), "the run succeeded in the last minutes: {last_success}");
    assert_eq!(value(&scrape, "delenda_policy_last_success_timestamp_seconds", &object(ns, "broken")), None);
    let deadline =
        value(&scrape, "delenda_erasure_request_deadline_timestamp_seconds", &object(ns, "overdue")).unwrap();
    assert!(deadline < now - 5.0 * 86400.0, "40 days ago plus a month is past: {deadline}");
    // No identity reaches the metrics.
    assert!(!scrape.text.contains("subject@example.org"));

    let rules = rendered_rules(ns);
    let series = |name: &str, extra: &[(&str, &str)]| {
        let mut l = labels(&[("namespace", ns), ("name", name), ("job", "delenda"), ("instance", &scrape.instance)]);
        l.extend(labels(extra));
        l
    };
    let expected: BTreeMap<&str, Vec<Firing>> = BTreeMap::from([
        ("DelendaErasureOverdue", vec![series("overdue", &[])]),
        ("DelendaErasureDeadlineWithin7Days", vec![series("soon", &[])]),
        ("DelendaRetentionRunFailing", vec![series("broken", &[])]),
        ("DelendaGuardrailStopped", vec![series("capped", &[("outcome", "Stopped")])]),
        ("DelendaDataStoreNotReady", vec![series("down", &[("store_type", "postgres")])]),
    ]);
    let input = input_series(&[&scrape], ns);
    assert_passes(s.dir.path(), "situations", &rules, vec![test_case(&rules, input.clone(), &expected)]);

    // The same file with one expectation wrong fails: promtool checks what
    // this test says it checks.
    let mut wrong = expected.clone();
    wrong.insert("DelendaErasureOverdue", vec![series("soon", &[])]);
    let (ok, said) = promtool_test(s.dir.path(), "wrong", &rules, vec![test_case(&rules, input, &wrong)]);
    assert!(!ok, "a wrong expectation passed:\n{said}");
    assert!(said.contains("DelendaErasureOverdue"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn evidence_the_sink_cannot_take_and_a_lone_standby_alert_and_a_takeover_exports_the_same() {
    let mut s = setup("alerts-sink").await;
    let visits = s.table("visits", 3, 1).await;
    s.data_store("analytics", s.pg.port().unwrap()).await;
    s.policy("visits", "analytics", &visits, None).await;
    // A sink where nothing listens: every record is sealed in the cluster
    // and waits for the sink.
    let sink = format!("http://127.0.0.1:{}", free_port());
    let flags = ["--evidence-sink-bucket", "evidence", "--evidence-sink-endpoint", &sink, "--evidence-sink-path-style"];
    let creds =
        [("DELENDA_EVIDENCE_SINK_ACCESS_KEY_ID", "nobody"), ("DELENDA_EVIDENCE_SINK_SECRET_ACCESS_KEY", "nothing")];
    let mut leader = Operator::start(&s.ns, s.dir.path(), &format!("{}-leader", s.ns), &flags, &creds);
    let scrape = leader
        .scrape_when("the evidence of the run, not stored", 120, |t| {
            // The gauge's line with value 0 (prometheus-client writes it as 0.0).
            t.contains("delenda_leader 1")
                && t.lines().any(|l| {
                    l.starts_with("delenda_evidence_stored{")
                        && l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) == Some(0.0)
                })
        })
        .await;
    let ns = s.ns.as_str();
    assert_eq!(
        value(
            &scrape,
            "delenda_evidence_stored",
            &[("namespace", ns), ("name", "visits"), ("kind", "RetentionPolicy")]
        ),
        Some(0.0),
        "{}",
        scrape.text
    );
    // Elected replicas only: a standby waits for the lease.
    let mut standby = Operator::start(&s.ns, s.dir.path(), &format!("{}-standby", s.ns), &flags, &creds);
    let alone = standby.scrape_when("the standby's metrics", 60, |t| t.contains("delenda_leader 0")).await;
    assert!(!alone.text.contains("delenda_evidence_stored{"), "a standby exports no object metrics:\n{}", alone.text);

    let rules = rendered_rules(ns);
    let stored_labels = labels(&[
        ("namespace", ns),
        ("name", "visits"),
        ("kind", "RetentionPolicy"),
        ("job", "delenda"),
        ("instance", &scrape.instance),
    ]);
    // Leader and standby scraped: evidence not stored, and a leader.
    let both = BTreeMap::from([("DelendaEvidenceNotStored", vec![stored_labels])]);
    // The standby alone: no replica leads (the sum is 0, so no labels).
    let only_standby = BTreeMap::from([("DelendaNoLeader", vec![Firing::new()])]);
    // Nothing scraped at all: no leader either (absent, in the release's namespace).
    let nothing = BTreeMap::from([("DelendaNoLeader", vec![labels(&[("namespace", ns)])])]);
    assert_passes(
        s.dir.path(),
        "leader",
        &rules,
        vec![
            test_case(&rules, input_series(&[&scrape, &alone], ns), &both),
            test_case(&rules, input_series(&[&alone], ns), &only_standby),
            test_case(&rules, Vec::new(), &nothing),
        ],
    );

    // The leader dies; the standby takes over and exports the same values
    // at once: they come from the cluster, not from what it saw happen.
    drop(leader);
    let taken = standby
        .scrape_when("the standby to lead and export the object metrics", 60, |t| {
            t.contains("delenda_leader 1") && t.contains("delenda_evidence_stored{")
        })
        .await;
    assert_eq!(
        value(&taken, "delenda_evidence_stored", &[("namespace", ns), ("name", "visits"), ("kind", "RetentionPolicy")]),
        Some(0.0),
        "{}",
        taken.text
    );
    for name in ["delenda_policy_last_run_timestamp_seconds", "delenda_policy_last_success_timestamp_seconds"] {
        assert_eq!(
            value(&taken, name, &[("namespace", ns), ("name", "visits")]),
            value(&scrape, name, &[("namespace", ns), ("name", "visits")]),
            "{name} after the takeover"
        );
    }
    drop(standby);
}

/// Every PromQL expression of the Grafana dashboard, with Grafana's
/// `$__rate_interval` made a plain range.
fn dashboard_expressions() -> Vec<(String, String)> {
    let path = support::node::chart_dir().join("dashboards/delenda.json");
    let dashboard: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut out = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().unwrap_or_else(|| panic!("a target without expr: {target}"));
            out.push((panel["title"].as_str().unwrap().to_owned(), expr.replace("$__rate_interval", "5m")));
        }
    }
    out
}

/// The `delenda_*` metric names an expression reads.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = expr;
    while let Some(at) = rest.find("delenda_") {
        let name: String =
            rest[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':').collect();
        rest = &rest[at + name.len()..];
        names.insert(name);
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_reads_only_metrics_the_operator_exports_in_valid_promql() {
    let exprs = dashboard_expressions();
    assert!(exprs.len() >= 15, "{exprs:?}");

    // promtool parses each expression (as a recording rule).
    let rules: Vec<serde_json::Value> = exprs
        .iter()
        .enumerate()
        .map(|(i, (_, expr))| serde_json::json!({"record": format!("dashboard:panel_{i}"), "expr": expr}))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("dashboard-rules.yaml");
    let body = serde_json::json!({"groups": [{"name": "dashboard", "rules": rules}]});
    std::fs::write(&file, serde_yaml::to_string(&body).unwrap()).unwrap();
    let out = support::reach(Command::new(promtool()).args(["check", "rules"]).arg(&file).output(), "promtool");
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "promtool check rules on the dashboard's expressions:\n{said}");

    // The real operator, with something of every kind to export.
    let mut s = setup("dashboard").await;
    let visits = s.table("visits", 3, 1).await;
    s.data_store("analytics", s.pg.port().unwrap()).await;
    s.policy("visits", "analytics", &visits, None).await;
    s.erasure_request("open", 2).await;
    let mut operator = Operator::start(&s.ns, s.dir.path(), &format!("{}-leader", s.ns), &[], &[]);
    let outcome = eventually("the run of visits", 90, async || s.last_outcome("visits").await).await;
    assert_eq!(outcome, "Succeeded");
    let scrape = operator
        .scrape_when("the metrics of the run", 60, |t| {
            t.contains("delenda_records_deleted_total{") && t.contains("delenda_evidence_stored{")
        })
        .await;
    let exported: BTreeSet<String> = samples(&scrape.text).into_iter().map(|s| s.name).collect();
    let mut read = BTreeSet::new();
    for (title, expr) in &exprs {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "panel {title:?} reads no delenda metric: {expr}");
        for name in names {
            assert!(
                exported.contains(&name),
                "panel {title:?} reads {name}, which the operator does not export: {expr}\nexported: {exported:?}"
            );
            read.insert(name);
        }
    }
    // And the dashboard shows each object metric the alerts use.
    for name in [
        "delenda_erasure_request_deadline_timestamp_seconds",
        "delenda_policy_last_run_outcome",
        "delenda_policy_compliant",
        "delenda_policy_records_remaining",
        "delenda_records_deleted_total",
        "delenda_datastore_ready",
        "delenda_leader",
        "delenda_evidence_stored",
    ] {
        assert!(read.contains(name), "no panel shows {name}");
    }
}

#[test]
fn the_values_docs_gitops_md_shows_render_the_alerts_the_monitor_and_the_dashboard() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("docs/gitops.md")).unwrap();
    let section = doc.split("\n## Alerts\n").nth(1).expect("docs/gitops.md has an Alerts section");
    let block = section.split("```yaml\n").nth(1).and_then(|b| b.split("```").next()).expect("a yaml block");
    let dir = tempfile::tempdir().unwrap();
    let values = dir.path().join("values.yaml");
    std::fs::write(&values, block).unwrap();
    let chart = support::node::chart_dir();
    let out = support::node::helm(&["template", "delenda", chart.to_str().unwrap(), "-f", values.to_str().unwrap()])
        .unwrap_or_else(|e| panic!("helm template with the values of docs/gitops.md: {e}"));
    let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&out)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &Value| !v.is_null())
        .collect();
    let kind = |k: &str| docs.iter().find(|d| d["kind"] == k).unwrap_or_else(|| panic!("no {k} rendered"));
    let rule = kind("PrometheusRule");
    assert_eq!(rule["metadata"]["labels"]["release"], "prometheus");
    for r in rule["spec"]["groups"][0]["rules"].as_sequence().unwrap() {
        assert_eq!(r["labels"]["team"], "privacy", "{:?}", r["alert"]);
    }
    kind("ServiceMonitor");
    assert!(docs.iter().any(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == "delenda-dashboard"));
}
