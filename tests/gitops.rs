//! Argo CD and Flux read what the real operator writes (issue 15, item 2):
//! the health checks in `argocd/resource_customizations/delenda.dev/` run
//! in Lua 5.1 as Argo CD runs them, and the expressions in
//! `flux/health-check-exprs.yaml` in CEL as kustomize-controller evaluates
//! them, against objects the operator wrote in this test on the test
//! kube-apiserver and PostgreSQL; the run-now action, applied as Argo CD
//! applies it, makes the operator run the policy. The committed testdata,
//! health_test.yaml and action_test.yaml agree, as Argo CD's own test
//! runner checks, and the argocd-cm and docs carry the scripts verbatim.
#[path = "support/gitops.rs"]
mod gitops;
mod support;

use std::path::Path;
use std::time::Duration;

use delenda::api::{DataStore, ErasureRequest, Hold, RetentionPolicy};
use gitops::{Clock, Health, argo_action, argo_actions, argo_health, customizations, flux_health};
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Api, Resource};
use support::cluster::{EMAIL, Fixture, table_sql};

/// The object as the API server serves it, the way Argo CD and Flux read it.
fn api_of<K: Resource<DynamicType = ()>>(f: &Fixture) -> Api<DynamicObject> {
    Api::namespaced_with(f.client.clone(), &f.ns, &ApiResource::erase::<K>(&()))
}

/// The object named `name`, once `done` holds for it.
async fn object_when<K: Resource<DynamicType = ()>>(
    f: &Fixture,
    name: &str,
    what: &str,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let api = api_of::<K>(f);
    let obj = support::eventually(what, 90, async || {
        let obj = serde_json::to_value(api.get(name).await.ok()?).unwrap();
        done(&obj).then_some(obj)
    })
    .await;
    dump(&obj);
    obj
}

/// The condition `type_` of an object, as (status, reason).
fn condition(obj: &serde_json::Value, type_: &str) -> Option<(String, String)> {
    obj.pointer("/status/conditions")?.as_array()?.iter().find(|c| c["type"] == type_).map(|c| {
        (c["status"].as_str().unwrap_or_default().to_owned(), c["reason"].as_str().unwrap_or_default().to_owned())
    })
}

fn is(obj: &serde_json::Value, type_: &str) -> bool {
    condition(obj, type_).is_some_and(|(s, _)| s == "True")
        && obj.pointer("/status/observedGeneration") == obj.pointer("/metadata/generation")
}

/// With DELENDA_GITOPS_DUMP=<dir>, writes each object a test judged there
/// (without the server's bookkeeping), the source of the committed testdata.
fn dump(obj: &serde_json::Value) {
    let Some(dir) = std::env::var_os("DELENDA_GITOPS_DUMP") else { return };
    let mut obj = obj.clone();
    let ns = obj["metadata"]["namespace"].as_str().unwrap().to_owned();
    let meta = obj["metadata"].as_object_mut().unwrap();
    for k in ["managedFields", "uid", "resourceVersion", "creationTimestamp"] {
        meta.remove(k);
    }
    meta.insert("namespace".into(), "privacy".into());
    let name = format!("{ns}-{}-{}.yaml", obj["kind"].as_str().unwrap(), obj["metadata"]["name"].as_str().unwrap());
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(Path::new(&dir).join(name), serde_yaml::to_string(&obj).unwrap()).unwrap();
}

/// Argo CD's health and Flux's verdict on `obj`.
fn judge(obj: &serde_json::Value) -> (Health, &'static str) {
    (argo_health(obj), flux_health(obj).unwrap_or_else(|e| panic!("{e}: {obj:#}")))
}

#[tokio::test]
async fn what_the_operator_made_ready_is_healthy_in_argo_and_current_in_flux() {
    let mut f = Fixture::new("gitops-ready", None).await;
    let table = support::unique("contacts").replace('-', "_");
    f.sql(&table_sql(&table, 2, 1)).await;
    f.policy("contacts", "self", &[("contacts", &table, "email")]).await;
    f.identity_secret("subject", serde_json::json!({"email": EMAIL})).await;
    f.request("erasure", "subject", serde_json::json!({})).await;
    let operator = f.operator(true, Duration::from_secs(60));

    let store = object_when::<DataStore>(&f, "crm", "the store to be Ready", |o| is(o, "Ready")).await;
    let policy = object_when::<RetentionPolicy>(&f, "contacts", "the policy to be Ready", |o| is(o, "Ready")).await;
    let request = object_when::<ErasureRequest>(&f, "erasure", "the request to be Ready", |o| is(o, "Ready")).await;
    operator.stop().await;

    let (health, flux) = judge(&store);
    assert_eq!((health.status.as_str(), flux), ("Healthy", "Current"), "{health:?}");
    assert!(health.message.starts_with(&condition(&store, "Ready").unwrap().1), "{health:?}");
    let (health, flux) = judge(&policy);
    assert_eq!((health.status.as_str(), flux), ("Healthy", "Current"), "{health:?}");
    assert!(health.message.starts_with("Scheduled: "), "{health:?}");
    assert!(health.message.contains("; next run "), "the next run is shown: {health:?}");
    let (health, flux) = judge(&request);
    assert_eq!((health.status.as_str(), flux), ("Healthy", "Current"), "{health:?}");
    assert_eq!(health.message, "The request is Completed");
    assert_eq!(f.count(&table).await, 0, "the request did erase");
}

#[tokio::test]
async fn an_invalid_policy_is_degraded_in_argo_and_failed_in_flux() {
    let mut f = Fixture::new("gitops-invalid", None).await;
    let table = support::unique("contacts").replace('-', "_");
    f.sql(&table_sql(&table, 1, 1)).await;
    // A period the operator refuses (over 100 years), which the CRD's CEL rules let through.
    let spec = serde_json::json!({"category": "broken", "description": "broken", "responsibleParty": "self",
        "legalBasis": "Contract", "retention": {"period": "101y"},
        "schedule": {"cron": "0 3 1 1 *", "timeZone": "Europe/Amsterdam"}, "mode": "Enforce",
        "targets": [{"name": "t", "dataStoreRef": {"name": "crm"}, "table": {"name": table, "timeColumn": "created_at"}}]});
    f.policy_spec("broken", spec).await;
    let operator = f.operator(true, Duration::from_secs(60));
    let policy = object_when::<RetentionPolicy>(&f, "broken", "the policy to stall", |o| is(o, "Stalled")).await;
    operator.stop().await;

    let (health, flux) = judge(&policy);
    assert_eq!((health.status.as_str(), flux), ("Degraded", "Failed"), "{health:?}");
    let (_, reason) = condition(&policy, "Stalled").unwrap();
    assert!(health.message.starts_with(&format!("{reason}: ")), "the operator's reason is shown: {health:?}");
    assert!(health.message.contains("100 years"), "and what to change: {health:?}");
}

#[tokio::test]
async fn a_store_that_refuses_the_operator_is_degraded_one_unreachable_is_progressing() {
    let f = Fixture::new("gitops-stores", None).await;
    let url = url::Url::parse(&support::setting("POSTGRES_URL", "PostgreSQL")).unwrap();
    f.secret("wrong", serde_json::json!({"username": url.username(), "password": "not-the-password"})).await;
    let stores: Api<DataStore> = f.api();
    for (name, port, secret) in [("refused", url.port().unwrap(), "wrong"), ("unreachable", 1, "crm-db")] {
        let store = support::manifest(serde_json::json!({"apiVersion": "delenda.dev/v1alpha1", "kind": "DataStore",
            "metadata": {"name": name}, "spec": {"postgres": {"host": "127.0.0.1", "port": port,
            "database": url.path().trim_start_matches('/'), "credentialsSecret": {"name": secret}, "tls": "Disable"}}}));
        stores.create(&PostParams::default(), &store).await.unwrap();
    }
    let operator = f.operator(true, Duration::from_secs(60));
    let refused = object_when::<DataStore>(&f, "refused", "the store to stall", |o| is(o, "Stalled")).await;
    let unreachable =
        object_when::<DataStore>(&f, "unreachable", "the store to be retried", |o| is(o, "Reconciling")).await;
    operator.stop().await;

    let (health, flux) = judge(&refused);
    assert_eq!((health.status.as_str(), flux), ("Degraded", "Failed"), "{health:?}");
    assert!(health.message.starts_with("AuthenticationFailed: "), "{health:?}");
    assert!(!health.message.contains("not-the-password"), "no credential in the message: {health:?}");
    let (health, flux) = judge(&unreachable);
    assert_eq!((health.status.as_str(), flux), ("Progressing", "InProgress"), "{health:?}");
    assert!(health.message.starts_with("Unreachable: "), "{health:?}");
}

#[tokio::test]
async fn a_failed_request_is_degraded_in_argo_and_failed_in_flux_though_it_is_retried() {
    let mut f = Fixture::new("gitops-failed", None).await;
    let (tickets, notes) = (support::unique("tickets").replace('-', "_"), support::unique("notes").replace('-', "_"));
    f.sql(&table_sql(&tickets, 1, 1)).await;
    // `notes` does not exist: its target fails, and the request with it.
    f.policy("support", "self", &[("tickets", &tickets, "email"), ("notes", &notes, "email")]).await;
    f.identity_secret("subject", serde_json::json!({"email": EMAIL})).await;
    f.request("failing", "subject", serde_json::json!({})).await;
    let operator = f.operator(true, Duration::from_secs(60));
    let request = object_when::<ErasureRequest>(&f, "failing", "the request to fail", |o| {
        o.pointer("/status/phase") == Some(&"Failed".into()) && condition(o, "Ready").is_some()
    })
    .await;
    operator.stop().await;

    assert!(is(&request, "Reconciling"), "the operator retries it: {request:#}");
    let (health, flux) = judge(&request);
    assert_eq!((health.status.as_str(), flux), ("Degraded", "Failed"), "{health:?}");
    assert!(health.message.starts_with("Failed: target support/notes: table "), "{health:?}");
    assert!(health.message.ends_with("failed passes in a row; retried with backoff"), "{health:?}");
}

#[tokio::test]
async fn an_overdue_request_is_degraded_in_argo_and_failed_in_flux() {
    let mut f = Fixture::new("gitops-overdue", None).await;
    let (tickets, notes) = (support::unique("tickets").replace('-', "_"), support::unique("notes").replace('-', "_"));
    f.sql(&table_sql(&tickets, 1, 1)).await;
    f.policy("support", "self", &[("tickets", &tickets, "email"), ("notes", &notes, "email")]).await;
    f.identity_secret("subject", serde_json::json!({"email": EMAIL})).await;
    let long_ago = (jiff::Timestamp::now() - jiff::SignedDuration::from_hours(24 * 40)).to_string();
    f.request("late", "subject", serde_json::json!({"receivedAt": long_ago})).await;
    let operator = f.operator(true, Duration::from_secs(60));
    let request = object_when::<ErasureRequest>(&f, "late", "the request to be overdue", |o| {
        is(o, "Stalled") && condition(o, "Overdue").is_some_and(|(s, _)| s == "True")
    })
    .await;
    operator.stop().await;

    let (health, flux) = judge(&request);
    assert_eq!((health.status.as_str(), flux), ("Degraded", "Failed"), "{health:?}");
    assert!(health.message.starts_with("DeadlinePassed: "), "{health:?}");
}

#[tokio::test]
async fn a_suspended_policy_is_suspended_in_argo_and_offers_no_run() {
    let mut f = Fixture::new("gitops-suspended", None).await;
    let table = support::unique("contacts").replace('-', "_");
    f.sql(&table_sql(&table, 1, 1)).await;
    let spec = serde_json::json!({"category": "paused", "description": "paused", "responsibleParty": "self",
        "legalBasis": "Contract", "retention": {"period": "2y"}, "suspend": true,
        "schedule": {"cron": "0 3 1 1 *", "timeZone": "Europe/Amsterdam"}, "mode": "Enforce",
        "targets": [{"name": "t", "dataStoreRef": {"name": "crm"}, "table": {"name": table, "timeColumn": "created_at"}}]});
    f.policy_spec("paused", spec).await;
    let operator = f.operator(true, Duration::from_secs(60));
    let policy = object_when::<RetentionPolicy>(&f, "paused", "the policy to be judged", |o| is(o, "Ready")).await;
    operator.stop().await;

    let (health, flux) = judge(&policy);
    assert_eq!(health.status, "Suspended", "{health:?}");
    // Flux has no Suspended: a suspended, valid policy is as its spec asks.
    assert_eq!(flux, "Current");
    assert_eq!(argo_actions(&policy), [("run-now".to_owned(), true)], "a suspended policy does not run");
}

#[tokio::test]
async fn a_spec_the_operator_has_not_judged_yet_is_progressing_in_argo_and_in_progress_in_flux() {
    let mut f = Fixture::new("gitops-generation", None).await;
    let table = support::unique("contacts").replace('-', "_");
    f.sql(&table_sql(&table, 1, 1)).await;
    f.policy("contacts", "self", &[("contacts", &table, "email")]).await;
    let operator = f.operator(true, Duration::from_secs(60));
    object_when::<RetentionPolicy>(&f, "contacts", "the policy to be Ready", |o| is(o, "Ready")).await;
    operator.stop().await;
    // Edited while no operator runs: the status speaks of the old spec.
    let policies: Api<RetentionPolicy> = f.api();
    let edit = serde_json::json!({"spec": {"description": "contacts, edited"}});
    policies.patch("contacts", &PatchParams::default(), &Patch::Merge(&edit)).await.unwrap();
    let policy = object_when::<RetentionPolicy>(&f, "contacts", "the edit", |o| {
        o["metadata"]["generation"].as_i64() > o.pointer("/status/observedGeneration").and_then(|g| g.as_i64())
    })
    .await;
    assert!(condition(&policy, "Ready").is_some_and(|(s, _)| s == "True"), "Ready still says True of the old spec");

    let (health, flux) = judge(&policy);
    assert_eq!((health.status.as_str(), flux), ("Progressing", "InProgress"), "{health:?}");
    assert_eq!(health.message, "Waiting for the operator to judge generation 2");
}

#[tokio::test]
async fn the_run_now_action_applied_as_argo_applies_it_runs_the_policy() {
    let mut f = Fixture::new("gitops-run-now", None).await;
    let table = support::unique("contacts").replace('-', "_");
    // Records older than the two-year period, so the run has work to prove.
    f.sql(&table_sql(&table, 2, 1)).await;
    f.sql(&format!("UPDATE {table} SET created_at = now() - interval '3 years' WHERE id = 1")).await;
    f.policy("contacts", "self", &[("contacts", &table, "email")]).await;
    let operator = f.operator(true, Duration::from_secs(60));
    let before = object_when::<RetentionPolicy>(&f, "contacts", "the policy to be Ready", |o| is(o, "Ready")).await;
    assert!(before.pointer("/status/lastRun").is_none(), "no run before the action: {before:#}");
    assert_eq!(argo_actions(&before), [("run-now".to_owned(), false)]);

    let after = argo_action(&before, "run-now", Clock::Real);
    let token = after["metadata"]["annotations"]["delenda.dev/run-now"].as_str().unwrap().to_owned();
    let patch = gitops::merge_patch(&before, &after).expect("the action changes the policy");
    assert_eq!(patch, serde_json::json!({"metadata": {"annotations": {"delenda.dev/run-now": token}}}));
    api_of::<RetentionPolicy>(&f).patch("contacts", &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();

    let ran = object_when::<RetentionPolicy>(&f, "contacts", "the run the action asked for", |o| {
        o.pointer("/status/runNowAnswered") == Some(&token.clone().into())
            && o.pointer("/status/lastRun/outcome").is_some()
            && is(o, "Ready")
    })
    .await;
    operator.stop().await;
    let run_id = ran.pointer("/status/lastRun/id").unwrap().as_str().unwrap();
    assert!(run_id.ends_with(&format!("~{token}")), "the run answers the action's token: {run_id}");
    let (health, flux) = judge(&ran);
    assert_eq!((health.status.as_str(), flux), ("Healthy", "Current"), "{health:?}");
    assert!(health.message.starts_with("Verified: "), "{health:?}");
    let rows: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
        .fetch_one(&mut f.pg)
        .await
        .unwrap();
    assert_eq!(rows, 2, "the run deleted the one record past the period, and nothing else");
}

#[tokio::test]
async fn a_hold_that_holds_is_healthy_and_one_that_cannot_read_its_identities_is_degraded() {
    let mut f = Fixture::new("gitops-hold", None).await;
    let table = support::unique("calls").replace('-', "_");
    f.sql(&table_sql(&table, 2, 1)).await;
    f.policy("calls", "self", &[("calls", &table, "email")]).await;
    f.identity_secret("subject", serde_json::json!({"email": EMAIL})).await;
    // Not labelled as an identity Secret: the operator refuses to read it.
    f.secret("not-labelled", serde_json::json!({"email": EMAIL})).await;
    let holds = api_of::<Hold>(&f);
    for (name, secret) in [("dispute", "subject"), ("objection", "not-labelled")] {
        let hold: DynamicObject = support::manifest(serde_json::json!({"apiVersion": "delenda.dev/v1alpha1",
            "kind": "Hold", "metadata": {"name": name}, "spec": {"identitySecretRef": {"name": secret},
            "reason": "Art18ObjectionPending", "placedBy": "privacy-office"}}));
        holds.create(&PostParams::default(), &hold).await.unwrap();
    }
    let operator = f.operator(true, Duration::from_secs(60));
    let holding = object_when::<Hold>(&f, "dispute", "the hold to hold", |o| is(o, "Ready")).await;
    let stalled = object_when::<Hold>(&f, "objection", "the hold to stall", |o| is(o, "Stalled")).await;
    operator.stop().await;

    let (health, flux) = judge(&holding);
    assert_eq!((health.status.as_str(), flux), ("Healthy", "Current"), "{health:?}");
    assert!(health.message.starts_with("Holding: holding "), "{health:?}");
    let (health, flux) = judge(&stalled);
    assert_eq!((health.status.as_str(), flux), ("Degraded", "Failed"), "{health:?}");
    assert!(health.message.starts_with("IdentitiesUnreadable: "), "{health:?}");
    assert!(!health.message.contains(EMAIL), "no identity in the message: {health:?}");
    let mut unplaced = holding.clone();
    unplaced.as_object_mut().unwrap().remove("status");
    let health = argo_health(&unplaced);
    assert_eq!(
        (health.status.as_str(), health.message.as_str()),
        ("Progressing", "Waiting for the operator to place the hold")
    );
    assert_eq!(f.count(&table).await, 2, "a hold deletes nothing");
}

#[tokio::test]
async fn an_access_request_that_exported_is_healthy_and_one_with_a_refused_secret_is_degraded() {
    let mut f = Fixture::new("gitops-access", None).await;
    let table = support::unique("contacts").replace('-', "_");
    f.sql(&table_sql(&table, 2, 1)).await;
    f.policy("contacts", "self", &[("contacts", &table, "email")]).await;
    f.identity_secret("subject", serde_json::json!({"email": EMAIL})).await;
    // Not labelled as an identity Secret: the operator refuses to read it.
    f.secret("not-labelled", serde_json::json!({"email": EMAIL})).await;
    let requests = api_of::<delenda::api::AccessRequest>(&f);
    for (name, secret) in [("inzage", "subject"), ("refused", "not-labelled")] {
        let request: DynamicObject = support::manifest(serde_json::json!({"apiVersion": "delenda.dev/v1alpha1",
            "kind": "AccessRequest", "metadata": {"name": name}, "spec": {"identitySecretRef": {"name": secret},
            "receivedAt": "2026-11-30T09:00:00Z",
            "identityVerification": {"verifiedBy": "privacy-office", "method": "KnownContactChannel"}}}));
        requests.create(&PostParams::default(), &request).await.unwrap();
    }
    let s3 = support::s3::store();
    let bucket = support::s3::new_bucket(&s3, false, false).await;
    let mut settings = f.settings(true, Duration::from_secs(60));
    settings.export = Some(std::sync::Arc::new(delenda::engine::export::ExportDestination::new(
        delenda::engine::export::ExportSettings {
            s3: support::s3::settings(),
            bucket,
            prefix: "exports/".into(),
            ttl_days: 30,
        },
    )));
    let operator = f.operator_with(settings);
    let exported = object_when::<delenda::api::AccessRequest>(&f, "inzage", "the export", |o| is(o, "Ready")).await;
    let stalled =
        object_when::<delenda::api::AccessRequest>(&f, "refused", "the request to stall", |o| is(o, "Stalled")).await;
    operator.stop().await;

    let (health, flux) = judge(&exported);
    assert_eq!((health.status.as_str(), flux), ("Healthy", "Current"), "{health:?}");
    assert!(health.message.starts_with("Completed: "), "{health:?}");
    let (health, flux) = judge(&stalled);
    assert_eq!((health.status.as_str(), flux), ("Degraded", "Failed"), "{health:?}");
    assert!(health.message.starts_with("NotAnIdentitySecret: "), "{health:?}");
    assert!(!health.message.contains(EMAIL), "no identity in the message: {health:?}");
    let mut unstarted = exported.clone();
    unstarted.as_object_mut().unwrap().remove("status");
    let health = argo_health(&unstarted);
    assert_eq!(
        (health.status.as_str(), health.message.as_str()),
        ("Progressing", "Waiting for the operator to export the request")
    );
}

// ---- The committed files, checked as Argo CD's own test runner checks them.

#[derive(serde::Deserialize)]
struct HealthTests {
    tests: Vec<HealthTest>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct HealthTest {
    health_status: Health,
    input_path: String,
}

fn yaml(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_health_test_yaml_agrees_with_its_testdata() {
    let mut checked = 0;
    for kind in ["DataStore", "RetentionPolicy", "ErasureRequest", "Hold", "AccessRequest"] {
        let dir = customizations().join(kind);
        let tests: HealthTests = serde_yaml::from_str(&std::fs::read_to_string(dir.join("health_test.yaml")).unwrap())
            .unwrap_or_else(|e| panic!("{kind}/health_test.yaml: {e}"));
        let mut listed: Vec<String> = tests.tests.iter().map(|t| t.input_path.clone()).collect();
        for test in &tests.tests {
            let obj = yaml(&dir.join(&test.input_path));
            assert_eq!(obj["kind"], kind, "{kind}/{}", test.input_path);
            assert_eq!(argo_health(&obj), test.health_status, "{kind}/{}", test.input_path);
            checked += 1;
        }
        // Every testdata file is listed, so none is left untested.
        let mut files: Vec<String> = std::fs::read_dir(dir.join("testdata"))
            .unwrap()
            .map(|e| format!("testdata/{}", e.unwrap().file_name().to_str().unwrap()))
            .collect();
        files.sort();
        listed.sort();
        assert_eq!(files, listed, "{kind}: testdata and health_test.yaml list the same files");
    }
    assert!(checked >= 12, "{checked} cases");
}

#[test]
fn the_testdata_covers_every_health_argo_knows_that_applies() {
    let mut seen = std::collections::BTreeSet::new();
    for kind in ["DataStore", "RetentionPolicy", "ErasureRequest", "Hold", "AccessRequest"] {
        let tests: HealthTests = serde_yaml::from_str(
            &std::fs::read_to_string(customizations().join(kind).join("health_test.yaml")).unwrap(),
        )
        .unwrap();
        seen.extend(tests.tests.into_iter().map(|t| t.health_status.status));
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["Degraded", "Healthy", "Progressing", "Suspended"]);
}

#[test]
fn the_testdata_is_judged_by_flux_as_by_argo() {
    for kind in ["DataStore", "RetentionPolicy", "ErasureRequest", "Hold", "AccessRequest"] {
        let dir = customizations().join(kind);
        let tests: HealthTests =
            serde_yaml::from_str(&std::fs::read_to_string(dir.join("health_test.yaml")).unwrap()).unwrap();
        for test in tests.tests {
            let obj = yaml(&dir.join(&test.input_path));
            if obj.get("status").is_none() {
                // Nothing to read yet: the expressions cannot be evaluated,
                // and Flux keeps waiting, as for any object in progress.
                let e = flux_health(&obj).unwrap_err();
                assert!(e.contains("status"), "{kind}/{}: {e}", test.input_path);
                assert_eq!(test.health_status.status, "Progressing", "{kind}/{}", test.input_path);
                continue;
            }
            let flux = flux_health(&obj).unwrap_or_else(|e| panic!("{kind}/{}: {e}", test.input_path));
            let expected = match test.health_status.status.as_str() {
                "Healthy" | "Suspended" => "Current",
                "Progressing" => "InProgress",
                "Degraded" => "Failed",
                other => panic!("{other}"),
            };
            assert_eq!(flux, expected, "{kind}/{}", test.input_path);
        }
    }
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct ActionTests {
    discovery_tests: Vec<DiscoveryTest>,
    action_tests: Vec<ActionTest>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct DiscoveryTest {
    input_path: String,
    result: Vec<DiscoveredAction>,
}

#[derive(serde::Deserialize)]
struct DiscoveredAction {
    name: String,
    #[serde(default)]
    disabled: bool,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct ActionTest {
    action: String,
    input_path: String,
    expected_output_path: String,
}

#[test]
fn the_action_test_yaml_agrees_with_the_actions_and_their_testdata() {
    let dir = customizations().join("RetentionPolicy/actions");
    let tests: ActionTests =
        serde_yaml::from_str(&std::fs::read_to_string(dir.join("action_test.yaml")).unwrap()).unwrap();
    assert!(tests.discovery_tests.len() >= 2 && !tests.action_tests.is_empty());
    for test in &tests.discovery_tests {
        let found = argo_actions(&yaml(&dir.join(&test.input_path)));
        let expected: Vec<(String, bool)> = test.result.iter().map(|a| (a.name.clone(), a.disabled)).collect();
        assert_eq!(found, expected, "{}", test.input_path);
    }
    for test in &tests.action_tests {
        // Argo CD's runner freezes time at Go's zero time.
        let out = argo_action(&yaml(&dir.join(&test.input_path)), &test.action, Clock::Frozen);
        let expected = yaml(&dir.join(&test.expected_output_path));
        assert_eq!(gitops::merge_patch(&expected, &out), None, "{} on {}: {out:#}", test.action, test.input_path);
    }
}

/// The argocd-cm keys a platform engineer merges into Argo CD's ConfigMap,
/// assembled from the scripts.
fn argocd_cm() -> String {
    let indent = |text: &str, by: &str| -> String {
        text.lines().map(|l| if l.is_empty() { "\n".to_owned() } else { format!("{by}{l}\n") }).collect()
    };
    let read = |p: &str| std::fs::read_to_string(customizations().join(p)).unwrap();
    let mut out = String::from(
        "# Argo CD resource customizations for Delenda's kinds, assembled from\n\
         # argocd/resource_customizations/delenda.dev/ (tests/gitops.rs checks that\n\
         # they agree). Merge these keys into the argocd-cm ConfigMap; see\n\
         # docs/gitops.md.\n\
         apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: argocd-cm\n  namespace: argocd\n  labels:\n    app.kubernetes.io/name: argocd-cm\n    app.kubernetes.io/part-of: argocd\ndata:\n",
    );
    for kind in ["DataStore", "RetentionPolicy", "ErasureRequest", "Hold", "AccessRequest"] {
        out += &format!("  resource.customizations.health.delenda.dev_{kind}: |\n");
        out += &indent(&read(&format!("{kind}/health.lua")), "    ");
    }
    out += "  resource.customizations.actions.delenda.dev_RetentionPolicy: |\n    discovery.lua: |\n";
    out += &indent(&read("RetentionPolicy/actions/discovery.lua"), "      ");
    out += "    definitions:\n      - name: run-now\n        action.lua: |\n";
    out += &indent(&read("RetentionPolicy/actions/run-now/action.lua"), "          ");
    out
}

#[test]
fn the_argocd_cm_carries_the_scripts_verbatim() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("argocd/argocd-cm.yaml");
    let generated = argocd_cm();
    if std::env::var_os("DELENDA_WRITE_ARGOCD_CM").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is stale: regenerate it with `DELENDA_WRITE_ARGOCD_CM=1 cargo test --test gitops argocd_cm`",
        path.display()
    );
    // And it reads back as the scripts, through YAML, as Argo CD reads it.
    let cm = yaml(&path);
    let health = cm["data"]["resource.customizations.health.delenda.dev_ErasureRequest"].as_str().unwrap();
    assert_eq!(health, std::fs::read_to_string(customizations().join("ErasureRequest/health.lua")).unwrap());
    let actions: serde_json::Value = serde_yaml::from_str(
        cm["data"]["resource.customizations.actions.delenda.dev_RetentionPolicy"].as_str().unwrap(),
    )
    .unwrap();
    assert_eq!(
        actions["definitions"][0]["action.lua"].as_str().unwrap(),
        std::fs::read_to_string(customizations().join("RetentionPolicy/actions/run-now/action.lua")).unwrap()
    );
}

#[test]
fn docs_gitops_shows_the_flux_expressions_as_committed() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(root.join("docs/gitops.md")).unwrap();
    let exprs = std::fs::read_to_string(root.join("flux/health-check-exprs.yaml")).unwrap();
    // The list without its comment header, indented under healthCheckExprs.
    let list: String = exprs
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| if l.is_empty() { "\n".to_owned() } else { format!("    {l}\n") })
        .collect();
    assert!(doc.contains(&list), "docs/gitops.md must show flux/health-check-exprs.yaml as committed:\n{list}");
    let checks = gitops::flux_checks();
    let kinds: Vec<&str> = checks.iter().map(|c| c.kind.as_str()).collect();
    assert_eq!(kinds, ["DataStore", "RetentionPolicy", "ErasureRequest", "Hold", "AccessRequest"]);
}

#[test]
fn the_documented_kubectl_patch_adds_the_keys_to_an_existing_argocd_cm_and_keeps_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().join("argocd-cm.yaml");
    std::fs::write(
        &base,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: argocd-cm\n  namespace: argocd\ndata:\n  url: https://argocd.example.com\n",
    )
    .unwrap();
    let patch = Path::new(env!("CARGO_MANIFEST_DIR")).join("argocd/argocd-cm.yaml");
    // The command docs/gitops.md shows, run locally on a copy of a ConfigMap.
    let out = std::process::Command::new("kubectl")
        .args(["patch", "--local", "-o", "json", "-f"])
        .arg(&base)
        .arg("--patch-file")
        .arg(&patch)
        .output()
        .expect("kubectl runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let merged: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(merged["data"]["url"], "https://argocd.example.com", "the ConfigMap's own keys stay");
    for kind in ["DataStore", "RetentionPolicy", "ErasureRequest", "Hold", "AccessRequest"] {
        let key = format!("resource.customizations.health.delenda.dev_{kind}");
        let script = std::fs::read_to_string(customizations().join(kind).join("health.lua")).unwrap();
        assert_eq!(merged["data"][&key].as_str(), Some(script.as_str()), "{key}");
    }
    assert!(merged["data"]["resource.customizations.actions.delenda.dev_RetentionPolicy"].is_string());
    let doc = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/gitops.md")).unwrap();
    assert!(doc.contains("kubectl -n argocd patch configmap argocd-cm --patch-file argocd/argocd-cm.yaml"));
}
