//! What real buckets hold, against the real S3 server (versitygw): versions
//! of a live key, objects under lock and legal hold, keys the server cannot
//! list exactly, keys outside the date pattern, objects rewritten or removed
//! while a run works. Each test is one situation a user met (issue 10), and
//! says what the store must do with it: delete, keep, or count.
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{ObjectLockLegalHoldStatus, ObjectLockMode};
use delenda::api::account::{RetainReason, UnreadableReason};
use delenda::api::{IdentityName, Mode, RetentionPolicySpec};
use delenda::engine::connect::StoreHandle;
use delenda::engine::erase::{ErasureJob, run_erasure};
use delenda::engine::run::Stores;
use delenda::plan::erasure::{PolicyView, plan};
use delenda::stores::objects::{BucketStore, S3Settings};
use delenda::stores::{Cutoff, PurgeOptions, Store, Subject};
use jiff::Timestamp;
use serde_json::json;
use support::s3::{SERVER, keys, new_bucket, put, settings, store, target, versions};

fn enforce() -> PurgeOptions {
    PurgeOptions::new(Mode::Enforce)
}

fn cutoff_at(at: Timestamp) -> Cutoff {
    Cutoff::planned(at, Timestamp::now().max(at)).unwrap()
}

/// Waits so that objects written before and after have different times
/// (S3 keeps whole seconds).
async fn tick() -> Timestamp {
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let at = Timestamp::now();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    at
}

#[tokio::test]
async fn a_noncurrent_version_goes_once_it_has_been_replaced_for_the_period() {
    // A profile rewritten now and then: each old version is due by when it
    // was replaced, as S3's own NoncurrentVersionExpiration counts, not by
    // the age of the newest version (which kept old versions forever).
    let store = store();
    let bucket = new_bucket(&store, true, false).await;
    put(&store, &bucket, "profiles/42").await; // v1
    put(&store, &bucket, "gone/7").await;
    store.client().delete_object().bucket(&bucket).key("gone/7").send().await.unwrap(); // a delete marker
    tick().await;
    put(&store, &bucket, "profiles/42").await; // v2: v1 replaced
    tick().await;
    put(&store, &bucket, "profiles/42").await; // v3: v2 replaced
    let cutoff = tick().await;
    put(&store, &bucket, "profiles/42").await; // v4: v3 replaced after the cutoff
    let ids = |all: &BTreeSet<(String, String, bool)>| -> Vec<String> {
        all.iter().filter(|(k, _, _)| k == "profiles/42").map(|(_, v, _)| v.clone()).collect()
    };
    let before = ids(&versions(&store, &bucket).await);
    assert_eq!(before.len(), 4);
    let report = store.purge_due(&target(&bucket, json!({}), json!([])), &cutoff_at(cutoff), &enforce()).await.unwrap();
    let after = versions(&store, &bucket).await;
    let left = ids(&after);
    // v1 was replaced two ticks before the cutoff: it goes. v3 (replaced
    // after the cutoff) and v4 (current) stay. v2, replaced one tick
    // before, goes where the server reports an old version's own write time
    // (AWS S3) and waits one rewrite longer where it reports the time it
    // was replaced (versitygw): never early.
    assert!(left.len() == 2 || left.len() == 3, "{after:?}");
    let oldest = before.iter().min_by_key(|id| id.as_str()).unwrap();
    assert!(!left.contains(oldest), "the oldest version went: {after:?}");
    assert!(!after.iter().any(|(k, _, _)| k == "gone/7"), "a deleted object's versions and marker go: {after:?}");
    assert_eq!(
        (report.account.matched, report.account.deleted, report.account.remaining),
        (2, 2, Some(0)),
        "{report:?}"
    );
    let again = store.purge_due(&target(&bucket, json!({}), json!([])), &cutoff_at(cutoff), &enforce()).await.unwrap();
    assert_eq!(again.account.matched, 0, "the same cutoff finds nothing more");
}

#[tokio::test]
async fn held_objects_are_retained_with_their_reason_and_end() {
    let store = store();
    let bucket = new_bucket(&store, true, true).await;
    let c = store.client();
    let body = || ByteStream::from_static(b"recording");
    support::reach(
        c.put_object()
            .bucket(&bucket)
            .key("calls/2024/01/01/held")
            .body(body())
            .object_lock_legal_hold_status(ObjectLockLegalHoldStatus::On)
            .send()
            .await,
        SERVER,
    );
    let until = Timestamp::now().as_second() + 86_400;
    support::reach(
        c.put_object()
            .bucket(&bucket)
            .key("calls/2024/01/01/locked")
            .body(body())
            .object_lock_mode(ObjectLockMode::Governance)
            .object_lock_retain_until_date(DateTime::from_secs(until))
            .send()
            .await,
        SERVER,
    );
    let t = target(&bucket, json!({ "age": "KeyDate", "keyDatePattern": "calls/{yyyy}/{mm}/{dd}/" }), json!([]));
    let report = store.purge_due(&t, &cutoff_at("2025-01-01T00:00:00Z".parse().unwrap()), &enforce()).await.unwrap();
    let retained: BTreeMap<RetainReason, (Option<i64>, u64)> = report
        .account
        .retained
        .iter()
        .map(|r| (r.reason, (r.until.as_ref().map(|t| t.0.as_second()), r.count)))
        .collect();
    assert_eq!(
        retained,
        BTreeMap::from([(RetainReason::LegalHold, (None, 1)), (RetainReason::ObjectLock, (Some(until), 1))]),
        "{report:?}"
    );
    assert_eq!((report.account.deleted, report.account.remaining), (0, Some(0)));
    assert_eq!(versions(&store, &bucket).await.len(), 2);
}

fn recordings_policy(bucket: &str) -> RetentionPolicySpec {
    serde_json::from_value(json!({
        "category": "customer-call-recordings", "description": "d", "responsibleParty": "self", "legalBasis": "Contract",
        "retention": {"period": "1y"}, "schedule": {"cron": "0 3 * * *", "timeZone": "Europe/Amsterdam"},
        "targets": [{"name": "calls", "dataStoreRef": {"name": "s3"},
            "objects": {"bucket": bucket, "prefix": "customers/"},
            "subjectFields": [{"identity": "customerId", "keyTemplate": "customers/{customerId}/"}]}]
    }))
    .unwrap()
}

#[tokio::test]
async fn an_erasure_whose_objects_are_all_held_says_retained_not_nothing_found() {
    let store = store();
    let bucket = new_bucket(&store, true, true).await;
    for key in ["customers/c-1042/a.ogg", "customers/c-1042/b.ogg"] {
        support::reach(
            store
                .client()
                .put_object()
                .bucket(&bucket)
                .key(key)
                .body(ByteStream::from_static(b"call"))
                .object_lock_legal_hold_status(ObjectLockLegalHoldStatus::On)
                .send()
                .await,
            SERVER,
        );
    }
    put(&store, &bucket, "customers/c-2000/other.ogg").await;
    let policies = BTreeMap::from([("recordings".to_owned(), recordings_policy(&bucket))]);
    let labels = BTreeMap::new();
    let views: Vec<_> = policies.iter().map(|(name, spec)| PolicyView { name, labels: &labels, spec }).collect();
    let spec: delenda::api::erasure::ErasureRequestSpec = serde_json::from_value(json!({
        "identitySecretRef": {"name": "s"}, "ground": "NoLongerNecessary", "receivedAt": "2026-11-20T09:00:00Z",
        "identityVerification": {"verifiedBy": "privacy-office", "method": "IdentityDocument"}
    }))
    .unwrap();
    let customer: IdentityName = "customerId".parse().unwrap();
    let plan = plan(&spec, &views, &BTreeSet::from([customer.clone()]), "2026-11-21T10:00:00Z".parse().unwrap());
    let subject = Subject::new([(customer, "c-1042".to_owned())]);
    let stores: Stores = BTreeMap::from([("s3".to_owned(), StoreHandle::new(Arc::new(BucketStore::new(settings()))))]);
    let digests = BTreeMap::new();
    let job = ErasureJob {
        request: "ns/r",
        spec: &spec,
        plan: &plan,
        policies: &policies,
        subject: &subject,
        subject_digests: &digests,
    };
    let result = run_erasure(&job, &stores, &enforce()).await;
    let step = &result.steps[0];
    assert_eq!(step.outcome, "Retained", "{step:?}");
    assert_eq!((step.matched, step.erased), (2, 0));
    let (until, under) = step.retained.clone().unwrap();
    assert_eq!(until, None, "a legal hold lasts until it is lifted");
    assert!(under.contains("LegalHold"), "{under}");
    assert_eq!(result.record["targets"][0]["outcome"], "Retained");
    assert_eq!(keys(&store, &bucket).await.len(), 3, "nothing was deleted");
}

#[tokio::test]
async fn a_key_the_server_cannot_list_exactly_is_counted_not_retried_forever() {
    // A control character is legal in an S3 key. XML cannot carry it: the
    // listing is asked for URL-encoded keys, and a server that ignores the
    // request (versitygw 1.8) lists the key with U+FFFD in its place.
    let store = store();
    let bucket = new_bucket(&store, false, false).await;
    put(&store, &bucket, "calls/2024/01/01/ctl\u{1}key.ogg").await;
    put(&store, &bucket, "calls/2024/01/01/plain.ogg").await;
    put(&store, &bucket, "calls/2024/01/01/tab\tkey.ogg").await;
    let t = target(&bucket, json!({ "age": "KeyDate", "keyDatePattern": "calls/{yyyy}/{mm}/{dd}/" }), json!([]));
    let report = store.purge_due(&t, &cutoff_at("2025-01-01T00:00:00Z".parse().unwrap()), &enforce()).await.unwrap();
    let account = &report.account;
    assert_eq!((account.deleted, account.remaining), (2, Some(0)), "{account:?}");
    assert_eq!(account.unreadable.len(), 1, "{account:?}");
    assert_eq!(account.unreadable[0].reason, UnreadableReason::UnlistableKey);
    assert!(!account.proves_nothing_due_remains(), "a key left behind keeps the run from being compliant");
    assert_eq!(keys(&store, &bucket).await.len(), 1);
}

#[tokio::test]
async fn keys_outside_the_date_pattern_and_bad_period_tags_are_counted_as_unreadable() {
    let store = store();
    let bucket = new_bucket(&store, false, false).await;
    for key in [
        "calls/2024/01/01/a.ogg",
        "calls/latest.json",
        "calls/2024/13/01/b.ogg",
        "calls/2024/02/30/c.ogg",
        "calls/2030/01/01/d.ogg",
    ] {
        put(&store, &bucket, key).await;
    }
    let t = target(
        &bucket,
        json!({ "prefix": "calls/", "age": "KeyDate", "keyDatePattern": "{yyyy}/{mm}/{dd}/" }),
        json!([]),
    );
    let report = store.purge_due(&t, &cutoff_at("2025-01-01T00:00:00Z".parse().unwrap()), &enforce()).await.unwrap();
    let a = &report.account;
    assert_eq!((a.deleted, a.not_due), (1, Some(1)), "{a:?}");
    assert_eq!(
        a.unreadable.iter().map(|u| (u.reason, u.count)).collect::<Vec<_>>(),
        vec![(UnreadableReason::KeyDateMismatch, 3)]
    );

    let tagged = new_bucket(&store, false, false).await;
    support::reach(
        store
            .client()
            .put_object()
            .bucket(&tagged)
            .key("x")
            .body(ByteStream::from_static(b"x"))
            .tagging("retention=6m")
            .send()
            .await,
        SERVER,
    );
    let now = Timestamp::now();
    let cutoff = Cutoff::planned(now, now.checked_add(jiff::SignedDuration::from_hours(24 * 400)).unwrap()).unwrap();
    let report = store
        .purge_due(&target(&tagged, json!({ "periodTag": "retention" }), json!([])), &cutoff, &enforce())
        .await
        .unwrap();
    assert_eq!(
        report.account.unreadable.iter().map(|u| (u.reason, u.count)).collect::<Vec<_>>(),
        vec![(UnreadableReason::BadPeriod, 1)]
    );
    assert_eq!(keys(&store, &tagged).await.len(), 1);
}

/// Runs `f` on the S3 server from inside a synchronous callback.
fn out_of_band(
    f: impl FnOnce(BucketStore) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> + Send + 'static,
) {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(f(store()));
    })
    .join()
    .unwrap();
}

/// A store that works on one object at a time, so a test can act between.
fn one_at_a_time() -> (BucketStore, PurgeOptions) {
    let store = BucketStore::new(S3Settings { max_concurrency: 1, ..settings() });
    let mut options = enforce();
    options.max_batch_size = 1;
    (store, options)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_rewritten_between_the_listing_and_its_delete_is_kept() {
    let (store, mut options) = one_at_a_time();
    let bucket = new_bucket(&store, false, false).await;
    put(&store, &bucket, "a").await;
    put(&store, &bucket, "b").await;
    let cutoff = tick().await;
    let bucket2 = bucket.clone();
    options = options.with_progress(move |p| {
        if p.batch == 1 {
            let bucket = bucket2.clone();
            out_of_band(move |s| {
                Box::pin(async move {
                    let body = ByteStream::from_static(b"rewritten after the listing");
                    s.client().put_object().bucket(&bucket).key("b").body(body).send().await.unwrap();
                })
            });
        }
    });
    let report = store.purge_due(&target(&bucket, json!({}), json!([])), &cutoff_at(cutoff), &options).await.unwrap();
    assert_eq!(keys(&store, &bucket).await, BTreeSet::from(["b".to_owned()]), "the rewritten object stays");
    let body = store.client().get_object().bucket(&bucket).key("b").send().await.unwrap().body.collect().await.unwrap();
    assert_eq!(body.into_bytes().as_ref(), b"rewritten after the listing");
    assert_eq!(
        (report.account.matched, report.account.deleted, report.account.remaining),
        (2, 1, Some(0)),
        "{report:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_gone_before_its_delete_is_not_an_error() {
    let (store, mut options) = one_at_a_time();
    let bucket = new_bucket(&store, false, false).await;
    put(&store, &bucket, "customers/c-1042/a.ogg").await;
    put(&store, &bucket, "customers/c-1042/b.ogg").await;
    let bucket2 = bucket.clone();
    options = options.with_progress(move |p| {
        if p.batch == 1 {
            let bucket = bucket2.clone();
            out_of_band(move |s| {
                Box::pin(async move {
                    s.client().delete_object().bucket(&bucket).key("customers/c-1042/b.ogg").send().await.unwrap();
                })
            });
        }
    });
    let t = target(
        &bucket,
        json!({ "prefix": "customers/" }),
        json!([{ "identity": "customerId", "keyTemplate": "customers/{customerId}/" }]),
    );
    let subject = Subject::new([("customerId".parse().unwrap(), "c-1042".to_owned())]);
    // The server may answer a delete of what is gone with success or 404;
    // either way the erasure goes on and proves nothing of the subject left.
    let report = store.erase_subject(&t, &subject, &options).await.unwrap();
    assert_eq!((report.account.matched, report.account.remaining), (2, Some(0)), "{report:?}");
    assert!(keys(&store, &bucket).await.is_empty());
}

#[tokio::test]
async fn an_erasure_removes_keys_left_with_only_delete_markers() {
    // A deleted object's key still names the subject.
    let store = store();
    let bucket = new_bucket(&store, true, false).await;
    put(&store, &bucket, "customers/c-1042/a.ogg").await;
    store.client().delete_object().bucket(&bucket).key("customers/c-1042/a.ogg").send().await.unwrap();
    assert!(versions(&store, &bucket).await.iter().any(|(_, _, marker)| *marker));
    let t = target(
        &bucket,
        json!({ "prefix": "customers/" }),
        json!([{ "identity": "customerId", "keyTemplate": "customers/{customerId}/" }]),
    );
    let subject = Subject::new([("customerId".parse().unwrap(), "c-1042".to_owned())]);
    store.erase_subject(&t, &subject, &enforce()).await.unwrap();
    assert!(versions(&store, &bucket).await.is_empty(), "no version and no marker names the subject");
}
