//! Hold: keeps records from deletion while it lasts: the right to
//! restriction of processing (GDPR Art. 18), or a legal claim (a
//! litigation hold, Art. 17(3)(e)).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::common::SecretReference;
use super::names::Category;

/// Keeps records from deletion while it lasts. Either one data subject's
/// records (identities from a labelled Secret, as for an ErasureRequest)
/// in the categories in scope, or everything in whole categories or
/// targets (a litigation hold). While it holds, retention runs keep the
/// held records and count them as retained under the hold's name, and
/// erasure requests retain them the same way. On S3 buckets with object
/// lock, a subject's objects also get the store's own legal hold, lifted
/// when the hold ends. A hold ends when endsAt passes or it is deleted;
/// the records then go back to their policies' next runs.
#[derive(CustomResource, Clone, Debug, PartialEq, Serialize, Deserialize, KubeSchema)]
#[kube(
    group = "delenda.dev",
    version = "v1alpha1",
    kind = "Hold",
    plural = "holds",
    shortname = "hold",
    category = "delenda",
    namespaced,
    status = "HoldStatus",
    doc = "Keeps one data subject's records, or whole categories or targets, from deletion while it lasts (GDPR Art. 18, or a legal claim).",
    printcolumn(name = "Reason", type_ = "string", json_path = ".spec.reason"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Held", type_ = "integer", json_path = ".status.held"),
    printcolumn(name = "Ends", type_ = "date", json_path = ".spec.endsAt"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp")
)]
#[x_kube(validation = Rule::new("has(self.identitySecretRef) || (has(self.scope) && ((has(self.scope.categories) && size(self.scope.categories) > 0) || (has(self.scope.targets) && size(self.scope.targets) > 0)))").message("a hold keeps one subject (identitySecretRef) or whole categories or targets (scope.categories or scope.targets); set one of them"))]
#[x_kube(validation = Rule::new("!has(oldSelf.identitySecretRef) || (has(self.identitySecretRef) && self.identitySecretRef == oldSelf.identitySecretRef)").message("the subject of a hold cannot be changed; place a new Hold instead"))]
#[serde(rename_all = "camelCase")]
pub struct HoldSpec {
    /// The Secret holding the subject's identities, one key per kind
    /// (email, phone, customerId, ...), labelled delenda.dev/identity:
    /// "true". Leave it out for a litigation hold on whole categories or
    /// targets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity_secret_ref: Option<SecretReference>,
    /// What the hold covers: categories and targets. With a subject, every
    /// category in the namespace when left out; without one, it is required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<HoldScope>,
    /// Why the records are kept.
    pub reason: HoldReason,
    /// Who placed the hold (a name or staff id, not the subject's), for the
    /// evidence.
    #[schemars(length(min = 1, max = 253))]
    pub placed_by: String,
    /// A reference to the matter in the privacy office's or legal team's
    /// own system, like a ticket or case number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub reference: Option<String>,
    /// When the hold ends by itself; it lasts until deleted when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<Time>,
}

/// What a hold covers.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct HoldScope {
    /// Categories (of RetentionPolicies) whose records are held.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub categories: Vec<Category>,
    /// Single targets of policies whose records are held.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub targets: Vec<HoldTarget>,
}

/// One target of one RetentionPolicy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct HoldTarget {
    /// The RetentionPolicy's name.
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$')").message("must be the name of a RetentionPolicy: lowercase letters, digits, '-' and '.'"))]
    #[schemars(length(min = 1, max = 253))]
    pub policy: String,
    /// The target's name within the policy.
    #[x_kube(validation = Rule::new("self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?$')").message("must be a target name: lowercase letters, digits and hyphens"))]
    #[schemars(length(min = 1, max = 63))]
    pub target: String,
}

/// Why records are held.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum HoldReason {
    /// GDPR Art. 18(1)(a): the data subject contests the accuracy of the
    /// data; kept while the controller verifies it.
    Art18AccuracyContested,
    /// GDPR Art. 18(1)(b): the processing is unlawful and the data subject
    /// asks for restriction instead of erasure.
    Art18UnlawfulProcessing,
    /// GDPR Art. 18(1)(c): the controller no longer needs the data, but the
    /// data subject needs it for a legal claim.
    Art18LegalClaims,
    /// GDPR Art. 18(1)(d): the data subject objected (Art. 21(1)); kept
    /// while it is verified whether the controller's grounds override.
    Art18ObjectionPending,
    /// A legal claim of the controller (litigation, an investigation):
    /// kept for establishing, exercising or defending it (Art. 17(3)(e)).
    LegalClaim,
}

impl HoldReason {
    /// The article, in words, for evidence and erasure outcomes.
    pub fn ground(self) -> &'static str {
        match self {
            Self::Art18AccuracyContested => "GDPR Art. 18(1)(a), accuracy contested",
            Self::Art18UnlawfulProcessing => "GDPR Art. 18(1)(b), restriction instead of erasure",
            Self::Art18LegalClaims => "GDPR Art. 18(1)(c), needed by the data subject for a legal claim",
            Self::Art18ObjectionPending => "GDPR Art. 18(1)(d), objection pending",
            Self::LegalClaim => "legal claim, GDPR Art. 17(3)(e)",
        }
    }
}

/// Where a hold stands.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HoldStatus {
    /// Pending (waiting for its identities or key), Active, or Ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<HoldPhase>,
    /// The generation of the spec the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Keyed digests (HMAC-SHA-256 with the installation key) of the held
    /// subject's identities, by kind; never the identities.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub subject_digests: BTreeMap<String, String>,
    /// Records held, over all targets, when last counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<i64>,
    /// What the hold keeps, per target in scope.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<HeldTarget>,
    /// When the hold was placed (its first evidence record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placed_at: Option<Time>,
    /// When it ended and released the records.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifted_at: Option<Time>,
    /// SHA-256 of the last evidence record (placing or lifting).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence_digest: Option<String>,
    /// Valid, EvidenceStored; Ready (holding, or ended and released),
    /// Reconciling (placing or lifting) and Stalled (a person must act: no
    /// identities, no key, a store that refuses the legal hold). One entry
    /// per type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

/// Phases of a hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum HoldPhase {
    /// Not yet holding: its identities or the installation key are missing.
    Pending,
    /// Holding: runs and erasures keep what it covers.
    Active,
    /// Ended (endsAt passed, or deleted): the records are released to their
    /// policies' next runs.
    Ended,
}

/// What a hold keeps at one target.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HeldTarget {
    /// The RetentionPolicy.
    pub policy: String,
    /// The target within it.
    pub target: String,
    /// Records held there: the subject's records, or every record of a
    /// held target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub records: Option<i64>,
    /// Objects on which the operator set the store's own legal hold (S3),
    /// to lift when the hold ends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legal_holds: Option<i64>,
    /// Keyed digests of the keys of those objects (never the keys, which
    /// may name the subject): only these are lifted at the end.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub legal_hold_digests: Vec<String>,
    /// Why the target could not be counted or its legal holds set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The holds that apply to one target at the moment of a run or erasure,
/// attached by the operator (never read from a manifest): what the store
/// must keep although it is due.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Held(pub Vec<HeldBy>);

/// One hold on a target: a subject's records, or the whole target.
#[derive(Clone, PartialEq, Eq)]
pub struct HeldBy {
    /// The Hold's name.
    pub hold: String,
    /// The subject's identities (kind, value); `None` holds every record.
    pub identities: Option<Vec<(super::IdentityName, String)>>,
}

impl Held {
    /// Always true: what holds a target is never written anywhere.
    pub fn hidden(&self) -> bool {
        true
    }

    /// Writes nothing (never called: [`Held::hidden`] skips the field).
    pub fn never<S: serde::Serializer>(_: &Self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_none()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The hold that keeps the whole target, if one does.
    pub fn whole(&self) -> Option<&str> {
        self.0.iter().find(|h| h.identities.is_none()).map(|h| h.hold.as_str())
    }

    /// The holds on subjects, with their identities.
    pub fn subjects(&self) -> impl Iterator<Item = (&str, &[(super::IdentityName, String)])> {
        self.0.iter().filter_map(|h| h.identities.as_deref().map(|i| (h.hold.as_str(), i)))
    }
}

impl std::fmt::Debug for Held {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<String> = self
            .0
            .iter()
            .map(|h| match &h.identities {
                None => format!("{} (whole target)", h.hold),
                Some(i) => format!("{} ({} identities)", h.hold, i.len()),
            })
            .collect();
        write!(f, "Held {names:?}")
    }
}
