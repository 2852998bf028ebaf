//! Shared by the integration tests: where the real test servers are.
//!
//! `tests/env/up` starts every server on 127.0.0.1 and writes their addresses
//! to `.testenv/env` (KEY=VALUE lines). A variable set in the process
//! environment wins, so a test can be pointed at other servers (for example a
//! kind cluster through KUBECONFIG). A missing server is a failure, never a
//! skip.
#![allow(dead_code)]

pub mod cluster;
pub mod node;
pub mod s3;
pub mod search;
pub mod sql;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;

/// The script that starts every test server.
pub const UP_SCRIPT: &str = "tests/env/up";

fn env_file() -> &'static HashMap<String, String> {
    static FILE: OnceLock<HashMap<String, String>> = OnceLock::new();
    FILE.get_or_init(|| {
        let state = std::env::var_os("DELENDA_STATE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".testenv"));
        let text = std::fs::read_to_string(state.join("env")).unwrap_or_default();
        text.lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect()
    })
}

/// The value of KEY from the environment or `.testenv/env`; panics with the
/// name of the script that starts the server when it is missing.
pub fn setting(key: &str, server: &str) -> String {
    if let Ok(v) = std::env::var(key)
        && !v.is_empty()
    {
        return v;
    }
    match env_file().get(key) {
        Some(v) if !v.is_empty() => v.clone(),
        _ => panic!(
            "{key} is not set, so there is no {server} to test against. \
             Start the test servers with `{UP_SCRIPT}` (docs/testing.md), \
             or set {key} to point at one."
        ),
    }
}

/// Panics with a message naming the script when `result` is an error from
/// reaching `server`.
pub fn reach<T, E: std::fmt::Display>(result: Result<T, E>, server: &str) -> T {
    result.unwrap_or_else(|e| {
        panic!("cannot reach {server}: {e}. Is it running? Start it with `{UP_SCRIPT}` (docs/testing.md).")
    })
}

/// A short random suffix for names, so tests never collide.
///
/// The suffix is written in the letters `a` to `p` (one per nibble), never in
/// digits: a run of nine digits reads as a phone number to the operator's
/// redaction (`stores::identity::redact`), and a test that looks for a
/// table's name in an error message must find it there whatever the clock
/// said.
pub fn unique(prefix: &str) -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    let value = ((nanos as u64 & 0xffff_ffff) << 32) | u64::from(std::process::id());
    let suffix: String = (0..16).rev().map(|i| char::from(b'a' + ((value >> (i * 4)) & 0xf) as u8)).collect();
    format!("{prefix}-{}", suffix.trim_start_matches('a'))
}

/// A kube client for the cluster in KUBECONFIG (the test apiserver from
/// `tests/env/up`, or any cluster the variable points at).
pub async fn kube_client() -> kube::Client {
    reach(kube::Client::try_from(kube_config().await), "kube-apiserver")
}

/// The client configuration for the cluster in KUBECONFIG.
pub async fn kube_config() -> kube::Config {
    let path = setting("KUBECONFIG", "kube-apiserver");
    let kubeconfig = reach(kube::config::Kubeconfig::read_from(&path), "kube-apiserver");
    reach(kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await, "kube-apiserver")
}

/// Creates a namespace of its own for one test. There is no
/// controller-manager, so namespaces are not finalized: names never repeat.
pub async fn fresh_namespace(client: &kube::Client, prefix: &str) -> String {
    use k8s_openapi::api::core::v1::Namespace;
    let name = unique(prefix);
    let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).unwrap();
    let api: kube::Api<Namespace> = kube::Api::all(client.clone());
    reach(api.create(&Default::default(), &ns).await, "kube-apiserver");
    name
}

/// Installs the CRDs with server-side apply and waits until each is
/// Established. Safe to call from many tests at once.
pub async fn install_crds(client: &kube::Client) {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    use kube::api::{Patch, PatchParams};
    let api: kube::Api<CustomResourceDefinition> = kube::Api::all(client.clone());
    for crd in delenda::api::crds() {
        let name = crd.metadata.name.clone().unwrap();
        reach(
            api.patch(&name, &PatchParams::apply("delenda-tests").force(), &Patch::Apply(&crd)).await,
            "kube-apiserver",
        );
        let established = kube::runtime::wait::await_condition(
            api.clone(),
            &name,
            kube::runtime::wait::conditions::is_crd_established(),
        );
        tokio::time::timeout(std::time::Duration::from_secs(60), established)
            .await
            .unwrap_or_else(|_| panic!("CRD {name} did not become Established within 60s"))
            .unwrap();
    }
}

/// Polls `check` every 250 ms until it gives a value; fails after `secs`
/// seconds, naming what it waited for.
pub async fn eventually<T>(what: &str, secs: u64, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out after {secs}s waiting for {what}");
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

/// A typed object from JSON, for test fixtures.
pub fn manifest<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).unwrap()
}

/// The documents of a YAML file, as JSON, empty ones left out.
pub fn yaml_documents(path: &std::path::Path) -> Vec<serde_json::Value> {
    use serde::Deserialize as _;
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|doc| serde_yaml::Value::deserialize(doc).unwrap())
        .filter(|v| !v.is_null())
        .map(|v| serde_json::to_value(v).unwrap())
        .collect()
}

/// Every YAML file of Kubernetes objects under examples/ (not the CI
/// workflow of examples/ci/), in a stable order.
pub fn example_files() -> Vec<PathBuf> {
    fn walk(dir: &std::path::Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() && !path.ends_with("examples/ci") {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples"), &mut files);
    files.sort();
    files
}
