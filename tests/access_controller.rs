//! Access requests through the operator, against the real API server,
//! PostgreSQL and the S3 server (versitygw): a request exports exactly the
//! subject's rows to the installation's bucket, one document per target
//! and a manifest, with status carrying counts, digests, the deadline and
//! the location; without a destination, with a too-short identity or over
//! the record limit nothing is exported and status says why; an expired
//! export is deleted, read back by listing, with evidence. No identity
//! appears in status, Events or evidence.
mod support;

use std::sync::Arc;
use std::time::Duration;

use delenda::api::access::AccessPhase;
use delenda::api::{AccessRequest, AccessRequestStatus};
use delenda::engine::export::{ExportDestination, ExportSettings};
use delenda::stores::objects::BucketStore;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use support::cluster::{EMAIL, Fixture, table_sql};
use support::{eventually, manifest};

async fn file(f: &Fixture, name: &str, secret: &str, extra: Value) {
    let mut spec = json!({"identitySecretRef": {"name": secret}, "receivedAt": "2026-11-30T09:00:00Z",
        "identityVerification": {"verifiedBy": "privacy-office", "method": "KnownContactChannel"}});
    for (k, v) in extra.as_object().unwrap() {
        spec[k] = v.clone();
    }
    let requests: Api<AccessRequest> = f.api();
    requests
        .create(
            &PostParams::default(),
            &manifest(json!({"apiVersion": "delenda.dev/v1alpha1", "kind": "AccessRequest",
                "metadata": {"name": name}, "spec": spec})),
        )
        .await
        .unwrap();
}

async fn request_when(
    f: &Fixture,
    name: &str,
    what: &str,
    done: impl Fn(&AccessRequestStatus) -> bool,
) -> (AccessRequest, AccessRequestStatus) {
    let requests: Api<AccessRequest> = f.api();
    eventually(what, 90, async || {
        let request = requests.get(name).await.ok()?;
        let status = request.status.clone()?;
        done(&status).then_some((request, status))
    })
    .await
}

fn destination(bucket: &str, ttl_days: u32) -> Arc<ExportDestination> {
    Arc::new(ExportDestination::new(ExportSettings {
        s3: support::s3::settings(),
        bucket: bucket.to_owned(),
        prefix: "exports/".to_owned(),
        ttl_days,
    }))
}

/// The operator with an export destination (or none).
fn operator(f: &Fixture, export: Option<Arc<ExportDestination>>) -> support::cluster::Operator {
    let mut settings = f.settings(true, Duration::from_secs(2));
    settings.export = export;
    f.operator_with(settings)
}

async fn get(s3: &BucketStore, bucket: &str, key: &str) -> Vec<u8> {
    let out = s3.client().get_object().bucket(bucket).key(key).send().await.unwrap();
    out.body.collect().await.unwrap().into_bytes().to_vec()
}

fn condition<'a>(
    status: &'a AccessRequestStatus,
    type_: &str,
) -> &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    status.conditions.iter().find(|c| c.type_ == type_).unwrap_or_else(|| panic!("no {type_} condition: {status:?}"))
}

fn no_identity_in(what: &str, text: &str) {
    assert!(!text.to_lowercase().contains(EMAIL), "{what} names the subject: {text}");
    assert!(!text.contains("de.vries"), "{what} names the subject: {text}");
}

async fn no_identity_in_events(f: &Fixture) {
    for (reason, _, message) in f.event_reasons().await {
        no_identity_in(&format!("Event {reason}"), &message);
    }
}

/// Files request `anna` for Secret `subject`, runs the operator with a
/// fresh bucket as the destination, and waits for the export to complete:
/// the S3 client, the bucket, the running operator, the export's prefix
/// and the request's status.
async fn completed_export(
    f: &Fixture,
) -> (BucketStore, String, support::cluster::Operator, String, AccessRequestStatus) {
    let s3 = support::s3::store();
    let bucket = support::s3::new_bucket(&s3, false, false).await;
    file(f, "anna", "subject", json!({})).await;
    let operator = operator(f, Some(destination(&bucket, 30)));
    let (request, status) =
        request_when(f, "anna", "the export to complete", |s| s.phase == Some(AccessPhase::Completed)).await;
    let uid = request.metadata.uid.clone().unwrap();
    let prefix = format!("exports/{}/anna/{uid}/", f.ns);
    (s3, bucket, operator, prefix, status)
}

/// A table of the subject's rows (3) and others' (2), a policy over it,
/// and the subject's identity Secret.
async fn contacts(f: &mut Fixture, secret_email: &str) -> String {
    let table = support::unique("contacts").replace('-', "_");
    f.sql(&table_sql(&table, 3, 2)).await;
    f.policy("contact-persons", "self", &[("crm", &table, "email")]).await;
    f.identity_secret("subject", json!({"email": secret_email})).await;
    table
}

#[tokio::test]
async fn a_request_exports_exactly_the_subjects_rows_with_digests_in_status() {
    let mut f = Fixture::new("access-done", None).await;
    let table = contacts(&mut f, &EMAIL.to_uppercase()).await;
    let (s3, bucket, operator, prefix, status) = completed_export(&f).await;
    let export = status.export.clone().unwrap();
    assert_eq!((export.bucket.as_str(), export.prefix.as_str()), (bucket.as_str(), prefix.as_str()));
    assert_eq!((status.records, status.unreadable), (Some(3), Some(0)));
    assert_eq!(status.deadline.as_ref().unwrap().0, "2026-12-30T09:00:00Z".parse().unwrap(), "one month after receipt");
    let completed = status.completed_at.as_ref().unwrap().0;
    assert_eq!(
        status.expires_at.as_ref().unwrap().0,
        completed.checked_add(jiff::SignedDuration::from_hours(30 * 24)).unwrap()
    );
    assert!(status.subject_digests["email"].starts_with("hmac-sha256:"), "{:?}", status.subject_digests);
    let ready = condition(&status, "Ready");
    assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("True", "Completed"));
    assert_eq!(condition(&status, "EvidenceStored").status, "True");

    // The bucket holds the target's document and the manifest, nothing else.
    let keys = support::s3::keys(&s3, &bucket).await;
    let document_key = format!("{prefix}contact-persons--crm.json");
    let manifest_key = format!("{prefix}manifest.json");
    assert_eq!(keys, [document_key.clone(), manifest_key.clone()].into());
    let target = &status.targets[0];
    assert_eq!(
        (target.outcome.as_str(), target.records, target.object.as_deref()),
        ("Exported", 3, Some(document_key.as_str()))
    );
    let bytes = get(&s3, &bucket, &document_key).await;
    assert_eq!(
        target.digest.as_deref(),
        Some(delenda::plan::access::sha256(&bytes).as_str()),
        "status names the document's SHA-256"
    );
    let document: Value = serde_json::from_slice(&bytes).unwrap();
    let ids: Vec<i64> = document["records"].as_array().unwrap().iter().map(|r| r["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, [1, 2, 3], "exactly the subject's rows");
    assert!(document["records"].as_array().unwrap().iter().all(|r| r["email"] == EMAIL));
    assert_eq!(document["category"], "contact-persons");
    assert_eq!(document["legalBasis"]["basis"], "Contract");
    assert_eq!(document["retentionPeriod"]["period"], "2y");
    assert_eq!(
        document["source"],
        json!({"retentionPolicy": "contact-persons", "dataStore": "crm", "storeKind": "postgres", "target": "crm"})
    );
    let manifest_bytes = get(&s3, &bucket, &manifest_key).await;
    assert_eq!(export.manifest_digest.as_deref(), Some(delenda::plan::access::sha256(&manifest_bytes).as_str()));
    let manifest: Value = serde_json::from_slice(&manifest_bytes).unwrap();
    assert_eq!(manifest["files"][0]["sha256"].as_str(), target.digest.as_deref());
    assert_eq!(manifest["files"][0]["records"], 3);
    assert_eq!(f.count(&table).await, 3, "an access request deletes nothing");

    // Evidence: the export sealed on the access chain, by digests.
    let chain = delenda::controller::evidence::read_chain(&f.client, &f.ns, "access-requests").await.unwrap();
    assert_eq!(chain.len(), 1);
    assert_eq!(chain[0].record["kind"], "AccessExported");
    assert_eq!(chain[0].record["targets"][0]["sha256"].as_str(), target.digest.as_deref());
    assert_eq!(status.evidence_digest.as_deref(), Some(chain[0].digest.to_string().as_str()));
    no_identity_in("the request's status", &serde_json::to_string(&status).unwrap());
    no_identity_in("the access evidence", &serde_json::to_string(&chain[0].record).unwrap());
    no_identity_in_events(&f).await;
    assert!(f.event_reasons().await.iter().any(|(r, _, _)| r == "AccessExported"));
    operator.stop().await;
}

/// A target with a declared child table: the child's rows that refer to
/// the subject's rows go into the target's document under
/// `relatedRecords`, and status and the manifest count them.
#[tokio::test]
async fn a_tables_declared_children_are_exported_with_its_rows() {
    let mut f = Fixture::new("access-kids", None).await;
    let table = support::unique("contacts").replace('-', "_");
    let notes = format!("{table}_notes");
    f.sql(&table_sql(&table, 2, 1)).await;
    f.sql(&format!(
        "CREATE TABLE {notes} (id bigint PRIMARY KEY, contact_id bigint REFERENCES {table} (id), body text);
         INSERT INTO {notes} VALUES (10, 2, 'called about the invoice'), (11, 3, 'another customer'), (12, 1, 'moved');"
    ))
    .await;
    f.policy_spec(
        "contact-persons",
        json!({"category": "contact-persons", "description": "Contact persons", "responsibleParty": "self",
            "legalBasis": "Contract", "retention": {"period": "2y"},
            "schedule": {"cron": "0 3 1 1 *", "timeZone": "Europe/Amsterdam"}, "mode": "Enforce",
            "targets": [{"name": "crm", "dataStoreRef": {"name": "crm"},
                "table": {"name": table, "timeColumn": "created_at",
                    "children": [{"name": notes, "foreignKey": "contact_id"}]},
                "subjectFields": [{"identity": "email", "field": "email"}]}]}),
    )
    .await;
    f.identity_secret("subject", json!({"email": EMAIL})).await;
    let (s3, bucket, operator, prefix, status) = completed_export(&f).await;
    assert_eq!(status.records, Some(4), "two rows and two notes of theirs");
    assert_eq!(status.targets[0].records, 4);
    let document: Value =
        serde_json::from_slice(&get(&s3, &bucket, &format!("{prefix}contact-persons--crm.json")).await).unwrap();
    assert_eq!(document["recordCount"], 2);
    let related = &document["relatedRecords"];
    assert_eq!(
        (related[0]["table"].as_str(), related[0]["foreignKey"].as_str(), related[0]["parentKey"].as_str()),
        (Some(notes.as_str()), Some("contact_id"), Some("id"))
    );
    assert_eq!(
        related[0]["records"],
        json!([{"id": 10, "contact_id": 2, "body": "called about the invoice"}, {"id": 12, "contact_id": 1, "body": "moved"}]),
        "the notes of the subject's rows, none of another's"
    );
    let manifest: Value = serde_json::from_slice(&get(&s3, &bucket, &format!("{prefix}manifest.json")).await).unwrap();
    assert_eq!(manifest["files"][0]["records"], 4);
    no_identity_in("the request's status", &serde_json::to_string(&status).unwrap());
    operator.stop().await;
}

#[tokio::test]
async fn without_a_destination_a_request_waits_and_says_why() {
    let mut f = Fixture::new("access-nodest", None).await;
    contacts(&mut f, EMAIL).await;
    file(&f, "anna", "subject", json!({})).await;
    let operator = operator(&f, None);
    let (_, status) = request_when(&f, "anna", "the request to wait", |s| s.phase == Some(AccessPhase::Pending)).await;
    let valid = condition(&status, "Valid");
    assert_eq!((valid.status.as_str(), valid.reason.as_str()), ("False", "NoExportDestination"));
    assert!(valid.message.contains("--access-export-bucket"), "{}", valid.message);
    assert_eq!(condition(&status, "Stalled").status, "True");
    assert!(status.export.is_none() && status.records.is_none());
    eventually("the NoExportDestination Event", 30, async || {
        f.event_reasons().await.iter().any(|(r, t, _)| r == "NoExportDestination" && t == "Warning").then_some(())
    })
    .await;
    operator.stop().await;
}

#[tokio::test]
async fn a_too_short_identity_is_refused_and_nothing_is_exported() {
    let mut f = Fixture::new("access-short", None).await;
    let table = support::unique("contacts").replace('-', "_");
    f.sql(&table_sql(&table, 3, 2)).await;
    // A customer id of one character would name everyone whose id holds it.
    f.policy("contact-persons", "self", &[("crm", &table, "customerId")]).await;
    f.identity_secret("subject", json!({"customerId": "7"})).await;
    let s3 = support::s3::store();
    let bucket = support::s3::new_bucket(&s3, false, false).await;
    file(&f, "short", "subject", json!({})).await;
    let operator = operator(&f, Some(destination(&bucket, 30)));
    let (_, status) = request_when(&f, "short", "the identity to be refused", |s| {
        s.conditions.iter().any(|c| c.type_ == "Valid" && c.reason == "InvalidIdentity")
    })
    .await;
    assert_eq!(status.phase, Some(AccessPhase::Pending));
    let valid = condition(&status, "Valid");
    assert!(valid.message.contains("customerId identity is shorter than 2 characters"), "{}", valid.message);
    assert_eq!(condition(&status, "Stalled").status, "True");
    assert!(status.targets.is_empty() && status.export.is_none());
    assert!(support::s3::keys(&s3, &bucket).await.is_empty(), "nothing exported");
    eventually("the InvalidIdentity Event", 30, async || {
        f.event_reasons().await.iter().any(|(r, t, _)| r == "InvalidIdentity" && t == "Warning").then_some(())
    })
    .await;
    operator.stop().await;
}

#[tokio::test]
async fn over_the_record_limit_the_request_fails_and_writes_nothing() {
    let mut f = Fixture::new("access-limit", None).await;
    contacts(&mut f, EMAIL).await;
    let s3 = support::s3::store();
    let bucket = support::s3::new_bucket(&s3, false, false).await;
    file(&f, "anna", "subject", json!({"maxRecords": 2})).await;
    let operator = operator(&f, Some(destination(&bucket, 30)));
    let (_, status) = request_when(&f, "anna", "the guardrail", |s| s.phase == Some(AccessPhase::Failed)).await;
    let valid = condition(&status, "Valid");
    assert_eq!((valid.status.as_str(), valid.reason.as_str()), ("False", "GuardrailReached"));
    assert!(valid.message.contains("3 records") && valid.message.contains("(2"), "{}", valid.message);
    assert_eq!(condition(&status, "Stalled").status, "True");
    assert!(status.export.is_none());
    assert!(support::s3::keys(&s3, &bucket).await.is_empty(), "nothing written");
    let chain = delenda::controller::evidence::read_chain(&f.client, &f.ns, "access-requests").await.unwrap();
    assert!(chain.is_empty(), "nothing exported, nothing sealed");
    no_identity_in_events(&f).await;
    operator.stop().await;
}

#[tokio::test]
async fn an_expired_export_is_deleted_read_back_and_sealed() {
    expiry_deletes_the_export(false).await;
}

/// In a bucket that keeps versions, deleting the current objects would
/// leave the export's data in noncurrent versions: every version below the
/// prefix goes, and the read-back lists versions.
#[tokio::test]
async fn an_expired_export_in_a_versioned_bucket_leaves_no_version() {
    expiry_deletes_the_export(true).await;
}

async fn expiry_deletes_the_export(versioned: bool) {
    let mut f = Fixture::new("access-expiry", None).await;
    contacts(&mut f, EMAIL).await;
    let s3 = support::s3::store();
    let bucket = support::s3::new_bucket(&s3, versioned, false).await;
    // Another request's export in the same bucket stays.
    support::s3::put(&s3, &bucket, "exports/other/request/uid/manifest.json").await;
    file(&f, "anna", "subject", json!({})).await;
    // A TTL of zero days: the export expires as soon as it is complete.
    let operator = operator(&f, Some(destination(&bucket, 0)));
    let (_, status) = request_when(&f, "anna", "the export to expire", |s| s.phase == Some(AccessPhase::Expired)).await;
    let prefix = status.export.as_ref().unwrap().prefix.clone();
    let keys = support::s3::keys(&s3, &bucket).await;
    assert!(keys.iter().all(|k| !k.starts_with(&prefix)), "the export is gone: {keys:?}");
    assert_eq!(keys, ["exports/other/request/uid/manifest.json".to_owned()].into(), "nothing else was touched");
    let versions = support::s3::versions(&s3, &bucket).await;
    let left: Vec<_> = versions.iter().filter(|(k, _, _)| k.starts_with(&prefix)).collect();
    assert!(left.is_empty(), "no version or delete marker of the export is left: {left:?}");
    assert_eq!(versions.len(), 1, "the other export's object keeps its version: {versions:?}");
    let deleted = condition(&status, "ExportDeleted");
    assert_eq!((deleted.status.as_str(), deleted.reason.as_str()), ("True", "Deleted"));
    assert!(deleted.message.contains("2 objects"), "{}", deleted.message);
    assert!(status.export_deleted_at.is_some());
    assert_eq!(condition(&status, "Ready").reason, "Expired");
    let chain = delenda::controller::evidence::read_chain(&f.client, &f.ns, "access-requests").await.unwrap();
    let kinds: Vec<&str> = chain.iter().map(|r| r.record["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["AccessExported", "AccessExportDeleted"]);
    assert_eq!((chain[1].record["objectsDeleted"].as_u64(), chain[1].record["remaining"].as_u64()), (Some(2), Some(0)));
    assert_eq!(status.evidence_digest.as_deref(), Some(chain[1].digest.to_string().as_str()));
    no_identity_in("the request's status", &serde_json::to_string(&status).unwrap());
    no_identity_in_events(&f).await;
    operator.stop().await;
}

#[tokio::test]
async fn an_export_that_cannot_be_deleted_stays_completed_and_says_so_until_it_can() {
    let mut f = Fixture::new("access-stuck", None).await;
    contacts(&mut f, EMAIL).await;
    let s3 = support::s3::store();
    let bucket = support::s3::new_bucket(&s3, false, false).await;
    file(&f, "anna", "subject", json!({})).await;
    // The export lands in one bucket; the installation then moves to
    // another, where this export cannot be found to delete.
    let first = operator(&f, Some(destination(&bucket, 30)));
    let (_, status) = request_when(&f, "anna", "the export", |s| s.phase == Some(AccessPhase::Completed)).await;
    first.stop().await;
    let prefix = status.export.unwrap().prefix;
    // Thirty days pass (the test moves the expiry, not the clock).
    let requests: Api<AccessRequest> = f.api();
    let past = json!({"status": {"expiresAt": "2026-01-01T00:00:00Z"}});
    requests.patch_status("anna", &PatchParams::default(), &Patch::Merge(&past)).await.unwrap();
    let elsewhere = support::s3::new_bucket(&s3, false, false).await;
    let moved = operator(&f, Some(destination(&elsewhere, 30)));
    let (_, status) = request_when(&f, "anna", "the failed deletion", |s| {
        s.conditions.iter().any(|c| c.type_ == "ExportDeleted" && c.status == "False")
    })
    .await;
    moved.stop().await;
    assert_eq!(status.phase, Some(AccessPhase::Completed));
    let deleted = condition(&status, "ExportDeleted");
    assert_eq!(deleted.reason, "ExportNotDeleted");
    assert!(deleted.message.contains(&bucket), "{}", deleted.message);
    assert_eq!(condition(&status, "Reconciling").status, "True");
    assert!(support::s3::keys(&s3, &bucket).await.iter().any(|k| k.starts_with(&prefix)), "still there");
    // Back on the right bucket, it is deleted.
    let back = operator(&f, Some(destination(&bucket, 30)));
    request_when(&f, "anna", "the export to expire", |s| s.phase == Some(AccessPhase::Expired)).await;
    assert!(support::s3::keys(&s3, &bucket).await.is_empty());
    back.stop().await;
}

/// Status is not the operator's alone to write: an expiry deletes only
/// below a prefix that names the request's own uid, whatever status says.
#[tokio::test]
async fn an_expiry_deletes_nothing_when_status_points_at_another_prefix() {
    let mut f = Fixture::new("access-prefix", None).await;
    contacts(&mut f, EMAIL).await;
    let s3 = support::s3::store();
    let bucket = support::s3::new_bucket(&s3, false, false).await;
    support::s3::put(&s3, &bucket, "exports/other/request/uid/manifest.json").await;
    file(&f, "anna", "subject", json!({})).await;
    let first = operator(&f, Some(destination(&bucket, 30)));
    let (_, status) = request_when(&f, "anna", "the export", |s| s.phase == Some(AccessPhase::Completed)).await;
    first.stop().await;
    let own = status.export.as_ref().unwrap().prefix.clone();
    // Someone points the export at every export and lets it expire.
    let requests: Api<AccessRequest> = f.api();
    let rewritten =
        json!({"status": {"expiresAt": "2026-01-01T00:00:00Z", "export": {"bucket": bucket, "prefix": "exports/"}}});
    requests.patch_status("anna", &PatchParams::default(), &Patch::Merge(&rewritten)).await.unwrap();
    let before = support::s3::keys(&s3, &bucket).await;
    let second = operator(&f, Some(destination(&bucket, 30)));
    let (_, status) = request_when(&f, "anna", "the refused deletion", |s| {
        s.conditions.iter().any(|c| c.type_ == "ExportDeleted" && c.status == "False")
    })
    .await;
    second.stop().await;
    assert_eq!(status.phase, Some(AccessPhase::Completed));
    let deleted = condition(&status, "ExportDeleted");
    assert!(deleted.message.contains("not this request's"), "{}", deleted.message);
    assert_eq!(support::s3::keys(&s3, &bucket).await, before, "nothing was deleted");
    assert!(before.contains("exports/other/request/uid/manifest.json") && before.iter().any(|k| k.starts_with(&own)));
}

/// examples/mvs-it/access-request.yaml as it stands, against a contact
/// person's rows (row 1, contact-persons) in PostgreSQL.
#[tokio::test]
async fn the_example_access_request_exports_a_contact_persons_rows() {
    let mut f = Fixture::new("access-example", None).await;
    let table = support::unique("contact_persons").replace('-', "_");
    f.sql(&table_sql(&table, 2, 3)).await;
    f.policy("contact-persons", "self", &[("contact-persons", &table, "email")]).await;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/mvs-it/access-request.yaml");
    let docs = support::yaml_documents(&path);
    assert_eq!(docs.len(), 1, "one AccessRequest");
    let request: AccessRequest = manifest(docs[0].clone());
    let name = request.metadata.name.clone().unwrap();
    assert!(request.spec.scope.as_ref().unwrap().categories.iter().any(|c| c.as_str() == "contact-persons"));
    // The Secret as the example's comment creates it, with the test's subject.
    f.identity_secret(&request.spec.identity_secret_ref.name, json!({"email": EMAIL, "phone": "+31600000001"})).await;
    let requests: Api<AccessRequest> = f.api();
    requests.create(&PostParams::default(), &request).await.unwrap();
    let s3 = support::s3::store();
    let bucket = support::s3::new_bucket(&s3, false, false).await;
    let operator = operator(&f, Some(destination(&bucket, 30)));
    let (_, status) =
        request_when(&f, &name, "the example's export", |s| s.phase == Some(AccessPhase::Completed)).await;
    assert_eq!(status.records, Some(2));
    assert_eq!(status.deadline.as_ref().unwrap().0, "2026-12-16T14:05:00Z".parse().unwrap());
    let target = &status.targets[0];
    assert_eq!((target.policy.as_str(), target.outcome.as_str(), target.records), ("contact-persons", "Exported", 2));
    assert_eq!(support::s3::keys(&s3, &bucket).await.len(), 2, "the document and the manifest");
    operator.stop().await;
}
