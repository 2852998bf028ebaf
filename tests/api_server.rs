//! The CRDs judged by the real API server: they install and become
//! Established, every field is documented, every example is accepted, every
//! manifest in tests/invalid-manifests.yaml is rejected with the expected
//! explanation, and an ErasureRequest's spec cannot be changed.
mod support;

use std::path::Path;

use delenda::api::{DataStore, ErasureRequest, RetentionPolicy};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps, JSONSchemaPropsOrArray,
};
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::{Api, Client, Resource};
use serde::Deserialize;
use tokio::sync::OnceCell;

const MANAGER: &str = "delenda-tests";

/// Installs the CRDs once per test binary.
async fn cluster() -> Client {
    static INSTALLED: OnceCell<()> = OnceCell::const_new();
    let client = support::kube_client().await;
    INSTALLED.get_or_init(|| support::install_crds(&client)).await;
    client
}

fn resource_for(kind: &str) -> ApiResource {
    match kind {
        "DataStore" => ApiResource::erase::<DataStore>(&()),
        "RetentionPolicy" => ApiResource::erase::<RetentionPolicy>(&()),
        "ErasureRequest" => ApiResource::erase::<ErasureRequest>(&()),
        "Hold" => ApiResource::erase::<delenda::api::Hold>(&()),
        "AccessRequest" => ApiResource::erase::<delenda::api::AccessRequest>(&()),
        "Secret" => ApiResource::erase::<Secret>(&()),
        other => panic!("no test mapping for kind {other}"),
    }
}

/// Submits one manifest with a server-side dry run in `ns`.
async fn dry_run_create(client: &Client, ns: &str, manifest: &serde_json::Value) -> Result<(), kube::Error> {
    let mut obj: DynamicObject = serde_json::from_value(manifest.clone()).expect("manifest is an object");
    obj.metadata.namespace = None;
    let kind = obj.types.as_ref().expect("manifest has apiVersion and kind").kind.clone();
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource_for(&kind));
    let params = PostParams { dry_run: true, field_manager: Some(MANAGER.into()) };
    api.create(&params, &obj).await.map(|_| ())
}

#[tokio::test]
async fn crds_become_established_and_are_served() {
    let client = cluster().await;
    let api: Api<CustomResourceDefinition> = Api::all(client);
    for crd in delenda::api::crds() {
        let served = api.get(crd.metadata.name.as_deref().unwrap()).await.unwrap();
        let established = served
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .into_iter()
            .any(|c| c.type_ == "Established" && c.status == "True");
        assert!(established, "{} is not Established", crd.metadata.name.unwrap());
    }
}

/// Every field, at every depth, carries a description: that is what
/// `kubectl explain` shows.
#[tokio::test]
async fn every_field_has_a_description() {
    fn undocumented(path: &str, schema: &JSONSchemaProps, out: &mut Vec<String>) {
        for (name, prop) in schema.properties.iter().flatten() {
            let here = format!("{path}.{name}");
            let inherited = matches!(name.as_str(), "apiVersion" | "kind" | "metadata");
            if !inherited && prop.description.as_deref().unwrap_or("").trim().is_empty() {
                out.push(here.clone());
            }
            undocumented(&here, prop, out);
        }
        if let Some(JSONSchemaPropsOrArray::Schema(items)) = &schema.items {
            undocumented(&format!("{path}[]"), items, out);
        }
    }
    let client = cluster().await;
    let api: Api<CustomResourceDefinition> = Api::all(client);
    let mut missing = Vec::new();
    for crd in delenda::api::crds() {
        let served = api.get(crd.metadata.name.as_deref().unwrap()).await.unwrap();
        for version in served.spec.versions {
            let schema = version.schema.unwrap().open_api_v3_schema.unwrap();
            undocumented(&served.spec.names.kind, &schema, &mut missing);
        }
    }
    assert!(missing.is_empty(), "fields without a description: {missing:#?}");
}

#[tokio::test]
async fn kubectl_explain_describes_the_fields() {
    cluster().await;
    let kubeconfig = support::setting("KUBECONFIG", "kube-apiserver");
    for (field, expected) in [
        ("retentionpolicies.spec.retention.period", "calendar"),
        ("retentionpolicies.spec.targets.table.timeColumn", "NULL are never due"),
        ("erasurerequests.spec.receivedAt", "one calendar month"),
        ("datastores.spec.postgres.credentialsSecret", "username"),
        ("holds.spec.reason", "Art18AccuracyContested: GDPR Art."),
        ("holds.spec.endsAt", "until deleted"),
    ] {
        let out = std::process::Command::new("kubectl")
            .args(["--kubeconfig", &kubeconfig, "explain", field])
            .output()
            .expect("kubectl runs");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "kubectl explain {field}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(text.contains(expected), "kubectl explain {field} lacks {expected:?}:\n{text}");
    }
}

#[tokio::test]
async fn every_example_is_accepted_by_a_server_side_dry_run() {
    let client = cluster().await;
    let ns = support::fresh_namespace(&client, "examples").await;
    let files = support::example_files();
    assert!(!files.is_empty(), "no examples found");
    let mut count = 0;
    for file in files {
        for doc in support::yaml_documents(&file) {
            let name = format!("{} {}", doc["kind"].as_str().unwrap_or("?"), doc["metadata"]["name"]);
            if let Err(e) = dry_run_create(&client, &ns, &doc).await {
                panic!("{} ({name}) was rejected: {e}", file.display());
            }
            count += 1;
        }
    }
    println!("{count} example manifests accepted by kube-apiserver");
    assert!(count >= 20, "expected the MvS-IT examples, found only {count} manifests");
}

/// One row of tests/invalid-manifests.yaml.
#[derive(Deserialize)]
struct InvalidCase {
    /// Why the manifest is wrong.
    why: String,
    /// A substring the API server's message must contain.
    expect: String,
    manifest: serde_json::Value,
}

#[tokio::test]
async fn invalid_manifests_are_rejected_with_an_explanation() {
    let client = cluster().await;
    let ns = support::fresh_namespace(&client, "invalid").await;
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/invalid-manifests.yaml");
    let cases: Vec<InvalidCase> = serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert!(cases.len() >= 30, "the table holds {} cases, fewer than 30", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        match dry_run_create(&client, &ns, &case.manifest).await {
            Ok(()) => failures.push(format!("ACCEPTED but {}", case.why)),
            Err(kube::Error::Api(status)) if status.message.contains(&case.expect) => {}
            Err(e) => failures.push(format!("{}: rejected without {:?}: {e}", case.why, case.expect)),
        }
    }
    println!("{} invalid manifests rejected with the expected explanation", cases.len() - failures.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test]
async fn an_access_requests_spec_cannot_be_changed() {
    let client = cluster().await;
    let ns = support::fresh_namespace(&client, "immutable").await;
    let api: Api<delenda::api::AccessRequest> = Api::namespaced(client, &ns);
    let request: delenda::api::AccessRequest = serde_json::from_value(serde_json::json!({
        "apiVersion": "delenda.dev/v1alpha1",
        "kind": "AccessRequest",
        "metadata": { "name": "subject-1" },
        "spec": {
            "identitySecretRef": { "name": "subject-1-identities" },
            "receivedAt": "2026-11-02T09:30:00Z",
            "identityVerification": { "verifiedBy": "privacy-office", "method": "IdentityDocument" }
        }
    }))
    .unwrap();
    api.create(&PostParams::default(), &request).await.expect("a valid request is accepted");
    let patch = serde_json::json!({ "spec": { "maxRecords": 5 } });
    let err = api
        .patch("subject-1", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect_err("changing the spec must be rejected");
    assert!(err.to_string().contains("the spec of an AccessRequest cannot be changed once filed"), "{err}");
    let kept = api.get("subject-1").await.unwrap();
    assert_eq!(kept.spec.max_records, None);
}

#[tokio::test]
async fn an_erasure_requests_spec_cannot_be_changed() {
    let client = cluster().await;
    let ns = support::fresh_namespace(&client, "immutable").await;
    let api: Api<ErasureRequest> = Api::namespaced(client, &ns);
    let request: ErasureRequest = serde_json::from_value(serde_json::json!({
        "apiVersion": "delenda.dev/v1alpha1",
        "kind": "ErasureRequest",
        "metadata": { "name": "subject-1" },
        "spec": {
            "identitySecretRef": { "name": "subject-1-identities" },
            "ground": "ConsentWithdrawn",
            "receivedAt": "2026-11-02T09:30:00Z",
            "identityVerification": { "verifiedBy": "privacy-office", "method": "IdentityDocument" }
        }
    }))
    .unwrap();
    api.create(&PostParams::default(), &request).await.expect("a valid request is accepted");
    let patch = serde_json::json!({ "spec": { "ground": "Objection" } });
    let err = api
        .patch("subject-1", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect_err("changing the spec must be rejected");
    assert!(err.to_string().contains("cannot be changed once filed"), "{err}");
    // Metadata stays editable: labels are how a privacy office files requests.
    let labels = serde_json::json!({ "metadata": { "labels": { "ticket": "priv-123" } } });
    api.patch("subject-1", &PatchParams::default(), &Patch::Merge(&labels)).await.expect("labels can change");
    let kept = api.get("subject-1").await.unwrap();
    assert_eq!(kept.spec.ground, delenda::api::erasure::ErasureGround::ConsentWithdrawn);
    assert_eq!(kept.meta().labels.as_ref().unwrap()["ticket"], "priv-123");
}

#[tokio::test]
async fn a_holds_subject_cannot_be_changed_but_its_end_can() {
    let client = cluster().await;
    let ns = support::fresh_namespace(&client, "hold-immutable").await;
    let api: Api<delenda::api::Hold> = Api::namespaced(client, &ns);
    let hold: delenda::api::Hold = serde_json::from_value(serde_json::json!({
        "apiVersion": "delenda.dev/v1alpha1",
        "kind": "Hold",
        "metadata": { "name": "dispute" },
        "spec": {
            "identitySecretRef": { "name": "customer-identities" },
            "reason": "Art18ObjectionPending",
            "placedBy": "privacy-office"
        }
    }))
    .unwrap();
    api.create(&PostParams::default(), &hold).await.expect("a valid hold is accepted");
    let patch = serde_json::json!({ "spec": { "identitySecretRef": { "name": "someone-else" } } });
    let err = api
        .patch("dispute", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect_err("changing the subject must be rejected");
    assert!(err.to_string().contains("the subject of a hold cannot be changed"), "{err}");
    let end = serde_json::json!({ "spec": { "endsAt": "2027-01-01T00:00:00Z" } });
    api.patch("dispute", &PatchParams::default(), &Patch::Merge(&end)).await.expect("the end can be set");
    let kept = api.get("dispute").await.unwrap();
    assert_eq!(kept.spec.identity_secret_ref.unwrap().name, "customer-identities");
}
