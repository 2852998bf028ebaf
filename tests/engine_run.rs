//! A policy run end to end against the real PostgreSQL: clocks, counts,
//! guardrails (before the first delete and as a budget while deleting),
//! purge, read-back and the evidence record.
mod support;

use std::collections::BTreeMap;
use std::sync::Arc;

use delenda::api::RetentionPolicySpec;
use delenda::api::policy::Target;
use delenda::engine::connect::StoreHandle;
use delenda::engine::run::{PolicyRun, RunOutcome, Stores, run_policy};
use delenda::stores::sql::{PoolSettings, SqlStore};
use delenda::stores::{Cutoff, ProbeReport, PurgeFuture, PurgeOptions, Store, StoreFuture, Subject};
use jiff::{Timestamp, ToSpan};
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

fn pg_store() -> SqlStore {
    let url = support::setting("POSTGRES_URL", "PostgreSQL");
    SqlStore::connect_lazy(&url, PoolSettings::default()).unwrap()
}

fn stores() -> Stores {
    BTreeMap::from([("crm".to_owned(), StoreHandle::new(Arc::new(pg_store())))])
}

/// The planner's cutoff at `NOW`, and the operator's clock at `NOW`: the
/// test's rows are placed relative to it, and the server's real clock is
/// not asked (these runs use a store without one, see `no_clock`).
fn cutoff(spec: &RetentionPolicySpec) -> Cutoff {
    delenda::plan::cutoff(spec.retention.period, NOW.parse().unwrap(), &jiff::tz::TimeZone::UTC).unwrap()
}

fn now() -> Timestamp {
    NOW.parse().unwrap()
}

/// The real PostgreSQL store, with its clock hidden: these tests run at a
/// fixed "now" in 2026 that the server's clock does not share. The clock
/// check has tests of its own below, against the server's real clock.
struct NoClock(SqlStore);

impl Store for NoClock {
    fn kind(&self) -> &'static str {
        self.0.kind()
    }
    fn probe(&self) -> StoreFuture<'_, ProbeReport> {
        self.0.probe()
    }
    fn check_target<'a>(&'a self, t: &'a Target) -> StoreFuture<'a, ()> {
        self.0.check_target(t)
    }
    fn count_due<'a>(&'a self, t: &'a Target, c: &'a Cutoff) -> StoreFuture<'a, u64> {
        self.0.count_due(t, c)
    }
    fn count_total<'a>(&'a self, t: &'a Target) -> StoreFuture<'a, Option<u64>> {
        self.0.count_total(t)
    }
    fn purge_due<'a>(&'a self, t: &'a Target, c: &'a Cutoff, o: &'a PurgeOptions) -> PurgeFuture<'a> {
        self.0.purge_due(t, c, o)
    }
    fn count_subject<'a>(&'a self, t: &'a Target, s: &'a Subject) -> StoreFuture<'a, u64> {
        self.0.count_subject(t, s)
    }
    fn erase_subject<'a>(&'a self, t: &'a Target, s: &'a Subject, o: &'a PurgeOptions) -> PurgeFuture<'a> {
        self.0.erase_subject(t, s, o)
    }
}

fn no_clock() -> Stores {
    BTreeMap::from([("crm".to_owned(), StoreHandle::new(Arc::new(NoClock(pg_store()))))])
}

#[tokio::test]
async fn an_enforced_run_deletes_what_is_due_proves_it_and_records_its_evidence() {
    let mut conn = pg().await;
    let a = table(&mut conn, 120, 30, 5).await;
    let b = table(&mut conn, 7, 3, 0).await;
    let spec = policy(&[&a, &b], "Enforce", serde_json::Value::Null);
    let stores = no_clock();
    let first = run_policy(
        PolicyRun {
            policy: "ns/support-tickets",
            spec: &spec,
            run_id: "r1",
            cutoff: cutoff(&spec),
            now: now(),
            interruption: Default::default(),
        },
        &stores,
        |_| PurgeOptions::new(spec.mode),
    )
    .await;
    assert_eq!(first.outcome, RunOutcome::Succeeded, "{:?}", first.targets);
    assert_eq!(first.targets[0].account.deleted, 120);
    assert_eq!(first.targets[1].account.deleted, 7);
    assert!(first.proves_compliance(spec.mode));
    assert_eq!(rows(&mut conn, &a).await, 35, "recent rows and rows without a time stay");
    assert_eq!(rows(&mut conn, &b).await, 3);

    let second = run_policy(
        PolicyRun {
            policy: "ns/support-tickets",
            spec: &spec,
            run_id: "r2",
            cutoff: cutoff(&spec),
            now: now(),
            interruption: Default::default(),
        },
        &stores,
        |_| PurgeOptions::new(spec.mode),
    )
    .await;
    assert_eq!(second.targets.iter().map(|t| t.account.deleted).sum::<u64>(), 0, "a repeated run deletes nothing more");
    assert_eq!(second.record["runId"], "r2");
    assert_eq!(first.record["targets"][0]["records"]["deleted"], 120);
    assert_eq!(first.record["targets"][0]["records"]["notDue"], 35);
    assert_eq!(first.record["cutoff"], "2026-05-28T02:30:00.000000001Z");
}

#[tokio::test]
async fn a_guardrail_stops_the_run_before_the_first_delete() {
    let mut conn = pg().await;
    let a = table(&mut conn, 60, 10, 0).await;
    let b = table(&mut conn, 50, 10, 0).await;
    let spec = policy(&[&a, &b], "Enforce", serde_json::json!({"maxRecordsPerRun": 100}));
    let result = run_policy(
        PolicyRun {
            policy: "ns/p",
            spec: &spec,
            run_id: "r1",
            cutoff: cutoff(&spec),
            now: now(),
            interruption: Default::default(),
        },
        &no_clock(),
        |_| PurgeOptions::new(spec.mode),
    )
    .await;
    assert_eq!(result.outcome, RunOutcome::Stopped);
    assert_eq!(result.stopped_by.as_ref().unwrap().reason(), "MaxRecordsExceeded");
    assert!(!result.proves_compliance(spec.mode));
    assert_eq!(rows(&mut conn, &a).await, 70, "nothing was deleted from the first target");
    assert_eq!(rows(&mut conn, &b).await, 60, "nothing was deleted from the second target");
    assert_eq!(result.record["stoppedBy"], "MaxRecordsExceeded");
}

#[tokio::test]
async fn a_dry_run_counts_and_deletes_nothing() {
    let mut conn = pg().await;
    let a = table(&mut conn, 40, 10, 2).await;
    let spec = policy(&[&a], "DryRun", serde_json::Value::Null);
    let result = run_policy(
        PolicyRun {
            policy: "ns/p",
            spec: &spec,
            run_id: "r1",
            cutoff: cutoff(&spec),
            now: now(),
            interruption: Default::default(),
        },
        &no_clock(),
        |_| PurgeOptions::new(spec.mode),
    )
    .await;
    assert_eq!(result.outcome, RunOutcome::Succeeded);
    assert_eq!(result.targets[0].account.matched, 40);
    assert_eq!(result.targets[0].account.deleted, 0);
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
        PolicyRun {
            policy: "ns/p",
            spec: &spec,
            run_id: "r1",
            cutoff: cutoff(&spec),
            now: now(),
            interruption: Default::default(),
        },
        &no_clock(),
        |_| PurgeOptions::new(spec.mode),
    )
    .await;
    assert_eq!(result.outcome, RunOutcome::Failed);
    assert_eq!(result.targets[0].account.remaining, None);
    assert!(result.targets[0].error.as_ref().unwrap().1.contains("billing"));
    assert_eq!(rows(&mut conn, &a).await, 6);
}

#[tokio::test]
async fn a_percentage_guardrail_counts_the_whole_table_and_stops_a_run_that_would_take_too_much() {
    let mut conn = pg().await;
    let a = table(&mut conn, 60, 40, 0).await;
    let stopped = policy(&[&a], "Enforce", serde_json::json!({"maxPercentPerRun": 59}));
    let result = run_policy(
        PolicyRun {
            policy: "ns/p",
            spec: &stopped,
            run_id: "r1",
            cutoff: cutoff(&stopped),
            now: now(),
            interruption: Default::default(),
        },
        &no_clock(),
        |_| PurgeOptions::new(stopped.mode),
    )
    .await;
    assert_eq!(result.outcome, RunOutcome::Stopped);
    assert_eq!(result.stopped_by.as_ref().unwrap().reason(), "MaxPercentExceeded", "{:?}", result.stopped_by);
    assert_eq!(rows(&mut conn, &a).await, 100);

    let allowed = policy(&[&a], "Enforce", serde_json::json!({"maxPercentPerRun": 60}));
    let result = run_policy(
        PolicyRun {
            policy: "ns/p",
            spec: &allowed,
            run_id: "r2",
            cutoff: cutoff(&allowed),
            now: now(),
            interruption: Default::default(),
        },
        &no_clock(),
        |_| PurgeOptions::new(allowed.mode),
    )
    .await;
    assert_eq!(result.outcome, RunOutcome::Succeeded);
    assert_eq!(rows(&mut conn, &a).await, 40);
}

/// Wraps the real store of one target so that rows become due between the
/// run's count and its delete, as a backfill or a clock-skewed writer does.
struct LateRows {
    store: SqlStore,
    table: String,
    rows: i64,
}

impl Store for LateRows {
    fn kind(&self) -> &'static str {
        self.store.kind()
    }
    fn probe(&self) -> StoreFuture<'_, ProbeReport> {
        self.store.probe()
    }
    fn check_target<'a>(&'a self, t: &'a Target) -> StoreFuture<'a, ()> {
        self.store.check_target(t)
    }
    fn count_due<'a>(&'a self, t: &'a Target, c: &'a Cutoff) -> StoreFuture<'a, u64> {
        self.store.count_due(t, c)
    }
    fn count_total<'a>(&'a self, t: &'a Target) -> StoreFuture<'a, Option<u64>> {
        self.store.count_total(t)
    }
    fn purge_due<'a>(&'a self, t: &'a Target, c: &'a Cutoff, o: &'a PurgeOptions) -> PurgeFuture<'a> {
        Box::pin(async move {
            let insert = format!(
                "INSERT INTO {table} SELECT g, '2025-01-01'::timestamptz, NULL FROM generate_series(100001, 100000 + {n}) g",
                table = self.table,
                n = self.rows
            );
            sqlx::raw_sql(sqlx::AssertSqlSafe(insert)).execute(self.store.pool()).await.unwrap();
            self.store.purge_due(t, c, o).await
        })
    }
    fn count_subject<'a>(&'a self, t: &'a Target, s: &'a Subject) -> StoreFuture<'a, u64> {
        self.store.count_subject(t, s)
    }
    fn erase_subject<'a>(&'a self, t: &'a Target, s: &'a Subject, o: &'a PurgeOptions) -> PurgeFuture<'a> {
        self.store.erase_subject(t, s, o)
    }
}

#[tokio::test]
async fn max_records_per_run_holds_while_deleting_over_all_targets() {
    // Counted: 100 + 40 = 140 due, within 150. Then 100 more become due in
    // the second target before its purge: without a budget the run deleted
    // 240; it must stop at 150 and say so.
    let mut conn = pg().await;
    let a = table(&mut conn, 100, 10, 0).await;
    let b = table(&mut conn, 40, 10, 0).await;
    let mut spec = policy(&[&a, &b], "Enforce", serde_json::json!({"maxRecordsPerRun": 150}));
    spec.targets[1].data_store_ref.name = "late".into();
    let mut stores = no_clock();
    stores
        .insert("late".into(), StoreHandle::new(Arc::new(LateRows { store: pg_store(), table: b.clone(), rows: 100 })));
    let result = run_policy(
        PolicyRun {
            policy: "ns/p",
            spec: &spec,
            run_id: "r1",
            cutoff: cutoff(&spec),
            now: now(),
            interruption: Default::default(),
        },
        &stores,
        |_| {
            let mut o = PurgeOptions::new(spec.mode);
            o.initial_batch_size = 7;
            o
        },
    )
    .await;
    let deleted = result.deleted();
    assert_eq!(deleted, 150, "{:?}", result.targets);
    assert_eq!(result.outcome, RunOutcome::Stopped, "{:?}", result.targets);
    assert_eq!(result.stopped_by.as_ref().unwrap().reason(), "GuardrailReached");
    assert!(!result.proves_compliance(spec.mode));
    assert_eq!(result.targets[1].account.deleted, 50, "the second target keeps what the budget did not allow");
    assert_eq!(result.targets[1].error.as_ref().unwrap().0, "GuardrailReached");
    assert_eq!(rows(&mut conn, &a).await, 10);
    assert_eq!(rows(&mut conn, &b).await, 140 + 10 - 50);
    assert_eq!(result.record["stoppedBy"], "GuardrailReached");
    assert_eq!(result.record["targets"][1]["records"]["deleted"], 50);
}

#[tokio::test]
async fn max_percent_per_run_holds_while_deleting() {
    // 60 of 100 due, 60% allowed; 30 more become due before the purge.
    let mut conn = pg().await;
    let a = table(&mut conn, 60, 40, 0).await;
    let mut spec = policy(&[&a], "Enforce", serde_json::json!({"maxPercentPerRun": 60}));
    spec.targets[0].data_store_ref.name = "late".into();
    let stores: Stores = BTreeMap::from([(
        "late".to_owned(),
        StoreHandle::new(Arc::new(LateRows { store: pg_store(), table: a.clone(), rows: 30 })),
    )]);
    let result = run_policy(
        PolicyRun {
            policy: "ns/p",
            spec: &spec,
            run_id: "r1",
            cutoff: cutoff(&spec),
            now: now(),
            interruption: Default::default(),
        },
        &stores,
        |_| PurgeOptions::new(spec.mode),
    )
    .await;
    assert_eq!(result.outcome, RunOutcome::Stopped, "{:?}", result.targets);
    assert_eq!(result.deleted(), 60, "60% of the 100 rows counted");
    assert_eq!(rows(&mut conn, &a).await, 70);
}

/// A table whose rows are `hours` old by the real clock.
async fn aged_table(conn: &mut PgConnection, ages_in_hours: &[i64]) -> String {
    let name = support::unique("aged").replace('-', "_");
    let values: Vec<String> =
        ages_in_hours.iter().enumerate().map(|(i, h)| format!("({}, now() - interval '{h} hours')", i + 1)).collect();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE {name} (id bigint PRIMARY KEY, created_at timestamptz);
         INSERT INTO {name} VALUES {};",
        values.join(", ")
    )))
    .execute(&mut *conn)
    .await
    .unwrap();
    name
}

#[tokio::test]
async fn an_operator_whose_clock_runs_ahead_deletes_nothing() {
    // Under a one-day period, rows one hour old are not due. An operator
    // whose clock runs two days ahead would find them due.
    let mut conn = pg().await;
    let a = aged_table(&mut conn, &[1, 1, 72]).await;
    let mut spec = policy(&[&a], "Enforce", serde_json::Value::Null);
    spec.retention.period = "1d".parse().unwrap();
    let ahead = Timestamp::now() + 48.hours();
    let cutoff = delenda::plan::cutoff(spec.retention.period, ahead, &jiff::tz::TimeZone::UTC).unwrap();
    let result = run_policy(
        PolicyRun { policy: "ns/p", spec: &spec, run_id: "r1", cutoff, now: ahead, interruption: Default::default() },
        &stores(),
        |_| PurgeOptions::new(spec.mode),
    )
    .await;
    assert_eq!(result.outcome, RunOutcome::Failed);
    let (reason, message) = result.targets[0].error.clone().unwrap();
    assert_eq!(reason, "ClockSkew", "{message}");
    assert!(message.contains("maxClockSkewSeconds") && message.contains("nothing was deleted"), "{message}");
    assert_eq!(result.deleted(), 0);
    assert_eq!(rows(&mut conn, &a).await, 3, "nothing was deleted");

    // With the right clock, only the row three days old goes.
    let right = Timestamp::now();
    let cutoff = delenda::plan::cutoff(spec.retention.period, right, &jiff::tz::TimeZone::UTC).unwrap();
    let result = run_policy(
        PolicyRun { policy: "ns/p", spec: &spec, run_id: "r2", cutoff, now: right, interruption: Default::default() },
        &stores(),
        |_| PurgeOptions::new(spec.mode),
    )
    .await;
    assert_eq!(result.outcome, RunOutcome::Succeeded, "{:?}", result.targets);
    assert_eq!(rows(&mut conn, &a).await, 2);
}

#[tokio::test]
async fn a_clock_skew_within_the_datastores_tolerance_is_accepted() {
    let mut conn = pg().await;
    let a = aged_table(&mut conn, &[1, 72]).await;
    let mut spec = policy(&[&a], "Enforce", serde_json::Value::Null);
    spec.retention.period = "1d".parse().unwrap();
    let ahead = Timestamp::now() + 2.minutes();
    let cutoff = delenda::plan::cutoff(spec.retention.period, ahead, &jiff::tz::TimeZone::UTC).unwrap();
    let result = run_policy(
        PolicyRun {
            policy: "ns/p",
            spec: &spec,
            run_id: "r1",
            cutoff: cutoff.clone(),
            now: ahead,
            interruption: Default::default(),
        },
        &stores(),
        |_| PurgeOptions::new(spec.mode),
    )
    .await;
    assert_eq!(result.outcome, RunOutcome::Succeeded, "two minutes are within the default five");
    assert_eq!(rows(&mut conn, &a).await, 1);
    // A DataStore that allows only a minute refuses the same skew.
    let mut strict = stores();
    strict.get_mut("crm").unwrap().max_clock_skew = std::time::Duration::from_secs(60);
    let result = run_policy(
        PolicyRun { policy: "ns/p", spec: &spec, run_id: "r2", cutoff, now: ahead, interruption: Default::default() },
        &strict,
        |_| PurgeOptions::new(spec.mode),
    )
    .await;
    assert_eq!(result.targets[0].error.as_ref().unwrap().0, "ClockSkew");
}

#[tokio::test]
async fn a_target_that_fails_halfway_reports_the_records_it_deleted() {
    // A foreign key without ON DELETE CASCADE stops the purge at the batch
    // holding a referred-to row; the batches before it did delete.
    let mut conn = pg().await;
    let a = table(&mut conn, 30, 5, 0).await;
    let child = support::unique("invoices").replace('-', "_");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE {child} (id bigint PRIMARY KEY, ticket bigint REFERENCES {a} (id) ON DELETE RESTRICT);
         INSERT INTO {child} VALUES (1, 25);"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    let spec = policy(&[&a], "Enforce", serde_json::Value::Null);
    let result = run_policy(
        PolicyRun {
            policy: "ns/p",
            spec: &spec,
            run_id: "r1",
            cutoff: cutoff(&spec),
            now: now(),
            interruption: Default::default(),
        },
        &no_clock(),
        |_| {
            let mut o = PurgeOptions::new(spec.mode);
            o.initial_batch_size = 5;
            o.max_batch_size = 5;
            o
        },
    )
    .await;
    assert_eq!(result.outcome, RunOutcome::Failed);
    let target = &result.targets[0];
    let gone = 35 - rows(&mut conn, &a).await as u64;
    assert!(gone > 0, "earlier batches deleted rows");
    assert_eq!(target.account.deleted, gone, "the failed target counts what it deleted: {:?}", target.account);
    assert_eq!(target.error.as_ref().unwrap().0, "ReferencedByOtherRecords");
    assert!(target.error.as_ref().unwrap().1.contains(&child), "{:?}", target.error);
    assert_eq!(result.record["targets"][0]["records"]["deleted"], gone);
}
