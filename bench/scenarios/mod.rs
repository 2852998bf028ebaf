//! The benchmark scenarios, one row of the performance table each: Delenda
//! against a baseline doing the same work the way a hand-written job would,
//! side by side on the same server in the same process, the order
//! alternating between rounds, medians reported as ratios.
//!
//! Each scenario checks that both sides did exactly the same work (the same
//! records gone, the rest kept) before it reports anything, so a fast but
//! wrong purge cannot win. `bench/main.rs` runs them at full scale (`scripts/bench`);
//! `tests/bench_scenarios.rs` runs each at a tiny scale, so none can rot.
#![allow(dead_code)]

pub mod objects;
pub mod operator;
pub mod search;
pub mod sql;

use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// How big and how often.
#[derive(Clone, Debug)]
pub struct Scale {
    /// Multiplies every scenario's full size (1.0 in the benchmark; tiny in
    /// the tests).
    pub factor: f64,
    /// Rounds of each scenario (each round runs both sides once).
    pub rounds: usize,
    /// Print every batch and phase.
    pub verbose: bool,
    /// Only the shapes whose name holds one of these (BENCH_SHAPES, comma
    /// separated); every shape when empty.
    pub shapes: Vec<String>,
}

impl Scale {
    /// The benchmark's scale: full size, BENCH_ROUNDS rounds (3 by default),
    /// BENCH_SCALE as a factor (1 by default), BENCH_VERBOSE for detail.
    pub fn from_env() -> Self {
        let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        Self {
            factor: get("BENCH_SCALE").and_then(|v| v.parse().ok()).unwrap_or(1.0),
            rounds: get("BENCH_ROUNDS").and_then(|v| v.parse().ok()).unwrap_or(3),
            verbose: get("BENCH_VERBOSE").is_some(),
            shapes: get("BENCH_SHAPES")
                .map(|v| v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect())
                .unwrap_or_default(),
        }
    }

    /// A tiny scale for the tests: the same code, a few hundred records.
    pub fn tiny() -> Self {
        Self { factor: 0.0, rounds: 1, verbose: false, shapes: vec![] }
    }

    /// `full` scaled, and never below `min`.
    pub fn n(&self, full: u64, min: u64) -> u64 {
        ((full as f64 * self.factor) as u64).max(min)
    }

    /// Whether the shape named `name` is to run (BENCH_SHAPES).
    pub fn wants(&self, name: &str) -> bool {
        self.shapes.is_empty() || self.shapes.iter().any(|s| name.contains(s.as_str()))
    }

    /// Prints when verbose.
    pub fn say(&self, what: impl FnOnce() -> String) {
        if self.verbose {
            eprintln!("  {}", what());
        }
    }
}

/// One row of the table.
#[derive(Clone, Debug)]
pub struct Row {
    /// Store and shape, as the issue names it.
    pub shape: String,
    /// What the baseline does.
    pub baseline: String,
    /// Median seconds of the baseline (or its measure, for rows that are not times).
    pub baseline_value: f64,
    /// Median seconds of Delenda.
    pub delenda_value: f64,
    /// The unit of the two values.
    pub unit: &'static str,
    /// Delenda's throughput over the baseline's (both did the same work);
    /// `None` for rows judged by limits instead.
    pub ratio: Option<f64>,
    /// The ratio it must reach.
    pub goal: Option<f64>,
    /// Other limits, each with the measure and whether it holds:
    /// (`longest statement 141 ms <= 250 ms`, true).
    pub limits: Vec<(String, bool)>,
    /// What else was seen (records, batches).
    pub note: String,
}

impl Row {
    /// Whether every goal of the row is met.
    pub fn met(&self) -> bool {
        self.ratio.zip(self.goal).is_none_or(|(r, g)| r >= g) && self.limits.iter().all(|(_, ok)| *ok)
    }
}

/// The median of some measures.
pub fn median(mut xs: Vec<f64>) -> f64 {
    assert!(!xs.is_empty(), "no measures");
    xs.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    let n = xs.len();
    if n % 2 == 1 { xs[n / 2] } else { (xs[n / 2 - 1] + xs[n / 2]) / 2.0 }
}

/// Seconds of a future.
pub async fn timed<T>(f: impl Future<Output = T>) -> (T, f64) {
    let started = Instant::now();
    let out = f.await;
    (out, started.elapsed().as_secs_f64())
}

/// Runs `round` for each round, the two sides in alternating order: it is
/// called with `delenda_first`.
pub async fn alternate<F, Fut>(scale: &Scale, mut round: F)
where
    F: FnMut(usize, bool) -> Fut,
    Fut: Future<Output = ()>,
{
    for i in 0..scale.rounds {
        round(i, i % 2 == 0).await;
    }
}

/// Milliseconds, for limits.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The table, as Markdown.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| store and shape | baseline | baseline | Delenda | ratio | goal | other limits | met | notes |"
    );
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|---|");
    for r in rows {
        let value = |v: f64| match r.unit {
            "s" => format!("{v:.3} s"),
            "MB" => format!("{v:.1} MB"),
            u => format!("{v:.1} {u}"),
        };
        let limits: Vec<String> =
            r.limits.iter().map(|(l, ok)| format!("{l}{}", if *ok { "" } else { " (not met)" })).collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.shape,
            r.baseline,
            value(r.baseline_value),
            value(r.delenda_value),
            r.ratio.map_or_else(|| "-".to_owned(), |x| format!("{x:.2}x")),
            r.goal.map_or_else(|| "-".to_owned(), |g| format!(">= {g}x")),
            if limits.is_empty() { "-".to_owned() } else { limits.join("; ") },
            if r.met() { "yes" } else { "**no**" },
            r.note,
        );
    }
    out
}
