//! SQL: `SqlStore::purge_due` against one `DELETE ... WHERE t < cutoff`
//! (and, for partitions, against `DROP TABLE` of the expired partitions),
//! on identical tables, on the real PostgreSQL and MariaDB.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use delenda::api::Mode;
use delenda::api::policy::Target;
use delenda::stores::sql::{PoolSettings, SqlStore};
use delenda::stores::{Cutoff, PurgeOptions, PurgeReport, Store};
use jiff::{Timestamp, ToSpan};
use sqlx::{AssertSqlSafe, Connection, MySqlConnection, PgConnection, Row as _};

use super::{Row, Scale, median, ms, timed};

/// Which rows are due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Due {
    /// Half the table.
    Half,
    /// One row in 365: a daily run of a one-year policy.
    Daily,
}

/// One table shape.
#[derive(Clone, Copy, Debug)]
struct Shape {
    name: &'static str,
    due: Due,
    time_index: bool,
    /// Keys (and so the physical order: PostgreSQL's heap is filled in key
    /// order, InnoDB is clustered by key) shuffled against time.
    shuffled: bool,
    goal: f64,
    longest_ms: Option<f64>,
}

const FULL_ROWS: u64 = 2_000_000;

fn base() -> Timestamp {
    "2020-01-01T00:00:00Z".parse().unwrap()
}

/// Rows `1..=n` have times `base + g minutes`; the cutoff makes exactly
/// the first `due` of them due.
fn due_rows(rows: u64, due: Due) -> u64 {
    match due {
        Due::Half => rows / 2,
        Due::Daily => (rows / 365).max(1),
    }
}

fn cutoff_after(due: u64) -> (Timestamp, Cutoff) {
    let at = base() + (due as i64).minutes() + 30.seconds();
    (at, Cutoff::planned(at, at + 1.hour()).expect("a cutoff before the run"))
}

/// The smallest prime above `n`: `g * 7919 mod p` shuffles `1..=n` into
/// distinct keys.
fn prime_above(n: u64) -> u64 {
    (n + 1..).find(|&p| p > 7919 && (2..).take_while(|d| d * d <= p).all(|d| p % d != 0)).expect("a prime")
}

fn key_expr(shape: &Shape, rows: u64, g: &str) -> String {
    if shape.shuffled { format!("({g} * 7919) % {}", prime_above(rows)) } else { g.to_owned() }
}

fn target(table: &str, extra: serde_json::Value) -> Target {
    let mut t = serde_json::json!({"name": "bench", "dataStoreRef": {"name": "db"},
        "table": {"name": table, "timeColumn": "created_at"}});
    if let serde_json::Value::Object(m) = extra {
        for (k, v) in m {
            t["table"][k] = v;
        }
    }
    serde_json::from_value(t).expect("a valid target")
}

/// Purges with Delenda as a run does: counts the due rows (which a run does
/// before any delete, for its guardrails; not timed, but said with
/// `BENCH_VERBOSE`), then purges with that count. Returns the report, the
/// purge's seconds and the longest batch.
async fn delenda(store: &SqlStore, target: &Target, cutoff: &Cutoff, scale: &Scale) -> (PurgeReport, f64, Duration) {
    let (counted, count_took) = timed(store.count_due(target, cutoff)).await;
    let counted = counted.unwrap_or_else(|e| panic!("the count failed: {e}"));
    scale.say(|| format!("count before the purge: {counted} due in {:.1} ms", count_took * 1000.0));
    let longest = Arc::new(Mutex::new(Duration::ZERO));
    let seen = longest.clone();
    let verbose = scale.verbose;
    let mut options = PurgeOptions::new(Mode::Enforce).with_progress(move |p| {
        let mut l = seen.lock().unwrap();
        *l = (*l).max(p.duration);
        if verbose {
            eprintln!("    batch {} size {} deleted {} in {:.1} ms", p.batch, p.batch_size, p.deleted, ms(p.duration));
        }
    });
    options.counted_due = Some(counted);
    let (report, took) = timed(store.purge_due(target, cutoff, &options)).await;
    let report = report.unwrap_or_else(|e| panic!("the purge failed: {e}"));
    let longest = *longest.lock().unwrap();
    (report, took, longest)
}

async fn pg(url: &str) -> PgConnection {
    PgConnection::connect(url).await.expect("reach PostgreSQL (tests/env/up, then source .testenv/env)")
}

async fn pg_exec(conn: &mut PgConnection, sql: &str) {
    sqlx::raw_sql(AssertSqlSafe(sql.to_owned())).execute(conn).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn pg_count(conn: &mut PgConnection, table: &str) -> i64 {
    sqlx::query(AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}"))).fetch_one(conn).await.expect("count").get(0)
}

async fn pg_fill(conn: &mut PgConnection, table: &str, rows: u64, shape: &Shape) {
    let key = key_expr(shape, rows, "g");
    pg_exec(
        conn,
        &format!(
            "DROP TABLE IF EXISTS {table};
             CREATE TABLE {table} (id bigint PRIMARY KEY, created_at timestamptz, email text);
             INSERT INTO {table} SELECT k, timestamptz '2020-01-01 00:00:00+00' + g * interval '1 minute', 'user' || k || '@example.com'
               FROM (SELECT g, {key} AS k FROM generate_series(CAST(1 AS bigint), {rows}) g) s ORDER BY k;"
        ),
    )
    .await;
    if shape.time_index {
        pg_exec(conn, &format!("CREATE INDEX ON {table} (created_at)")).await;
    }
    // A table in service has been vacuumed: hint bits and the visibility map set.
    pg_exec(conn, &format!("VACUUM ANALYZE {table}")).await;
}

/// PostgreSQL: every shape of the table, and expired partitions.
pub async fn postgres(scale: &Scale) -> Vec<Row> {
    let url =
        std::env::var("POSTGRES_URL").expect("POSTGRES_URL: start tests/env/up, then `set -a; . .testenv/env; set +a`");
    let shapes = [
        Shape {
            name: "PostgreSQL, 2M rows, half due, time index",
            due: Due::Half,
            time_index: true,
            shuffled: false,
            goal: 0.9,
            longest_ms: Some(250.0),
        },
        Shape {
            name: "PostgreSQL, 2M rows, 1/365 due, time index, keys in time order",
            due: Due::Daily,
            time_index: true,
            shuffled: false,
            goal: 0.5,
            longest_ms: None,
        },
        Shape {
            name: "PostgreSQL, 2M rows, 1/365 due, time index, keys shuffled",
            due: Due::Daily,
            time_index: true,
            shuffled: true,
            goal: 0.5,
            longest_ms: None,
        },
        Shape {
            name: "PostgreSQL, 2M rows, half due, no time index",
            due: Due::Half,
            time_index: false,
            shuffled: false,
            goal: 0.7,
            longest_ms: Some(250.0),
        },
    ];
    let mut out = Vec::new();
    let mut conn = pg(&url).await;
    let store = SqlStore::connect_lazy(&url, PoolSettings::default()).expect("a store");
    let rows = scale.n(FULL_ROWS, 400);
    let tag = std::process::id();
    for shape in shapes.iter().filter(|s| scale.wants(s.name)) {
        eprintln!("{} ({rows} rows)", shape.name);
        let due = due_rows(rows, shape.due);
        let (at, cutoff) = cutoff_after(due);
        let (ours_t, base_t) = (format!("bench_ours_{tag}"), format!("bench_base_{tag}"));
        let (mut base_s, mut ours_s, mut longest) = (vec![], vec![], vec![]);
        let mut batches = vec![];
        for round in 0..scale.rounds {
            for ours in [round % 2 == 0, round % 2 == 1] {
                if ours {
                    pg_fill(&mut conn, &ours_t, rows, shape).await;
                    let (report, took, max) =
                        delenda(&store, &target(&ours_t, serde_json::json!({})), &cutoff, scale).await;
                    assert_eq!((report.account.deleted, report.account.remaining), (due, Some(0)), "{report:?}");
                    assert_eq!(pg_count(&mut conn, &ours_t).await as u64, rows - due, "Delenda kept what is not due");
                    scale.say(|| format!("delenda {took:.3} s, {} batches, longest {:.1} ms", report.batches, ms(max)));
                    ours_s.push(took);
                    longest.push(ms(max));
                    batches.push(report.batches as f64);
                } else {
                    pg_fill(&mut conn, &base_t, rows, shape).await;
                    let (done, took) = timed(
                        sqlx::query(AssertSqlSafe(format!(
                            "DELETE FROM {base_t} WHERE created_at < CAST($1 AS timestamptz)"
                        )))
                        .bind(at.to_string())
                        .execute(&mut conn),
                    )
                    .await;
                    assert_eq!(done.expect("the baseline delete").rows_affected(), due);
                    scale.say(|| format!("baseline {took:.3} s"));
                    base_s.push(took);
                }
            }
        }
        pg_exec(&mut conn, &format!("DROP TABLE IF EXISTS {ours_t}; DROP TABLE IF EXISTS {base_t}")).await;
        let (b, o) = (median(base_s), median(ours_s));
        let l = median(longest);
        let mut limits = vec![];
        if let Some(goal) = shape.longest_ms {
            limits.push((format!("longest statement {l:.0} ms <= {goal:.0} ms"), l <= goal));
        }
        out.push(Row {
            shape: shape.name.replace("2M", &short(rows)),
            baseline: "one `DELETE ... WHERE t < cutoff`".into(),
            baseline_value: b,
            delenda_value: o,
            unit: "s",
            ratio: Some(b / o),
            goal: Some(shape.goal),
            limits,
            note: format!(
                "{due} rows due; {:.0} batches, longest {l:.0} ms (baseline: one statement of {:.0} ms)",
                median(batches),
                b * 1000.0
            ),
        });
    }
    if scale.wants("partitions") {
        out.push(partitions(&mut conn, &store, scale).await);
    }
    out
}

/// "2M", "400" and so on, for the row names at other scales.
fn short(n: u64) -> String {
    if n >= 1_000_000 && n.is_multiple_of(1_000_000) {
        format!("{}M", n / 1_000_000)
    } else if n >= 1000 && n.is_multiple_of(1000) {
        format!("{}k", n / 1000)
    } else {
        n.to_string()
    }
}

/// PostgreSQL: monthly partitions, the older half wholly expired and the
/// cutoff on a partition bound, so both sides remove exactly those.
async fn partitions(conn: &mut PgConnection, store: &SqlStore, scale: &Scale) -> Row {
    let rows = scale.n(FULL_ROWS, 400);
    // Months of about 43,200 rows at full scale; at a tiny scale, months of
    // a few dozen (a "month" is then `rows / 46` minutes).
    let months: i64 = 46;
    let per = (rows as i64 / months).max(1);
    let expired = months / 2;
    let name = format!("PostgreSQL, {} rows in {months} partitions, {expired} wholly expired", short(rows));
    eprintln!("{name}");
    let tag = std::process::id();
    let fill = |table: String| {
        let mut sql = format!(
            "DROP TABLE IF EXISTS {table};
             CREATE TABLE {table} (id bigint, created_at timestamptz NOT NULL, email text) PARTITION BY RANGE (created_at);"
        );
        for m in 0..months {
            let from = base() + (m * per).minutes();
            let to = base() + ((m + 1) * per).minutes();
            let (from, to) = if m == 0 {
                ("MINVALUE".to_owned(), format!("'{to}'"))
            } else {
                (format!("'{from}'"), format!("'{to}'"))
            };
            let to = if m == months - 1 { "MAXVALUE".to_owned() } else { to };
            sql += &format!("CREATE TABLE {table}_p{m:02} PARTITION OF {table} FOR VALUES FROM ({from}) TO ({to});");
        }
        sql += &format!(
            "INSERT INTO {table} SELECT g, timestamptz '2020-01-01 00:00:00+00' + g * interval '1 minute', 'user' || g || '@example.com' FROM generate_series(0, {}) g;
             CREATE INDEX ON {table} (created_at);",
            rows - 1
        );
        sql
    };
    let at = base() + (expired * per).minutes();
    let cutoff = Cutoff::planned(at, at + 1.hour()).unwrap();
    let due = (expired * per) as u64;
    let (ours_t, base_t) = (format!("bench_pours_{tag}"), format!("bench_pbase_{tag}"));
    let (mut base_s, mut ours_s) = (vec![], vec![]);
    for round in 0..scale.rounds {
        for ours in [round % 2 == 0, round % 2 == 1] {
            let table = if ours { &ours_t } else { &base_t };
            pg_exec(conn, &fill(table.clone())).await;
            pg_exec(conn, &format!("VACUUM ANALYZE {table}")).await;
            if ours {
                let t = target(table, serde_json::json!({"dropExpiredPartitions": true}));
                let (report, took, _) = delenda(store, &t, &cutoff, scale).await;
                assert_eq!((report.account.deleted, report.account.remaining), (due, Some(0)), "{report:?}");
                assert_eq!(report.account.dropped.len() as i64, expired, "{report:?}");
                scale.say(|| format!("delenda {took:.3} s"));
                ours_s.push(took);
            } else {
                let drop: Vec<String> = (0..expired).map(|m| format!("{table}_p{m:02}")).collect();
                let (done, took) =
                    timed(sqlx::raw_sql(AssertSqlSafe(format!("DROP TABLE {}", drop.join(", ")))).execute(&mut *conn))
                        .await;
                done.expect("the baseline drop");
                scale.say(|| format!("baseline {took:.3} s"));
                base_s.push(took);
            }
            assert_eq!(pg_count(conn, table).await as u64, rows - due);
        }
    }
    pg_exec(conn, &format!("DROP TABLE IF EXISTS {ours_t}; DROP TABLE IF EXISTS {base_t}")).await;
    let (b, o) = (median(base_s), median(ours_s));
    Row {
        shape: name,
        baseline: "`DROP TABLE` of the expired partitions".into(),
        baseline_value: b,
        delenda_value: o,
        unit: "s",
        ratio: Some(b / o),
        goal: Some(0.9),
        limits: vec![],
        note: format!("{due} rows in the expired partitions"),
    }
}

async fn my(url: &str) -> MySqlConnection {
    MySqlConnection::connect(url).await.expect("reach MariaDB (tests/env/up, then source .testenv/env)")
}

async fn my_exec(conn: &mut MySqlConnection, sql: &str) {
    sqlx::raw_sql(AssertSqlSafe(sql.to_owned())).execute(conn).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn my_count(conn: &mut MySqlConnection, table: &str) -> i64 {
    sqlx::query(AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}"))).fetch_one(conn).await.expect("count").get(0)
}

/// MariaDB: half due and a daily run's share, keys in time order and shuffled.
pub async fn mariadb(scale: &Scale) -> Vec<Row> {
    let url = std::env::var("MYSQL_URL").expect("MYSQL_URL: start tests/env/up, then `set -a; . .testenv/env; set +a`");
    let shapes = [
        Shape {
            name: "MariaDB, 2M rows, half due, time index",
            due: Due::Half,
            time_index: true,
            shuffled: false,
            goal: 0.9,
            longest_ms: Some(250.0),
        },
        Shape {
            name: "MariaDB, 2M rows, 1/365 due, time index, keys in time order",
            due: Due::Daily,
            time_index: true,
            shuffled: false,
            goal: 0.9,
            longest_ms: Some(250.0),
        },
        Shape {
            name: "MariaDB, 2M rows, 1/365 due, time index, keys shuffled",
            due: Due::Daily,
            time_index: true,
            shuffled: true,
            goal: 0.9,
            longest_ms: Some(250.0),
        },
    ];
    let mut conn = my(&url).await;
    let store = SqlStore::connect_lazy(&url, PoolSettings::default()).expect("a store");
    let rows = scale.n(FULL_ROWS, 400);
    let tag = std::process::id();
    let mut out = Vec::new();
    for shape in shapes.iter().filter(|s| scale.wants(s.name)) {
        eprintln!("{} ({rows} rows)", shape.name);
        let due = due_rows(rows, shape.due);
        let (at, cutoff) = cutoff_after(due);
        let key = key_expr(shape, rows, "seq");
        let fill = |table: &str| {
            format!(
                "DROP TABLE IF EXISTS {table};
                 CREATE TABLE {table} (id BIGINT PRIMARY KEY, created_at DATETIME(6) NOT NULL, email VARCHAR(64), KEY (created_at)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
                 INSERT INTO {table} SELECT k, TIMESTAMP'2020-01-01 00:00:00' + INTERVAL g MINUTE, CONCAT('user', k, '@example.com')
                   FROM (SELECT seq AS g, {key} AS k FROM seq_1_to_{rows}) s ORDER BY k;
                 ANALYZE TABLE {table};"
            )
        };
        let (ours_t, base_t) = (format!("bench_ours_{tag}"), format!("bench_base_{tag}"));
        let (mut base_s, mut ours_s, mut longest, mut batches) = (vec![], vec![], vec![], vec![]);
        for round in 0..scale.rounds {
            for ours in [round % 2 == 0, round % 2 == 1] {
                let table = if ours { &ours_t } else { &base_t };
                my_exec(&mut conn, &fill(table)).await;
                if ours {
                    let t = target(table, serde_json::json!({"timeZone": "UTC"}));
                    let (report, took, max) = delenda(&store, &t, &cutoff, scale).await;
                    assert_eq!((report.account.deleted, report.account.remaining), (due, Some(0)), "{report:?}");
                    scale.say(|| format!("delenda {took:.3} s, {} batches, longest {:.1} ms", report.batches, ms(max)));
                    ours_s.push(took);
                    longest.push(ms(max));
                    batches.push(report.batches as f64);
                } else {
                    let text = at.strftime("%Y-%m-%d %H:%M:%S%.6f").to_string();
                    let (done, took) = timed(
                        sqlx::query(AssertSqlSafe(format!(
                            "DELETE FROM {table} WHERE created_at < CAST(? AS DATETIME(6))"
                        )))
                        .bind(text)
                        .execute(&mut conn),
                    )
                    .await;
                    assert_eq!(done.expect("the baseline delete").rows_affected(), due);
                    scale.say(|| format!("baseline {took:.3} s"));
                    base_s.push(took);
                }
                assert_eq!(my_count(&mut conn, table).await as u64, rows - due);
            }
        }
        my_exec(&mut conn, &format!("DROP TABLE IF EXISTS {ours_t}; DROP TABLE IF EXISTS {base_t}")).await;
        let (b, o) = (median(base_s), median(ours_s));
        let l = median(longest);
        let mut limits = vec![];
        if let Some(goal) = shape.longest_ms {
            limits.push((format!("longest statement {l:.0} ms <= {goal:.0} ms"), l <= goal));
        }
        out.push(Row {
            shape: shape.name.replace("2M", &short(rows)),
            baseline: "one `DELETE ... WHERE t < cutoff`".into(),
            baseline_value: b,
            delenda_value: o,
            unit: "s",
            ratio: Some(b / o),
            goal: Some(shape.goal),
            limits,
            note: format!(
                "{due} rows due; {:.0} batches, longest {l:.0} ms (baseline: one statement of {:.0} ms)",
                median(batches),
                b * 1000.0
            ),
        });
    }
    out
}
