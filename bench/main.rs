//! Every benchmark against the test environment, printed as one table of
//! ratios (Markdown), Delenda against a baseline side by side.
//!
//! Run: `scripts/bench [GROUP...]`, or `cargo bench --bench ratios -- [GROUP...]`
//! with the environment of `.testenv/env`. Groups: postgres, mariadb,
//! opensearch, s3, operator (all by default); the log-file erasure is
//! `cargo bench --bench files`. BENCH_ROUNDS (3),
//! BENCH_SCALE (1: the sizes of issue 13), BENCH_VERBOSE (every batch),
//! BENCH_SHAPES (only the SQL shapes whose name holds one of these words),
//! RUST_LOG (traces to stderr: `sqlx::query=debug` times every statement).

mod scenarios;

use scenarios::Scale;

const GROUPS: [&str; 5] = ["postgres", "mariadb", "opensearch", "s3", "operator"];

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    let asked: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    for a in &asked {
        assert!(GROUPS.contains(&a.as_str()), "unknown group {a}; the groups are {GROUPS:?}");
    }
    let groups: Vec<&str> =
        GROUPS.iter().copied().filter(|g| asked.is_empty() || asked.iter().any(|a| a == g)).collect();
    let scale = Scale::from_env();
    eprintln!("benchmarks {groups:?}, {} rounds, scale {}", scale.rounds, scale.factor);
    let mut rows = Vec::new();
    for g in groups {
        let got = match g {
            "postgres" => scenarios::sql::postgres(&scale).await,
            "mariadb" => scenarios::sql::mariadb(&scale).await,
            "opensearch" => scenarios::search::opensearch(&scale).await,
            "s3" => scenarios::objects::s3(&scale).await,
            "operator" => scenarios::operator::operator(&scale).await,
            _ => unreachable!(),
        };
        for r in &got {
            eprintln!("{}", scenarios::table(std::slice::from_ref(r)).lines().last().unwrap_or_default());
        }
        rows.extend(got);
    }
    println!("{}", scenarios::table(&rows));
}
