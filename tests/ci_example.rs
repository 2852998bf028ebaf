//! examples/ci/delenda-manifests.yaml, the GitHub Actions workflow users
//! copy: every `run` step but the installation of delenda (this test's
//! binary stands in for the release it would install) runs here, as the
//! runner would run it (`bash -e -o pipefail`, the workflow's env), against
//! the real kube-apiserver of the test environment in place of the kind
//! cluster. Over the MvS-IT examples every step passes; over a broken copy
//! the lint and the dry run fail, with annotations and the API server's
//! message.
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn workflow() -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ci/delenda-manifests.yaml");
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The steps the test runs: each `run` step but the installation.
fn steps(workflow: &Value) -> Vec<(String, String)> {
    workflow["jobs"]["verify"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| Some((s["id"].as_str().unwrap_or_default().to_owned(), s["run"].as_str()?.to_owned())))
        .filter(|(id, _)| id != "install-delenda")
        .collect()
}

struct Runner {
    env: Vec<(String, String)>,
    _temp: tempfile::TempDir,
}

impl Runner {
    fn new(workflow: &Value, manifests: &Path, namespace: &str) -> Self {
        let temp = tempfile::tempdir().unwrap();
        let bin = temp.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_delenda"), bin.join("delenda")).unwrap();
        let runner_temp = temp.path().join("runner");
        std::fs::create_dir(&runner_temp).unwrap();
        let mut env: Vec<(String, String)> = workflow["env"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
            .collect();
        let set = |env: &mut Vec<(String, String)>, k: &str, v: String| {
            env.retain(|(key, _)| key != k);
            env.push((k.to_owned(), v));
        };
        set(&mut env, "MANIFESTS", manifests.display().to_string());
        set(&mut env, "NAMESPACE", namespace.to_owned());
        set(&mut env, "GITHUB_ACTIONS", "true".into());
        set(&mut env, "RUNNER_TEMP", runner_temp.display().to_string());
        set(&mut env, "KUBECONFIG", support::setting("KUBECONFIG", "kube-apiserver"));
        set(&mut env, "PATH", format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()));
        Self { env, _temp: temp }
    }

    /// Runs one step's script; its exit code, stdout and stderr.
    fn run(&self, script: &str) -> (i32, String, String) {
        let out = Command::new("bash")
            .args(["--noprofile", "--norc", "-e", "-o", "pipefail", "-c", script])
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env_remove("DELENDA_STATE")
            .output()
            .expect("bash runs");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

#[test]
fn the_ci_example_passes_the_examples_and_stops_a_broken_manifest() {
    let workflow = workflow();
    let steps = steps(&workflow);
    let ids: Vec<&str> = steps.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["lint", "crds", "dry-run"], "the steps this test runs");
    let kind = workflow["jobs"]["verify"]["steps"].as_array().unwrap().iter().find(|s| s["id"] == "kind").unwrap();
    assert!(kind["uses"].as_str().unwrap().starts_with("helm/kind-action@"), "the one step not run here");

    // The namespace of the dry run is the test's own; the cluster is the
    // test environment's (KUBECONFIG), in place of kind's.
    let namespace = support::unique("delenda-ci");
    let examples: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/mvs-it");
    let runner = Runner::new(&workflow, &examples, &namespace);
    for (id, script) in &steps {
        let (code, stdout, stderr) = runner.run(script);
        assert!(
            !stderr.contains("connection refused"),
            "cannot reach kube-apiserver: {stderr}. Is it running? Start it with `tests/env/up` (docs/testing.md)."
        );
        assert_eq!(code, 0, "step {id} failed on the examples:\n{stdout}\n{stderr}");
        if *id == "dry-run" {
            let objects: usize = std::fs::read_dir(&examples)
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
                .map(|p| std::fs::read_to_string(p).unwrap())
                .map(|t| t.lines().filter(|l| l.starts_with("kind: ")).count())
                .sum();
            let judged = stdout.lines().filter(|l| l.contains("(server dry run)")).count();
            assert!(objects >= 20, "{objects} objects in the examples");
            assert_eq!(judged, objects, "the dry run judged every object of the examples:\n{stdout}");
        }
    }

    // A pull request that breaks a policy: both gates close.
    let broken = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&examples).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            std::fs::copy(&path, broken.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    let policies = broken.path().join("policies.yaml");
    let text = std::fs::read_to_string(&policies).unwrap();
    assert!(text.contains("period: 6mo"), "the examples keep traffic data 6 months");
    std::fs::write(&policies, text.replacen("period: 6mo", "period: 6m", 1)).unwrap();
    let runner = Runner::new(&workflow, broken.path(), &namespace);
    let script = |id: &str| steps.iter().find(|(i, _)| i == id).unwrap().1.clone();

    let (code, stdout, _) = runner.run(&script("lint"));
    assert_eq!(code, 1, "{stdout}");
    let annotation = stdout.lines().find(|l| l.starts_with("::error file=")).unwrap_or_else(|| panic!("{stdout}"));
    assert!(annotation.contains("policies.yaml") && annotation.contains("ambiguous (minutes or months)"), "{stdout}");

    let (code, _, stderr) = runner.run(&script("dry-run"));
    assert_ne!(code, 0);
    assert!(stderr.contains("ambiguous (minutes or months)"), "the API server's own message: {stderr}");
}
