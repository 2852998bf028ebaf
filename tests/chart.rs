//! The Helm chart in charts/delenda judged by helm and the real API server:
//! it lints, its renders (all namespaces, and one watched namespace) pass a
//! server-side dry run, its CRDs are the generated ones byte for byte, and
//! its RBAC grants every call the controller makes, where it makes it.
mod support;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Deserialize;
use serde_yaml::Value;
use tokio::sync::OnceCell;

/// The Kubernetes version the chart is rendered for.
const KUBE_VERSION: &str = "1.34.0";
/// The release name used in every render.
const RELEASE: &str = "delenda";

fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/delenda")
}

/// Runs helm (HELM from `.testenv/env`) and returns its stdout; panics with
/// stderr when it fails.
fn helm(args: &[&str]) -> String {
    let bin = support::setting("HELM", "helm");
    let out = support::reach(Command::new(&bin).args(args).output(), &format!("helm ({bin})"));
    assert!(
        out.status.success(),
        "helm {} failed:\n{}{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("helm prints UTF-8")
}

/// The chart rendered into `namespace` with `--set` values.
fn render(namespace: &str, sets: &[&str]) -> String {
    let chart = chart_dir();
    let mut args = vec!["template", RELEASE, chart.to_str().unwrap(), "--namespace", namespace];
    args.extend(["--kube-version", KUBE_VERSION]);
    for set in sets {
        args.extend(["--set", set]);
    }
    helm(&args)
}

fn documents(yaml: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .map(|doc| Value::deserialize(doc).expect("helm renders valid YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

fn text<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    path.iter().fold(v, |v, key| &v[*key]).as_str().unwrap_or("")
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| text(d, &["kind"]) == kind).collect()
}

/// Submits `manifests` with `kubectl apply --server-side --dry-run=server`.
fn server_side_dry_run(manifests: &str) -> Result<String, String> {
    let kubeconfig = support::setting("KUBECONFIG", "kube-apiserver");
    let mut child = support::reach(
        Command::new("kubectl")
            .args(["--kubeconfig", &kubeconfig, "apply", "--server-side", "--dry-run=server"])
            .args(["--field-manager", "delenda-tests", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn(),
        "kubectl",
    );
    child.stdin.take().unwrap().write_all(manifests.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() { Ok(stdout) } else { Err(format!("{stdout}{}", String::from_utf8_lossy(&out.stderr))) }
}

/// Installs the CRDs once per test binary.
async fn cluster() -> kube::Client {
    static INSTALLED: OnceCell<()> = OnceCell::const_new();
    let client = support::kube_client().await;
    INSTALLED.get_or_init(|| support::install_crds(&client)).await;
    client
}

/// Renders `sets` into a fresh release namespace and dry-runs every object;
/// returns how many the server accepted.
async fn accepted_by_the_api_server(release_ns: &str, sets: &[&str]) -> usize {
    let rendered = render(release_ns, sets);
    let objects = documents(&rendered).len();
    match server_side_dry_run(&rendered) {
        Ok(out) => {
            let applied = out.lines().filter(|l| l.contains("(server dry run)")).count();
            assert_eq!(applied, objects, "kubectl applied {applied} of {objects} objects:\n{out}");
            objects
        }
        Err(e) => panic!("the API server rejected the chart rendered with {sets:?}:\n{e}"),
    }
}

#[test]
fn chart_passes_helm_lint() {
    let out = helm(&["lint", "--strict", chart_dir().to_str().unwrap()]);
    assert!(out.contains("0 chart(s) failed"), "{out}");
}

/// Helm installs crds/ verbatim, so the copy must be the generated file.
#[test]
fn chart_crds_are_the_generated_crds() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let generated = std::fs::read(root.join("crds/delenda.dev.yaml")).unwrap();
    let copy = std::fs::read(root.join("charts/delenda/crds/delenda.dev.yaml")).unwrap_or_default();
    assert!(
        copy == generated,
        "charts/delenda/crds/delenda.dev.yaml differs from crds/delenda.dev.yaml: \
         `cp crds/delenda.dev.yaml charts/delenda/crds/` and commit it"
    );
}

#[tokio::test]
async fn default_render_is_accepted_by_a_server_side_dry_run() {
    let client = cluster().await;
    let ns = support::fresh_namespace(&client, "chart").await;
    let count = accepted_by_the_api_server(&ns, &[]).await;
    println!("{count} objects of the default render accepted by kube-apiserver");
}

#[tokio::test]
async fn one_namespace_render_is_accepted_by_a_server_side_dry_run() {
    let client = cluster().await;
    let ns = support::fresh_namespace(&client, "chart").await;
    let watched = support::fresh_namespace(&client, "watched").await;
    let count = accepted_by_the_api_server(&ns, &[&format!("watchNamespace={watched}")]).await;
    println!("{count} objects of the one-namespace render accepted by kube-apiserver");
}

#[tokio::test]
async fn a_render_with_signing_and_sink_is_accepted_by_a_server_side_dry_run() {
    let client = cluster().await;
    let ns = support::fresh_namespace(&client, "chart-sink").await;
    let sets = [
        "signingKey.existingSecret=delenda-signing-key",
        "evidenceSink.bucket=evidence",
        "evidenceSink.credentialsSecret=sink-keys",
        "evidenceSink.pathStyle=true",
    ];
    let count = accepted_by_the_api_server(&ns, &sets).await;
    assert!(count > 0);
}

/// Where a grant applies: everywhere, or in one namespace.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Scope {
    Cluster,
    Namespace(String),
}

/// One permission: (scope, API group, resource, verb).
type Grant = (Scope, String, String, String);

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence().into_iter().flatten().filter_map(|s| s.as_str()).map(str::to_owned).collect()
}

/// Every permission the rendered bindings give the Deployment's
/// ServiceAccount, with wildcards kept as "*".
fn grants_of(docs: &[Value], release_ns: &str) -> BTreeSet<Grant> {
    let deployment = of_kind(docs, "Deployment").into_iter().next().expect("the chart renders a Deployment");
    let account = text(deployment, &["spec", "template", "spec", "serviceAccountName"]).to_owned();
    assert!(!account.is_empty(), "the Deployment names no serviceAccountName");
    let mut grants = BTreeSet::new();
    for binding in docs.iter().filter(|d| matches!(text(d, &["kind"]), "RoleBinding" | "ClusterRoleBinding")) {
        let binds_us = binding["subjects"].as_sequence().into_iter().flatten().any(|s| {
            text(s, &["kind"]) == "ServiceAccount"
                && text(s, &["name"]) == account
                && text(s, &["namespace"]) == release_ns
        });
        if !binds_us {
            continue;
        }
        let scope = match text(binding, &["kind"]) {
            "ClusterRoleBinding" => Scope::Cluster,
            _ => Scope::Namespace(text(binding, &["metadata", "namespace"]).to_owned()),
        };
        let (role_kind, role_name) = (text(binding, &["roleRef", "kind"]), text(binding, &["roleRef", "name"]));
        let role = docs
            .iter()
            .find(|r| {
                text(r, &["kind"]) == role_kind
                    && text(r, &["metadata", "name"]) == role_name
                    && (role_kind == "ClusterRole"
                        || Scope::Namespace(text(r, &["metadata", "namespace"]).to_owned()) == scope)
            })
            .unwrap_or_else(|| {
                panic!(
                    "{} binds {role_kind} {role_name}, which the chart does not render",
                    text(binding, &["metadata", "name"])
                )
            });
        for rule in role["rules"].as_sequence().into_iter().flatten() {
            for group in strings(&rule["apiGroups"]) {
                for resource in strings(&rule["resources"]) {
                    for verb in strings(&rule["verbs"]) {
                        grants.insert((scope.clone(), group.clone(), resource.clone(), verb));
                    }
                }
            }
        }
    }
    grants
}

fn allows(grants: &BTreeSet<Grant>, scope: &Scope, group: &str, resource: &str, verb: &str) -> bool {
    grants.iter().any(|(s, g, r, v)| {
        (*s == Scope::Cluster || s == scope)
            && (g == group || g == "*")
            && (r == resource || r == "*")
            && (v == verb || v == "*")
    })
}

/// Every call the controller makes, and where it makes it, given the scope
/// it watches and the namespace of its Lease.
fn needed(watched: &Scope, release_ns: &str) -> Vec<(Scope, &'static str, &'static str, &'static str)> {
    let mut needs = Vec::new();
    for resource in ["datastores", "retentionpolicies", "erasurerequests", "holds", "accessrequests"] {
        for verb in ["get", "list", "watch"] {
            needs.push((watched.clone(), "delenda.dev", resource, verb));
        }
    }
    for status in [
        "datastores/status",
        "retentionpolicies/status",
        "erasurerequests/status",
        "holds/status",
        "accessrequests/status",
    ] {
        needs.push((watched.clone(), "delenda.dev", status, "patch"));
    }
    // A Hold's finalizer.
    needs.push((watched.clone(), "delenda.dev", "holds", "patch"));
    for verb in ["get", "list", "watch", "delete"] {
        needs.push((watched.clone(), "", "secrets", verb));
    }
    // The evidence chains: segments are listed by label, created and appended to.
    for verb in ["get", "list", "create", "update"] {
        needs.push((watched.clone(), "", "configmaps", verb));
    }
    for group in ["events.k8s.io", ""] {
        for verb in ["create", "patch"] {
            needs.push((watched.clone(), group, "events", verb));
        }
    }
    for verb in ["get", "list", "watch"] {
        needs.push((Scope::Cluster, "apiextensions.k8s.io", "customresourcedefinitions", verb));
    }
    for verb in ["get", "create", "update", "patch"] {
        needs.push((Scope::Namespace(release_ns.to_owned()), "coordination.k8s.io", "leases", verb));
    }
    needs
}

fn missing_grants(sets: &[&str], watched: &Scope) -> Vec<String> {
    let release_ns = "delenda-system";
    let grants = grants_of(&documents(&render(release_ns, sets)), release_ns);
    needed(watched, release_ns)
        .into_iter()
        .filter(|(scope, group, resource, verb)| !allows(&grants, scope, group, resource, verb))
        .map(|(scope, group, resource, verb)| format!("{verb} {group}/{resource} in {scope:?}"))
        .collect()
}

#[test]
fn rbac_grants_every_call_the_controller_makes_in_every_namespace() {
    let missing = missing_grants(&[], &Scope::Cluster);
    assert!(missing.is_empty(), "the default render does not grant: {missing:#?}");
}

#[test]
fn rbac_grants_every_call_the_controller_makes_in_the_watched_namespace() {
    let missing = missing_grants(&["watchNamespace=apps"], &Scope::Namespace("apps".into()));
    assert!(missing.is_empty(), "the watchNamespace render does not grant: {missing:#?}");
}

#[test]
fn watching_one_namespace_grants_no_secrets_elsewhere() {
    let release_ns = "delenda-system";
    let grants = grants_of(&documents(&render(release_ns, &["watchNamespace=apps"])), release_ns);
    let elsewhere = Scope::Namespace("other".into());
    for verb in ["get", "list", "watch", "delete"] {
        assert!(
            !allows(&grants, &elsewhere, "", "secrets", verb),
            "{verb} secrets is granted outside the watched namespace"
        );
    }
}

#[test]
fn the_controller_runs_locked_down_and_probed() {
    let docs = documents(&render("delenda-system", &[]));
    let deployment = of_kind(&docs, "Deployment")[0];
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], Value::Bool(true));
    assert_eq!(text(pod, &["securityContext", "seccompProfile", "type"]), "RuntimeDefault");
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], Value::Bool(true));
    assert_eq!(container["securityContext"]["allowPrivilegeEscalation"], Value::Bool(false));
    assert_eq!(strings(&container["securityContext"]["capabilities"]["drop"]), ["ALL"]);
    assert_eq!(text(container, &["livenessProbe", "httpGet", "path"]), "/healthz");
    assert_eq!(text(container, &["readinessProbe", "httpGet", "path"]), "/readyz");
    assert_eq!(text(&container["ports"][0], &["name"]), "http");
    assert_eq!(container["ports"][0]["containerPort"], Value::from(8080));
    let env: Vec<String> =
        container["env"].as_sequence().unwrap().iter().map(|e| text(e, &["name"]).to_owned()).collect();
    for name in ["POD_NAME", "POD_NAMESPACE", "DELENDA_HMAC_KEY_FILE", "DELENDA_LOG_FORMAT", "DELENDA_HTTP_ADDR"] {
        assert!(env.iter().any(|e| e == name), "the container lacks {name}: {env:?}");
    }
    assert!(!env.iter().any(|e| e == "DELENDA_NAMESPACE"), "the default render watches one namespace");
    let key = pod["volumes"].as_sequence().unwrap().iter().find(|v| text(v, &["name"]) == "installation-key").unwrap();
    assert_eq!(text(key, &["secret", "secretName"]), "delenda-installation-key");
}

#[test]
fn the_signing_key_and_the_evidence_sink_reach_the_controller() {
    let off = documents(&render("delenda-system", &[]));
    let env_of = |docs: &[Value]| -> Vec<String> {
        let container = &of_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0];
        container["env"].as_sequence().unwrap().iter().map(|e| text(e, &["name"]).to_owned()).collect()
    };
    assert!(!env_of(&off).iter().any(|e| e.starts_with("DELENDA_EVIDENCE_SINK") || e == "DELENDA_SIGNING_KEY_FILE"));
    let sets = [
        "signingKey.existingSecret=delenda-signing-key",
        "evidenceSink.bucket=evidence",
        "evidenceSink.endpoint=https://s3.example.nl",
        "evidenceSink.credentialsSecret=sink-keys",
    ];
    let on = documents(&render("delenda-system", &sets));
    let env = env_of(&on);
    for name in [
        "DELENDA_SIGNING_KEY_FILE",
        "DELENDA_EVIDENCE_SINK_BUCKET",
        "DELENDA_EVIDENCE_SINK_ENDPOINT",
        "DELENDA_EVIDENCE_SINK_RETENTION_DAYS",
        "DELENDA_EVIDENCE_SINK_ACCESS_KEY_ID",
        "DELENDA_EVIDENCE_SINK_SECRET_ACCESS_KEY",
    ] {
        assert!(env.iter().any(|e| e == name), "the container lacks {name}: {env:?}");
    }
    let pod = &of_kind(&on, "Deployment")[0]["spec"]["template"]["spec"];
    let key = pod["volumes"].as_sequence().unwrap().iter().find(|v| text(v, &["name"]) == "signing-key").unwrap();
    assert_eq!(text(key, &["secret", "secretName"]), "delenda-signing-key");
    // A sink without credentials is refused when rendering.
    let out = Command::new(support::setting("HELM", "helm"))
        .args(["template", "delenda"])
        .arg(chart_dir())
        .args(["--set", "evidenceSink.bucket=evidence"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("evidenceSink.credentialsSecret is required"));
}

#[test]
fn the_access_export_destination_reaches_the_controller() {
    let env_of = |docs: &[Value]| -> Vec<(String, String)> {
        let container = &of_kind(docs, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0];
        container["env"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|e| (text(e, &["name"]).to_owned(), e["value"].as_str().unwrap_or_default().to_owned()))
            .collect()
    };
    let off = documents(&render("delenda-system", &[]));
    assert!(!env_of(&off).iter().any(|(e, _)| e.starts_with("DELENDA_ACCESS_EXPORT")), "no bucket, no destination");
    let sets = [
        "accessExport.bucket=exports",
        "accessExport.endpoint=https://s3.example.nl",
        "accessExport.credentialsSecret=export-keys",
        "accessExport.ttlDays=14",
        "maxExportRecords=5000",
    ];
    let on = documents(&render("delenda-system", &sets));
    let env = env_of(&on);
    for (name, value) in [
        ("DELENDA_ACCESS_EXPORT_BUCKET", "exports"),
        ("DELENDA_ACCESS_EXPORT_ENDPOINT", "https://s3.example.nl"),
        ("DELENDA_ACCESS_EXPORT_PREFIX", "access-exports/"),
        ("DELENDA_ACCESS_EXPORT_TTL_DAYS", "14"),
        ("DELENDA_ACCESS_EXPORT_ACCESS_KEY_ID", ""),
        ("DELENDA_ACCESS_EXPORT_SECRET_ACCESS_KEY", ""),
    ] {
        assert!(env.iter().any(|(e, v)| e == name && v == value), "the container lacks {name}={value}: {env:?}");
    }
    let container = &of_kind(&on, "Deployment")[0]["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<&str> = container["args"].as_sequence().unwrap().iter().filter_map(|a| a.as_str()).collect();
    assert!(args.contains(&"--max-export-records=5000"), "{args:?}");
    // A destination without credentials is refused when rendering.
    let out = Command::new(support::setting("HELM", "helm"))
        .args(["template", "delenda"])
        .arg(chart_dir())
        .args(["--set", "accessExport.bucket=exports"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("accessExport.credentialsSecret is required"));
}

#[test]
fn a_service_monitor_is_rendered_only_when_enabled() {
    let off = documents(&render("delenda-system", &[]));
    assert!(of_kind(&off, "ServiceMonitor").is_empty(), "a ServiceMonitor is rendered by default");
    let on = documents(&render("delenda-system", &["serviceMonitor.enabled=true"]));
    let monitor = of_kind(&on, "ServiceMonitor");
    assert_eq!(monitor.len(), 1, "serviceMonitor.enabled=true renders no ServiceMonitor");
    assert_eq!(text(&monitor[0]["spec"]["endpoints"][0], &["path"]), "/metrics");
}
