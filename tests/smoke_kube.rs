//! The real kube-apiserver from `tests/env/up` answers kube's client.
mod support;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::{DeleteParams, PostParams};

#[tokio::test]
async fn creates_and_reads_a_config_map() {
    let client = support::kube_client().await;
    let version = support::reach(client.apiserver_version().await, "kube-apiserver");
    println!("reached kube-apiserver {} at {}", version.git_version, client.default_namespace());
    assert!(version.git_version.starts_with("v1."), "apiserver reports {}", version.git_version);

    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let name = support::unique("smoke");
    let cm: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": { "name": name },
        "data": { "retention": "6 months" }
    }))
    .unwrap();
    api.create(&PostParams::default(), &cm).await.expect("create ConfigMap");
    let read = api.get(&name).await.expect("read ConfigMap back");
    assert_eq!(read.data.unwrap()["retention"], "6 months");
    api.delete(&name, &DeleteParams::default()).await.expect("delete ConfigMap");
    assert!(api.get_opt(&name).await.unwrap().is_none());
}
