//! Planning with Holds: which holds are in force, what each keeps at a
//! target, and which steps of an erasure they turn into retention
//! (GDPR Art. 17(3)(e) and Art. 18).

use jiff::Timestamp;

use super::erasure::{Action, ErasurePlan};
use crate::api::IdentityName;
use crate::api::hold::{Held, HeldBy, HoldSpec};
use crate::stores::identity::Identity;

/// A Hold as planning sees it: its name, spec, and (for a hold on a
/// subject) the identities read from its Secret.
#[derive(Clone)]
pub struct HoldView<'a> {
    /// The Hold's name.
    pub name: &'a str,
    /// Its spec.
    pub spec: &'a HoldSpec,
    /// The subject's identities; `None` for a hold on whole categories or
    /// targets.
    pub identities: Option<Vec<(IdentityName, String)>>,
}

impl std::fmt::Debug for HoldView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.identities.as_ref().map(Vec::len);
        write!(f, "HoldView {{ name: {:?}, identities: {n:?} }}", self.name)
    }
}

/// Whether a hold is in force at `now`: not being deleted and its end, if
/// it has one, not yet reached.
pub fn in_force(spec: &HoldSpec, deleting: bool, now: Timestamp) -> bool {
    !deleting && spec.ends_at.as_ref().is_none_or(|end| end.0 > now)
}

/// Whether a hold covers a target of a policy. A hold on a subject with no
/// scope covers every target; a scope names categories and single targets.
pub fn covers(spec: &HoldSpec, policy: &str, category: &str, target: &str) -> bool {
    let Some(scope) = &spec.scope else { return spec.identity_secret_ref.is_some() };
    if scope.categories.is_empty() && scope.targets.is_empty() {
        return spec.identity_secret_ref.is_some();
    }
    scope.categories.iter().any(|c| c.as_str() == category)
        || scope.targets.iter().any(|t| t.policy == policy && t.target == target)
}

/// What the holds in force keep at one target, for a run.
pub fn held_at(holds: &[HoldView<'_>], policy: &str, category: &str, target: &str) -> Held {
    let mut out: Vec<HeldBy> = holds
        .iter()
        .filter(|h| covers(h.spec, policy, category, target))
        .map(|h| HeldBy { hold: h.name.to_owned(), identities: h.identities.clone() })
        .collect();
    out.sort_by(|a, b| a.hold.cmp(&b.hold));
    Held(out)
}

/// Whether two sets of identities name one subject: an identity of one
/// kind equal (as its kind matches: e-mail in any case, phone normalised)
/// to one of the other.
pub fn same_subject(a: &[(IdentityName, String)], b: &[(IdentityName, String)]) -> bool {
    a.iter().any(|(kind, value)| {
        let Ok(mine) = Identity::new(kind, value) else { return false };
        b.iter().any(|(k, v)| k == kind && mine.equals(v))
    })
}

/// Turns the steps of an erasure that a hold in force covers into
/// retention under the hold: a hold on whole categories or targets keeps
/// every subject's records there; a hold on a subject keeps the records of
/// a request that shares one of its identities.
pub fn retain_held(
    plan: &mut ErasurePlan,
    holds: &[HoldView<'_>],
    category_of: impl Fn(&str) -> Option<String>,
    subject: &[(IdentityName, String)],
) {
    for step in plan.steps.iter_mut().filter(|s| s.action.searches()) {
        let category = category_of(&step.policy).unwrap_or_default();
        let hold = holds.iter().find(|h| {
            covers(h.spec, &step.policy, &category, &step.target)
                && h.identities.as_deref().is_none_or(|ids| same_subject(ids, subject))
        });
        if let Some(h) = hold {
            step.action = Action::Retain {
                until: h.spec.ends_at.as_ref().map(|t| t.0),
                under: format!("Hold {} ({})", h.name, h.spec.reason.ground()),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(v: serde_json::Value) -> HoldSpec {
        serde_json::from_value(v).unwrap()
    }

    fn id(kind: &str, v: &str) -> (IdentityName, String) {
        (kind.parse().unwrap(), v.to_owned())
    }

    #[test]
    fn a_hold_is_in_force_until_its_end_or_its_deletion() {
        let now: Timestamp = "2026-11-30T12:00:00Z".parse().unwrap();
        let open =
            spec(serde_json::json!({"reason": "LegalClaim", "placedBy": "legal", "scope": {"categories": ["calls"]}}));
        assert!(in_force(&open, false, now));
        assert!(!in_force(&open, true, now), "a deleted hold is ending");
        let ended =
            spec(serde_json::json!({"reason": "LegalClaim", "placedBy": "legal", "scope": {"categories": ["calls"]},
            "endsAt": "2026-11-30T12:00:00Z"}));
        assert!(!in_force(&ended, false, now), "ends at its endsAt");
        assert!(in_force(&ended, false, "2026-11-30T11:59:59Z".parse().unwrap()));
    }

    #[test]
    fn a_scope_names_categories_and_single_targets() {
        let s = spec(serde_json::json!({"reason": "LegalClaim", "placedBy": "legal",
            "scope": {"categories": ["calls"], "targets": [{"policy": "tickets", "target": "db"}]}}));
        assert!(covers(&s, "call-records", "calls", "any"));
        assert!(covers(&s, "tickets", "support", "db"));
        assert!(!covers(&s, "tickets", "support", "files"));
        assert!(!covers(&s, "invoices", "billing", "db"));
        let subject = spec(serde_json::json!({"reason": "Art18AccuracyContested", "placedBy": "dpo",
            "identitySecretRef": {"name": "s"}}));
        assert!(covers(&subject, "invoices", "billing", "db"), "a subject hold without scope covers everything");
    }

    fn step(policy: &str, target: &str) -> super::super::erasure::Step {
        super::super::erasure::Step {
            policy: policy.into(),
            target: target.into(),
            data_store: "crm".into(),
            fields: vec![],
            on_behalf_of: None,
            action: Action::Erase,
        }
    }

    #[test]
    fn an_erasure_retains_what_a_hold_keeps_and_erases_the_rest() {
        let mut plan = ErasurePlan {
            deadline: Timestamp::UNIX_EPOCH,
            steps: vec![step("calls", "recordings"), step("tickets", "db"), step("invoices", "db")],
        };
        let subject_hold = spec(serde_json::json!({"reason": "Art18AccuracyContested", "placedBy": "dpo",
            "identitySecretRef": {"name": "s"}, "scope": {"categories": ["call-recordings"]},
            "endsAt": "2027-01-01T00:00:00Z"}));
        let litigation = spec(serde_json::json!({"reason": "LegalClaim", "placedBy": "legal",
            "scope": {"targets": [{"policy": "tickets", "target": "db"}]}}));
        let someone_else = spec(serde_json::json!({"reason": "LegalClaim", "placedBy": "legal",
            "identitySecretRef": {"name": "t"}}));
        let holds = [
            HoldView { name: "accuracy", spec: &subject_hold, identities: Some(vec![id("email", "jan@example.com")]) },
            HoldView { name: "litigation", spec: &litigation, identities: None },
            HoldView { name: "other", spec: &someone_else, identities: Some(vec![id("email", "piet@example.com")]) },
        ];
        let category = |p: &str| Some(if p == "calls" { "call-recordings" } else { "other" }.to_owned());
        retain_held(&mut plan, &holds, category, &[id("email", "JAN@example.com")]);
        match &plan.steps[0].action {
            Action::Retain { until, under } => {
                assert_eq!(*until, Some("2027-01-01T00:00:00Z".parse().unwrap()));
                assert!(under.contains("Hold accuracy") && under.contains("18(1)(a)"), "{under}");
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(&plan.steps[1].action, Action::Retain { until: None, under } if under.contains("litigation")));
        assert_eq!(plan.steps[2].action, Action::Erase, "no hold keeps this subject's invoices");
    }

    #[test]
    fn a_run_sees_each_hold_on_a_target_by_name() {
        let litigation = spec(serde_json::json!({"reason": "LegalClaim", "placedBy": "legal",
            "scope": {"categories": ["calls"]}}));
        let subject = spec(serde_json::json!({"reason": "Art18LegalClaims", "placedBy": "dpo",
            "identitySecretRef": {"name": "s"}}));
        let holds = [
            HoldView { name: "b-subject", spec: &subject, identities: Some(vec![id("email", "jan@example.com")]) },
            HoldView { name: "a-litigation", spec: &litigation, identities: None },
        ];
        let held = held_at(&holds, "call-records", "calls", "db");
        assert_eq!(held.whole(), Some("a-litigation"));
        assert_eq!(held.subjects().map(|(h, _)| h).collect::<Vec<_>>(), ["b-subject"]);
        let elsewhere = held_at(&holds, "invoices", "billing", "db");
        assert_eq!(elsewhere.whole(), None);
        assert_eq!(elsewhere.subjects().count(), 1);
        let shown = format!("{held:?}");
        assert!(!shown.contains("jan@"), "{shown}");
    }

    #[test]
    fn one_subject_is_recognised_as_its_kind_matches() {
        assert!(same_subject(
            &[id("email", "Jan@Example.com")],
            &[id("phone", "+31612345678"), id("email", "jan@example.COM")]
        ));
        assert!(same_subject(&[id("phone", "+31 6 1234 5678")], &[id("phone", "0031612345678")]));
        assert!(!same_subject(&[id("email", "jan@example.com")], &[id("email", "mary.jan@example.com")]));
        assert!(!same_subject(&[id("customerId", "C-1001")], &[id("accountId", "C-1001")]), "kinds differ");
    }
}
