//! The chart's conventions, those of the best operator charts (cert-manager,
//! CloudNativePG): a values schema, a PodDisruptionBudget, a PodMonitor
//! beside the ServiceMonitor, the image by digest, extra arguments,
//! topology spread, an opt-in NetworkPolicy, the delenda.dev kinds in the
//! built-in view, edit and admin roles and a role for filing
//! ErasureRequests, and an optional installation key. Rendered by helm and,
//! with every option on, judged by the test API server.
mod support;

use serde::Deserialize;
use serde_yaml::Value;
use support::node::{chart_dir, helm, kubectl};

fn render(sets: &[&str]) -> Result<Vec<Value>, String> {
    let chart = chart_dir();
    let mut args = vec!["template", "delenda", chart.to_str().unwrap(), "--namespace", "delenda-system"];
    args.extend(["--kube-version", "1.34.0"]);
    for set in sets {
        args.extend(["--set", set]);
    }
    let out = helm(&args)?;
    Ok(serde_yaml::Deserializer::from_str(&out)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect())
}

fn rendered(sets: &[&str]) -> Vec<Value> {
    render(sets).unwrap_or_else(|e| panic!("helm template {sets:?}: {e}"))
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"].as_str() == Some(kind)).collect()
}

fn named<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    of_kind(docs, kind)
        .into_iter()
        .find(|d| d["metadata"]["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn pod(docs: &[Value]) -> Value {
    of_kind(docs, "Deployment")[0]["spec"]["template"]["spec"].clone()
}

fn selector_labels() -> Value {
    serde_yaml::from_str("app.kubernetes.io/name: delenda\napp.kubernetes.io/instance: delenda").unwrap()
}

#[test]
fn the_values_schema_refuses_mistyped_and_unknown_values() {
    for (set, says) in [
        ("logFormat=xml", "logFormat"),
        ("replicas=2", "replicas"),
        ("image.digest=latest", "digest"),
        ("service.port=99999", "port"),
        ("hostNetwork=yes", "hostNetwork"),
    ] {
        let err = render(&[set]).expect_err(&format!("{set} must be refused"));
        assert!(err.contains("values don't meet the specifications of the schema"), "{set}: {err}");
        assert!(err.contains(says), "{set}: {err}");
    }
}

#[test]
fn a_pod_disruption_budget_keeps_one_pod_when_asked() {
    assert!(
        of_kind(&rendered(&[]), "PodDisruptionBudget").is_empty(),
        "off by default: one replica could never be drained"
    );
    let docs = rendered(&["replicaCount=2", "podDisruptionBudget.enabled=true"]);
    let pdb = of_kind(&docs, "PodDisruptionBudget")[0];
    assert_eq!(pdb["spec"]["minAvailable"], Value::from(1));
    assert_eq!(pdb["spec"]["selector"]["matchLabels"], selector_labels());
    let docs = rendered(&["podDisruptionBudget.enabled=true", "podDisruptionBudget.maxUnavailable=1"]);
    let pdb = of_kind(&docs, "PodDisruptionBudget")[0];
    assert_eq!(pdb["spec"]["maxUnavailable"], Value::from(1));
    assert!(pdb["spec"]["minAvailable"].is_null());
}

#[test]
fn a_pod_monitor_scrapes_the_pods_when_enabled() {
    assert!(of_kind(&rendered(&[]), "PodMonitor").is_empty());
    let docs = rendered(&["podMonitor.enabled=true", "podMonitor.labels.release=prometheus"]);
    let monitor = of_kind(&docs, "PodMonitor")[0];
    assert_eq!(monitor["metadata"]["labels"]["release"], "prometheus");
    assert_eq!(monitor["spec"]["selector"]["matchLabels"], selector_labels());
    assert_eq!(monitor["spec"]["podMetricsEndpoints"][0]["port"], "http");
    assert_eq!(monitor["spec"]["podMetricsEndpoints"][0]["path"], "/metrics");
}

#[test]
fn the_monitors_keep_the_object_metrics_own_namespace_label() {
    let docs = rendered(&["serviceMonitor.enabled=true", "podMonitor.enabled=true"]);
    assert_eq!(of_kind(&docs, "ServiceMonitor")[0]["spec"]["endpoints"][0]["honorLabels"], true);
    assert_eq!(of_kind(&docs, "PodMonitor")[0]["spec"]["podMetricsEndpoints"][0]["honorLabels"], true);
}

#[test]
fn a_prometheus_rule_carries_the_alerts_when_enabled() {
    assert!(of_kind(&rendered(&[]), "PrometheusRule").is_empty());
    let docs = rendered(&[
        "prometheusRule.enabled=true",
        "prometheusRule.labels.release=prometheus",
        "prometheusRule.alertLabels.team=privacy",
        "prometheusRule.runbookBaseUrl=https://wiki.example.org/delenda",
    ]);
    let rule = of_kind(&docs, "PrometheusRule")[0];
    assert_eq!(rule["metadata"]["namespace"], "delenda-system");
    assert_eq!(rule["metadata"]["labels"]["release"], "prometheus");
    let rules = rule["spec"]["groups"][0]["rules"].as_sequence().unwrap();
    assert_eq!(rules.len(), 7);
    for r in rules {
        let name = r["alert"].as_str().unwrap();
        assert_eq!(r["labels"]["team"], "privacy", "{name}");
        assert_eq!(
            r["annotations"]["runbook_url"],
            Value::from(format!("https://wiki.example.org/delenda#{}", name.to_lowercase())),
            "{name}"
        );
    }
    let no_leader = rules.iter().find(|r| r["alert"] == "DelendaNoLeader").unwrap();
    assert!(no_leader["expr"].as_str().unwrap().contains(r#"delenda_leader{namespace="delenda-system"}"#));
    let err = render(&["prometheusRule.runbookBaseUrl=docs/alerts.md"]).expect_err("a runbook base that is no URL");
    assert!(err.contains("runbookBaseUrl"), "{err}");
}

#[test]
fn the_grafana_dashboard_ships_as_a_configmap_when_enabled() {
    let shipped = |docs: &[Value]| {
        of_kind(docs, "ConfigMap").into_iter().find(|c| c["metadata"]["name"] == "delenda-dashboard").cloned()
    };
    assert!(shipped(&rendered(&[])).is_none());
    let docs = rendered(&["grafanaDashboard.enabled=true", "grafanaDashboard.namespace=monitoring"]);
    let map = shipped(&docs).expect("grafanaDashboard.enabled=true renders the dashboard's ConfigMap");
    assert_eq!(map["metadata"]["namespace"], "monitoring");
    assert_eq!(map["metadata"]["labels"]["grafana_dashboard"], "1");
    let json: serde_json::Value = serde_json::from_str(map["data"]["delenda.json"].as_str().unwrap()).unwrap();
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(chart_dir().join("dashboards/delenda.json")).unwrap()).unwrap();
    assert_eq!(json, file, "the ConfigMap holds the dashboard file as it is");
    assert_eq!(json["uid"], "delenda");
}

#[test]
fn the_image_is_pinned_by_digest_when_one_is_given() {
    let digest = format!("sha256:{}", "ab".repeat(32));
    assert_eq!(pod(&rendered(&[]))["containers"][0]["image"], "ghcr.io/delenda-dev/delenda:0.1.0");
    let pinned = pod(&rendered(&[&format!("image.digest={digest}")]));
    assert_eq!(pinned["containers"][0]["image"], Value::from(format!("ghcr.io/delenda-dev/delenda:0.1.0@{digest}")));
}

#[test]
fn extra_args_follow_the_controller_command() {
    assert_eq!(pod(&rendered(&[]))["containers"][0]["args"], serde_yaml::from_str::<Value>("[controller]").unwrap());
    let with = pod(&rendered(&["extraArgs[0]=--erasure-retry-seconds=120"]));
    assert_eq!(
        with["containers"][0]["args"],
        serde_yaml::from_str::<Value>("[controller, --erasure-retry-seconds=120]").unwrap()
    );
}

#[test]
fn allowed_roots_and_limits_become_the_controllers_flags() {
    let args = |sets: &[&str]| pod(&rendered(sets))["containers"][0]["args"].clone();
    assert_eq!(
        args(&[]),
        serde_yaml::from_str::<Value>("[controller]").unwrap(),
        "no local paths, the operator's own limits"
    );
    assert_eq!(
        args(&["allowedRoots[0]=/data", "allowedRoots[1]=/srv/sqlite", "maxConcurrentRuns=2", "maxErasureRecords=1000000"]),
        serde_yaml::from_str::<Value>(
            "[controller, --allowed-root=/data, --allowed-root=/srv/sqlite, --max-concurrent-runs=2, --max-erasure-records=1000000]"
        )
        .unwrap()
    );
    for (set, says) in [
        ("allowedRoots[0]=data", "allowedRoots"),
        ("maxConcurrentRuns=0", "maxConcurrentRuns"),
        ("maxErasureRecords=-1", "maxErasureRecords"),
    ] {
        let err = render(&[set]).expect_err(&format!("{set} must be refused"));
        assert!(err.contains(says), "{set}: {err}");
    }
}

#[test]
fn topology_spread_constraints_select_the_releases_pods() {
    assert!(pod(&rendered(&[])).get("topologySpreadConstraints").is_none());
    let spread = pod(&rendered(&[
        "topologySpreadConstraints[0].maxSkew=1",
        "topologySpreadConstraints[0].topologyKey=topology.kubernetes.io/zone",
        "topologySpreadConstraints[0].whenUnsatisfiable=ScheduleAnyway",
    ]));
    let c = &spread["topologySpreadConstraints"][0];
    assert_eq!(c["topologyKey"], "topology.kubernetes.io/zone");
    assert_eq!(c["labelSelector"]["matchLabels"], selector_labels());
}

#[test]
fn the_network_policy_is_opt_in_and_opens_only_the_http_port() {
    assert!(of_kind(&rendered(&[]), "NetworkPolicy").is_empty());
    let docs = rendered(&[
        "networkPolicy.enabled=true",
        "networkPolicy.metricsFrom[0].namespaceSelector.matchLabels.name=monitoring",
    ]);
    let policy = of_kind(&docs, "NetworkPolicy")[0];
    assert_eq!(policy["spec"]["podSelector"]["matchLabels"], selector_labels());
    assert_eq!(policy["spec"]["policyTypes"], serde_yaml::from_str::<Value>("[Ingress, Egress]").unwrap());
    let ingress = &policy["spec"]["ingress"];
    assert_eq!(ingress.as_sequence().unwrap().len(), 1);
    assert_eq!(ingress[0]["ports"], serde_yaml::from_str::<Value>("[{port: http, protocol: TCP}]").unwrap());
    assert_eq!(ingress[0]["from"][0]["namespaceSelector"]["matchLabels"]["name"], "monitoring");
    assert_eq!(
        policy["spec"]["egress"],
        serde_yaml::from_str::<Value>("[{}]").unwrap(),
        "every store a DataStore names"
    );
}

fn rules(role: &Value) -> Vec<(String, String, String)> {
    let mut all = Vec::new();
    for rule in role["rules"].as_sequence().unwrap() {
        let list =
            |k: &str| rule[k].as_sequence().unwrap().iter().map(|v| v.as_str().unwrap().to_owned()).collect::<Vec<_>>();
        for g in list("apiGroups") {
            for r in list("resources") {
                for v in list("verbs") {
                    all.push((g.clone(), r.clone(), v));
                }
            }
        }
    }
    all
}

fn grants(role: &Value, group: &str, resource: &str, verb: &str) -> bool {
    rules(role).iter().any(|(g, r, v)| g == group && r == resource && v == verb)
}

#[test]
fn namespace_users_get_the_kinds_through_view_edit_admin_and_a_filer_role() {
    let docs = rendered(&[]);
    let label = |role: &Value, to: &str| {
        role["metadata"]["labels"][format!("rbac.authorization.k8s.io/aggregate-to-{to}").as_str()] == "true"
    };
    let view = named(&docs, "ClusterRole", "delenda-view");
    assert!(label(view, "view") && label(view, "edit") && label(view, "admin"));
    for kind in ["datastores", "retentionpolicies", "erasurerequests", "holds", "accessrequests"] {
        assert!(grants(view, "delenda.dev", kind, "list"), "view lists {kind}");
    }
    assert!(rules(view).iter().all(|(_, _, v)| ["get", "list", "watch"].contains(&v.as_str())), "view only reads");
    let edit = named(&docs, "ClusterRole", "delenda-edit");
    assert!(!label(edit, "view") && label(edit, "edit") && label(edit, "admin"));
    assert!(
        grants(edit, "delenda.dev", "retentionpolicies", "create")
            && grants(edit, "delenda.dev", "datastores", "delete")
    );
    assert!(!rules(edit).iter().any(|(_, r, _)| r == "erasurerequests"), "filing an erasure is not editing");
    assert!(!rules(edit).iter().any(|(_, r, _)| r.ends_with("/status")), "status is the operator's");
    let filer = named(&docs, "ClusterRole", "delenda-erasure-filer");
    assert!(label(filer, "admin") && !label(filer, "edit"));
    assert!(grants(filer, "delenda.dev", "erasurerequests", "create"));
    assert!(grants(filer, "delenda.dev", "accessrequests", "create"), "the privacy office files access requests");
    assert!(!rules(edit).iter().any(|(_, r, _)| r == "accessrequests"), "filing an access request is not editing");
    assert!(!grants(filer, "delenda.dev", "accessrequests", "delete"), "a filed request stays on record");
    assert!(grants(filer, "delenda.dev", "holds", "create") && grants(filer, "delenda.dev", "holds", "delete"));
    assert!(!rules(edit).iter().any(|(_, r, _)| r == "holds"), "placing a hold is not editing");
    assert!(grants(filer, "", "secrets", "create"), "the identities' Secret");
    assert!(!grants(filer, "", "secrets", "get") && !grants(filer, "", "secrets", "list"), "but no Secret can be read");
    assert!(!grants(filer, "delenda.dev", "erasurerequests", "delete"), "a filed request stays on record");

    let off = rendered(&["rbac.aggregateToDefaultRoles=false", "rbac.erasureFilerRole=false"]);
    for name in ["delenda-view", "delenda-edit", "delenda-erasure-filer"] {
        assert!(
            !of_kind(&off, "ClusterRole").iter().any(|r| r["metadata"]["name"] == name),
            "{name} rendered when off"
        );
    }
}

#[test]
fn the_installation_key_is_an_optional_volume() {
    let spec = pod(&rendered(&[]));
    let key = spec["volumes"].as_sequence().unwrap().iter().find(|v| v["name"] == "installation-key").unwrap();
    assert_eq!(key["secret"]["optional"], Value::Bool(true), "pods start without it; the operator waits");
    let none = pod(&rendered(&["installationKey.existingSecret="]));
    assert!(!none["volumes"].as_sequence().unwrap().iter().any(|v| v["name"] == "installation-key"));
    let env = none["containers"][0]["env"].as_sequence().unwrap();
    assert!(!env.iter().any(|e| e["name"] == "DELENDA_HMAC_KEY_FILE"));
}

#[test]
fn host_network_is_only_for_nodes_whose_stores_listen_on_the_node() {
    assert!(pod(&rendered(&[])).get("hostNetwork").is_none());
    let on = pod(&rendered(&["hostNetwork=true"]));
    assert_eq!(on["hostNetwork"], Value::Bool(true));
    assert_eq!(on["dnsPolicy"], "ClusterFirstWithHostNet");
    // A new pod cannot start beside the old one on the same host port: an
    // upgrade replaces them one at a time (found by helm upgrade on the node).
    let deployment = |sets: &[&str]| of_kind(&rendered(sets), "Deployment")[0]["spec"].clone();
    assert!(deployment(&[]).get("strategy").is_none(), "the default rolling update elsewhere");
    // One replica: Recreate, so `helm --wait` waits for the new pod (a
    // rolling update with one of one unavailable counts as ready at once:
    // found by the in-cluster test under load).
    let strategy = &deployment(&["hostNetwork=true"])["strategy"];
    assert_eq!(strategy["type"], "Recreate", "{strategy:?}");
    let strategy = &deployment(&["hostNetwork=true", "replicaCount=2"])["strategy"];
    assert_eq!(strategy["rollingUpdate"]["maxSurge"], Value::from(0));
    assert_eq!(strategy["rollingUpdate"]["maxUnavailable"], Value::from(1));
}

#[tokio::test]
async fn a_render_with_every_option_is_accepted_by_the_api_server() {
    let client = support::kube_client().await;
    support::install_crds(&client).await;
    let ns = support::fresh_namespace(&client, "chart-all").await;
    let chart = chart_dir();
    let digest = format!("image.digest=sha256:{}", "cd".repeat(32));
    let mut args =
        vec!["template", "delenda-all", chart.to_str().unwrap(), "--namespace", &ns, "--kube-version", "1.34.0"];
    // The monitors and the PrometheusRule need the Prometheus Operator's
    // CRDs, which the test cluster does not have; their renders are checked
    // above (and the rules by promtool in tests/alerts.rs).
    for set in [
        "replicaCount=2",
        "podDisruptionBudget.enabled=true",
        "networkPolicy.enabled=true",
        digest.as_str(),
        "extraArgs[0]=--erasure-retry-seconds=120",
        "topologySpreadConstraints[0].maxSkew=1",
        "topologySpreadConstraints[0].topologyKey=kubernetes.io/hostname",
        "topologySpreadConstraints[0].whenUnsatisfiable=ScheduleAnyway",
        "hostNetwork=true",
        "allowedRoots[0]=/data",
        "maxConcurrentRuns=2",
        "maxErasureRecords=500",
        "grafanaDashboard.enabled=true",
    ] {
        args.extend(["--set", set]);
    }
    let rendered = helm(&args).unwrap();
    let out = kubectl(
        &["apply", "--server-side", "--dry-run=server", "--field-manager", "delenda-tests", "-f", "-"],
        Some(&rendered),
    )
    .unwrap_or_else(|e| panic!("the API server refused the render with every option:\n{e}"));
    for kind in [
        "poddisruptionbudget",
        "networkpolicy",
        "deployment",
        "clusterrole.rbac.authorization.k8s.io/delenda-all-erasure-filer",
        "configmap/delenda-all-dashboard",
    ] {
        assert!(out.contains(kind), "{kind} not applied:\n{out}");
    }
}
