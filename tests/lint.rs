//! `delenda lint` as a CI job runs it: the real binary over the examples
//! and over bad manifests, with its exit codes and GitHub annotations, and
//! its verdict on every example and every manifest of
//! tests/invalid-manifests.yaml set beside the real API server's (a
//! server-side dry run with strict field validation, as `kubectl apply`
//! makes it).
mod support;

use std::path::Path;
use std::process::{Command, Output};

use serde::Deserialize;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_delenda");

fn lint(args: &[&str], github: bool) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("lint").args(args).env_remove("GITHUB_ACTIONS");
    if github {
        cmd.env("GITHUB_ACTIONS", "true");
    }
    cmd.output().expect("the delenda binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn every_example_lints_clean() {
    let out = lint(&[root().join("examples").to_str().unwrap()], false);
    assert_eq!(out.status.code(), Some(0), "stdout:\n{}\nstderr:\n{}", text(&out.stdout), text(&out.stderr));
    assert_eq!(text(&out.stdout), "", "no findings");
    let summary = text(&out.stderr);
    let objects: usize = summary.split(" objects").next().unwrap().rsplit(' ').next().unwrap().parse().unwrap();
    assert!(objects >= 30, "expected the MvS-IT and demo manifests, read only {objects}: {summary}");
}

#[test]
fn exit_codes_and_github_annotations_are_what_ci_needs() {
    let dir = tempfile::tempdir().unwrap();
    let policy = "apiVersion: delenda.dev/v1alpha1
kind: RetentionPolicy
metadata:
  name: calls
spec:
  category: calls
  description: call records, six months
  responsibleParty: self
  legalBasis: LegalObligation
  retention:
    period: 6m
  schedule:
    cron: \"0 3 * * *\"
  targets:
    - name: cdrs
      dataStoreRef:
        name: billing
      table:
        name: cdrs
        timeColumn: ended_at
";
    std::fs::write(dir.path().join("policy.yaml"), policy).unwrap();
    let out = lint(&[dir.path().to_str().unwrap()], true);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    // The period breaks two of its rules, as the API server says too; the
    // reference is judged only between manifests that are valid.
    assert_eq!(lines.len(), 2, "{stdout}");
    let period_line = policy.lines().position(|l| l.contains("period: 6m")).unwrap() + 1;
    let file = dir.path().join("policy.yaml").display().to_string().replace(':', "%3A").replace(',', "%2C");
    for line in &lines {
        assert!(
            line.starts_with(&format!("::error file={file},line={period_line},title=delenda lint (cel)::")),
            "{stdout}"
        );
    }
    assert!(lines.iter().any(|l| l.contains("ambiguous (minutes or months)")), "{stdout}");

    // Fixed, the reference to a DataStore outside the set shows.
    std::fs::write(dir.path().join("policy.yaml"), policy.replace("6m\n", "6mo\n")).unwrap();
    let out = lint(&[dir.path().to_str().unwrap()], false);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    let store_line = policy.lines().position(|l| l.contains("name: billing")).unwrap() + 1;
    assert!(
        stdout.contains(&format!("policy.yaml:{store_line}: error[reference]: RetentionPolicy/calls:")),
        "{stdout}"
    );
    assert!(stdout.contains("\"billing\""), "{stdout}");

    // With the DataStore, clean; an erasure request for a category nobody
    // keeps is a warning: exit 0, or 1 with --strict.
    std::fs::write(
        dir.path().join("store.yaml"),
        "apiVersion: delenda.dev/v1alpha1\nkind: DataStore\nmetadata:\n  name: billing\nspec:\n  mysql:\n    host: billing-db\n    database: billing\n    credentialsSecret:\n      name: billing-db\n",
    )
    .unwrap();
    assert_eq!(lint(&[dir.path().to_str().unwrap()], false).status.code(), Some(0));
    std::fs::write(
        dir.path().join("request.yaml"),
        "apiVersion: delenda.dev/v1alpha1\nkind: ErasureRequest\nmetadata:\n  name: r1\nspec:\n  identitySecretRef:\n    name: r1-identities\n  ground: ConsentWithdrawn\n  receivedAt: \"2026-11-02T09:30:00Z\"\n  identityVerification:\n    method: IdentityDocument\n    verifiedBy: staff-1\n  scope:\n    categories: [invoices]\n",
    )
    .unwrap();
    let out = lint(&[dir.path().to_str().unwrap()], false);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("warning[reference]"), "{}", text(&out.stdout));
    let out = lint(&["--strict", dir.path().to_str().unwrap()], false);
    assert_eq!(out.status.code(), Some(1));

    // The request's identities committed beside it: refused, never echoed.
    std::fs::write(
        dir.path().join("identities.yaml"),
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: r1-identities\nstringData:\n  email: jan.jansen@example.nl\n",
    )
    .unwrap();
    let out = lint(&[dir.path().to_str().unwrap()], false);
    assert_eq!(out.status.code(), Some(1));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("error[identity-secret]"), "{stdout}");
    assert!(!stdout.contains("jan.jansen"), "an identity in the lint's output: {stdout}");

    // Nothing readable: 2.
    let out = lint(&[dir.path().join("missing").to_str().unwrap()], false);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("cannot read"), "{}", text(&out.stderr));
}

/// One row of tests/invalid-manifests.yaml.
#[derive(Deserialize)]
struct InvalidCase {
    why: String,
    expect: String,
    manifest: Value,
}

/// The delenda.dev manifests of every example (the CI example is a
/// workflow, not a manifest).
fn example_documents() -> Vec<Value> {
    support::example_files()
        .iter()
        .flat_map(|f| support::yaml_documents(f))
        .filter(|v| v["apiVersion"].as_str().is_some_and(|a| a.starts_with("delenda.dev/")))
        .collect()
}

/// The API server's verdict: None when a server-side dry run with strict
/// field validation accepts the manifest, its message when it refuses it.
fn server_verdict(ns: &str, manifest: &Value) -> Option<String> {
    let yaml = serde_yaml::to_string(manifest).unwrap();
    let kubeconfig = support::setting("KUBECONFIG", "kube-apiserver");
    let mut child = Command::new("kubectl")
        .args(["--kubeconfig", &kubeconfig, "create", "--dry-run=server", "--validate=strict", "-n", ns, "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    use std::io::Write as _;
    child.stdin.take().unwrap().write_all(yaml.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = text(&out.stderr);
    assert!(
        !stderr.contains("connection refused") && !stderr.contains("Unable to connect"),
        "cannot reach kube-apiserver: {stderr}. Is it running? Start it with `tests/env/up` (docs/testing.md)."
    );
    (!out.status.success()).then_some(stderr)
}

/// Lint's verdict on one manifest alone, in the API server's domain
/// (schema and CEL rules; references and the operator's own checks are
/// what the server cannot judge): None when clean, the messages otherwise.
fn lint_verdict(manifest: &Value) -> Option<Vec<String>> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("m.yaml");
    std::fs::write(&file, serde_yaml::to_string(manifest).unwrap()).unwrap();
    let report = delenda::lint::lint(&[file]).unwrap();
    let found: Vec<String> = report
        .findings
        .into_iter()
        .filter(|f| matches!(f.rule, "schema" | "cel" | "yaml"))
        .map(|f| f.message)
        .collect();
    (!found.is_empty()).then_some(found)
}

#[tokio::test]
async fn lint_and_the_api_server_agree_on_every_example_and_every_invalid_manifest() {
    let client = support::kube_client().await;
    support::install_crds(&client).await;
    let ns = support::fresh_namespace(&client, "lint").await;

    let mut disagreements = Vec::new();
    let examples = example_documents();
    assert!(examples.len() >= 25, "found only {} example manifests", examples.len());
    for manifest in &examples {
        let name = format!("example {}/{}", manifest["kind"].as_str().unwrap(), manifest["metadata"]["name"]);
        match (server_verdict(&ns, manifest), lint_verdict(manifest)) {
            (None, None) => {}
            (server, lint) => disagreements.push(format!("{name}: server {server:?}, lint {lint:?}")),
        }
    }
    let cases: Vec<InvalidCase> =
        serde_yaml::from_str(&std::fs::read_to_string(root().join("tests/invalid-manifests.yaml")).unwrap()).unwrap();
    assert!(cases.len() >= 30, "{} cases", cases.len());
    for case in &cases {
        let server = server_verdict(&ns, &case.manifest);
        let lint = lint_verdict(&case.manifest);
        match (&server, &lint) {
            (Some(_), Some(messages)) if messages.iter().any(|m| m.contains(&case.expect)) => {}
            _ => {
                disagreements.push(format!("{} (expect {:?}): server {server:?}, lint {lint:?}", case.why, case.expect))
            }
        }
    }
    println!("{} examples and {} invalid manifests judged alike", examples.len(), cases.len());
    assert!(disagreements.is_empty(), "{} disagreements:\n{}", disagreements.len(), disagreements.join("\n"));
}
