//! Types shared by the three kinds: references, modes, conditions.

use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::KubeSchema;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// The API group of every Delenda kind.
pub const GROUP: &str = "delenda.dev";
/// The API version of every Delenda kind.
pub const VERSION: &str = "v1alpha1";

/// A reference to a Secret in the same namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretReference {
    /// Name of the Secret, in the namespace of the resource that refers to it.
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$')").message("must be the name of a Secret: lowercase letters, digits, '-' and '.'"))]
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// A reference to a DataStore in the same namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct DataStoreReference {
    /// Name of the DataStore, in the namespace of the RetentionPolicy.
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$')").message("must be the name of a DataStore: lowercase letters, digits, '-' and '.'"))]
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Whether a run deletes or only counts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum Mode {
    /// Delete what is due, then read back to prove it is gone.
    Enforce,
    /// Count what would be deleted and touch nothing.
    #[default]
    DryRun,
}

/// Condition types and reasons written by the operator.
pub mod conditions {
    /// DataStore: the last probe reached the store.
    pub const READY: &str = "Ready";
    /// RetentionPolicy: the last run verified that nothing past its cutoff remains.
    pub const COMPLIANT: &str = "Compliant";
    /// Any kind: the spec passed the checks the API server cannot make.
    pub const VALID: &str = "Valid";
    /// ErasureRequest: the one-month deadline has passed without completion.
    pub const OVERDUE: &str = "Overdue";
    /// RetentionPolicy, ErasureRequest: the last evidence record is sealed
    /// in the cluster's chain and, with a sink, in the locked bucket.
    pub const EVIDENCE_STORED: &str = "EvidenceStored";
    /// AccessRequest: the expired export was deleted, and a listing found
    /// none of its objects left.
    pub const EXPORT_DELETED: &str = "ExportDeleted";
}

/// Conditions, the Kubernetes way: one per type, merged by type.
pub type Conditions = Vec<Condition>;

/// An instant written to the nanosecond (RFC 3339, like
/// `2026-05-28T00:30:00.000000001Z`). Cutoffs are exact: Kubernetes' own
/// `Time` keeps whole seconds only, and a cutoff rounded to the second would
/// move the boundary between due and not due.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PreciseTime(pub jiff::Timestamp);

impl JsonSchema for PreciseTime {
    fn schema_name() -> Cow<'static, str> {
        "PreciseTime".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({"type": "string", "format": "date-time"})
    }
}
