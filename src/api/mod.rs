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

pub mod access;
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

/// The API group of every kind.
pub const GROUP: &str = "delenda.dev";

pub use access::{AccessRequest, AccessRequestSpec, AccessRequestStatus};
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
    let meanings = enum_meanings();
    vec![DataStore::crd(), RetentionPolicy::crd(), ErasureRequest::crd(), Hold::crd(), AccessRequest::crd()]
        .into_iter()
        .map(|crd| {
            let mut value = serde_json::to_value(&crd).expect("a CRD serializes");
            explain_enums(&mut value, &meanings);
            serde_json::from_value(value).expect("a CRD with longer descriptions is still a CRD")
        })
        .collect()
}

/// The values of an enum of the API, and what each means.
type Meanings = Vec<(std::collections::BTreeSet<String>, Vec<(String, String)>)>;

/// What each value of the API's enums means, from their doc comments. A
/// CRD's structural schema keeps only the values (`enum`), so without this
/// `kubectl explain` would list `LegalObligation` or `Previewed` with no
/// word on what they mean.
fn enum_meanings() -> Meanings {
    use schemars::schema_for;
    let schemas = [
        schema_for!(common::Mode),
        schema_for!(datastore::TlsMode),
        schema_for!(erasure::ErasureGround),
        schema_for!(erasure::VerificationMethod),
        schema_for!(erasure::ErasurePhase),
        schema_for!(policy::ResponsibleParty),
        schema_for!(policy::LegalBasis),
        schema_for!(policy::TimeFormat),
        schema_for!(policy::ColumnOperator),
        schema_for!(policy::PeriodUnit),
        schema_for!(policy::ObjectAge),
        schema_for!(policy::ObjectVersions),
        schema_for!(policy::FileAge),
        schema_for!(policy::LineTimeFormat),
        schema_for!(policy::FileFormat),
        schema_for!(hold::HoldReason),
        schema_for!(hold::HoldPhase),
        schema_for!(access::AccessPhase),
        schema_for!(account::RetainReason),
        schema_for!(account::UnreadableReason),
    ];
    schemas
        .into_iter()
        .filter_map(|schema| {
            let value = serde_json::to_value(schema).ok()?;
            let variants = value.get("oneOf")?.as_array()?;
            let pairs: Vec<(String, String)> = variants
                .iter()
                .flat_map(|v| {
                    let description = v.get("description").and_then(|d| d.as_str()).unwrap_or_default();
                    let names: Vec<String> = match (v.get("const"), v.get("enum")) {
                        (Some(c), _) => c.as_str().map(str::to_owned).into_iter().collect(),
                        (None, Some(serde_json::Value::Array(e))) => {
                            e.iter().filter_map(|n| n.as_str().map(str::to_owned)).collect()
                        }
                        _ => vec![],
                    };
                    names.into_iter().map(move |n| (n, description.replace('\n', " ")))
                })
                .collect();
            Some((pairs.iter().map(|(n, _)| n.clone()).collect(), pairs))
        })
        .collect()
}

/// Appends "Values: ..." with each value's meaning to the description of
/// every property whose `enum` is one of the API's enums.
fn explain_enums(schema: &mut serde_json::Value, meanings: &Meanings) {
    match schema {
        serde_json::Value::Object(map) => {
            let values: Option<std::collections::BTreeSet<String>> = map
                .get("enum")
                .and_then(|e| e.as_array())
                .map(|e| e.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect());
            if let Some(values) = values
                && let Some((_, pairs)) = meanings.iter().find(|(set, _)| *set == values)
                && pairs.iter().any(|(_, d)| !d.is_empty())
            {
                let list: Vec<String> = pairs
                    .iter()
                    .map(|(n, d)| if d.is_empty() { format!("- {n}") } else { format!("- {n}: {d}") })
                    .collect();
                let description = map.get("description").and_then(|d| d.as_str()).unwrap_or_default();
                let text = format!("{description}\n\nValues:\n{}", list.join("\n")).trim_start().to_owned();
                map.insert("description".into(), serde_json::Value::String(text));
            }
            map.values_mut().for_each(|v| explain_enums(v, meanings));
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(|v| explain_enums(v, meanings)),
        _ => {}
    }
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
