//! The operator deletes only under the current spec, within each store's
//! limits, and cannot be made to delete what a namespace user should not
//! reach (issue 12), against the real kube-apiserver and PostgreSQL. The
//! process-level cases (SIGTERM, a leader paused past its lease) are in
//! tests/operator_process.rs; the connection limit over 200 runs in
//! tests/concurrency.rs.
mod support;

use std::time::Duration;

use delenda::api::erasure::ErasurePhase;
use delenda::api::{DataStore, ErasureRequest, RetentionPolicy};
use delenda::controller::evidence::{ERASURE_CHAIN, policy_chain, read_chain};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams};
use support::cluster::{EMAIL, Fixture, Operator, table_sql};
use support::eventually;

/// Rows: `due` of them ten days old, the subject's e-mail in none.
fn old_rows(table: &str, due: i64) -> String {
    format!(
        "CREATE TABLE {table} (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, email text, phone text);
         INSERT INTO {table} (id, created_at, email) SELECT g, now() - interval '10 days', 'x' || g || '@example.nl' FROM generate_series(1, {due}) g;"
    )
}

/// A policy deleting rows older than `period` from `table`, run now.
fn slow_policy(table: &str, period: &str) -> serde_json::Value {
    serde_json::json!({"category": "visits", "description": "visits", "responsibleParty": "self",
        "legalBasis": "Contract", "retention": {"period": period},
        "schedule": {"cron": "0 3 1 1 *", "timeZone": "Europe/Amsterdam"}, "mode": "Enforce",
        "targets": [{"name": "visits", "dataStoreRef": {"name": "crm"},
            "table": {"name": table, "timeColumn": "created_at"}}]})
}

async fn run_now(f: &Fixture, policy: &str, token: &str) {
    let policies: Api<RetentionPolicy> = f.api();
    let patch = serde_json::json!({"metadata": {"annotations": {"delenda.dev/run-now": token}}});
    policies.patch(policy, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
}

async fn rows(f: &mut Fixture, table: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}"))).fetch_one(&mut f.pg).await.unwrap()
}

/// Waits until the run has deleted some rows, but not all.
async fn mid_run(f: &mut Fixture, table: &str, total: i64) -> i64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let left = rows(f, table).await;
        if left < total - 20 && left > 40 {
            return left;
        }
        assert!(tokio::time::Instant::now() < deadline, "the run never got going ({left} of {total} left)");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A namespace with 300 due rows deleted at 20 a second and the policy
/// `visits` on them, its run (token t1) under way.
async fn running(namespace: &str) -> (Fixture, String, Operator) {
    let mut f = Fixture::new(namespace, Some(serde_json::json!({"maxDeletesPerSecond": 20}))).await;
    let table = support::unique("visits").replace('-', "_");
    f.sql(&old_rows(&table, 300)).await;
    f.policy_spec("visits", slow_policy(&table, "1d")).await;
    let operator = f.operator(true, Duration::from_secs(60));
    run_now(&f, "visits", "t1").await;
    mid_run(&mut f, &table, 300).await;
    (f, table, operator)
}

/// Situation 1 and 8: a spec edit mid-run interrupts it (nothing more is
/// deleted under the old spec), the next run starts at once under the new
/// spec with a new cutoff, and the run-now token does not run again.
#[tokio::test]
async fn an_edit_mid_run_interrupts_it_and_the_next_run_uses_the_new_spec() {
    let (mut f, table, operator) = running("safe-edit").await;

    // Lengthened: ten-day-old rows are no longer due.
    let policies: Api<RetentionPolicy> = f.api();
    let longer = serde_json::json!({"spec": {"retention": {"period": "1y"}}});
    policies.patch("visits", &PatchParams::default(), &Patch::Merge(&longer)).await.unwrap();
    let at_change = rows(&mut f, &table).await;
    let status = f
        .policy_when("visits", "the run to end Interrupted", 30, |s| {
            s.history.iter().any(|r| r.outcome == "Interrupted") && s.current_run.is_none()
        })
        .await;
    let interrupted = status.history.iter().find(|r| r.outcome == "Interrupted").unwrap().clone();
    let after = rows(&mut f, &table).await;
    assert!(at_change - after <= 20, "at most the batch in flight goes after the edit: {at_change} then {after}");

    // The next run starts at once, under the new spec: nothing is due.
    let status = f
        .policy_when("visits", "the next run", 30, |s| s.history.len() >= 2 && s.history[0].outcome == "Succeeded")
        .await;
    assert_eq!(status.history[0].deleted, 0, "nothing is due under a year");
    assert!(status.history[0].cutoff.0 < interrupted.cutoff.0, "a new cutoff, a year back");
    assert_eq!(rows(&mut f, &table).await, after);
    let last = status.last_run.clone().unwrap();
    assert_eq!(last.generation, Some(2));
    let first = read_chain(&f.client, &f.ns, &policy_chain("visits")).await.unwrap();
    assert_eq!(first.len(), 2, "one record for the interrupted run, one for the next");
    assert_eq!(first[0].record["outcome"], "Interrupted");
    assert_eq!(first[0].record["interruptedBy"], "SpecChanged");
    // The run-now token t1 was answered once, though runs followed it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let status = policies.get("visits").await.unwrap().status.unwrap();
    assert_eq!(status.history.len(), 2, "t1 ran once: {:?}", status.history);
    assert_eq!(status.run_now_answered.as_deref(), Some("t1"));
    operator.stop().await;
}

/// Situation 1: suspend is honoured at the next batch boundary, and no
/// run follows.
#[tokio::test]
async fn suspending_mid_run_stops_it_at_the_next_batch() {
    let (mut f, table, operator) = running("safe-suspend").await;
    let policies: Api<RetentionPolicy> = f.api();
    let suspend = serde_json::json!({"spec": {"suspend": true}});
    policies.patch("visits", &PatchParams::default(), &Patch::Merge(&suspend)).await.unwrap();
    let at_change = rows(&mut f, &table).await;
    let status = f
        .policy_when("visits", "the run to end Interrupted", 30, |s| {
            s.last_run.as_ref().is_some_and(|r| r.outcome.as_deref() == Some("Interrupted"))
        })
        .await;
    assert_eq!(status.last_run.unwrap().interrupted_by.as_deref(), Some("Suspended"));
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = rows(&mut f, &table).await;
    assert!(at_change - after <= 20, "at most the batch in flight: {at_change} then {after}");
    assert_eq!(policies.get("visits").await.unwrap().status.unwrap().history.len(), 1, "no run while suspended");
    operator.stop().await;
}

/// Situation 2: deleting a policy mid-run stops its deletes; its evidence
/// records the interruption.
#[tokio::test]
async fn deleting_a_policy_mid_run_stops_its_deletes() {
    let (mut f, table, operator) = running("safe-delete").await;
    let policies: Api<RetentionPolicy> = f.api();
    policies.delete("visits", &DeleteParams::default()).await.unwrap();
    let at_change = rows(&mut f, &table).await;
    let record = eventually("the interruption in the evidence", 30, async || {
        let chain = read_chain(&f.client, &f.ns, &policy_chain("visits")).await.ok()?;
        chain.last().filter(|r| r.record["outcome"] == "Interrupted").map(|r| r.record.clone())
    })
    .await;
    assert_eq!(record["interruptedBy"], "PolicyDeleted");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = rows(&mut f, &table).await;
    assert!(at_change - after <= 20, "at most the batch in flight: {at_change} then {after}");
    operator.stop().await;
}

/// Situation 6: an erasure that keeps failing retries no more often than
/// its backoff (first wait, then doubling), whatever wakes it.
#[tokio::test]
async fn a_failing_erasure_retries_no_more_often_than_its_backoff() {
    let f = Fixture::new("safe-backoff", None).await;
    let missing = support::unique("missing").replace('-', "_");
    f.policy("notes", "self", &[("notes", &missing, "email")]).await;
    f.identity_secret("subject", serde_json::json!({"email": EMAIL})).await;
    f.request("failing", "subject", serde_json::json!({})).await;
    let operator = f.operator(true, Duration::from_secs(1));
    let started = tokio::time::Instant::now();
    // Edits of the request's metadata wake it; the backoff holds anyway.
    let requests: Api<ErasureRequest> = f.api();
    for i in 0..20 {
        let poke = serde_json::json!({"metadata": {"annotations": {"poke": i.to_string()}}});
        requests.patch("failing", &PatchParams::default(), &Patch::Merge(&poke)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let status = requests.get("failing").await.unwrap().status.unwrap();
    // Passes at 0, 1, 3, 7 and 15 s: within 10 to 11 s, at most four.
    assert_eq!(status.phase, Some(ErasurePhase::Failed));
    assert!(
        (3..=4).contains(&status.failed_passes),
        "{} passes in {elapsed:.1} s with a first wait of 1 s",
        status.failed_passes
    );
    operator.stop().await;
}

/// Situation 7: an identity Secret must be labelled as one and must not be
/// a DataStore's credentials; neither is read as identities nor deleted.
#[tokio::test]
async fn a_request_cannot_read_or_delete_a_secret_that_is_not_an_identity_secret() {
    let mut f = Fixture::new("safe-deputy", None).await;
    let table = support::unique("tickets").replace('-', "_");
    f.sql(&table_sql(&table, 2, 2)).await;
    f.policy("tickets", "self", &[("tickets", &table, "email")]).await;
    // Unlabelled, though it holds an identity.
    f.secret("unlabelled", serde_json::json!({"email": EMAIL})).await;
    f.request("unlabelled", "unlabelled", serde_json::json!({})).await;
    // The DataStore's credentials, labelled as identities by someone who may edit Secrets.
    let secrets: Api<Secret> = f.api();
    let label = serde_json::json!({"metadata": {"labels": {"delenda.dev/identity": "true"}}});
    secrets.patch("crm-db", &PatchParams::default(), &Patch::Merge(&label)).await.unwrap();
    f.request("credentials", "crm-db", serde_json::json!({})).await;
    let operator = f.operator(true, Duration::from_secs(60));

    for (name, why) in [("unlabelled", "does not carry the label"), ("credentials", "uses it for its credentials")] {
        let status = f
            .status_when(name, "the request to be refused", 30, |s| {
                s.conditions.iter().any(|c| c.type_ == "Valid" && c.status == "False")
            })
            .await;
        let valid = status.conditions.iter().find(|c| c.type_ == "Valid").unwrap();
        assert_eq!(valid.reason, "NotAnIdentitySecret", "{valid:?}");
        assert!(valid.message.contains(why), "{}", valid.message);
        assert_eq!(status.phase, Some(ErasurePhase::Pending));
        assert!(status.subject_digests.is_empty(), "nothing was read as an identity");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for name in ["unlabelled", "crm-db"] {
        assert!(secrets.get_opt(name).await.unwrap().is_some(), "{name} was deleted");
    }
    assert_eq!(f.count(&table).await, 2, "nothing was erased");
    let stores: Api<DataStore> = f.api();
    // Probed on its own schedule: on a busy machine, after the requests.
    eventually("the DataStore to be Ready: it still works", 60, async || {
        let status = stores.get("crm").await.ok()?.status?;
        status.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True").then_some(())
    })
    .await;
    operator.stop().await;
}

/// Situation 7: a DataStore's allowedTargets bound what policies and
/// erasures reach through it.
#[tokio::test]
async fn a_datastore_bounds_what_policies_and_erasures_reach() {
    let mut f = Fixture::new("safe-allowed", None).await;
    let allowed = format!("{}_ok", support::unique("allowed").replace('-', "_"));
    let forbidden = support::unique("payroll").replace('-', "_");
    f.sql(&old_rows(&allowed, 5)).await;
    f.sql(&old_rows(&forbidden, 5)).await;
    f.sql(&format!("INSERT INTO {forbidden} (id, created_at, email) VALUES (100, now(), '{EMAIL}')")).await;
    let stores: Api<DataStore> = f.api();
    let prefix = allowed.trim_end_matches("_ok");
    let limit = serde_json::json!({"spec": {"allowedTargets": [format!("{prefix}_*")]}});
    stores.patch("crm", &PatchParams::default(), &Patch::Merge(&limit)).await.unwrap();
    f.policy_spec("ok", slow_policy(&allowed, "1d")).await;
    f.policy_spec("payroll", slow_policy(&forbidden, "1d")).await;
    let policies: Api<RetentionPolicy> = f.api();
    let subject_fields = serde_json::json!({"spec": {"targets": [{"name": "visits", "dataStoreRef": {"name": "crm"},
        "table": {"name": forbidden, "timeColumn": "created_at"},
        "subjectFields": [{"identity": "email", "field": "email"}]}]}});
    policies.patch("payroll", &PatchParams::default(), &Patch::Merge(&subject_fields)).await.unwrap();
    f.identity_secret("subject", serde_json::json!({"email": EMAIL})).await;
    let operator = f.operator(true, Duration::from_secs(60));
    run_now(&f, "ok", "t1").await;
    run_now(&f, "payroll", "t1").await;

    f.policy_when("ok", "the allowed run", 30, |s| s.history.len() == 1).await;
    assert_eq!(rows(&mut f, &allowed).await, 0);
    let refused = f
        .policy_when("payroll", "the refusal", 30, |s| {
            s.conditions.iter().any(|c| c.type_ == "Valid" && c.reason == "TargetNotAllowed")
        })
        .await;
    assert!(refused.history.is_empty() && refused.current_run.is_none(), "nothing ran");
    assert_eq!(rows(&mut f, &forbidden).await, 6, "nothing was deleted");

    f.request("erase", "subject", serde_json::json!({})).await;
    let status =
        f.status_when("erase", "the erasure to complete", 60, |s| s.phase == Some(ErasurePhase::Completed)).await;
    let t = status.targets.iter().find(|t| t.policy == "payroll").unwrap();
    assert_eq!(t.outcome, "Skipped");
    assert!(t.message.as_deref().unwrap().contains("outside the allowedTargets"), "{t:?}");
    assert_eq!(rows(&mut f, &forbidden).await, 6, "the erasure did not reach it either");
    operator.stop().await;
}

/// Situation 9: keyed digests differ by namespace, so a request in one
/// namespace cannot learn whether an identity occurs in another's evidence.
#[tokio::test]
async fn the_same_identity_has_different_digests_in_different_namespaces() {
    let mut digests = Vec::new();
    for prefix in ["safe-ns-a", "safe-ns-b"] {
        let mut f = Fixture::new(prefix, None).await;
        let table = support::unique("t").replace('-', "_");
        f.sql(&table_sql(&table, 1, 0)).await;
        f.policy("t", "self", &[("t", &table, "email")]).await;
        f.identity_secret("subject", serde_json::json!({"email": EMAIL})).await;
        f.request("dry", "subject", serde_json::json!({"mode": "DryRun"})).await;
        let operator = f.operator(true, Duration::from_secs(60));
        let status = f.status_when("dry", "the preview", 60, |s| s.phase == Some(ErasurePhase::Previewed)).await;
        digests.push(status.subject_digests["email"].clone());
        let chain = read_chain(&f.client, &f.ns, ERASURE_CHAIN).await.unwrap();
        assert_eq!(chain[0].record["subjectDigests"]["email"], digests.last().unwrap().as_str());
        operator.stop().await;
    }
    assert_ne!(digests[0], digests[1]);
}

/// Situation 6: an identity too short to name one person is refused before
/// anything is searched, naming its kind only.
#[tokio::test]
async fn an_identity_of_one_character_is_refused() {
    let f = Fixture::new("safe-short", None).await;
    let table = support::unique("t").replace('-', "_");
    f.policy_spec(
        "t",
        serde_json::json!({"category": "t", "description": "t", "responsibleParty": "self",
        "legalBasis": "Contract", "retention": {"period": "1y"},
        "schedule": {"cron": "0 3 1 1 *", "timeZone": "Europe/Amsterdam"}, "mode": "Enforce",
        "targets": [{"name": "t", "dataStoreRef": {"name": "crm"}, "table": {"name": table, "timeColumn": "created_at"},
            "subjectFields": [{"identity": "customerId", "field": "customer"}]}]}),
    )
    .await;
    f.identity_secret("subject", serde_json::json!({"customerId": "7"})).await;
    f.request("short", "subject", serde_json::json!({})).await;
    let operator = f.operator(true, Duration::from_secs(60));
    let status = f
        .status_when("short", "the refusal", 30, |s| {
            s.conditions.iter().any(|c| c.type_ == "Valid" && c.reason == "InvalidIdentity")
        })
        .await;
    let valid = status.conditions.iter().find(|c| c.type_ == "Valid").unwrap();
    assert!(valid.message.contains("customerId") && valid.message.contains("shorter than 2"), "{}", valid.message);
    assert_eq!(status.phase, Some(ErasurePhase::Pending));
    operator.stop().await;
}

/// Situation 6: maxRecords is counted before the first erase; above it,
/// nothing is erased.
#[tokio::test]
async fn an_erasure_above_its_record_limit_erases_nothing() {
    let mut f = Fixture::new("safe-limit", None).await;
    let table = support::unique("t").replace('-', "_");
    f.sql(&table_sql(&table, 12, 3)).await;
    f.policy("t", "self", &[("t", &table, "email")]).await;
    f.identity_secret("subject", serde_json::json!({"email": EMAIL})).await;
    f.request("big", "subject", serde_json::json!({"maxRecords": 10})).await;
    let operator = f.operator(true, Duration::from_secs(60));
    let status = f.status_when("big", "the guardrail", 30, |s| s.phase == Some(ErasurePhase::Failed)).await;
    let valid = status.conditions.iter().find(|c| c.type_ == "Valid").unwrap();
    assert_eq!(valid.reason, "GuardrailReached");
    assert!(valid.message.contains("12 records, more than its limit of 10"), "{}", valid.message);
    assert_eq!(f.count(&table).await, 12, "nothing was erased");
    operator.stop().await;
}

/// Situation 8, under load: one run-now token is one run, also when the
/// run ends before the operator's cache has seen it start or end (a run on
/// a store that is down fails as soon as its pool gives up connecting; its
/// retry waits 30 s). Deciding on a stale cache ran such a token about
/// three times, a second apart.
#[tokio::test]
async fn a_run_now_token_is_one_run_even_when_the_run_ends_at_once() {
    let f = Fixture::new("safe-once", None).await;
    let stores: Api<DataStore> = f.api();
    let down = serde_json::json!({"apiVersion": "delenda.dev/v1alpha1", "kind": "DataStore",
        "metadata": {"name": "down"}, "spec": {"postgres": {"host": "127.0.0.1", "port": 9,
            "database": "gone", "credentialsSecret": {"name": "crm-db"}, "tls": "Disable"}}});
    stores.create(&Default::default(), &support::manifest(down)).await.unwrap();
    let names: Vec<String> = (0..6).map(|i| format!("down-{i}")).collect();
    for name in &names {
        let mut spec = slow_policy("visits", "1d");
        spec["targets"][0]["dataStoreRef"]["name"] = serde_json::json!("down");
        f.policy_spec(name, spec).await;
    }
    let operator = f.operator(true, Duration::from_secs(60));
    for name in &names {
        run_now(&f, name, "once").await;
    }
    // Each run waits out the pool's 10 s connect timeout (some twice), and
    // they start in turns: on an idle machine they started in pairs 10 s
    // apart and the last ended 30 s after the first began. A 60 s wait was
    // too short once under a loaded CI run.
    for name in &names {
        f.policy_when(name, "the token's run to end", 180, |s| s.last_run.is_some()).await;
    }
    // Well inside the 30 s backoff: any further run came from the token.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let policies: Api<RetentionPolicy> = f.api();
    for name in &names {
        let status = policies.get(name).await.unwrap().status.unwrap();
        assert_eq!(
            status.history.len(),
            1,
            "{name} ran {} times for one token: {:?}",
            status.history.len(),
            status.history
        );
        assert_eq!(status.run_now_answered.as_deref(), Some("once"));
        assert_eq!(status.history[0].outcome, "Failed");
    }
    operator.stop().await;
}
