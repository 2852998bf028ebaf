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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_scenario_reconciles_every_policy_and_reads_memory_and_idle_requests() {
    env("KUBECONFIG", "kube-apiserver");
    env("POSTGRES_URL", "PostgreSQL");
    let (none, some) = scenarios::operator::measure(&Scale::tiny()).await;
    // Every policy carries the status the operator wrote (the scenario
    // panics on one that did not resolve), and none on the empty side.
    assert_eq!((some.policies, some.reconciled), (50, 50), "{some:?}");
    assert_eq!((none.policies, none.reconciled), (0, 0), "{none:?}");
    for f in [&none, &some] {
        // Memory read from /proc, the peak at least what is resident now.
        assert!(f.rss_kb > 1024 && f.hwm_kb >= f.rss_kb && f.file_kb > 0 && f.file_kb < f.rss_kb, "{f:?}");
        assert!(f.idle_secs >= 12.0, "{f:?}");
        // The process sent its requests through the counted client: at
        // least the lists and watches of its caches, and lease renewals.
        assert!(f.busy_requests.keys().any(|k| k == "watch retentionpolicies"), "{f:?}");
        assert!(f.busy_requests.keys().any(|k| k == "list retentionpolicies"), "{f:?}");
        assert!(f.busy_requests.keys().any(|k| k.ends_with(" leases")), "{f:?}");
    }
    // One status write per policy, each counted.
    assert!(some.busy_requests.get("patch retentionpolicies/status").copied().unwrap_or(0.0) >= 50.0, "{some:?}");
    check(&[scenarios::operator::row(&none, &some)], 1);
}
