//! The test node from `tests/env/up node` is Ready and runs a pod: the
//! kubelet, containerd and runc, the CNI bridge, the scheduler and the
//! controller-manager (the pod's ServiceAccount and its token) all work.
mod support;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::{LogParams, PostParams};
use support::{eventually, manifest};

#[tokio::test]
async fn the_node_is_ready_and_runs_a_pod() {
    let client = support::kube_client().await;
    let node_name = support::setting("DELENDA_TEST_NODE", "the test node");
    let nodes: Api<Node> = Api::all(client.clone());
    let node = support::reach(nodes.get(&node_name).await, "the test node");
    let status = node.status.unwrap_or_default();
    let ready =
        status.conditions.unwrap_or_default().into_iter().find(|c| c.type_ == "Ready").expect("a Ready condition");
    let info = status.node_info.expect("node info");
    println!(
        "node {node_name}: Ready={} ({}), kubelet {}, {}, {}",
        ready.status,
        ready.reason.as_deref().unwrap_or(""),
        info.kubelet_version,
        info.container_runtime_version,
        info.os_image
    );
    assert_eq!(ready.status, "True", "{ready:?}");

    let ns = support::fresh_namespace(&client, "smoke-node").await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let image = support::setting("DELENDA_TEST_BUSYBOX_IMAGE", "the test node");
    // Not on the host network: an address from the node's bridge, the
    // ServiceAccount token mounted by the admission plugin.
    let pod: Pod = manifest(serde_json::json!({
        "metadata": {"name": "hello"},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{
                "name": "hello", "image": image, "imagePullPolicy": "Never",
                "command": ["sh", "-c", "echo hello from $(hostname) as $(id -u); ls /var/run/secrets/kubernetes.io/serviceaccount/token"],
                "securityContext": {"runAsUser": 65532, "runAsNonRoot": true, "allowPrivilegeEscalation": false,
                    "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]}}
            }]
        }
    }));
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let done = eventually("the pod to finish", 120, async || {
        let pod = pods.get("hello").await.ok()?;
        let phase = pod.status.as_ref()?.phase.clone()?;
        matches!(phase.as_str(), "Succeeded" | "Failed").then_some(pod)
    })
    .await;
    let status = done.status.unwrap();
    let logs = pods.logs("hello", &LogParams::default()).await.unwrap();
    println!("pod hello ({}) on {}: {}", status.pod_ip.as_deref().unwrap_or("no IP"), node_name, logs.trim());
    assert_eq!(status.phase.as_deref(), Some("Succeeded"), "{status:?}");
    assert!(logs.starts_with("hello from hello as 65532"), "{logs}");
    assert!(logs.contains("/var/run/secrets/kubernetes.io/serviceaccount/token"), "{logs}");
}
