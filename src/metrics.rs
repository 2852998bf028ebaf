//! Prometheus metrics. Labels are of low cardinality: outcomes, modes,
//! store types and phases; never object names, identities or error texts.

use std::collections::BTreeMap;
use std::sync::Mutex;

use jiff::Timestamp;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of a run.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RunLabels {
    /// Succeeded, Failed or Stopped.
    pub outcome: String,
    /// Enforce or DryRun.
    pub mode: String,
}

/// Labels naming a kind of store.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreLabels {
    /// postgres, mysql, sqlite, s3, opensearch or files.
    pub store_type: String,
}

/// Labels naming a phase of erasure requests.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    /// Pending, InProgress, Completed or Failed.
    pub phase: String,
}

/// Every metric the operator exports.
pub struct Metrics {
    registry: Registry,
    runs: Family<RunLabels, Counter>,
    deleted: Family<StoreLabels, Counter>,
    run_duration: Histogram,
    erasure_phases: Family<PhaseLabels, Gauge>,
    erasure_deadline: Gauge,
    erasure_overdue: Gauge,
    leader: Gauge,
    /// Open requests by uid: their phase and deadline, to derive the gauges.
    requests: Mutex<BTreeMap<String, (String, Option<Timestamp>)>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("delenda");
        let runs = Family::<RunLabels, Counter>::default();
        let deleted = Family::<StoreLabels, Counter>::default();
        let run_duration = Histogram::new(exponential_buckets(0.05, 2.0, 16));
        let erasure_phases = Family::<PhaseLabels, Gauge>::default();
        let erasure_deadline = Gauge::default();
        let erasure_overdue = Gauge::default();
        let leader = Gauge::default();
        // The `_total` suffix is added by the library (registering it by
        // hand panics in debug builds).
        registry.register("policy_runs", "Finished RetentionPolicy runs", runs.clone());
        registry.register("records_deleted", "Records deleted, by store type", deleted.clone());
        registry.register("policy_run_duration_seconds", "Duration of RetentionPolicy runs", run_duration.clone());
        registry.register("erasure_requests", "ErasureRequests by phase", erasure_phases.clone());
        registry.register(
            "erasure_seconds_to_nearest_deadline",
            "Seconds until the nearest deadline of an ErasureRequest that is not completed (negative when overdue)",
            erasure_deadline.clone(),
        );
        registry.register(
            "erasure_requests_overdue",
            "ErasureRequests past their deadline and not completed",
            erasure_overdue.clone(),
        );
        registry.register("leader", "1 while this instance holds the leader lease", leader.clone());
        Self {
            registry,
            runs,
            deleted,
            run_duration,
            erasure_phases,
            erasure_deadline,
            erasure_overdue,
            leader,
            requests: Mutex::new(BTreeMap::new()),
        }
    }

    /// Records a finished run.
    pub fn run_finished(&self, outcome: &str, mode: &str, seconds: f64, deleted_by_store: &[(&str, u64)]) {
        self.runs.get_or_create(&RunLabels { outcome: outcome.into(), mode: mode.into() }).inc();
        self.run_duration.observe(seconds);
        for (store_type, n) in deleted_by_store {
            self.deleted.get_or_create(&StoreLabels { store_type: (*store_type).into() }).inc_by(*n);
        }
    }

    /// Records where an erasure request stands; `None` forgets it (deleted).
    pub fn erasure_state(&self, uid: &str, state: Option<(&str, Option<Timestamp>)>, now: Timestamp) {
        let mut requests = self.requests.lock().expect("metrics lock");
        match state {
            Some((phase, deadline)) => {
                requests.insert(uid.into(), (phase.into(), deadline));
            }
            None => {
                requests.remove(uid);
            }
        }
        self.erasure_phases.clear();
        for (phase, _) in requests.values() {
            self.erasure_phases.get_or_create(&PhaseLabels { phase: phase.clone() }).inc();
        }
        let open = requests.values().filter(|(p, _)| p != "Completed" && p != "Previewed").filter_map(|(_, d)| *d);
        let nearest = open.clone().min();
        self.erasure_deadline.set(nearest.map(|d| d.duration_since(now).as_secs()).unwrap_or(0));
        self.erasure_overdue.set(open.filter(|d| *d < now).count() as i64);
    }

    /// Records whether this instance leads.
    pub fn set_leader(&self, leading: bool) {
        self.leader.set(i64::from(leading));
    }

    /// The metrics in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_and_deletes_are_counted_by_low_cardinality_labels() {
        let m = Metrics::new();
        m.run_finished("Succeeded", "Enforce", 1.5, &[("postgres", 120), ("s3", 4)]);
        m.run_finished("Succeeded", "Enforce", 0.5, &[("postgres", 5)]);
        let text = m.encode();
        assert!(text.contains(r#"delenda_policy_runs_total{outcome="Succeeded",mode="Enforce"} 2"#), "{text}");
        assert!(text.contains(r#"delenda_records_deleted_total{store_type="postgres"} 125"#), "{text}");
        assert!(text.contains("delenda_policy_run_duration_seconds_count 2"), "{text}");
    }

    #[test]
    fn erasure_gauges_follow_the_requests() {
        let m = Metrics::new();
        let now: Timestamp = "2026-11-28T00:00:00Z".parse().unwrap();
        m.erasure_state("a", Some(("InProgress", Some("2026-12-01T00:00:00Z".parse().unwrap()))), now);
        m.erasure_state("b", Some(("Failed", Some("2026-11-27T00:00:00Z".parse().unwrap()))), now);
        m.erasure_state("c", Some(("Completed", Some("2026-11-01T00:00:00Z".parse().unwrap()))), now);
        let text = m.encode();
        assert!(text.contains(r#"delenda_erasure_requests{phase="InProgress"} 1"#), "{text}");
        assert!(text.contains("delenda_erasure_requests_overdue 1"), "{text}");
        assert!(text.contains("delenda_erasure_seconds_to_nearest_deadline -86400"), "{text}");
        m.erasure_state("b", None, now);
        assert!(m.encode().contains("delenda_erasure_requests_overdue 0"));
    }
}
