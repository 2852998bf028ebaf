//! The chart on the test node (`tests/env/up node image`): helm and kubectl
//! against the test cluster, and a release of charts/delenda installed with
//! the image the Dockerfile built and the values this node needs.
//!
//! The node's stores and API server listen on 127.0.0.1 only, so the
//! operator's pods use the host network (`hostNetwork: true`) and are told
//! where the API server is (KUBERNETES_SERVICE_HOST and _PORT: nothing
//! routes the `kubernetes` Service's address here). Everything else is the
//! chart's default: its ServiceAccount, RBAC, securityContext and probes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::{Api, Client};
use serde_json::{Value, json};

/// The script that starts the node and builds the image.
pub const NODE_SCRIPT: &str = "tests/env/up node image";

pub fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/delenda")
}

fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    let mut child = super::reach(
        Command::new(program).args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn(),
        program,
    );
    child.stdin.take().unwrap().write_all(stdin.unwrap_or_default().as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() { Ok(stdout) } else { Err(format!("{stdout}{}", String::from_utf8_lossy(&out.stderr))) }
}

/// kubectl as the test cluster's admin.
pub fn kubectl(args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    let kubeconfig = super::setting("KUBECONFIG", "kube-apiserver");
    let mut all = vec!["--kubeconfig", &kubeconfig];
    all.extend(args);
    run("kubectl", &all, stdin)
}

/// helm (HELM from `.testenv/env`) against the test cluster.
pub fn helm(args: &[&str]) -> Result<String, String> {
    let bin = super::setting("HELM", "helm");
    let kubeconfig = super::setting("KUBECONFIG", "kube-apiserver");
    let mut all = vec!["--kubeconfig", &kubeconfig];
    all.extend(args);
    run(&bin, &all, None)
}

/// The API server's address as the kubeconfig names it.
pub fn api_server() -> url::Url {
    let path = super::setting("KUBECONFIG", "kube-apiserver");
    let config = super::reach(kube::config::Kubeconfig::read_from(&path), "kube-apiserver");
    let server = config.clusters[0].cluster.as_ref().unwrap().server.clone().unwrap();
    url::Url::parse(&server).unwrap()
}

/// The image built from the Dockerfile and imported into the node:
/// (repository, tag, digest).
pub fn image() -> (String, String, String) {
    let reference = super::setting("DELENDA_IMAGE", NODE_SCRIPT);
    let digest = super::setting("DELENDA_IMAGE_DIGEST", NODE_SCRIPT);
    let (repository, tag) = reference.rsplit_once(':').unwrap();
    (repository.to_owned(), tag.to_owned(), digest)
}

/// One release of the chart: its namespace, the one namespace it watches,
/// and the host port of its pods' /metrics, /healthz and /readyz.
pub struct Release {
    pub name: String,
    pub namespace: String,
    pub watched: String,
    pub port: u16,
}

impl Release {
    /// The prefix of the release's resource names (and its ServiceAccount).
    pub fn fullname(&self) -> String {
        format!("{}-delenda", self.name)
    }

    /// The values of an install on the test node; `extra` on top.
    pub fn values(&self, extra: Value) -> Value {
        let (repository, tag, digest) = image();
        let api = api_server();
        let mut values = json!({
            "image": {"repository": repository, "tag": tag, "digest": digest, "pullPolicy": "Never"},
            "watchNamespace": self.watched,
            "hostNetwork": true,
            "service": {"port": self.port},
            "extraEnv": [
                {"name": "KUBERNETES_SERVICE_HOST", "value": api.host_str().unwrap()},
                {"name": "KUBERNETES_SERVICE_PORT", "value": api.port().unwrap().to_string()}
            ]
        });
        merge(&mut values, extra);
        values
    }

    /// `helm install` (or upgrade) with `values`, as a values file.
    pub fn helm_with(&self, verb: &[&str], values: &Value, wait: bool) -> Result<String, String> {
        let file = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
        std::fs::write(file.path(), serde_yaml::to_string(values).unwrap()).unwrap();
        let chart = chart_dir();
        let mut args: Vec<&str> = verb.to_vec();
        args.extend([self.name.as_str(), chart.to_str().unwrap(), "-n", &self.namespace]);
        args.extend(["-f", file.path().to_str().unwrap()]);
        if wait {
            args.extend(["--wait", "--timeout", "4m"]);
        }
        helm(&args)
    }

    /// The pods of the release, newest first.
    pub async fn pods(&self, client: &Client) -> Vec<Pod> {
        let api: Api<Pod> = Api::namespaced(client.clone(), &self.namespace);
        let selector = format!("app.kubernetes.io/instance={}", self.name);
        let mut pods = api.list(&ListParams::default().labels(&selector)).await.unwrap().items;
        pods.sort_by_key(|p| std::cmp::Reverse(p.metadata.creation_timestamp.clone().map(|t| t.0)));
        pods
    }

    /// The holder of the leader Lease.
    pub async fn leader(&self, client: &Client) -> Option<String> {
        let api: Api<Lease> = Api::namespaced(client.clone(), &self.namespace);
        api.get_opt("delenda-controller").await.ok()??.spec?.holder_identity
    }

    /// A pod's logs, or what kubectl said.
    pub fn logs(&self, pod: &str) -> String {
        kubectl(&["logs", "-n", &self.namespace, pod], None).unwrap_or_else(|e| e)
    }
}

/// A pod is Running with every container ready.
pub fn ready(pod: &Pod) -> bool {
    let Some(status) = &pod.status else { return false };
    status.phase.as_deref() == Some("Running")
        && status.container_statuses.as_ref().is_some_and(|c| c.iter().all(|c| c.ready))
}

fn merge(into: &mut Value, from: Value) {
    match (into, from) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (slot, v) => *slot = v,
    }
}
