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
pub mod names;
pub mod period;
pub mod policy;
pub mod validate;

pub use common::{DataStoreReference, Mode, PreciseTime, SecretReference};
pub use datastore::{DataStore, DataStoreSpec, DataStoreStatus};
pub use erasure::{ErasureRequest, ErasureRequestSpec, ErasureRequestStatus};
pub use names::{BucketName, Category, FieldName, IdentityName, IndexPattern, NameError, SqlIdentifier, TableName};
pub use period::{PeriodError, RetentionPeriod};
pub use policy::{RetentionPolicy, RetentionPolicySpec, RetentionPolicyStatus};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// The CustomResourceDefinitions of every kind, in a stable order.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![DataStore::crd(), RetentionPolicy::crd(), ErasureRequest::crd()]
}

/// All CRDs as one multi-document YAML stream, as committed in `crds/`.
pub fn crds_yaml() -> String {
    crds()
        .iter()
        .map(|crd| serde_yaml::to_string(crd).expect("a CRD serializes to YAML"))
        .collect::<Vec<_>>()
        .join("---\n")
}
