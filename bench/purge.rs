//! Purge speed and lock time of the SQL adapter against a baseline, side by
//! side on the real PostgreSQL from `tests/env/up`.
//!
//! Baseline: one `DELETE ... WHERE created_at < cutoff` statement, what a
//! hand-written cron job does. Delenda: `SqlStore::purge_due`, keyed batches
//! under a 200 ms latency target. Both get identical tables; the order
//! alternates between rounds. Reported as ratios: throughput (Delenda over
//! baseline) and the longest time one statement holds its locks.
//!
//! Run: `set -a; . .testenv/env; set +a; cargo bench --bench purge`
//! (BENCH_ROWS, default 400000; BENCH_ROUNDS, default 3).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use delenda::api::Mode;
use delenda::api::policy::Target;
use delenda::stores::sql::{PoolSettings, SqlStore};
use delenda::stores::{Cutoff, PurgeOptions, Store};
use jiff::{Timestamp, ToSpan};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

async fn fill(conn: &mut PgConnection, table: &str, rows: u64) {
    sqlx::raw_sql(AssertSqlSafe(format!(
        "DROP TABLE IF EXISTS {table};
         CREATE TABLE {table} (id bigint PRIMARY KEY, created_at timestamptz, email text);
         INSERT INTO {table} SELECT g, timestamptz '2020-01-01 00:00:00+00' + g * interval '1 minute', 'user' || g || '@example.com'
           FROM generate_series(1, {rows}) g;
         CREATE INDEX ON {table} (created_at);
         ANALYZE {table};"
    )))
    .execute(conn)
    .await
    .expect("fill the table");
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    xs[xs.len() / 2]
}

#[tokio::main]
async fn main() {
    let url = std::env::var("POSTGRES_URL")
        .expect("POSTGRES_URL is not set: start the servers with tests/env/up, then `set -a; . .testenv/env; set +a`");
    let rows: u64 = std::env::var("BENCH_ROWS").ok().and_then(|v| v.parse().ok()).unwrap_or(400_000);
    let rounds: usize = std::env::var("BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let mut conn = PgConnection::connect(&url).await.expect("reach PostgreSQL");
    let store = SqlStore::connect_lazy(&url, PoolSettings::default()).expect("a store");
    let base: Timestamp = "2020-01-01T00:00:00Z".parse().unwrap();
    let at = base + ((rows / 2) as i64).minutes() + 30.seconds();
    let cutoff = Cutoff::planned(at, at + 1.hour()).unwrap();

    let (mut base_rate, mut ours_rate, mut base_lock, mut ours_lock) = (vec![], vec![], vec![], vec![]);
    for round in 0..rounds {
        for ours_first in [round % 2 == 0, round % 2 == 1] {
            if ours_first {
                fill(&mut conn, "bench_delenda", rows).await;
                let target: Target = serde_json::from_value(serde_json::json!({
                    "name": "bench", "dataStoreRef": {"name": "db"},
                    "table": {"name": "bench_delenda", "timeColumn": "created_at"}}))
                .unwrap();
                let longest = Arc::new(Mutex::new(Duration::ZERO));
                let seen = longest.clone();
                let options = PurgeOptions::new(Mode::Enforce).with_progress(move |p| {
                    let mut l = seen.lock().unwrap();
                    *l = (*l).max(p.duration);
                });
                let started = Instant::now();
                let report = store.purge_due(&target, &cutoff, &options).await.expect("purge");
                let took = started.elapsed().as_secs_f64();
                ours_rate.push(report.account.deleted as f64 / took);
                ours_lock.push(longest.lock().unwrap().as_secs_f64());
            } else {
                fill(&mut conn, "bench_baseline", rows).await;
                let started = Instant::now();
                let done = sqlx::query("DELETE FROM bench_baseline WHERE created_at < CAST($1 AS timestamptz)")
                    .bind(at.to_string())
                    .execute(&mut conn)
                    .await
                    .expect("baseline delete");
                let took = started.elapsed().as_secs_f64();
                base_rate.push(done.rows_affected() as f64 / took);
                base_lock.push(took);
            }
        }
    }
    sqlx::raw_sql("DROP TABLE IF EXISTS bench_delenda; DROP TABLE IF EXISTS bench_baseline")
        .execute(&mut conn)
        .await
        .ok();
    let (br, or, bl, ol) = (median(base_rate), median(ours_rate), median(base_lock), median(ours_lock));
    println!("purge of {} due rows out of {rows}, median of {rounds} rounds, PostgreSQL", rows / 2);
    println!("{:<28} {:>14} {:>22}", "", "rows/s", "longest statement (ms)");
    println!("{:<28} {:>14.0} {:>22.1}", "baseline: one DELETE", br, bl * 1000.0);
    println!("{:<28} {:>14.0} {:>22.1}", "delenda: keyed batches", or, ol * 1000.0);
    println!("throughput ratio (delenda / baseline): {:.2}", or / br);
    println!("longest-lock ratio (delenda / baseline): {:.3}", ol / bl);
}
