//! The API: the custom resources DataStore, RetentionPolicy and
//! ErasureRequest (group `delenda.dev`, version `v1alpha1`), their validation
//! and the calendar-aware retention period.
//!
//! Everything the API server can check is in the schema (types, enums,
//! patterns, CEL rules); what it cannot (cron syntax, time zone names,
//! references between objects) is checked by [`validate`] and reported by
//! the operator as a condition and an Event.

// kube's derive repeats `printcolumn(...)` by design; clippy reads the
// repetition as a mistake.
#![allow(clippy::duplicated_attributes)]

pub mod account;
pub mod calendar;
pub mod common;
pub mod datastore;
pub mod erasure;
pub mod hold;
pub mod names;
pub mod period;
pub mod policy;
pub mod validate;

pub use common::{DataStoreReference, Mode, PreciseTime, SecretReference};
pub use datastore::{DataStore, DataStoreSpec, DataStoreStatus};
pub use erasure::{ErasureRequest, ErasureRequestSpec, ErasureRequestStatus};
pub use hold::{Hold, HoldSpec, HoldStatus};
pub use names::{BucketName, Category, FieldName, IdentityName, IndexPattern, NameError, SqlIdentifier, TableName};
pub use period::{PeriodError, RetentionPeriod};
pub use policy::{RetentionPolicy, RetentionPolicySpec, RetentionPolicyStatus};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// The CustomResourceDefinitions of every kind, in a stable order.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![DataStore::crd(), RetentionPolicy::crd(), ErasureRequest::crd(), Hold::crd()]
}

/// JSON schemas of every kind and version, for validators that read
/// manifests offline (kubeconform, kubeval, editors): the CRDs' OpenAPI
/// schemas with `additionalProperties: false` on every object that lists
/// its properties, as the API server prunes and `kubectl` refuses unknown
/// fields. Each is named `{group}/{kind}_{version}.json` (kind in lower
/// case), the layout kubeconform's `-schema-location
/// '{{.Group}}/{{.ResourceKind}}_{{.ResourceAPIVersion}}.json'` reads, and
/// is committed in `schemas/`. CEL rules (`x-kubernetes-validations`) ride
/// along but are not JSON Schema: only the API server and `delenda lint`
/// evaluate them.
pub fn json_schemas() -> Vec<(String, String)> {
    fn close(schema: &mut serde_json::Value) {
        match schema {
            serde_json::Value::Object(map) => {
                if map.contains_key("properties") && !map.contains_key("additionalProperties") {
                    map.insert("additionalProperties".into(), serde_json::Value::Bool(false));
                }
                for (key, value) in map.iter_mut() {
                    // `properties` maps names to schemas; a field named like a keyword is still a schema.
                    if key == "properties" {
                        if let serde_json::Value::Object(fields) = value {
                            fields.values_mut().for_each(close);
                        }
                    } else {
                        close(value);
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(close),
            _ => {}
        }
    }
    let mut out = Vec::new();
    for crd in crds() {
        for version in &crd.spec.versions {
            let Some(schema) = version.schema.as_ref().and_then(|s| s.open_api_v3_schema.as_ref()) else { continue };
            let mut schema = serde_json::to_value(schema).expect("a schema serializes to JSON");
            // The API server adds these to every object; a validator must
            // know them to close the root against typos like `sepc`.
            if let Some(properties) = schema.get_mut("properties").and_then(|p| p.as_object_mut()) {
                let api_version = format!("{}/{}", crd.spec.group, version.name);
                properties.insert("apiVersion".into(), serde_json::json!({"type": "string", "enum": [api_version]}));
                properties.insert("kind".into(), serde_json::json!({"type": "string", "enum": [crd.spec.names.kind]}));
                properties.insert("metadata".into(), serde_json::json!({"type": "object"}));
            }
            close(&mut schema);
            let path = format!("{}/{}_{}.json", crd.spec.group, crd.spec.names.kind.to_lowercase(), version.name);
            let text = serde_json::to_string_pretty(&schema).expect("a schema serializes to JSON") + "\n";
            out.push((path, text));
        }
    }
    out
}

/// All CRDs as one multi-document YAML stream, as committed in `crds/`.
pub fn crds_yaml() -> String {
    crds()
        .iter()
        .map(|crd| serde_yaml::to_string(crd).expect("a CRD serializes to YAML"))
        .collect::<Vec<_>>()
        .join("---\n")
}
