//! The JSON schemas in schemas/ work with kubeconform, the offline
//! validator CI pipelines run (built from its Go module by
//! `tests/env/up kubeconform`): every example is valid under `-strict`, and
//! the mistakes a schema can see (a typo in a field name, at the top or
//! deep down, a wrong type, a value outside an enum, a required field left
//! out) are each refused with the field named. CEL rules are the API
//! server's and `delenda lint`'s to check, not a JSON schema's.
mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

/// Runs kubeconform -strict over `args` (files, or `-` with `stdin`),
/// with the schemas of this checkout; returns its JSON report.
fn kubeconform(args: &[&str], stdin: Option<&str>) -> Value {
    let bin = support::setting("KUBECONFORM", "kubeconform");
    let root = env!("CARGO_MANIFEST_DIR");
    let location = format!("{root}/schemas/{{{{.Group}}}}/{{{{.ResourceKind}}}}_{{{{.ResourceAPIVersion}}}}.json");
    let mut child = Command::new(&bin)
        .args(["-strict", "-summary", "-verbose", "-output", "json", "-ignore-missing-schemas"])
        .args(["-schema-location", &location])
        .args(args)
        .current_dir(root)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {bin}: {e}; start it with tests/env/up kubeconform"));
    if let Some(text) = stdin {
        child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "kubeconform printed no JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn ours(report: &Value) -> Vec<&Value> {
    report["resources"]
        .as_array()
        .map(|r| r.iter().filter(|r| r["version"].as_str().is_some_and(|v| v.starts_with("delenda.dev/"))).collect())
        .unwrap_or_default()
}

#[test]
fn every_example_is_valid_under_strict_kubeconform() {
    // examples/ci/ holds a GitHub Actions workflow, not Kubernetes objects.
    let report = kubeconform(&["-ignore-filename-pattern", "examples/ci/", "examples/"], None);
    assert_eq!(report["summary"]["invalid"], 0, "{report:#}");
    assert_eq!(report["summary"]["errors"], 0, "{report:#}");
    let resources = ours(&report);
    assert!(resources.iter().all(|r| r["status"] == "statusValid"), "{resources:#?}");
    let documents = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/examples"))
        .unwrap()
        .flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap())
        .map(|f| f.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| std::fs::read_to_string(p).unwrap().matches("apiVersion: delenda.dev/").count())
        .sum::<usize>();
    assert_eq!(
        resources.len(),
        documents,
        "every DataStore, RetentionPolicy and ErasureRequest of the examples was validated"
    );
}

const POLICY: &str = "apiVersion: delenda.dev/v1alpha1
kind: RetentionPolicy
metadata:
  name: calls
spec:
  category: calls
  description: call records
  responsibleParty: self
  legalBasis: LegalObligation
  retention:
    period: 6mo
  schedule:
    cron: 0 3 * * *
    timeZone: Europe/Amsterdam
  targets:
  - name: calls
    dataStoreRef:
      name: billing
    table:
      name: billing.calls
      timeColumn: started_at
";

#[test]
fn mistakes_a_schema_can_see_are_refused_with_the_field_named() {
    let valid = kubeconform(&["-"], Some(POLICY));
    assert_eq!(valid["summary"]["valid"], 1, "the base manifest is valid: {valid:#}");
    for (why, from, to, names) in [
        ("a typo at the top", "spec:\n  category", "sepc:\n  category", "'sepc'"),
        ("a typo in spec", "  retention:\n", "  retenion:\n", "'retenion'"),
        ("a typo deep in a target", "      timeColumn:", "      timeColum:", "'timeColum'"),
        ("a wrong type", "    period: 6mo", "    period: [6mo]", "/spec/retention/period"),
        ("a value outside its enum", "legalBasis: LegalObligation", "legalBasis: Obligation", "/spec/legalBasis"),
        ("a required field left out", "  description: call records\n", "", "'description'"),
    ] {
        assert!(POLICY.contains(from), "{why}: the base holds {from:?}");
        let report = kubeconform(&["-"], Some(&POLICY.replacen(from, to, 1)));
        assert_eq!(report["summary"]["invalid"], 1, "{why}: refused: {report:#}");
        let text = report.to_string();
        assert!(text.contains(names), "{why}: the report names {names}: {report:#}");
    }
}
