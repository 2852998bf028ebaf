//! Holds through the operator, against the real API server, PostgreSQL
//! and S3: placing a hold shows what it keeps (counts, digests, never an
//! identity) and seals evidence; retention runs and erasure requests keep
//! what it covers; ending it (deleted, or its end passed) lifts it,
//! records the lifting and releases the records to the next run.
mod support;

use std::time::Duration;

use aws_sdk_s3::types::ObjectLockLegalHoldStatus;
use delenda::api::hold::HoldPhase;
use delenda::api::{Hold, HoldStatus, RetentionPolicy};
use kube::Api;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use support::cluster::{EMAIL, Fixture, table_sql};
use support::{eventually, manifest};

async fn place(f: &Fixture, name: &str, spec: serde_json::Value) {
    let holds: Api<Hold> = f.api();
    holds
        .create(
            &PostParams::default(),
            &manifest(
                json!({"apiVersion": "delenda.dev/v1alpha1", "kind": "Hold", "metadata": {"name": name}, "spec": spec}),
            ),
        )
        .await
        .unwrap();
}

async fn hold_when(f: &Fixture, name: &str, what: &str, done: impl Fn(&HoldStatus) -> bool) -> HoldStatus {
    let holds: Api<Hold> = f.api();
    eventually(what, 60, async || {
        let status = holds.get(name).await.ok()?.status?;
        done(&status).then_some(status)
    })
    .await
}

/// Asks a policy to run now and waits for that run to finish.
async fn run_now(f: &Fixture, policy: &str, token: &str) -> delenda::api::RetentionPolicyStatus {
    let policies: Api<RetentionPolicy> = f.api();
    let patch = json!({"metadata": {"annotations": {"delenda.dev/run-now": token}}});
    policies.patch(policy, &PatchParams::default(), &Patch::Merge(&patch)).await.unwrap();
    f.policy_when(policy, "the run asked for", 90, |s| {
        s.run_now_answered.as_deref() == Some(token) && s.current_run.is_none() && s.last_run.is_some()
    })
    .await
}

/// The subject's rows and others', all long past their two years.
async fn old_table(f: &mut Fixture, subject: i64, others: i64) -> String {
    let table = support::unique("held_calls").replace('-', "_");
    f.sql(&table_sql(&table, subject, others)).await;
    f.sql(&format!("UPDATE {table} SET created_at = '2020-01-01T00:00:00Z'")).await;
    table
}

async fn all_rows(f: &mut Fixture, table: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}"))).fetch_one(&mut f.pg).await.unwrap()
}

fn no_identity_in(what: &str, text: &str) {
    assert!(!text.to_lowercase().contains(EMAIL), "{what} names the subject: {text}");
}

#[tokio::test]
async fn a_hold_on_a_subject_keeps_their_rows_from_runs_and_erasures_until_it_is_deleted() {
    let mut f = Fixture::new("hold-subject", None).await;
    let table = old_table(&mut f, 3, 2).await;
    f.policy("calls", "self", &[("main", &table, "email")]).await;
    f.identity_secret("held-subject", json!({"email": EMAIL})).await;
    f.identity_secret("erase-subject", json!({"email": EMAIL.to_uppercase()})).await;
    place(
        &f,
        "accuracy-contested",
        json!({"identitySecretRef": {"name": "held-subject"},
        "reason": "Art18AccuracyContested", "placedBy": "privacy-office", "reference": "DPO-2026-117"}),
    )
    .await;
    let operator = f.operator(true, Duration::from_secs(2));

    let status = hold_when(&f, "accuracy-contested", "the hold to be placed", |s| {
        s.phase == Some(HoldPhase::Active) && s.evidence_digest.is_some()
    })
    .await;
    assert_eq!(status.held, Some(3));
    assert_eq!((status.targets[0].policy.as_str(), status.targets[0].records), ("calls", Some(3)));
    assert!(status.subject_digests["email"].starts_with("hmac-sha256:"), "{:?}", status.subject_digests);
    let ready = status.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!((ready.status.as_str(), ready.reason.as_str()), ("True", "Holding"));
    no_identity_in("the hold's status", &serde_json::to_string(&status).unwrap());
    let holds: Api<Hold> = f.api();
    let finalizers = holds.get("accuracy-contested").await.unwrap().metadata.finalizers.unwrap_or_default();
    assert!(finalizers.contains(&"delenda.dev/hold-release".to_owned()));

    // A run keeps the subject's rows, counted under the hold.
    let run = run_now(&f, "calls", "t1").await.last_run.unwrap();
    assert_eq!(f.count(&table).await, 3, "the subject's rows are kept");
    assert_eq!(all_rows(&mut f, &table).await, 3, "the others' due rows went");
    let records = &run.targets[0].records;
    assert_eq!((records.deleted, records.held_by("accuracy-contested")), (2, 3), "{records:?}");

    // An erasure request for the same person retains them (Art. 17(3)(e)).
    f.request("erase-anna", "erase-subject", json!({"deleteIdentitySecret": false})).await;
    let erased = f.status_when("erase-anna", "the erasure to complete", 60, |s| s.completed_at.is_some()).await;
    let outcome = &erased.targets[0];
    assert_eq!(outcome.outcome, "Retained", "{outcome:?}");
    assert!(outcome.retained_under.as_deref().unwrap_or_default().contains("Hold accuracy-contested"), "{outcome:?}");
    assert_eq!(f.count(&table).await, 3);

    // Deleting the hold lifts it (the finalizer waits for that), with evidence.
    holds.delete("accuracy-contested", &DeleteParams::default()).await.unwrap();
    eventually("the hold to be gone", 60, async || {
        holds.get_opt("accuracy-contested").await.ok()?.is_none().then_some(())
    })
    .await;
    let chain = delenda::controller::evidence::read_chain(&f.client, &f.ns, "holds").await.unwrap();
    let kinds: Vec<&str> = chain.iter().map(|r| r.record["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["HoldPlaced", "HoldLifted"]);
    assert_eq!(chain[0].record["reason"], "Art18AccuracyContested");
    assert_eq!(chain[0].record["placedBy"], "privacy-office");
    assert_eq!(chain[0].record["targets"][0]["records"], 3);
    no_identity_in(
        "the hold's evidence",
        &serde_json::to_string(&chain.iter().map(|r| &r.record).collect::<Vec<_>>()).unwrap(),
    );

    // Released: the next run deletes them.
    let run = run_now(&f, "calls", "t2").await.last_run.unwrap();
    assert_eq!(run.targets[0].records.deleted, 3);
    assert_eq!(all_rows(&mut f, &table).await, 0);

    for (reason, _, message) in f.event_reasons().await {
        no_identity_in(&format!("Event {reason}"), &message);
    }
    operator.stop().await;
}

#[tokio::test]
async fn a_litigation_hold_keeps_everything_in_its_category_until_its_end_passes() {
    let mut f = Fixture::new("hold-category", None).await;
    let table = old_table(&mut f, 2, 3).await;
    f.policy("calls", "self", &[("main", &table, "email")]).await;
    let other = old_table(&mut f, 1, 1).await;
    f.policy("tickets", "self", &[("main", &other, "email")]).await;
    let ends = jiff::Timestamp::now().checked_add(jiff::SignedDuration::from_secs(40)).unwrap();
    place(
        &f,
        "litigation",
        json!({"scope": {"categories": ["calls"]}, "reason": "LegalClaim",
        "placedBy": "legal-team", "endsAt": ends.to_string()}),
    )
    .await;
    let operator = f.operator(true, Duration::from_secs(2));
    let status = hold_when(&f, "litigation", "the hold to be placed", |s| s.phase == Some(HoldPhase::Active)).await;
    assert_eq!(status.held, Some(5), "every record of the category: {status:?}");

    let run = run_now(&f, "calls", "t1").await.last_run.unwrap();
    assert_eq!(all_rows(&mut f, &table).await, 5, "nothing in the held category goes");
    let records = &run.targets[0].records;
    assert_eq!((records.deleted, records.held_by("litigation"), records.remaining), (0, 5, Some(0)), "{records:?}");
    // Another category is not held.
    run_now(&f, "tickets", "t1").await;
    assert_eq!(all_rows(&mut f, &other).await, 0);

    // The end passes: lifted, and the next run deletes.
    let status = hold_when(&f, "litigation", "the hold to end", |s| s.phase == Some(HoldPhase::Ended)).await;
    assert!(status.lifted_at.is_some());
    let run = run_now(&f, "calls", "t2").await.last_run.unwrap();
    assert_eq!(run.targets[0].records.deleted, 5);
    operator.stop().await;
}

/// The documents of an example file.
fn example(name: &str) -> Vec<serde_json::Value> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/mvs-it").join(name);
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &serde_json::Value| !v.is_null())
        .collect()
}

/// examples/mvs-it/hold.yaml as it stands: a hold on one customer's call
/// recordings (row 11) during a dispute.
#[tokio::test]
async fn the_example_hold_sets_and_lifts_the_s3_legal_hold_on_one_customers_recordings() {
    let f = Fixture::new("hold-s3", None).await;
    let s3 = support::s3::store();
    let bucket = support::s3::new_bucket(&s3, true, true).await;
    let mine = ["customers/C-000777/2026-10-01-call.wav", "customers/C-000777/2026-10-02-call.wav"];
    let other = "customers/C-0007770/2026-10-01-call.wav";
    for k in mine.iter().chain(&[other]) {
        support::s3::put(&s3, &bucket, k).await;
    }
    f.secret(
        "s3-keys",
        json!({"accessKeyId": support::setting("S3_ACCESS_KEY_ID", "the S3 server"),
        "secretAccessKey": support::setting("S3_SECRET_ACCESS_KEY", "the S3 server")}),
    )
    .await;
    let stores: Api<delenda::api::DataStore> = f.api();
    stores
        .create(
            &PostParams::default(),
            &manifest(json!({"apiVersion": "delenda.dev/v1alpha1", "kind": "DataStore", "metadata": {"name": "call-recordings"},
                "spec": {"s3": {"endpoint": support::setting("S3_ENDPOINT", "the S3 server"),
                    "region": support::setting("S3_REGION", "the S3 server"), "pathStyle": true,
                    "credentialsSecret": {"name": "s3-keys"}}}})),
        )
        .await
        .unwrap();
    f.policy_spec(
        "customer-call-recordings",
        json!({"category": "customer-call-recordings", "description": "Recorded calls",
        "responsibleParty": "customer", "legalBasis": "Contract", "retention": {"period": "90d"},
        "schedule": {"cron": "0 3 1 1 *"}, "mode": "Enforce",
        "targets": [{"name": "customer-recordings", "dataStoreRef": {"name": "call-recordings"},
            "objects": {"bucket": bucket, "prefix": "customers/"},
            "subjectFields": [{"identity": "customerId", "keyTemplate": "customers/{customerId}/"}]}]}),
    )
    .await;
    let docs = example("hold.yaml");
    // The Secret as the example's comment creates it.
    f.identity_secret("hold-2026-0007-identities", json!({"customerId": "C-000777"})).await;
    let holds: Api<Hold> = f.api();
    let hold: Hold = manifest(docs[0].clone());
    assert_eq!(hold.spec.identity_secret_ref.as_ref().unwrap().name, "hold-2026-0007-identities");
    let name = hold.metadata.name.clone().unwrap();
    holds.create(&PostParams::default(), &hold).await.unwrap();

    let operator = f.operator(true, Duration::from_secs(2));
    let status = hold_when(&f, &name, "the legal holds to be set", |s| {
        s.phase == Some(HoldPhase::Active) && s.targets.first().is_some_and(|t| t.legal_holds == Some(2))
    })
    .await;
    assert_eq!(status.targets[0].records, Some(2));
    assert_eq!(status.targets[0].legal_hold_digests.len(), 2);
    let shown = serde_json::to_string(&status).unwrap();
    assert!(!shown.contains("C-000777") && !shown.contains("customers/"), "the status names the customer: {shown}");
    // versitygw answers NoSuchObjectLockConfiguration for an object that never had one.
    let on = async |key: &str| match s3.client().get_object_legal_hold().bucket(&bucket).key(key).send().await {
        Ok(out) => out.legal_hold().and_then(|h| h.status()) == Some(&ObjectLockLegalHoldStatus::On),
        Err(e) if format!("{e:?}").contains("NoSuchObjectLockConfiguration") => false,
        Err(e) => panic!("GetObjectLegalHold {key}: {e:?}"),
    };
    for k in mine {
        assert!(on(k).await, "{k}: the server reports the legal hold");
    }
    assert!(!on(other).await, "another customer's recording is not held");

    holds.delete(&name, &DeleteParams::default()).await.unwrap();
    eventually("the hold to be gone", 60, async || holds.get_opt(&name).await.ok()?.is_none().then_some(())).await;
    for k in mine {
        assert!(!on(k).await, "{k}: the legal hold is lifted");
    }
    for (reason, _, message) in f.event_reasons().await {
        assert!(!message.contains("C-000777"), "Event {reason} names the customer: {message}");
    }
    operator.stop().await;
}

#[tokio::test]
async fn a_hold_whose_identities_cannot_be_read_keeps_everything_it_covers() {
    let mut f = Fixture::new("hold-unreadable", None).await;
    let table = old_table(&mut f, 2, 3).await;
    f.policy("calls", "self", &[("main", &table, "email")]).await;
    // Not labelled as an identity Secret: the operator refuses to read it.
    f.secret("not-labelled", json!({"email": EMAIL})).await;
    place(
        &f,
        "objection",
        json!({"identitySecretRef": {"name": "not-labelled"},
        "reason": "Art18ObjectionPending", "placedBy": "privacy-office"}),
    )
    .await;
    let operator = f.operator(true, Duration::from_secs(2));
    let status = hold_when(&f, "objection", "the hold to wait for its identities", |s| {
        s.phase == Some(HoldPhase::Pending) && s.conditions.iter().any(|c| c.type_ == "Stalled" && c.status == "True")
    })
    .await;
    let valid = status.conditions.iter().find(|c| c.type_ == "Valid").unwrap();
    assert_eq!((valid.status.as_str(), valid.reason.as_str()), ("False", "IdentitiesUnreadable"));
    assert!(valid.message.contains("keep everything"), "{}", valid.message);

    let run = run_now(&f, "calls", "t1").await.last_run.unwrap();
    assert_eq!(all_rows(&mut f, &table).await, 5, "fail closed: everything the hold covers is kept");
    assert_eq!(run.targets[0].records.held_by("objection"), 5, "{:?}", run.targets[0].records);
    operator.stop().await;
}

/// A hold whose scope meets no target (a misspelt category) holds nothing:
/// it must say so, Stalled with a Warning, not read as data kept.
#[tokio::test]
async fn a_hold_that_covers_no_target_is_stalled_not_holding() {
    let mut f = Fixture::new("hold-empty", None).await;
    let table = old_table(&mut f, 1, 1).await;
    f.policy("calls", "self", &[("main", &table, "email")]).await;
    place(&f, "typo", json!({"scope": {"categories": ["callz"]}, "reason": "LegalClaim", "placedBy": "legal-team"}))
        .await;
    let operator = f.operator(true, Duration::from_secs(2));
    let status = hold_when(&f, "typo", "the hold to stall", |s| {
        s.conditions.iter().any(|c| c.type_ == "Stalled" && c.status == "True")
    })
    .await;
    let valid = status.conditions.iter().find(|c| c.type_ == "Valid").unwrap();
    assert_eq!((valid.status.as_str(), valid.reason.as_str()), ("False", "NoTargetsInScope"), "{valid:?}");
    assert!(!status.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"), "{status:?}");
    assert_eq!(status.held, Some(0));
    operator.stop().await;
}
