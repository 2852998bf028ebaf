//! A policy run end to end against the real PostgreSQL: counts, guardrails,
//! purge, read-back and chained evidence.
mod support;

use std::collections::BTreeMap;
use std::sync::Arc;

use delenda::api::RetentionPolicySpec;
use delenda::engine::evidence::verify_chain;
use delenda::engine::run::{PolicyRun, RunOutcome, Stores, run_policy};
use delenda::stores::sql::{PoolSettings, SqlStore};
use delenda::stores::{Cutoff, PurgeOptions, Store};
use jiff::Timestamp;
use sqlx::{Connection, PgConnection};

const NOW: &str = "2026-11-28T02:30:00Z";

async fn pg() -> PgConnection {
    let url = support::setting("POSTGRES_URL", "PostgreSQL");
    support::reach(PgConnection::connect(&url).await, "PostgreSQL")
}

/// A table with `due` rows older than six months, `kept` recent rows and
/// `open` rows without a time (never due).
async fn table(conn: &mut PgConnection, due: i64, kept: i64, open: i64) -> String {
    let name = support::unique("tickets").replace('-', "_");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE {name} (id bigint PRIMARY KEY, created_at timestamptz, email text);
         INSERT INTO {name} SELECT g, '2025-01-01'::timestamptz + g * interval '1 minute', 'a' || g || '@example.org' FROM generate_series(1, {due}) g;
         INSERT INTO {name} SELECT g, '2026-11-01'::timestamptz, NULL FROM generate_series({due} + 1, {due} + {kept}) g;
         INSERT INTO {name} SELECT g, NULL, NULL FROM generate_series({due} + {kept} + 1, {due} + {kept} + {open}) g;"
    )))
    .execute(&mut *conn)
    .await
    .unwrap();
    name
}

async fn rows(conn: &mut PgConnection, table: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}"))).fetch_one(conn).await.unwrap()
}

fn policy(tables: &[&str], mode: &str, guardrails: serde_json::Value) -> RetentionPolicySpec {
    let targets: Vec<_> = tables
        .iter()
        .enumerate()
        .map(|(i, t)| {
            serde_json::json!({"name": format!("t{i}"), "dataStoreRef": {"name": "crm"},
            "table": {"name": t, "timeColumn": "created_at"}})
        })
        .collect();
    serde_json::from_value(serde_json::json!({
        "category": "support-tickets", "description": "Support tickets", "responsibleParty": "self",
        "legalBasis": "Contract", "retention": {"period": "6mo"},
        "schedule": {"cron": "30 2 * * *", "timeZone": "UTC"}, "mode": mode,
        "guardrails": guardrails, "targets": targets
    }))
    .unwrap()
}

fn stores() -> Stores {
    let url = support::setting("POSTGRES_URL", "PostgreSQL");
    let store: Arc<dyn Store> = Arc::new(SqlStore::connect_lazy(&url, PoolSettings::default()).unwrap());
    BTreeMap::from([("crm".to_owned(), store)])
}

fn cutoff(spec: &RetentionPolicySpec) -> Cutoff {
    let now: Timestamp = NOW.parse().unwrap();
    let at = spec.retention.period.before(&now.to_zoned(jiff::tz::TimeZone::UTC)).unwrap().timestamp();
    Cutoff::planned(at, now).unwrap()
}

#[tokio::test]
async fn an_enforced_run_deletes_what_is_due_proves_it_and_chains_its_evidence() {
    let mut conn = pg().await;
    let a = table(&mut conn, 120, 30, 5).await;
    let b = table(&mut conn, 7, 3, 0).await;
    let spec = policy(&[&a, &b], "Enforce", serde_json::Value::Null);
    let stores = stores();
    let first = run_policy(
        PolicyRun {
            policy: "ns/support-tickets",
            spec: &spec,
            run_id: "r1",
            cutoff: cutoff(&spec),
            previous_digest: None,
        },
        &stores,
        |_| PurgeOptions::new(spec.mode),
    )
    .await;
    assert_eq!(first.outcome, RunOutcome::Succeeded, "{:?}", first.targets);
    assert_eq!(first.targets[0].deleted, 120);
    assert_eq!(first.targets[1].deleted, 7);
    assert!(first.proves_compliance(spec.mode));
    assert_eq!(rows(&mut conn, &a).await, 35, "recent rows and rows without a time stay");
    assert_eq!(rows(&mut conn, &b).await, 3);

    let second = run_policy(
        PolicyRun {
            policy: "ns/support-tickets",
            spec: &spec,
            run_id: "r2",
            cutoff: cutoff(&spec),
            previous_digest: Some(first.evidence.digest.clone()),
        },
        &stores,
        |_| PurgeOptions::new(spec.mode),
    )
    .await;
    assert_eq!(second.targets.iter().map(|t| t.deleted).sum::<u64>(), 0, "a repeated run deletes nothing more");
    assert_eq!(verify_chain(&[first.evidence.clone(), second.evidence.clone()]), Ok(()));
    assert_eq!(first.evidence.record["targets"][0]["deleted"], 120);
    assert_eq!(first.evidence.record["cutoff"], "2026-05-28T02:30:00Z");
}

#[tokio::test]
async fn a_guardrail_stops_the_run_before_the_first_delete() {
    let mut conn = pg().await;
    let a = table(&mut conn, 60, 10, 0).await;
    let b = table(&mut conn, 50, 10, 0).await;
    let spec = policy(&[&a, &b], "Enforce", serde_json::json!({"maxRecordsPerRun": 100}));
    let result = run_policy(
        PolicyRun { policy: "ns/p", spec: &spec, run_id: "r1", cutoff: cutoff(&spec), previous_digest: None },
        &stores(),
        |_| PurgeOptions::new(spec.mode),
    )
    .await;
    assert_eq!(result.outcome, RunOutcome::Stopped);
    assert_eq!(result.stopped_by.as_ref().unwrap().reason(), "MaxRecordsExceeded");
    assert!(!result.proves_compliance(spec.mode));
    assert_eq!(rows(&mut conn, &a).await, 70, "nothing was deleted from the first target");
    assert_eq!(rows(&mut conn, &b).await, 60, "nothing was deleted from the second target");
    assert_eq!(result.evidence.record["stoppedBy"], "MaxRecordsExceeded");
}

#[tokio::test]
async fn a_dry_run_counts_and_deletes_nothing() {
    let mut conn = pg().await;
    let a = table(&mut conn, 40, 10, 2).await;
    let spec = policy(&[&a], "DryRun", serde_json::Value::Null);
    let result = run_policy(
        PolicyRun { policy: "ns/p", spec: &spec, run_id: "r1", cutoff: cutoff(&spec), previous_digest: None },
        &stores(),
        |_| PurgeOptions::new(spec.mode),
    )
    .await;
    assert_eq!(result.outcome, RunOutcome::Succeeded);
    assert_eq!(result.targets[0].matched, 40);
    assert_eq!(result.targets[0].deleted, 0);
    assert!(!result.proves_compliance(spec.mode), "a dry run proves nothing");
    assert_eq!(rows(&mut conn, &a).await, 52);
}

#[tokio::test]
async fn a_target_on_a_missing_store_fails_without_claiming_success() {
    let mut conn = pg().await;
    let a = table(&mut conn, 5, 1, 0).await;
    let mut spec = policy(&[&a], "Enforce", serde_json::Value::Null);
    spec.targets[0].data_store_ref.name = "billing".into();
    let result = run_policy(
        PolicyRun { policy: "ns/p", spec: &spec, run_id: "r1", cutoff: cutoff(&spec), previous_digest: None },
        &stores(),
        |_| PurgeOptions::new(spec.mode),
    )
    .await;
    assert_eq!(result.outcome, RunOutcome::Failed);
    assert_eq!(result.targets[0].remaining, None);
    assert!(result.targets[0].error.as_ref().unwrap().1.contains("billing"));
    assert_eq!(rows(&mut conn, &a).await, 6);
}

#[tokio::test]
async fn a_percentage_guardrail_counts_the_whole_table_and_stops_a_run_that_would_take_too_much() {
    let mut conn = pg().await;
    let a = table(&mut conn, 60, 40, 0).await;
    let stopped = policy(&[&a], "Enforce", serde_json::json!({"maxPercentPerRun": 59}));
    let result = run_policy(
        PolicyRun { policy: "ns/p", spec: &stopped, run_id: "r1", cutoff: cutoff(&stopped), previous_digest: None },
        &stores(),
        |_| PurgeOptions::new(stopped.mode),
    )
    .await;
    assert_eq!(result.outcome, RunOutcome::Stopped);
    assert_eq!(result.stopped_by.as_ref().unwrap().reason(), "MaxPercentExceeded", "{:?}", result.stopped_by);
    assert_eq!(rows(&mut conn, &a).await, 100);

    let allowed = policy(&[&a], "Enforce", serde_json::json!({"maxPercentPerRun": 60}));
    let result = run_policy(
        PolicyRun { policy: "ns/p", spec: &allowed, run_id: "r2", cutoff: cutoff(&allowed), previous_digest: None },
        &stores(),
        |_| PurgeOptions::new(allowed.mode),
    )
    .await;
    assert_eq!(result.outcome, RunOutcome::Succeeded);
    assert_eq!(rows(&mut conn, &a).await, 40);
}
