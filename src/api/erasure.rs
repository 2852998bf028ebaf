//! ErasureRequest: one data subject's right to erasure (GDPR Art. 17).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::common::{Mode, SecretReference};
use super::names::Category;

/// One data subject's request to have their personal data erased (GDPR
/// Article 17). The operator erases the subject from every target in scope
/// that declares a matching identity, retains what a legal obligation
/// requires to be kept (Art. 17(3)(b)) and says until when, and writes the
/// evidence to status. The identities themselves stay in the referenced
/// Secret; status, Events and logs carry only keyed digests of them.
/// The spec cannot be changed once filed.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "delenda.dev",
    version = "v1alpha1",
    kind = "ErasureRequest",
    plural = "erasurerequests",
    shortname = "erasure",
    category = "delenda",
    namespaced,
    status = "ErasureRequestStatus",
    doc = "A data subject's request for erasure under GDPR Article 17, carried out across every store in scope.",
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Mode", type_ = "string", json_path = ".spec.mode"),
    printcolumn(name = "Deadline", type_ = "string", format = "date-time", json_path = ".status.deadline"),
    printcolumn(name = "Overdue", type_ = "string", json_path = ".status.conditions[?(@.type==\"Overdue\")].status"),
    printcolumn(name = "Erased", type_ = "integer", json_path = ".status.summary.erased"),
    printcolumn(name = "Retained", type_ = "integer", json_path = ".status.summary.retained"),
    printcolumn(name = "Skipped", type_ = "integer", json_path = ".status.summary.skipped"),
    printcolumn(name = "Completed", type_ = "date", json_path = ".status.completedAt"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = Rule::new("self == oldSelf").message("the spec of an ErasureRequest cannot be changed once filed; file a new ErasureRequest instead"))]
#[serde(rename_all = "camelCase")]
pub struct ErasureRequestSpec {
    /// The Secret holding the subject's identities, one key per kind of
    /// identity (email, phone, ipAddress, customerId, imei, or a custom
    /// name declared in a policy's subjectFields), each value one identity.
    pub identity_secret_ref: SecretReference,
    /// The ground for erasure under GDPR Article 17(1).
    pub ground: ErasureGround,
    /// When the request was received. The deadline is one calendar month
    /// later (Art. 12(3)).
    pub received_at: Time,
    /// How the requester's identity was verified before acting.
    pub identity_verification: IdentityVerification,
    /// The customer organisation on whose instruction the erasure is done,
    /// where that customer is the controller of the data; required for
    /// policies whose responsibleParty is customer to be in scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub on_behalf_of: Option<String>,
    /// Which policies are in scope; every policy in the namespace when
    /// omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<ErasureScope>,
    /// Enforce (the default) erases; DryRun only reports what would be
    /// erased and retained.
    #[serde(default = "enforce")]
    pub mode: Mode,
    /// Delete the identity Secret once the request has completed, so no copy
    /// of the identities outlives the request. Only a Secret labelled
    /// `delenda.dev/identity: "true"` is ever deleted.
    #[serde(default)]
    pub delete_identity_secret: bool,
    /// The most records the request may erase over all its targets,
    /// counted before anything is erased; more, and the request fails with
    /// nothing erased. The installation's default (10,000) when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_records: Option<u64>,
}

fn enforce() -> Mode {
    Mode::Enforce
}

/// The grounds for erasure of GDPR Article 17(1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum ErasureGround {
    /// (a) The data are no longer necessary for their purpose.
    NoLongerNecessary,
    /// (b) The subject withdrew consent and no other legal ground remains.
    ConsentWithdrawn,
    /// (c) The subject objected under Art. 21 and no overriding grounds remain.
    Objection,
    /// (d) The data were processed unlawfully.
    UnlawfulProcessing,
    /// (e) Erasure is required by a legal obligation.
    LegalObligation,
    /// (f) The data were collected from a child for an information society service.
    ChildConsent,
}

/// How the requester's identity was verified.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IdentityVerification {
    /// Who verified the identity (a name or staff id, not the subject's).
    #[schemars(length(min = 1, max = 253))]
    pub verified_by: String,
    /// How the identity was verified.
    pub method: VerificationMethod,
    /// When it was verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_at: Option<Time>,
    /// A reference to the verification record in the privacy office's own
    /// system, like a ticket number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub reference: Option<String>,
}

/// Ways to verify a requester's identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum VerificationMethod {
    /// A copy of an identity document (watermarked, national number masked).
    IdentityDocument,
    /// The request came through an account the subject is logged in to.
    AuthenticatedAccount,
    /// The request was confirmed through a known contact channel.
    KnownContactChannel,
    /// The customer organisation (the controller) verified it and instructed us.
    ControllerInstruction,
    /// In person, with an identity document.
    InPerson,
}

/// Which policies an erasure request covers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("size(self.categories) > 0 || has(self.policySelector)").message("a scope names categories, a policySelector, or both"))]
pub struct ErasureScope {
    /// Categories of the policies in scope.
    #[serde(default)]
    #[schemars(length(max = 64))]
    pub categories: Vec<Category>,
    /// A label selector over RetentionPolicies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_selector: Option<LabelSelector>,
}

/// Where an erasure request stands.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErasureRequestStatus {
    /// Pending, InProgress, Completed, Previewed (a dry run) or Failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<ErasurePhase>,
    /// One calendar month after receivedAt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<Time>,
    /// The generation of the spec the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Keyed digests (HMAC-SHA-256 with the installation key) of the
    /// identities, by kind: enough to match records in an audit, useless to
    /// recover the identity.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub subject_digests: BTreeMap<String, String>,
    /// What happened at each target in scope.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<ErasureTargetOutcome>,
    /// Totals over all targets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub summary: Option<ErasureSummary>,
    /// SHA-256 of the request's canonical evidence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence_digest: Option<String>,
    /// When the request completed (or, for a dry run, was previewed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at: Option<Time>,
    /// Passes that failed since the last one that did not; the next pass
    /// waits longer after each (one minute, doubling to sixteen).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failed_passes: i32,
    /// When the last pass ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_pass_at: Option<Time>,
    /// Valid, Overdue.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
}

/// Phases of an erasure request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum ErasurePhase {
    /// Filed, not yet started.
    Pending,
    /// Being carried out.
    InProgress,
    /// Every target in scope has a final outcome (Erased, Retained,
    /// NothingFound, Skipped, NotSearched), erasures proven by read-back.
    Completed,
    /// A dry run went through every target in scope: the outcomes say what
    /// would be erased (WouldErase); nothing was.
    Previewed,
    /// At least one target failed, or nothing was in scope; the reason is
    /// in the Ready condition. Failed targets are retried with backoff.
    Failed,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

/// What happened to the subject's data at one target.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErasureTargetOutcome {
    /// The RetentionPolicy of the target.
    pub policy: String,
    /// The target's name within the policy.
    pub target: String,
    /// Erased; WouldErase (a dry run found records to erase); Retained
    /// (kept under a legal obligation, or locked in the store);
    /// NothingFound; NotSearched (in scope, but the request gave no
    /// identity of a kind the target holds); Skipped (not acted on, with
    /// the reason: for example processor data without onBehalfOf); or
    /// Failed (retried).
    pub outcome: String,
    /// Records of the subject found, over all passes.
    pub matched: i64,
    /// Records erased, over all passes.
    pub erased: i64,
    /// Records of the subject found by the read-back after erasure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remaining: Option<i64>,
    /// For Retained: until when the data must be kept (absent for a legal
    /// hold, which lasts until it is lifted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retained_until: Option<Time>,
    /// For Retained: the legal basis that requires keeping it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retained_under: Option<String>,
    /// For the customer's data: on whose behalf the operator acted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_behalf_of: Option<String>,
    /// Why the target failed, was skipped or not searched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Totals of an erasure request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErasureSummary {
    /// Records erased over all targets.
    pub erased: i64,
    /// Records a dry run would erase.
    #[serde(default)]
    pub would_erase: i64,
    /// Records retained (a legal obligation, or a lock in the store).
    pub retained: i64,
    /// Targets skipped (processor data without onBehalfOf).
    #[serde(default)]
    pub skipped: i64,
    /// Targets in scope not searched (no identity of their kind given).
    #[serde(default)]
    pub not_searched: i64,
    /// Targets that failed.
    pub failed: i64,
}
