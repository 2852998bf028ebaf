//! The SQL store against the real PostgreSQL and MariaDB from `tests/env/up`,
//! and SQLite: hostile identities change nothing else, children go first,
//! batches stay under the latency target, errors say what to change. Which
//! rows are due is proven in `sql_due.rs`; the situations real tables hold
//! in `sql_exact.rs`.
mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use delenda::api::Mode;
use delenda::api::policy::Target;
use delenda::stores::sql::{PoolSettings, SqlStore};
use delenda::stores::{Cutoff, PurgeOptions, Store, StoreError, Subject};
use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};
use serde_json::json;
use sqlx::{AssertSqlSafe, Row};

use support::sql::{Engine, drop_table, exec, ph, store, table_name};

/// Column types: (key, timestamp, text, integer).
fn types(engine: Engine) -> (&'static str, &'static str, &'static str, &'static str) {
    match engine {
        Engine::Postgres => ("bigint PRIMARY KEY", "timestamptz", "text", "integer"),
        Engine::MariaDb => ("BIGINT PRIMARY KEY", "DATETIME(6)", "VARCHAR(4000)", "INT"),
        Engine::Sqlite => ("INTEGER PRIMARY KEY", "TEXT", "TEXT", "INTEGER"),
    }
}

/// A bound timestamp in an INSERT.
fn ts(engine: Engine, p: &str) -> String {
    match engine {
        Engine::Postgres => format!("CAST({p} AS timestamptz)"),
        _ => p.to_owned(),
    }
}

/// A row of the test tables.
#[derive(Clone, Debug)]
struct Row4 {
    id: i64,
    created_at: Option<Timestamp>,
    email: Option<String>,
    kind: Option<String>,
    keep_months: Option<i32>,
}

fn text_of(t: Timestamp) -> String {
    t.to_zoned(TimeZone::UTC).strftime("%Y-%m-%d %H:%M:%S").to_string()
}

async fn create_table(store: &SqlStore, engine: Engine, table: &str) {
    let (key, ts, text, int) = types(engine);
    exec(
        store,
        &format!(
            "CREATE TABLE {table} (id {key}, created_at {ts} NULL, email {text} NULL, kind {text} NULL, keep_months {int} NULL){}",
            engine.table_suffix()
        ),
    )
    .await;
}

async fn insert(store: &SqlStore, engine: Engine, table: &str, rows: &[Row4]) {
    for chunk in rows.chunks(50) {
        let mut n = 0;
        let values: Vec<String> = chunk
            .iter()
            .map(|_| {
                let a = ph(store, &mut n);
                let b = ts(engine, &ph(store, &mut n));
                let c = ph(store, &mut n);
                let d = ph(store, &mut n);
                let e = ph(store, &mut n);
                format!("({a}, {b}, {c}, {d}, {e})")
            })
            .collect();
        let sql =
            format!("INSERT INTO {table} (id, created_at, email, kind, keep_months) VALUES {}", values.join(", "));
        let mut q = sqlx::query(AssertSqlSafe(sql));
        for r in chunk {
            q = q
                .bind(r.id)
                .bind(r.created_at.map(text_of))
                .bind(r.email.clone())
                .bind(r.kind.clone())
                .bind(r.keep_months);
        }
        q.execute(store.pool()).await.unwrap();
    }
}

/// Every row, every column as the database renders it as text, by id.
async fn snapshot(store: &SqlStore, engine: Engine, table: &str) -> Vec<(i64, Vec<Option<String>>)> {
    support::sql::snapshot(store, engine, table, &["created_at", "email", "kind", "keep_months"]).await
}

/// A target on `table`, whose times without a zone (MariaDB DATETIME,
/// SQLite text) were written in UTC.
fn target(table: &str, extra: serde_json::Value) -> Target {
    let mut spec = json!({"name": table, "timeColumn": "created_at", "timeZone": "UTC"});
    spec.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    serde_json::from_value(json!({
        "name": "t",
        "dataStoreRef": {"name": "db"},
        "table": spec,
        "subjectFields": [{"identity": "email", "field": "email"}],
    }))
    .unwrap()
}

fn base() -> Timestamp {
    "2020-01-01T00:00:00Z".parse().unwrap()
}

fn hostile() -> Vec<String> {
    vec![
        "o'brien@example.com".into(),
        "x'; DROP TABLE t; --".into(),
        "\"; DROP TABLE t; --".into(),
        "100%".into(),
        "%".into(),
        "_".into(),
        "%_".into(),
        "__".into(),
        "a_c@example.com".into(),
        "back\\slash".into(),
        "zoë@例え.jp".into(),
        "😀@emoji.example".into(),
        "Jan@Example.com".into(),
        "jan@example.com".into(),
        "jan@example.com ".into(),
        "x".repeat(3000),
        "".into(),
    ]
}

/// Rows holding every hostile value and near misses of it.
fn hostile_rows() -> Vec<Row4> {
    let mut values = hostile();
    values.extend(["abc@example.com".into(), "100".into(), "a".into(), "JAN@EXAMPLE.COM".into(), "x".repeat(2999)]);
    values
        .into_iter()
        .enumerate()
        .map(|(i, email)| Row4 {
            id: i as i64 + 1,
            created_at: Some(base()),
            email: Some(email),
            kind: None,
            keep_months: None,
        })
        .collect()
}

async fn hostile_identities(engine: Engine) {
    let store = store(engine).await;
    let table = table_name("erase");
    create_table(&store, engine, &table).await;
    let rows = hostile_rows();
    insert(&store, engine, &table, &rows).await;
    // An identity of a kind without a shape of its own matches exactly.
    let mut target = target(&table, json!({}));
    target.subject_fields[0].identity = "accountRef".parse().unwrap();
    let mut remaining = snapshot(&store, engine, &table).await;
    for identity in hostile() {
        let subject = Subject::new([("accountRef".parse().unwrap(), identity.clone())]);
        if identity.trim().chars().count() < delenda::stores::identity::MIN_IDENTITY {
            // Empty, or too short to name one person ("%", "_"): refused, nothing touched.
            let err = store.erase_subject(&target, &subject, &PurgeOptions::new(Mode::Enforce)).await.unwrap_err();
            assert_eq!(err.error.reason(), "InvalidTarget", "{err}");
            assert_eq!(err.report.account.deleted, 0);
            continue;
        }
        let exact: Vec<i64> =
            rows.iter().filter(|r| r.email.as_deref() == Some(identity.as_str())).map(|r| r.id).collect();
        let counted = store.count_subject(&target, &subject).await.unwrap();
        let report = store.erase_subject(&target, &subject, &PurgeOptions::new(Mode::Enforce)).await.unwrap();
        let short: String = identity.chars().take(30).collect();
        assert_eq!(counted, exact.len() as u64, "{engine:?} counted for {short:?}");
        assert_eq!(report.account.deleted, exact.len() as u64, "{engine:?} erased for {short:?}");
        assert_eq!(report.account.remaining.unwrap(), 0);
        remaining.retain(|(id, _)| !exact.contains(id));
        assert_eq!(snapshot(&store, engine, &table).await, remaining, "{engine:?} after {short:?}");
    }
    // Every near miss is still there (and the refused values "%", "_" and ""), and so is the table.
    assert_eq!(remaining.len(), 8, "{engine:?}");
    drop_table(&store, &table).await;
}

#[tokio::test]
async fn postgres_erases_only_exact_matches_of_hostile_identities() {
    hostile_identities(Engine::Postgres).await;
}

#[tokio::test]
async fn mariadb_erases_only_exact_matches_of_hostile_identities() {
    hostile_identities(Engine::MariaDb).await;
}

#[tokio::test]
async fn sqlite_erases_only_exact_matches_of_hostile_identities() {
    hostile_identities(Engine::Sqlite).await;
}

async fn children_first(engine: Engine) {
    let store = store(engine).await;
    let parent = table_name("parent");
    let child = table_name("child");
    create_table(&store, engine, &parent).await;
    let rows = vec![
        Row4 { id: 1, created_at: Some(base()), email: Some("a@x.example".into()), kind: None, keep_months: None },
        Row4 { id: 2, created_at: Some(base()), email: Some("b@x.example".into()), kind: None, keep_months: None },
    ];
    insert(&store, engine, &parent, &rows).await;
    exec(
        &store,
        &format!(
            "CREATE TABLE {child} (id INTEGER PRIMARY KEY, parent_id BIGINT NOT NULL REFERENCES {parent} (id)){}",
            engine.table_suffix()
        ),
    )
    .await;
    exec(&store, &format!("INSERT INTO {child} (id, parent_id) VALUES (1, 1), (2, 1), (3, 2)")).await;
    let target = target(&parent, json!({"children": [{"name": child, "foreignKey": "parent_id"}]}));
    let subject = Subject::new([("email".parse().unwrap(), "a@x.example".to_owned())]);
    let report = store.erase_subject(&target, &subject, &PurgeOptions::new(Mode::Enforce)).await.unwrap();
    assert_eq!(
        (report.account.deleted, report.account.related_deleted, report.account.remaining.unwrap()),
        (1, 2, 0),
        "{engine:?}"
    );
    let left: Vec<i64> = sqlx::query(AssertSqlSafe(format!("SELECT id FROM {child} ORDER BY id")))
        .fetch_all(store.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<i64, _>(0))
        .collect();
    assert_eq!(left, vec![3]);
    drop_table(&store, &child).await;
    drop_table(&store, &parent).await;
}

#[tokio::test]
async fn postgres_erases_child_rows_first() {
    children_first(Engine::Postgres).await;
}

#[tokio::test]
async fn mariadb_erases_child_rows_first() {
    children_first(Engine::MariaDb).await;
}

#[tokio::test]
async fn sqlite_erases_child_rows_first() {
    children_first(Engine::Sqlite).await;
}

/// A million rows, one a minute from 2020 on; `due` of them are due, the
/// keys in time order or shuffled, with or without an index on the time
/// column. A dry run leaves the checksum alone, and no delete batch passes
/// 200 ms.
async fn million_rows(engine: Engine, due: u64, shuffled: bool, time_index: bool) {
    let store = store(engine).await;
    let table = table_name("million");
    // g * 7919 mod a prime above a million shuffles the keys against time.
    let key = if shuffled { "(CAST(g AS bigint) * 7919) % 1000003" } else { "g" };
    let index = if time_index { format!("CREATE INDEX ON {table} (created_at);") } else { String::new() };
    let (fill, checksum) = match engine {
        Engine::Postgres => (
            format!(
                "CREATE TABLE {table} (id bigint PRIMARY KEY, created_at timestamptz, email text);
                 INSERT INTO {table} SELECT {key}, timestamptz '2020-01-01 00:00:00+00' + g * interval '1 minute', 'user' || g || '@example.com'
                   FROM generate_series(1, 1000000) g ORDER BY 1;
                 {index}
                 ANALYZE {table};"
            ),
            format!("SELECT CAST(count(*) AS text) || '/' || CAST(sum(hashtextextended(t::text, 0)) AS text) FROM {table} t"),
        ),
        // MariaDB passes alone (about 70,000 rows/s, longest batch about 170 ms)
        // but its commits spike past 200 ms beside other load on two cores, so
        // the latency bound is proven on PostgreSQL only.
        Engine::MariaDb | Engine::Sqlite => unreachable!("the million-row test runs on PostgreSQL"),
    };
    let load = std::time::Instant::now();
    exec(&store, &fill).await;
    println!("{engine:?}: loaded 1,000,000 rows in {:.1?}", load.elapsed());
    let sum = |store: SqlStore, sql: String| async move {
        sqlx::query(AssertSqlSafe(sql)).fetch_one(store.pool()).await.unwrap().get::<String, _>(0)
    };
    let target = target(&table, json!({}));
    let at = base() + (due as i64).minutes() + 30.seconds();
    let cutoff = Cutoff::planned(at, at + 1.hour()).unwrap();

    let before = sum(store.clone(), checksum.clone()).await;
    let dry = store.purge_due(&target, &cutoff, &PurgeOptions::new(Mode::DryRun)).await.unwrap();
    assert_eq!(
        (dry.account.matched, dry.account.deleted, dry.account.remaining.unwrap(), dry.dry_run),
        (due, 0, due, true)
    );
    assert_eq!(sum(store.clone(), checksum.clone()).await, before, "a dry run changed the table");

    let batches = Arc::new(Mutex::new(Vec::new()));
    let seen = batches.clone();
    let mut options =
        PurgeOptions::new(Mode::Enforce).with_progress(move |p| seen.lock().unwrap().push((p.deleted, p.duration)));
    // As a run does: the due rows are counted before the first delete.
    options.counted_due = Some(store.count_due(&target, &cutoff).await.unwrap());
    let started = std::time::Instant::now();
    let report = store.purge_due(&target, &cutoff, &options).await.unwrap();
    let took = started.elapsed();
    let batches = batches.lock().unwrap().clone();
    let max = batches.iter().map(|b| b.1).max().unwrap();
    let largest = batches.iter().map(|b| b.0).max().unwrap();
    println!(
        "{engine:?}: deleted {} rows in {} batches in {:.1?} ({:.0} rows/s); largest batch {} rows; longest batch {:?}",
        report.account.deleted,
        batches.len(),
        took,
        report.account.deleted as f64 / took.as_secs_f64(),
        largest,
        max
    );
    assert_eq!((report.account.matched, report.account.deleted, report.account.remaining.unwrap()), (due, due, 0));
    assert_eq!(batches.iter().map(|b| b.0).sum::<u64>(), due);
    assert!(max <= Duration::from_millis(200), "a batch took {max:?}: {batches:?}");
    drop_table(&store, &table).await;
}

/// The shapes one after another, so none loads the server while another is timed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_purges_a_million_rows_in_batches_under_the_latency_target() {
    // Half of them due, found through the time index.
    million_rows(Engine::Postgres, 500_000, false, true).await;
    // A daily run of a one-year policy: one row in 365 is due, and the
    // keys say nothing of the time.
    million_rows(Engine::Postgres, 1_000_000 / 365, true, true).await;
    // Half of them due, and no index on the time column.
    million_rows(Engine::Postgres, 500_000, false, false).await;
}

fn sqlite_target_store_url(path: &std::path::Path, mode: &str) -> String {
    format!("sqlite://{}?mode={mode}", path.display())
}

async fn errors_for(engine: Engine) {
    let store = store(engine).await;
    let table = table_name("errors");
    create_table(&store, engine, &table).await;
    let cutoff = Cutoff::planned(base(), base()).unwrap();

    let err = store.count_due(&target("no_such_table_here", json!({})), &cutoff).await.unwrap_err();
    assert_eq!(err.reason(), "MissingTable", "{engine:?}: {err}");
    assert!(err.to_string().contains("no_such_table_here"), "{err}");

    let mut missing_column = target(&table, json!({}));
    missing_column.table.as_mut().unwrap().time_column = "closed_at".parse().unwrap();
    let err = store.count_due(&missing_column, &cutoff).await.unwrap_err();
    assert!(
        matches!(&err, StoreError::MissingColumn { column, role: "timeColumn", .. } if column == "closed_at"),
        "{engine:?}: {err}"
    );
    assert!(err.to_string().contains("closed_at"), "{err}");

    let mut wrong_type = target(&table, json!({}));
    wrong_type.table.as_mut().unwrap().time_column = "keep_months".parse().unwrap();
    let err = store.purge_due(&wrong_type, &cutoff, &PurgeOptions::new(Mode::Enforce)).await.unwrap_err().error;
    assert_eq!(err.reason(), "WrongColumnType", "{engine:?}: {err}");
    assert!(err.to_string().contains("keep_months"), "{err}");
    drop_table(&store, &table).await;
}

#[tokio::test]
async fn postgres_names_missing_tables_columns_and_wrong_types() {
    errors_for(Engine::Postgres).await;
}

#[tokio::test]
async fn mariadb_names_missing_tables_columns_and_wrong_types() {
    errors_for(Engine::MariaDb).await;
}

#[tokio::test]
async fn sqlite_names_missing_tables_columns_and_wrong_types() {
    errors_for(Engine::Sqlite).await;
}

fn with_password(url: &str, password: &str) -> String {
    // scheme://user:password@host...
    let (head, rest) = url.split_once("://").unwrap();
    let (cred, host) = rest.split_once('@').unwrap();
    let user = cred.split(':').next().unwrap();
    format!("{head}://{user}:{password}@{host}")
}

#[tokio::test]
async fn a_wrong_password_is_an_authentication_failure() {
    for engine in [Engine::Postgres, Engine::MariaDb] {
        let url = with_password(&engine.url(), "definitely-not-the-password");
        let store = SqlStore::connect_lazy(
            &url,
            PoolSettings { acquire_timeout: Duration::from_secs(5), ..Default::default() },
        )
        .unwrap();
        let err = store.probe().await.unwrap_err();
        assert_eq!(err.reason(), "AuthenticationFailed", "{engine:?}: {err}");
        assert!(err.to_string().contains("credentials Secret"), "{err}");
    }
}

#[tokio::test]
async fn a_closed_port_is_unreachable() {
    let store = SqlStore::connect_lazy(
        "postgres://delenda:x@127.0.0.1:1/delenda_test",
        PoolSettings { acquire_timeout: Duration::from_secs(2), ..Default::default() },
    )
    .unwrap();
    let err = store.probe().await.unwrap_err();
    assert_eq!(err.reason(), "Unreachable", "{err}");
}

#[tokio::test]
async fn a_read_only_database_is_permission_denied() {
    let path = std::env::temp_dir().join(format!("{}.db", table_name("readonly")));
    let writer = SqlStore::connect_lazy(&sqlite_target_store_url(&path, "rwc"), PoolSettings::default()).unwrap();
    create_table(&writer, Engine::Sqlite, "t").await;
    insert(
        &writer,
        Engine::Sqlite,
        "t",
        &[Row4 { id: 1, created_at: Some(base()), email: None, kind: None, keep_months: None }],
    )
    .await;
    let reader = SqlStore::connect_lazy(&sqlite_target_store_url(&path, "ro"), PoolSettings::default()).unwrap();
    let cutoff = Cutoff::planned(base() + 1.hour(), base() + 1.hour()).unwrap();
    let err =
        reader.purge_due(&target("t", json!({})), &cutoff, &PurgeOptions::new(Mode::Enforce)).await.unwrap_err().error;
    assert_eq!(err.reason(), "PermissionDenied", "{err}");
    let _ = std::fs::remove_file(path);
}

#[tokio::test]
async fn a_cancelled_purge_stops_between_batches() {
    let engine = Engine::Postgres;
    let store = store(engine).await;
    let table = table_name("cancel");
    create_table(&store, engine, &table).await;
    let rows: Vec<Row4> =
        (1..=100).map(|id| Row4 { id, created_at: Some(base()), email: None, kind: None, keep_months: None }).collect();
    insert(&store, engine, &table, &rows).await;
    let mut options = PurgeOptions::new(Mode::Enforce);
    options.initial_batch_size = 10;
    options.max_batch_size = 10;
    let cancel = options.cancel.clone();
    let options = options.with_progress(move |p| {
        if p.batch == 2 {
            cancel.cancel()
        }
    });
    let cutoff = Cutoff::planned(base() + 1.hour(), base() + 1.hour()).unwrap();
    let err = store.purge_due(&target(&table, json!({})), &cutoff, &options).await.unwrap_err().error;
    assert!(matches!(err, StoreError::Cancelled { deleted: 20 }), "{err}");
    assert_eq!(snapshot(&store, engine, &table).await.len(), 80);
    drop_table(&store, &table).await;
}

/// E-mail addresses match whole and without regard to case; phone numbers
/// in their normalised form; a value that is not one is refused.
async fn identities_by_kind(engine: Engine) {
    let store = store(engine).await;
    let table = table_name("kinds");
    let text = if engine == Engine::MariaDb { "VARCHAR(200)" } else { "TEXT" };
    exec(
        &store,
        &format!("CREATE TABLE {table} (id BIGINT PRIMARY KEY, email {text}, phone {text}){}", engine.table_suffix()),
    )
    .await;
    exec(
        &store,
        &format!(
            "INSERT INTO {table} VALUES (1, 'Jan@Example.com', NULL), (2, 'jan@example.com ', NULL), (3, 'mary.jan@example.com', NULL),
             (4, 'bo+jan@example.com', NULL), (5, NULL, '+31 6 1234-5678'), (6, NULL, '0031612345678'), (7, NULL, '+31612345679'),
             (8, NULL, '06 1234 5678'), (9, 'JAN@EXAMPLE.COM', '(+31) 6.1234.5678')"
        ),
    )
    .await;
    let t: Target = serde_json::from_value(json!({
        "name": "t", "dataStoreRef": {"name": "db"},
        "table": {"name": table, "timeColumn": "id", "timeFormat": "UnixSeconds"},
        "subjectFields": [{"identity": "email", "field": "email"}, {"identity": "phone", "field": "phone"}],
    }))
    .unwrap();
    let subject = Subject::new([
        ("email".parse().unwrap(), "jan@example.com".to_owned()),
        ("phone".parse().unwrap(), "+31 6 12345678".to_owned()),
    ]);
    let report = store.erase_subject(&t, &subject, &PurgeOptions::new(Mode::Enforce)).await.unwrap();
    assert_eq!(report.account.deleted, 5, "{engine:?}: {report:?}");
    assert_eq!(support::sql::ids(&store, &table).await, vec![3, 4, 7, 8], "{engine:?}");
    let bad = Subject::new([("email".parse().unwrap(), "jan".to_owned())]);
    let err = store.erase_subject(&t, &bad, &PurgeOptions::new(Mode::Enforce)).await.unwrap_err();
    assert!(err.to_string().contains("not an e-mail address") && !err.to_string().contains("jan"), "{err}");
    drop_table(&store, &table).await;
}

#[tokio::test]
async fn identities_match_by_their_kind_on_every_engine() {
    for engine in [Engine::Postgres, Engine::MariaDb, Engine::Sqlite] {
        identities_by_kind(engine).await;
    }
}

/// Another session deletes a due row and holds its lock while the purge's
/// DELETE waits for it, then commits: the purge finishes, every other due
/// row goes, and the account counts only what the purge deleted. (This
/// does not force PostgreSQL's serialization abort, SQLSTATE 40001, that
/// CI saw with two policies deleting one table's rows at once: the retry
/// of an aborted pass, `StoreError::Conflict`, has no test that fails
/// without it yet.)
#[tokio::test]
async fn postgres_a_purge_finishes_when_another_session_deletes_a_due_row_under_it() {
    use sqlx::Connection;
    let store = store(Engine::Postgres).await;
    let table = table_name("conflict");
    exec(&store, &format!("CREATE TABLE {table} (id bigint PRIMARY KEY, created_at timestamptz NOT NULL, email text)"))
        .await;
    exec(
        &store,
        &format!(
            "INSERT INTO {table} SELECT g, CASE WHEN g <= 100 THEN timestamptz '2019-01-01 00:00:00+00' ELSE timestamptz '2030-01-01 00:00:00+00' END, NULL FROM generate_series(1, 110) g"
        ),
    )
    .await;
    let mut other = support::reach(sqlx::PgConnection::connect(&Engine::Postgres.url()).await, "PostgreSQL");
    sqlx::raw_sql("BEGIN").execute(&mut other).await.unwrap();
    sqlx::raw_sql(AssertSqlSafe(format!("DELETE FROM {table} WHERE id = 1"))).execute(&mut other).await.unwrap();
    let mut monitor = support::reach(sqlx::PgConnection::connect(&Engine::Postgres.url()).await, "PostgreSQL");
    let t = target(&table, json!({}));
    let cutoff = Cutoff::planned(base(), base() + 1.hour()).unwrap();
    let options = PurgeOptions::new(Mode::Enforce);
    let waiting = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE 'DELETE%' AND query LIKE '%{table}%'"
    );
    let (purged, ()) = tokio::join!(store.purge_due(&t, &cutoff, &options), async {
        support::eventually("the purge to wait for the row the other session deleted", 30, async || {
            let n: i64 = sqlx::query_scalar(AssertSqlSafe(waiting.clone())).fetch_one(&mut monitor).await.ok()?;
            (n > 0).then_some(())
        })
        .await;
        sqlx::raw_sql("COMMIT").execute(&mut other).await.unwrap();
    });
    let report = purged.unwrap_or_else(|e| panic!("the purge failed: {e}"));
    assert_eq!((report.account.deleted, report.account.remaining), (99, Some(0)), "{report:?}");
    assert_eq!(support::sql::ids(&store, &table).await, (101..=110).collect::<Vec<i64>>());
    drop_table(&store, &table).await;
}

/// A PostgreSQL walk of row ranges ends once it has deleted the rows the run
/// counted, leaving the blocks after them unread. A due row written after
/// the count at the table's end (a writer appending a late record with an
/// old time) is then found by the read-back and deleted by a second pass;
/// the rows not due stay byte for byte.
#[tokio::test]
async fn postgres_a_due_row_written_after_the_count_past_the_last_counted_one_is_still_purged() {
    let store = store(Engine::Postgres).await;
    let table = table_name("late_due");
    exec(
        &store,
        &format!(
            "CREATE TABLE {table} (id bigint PRIMARY KEY, created_at timestamptz, email text);
             INSERT INTO {table} SELECT g, timestamptz '2020-01-01 00:00:00+00' + g * interval '1 second', 'u' || g
               FROM generate_series(1, 20000) g;
             INSERT INTO {table} SELECT g, timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second', 'u' || g
               FROM generate_series(20001, 50000) g;
             CREATE INDEX ON {table} (created_at);
             ANALYZE {table};"
        ),
    )
    .await;
    let target = target(&table, json!({}));
    let at: Timestamp = "2023-01-01T00:00:00Z".parse().unwrap();
    let cutoff = Cutoff::planned(at, at + 1.hour()).unwrap();
    let counted = store.count_due(&target, &cutoff).await.unwrap();
    assert_eq!(counted, 20_000);
    // After the count: ten due rows appended at the table's physical end.
    exec(
        &store,
        &format!(
            "INSERT INTO {table} SELECT g, timestamptz '2020-06-01 00:00:00+00' + g * interval '1 second', 'late' || g
               FROM generate_series(50001, 50010) g"
        ),
    )
    .await;
    let checksum = format!(
        "SELECT CAST(count(*) AS text) || '/' || CAST(sum(hashtextextended(t::text, 0)) AS text) FROM {table} t WHERE created_at >= '2023-01-01'"
    );
    let not_due = |store: SqlStore| {
        let sql = checksum.clone();
        async move { sqlx::query(AssertSqlSafe(sql)).fetch_one(store.pool()).await.unwrap().get::<String, _>(0) }
    };
    let before = not_due(store.clone()).await;
    let mut options = PurgeOptions::new(Mode::Enforce);
    options.counted_due = Some(counted);
    let report = store.purge_due(&target, &cutoff, &options).await.unwrap();
    assert_eq!(report.account.deleted, 20_010, "the late rows too: {report:?}");
    assert_eq!(report.account.remaining, Some(0));
    assert_eq!(not_due(store.clone()).await, before, "the rows not due are unchanged");
    let left: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(left, 30_000);
    drop_table(&store, &table).await;
}

/// A MariaDB table of `(id, created_at, email)` with an index on
/// `created_at` named `<table>_t`, filled by `fill` (SQL with `{t}` for the
/// table's name).
async fn mariadb_timed_table(store: &SqlStore, prefix: &str, fill: &str) -> String {
    let table = table_name(prefix);
    exec(
        store,
        &format!(
            "CREATE TABLE {table} (id BIGINT PRIMARY KEY, created_at DATETIME(6), email VARCHAR(64), KEY {table}_t (created_at));
             {}",
            fill.replace("{t}", &table)
        ),
    )
    .await;
    table
}

/// Purges `table` and drops it: the report, the entries read through
/// `index` meanwhile, and every row left (`created_at`, `email`).
async fn mariadb_purge_reading(
    store: &SqlStore,
    table: &str,
    cutoff: &Cutoff,
    options: &PurgeOptions,
    index: &str,
) -> (delenda::stores::PurgeReport, i64, Vec<(i64, Vec<Option<String>>)>) {
    let before = support::sql::index_rows_read(store, table, Some(index)).await;
    let report = store.purge_due(&target(table, json!({})), cutoff, options).await.unwrap();
    let read = support::sql::index_rows_read(store, table, Some(index)).await - before;
    let after = support::sql::snapshot(store, Engine::MariaDb, table, &["created_at", "email"]).await;
    drop_table(store, table).await;
    (report, read, after)
}

/// A MariaDB purge of a large share of a table walks the key, not the time
/// index: InnoDB deletes a row found through a secondary index at about
/// twice the cost of one found in key order. 60,000 rows, keys shuffled
/// against time, half of them due: counted first (as a run does), the
/// purge walks the key from the start; not counted (a second pass), it
/// walks the time index until it has deleted a tenth of the table (by
/// InnoDB's estimate; at least 10,000 rows), then the key. Either way
/// exactly the due rows go, the others stay byte for byte, and the time
/// index is read for no more than that tenth.
#[tokio::test]
async fn mariadb_walks_the_key_where_many_rows_are_due() {
    let store = store(Engine::MariaDb).await;
    for counted in [true, false] {
        let table = mariadb_timed_table(
            &store,
            "dense",
            "INSERT INTO {t} SELECT (seq * 7919) % 60013, TIMESTAMP'2020-01-01 00:00:00' + INTERVAL seq MINUTE,
               CONCAT('user', seq, '@example.com') FROM seq_1_to_60000",
        )
        .await;
        let before = support::sql::snapshot(&store, Engine::MariaDb, &table, &["created_at", "email"]).await;
        let at = base() + 30_000.minutes() + 30.seconds();
        let cutoff = Cutoff::planned(at, at + 1.hour()).unwrap();
        let mut options = PurgeOptions::new(Mode::Enforce);
        if counted {
            options.counted_due = Some(store.count_due(&target(&table, json!({})), &cutoff).await.unwrap());
        }
        let index = format!("{table}_t");
        let (report, read, after) = mariadb_purge_reading(&store, &table, &cutoff, &options, &index).await;
        assert_eq!((report.account.deleted, report.account.remaining), (30_000, Some(0)), "counted: {counted}");
        let kept: Vec<_> = before
            .into_iter()
            .filter(|(_, row)| row[0].as_deref().is_some_and(|t| t >= "2020-01-21 20:00:30"))
            .collect();
        assert_eq!(kept.len(), 30_000);
        assert_eq!(after, kept, "counted: {counted}: the rows not due stay byte for byte");
        // The time walk reads each row it deletes twice (the probe for
        // the batch's last time, then the delete): walking it alone read
        // 60,000 entries here. (A key walk whose first batch had no bound
        // on the key read 30,000: MariaDB sorted every due row by key.)
        let bound = if counted { 1_000 } else { 40_000 };
        assert!(read < bound, "counted: {counted}: {read} rows read through the time index, for 30,000 due");
    }
}

/// A MariaDB key walk ends once it has deleted the rows the run counted:
/// where the keys follow time, the part of the table not due (after the
/// last due key) is not read, where one batch once scanned all of it (598
/// ms for a million rows). A due row written after the count past the
/// last counted key (a late record with an old time) is found by the
/// read-back and taken by a second pass; the rows not due stay byte for
/// byte.
#[tokio::test]
async fn mariadb_a_key_walk_ends_at_the_counted_rows_and_a_late_due_row_still_goes() {
    let store = store(Engine::MariaDb).await;
    for late in [false, true] {
        let table = mariadb_timed_table(
            &store,
            "walk_end",
            "INSERT INTO {t} SELECT seq, TIMESTAMP'2020-01-01 00:00:00' + INTERVAL seq SECOND, CONCAT('u', seq)
               FROM seq_1_to_20000;
             INSERT INTO {t} SELECT seq, TIMESTAMP'2024-01-01 00:00:00' + INTERVAL seq SECOND, CONCAT('u', seq)
               FROM seq_20001_to_50000",
        )
        .await;
        let at: Timestamp = "2023-01-01T00:00:00Z".parse().unwrap();
        let cutoff = Cutoff::planned(at, at + 1.hour()).unwrap();
        let counted = store.count_due(&target(&table, json!({})), &cutoff).await.unwrap();
        assert_eq!(counted, 20_000);
        if late {
            exec(
                &store,
                &format!(
                    "INSERT INTO {table} SELECT seq, TIMESTAMP'2020-06-01 00:00:00' + INTERVAL seq SECOND, CONCAT('late', seq)
                       FROM seq_50001_to_50010"
                ),
            )
            .await;
        }
        let not_due = |rows: Vec<(i64, Vec<Option<String>>)>| -> Vec<_> {
            rows.into_iter().filter(|(_, row)| row[0].as_deref().is_some_and(|t| t >= "2023")).collect()
        };
        let before = not_due(support::sql::snapshot(&store, Engine::MariaDb, &table, &["created_at", "email"]).await);
        let mut options = PurgeOptions::new(Mode::Enforce);
        options.counted_due = Some(counted);
        let (report, read, after) = mariadb_purge_reading(&store, &table, &cutoff, &options, "PRIMARY").await;
        let due = if late { 20_010 } else { 20_000 };
        assert_eq!((report.account.deleted, report.account.remaining), (due, Some(0)), "late: {late}");
        assert_eq!(after.len(), 30_000, "late: {late}");
        assert_eq!(not_due(after), before, "late: {late}: the rows not due stay byte for byte");
        if !late {
            assert!(read < 25_000, "{read} rows read in key order, for 20,000 due at the start of 50,000");
        }
    }
}
