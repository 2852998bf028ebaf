//! Planning an access request (GDPR Art. 15 and 20): which targets are in
//! scope (the same scope an erasure request has), where its export goes,
//! what each target's export document says about the records besides the
//! records themselves, and when the export expires.
//!
//! The steps are an erasure plan's, read differently: a step whose action
//! [`Action::searches`] is read and exported (data under a legal
//! obligation is as much the subject's as any, so nothing is retained
//! here); a skipped or unsearched step is reported as such.

use std::collections::{BTreeMap, BTreeSet};

use jiff::{Timestamp, ToSpan};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::erasure::{Action, PolicyView, RequestScope, Step, steps};
use crate::api::IdentityName;
use crate::api::access::AccessRequestSpec;
use crate::api::policy::{LegalBasis, ResponsibleParty, RetentionPolicySpec};
use crate::stores::SubjectExport;

/// The targets of an access request: those declaring an identity the
/// request gives are read, the others listed as not searched or skipped.
pub fn plan(
    request: &AccessRequestSpec,
    policies: &[PolicyView<'_>],
    identities: &BTreeSet<IdentityName>,
) -> Vec<Step> {
    let scope = RequestScope { scope: request.scope.as_ref(), on_behalf_of: request.on_behalf_of.as_deref() };
    steps(&scope, policies, identities, |_| Action::Erase)
}

/// Where one request's export lies in the bucket:
/// `<prefix><namespace>/<request>/<uid>/`. The uid keeps a request filed
/// again under the same name from meeting the old one's objects.
pub fn export_prefix(prefix: &str, namespace: &str, request: &str, uid: &str) -> String {
    let base = match prefix.trim_start_matches('/') {
        "" => String::new(),
        p if p.ends_with('/') => p.to_owned(),
        p => format!("{p}/"),
    };
    format!("{base}{namespace}/{request}/{uid}/")
}

/// The object name of a target's export document below the request's prefix.
pub fn target_object(prefix: &str, policy: &str, target: &str) -> String {
    format!("{prefix}{policy}--{target}.json")
}

/// The object name of the export's manifest.
pub fn manifest_object(prefix: &str) -> String {
    format!("{prefix}manifest.json")
}

/// When an export completed at `completed` expires.
pub fn expires_at(completed: Timestamp, ttl_days: u32) -> Timestamp {
    completed.checked_add((i64::from(ttl_days) * 24).hours()).unwrap_or(Timestamp::MAX)
}

/// What the lawful basis means, in the words of Art. 6(1).
pub fn legal_basis_in_words(basis: LegalBasis) -> &'static str {
    match basis {
        LegalBasis::Consent => "consent (GDPR Art. 6(1)(a))",
        LegalBasis::Contract => "performance of a contract (GDPR Art. 6(1)(b))",
        LegalBasis::LegalObligation => "a legal obligation (GDPR Art. 6(1)(c))",
        LegalBasis::VitalInterests => "vital interests (GDPR Art. 6(1)(d))",
        LegalBasis::PublicTask => "a task in the public interest (GDPR Art. 6(1)(e))",
        LegalBasis::LegitimateInterests => "legitimate interests (GDPR Art. 6(1)(f))",
    }
}

/// One target's export document, shaped after Art. 15(1) GDPR: the
/// purposes, the category, the legal basis, how long the data is kept,
/// who decides about it, where it comes from, and the records. `store` is
/// the DataStore's name and kind.
pub fn target_document(
    policy_name: &str,
    policy: &RetentionPolicySpec,
    target: &str,
    store: (&str, &str),
    export: &SubjectExport,
) -> Value {
    let mut document = json!({
        "category": policy.category.as_str(),
        "description": policy.description,
        "purposes": policy.purpose.as_ref().map_or_else(|| vec![policy.description.clone()], |p| vec![p.clone()]),
        "legalBasis": {
            "basis": policy.legal_basis,
            "inWords": legal_basis_in_words(policy.legal_basis),
        },
        "retentionPeriod": {
            "period": policy.retention.period.to_string(),
            "inWords": format!("{}, counted from each record's time", policy.retention.period.in_words()),
        },
        "controller": match policy.responsible_party {
            ResponsibleParty::SelfOwned => json!({"responsibleParty": "self"}),
            ResponsibleParty::Customer => json!({"responsibleParty": "customer", "customer": policy.customer}),
        },
        "source": {
            "retentionPolicy": policy_name,
            "dataStore": store.0,
            "storeKind": store.1,
            "target": target,
        },
        "recordCount": export.records.len(),
        "unreadable": export.unreadable,
        "records": export.records,
    });
    // A table's declared children: their rows that refer to the records
    // above go with them (an erasure deletes them together).
    if !export.related.is_empty() {
        document["relatedRecords"] = export
            .related
            .iter()
            .map(|r| {
                json!({
                    "table": r.table,
                    "foreignKey": r.foreign_key,
                    "parentKey": r.parent_key,
                    "recordCount": r.records.len(),
                    "records": r.records,
                })
            })
            .collect();
    }
    document
}

/// A document's bytes as written: pretty JSON with a final newline.
pub fn document_bytes(document: &Value) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(document).expect("a JSON value serializes");
    bytes.push(b'\n');
    bytes
}

/// The SHA-256 of bytes, in hex.
pub fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// One file of the export, for the manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportFile {
    /// The object name.
    pub object: String,
    /// The policy and target it comes from.
    pub policy: String,
    /// The target.
    pub target: String,
    /// SHA-256 of its bytes.
    pub digest: String,
    /// Records in it.
    pub records: u64,
    /// Records that matched but could not be read.
    pub unreadable: u64,
}

/// The manifest: every file of the export with its digest and counts,
/// and what was in scope but gave no file.
pub fn manifest(
    request: &str,
    received_at: Timestamp,
    exported_at: Timestamp,
    files: &[ExportFile],
    not_exported: &BTreeMap<String, String>,
) -> Value {
    json!({
        "request": request,
        "receivedAt": received_at.to_string(),
        "exportedAt": exported_at.to_string(),
        "format": "One JSON document per target: the purposes, category, legal basis, retention period, controller and source of the records (GDPR Art. 15(1)), and the records themselves with the store's own field names (Art. 20).",
        "files": files.iter().map(|f| json!({
            "object": f.object,
            "policy": f.policy,
            "target": f.target,
            "sha256": f.digest,
            "records": f.records,
            "unreadable": f.unreadable,
        })).collect::<Vec<_>>(),
        "notExported": not_exported,
    })
}

/// Why a step gives no file, for status and the manifest.
pub fn not_exported_reason(step: &Step) -> Option<String> {
    match &step.action {
        Action::Skip { reason } | Action::NotSearched { reason } => Some(reason.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stores::RelatedRecords;

    fn policy() -> RetentionPolicySpec {
        serde_json::from_value(json!({
            "category": "contact-persons", "description": "Contact persons of business customers",
            "responsibleParty": "self", "legalBasis": "Contract", "purpose": "managing the customer relationship",
            "retention": {"period": "2y"}, "schedule": {"cron": "0 3 * * *"},
            "targets": [{"name": "crm", "dataStoreRef": {"name": "crm"},
                "table": {"name": "contacts", "timeColumn": "updated_at"},
                "subjectFields": [{"identity": "email", "field": "email"}]}]
        }))
        .unwrap()
    }

    #[test]
    fn objects_lie_below_the_request_and_its_uid() {
        let prefix = export_prefix("exports", "crm", "req-1", "0f1e");
        assert_eq!(prefix, "exports/crm/req-1/0f1e/");
        assert_eq!(export_prefix("/exports/", "crm", "r", "u"), "exports/crm/r/u/");
        assert_eq!(export_prefix("", "crm", "r", "u"), "crm/r/u/");
        assert_eq!(target_object(&prefix, "contacts", "crm"), "exports/crm/req-1/0f1e/contacts--crm.json");
        assert_eq!(manifest_object(&prefix), "exports/crm/req-1/0f1e/manifest.json");
    }

    #[test]
    fn the_document_says_what_article_15_lists() {
        let export = SubjectExport { records: vec![json!({"id": 1})], unreadable: 2, ..SubjectExport::default() };
        let doc = target_document("contacts", &policy(), "crm", ("crm-db", "postgres"), &export);
        assert_eq!(doc["purposes"], json!(["managing the customer relationship"]));
        assert_eq!(doc["category"], "contact-persons");
        assert_eq!(doc["legalBasis"]["basis"], "Contract");
        assert_eq!(doc["retentionPeriod"]["inWords"], "2 years, counted from each record's time");
        assert_eq!(
            doc["source"],
            json!({"retentionPolicy": "contacts", "dataStore": "crm-db", "storeKind": "postgres", "target": "crm"})
        );
        assert_eq!((doc["recordCount"].as_u64(), doc["unreadable"].as_u64()), (Some(1), Some(2)));
        assert_eq!(doc["records"], json!([{"id": 1}]));
        assert!(doc.get("relatedRecords").is_none(), "only a table with children has related records");
    }

    #[test]
    fn a_tables_children_go_with_its_rows() {
        let export = SubjectExport {
            records: vec![json!({"id": 1})],
            related: vec![
                RelatedRecords {
                    table: "notes".into(),
                    foreign_key: "contact_id".into(),
                    parent_key: "id".into(),
                    records: vec![json!({"id": 7, "contact_id": 1}), json!({"id": 8, "contact_id": 1})],
                },
                RelatedRecords {
                    table: "calls".into(),
                    foreign_key: "contact_id".into(),
                    parent_key: "id".into(),
                    records: vec![],
                },
            ],
            unreadable: 0,
        };
        let doc = target_document("contacts", &policy(), "crm", ("crm-db", "postgres"), &export);
        assert_eq!(doc["recordCount"], 1);
        assert_eq!(
            doc["relatedRecords"],
            json!([
                {"table": "notes", "foreignKey": "contact_id", "parentKey": "id", "recordCount": 2,
                 "records": [{"id": 7, "contact_id": 1}, {"id": 8, "contact_id": 1}]},
                {"table": "calls", "foreignKey": "contact_id", "parentKey": "id", "recordCount": 0, "records": []}
            ])
        );
    }

    #[test]
    fn an_export_expires_its_ttl_after_completion() {
        let done: Timestamp = "2026-11-30T10:00:00Z".parse().unwrap();
        assert_eq!(expires_at(done, 30), "2026-12-30T10:00:00Z".parse().unwrap());
        assert_eq!(expires_at(done, 0), done);
    }

    #[test]
    fn digests_are_of_the_bytes_written() {
        let bytes = document_bytes(&json!({"a": 1}));
        assert_eq!(bytes, b"{\n  \"a\": 1\n}\n");
        assert_eq!(sha256(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
