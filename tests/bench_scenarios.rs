//! Every benchmark scenario of `bench/` at a tiny scale against the real
//! servers, so the benchmarks cannot rot: each must still purge exactly
//! what is due on both sides (the scenarios assert it) and produce a ratio.
//! Nothing here judges speed; `scripts/bench` does, at full scale.
mod support;

#[path = "../bench/scenarios/mod.rs"]
mod scenarios;

use scenarios::{Row, Scale};

fn check(rows: &[Row], expected: usize) {
    assert_eq!(rows.len(), expected, "{rows:?}");
    for r in rows {
        if let Some(ratio) = r.ratio {
            assert!(ratio.is_finite() && ratio > 0.0, "{r:?}");
        }
        assert!(r.baseline_value > 0.0 && r.delenda_value > 0.0, "{r:?}");
    }
    println!("{}", scenarios::table(rows));
}

fn env(key: &str, server: &str) {
    // The scenarios read their servers from the environment, as the benchmark does.
    let value = support::setting(key, server);
    // SAFETY: set before any thread of the test reads the environment.
    unsafe { std::env::set_var(key, value) };
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_scenarios_purge_exactly_and_give_ratios() {
    env("POSTGRES_URL", "PostgreSQL");
    check(&scenarios::sql::postgres(&Scale::tiny()).await, 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_scenarios_purge_exactly_and_give_ratios() {
    env("MYSQL_URL", "MariaDB");
    check(&scenarios::sql::mariadb(&Scale::tiny()).await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opensearch_scenarios_purge_exactly_and_give_ratios() {
    env("OPENSEARCH_URL", "OpenSearch");
    check(&scenarios::search::opensearch(&Scale::tiny()).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_scenarios_purge_exactly_and_give_ratios() {
    for key in ["S3_ENDPOINT", "S3_REGION", "S3_ACCESS_KEY_ID", "S3_SECRET_ACCESS_KEY"] {
        env(key, "S3 server");
    }
    env("RCLONE", "rclone (tests/env/servers/rclone.sh)");
    check(&scenarios::objects::s3(&Scale::tiny()).await, 2);
}
