//! `kubectl delenda` (issue 15, item 7): the real binary, by the name
//! `kubectl-delenda` and through the real `kubectl` finding it on PATH,
//! against the test kube-apiserver and PostgreSQL with the operator
//! running in process: status at a glance, a run now, an erasure filed
//! without its identity passing through Git (and never printed), and the
//! evidence verified and certified from the cluster.
mod support;

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use delenda::api::erasure::ErasurePhase;
use delenda::api::hold::HoldPhase;
use delenda::api::{AccessRequest, ErasureRequest, Hold};
use delenda::controller::evidence::{KEY, policy_chain, segment_name};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Api;
use kube::api::PostParams;
use support::cluster::{EMAIL, Fixture, table_sql};

/// A directory holding `kubectl-delenda`, a link to the built binary.
struct PluginDir(tempfile::TempDir);

impl PluginDir {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_delenda"), dir.path().join("kubectl-delenda")).unwrap();
        Self(dir)
    }

    fn plugin(&self) -> PathBuf {
        self.0.path().join("kubectl-delenda")
    }

    /// PATH with the plugin's directory first, as a user installs it.
    fn path(&self) -> String {
        format!("{}:{}", self.0.path().display(), std::env::var("PATH").unwrap_or_default())
    }
}

async fn output(mut cmd: tokio::process::Command, stdin: Option<&str>) -> Output {
    use tokio::io::AsyncWriteExt;
    cmd.env("KUBECONFIG", support::setting("KUBECONFIG", "kube-apiserver"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("the plugin starts");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or_default().as_bytes()).await.unwrap();
    drop(input);
    child.wait_with_output().await.unwrap()
}

/// `kubectl-delenda ARGS` run directly.
async fn plugin(dir: &PluginDir, args: &[&str]) -> Output {
    let mut cmd = tokio::process::Command::new(dir.plugin());
    cmd.args(args);
    output(cmd, None).await
}

/// `kubectl delenda ARGS`, kubectl finding the plugin on PATH.
async fn kubectl(dir: &PluginDir, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = tokio::process::Command::new("kubectl");
    cmd.arg("delenda").args(args).env("PATH", dir.path());
    output(cmd, stdin).await
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn succeeded(out: &Output, what: &str) -> String {
    assert!(out.status.success(), "{what}: {}", text(out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The row of the table in `section` whose NAME column is `name`, by column.
fn row(out: &str, section: &str, name: &str) -> std::collections::BTreeMap<String, String> {
    let lines: Vec<&str> = out.lines().skip_while(|l| *l != section).skip(1).take_while(|l| !l.is_empty()).collect();
    let header = lines[0];
    let starts: Vec<(usize, &str)> = header.match_indices(|c: char| c != ' ').fold(vec![], |mut acc, (i, _)| {
        if i == 0 || header[..i].ends_with("  ") {
            let end = header[i..].find("  ").map_or(header.len(), |e| i + e);
            acc.push((i, &header[i..end]));
        }
        acc
    });
    let line = lines[1..]
        .iter()
        .find(|l| l.get(starts[1].0..).is_some_and(|rest| rest.split("  ").next() == Some(name)))
        .unwrap_or_else(|| panic!("no row {name} in {section}:\n{out}"));
    starts
        .iter()
        .enumerate()
        .map(|(i, (at, column))| {
            let end = starts.get(i + 1).map_or(line.len(), |n| n.0.min(line.len()));
            (column.to_string(), line.get(*at..end).unwrap_or_default().trim().to_owned())
        })
        .collect()
}

async fn with_policy(prefix: &str) -> (Fixture, String) {
    let mut f = Fixture::new(prefix, None).await;
    let table = support::unique("contacts").replace('-', "_");
    f.sql(&table_sql(&table, 2, 1)).await;
    // One record of the subject's past the two-year period.
    f.sql(&format!("UPDATE {table} SET created_at = now() - interval '3 years' WHERE id = 1")).await;
    f.policy("contacts", "self", &[("contacts", &table, "email")]).await;
    (f, table)
}

async fn rows(f: &mut Fixture, table: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}"))).fetch_one(&mut f.pg).await.unwrap()
}

#[tokio::test]
async fn run_now_through_kubectl_runs_the_policy_and_reports_its_outcome() {
    let (mut f, table) = with_policy("plugin-run").await;
    let operator = f.operator(true, Duration::from_secs(60));
    f.policy_when("contacts", "the policy to be validated", 60, |s| !s.conditions.is_empty()).await;
    let dir = PluginDir::new();
    let out = kubectl(&dir, &["run-now", "contacts", "-n", &f.ns, "--token", "by-hand", "--wait"], None).await;
    let stdout = succeeded(&out, "kubectl delenda run-now");
    assert!(stdout.contains("retentionpolicy/contacts: run requested (delenda.dev/run-now=by-hand)"), "{stdout}");
    assert!(stdout.contains(": Succeeded, 1 records deleted"), "{stdout}");
    assert_eq!(rows(&mut f, &table).await, 2, "the record past the period was deleted, no other");
    let status = f.policy_when("contacts", "the answered token", 10, |s| s.run_now_answered.is_some()).await;
    assert_eq!(status.run_now_answered.as_deref(), Some("by-hand"));

    // The same value again is refused, with the reason: it would not run.
    let again = plugin(&dir, &["run-now", "contacts", "-n", &f.ns, "--token", "by-hand"]).await;
    assert!(!again.status.success());
    assert!(text(&again).contains("was answered already"), "{}", text(&again));
    operator.stop().await;
}

#[tokio::test]
async fn status_shows_runs_deadlines_and_what_is_overdue_at_a_glance() {
    let (f, _table) = with_policy("plugin-status").await;
    let notes = support::unique("notes").replace('-', "_");
    // A second policy whose table is missing: requests in its scope fail.
    f.policy("notes", "self", &[("notes", &notes, "email")]).await;
    let operator = f.operator(true, Duration::from_secs(60));
    f.policy_when("contacts", "the policy to be validated", 60, |s| !s.conditions.is_empty()).await;
    let dir = PluginDir::new();
    succeeded(&plugin(&dir, &["run-now", "contacts", "-n", &f.ns, "--wait"]).await, "run-now");
    let policy = f.policy_when("contacts", "the run's end", 10, |s| s.last_run.is_some()).await;
    // After the run, which deleted the subject's one record past the period.
    f.identity_secret("subject", serde_json::json!({"email": EMAIL})).await;
    f.identity_secret("late-subject", serde_json::json!({"email": EMAIL})).await;
    f.request("on-time", "subject", serde_json::json!({"scope": {"categories": ["contacts"]}})).await;
    let long_ago = (jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24 * 40)).to_string();
    f.request("late", "late-subject", serde_json::json!({"receivedAt": long_ago, "scope": {"categories": ["notes"]}}))
        .await;
    f.identity_secret("waiting-subject", serde_json::json!({"email": EMAIL})).await;
    f.request("waiting", "waiting-subject", serde_json::json!({"scope": {"categories": ["notes"]}})).await;
    f.status_when("on-time", "the request to complete", 60, |s| s.phase == Some(ErasurePhase::Completed)).await;
    f.status_when("waiting", "the request to fail", 60, |s| s.phase == Some(ErasurePhase::Failed)).await;
    let late_status = f
        .status_when("late", "the late request to fail", 60, |s| {
            s.phase == Some(ErasurePhase::Failed)
                && s.conditions.iter().any(|c| c.type_ == "Stalled" && c.status == "True")
        })
        .await;
    // A litigation hold on the category, placed after the erasures, and an
    // access request (no export destination here: it waits).
    let holds: Api<Hold> = f.api();
    let hold = serde_json::json!({"apiVersion": "delenda.dev/v1alpha1", "kind": "Hold", "metadata": {"name": "dispute"},
        "spec": {"scope": {"categories": ["contacts"]}, "reason": "LegalClaim", "placedBy": "legal-team"}});
    holds.create(&PostParams::default(), &support::manifest(hold)).await.unwrap();
    f.identity_secret("access-subject", serde_json::json!({"email": EMAIL})).await;
    let access: Api<AccessRequest> = f.api();
    let request = serde_json::json!({"apiVersion": "delenda.dev/v1alpha1", "kind": "AccessRequest",
        "metadata": {"name": "inzage"}, "spec": {"identitySecretRef": {"name": "access-subject"},
        "receivedAt": jiff::Timestamp::now().to_string(),
        "identityVerification": {"verifiedBy": "privacy-office", "method": "KnownContactChannel"}}});
    access.create(&PostParams::default(), &support::manifest(request)).await.unwrap();
    let held = support::eventually("the hold to be placed", 60, async || {
        let s = holds.get("dispute").await.ok()?.status?;
        (s.phase == Some(HoldPhase::Active)).then_some(s)
    })
    .await;
    support::eventually("the access request to be looked at", 60, async || {
        access.get("inzage").await.ok()?.status.filter(|s| !s.conditions.is_empty())
    })
    .await;
    operator.stop().await;

    let out = succeeded(&kubectl(&dir, &["status", "-n", &f.ns], None).await, "kubectl delenda status");
    let contacts = row(&out, "RETENTION POLICIES", "contacts");
    assert_eq!(contacts["STANDING"], "Ready (Verified)", "{out}");
    assert_eq!(contacts["OUTCOME"], "Succeeded", "{out}");
    assert_eq!(contacts["DELETED"], "1", "{out}");
    assert_eq!(contacts["MODE"], "Enforce", "{out}");
    let next = policy.next_run.unwrap().0.strftime("%Y-%m-%d %H:%M:%SZ").to_string();
    assert_eq!(contacts["NEXT RUN"], next, "{out}");
    let finished = policy.last_run.unwrap().finished_at.unwrap().0.strftime("%Y-%m-%d %H:%M:%SZ").to_string();
    assert_eq!(contacts["LAST RUN"], finished, "{out}");
    assert_eq!(row(&out, "RETENTION POLICIES", "notes")["OUTCOME"], "-", "never ran: {out}");

    let on_time = row(&out, "ERASURE REQUESTS", "on-time");
    assert_eq!((on_time["PHASE"].as_str(), on_time["ERASED"].as_str()), ("Completed", "1"), "{out}");
    assert_eq!(on_time["OVERDUE"], "no", "{out}");
    let late = row(&out, "ERASURE REQUESTS", "late");
    assert_eq!((late["PHASE"].as_str(), late["OVERDUE"].as_str()), ("Failed", "yes"), "{out}");
    assert!(late["STANDING"].starts_with("Stalled (DeadlinePassed)"), "{out}");
    let waiting = row(&out, "ERASURE REQUESTS", "waiting");
    assert_eq!(waiting["PHASE"], "Failed", "{out}");
    // A calendar month (28 to 31 days) less the seconds since receipt,
    // which may be none: 27 to 31 whole days (31 from a 1 December).
    let left: i64 = waiting["OVERDUE"]
        .strip_prefix("no (")
        .and_then(|r| r.strip_suffix(" days left)"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert!((27..=31).contains(&left), "{out}");
    let deadline = late_status.deadline.unwrap().0;
    assert!(deadline < jiff::Timestamp::now(), "a month after receipt, in the past");
    assert_eq!(late["DEADLINE"], deadline.strftime("%Y-%m-%d %H:%M:%SZ").to_string(), "{out}");
    assert!(!out.contains(EMAIL), "no identity in the status");

    let dispute = row(&out, "HOLDS", "dispute");
    assert_eq!((dispute["PHASE"].as_str(), dispute["REASON"].as_str()), ("Active", "LegalClaim"), "{out}");
    assert_eq!(dispute["ENDS"], "until lifted", "{out}");
    assert_eq!(dispute["HELD"], held.held.unwrap().to_string(), "{out}");
    let placed = held.placed_at.unwrap().0.strftime("%Y-%m-%d %H:%M:%SZ").to_string();
    assert_eq!(dispute["PLACED"], placed, "{out}");
    let inzage = row(&out, "ACCESS REQUESTS", "inzage");
    assert_eq!(inzage["PHASE"], "Pending", "without an export destination it waits: {out}");
    assert!(inzage["STANDING"].contains("NoExportDestination"), "{out}");
    assert!(inzage["OVERDUE"].starts_with("no ("), "a month to go: {out}");
    assert_eq!((inzage["RECORDS"].as_str(), inzage["EXPORT EXPIRES"].as_str()), ("-", "-"), "{out}");

    // Every namespace: this one's rows among the others'.
    let all = succeeded(&plugin(&dir, &["status", "-A"]).await, "status -A");
    let contacts = row(&all, "RETENTION POLICIES", "contacts");
    assert!(!contacts["NAMESPACE"].is_empty(), "{all}");
    assert!(all.lines().any(|l| l.starts_with(&f.ns) && l.contains("on-time")), "{all}");
}

#[tokio::test]
async fn erase_files_the_secret_and_the_request_in_one_step_and_never_prints_the_identity() {
    let (mut f, table) = with_policy("plugin-erase").await;
    let operator = f.operator(true, Duration::from_secs(60));
    let dir = PluginDir::new();
    let phone = "+31 6 1234 5678";
    let out = kubectl(
        &dir,
        &[
            "erase",
            "req-42",
            "-n",
            &f.ns,
            "--identity",
            &format!("phone={phone}"),
            "--identity-from-stdin",
            "email",
            "--ground",
            "ConsentWithdrawn",
            "--verified-by",
            "privacy-office",
            "--verification-method",
            "AuthenticatedAccount",
            "--keep-identity-secret",
        ],
        Some(&format!("{EMAIL}\n")),
    )
    .await;
    let stdout = succeeded(&out, "kubectl delenda erase");
    assert!(stdout.contains("secret/req-42-identity created (identities: phone, email)"), "{stdout}");
    assert!(stdout.contains("erasurerequest/req-42 created"), "{stdout}");
    assert!(!text(&out).contains(EMAIL) && !text(&out).contains(phone), "no identity printed: {}", text(&out));

    let secrets: Api<Secret> = f.api();
    let secret = secrets.get("req-42-identity").await.unwrap();
    assert_eq!(secret.metadata.labels.as_ref().unwrap()["delenda.dev/identity"], "true");
    let data = secret.data.unwrap();
    assert_eq!(data["email"].0, EMAIL.as_bytes(), "read from stdin without its newline");
    assert_eq!(data["phone"].0, phone.as_bytes());
    let requests: Api<ErasureRequest> = f.api();
    let request = requests.get("req-42").await.unwrap();
    assert_eq!(request.spec.identity_secret_ref.name, "req-42-identity");
    assert!(!request.spec.delete_identity_secret, "--keep-identity-secret");
    let status =
        f.status_when("req-42", "the request to complete", 60, |s| s.phase == Some(ErasurePhase::Completed)).await;
    assert_eq!(status.summary.unwrap().erased, 2, "both of the subject's records");
    assert_eq!(f.count(&table).await, 0);

    // --dry-run files a request in mode DryRun, which the operator previews.
    let out = plugin(
        &dir,
        &[
            "erase",
            "preview",
            "-n",
            &f.ns,
            "--identity",
            &format!("email={EMAIL}"),
            "--ground",
            "Objection",
            "--verified-by",
            "privacy-office",
            "--verification-method",
            "InPerson",
            "--dry-run",
        ],
    )
    .await;
    assert!(succeeded(&out, "erase --dry-run").contains("erasurerequest/preview created (dry run)"));
    assert!(!text(&out).contains(EMAIL), "{}", text(&out));
    let preview = requests.get("preview").await.unwrap();
    assert_eq!(preview.spec.mode, delenda::api::Mode::DryRun);
    assert!(preview.spec.delete_identity_secret, "deleted after the request unless --keep-identity-secret");
    f.status_when("preview", "the preview", 60, |s| s.phase == Some(ErasurePhase::Previewed)).await;
    operator.stop().await;
}

#[tokio::test]
async fn erase_refuses_bad_input_clearly_and_leaves_no_identity_behind() {
    let f = Fixture::new("plugin-erase-bad", None).await;
    let dir = PluginDir::new();
    let base = |name: &'static str, ground: &'static str| {
        vec![
            "erase",
            name,
            "--identity",
            "email=anna.de.vries@example.nl",
            "--ground",
            ground,
            "--verified-by",
            "office",
            "--verification-method",
            "InPerson",
        ]
    };
    let mut args = base("bad-ground", "BecauseISaidSo");
    args.extend(["-n", &f.ns]);
    let out = plugin(&dir, &args).await;
    assert!(!out.status.success());
    assert!(text(&out).contains("--ground \"BecauseISaidSo\" is not one of: NoLongerNecessary"), "{}", text(&out));
    assert!(!text(&out).contains(EMAIL), "{}", text(&out));

    // A request the API server refuses (its name is taken) is refused
    // before any identity is stored.
    f.identity_secret("other", serde_json::json!({"email": EMAIL})).await;
    f.request("taken", "other", serde_json::json!({})).await;
    let mut args = base("taken", "Objection");
    args.extend(["-n", &f.ns]);
    let out = plugin(&dir, &args).await;
    assert!(!out.status.success());
    assert!(text(&out).contains("the ErasureRequest"), "{}", text(&out));
    assert!(text(&out).contains("already exists") && text(&out).contains("nothing was created"), "{}", text(&out));
    assert!(!text(&out).contains(EMAIL), "{}", text(&out));
    let secrets: Api<Secret> = f.api();
    assert!(secrets.get_opt("taken-identity").await.unwrap().is_none(), "no identity left behind");

    // One the CRD's rules refuse (a verifier name the schema does not take) likewise.
    let mut args = base("bad-verifier", "Objection");
    let long = "x".repeat(300);
    args[7] = &long;
    args.extend(["-n", &f.ns]);
    let out = plugin(&dir, &args).await;
    assert!(!out.status.success());
    assert!(text(&out).contains("is refused") && text(&out).contains("nothing was created"), "{}", text(&out));
    assert!(secrets.get_opt("bad-verifier-identity").await.unwrap().is_none(), "no identity left behind");
    assert!(!text(&out).contains(EMAIL), "{}", text(&out));
}

#[tokio::test]
async fn evidence_verify_and_certificate_read_the_chain_from_the_cluster() {
    let (f, _table) = with_policy("plugin-evidence").await;
    f.identity_secret("subject", serde_json::json!({"email": EMAIL})).await;
    f.request("req-7", "subject", serde_json::json!({})).await;
    let operator = f.operator(true, Duration::from_secs(60));
    f.status_when("req-7", "the request to complete", 60, |s| s.phase == Some(ErasurePhase::Completed)).await;
    let dir = PluginDir::new();
    for token in ["first", "second"] {
        let out = plugin(&dir, &["run-now", "contacts", "-n", &f.ns, "--wait", "--token", token]).await;
        succeeded(&out, "run-now");
    }
    operator.stop().await;

    let out = succeeded(&kubectl(&dir, &["evidence", "verify", "-n", &f.ns], None).await, "evidence verify");
    let chain = policy_chain("contacts");
    assert!(out.contains(&chain) && out.contains("erasures"), "both chains are read: {out}");

    let html_path = dir.0.path().join("req-7.html");
    let html = dir.0.path().join("req-7.html").display().to_string();
    succeeded(
        &kubectl(&dir, &["certificate", "--erasure-request", "req-7", "-n", &f.ns, "--out", &html], None).await,
        "certificate",
    );
    let certificate = std::fs::read_to_string(&html_path).unwrap();
    assert!(certificate.contains(&format!("{}/req-7", f.ns)), "the certificate names the request");
    assert!(!certificate.contains(EMAIL), "and not the identity");

    // The newest record of the policy's chain removed: verify says so, and exits 2.
    let maps: Api<ConfigMap> = f.api();
    let mut map = maps.get(&segment_name(&chain, 0)).await.unwrap();
    let lines: Vec<&str> = map.data.as_ref().unwrap()[KEY].lines().collect();
    let kept: String = lines[..lines.len() - 1].iter().map(|l| format!("{l}\n")).collect();
    map.data.as_mut().unwrap().insert(KEY.into(), kept);
    maps.replace(&segment_name(&chain, 0), &PostParams::default(), &map).await.unwrap();
    let out = kubectl(&dir, &["evidence", "verify", "-n", &f.ns], None).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("truncated"), "{}", text(&out));
}

#[test]
fn the_binary_by_its_own_name_is_still_delenda() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_delenda")).arg("--help").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("Usage: delenda"), "{out:?}");
    let dir = PluginDir::new();
    let out = std::process::Command::new(dir.plugin()).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("Usage: kubectl delenda"), "{help}");
    for sub in ["status", "run-now", "erase", "evidence", "certificate"] {
        assert!(help.contains(sub), "{sub}: {help}");
    }
}
