//! The conditions GitOps tools read (issue 15, item 1), written by the
//! real operator and waited for with the real `kubectl wait`, against the
//! test kube-apiserver and PostgreSQL: every kind becomes Ready when it is
//! what its spec asks for, and Stalled when it needs a person; at most one
//! of Ready, Reconciling and Stalled is True; each carries the
//! observedGeneration of the spec it judged.
mod support;

use std::time::Duration;

use delenda::api::{DataStore, ErasureRequest, RetentionPolicy};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Api;
use support::cluster::{EMAIL, Fixture, table_sql};

/// `kubectl wait --for=condition=<condition> <what>` in the fixture's namespace.
async fn kubectl_wait(f: &Fixture, what: &str, condition: &str) {
    let kubeconfig = support::setting("KUBECONFIG", "kube-apiserver");
    let out = tokio::process::Command::new("kubectl")
        .args(["--kubeconfig", &kubeconfig, "-n", &f.ns, "wait", what, &format!("--for=condition={condition}")])
        .args(["--timeout=60s"])
        .output()
        .await
        .expect("kubectl runs");
    assert!(
        out.status.success(),
        "kubectl wait {what} --for=condition={condition}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Exactly one of Ready, Reconciling and Stalled is True, and it is `which`.
fn standing(conditions: &[Condition], which: &str, generation: Option<i64>) {
    let on: Vec<&str> = conditions
        .iter()
        .filter(|c| ["Ready", "Reconciling", "Stalled"].contains(&c.type_.as_str()) && c.status == "True")
        .map(|c| c.type_.as_str())
        .collect();
    assert_eq!(on, [which], "{conditions:#?}");
    for c in conditions.iter().filter(|c| ["Ready", "Reconciling", "Stalled"].contains(&c.type_.as_str())) {
        assert_eq!(c.observed_generation, generation, "{c:?}");
    }
}

#[tokio::test]
async fn every_kind_becomes_ready_or_stalled_as_kubectl_wait_sees_it() {
    let mut f = Fixture::new("kstatus", None).await;
    let table = support::unique("contacts").replace('-', "_");
    f.sql(&table_sql(&table, 3, 2)).await;
    f.policy("contacts", "self", &[("contacts", &table, "email")]).await;
    // A policy whose period the operator refuses (over 100 years): it needs a person.
    let mut broken = serde_json::json!({"category": "broken", "description": "broken", "responsibleParty": "self",
        "legalBasis": "Contract", "retention": {"period": "1y"},
        "schedule": {"cron": "0 3 1 1 *", "timeZone": "Europe/Amsterdam"}, "mode": "Enforce",
        "targets": [{"name": "t", "dataStoreRef": {"name": "crm"}, "table": {"name": table, "timeColumn": "created_at"}}]});
    broken["retention"]["period"] = serde_json::json!("101y");
    f.policy_spec("broken", broken).await;
    f.identity_secret("subject", serde_json::json!({"email": EMAIL})).await;
    f.request("erasure", "subject", serde_json::json!({})).await;
    // A request whose Secret gives no identity any policy declares.
    f.identity_secret("nothing", serde_json::json!({"username": "someone"})).await;
    f.request("nothing-in-scope", "nothing", serde_json::json!({})).await;
    let operator = f.operator(true, Duration::from_secs(60));

    kubectl_wait(&f, "datastore/crm", "Ready").await;
    kubectl_wait(&f, "retentionpolicy/contacts", "Ready").await;
    kubectl_wait(&f, "erasurerequest/erasure", "Ready").await;
    kubectl_wait(&f, "retentionpolicy/broken", "Stalled").await;
    kubectl_wait(&f, "erasurerequest/nothing-in-scope", "Stalled").await;

    let stores: Api<DataStore> = f.api();
    let store = stores.get("crm").await.unwrap();
    standing(&store.status.unwrap().conditions, "Ready", store.metadata.generation);
    let policies: Api<RetentionPolicy> = f.api();
    for (name, which, reason) in [("contacts", "Ready", "Scheduled"), ("broken", "Stalled", "InvalidPeriod")] {
        let policy = policies.get(name).await.unwrap();
        let conditions = policy.status.unwrap().conditions;
        standing(&conditions, which, policy.metadata.generation);
        let c = conditions.iter().find(|c| c.type_ == which).unwrap();
        assert_eq!(c.reason, reason, "{name}: {c:?}");
    }
    let requests: Api<ErasureRequest> = f.api();
    for (name, which, reason) in
        [("erasure", "Ready", "Completed"), ("nothing-in-scope", "Stalled", "NoTargetsInScope")]
    {
        let request = requests.get(name).await.unwrap();
        let conditions = request.status.unwrap().conditions;
        standing(&conditions, which, request.metadata.generation);
        let c = conditions.iter().find(|c| c.type_ == which).unwrap();
        assert_eq!(c.reason, reason, "{name}: {c:?}");
    }
    assert_eq!(f.count(&table).await, 0, "the subject's rows were erased");
    operator.stop().await;
}
