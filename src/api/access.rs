//! AccessRequest: one data subject's right of access (GDPR Art. 15) and
//! to data portability (Art. 20).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::common::SecretReference;
use super::erasure::{ErasureScope, IdentityVerification};

/// One data subject's request for a copy of their personal data (GDPR
/// Article 15) in a machine-readable form (Article 20). The operator reads
/// the subject's records from every target in scope that declares a
/// matching identity and writes them, one JSON document per target with
/// the purposes, category, legal basis, retention period and source Art.
/// 15(1) lists, to the export bucket the installation configures (never
/// to status, Events or logs). Status says how many records each target
/// gave, the SHA-256 of each document, and where the export is; the export
/// is deleted by the operator when it expires. The identities stay in the
/// referenced Secret; status, Events and logs carry only keyed digests.
/// The spec cannot be changed once filed.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "delenda.dev",
    version = "v1alpha1",
    kind = "AccessRequest",
    plural = "accessrequests",
    shortname = "access",
    category = "delenda",
    namespaced,
    status = "AccessRequestStatus",
    doc = "A data subject's request for access to their data under GDPR Articles 15 and 20: an export of their records from every store in scope.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Records", type_ = "integer", json_path = ".status.records"),
    printcolumn(name = "Deadline", type_ = "string", format = "date-time", json_path = ".status.deadline"),
    printcolumn(name = "Overdue", type_ = "string", json_path = ".status.conditions[?(@.type==\"Overdue\")].status"),
    printcolumn(name = "Expires", type_ = "date", json_path = ".status.expiresAt"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = Rule::new("self == oldSelf").message("the spec of an AccessRequest cannot be changed once filed; file a new AccessRequest instead"))]
#[serde(rename_all = "camelCase")]
pub struct AccessRequestSpec {
    /// The Secret holding the subject's identities, one key per kind of
    /// identity (email, phone, ipAddress, customerId, imei, or a custom
    /// name declared in a policy's subjectFields), labelled
    /// delenda.dev/identity: "true".
    pub identity_secret_ref: SecretReference,
    /// When the request was received. The deadline is one calendar month
    /// later (Art. 12(3)).
    pub received_at: Time,
    /// How the requester's identity was verified before acting (Art.
    /// 12(6)): an export handed to the wrong person is a data breach.
    pub identity_verification: IdentityVerification,
    /// The customer organisation on whose instruction the export is made,
    /// where that customer is the controller of the data; required for
    /// policies whose responsibleParty is customer to be in scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub on_behalf_of: Option<String>,
    /// Which policies are in scope; every policy in the namespace when
    /// omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<ErasureScope>,
    /// The most records the request may export over all its targets,
    /// counted before anything is written; more, and the request fails with
    /// nothing exported. The installation's default
    /// (--max-export-records, 100,000) when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_records: Option<u64>,
}

/// Where an access request stands.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessRequestStatus {
    /// Pending, InProgress, Completed, Failed or Expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<AccessPhase>,
    /// One calendar month after receivedAt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<Time>,
    /// The generation of the spec the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Keyed digests (HMAC-SHA-256 with the installation key) of the
    /// identities, by kind.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub subject_digests: BTreeMap<String, String>,
    /// What each target in scope gave.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<AccessTargetOutcome>,
    /// Records exported over all targets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<i64>,
    /// Records that matched but could not be read, over all targets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<i64>,
    /// Where the export is: the bucket and the prefix of its objects (never
    /// their contents).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export: Option<ExportLocation>,
    /// When the request completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Time>,
    /// When the operator deletes the export (completion plus the
    /// installation's --access-export-ttl-days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Time>,
    /// When the export was deleted and the deletion read back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export_deleted_at: Option<Time>,
    /// Passes that failed in a row; the next pass waits longer after each
    /// (one minute, doubling to sixteen).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failed_passes: i32,
    /// When the last pass that read the stores ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_pass_at: Option<Time>,
    /// SHA-256 of the request's last evidence record (completion, then
    /// deletion of the export).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence_digest: Option<String>,
    /// Valid, Overdue, EvidenceStored, ExportDeleted; Ready (Completed or
    /// Expired), Reconciling and Stalled. One entry per type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

/// Phases of an access request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum AccessPhase {
    /// Filed, waiting for something to start (an export destination, an
    /// installation key, a readable identity Secret).
    Pending,
    /// Being exported.
    InProgress,
    /// Every target in scope was read and the export written, with its
    /// manifest; the export waits in the bucket until it expires.
    Completed,
    /// The export could not be made: over the record limit, a target that
    /// failed, or nothing in scope. Nothing of a failed pass stays in the
    /// bucket; the reason is in the Ready condition.
    Failed,
    /// The export expired and was deleted, read back by listing.
    Expired,
}

/// Where an export is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExportLocation {
    /// The bucket.
    pub bucket: String,
    /// The prefix of every object of the export (ending in `/`).
    pub prefix: String,
    /// SHA-256 of the export's manifest.json.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_digest: Option<String>,
}

/// What one target gave.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AccessTargetOutcome {
    /// The RetentionPolicy of the target.
    pub policy: String,
    /// The target's name within the policy.
    pub target: String,
    /// Exported; NothingFound; NotSearched (in scope, but the request gave
    /// no identity of a kind the target holds); Skipped (with the reason:
    /// processor data without onBehalfOf, or outside the DataStore's
    /// allowedTargets); or Failed.
    pub outcome: String,
    /// Records exported.
    pub records: i64,
    /// Records that matched but could not be read (kept out of the export
    /// and counted).
    #[serde(default)]
    pub unreadable: i64,
    /// SHA-256 of the target's export document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The object name of the target's export document.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    /// Why the target failed, was skipped or not searched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
