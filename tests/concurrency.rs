//! Limits per DataStore across runs (issue 12, situation 5): 200 policies
//! due at once on one PostgreSQL DataStore with `maxConcurrency: 2` never
//! hold more than two connections, as PostgreSQL itself counts them. In a
//! test binary of its own, so no other test's connections are counted.
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use delenda::api::RetentionPolicy;
use kube::Api;
use kube::api::ListParams;
use sqlx::{Connection, PgConnection};
use support::cluster::Fixture;
use support::eventually;

#[tokio::test]
async fn two_hundred_policies_due_at_once_hold_no_more_connections_than_their_datastore_allows() {
    const POLICIES: usize = 200;
    let mut f = Fixture::new("limits", Some(serde_json::json!({"maxConcurrency": 2}))).await;
    let table = support::unique("visits").replace('-', "_");
    f.sql(&format!(
        "CREATE TABLE {table} (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, email text);
         INSERT INTO {table} SELECT g, now() - interval '10 days', NULL FROM generate_series(1, 2000) g;"
    ))
    .await;
    for i in 0..POLICIES {
        f.policy_spec(
            &format!("visits-{i:03}"),
            serde_json::json!({"category": "visits", "description": "visits", "responsibleParty": "self",
                "legalBasis": "Contract", "retention": {"period": "1d"},
                "schedule": {"cron": "0 3 1 1 *", "timeZone": "Europe/Amsterdam"}, "mode": "Enforce",
                "targets": [{"name": "visits", "dataStoreRef": {"name": "crm"},
                    "table": {"name": table, "timeColumn": "created_at"}}]}),
        )
        .await;
    }
    // Watch the operator's connections (application_name delenda) from PostgreSQL's side.
    let url = support::setting("POSTGRES_URL", "PostgreSQL");
    let mut monitor = support::reach(PgConnection::connect(&url).await, "PostgreSQL");
    let peak = Arc::new(AtomicI64::new(0));
    let samples = Arc::new(AtomicI64::new(0));
    let (stop_watch, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let watch = {
        let (peak, samples) = (peak.clone(), samples.clone());
        tokio::spawn(async move {
            loop {
                let n: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'delenda' AND datname = current_database()",
                )
                .fetch_one(&mut monitor)
                .await
                .unwrap();
                peak.fetch_max(n, Ordering::Relaxed);
                samples.fetch_add(1, Ordering::Relaxed);
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(10)) => {}
                    _ = &mut stopped => return,
                }
            }
        })
    };
    let mut settings = f.settings(false, Duration::from_secs(60));
    settings.max_concurrent_runs = 50;
    let operator = f.operator_with(settings);
    // All due at once: every policy is asked to run now.
    let policies: Api<RetentionPolicy> = f.api();
    for i in 0..POLICIES {
        let patch = serde_json::json!({"metadata": {"annotations": {"delenda.dev/run-now": "now"}}});
        policies
            .patch(&format!("visits-{i:03}"), &kube::api::PatchParams::default(), &kube::api::Patch::Merge(&patch))
            .await
            .unwrap();
    }
    eventually("every policy to have run", 300, async || {
        let list = policies.list(&ListParams::default()).await.ok()?;
        let done = list.items.iter().filter(|p| p.status.as_ref().is_some_and(|s| s.history.len() == 1)).count();
        (done == POLICIES).then_some(())
    })
    .await;
    let _ = stop_watch.send(());
    watch.await.unwrap();
    let list = policies.list(&ListParams::default()).await.unwrap();
    let failed: Vec<String> = list
        .items
        .iter()
        .filter_map(|p| p.status.as_ref())
        .filter(|s| s.history[0].outcome != "Succeeded")
        .map(|s| format!("{:?}", s.last_run))
        .collect();
    assert!(failed.is_empty(), "{failed:?}");
    let succeeded = list.items.iter().filter(|p| p.status.as_ref().unwrap().history[0].outcome == "Succeeded").count();
    assert_eq!(succeeded, POLICIES, "every run succeeded, waiting its turn rather than failing");
    let deleted: i64 = list.items.iter().map(|p| p.status.as_ref().unwrap().history[0].deleted).sum();
    assert_eq!(deleted, 2000, "the due rows went once");
    let (peak, samples) = (peak.load(Ordering::Relaxed), samples.load(Ordering::Relaxed));
    eprintln!("peak {peak} connections over {samples} samples");
    assert!(samples > 50, "the monitor sampled the runs ({samples} samples)");
    assert!(peak >= 1, "the monitor saw the operator's connections");
    assert!(peak <= 2, "{peak} connections at once; the DataStore allows 2");
    operator.stop().await;
}
