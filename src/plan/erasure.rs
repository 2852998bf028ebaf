//! Planning an erasure request: its deadline, which targets are in scope,
//! and which of them must retain the subject's data under a legal
//! obligation (GDPR Art. 17(3)(b)) instead of erasing it.

use std::collections::{BTreeMap, BTreeSet};

use jiff::tz::TimeZone;
use jiff::{Timestamp, ToSpan};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::api::IdentityName;
use crate::api::erasure::{ErasureRequestSpec, ErasureScope};
use crate::api::policy::{LegalBasis, ResponsibleParty, RetentionPolicySpec, SubjectField};

/// A RetentionPolicy as the planner sees it.
#[derive(Debug, Clone, Copy)]
pub struct PolicyView<'a> {
    /// The policy's name.
    pub name: &'a str,
    /// The policy's labels.
    pub labels: &'a BTreeMap<String, String>,
    /// The policy's spec.
    pub spec: &'a RetentionPolicySpec,
}

/// What to do at one target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Erase the subject's records.
    Erase,
    /// Keep them: a legal obligation requires it until `until`, or a Hold
    /// keeps them (until its end, where it has one).
    Retain {
        /// The latest moment any record held now must be kept until; none
        /// for a hold without an end.
        until: Option<Timestamp>,
        /// The legal ground, for the evidence.
        under: String,
    },
    /// Leave the target alone, for the stated reason.
    Skip {
        /// Why, in words.
        reason: String,
    },
    /// The target is in scope but was not searched: the request gave no
    /// identity of a kind it declares (or it declares none).
    NotSearched {
        /// Why, in words: the kinds it would need.
        reason: String,
    },
}

impl Action {
    /// Whether the target is searched at all.
    pub fn searches(&self) -> bool {
        matches!(self, Self::Erase | Self::Retain { .. })
    }
}

/// One target of one policy in scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The policy.
    pub policy: String,
    /// The target within it.
    pub target: String,
    /// The DataStore the target lives in.
    pub data_store: String,
    /// The subject fields of the target that the request has identities for.
    pub fields: Vec<SubjectField>,
    /// The customer on whose behalf the operator acts, for processor data.
    pub on_behalf_of: Option<String>,
    /// What to do.
    pub action: Action,
}

/// The plan of one erasure request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErasurePlan {
    /// One calendar month after receipt.
    pub deadline: Timestamp,
    /// Every target in scope: those declaring a matching identity are
    /// searched, the others listed as not searched.
    pub steps: Vec<Step>,
}

/// The deadline of a request received at `received`: one calendar month
/// later (GDPR Art. 12(3)), counted in UTC; the 31st of a month gives the
/// last day of a shorter next month.
pub fn deadline(received: Timestamp) -> Timestamp {
    let zoned = received.to_zoned(TimeZone::UTC);
    zoned.checked_add(1.month()).map(|z| z.timestamp()).unwrap_or(received)
}

/// Whether a request is overdue: not completed by its deadline. One that
/// completed after the deadline stays overdue, for the record.
pub fn is_overdue(deadline: Timestamp, now: Timestamp, completed_at: Option<Timestamp>) -> bool {
    completed_at.unwrap_or(now) > deadline
}

/// Plans an erasure: `identities` are the kinds of identity the request's
/// Secret holds; `now` is when the plan is made.
pub fn plan(
    request: &ErasureRequestSpec,
    policies: &[PolicyView<'_>],
    identities: &BTreeSet<IdentityName>,
    now: Timestamp,
) -> ErasurePlan {
    let scope = RequestScope { scope: request.scope.as_ref(), on_behalf_of: request.on_behalf_of.as_deref() };
    let steps = steps(&scope, policies, identities, |policy| action_for(policy, now));
    ErasurePlan { deadline: deadline(request.received_at.0), steps }
}

/// What a subject's request (an erasure, an access request) covers: its
/// scope of policies, and the customer it acts for.
#[derive(Debug, Clone, Copy)]
pub struct RequestScope<'a> {
    /// The policies in scope; every policy when `None`.
    pub scope: Option<&'a ErasureScope>,
    /// The customer organisation the request acts for, for processor data.
    pub on_behalf_of: Option<&'a str>,
}

/// Every target of every policy in `request`'s scope, sorted by policy and
/// target: those declaring an identity of a kind in `identities` get the
/// action `decide` gives their policy, the others are not searched.
pub fn steps(
    request: &RequestScope<'_>,
    policies: &[PolicyView<'_>],
    identities: &BTreeSet<IdentityName>,
    decide: impl Fn(&PolicyView<'_>) -> Action,
) -> Vec<Step> {
    let mut steps = Vec::new();
    for policy in policies.iter().filter(|p| in_scope(request.scope, p)) {
        for target in &policy.spec.targets {
            let fields: Vec<SubjectField> =
                target.subject_fields.iter().filter(|f| identities.contains(&f.identity)).cloned().collect();
            let on_behalf_of = match policy.spec.responsible_party {
                ResponsibleParty::SelfOwned => None,
                ResponsibleParty::Customer => request.on_behalf_of.map(str::to_owned),
            };
            let action = if fields.is_empty() {
                let mut kinds: Vec<&str> = target.subject_fields.iter().map(|f| f.identity.as_str()).collect();
                kinds.sort_unstable();
                kinds.dedup();
                let reason = if kinds.is_empty() {
                    "the target declares no subject fields, so no identity can be looked for in it".to_owned()
                } else {
                    format!("the request gave no identity of a kind the target holds ({})", kinds.join(", "))
                };
                Action::NotSearched { reason }
            } else {
                customer_skip(request.on_behalf_of, policy).unwrap_or_else(|| decide(policy))
            };
            steps.push(Step {
                policy: policy.name.to_owned(),
                target: target.name.clone(),
                data_store: target.data_store_ref.name.clone(),
                fields,
                on_behalf_of,
                action,
            });
        }
    }
    steps.sort_by(|a, b| (&a.policy, &a.target).cmp(&(&b.policy, &b.target)));
    steps
}

/// A skip for a customer's data the request may not act on: without
/// `onBehalfOf`, or for another customer than it names.
fn customer_skip(on_behalf_of: Option<&str>, policy: &PolicyView<'_>) -> Option<Action> {
    let spec = policy.spec;
    if spec.responsible_party != ResponsibleParty::Customer {
        return None;
    }
    match (&spec.customer, on_behalf_of) {
        (_, None) => Some(Action::Skip {
            reason:
                "the customer organisation is the controller of this data; set onBehalfOf to act on its instruction"
                    .into(),
        }),
        (Some(owner), Some(asked)) if owner != asked => {
            Some(Action::Skip { reason: "this data belongs to another customer than onBehalfOf names".into() })
        }
        _ => None,
    }
}

/// Erase, or retain what a legal obligation keeps (Art. 17(3)(b)).
fn action_for(policy: &PolicyView<'_>, now: Timestamp) -> Action {
    let spec = policy.spec;
    if spec.legal_basis == LegalBasis::LegalObligation {
        let zone = TimeZone::get(&spec.schedule.time_zone).unwrap_or(TimeZone::UTC);
        let until = crate::api::calendar::end_of_period(now, spec.retention.period.to_span(), &zone).unwrap_or(now);
        return Action::Retain {
            until: Some(until),
            under: format!(
                "RetentionPolicy {} (legal obligation, GDPR Art. 6(1)(c) and 17(3)(b); kept {} from each record)",
                policy.name, spec.retention.period
            ),
        };
    }
    Action::Erase
}

fn in_scope(scope: Option<&ErasureScope>, policy: &PolicyView<'_>) -> bool {
    let Some(scope) = scope else { return true };
    let by_category = scope.categories.iter().any(|c| c == &policy.spec.category);
    let by_selector = scope.policy_selector.as_ref().is_some_and(|s| selects(s, policy.labels));
    by_category || by_selector
}

/// Whether a label selector selects a set of labels (Kubernetes semantics;
/// an empty selector selects everything).
pub fn selects(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let labels_match = selector.match_labels.iter().flatten().all(|(k, v)| labels.get(k).is_some_and(|have| have == v));
    let expressions_match = selector.match_expressions.iter().flatten().all(|e| {
        let values = e.values.as_deref().unwrap_or_default();
        match e.operator.as_str() {
            "In" => labels.get(&e.key).is_some_and(|v| values.contains(v)),
            "NotIn" => labels.get(&e.key).is_none_or(|v| !values.contains(v)),
            "Exists" => labels.contains_key(&e.key),
            "DoesNotExist" => !labels.contains_key(&e.key),
            _ => false,
        }
    });
    labels_match && expressions_match
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
    use proptest::prelude::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn policy_spec(
        category: &str,
        party: &str,
        basis: &str,
        period: &str,
        fields: &[(&str, &str)],
    ) -> RetentionPolicySpec {
        let subject_fields: Vec<_> =
            fields.iter().map(|(identity, field)| serde_json::json!({"identity": identity, "field": field})).collect();
        serde_json::from_value(serde_json::json!({
            "category": category, "description": "d", "responsibleParty": party, "legalBasis": basis,
            "retention": {"period": period}, "schedule": {"cron": "0 3 * * *", "timeZone": "Europe/Amsterdam"},
            "targets": [{"name": "main", "dataStoreRef": {"name": "crm"},
                         "table": {"name": "t", "timeColumn": "created_at"}, "subjectFields": subject_fields}]
        }))
        .unwrap()
    }

    fn request(extra: serde_json::Value) -> ErasureRequestSpec {
        let mut base = serde_json::json!({
            "identitySecretRef": {"name": "s"}, "ground": "ConsentWithdrawn", "receivedAt": "2026-11-02T09:30:00Z",
            "identityVerification": {"verifiedBy": "privacy-office", "method": "IdentityDocument"}
        });
        base.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        serde_json::from_value(base).unwrap()
    }

    fn ids(names: &[&str]) -> BTreeSet<IdentityName> {
        names.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn the_deadline_is_one_calendar_month_after_receipt() {
        assert_eq!(deadline(ts("2026-11-02T09:30:00Z")), ts("2026-12-02T09:30:00Z"));
        assert_eq!(deadline(ts("2026-01-31T12:00:00Z")), ts("2026-02-28T12:00:00Z"));
        assert_eq!(deadline(ts("2028-01-31T12:00:00Z")), ts("2028-02-29T12:00:00Z"));
    }

    #[test]
    fn a_request_is_overdue_when_not_completed_by_its_deadline() {
        let d = ts("2026-12-02T09:30:00Z");
        assert!(!is_overdue(d, ts("2026-12-02T09:30:00Z"), None));
        assert!(is_overdue(d, ts("2026-12-02T09:30:01Z"), None));
        assert!(!is_overdue(d, ts("2027-01-01T00:00:00Z"), Some(ts("2026-12-01T00:00:00Z"))), "completed in time");
        assert!(is_overdue(d, ts("2027-01-01T00:00:00Z"), Some(ts("2026-12-03T00:00:00Z"))), "completed late");
    }

    #[test]
    fn every_target_with_a_matching_identity_is_in_scope_and_no_other() {
        let labels = BTreeMap::new();
        let tickets = policy_spec("support-tickets", "self", "Contract", "3y", &[("email", "requester_email")]);
        let cdrs = policy_spec("usage-data", "self", "Contract", "6mo", &[("phone", "caller")]);
        let web = policy_spec("web-statistics", "self", "LegitimateInterests", "1y", &[]);
        let views = [
            PolicyView { name: "support-tickets", labels: &labels, spec: &tickets },
            PolicyView { name: "usage-data", labels: &labels, spec: &cdrs },
            PolicyView { name: "web-statistics", labels: &labels, spec: &web },
        ];
        let plan = plan(&request(serde_json::json!({})), &views, &ids(&["email"]), ts("2026-11-03T00:00:00Z"));
        let searched: Vec<_> = plan.steps.iter().filter(|s| s.action.searches()).collect();
        assert_eq!(searched.len(), 1);
        assert_eq!(searched[0].policy, "support-tickets");
        assert_eq!(searched[0].action, Action::Erase);
        assert_eq!(searched[0].fields[0].identity.as_str(), "email");
        // The others are listed, with why they were not searched.
        let not: Vec<_> = plan.steps.iter().filter(|s| matches!(s.action, Action::NotSearched { .. })).collect();
        assert_eq!(not.len(), 2);
        assert!(matches!(&not[0].action, Action::NotSearched { reason } if reason.contains("(phone)")));
        assert!(matches!(&not[1].action, Action::NotSearched { reason } if reason.contains("no subject fields")));
    }

    #[test]
    fn data_under_a_legal_obligation_is_retained_until_its_period_ends() {
        let labels = BTreeMap::new();
        let traffic = policy_spec("traffic-data", "self", "LegalObligation", "6mo", &[("ipAddress", "client.ip")]);
        let views = [PolicyView { name: "traffic-data", labels: &labels, spec: &traffic }];
        let now = ts("2026-11-03T10:00:00Z");
        let plan = plan(&request(serde_json::json!({})), &views, &ids(&["ipAddress"]), now);
        match &plan.steps[0].action {
            Action::Retain { until, under } => {
                assert_eq!(*until, Some(ts("2027-05-03T09:00:00Z")), "6 calendar months later, Amsterdam wall clock");
                assert!(under.contains("traffic-data") && under.contains("17(3)(b)"), "{under}");
            }
            other => panic!("expected Retain, got {other:?}"),
        }
    }

    #[test]
    fn processor_data_needs_the_customers_instruction() {
        let labels = BTreeMap::new();
        let mut keyholders = policy_spec("alarm-key-holders", "customer", "Contract", "1d", &[("phone", "phone")]);
        let views = [PolicyView { name: "alarm-key-holders", labels: &labels, spec: &keyholders }];
        let now = ts("2026-11-03T10:00:00Z");
        let without = plan(&request(serde_json::json!({})), &views, &ids(&["phone"]), now);
        assert!(matches!(&without.steps[0].action, Action::Skip { reason } if reason.contains("onBehalfOf")));
        let with = plan(&request(serde_json::json!({"onBehalfOf": "Acme BV"})), &views, &ids(&["phone"]), now);
        assert_eq!(with.steps[0].action, Action::Erase);
        assert_eq!(with.steps[0].on_behalf_of.as_deref(), Some("Acme BV"));

        keyholders.customer = Some("Other BV".into());
        let views = [PolicyView { name: "alarm-key-holders", labels: &labels, spec: &keyholders }];
        let other = plan(&request(serde_json::json!({"onBehalfOf": "Acme BV"})), &views, &ids(&["phone"]), now);
        assert!(matches!(&other.steps[0].action, Action::Skip { .. }));
    }

    #[test]
    fn a_scope_selects_by_category_or_label() {
        let tagged: BTreeMap<String, String> = [("delenda.dev/statement".to_string(), "mvs-it".to_string())].into();
        let plain = BTreeMap::new();
        let a = policy_spec("support-tickets", "self", "Contract", "3y", &[("email", "e")]);
        let b = policy_spec("contact-form", "self", "Contract", "1y", &[("email", "e")]);
        let c = policy_spec("usage-data", "self", "Contract", "6mo", &[("email", "e")]);
        let views = [
            PolicyView { name: "a", labels: &plain, spec: &a },
            PolicyView { name: "b", labels: &tagged, spec: &b },
            PolicyView { name: "c", labels: &plain, spec: &c },
        ];
        let req = request(serde_json::json!({"scope": {
            "categories": ["support-tickets"],
            "policySelector": {"matchLabels": {"delenda.dev/statement": "mvs-it"}}
        }}));
        let plan = plan(&req, &views, &ids(&["email"]), ts("2026-11-03T00:00:00Z"));
        let names: Vec<_> = plan.steps.iter().filter(|s| s.action.searches()).map(|s| s.policy.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn selector_expressions_follow_kubernetes_semantics() {
        let labels: BTreeMap<String, String> = [("tier".to_string(), "gold".to_string())].into();
        let req = |key: &str, op: &str, values: &[&str]| LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: Some(values.iter().map(|v| v.to_string()).collect()),
        };
        let sel = |e: LabelSelectorRequirement| LabelSelector { match_expressions: Some(vec![e]), match_labels: None };
        assert!(selects(&sel(req("tier", "In", &["gold", "silver"])), &labels));
        assert!(!selects(&sel(req("tier", "NotIn", &["gold"])), &labels));
        assert!(selects(&sel(req("zone", "NotIn", &["x"])), &labels));
        assert!(selects(&sel(req("tier", "Exists", &[])), &labels));
        assert!(selects(&sel(req("zone", "DoesNotExist", &[])), &labels));
        assert!(selects(&LabelSelector::default(), &labels));
    }

    proptest! {
        #[test]
        fn the_deadline_is_after_receipt_and_at_most_31_days_later(secs in 0i64..4_000_000_000) {
            let received = Timestamp::from_second(secs).unwrap();
            let d = deadline(received);
            prop_assert!(d > received);
            prop_assert!(d.duration_since(received).as_secs() <= 31 * 86_400);
            prop_assert!(d.duration_since(received).as_secs() >= 28 * 86_400);
        }
    }
}
