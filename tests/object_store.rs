//! The bucket store against the real S3 server (versitygw from
//! `tests/env/servers/s3.sh`): exactly the due objects go, versions and
//! object locks are honoured, erasure stays inside the subject's objects.
mod support;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::{ByteStream, DateTime};
use aws_sdk_s3::types::{ObjectLockLegalHoldStatus, ObjectLockMode};
use delenda::api::Mode;
use delenda::stores::objects::{BucketStore, S3Settings};
use delenda::stores::{Cutoff, PurgeOptions, Store, StoreError, Subject};
use jiff::{Timestamp, ToSpan};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::json;

use support::s3::{SERVER, keys, new_bucket, put, put_many, settings, store, target, versions};

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

fn cutoff_at(at: Timestamp) -> Cutoff {
    Cutoff::planned(at, Timestamp::now().max(at)).expect("cutoff before run start")
}

fn enforce() -> PurgeOptions {
    PurgeOptions::new(Mode::Enforce)
}

fn subject(kind: &str, values: &[&str]) -> Subject {
    Subject::new(values.iter().map(|v| (kind.parse().unwrap(), (*v).to_owned())))
}

/// Names that tend to break things: spaces, Unicode, dots, percent signs,
/// reserved URL characters, a long name.
const HOSTILE: &[&str] = &[
    "a b.wav",
    "jörg ünïcode.wav",
    "x..y",
    "..hidden",
    "...",
    "%2e%2e",
    "a+b&c=d?e#f",
    "日本語 ファイル",
    "semi;colon'quote\"",
    "<xml>&amp;",
];

fn hostile(i: usize, pick: usize, long: bool) -> String {
    if long { format!("{i}-{}", "ł".repeat(100)) } else { format!("{i}-{}", HOSTILE[pick % HOSTILE.len()]) }
}

#[derive(Clone, Debug)]
enum Kind {
    /// A well-formed date in the key, days after 2024-01-01.
    Dated(u32),
    /// A key under the prefix without a valid date.
    Malformed(u8),
    /// A dated key outside the target's prefix.
    Outside(u32),
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        6 => (0u32..60).prop_map(Kind::Dated),
        1 => (0u8..4).prop_map(Kind::Malformed),
        1 => (0u32..60).prop_map(Kind::Outside),
    ]
}

fn day(offset: u32) -> jiff::civil::Date {
    jiff::civil::date(2024, 1, 1).checked_add((offset as i64).days()).unwrap()
}

#[test]
fn purge_by_key_date_deletes_exactly_the_due_objects() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = store();
    let bucket = rt.block_on(new_bucket(&store, false, false));
    let mut runner = TestRunner::new(Config { cases: 12, failure_persistence: None, ..Config::default() });
    let case = std::sync::atomic::AtomicUsize::new(0);
    let strategy = (proptest::collection::vec((kind(), 0usize..100, proptest::bool::weighted(0.1)), 1..14), 0u32..62);
    runner
        .run(&strategy, |(objects, cutoff_day)| {
            let n = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            rt.block_on(async {
                let prefix = format!("c{n}/");
                let mut all = Vec::new();
                let mut due = BTreeSet::new();
                for (i, (kind, pick, long)) in objects.iter().enumerate() {
                    let name = hostile(i, *pick, *long);
                    let key = match kind {
                        Kind::Dated(d) => {
                            let date = day(*d);
                            let key =
                                format!("{prefix}calls/{}/{:02}/{:02}/{name}", date.year(), date.month(), date.day());
                            if *d < cutoff_day {
                                due.insert(key.clone());
                            }
                            key
                        }
                        Kind::Malformed(m) => match m {
                            0 => format!("{prefix}calls/2024/13/01/{name}"),
                            1 => format!("{prefix}calls/2024/1/05/{name}"),
                            2 => format!("{prefix}calls/2023/02/29/{name}"),
                            _ => format!("{prefix}other/2024/01/01/{name}"),
                        },
                        Kind::Outside(d) => {
                            let date = day(*d);
                            format!("x{n}/calls/{}/{:02}/{:02}/{name}", date.year(), date.month(), date.day())
                        }
                    };
                    all.push(key);
                }
                put_many(&store, &bucket, &all).await;
                let before = keys(&store, &bucket).await;
                let t = target(
                    &bucket,
                    json!({ "prefix": prefix, "age": "KeyDate", "keyDatePattern": "calls/{yyyy}/{mm}/{dd}/" }),
                    json!([]),
                );
                let cutoff = cutoff_at(day(cutoff_day).to_zoned(jiff::tz::TimeZone::UTC).unwrap().timestamp());
                assert_eq!(store.count_due(&t, &cutoff).await.unwrap(), due.len() as u64);
                let report = store.purge_due(&t, &cutoff, &enforce()).await.unwrap();
                assert_eq!(
                    (report.account.matched, report.account.deleted, report.account.remaining.unwrap()),
                    (due.len() as u64, due.len() as u64, 0),
                    "{report:?}"
                );
                let after = keys(&store, &bucket).await;
                let expected: BTreeSet<String> = before.difference(&due).cloned().collect();
                assert_eq!(after, expected);
            });
            Ok(())
        })
        .unwrap();
}

#[tokio::test]
async fn last_modified_before_the_cutoff_is_due_and_after_it_is_not() {
    let store = store();
    let bucket = new_bucket(&store, false, false).await;
    put(&store, &bucket, "logs/old").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let at = Timestamp::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    put(&store, &bucket, "logs/new").await;
    put(&store, &bucket, "elsewhere/old-too-but-outside").await;
    let t = target(&bucket, json!({ "prefix": "logs/" }), json!([]));
    let report = store.purge_due(&t, &cutoff_at(at), &enforce()).await.unwrap();
    assert_eq!((report.account.matched, report.account.deleted, report.account.remaining.unwrap()), (1, 1, 0));
    assert_eq!(
        keys(&store, &bucket).await,
        BTreeSet::from(["logs/new".to_owned(), "elsewhere/old-too-but-outside".to_owned()])
    );
}

#[tokio::test]
async fn a_dry_run_deletes_nothing() {
    let store = store();
    let bucket = new_bucket(&store, false, false).await;
    put(&store, &bucket, "calls/2024/01/01/a").await;
    let t = target(&bucket, json!({ "age": "KeyDate", "keyDatePattern": "calls/{yyyy}/{mm}/{dd}/" }), json!([]));
    let report =
        store.purge_due(&t, &cutoff_at(ts("2025-01-01T00:00:00Z")), &PurgeOptions::new(Mode::DryRun)).await.unwrap();
    assert!(
        report.dry_run
            && report.account.matched == 1
            && report.account.remaining.unwrap() == 1
            && report.account.deleted == 0,
        "{report:?}"
    );
    assert_eq!(keys(&store, &bucket).await.len(), 1);
}

#[tokio::test]
async fn in_a_versioned_bucket_all_removes_every_version_and_current_leaves_a_marker() {
    let store = store();
    let bucket = new_bucket(&store, true, false).await;
    for key in [
        "all/calls/2024/01/01/due",
        "all/calls/2030/01/01/kept",
        "cur/calls/2024/01/01/due",
        "cur/calls/2030/01/01/kept",
    ] {
        put(&store, &bucket, key).await;
        put(&store, &bucket, key).await; // a second version
    }
    let before = versions(&store, &bucket).await;
    assert_eq!(before.len(), 8, "{before:?}");
    let cutoff = cutoff_at(ts("2025-01-01T00:00:00Z"));

    let all = target(
        &bucket,
        json!({ "prefix": "all/", "age": "KeyDate", "keyDatePattern": "calls/{yyyy}/{mm}/{dd}/", "versions": "All" }),
        json!([]),
    );
    let report = store.purge_due(&all, &cutoff, &enforce()).await.unwrap();
    assert_eq!(
        (report.account.matched, report.account.deleted, report.account.remaining.unwrap()),
        (1, 1, 0),
        "{report:?}"
    );
    let after = versions(&store, &bucket).await;
    assert!(
        !after.iter().any(|(k, _, _)| k == "all/calls/2024/01/01/due"),
        "every version and no marker is left: {after:?}"
    );
    assert_eq!(after.iter().filter(|(k, _, _)| k == "all/calls/2030/01/01/kept").count(), 2);

    let cur = target(
        &bucket,
        json!({ "prefix": "cur/", "age": "KeyDate", "keyDatePattern": "calls/{yyyy}/{mm}/{dd}/", "versions": "Current" }),
        json!([]),
    );
    let report = store.purge_due(&cur, &cutoff, &enforce()).await.unwrap();
    assert_eq!(
        (report.account.matched, report.account.deleted, report.account.remaining.unwrap()),
        (1, 1, 0),
        "{report:?}"
    );
    let after = versions(&store, &bucket).await;
    let due: Vec<_> = after.iter().filter(|(k, _, _)| k == "cur/calls/2024/01/01/due").collect();
    assert_eq!(due.iter().filter(|(_, _, marker)| *marker).count(), 1, "a delete marker: {due:?}");
    assert_eq!(due.iter().filter(|(_, _, marker)| !*marker).count(), 2, "old versions stay: {due:?}");
    assert!(!keys(&store, &bucket).await.contains("cur/calls/2024/01/01/due"));
    assert_eq!(after.iter().filter(|(k, _, _)| k == "cur/calls/2030/01/01/kept").count(), 2);
    // Again: nothing is due any more.
    assert_eq!(store.purge_due(&cur, &cutoff, &enforce()).await.unwrap().account.matched, 0);
}

#[tokio::test]
async fn objects_under_legal_hold_or_retention_are_retained_not_deleted() {
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
    let until = DateTime::from_secs(Timestamp::now().as_second() + 86_400);
    support::reach(
        c.put_object()
            .bucket(&bucket)
            .key("calls/2024/01/01/retained")
            .body(body())
            .object_lock_mode(ObjectLockMode::Governance)
            .object_lock_retain_until_date(until)
            .send()
            .await,
        SERVER,
    );
    put(&store, &bucket, "calls/2024/01/01/free").await;
    let t = target(&bucket, json!({ "age": "KeyDate", "keyDatePattern": "calls/{yyyy}/{mm}/{dd}/" }), json!([]));
    let cutoff = cutoff_at(ts("2025-01-01T00:00:00Z"));
    assert_eq!(store.count_due(&t, &cutoff).await.unwrap(), 1, "held objects are not counted as deletable");
    let report = store.purge_due(&t, &cutoff, &enforce()).await.unwrap();
    assert_eq!(
        (
            report.account.matched,
            report.account.deleted,
            report.account.retained_total(),
            report.account.remaining.unwrap()
        ),
        (1, 1, 2, 0),
        "{report:?}"
    );
    let left: BTreeSet<String> = versions(&store, &bucket).await.into_iter().map(|(k, _, _)| k).collect();
    assert_eq!(left, BTreeSet::from(["calls/2024/01/01/held".to_owned(), "calls/2024/01/01/retained".to_owned()]));
    // Lift the legal hold: the next run deletes it.
    support::reach(
        c.put_object_legal_hold()
            .bucket(&bucket)
            .key("calls/2024/01/01/held")
            .legal_hold(
                aws_sdk_s3::types::ObjectLockLegalHold::builder().status(ObjectLockLegalHoldStatus::Off).build(),
            )
            .send()
            .await,
        SERVER,
    );
    let report = store.purge_due(&t, &cutoff, &enforce()).await.unwrap();
    assert_eq!((report.account.deleted, report.account.retained_total()), (1, 1), "{report:?}");
}

#[tokio::test]
async fn a_period_tag_sets_an_objects_own_period_and_a_bad_one_keeps_it() {
    let store = store();
    let bucket = new_bucket(&store, false, false).await;
    let c = store.client();
    for (key, tag) in [
        ("untagged", None),
        ("one-year", Some("1y")),
        ("two-years", Some("2y")),
        ("bogus", Some("6m")),
        ("other-tag", None),
    ] {
        let mut req = c.put_object().bucket(&bucket).key(key).body(ByteStream::from_static(b"x"));
        if let Some(tag) = tag {
            req = req.tagging(format!("retention={tag}"));
        } else if key == "other-tag" {
            req = req.tagging("owner=someone");
        }
        support::reach(req.send().await, SERVER);
    }
    // The run "starts" 400 days from now under a 1-day policy period: objects
    // written now are due unless their own period says otherwise.
    let now = Timestamp::now();
    let run_started = now.checked_add((400 * 24).hours()).unwrap();
    let cutoff = Cutoff::planned(now.checked_add(24.hours()).unwrap(), run_started).unwrap();
    let t = target(&bucket, json!({ "periodTag": "retention" }), json!([]));
    let report = store.purge_due(&t, &cutoff, &enforce()).await.unwrap();
    assert_eq!(
        (report.account.matched, report.account.deleted, report.account.remaining.unwrap()),
        (3, 3, 0),
        "{report:?}"
    );
    assert_eq!(keys(&store, &bucket).await, BTreeSet::from(["two-years".to_owned(), "bogus".to_owned()]));
}

#[tokio::test]
async fn erasure_by_key_template_removes_every_version_of_the_subjects_objects_only() {
    let store = store();
    let bucket = new_bucket(&store, true, false).await;
    let all = [
        "users/42/a.wav",
        "users/42/b/c.wav",
        "users/421/a.wav",
        "users/4/a.wav",
        "users/42x/a.wav",
        "users/a b/x",
        "users/jörg/x",
        "other/42/a.wav",
    ];
    for key in all {
        put(&store, &bucket, key).await;
    }
    put(&store, &bucket, "users/42/a.wav").await;
    let t = target(
        &bucket,
        json!({ "prefix": "users/" }),
        json!([{ "identity": "customerId", "keyTemplate": "users/{customerId}/" }]),
    );
    let before = versions(&store, &bucket).await;

    for bad in ["..", "4/2", "", ".", "../42", "a\\b"] {
        let err = store.erase_subject(&t, &subject("customerId", &[bad]), &enforce()).await.unwrap_err().error;
        assert!(matches!(err, StoreError::InvalidTarget { .. }), "{bad:?}: {err}");
    }
    for odd in ["4 2", "jörg ", "…", &"9".repeat(300)] {
        let report = store.erase_subject(&t, &subject("customerId", &[odd]), &enforce()).await.unwrap();
        assert_eq!(report.account.deleted, 0, "{odd:?}");
    }
    assert_eq!(versions(&store, &bucket).await, before, "nothing changed");

    assert_eq!(store.count_subject(&t, &subject("customerId", &["42"])).await.unwrap(), 2);
    let report = store.erase_subject(&t, &subject("customerId", &["42"]), &enforce()).await.unwrap();
    assert_eq!(
        (report.account.matched, report.account.deleted, report.account.remaining.unwrap()),
        (2, 2, 0),
        "{report:?}"
    );
    let after = versions(&store, &bucket).await;
    let expected: BTreeSet<_> = before.iter().filter(|(k, _, _)| !k.starts_with("users/42/")).cloned().collect();
    assert_eq!(after, expected);
    assert!(store.erase_subject(&t, &subject("customerId", &["jörg"]), &enforce()).await.unwrap().account.deleted == 1);
}

#[tokio::test]
async fn erasure_by_tag_or_metadata_matches_whole_values() {
    let store = store();
    let bucket = new_bucket(&store, false, false).await;
    let c = store.client();
    for (key, tag, meta) in [
        ("t1", Some("alice"), None),
        ("t2", Some("alice2"), None),
        ("m1", None, Some("alice")),
        ("m2", None, Some("Alice")),
        ("none", None, None),
    ] {
        let mut req = c.put_object().bucket(&bucket).key(key).body(ByteStream::from_static(b"x"));
        if let Some(tag) = tag {
            req = req.tagging(format!("owner={tag}"));
        }
        if let Some(meta) = meta {
            req = req.metadata("subject", meta);
        }
        support::reach(req.send().await, SERVER);
    }
    let t = target(
        &bucket,
        json!({}),
        json!([{ "identity": "email", "tag": "owner" }, { "identity": "email", "metadata": "Subject" }]),
    );
    let report = store.erase_subject(&t, &subject("email", &["alice"]), &enforce()).await.unwrap();
    assert_eq!(
        (report.account.matched, report.account.deleted, report.account.remaining.unwrap()),
        (2, 2, 0),
        "{report:?}"
    );
    assert_eq!(keys(&store, &bucket).await, BTreeSet::from(["t2".to_owned(), "m2".to_owned(), "none".to_owned()]));
}

#[tokio::test]
async fn large_purges_go_in_batches_with_progress_and_stop_when_cancelled() {
    let store = store();
    let bucket = new_bucket(&store, false, false).await;
    let all: Vec<String> = (0..1200).map(|i| format!("calls/2024/01/01/{i:05}")).collect();
    let started = Instant::now();
    put_many(&store, &bucket, &all).await;
    println!("put 1200 objects in {:?}", started.elapsed());
    let t = target(&bucket, json!({ "age": "KeyDate", "keyDatePattern": "calls/{yyyy}/{mm}/{dd}/" }), json!([]));
    let cutoff = cutoff_at(ts("2025-01-01T00:00:00Z"));

    // Cancelled after the first batch: the rest stays for the next run.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut options = enforce().with_progress({
        let seen = seen.clone();
        move |p| seen.lock().unwrap().push(p.clone())
    });
    options.max_batch_size = 100;
    store_cancel_after_first(&mut options);
    let err = store.purge_due(&t, &cutoff, &options).await.unwrap_err().error;
    assert!(matches!(err, StoreError::Cancelled { .. }), "{err}");
    let left = keys(&store, &bucket).await.len();
    assert!((1200 - 100 * 4..1200).contains(&left), "{left} left");

    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut options = enforce().with_progress({
        let seen = seen.clone();
        move |p| seen.lock().unwrap().push(p.clone())
    });
    options.max_batch_size = 1000;
    let started = Instant::now();
    let report = store.purge_due(&t, &cutoff, &options).await.unwrap();
    let took = started.elapsed();
    println!(
        "purged {} objects in {} batches in {took:?} ({:.0} objects/s)",
        report.account.deleted,
        report.batches,
        report.account.deleted as f64 / took.as_secs_f64()
    );
    assert_eq!((report.account.deleted, report.account.remaining.unwrap()), (left as u64, 0));
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len() as u64, report.batches);
    assert!(seen.iter().all(|p| p.batch_size <= 1000));
    assert_eq!(seen.iter().map(|p| p.deleted).sum::<u64>(), report.account.deleted);
    assert!(keys(&store, &bucket).await.is_empty());
}

fn store_cancel_after_first(options: &mut PurgeOptions) {
    let token = options.cancel.clone();
    let previous = options.progress.clone();
    options.progress = Some(Arc::new(move |p| {
        if let Some(previous) = &previous {
            previous(p);
        }
        token.cancel();
    }));
}

#[tokio::test]
async fn a_rate_limit_spreads_the_deletes() {
    let store = store();
    let bucket = new_bucket(&store, false, false).await;
    let all: Vec<String> = (0..60).map(|i| format!("calls/2024/01/01/{i:03}")).collect();
    put_many(&store, &bucket, &all).await;
    let t = target(&bucket, json!({ "age": "KeyDate", "keyDatePattern": "calls/{yyyy}/{mm}/{dd}/" }), json!([]));
    let mut options = enforce();
    options.max_records_per_second = Some(40);
    let started = Instant::now();
    let report = store.purge_due(&t, &cutoff_at(ts("2025-01-01T00:00:00Z")), &options).await.unwrap();
    assert_eq!(report.account.deleted, 60);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "60 objects at 40/s take at least ~1 s, took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn errors_say_what_is_wrong() {
    let store = store();
    let t = target("no-such-bucket-delenda", json!({}), json!([]));
    let cutoff = cutoff_at(ts("2025-01-01T00:00:00Z"));
    let err = store.count_due(&t, &cutoff).await.unwrap_err();
    assert!(matches!(err, StoreError::MissingTable { .. }), "{err}");

    let mut bad = settings();
    bad.secret_access_key = "wrong".to_owned();
    let err = BucketStore::new(bad).probe().await.unwrap_err();
    assert!(matches!(err, StoreError::AuthenticationFailed { .. }), "{err}");

    let mut nowhere = settings();
    nowhere.endpoint = Some("http://127.0.0.1:9".to_owned());
    let err = BucketStore::new(nowhere).probe().await.unwrap_err();
    assert!(matches!(err, StoreError::Unreachable { .. }), "{err}");

    let probe = store.probe().await.unwrap();
    println!("probe: {probe:?}");
}

/// Issue 12, situation 5: a purge holds one listing page (1,000 keys), not
/// the whole bucket, in memory: it judges and deletes each page before it
/// reads the next. Shown by an object written after the first delete: it
/// sorts after the first two pages, and the purge finds it in its first
/// sweep (matched), which a purge that listed everything before deleting
/// cannot. Versions of one key that straddle a page boundary are judged
/// together, and not-due keys keep every version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_deletes_page_by_page_and_judges_keys_across_page_boundaries() {
    // One request in flight: the next page is listed only once the batch
    // before it is deleted (with more, listing runs a few batches ahead).
    let store = Arc::new(BucketStore::new(S3Settings { max_concurrency: 1, ..support::s3::settings() }));
    let bucket = new_bucket(&store, true, false).await;
    let due: Vec<String> = (0..2100).map(|i| format!("calls/2024/01/01/{i:05}")).collect();
    put_many(&store, &bucket, &due).await;
    // Two more versions of a key near the first page's end.
    for _ in 0..2 {
        put(&store, &bucket, &due[999]).await;
    }
    let kept: Vec<String> = (0..150).map(|i| format!("calls/2030/01/01/{i:05}")).collect();
    put_many(&store, &bucket, &kept).await;
    put_many(&store, &bucket, &kept).await;
    let kept_before: BTreeSet<_> =
        versions(&store, &bucket).await.into_iter().filter(|(k, _, _)| k.starts_with("calls/2030/")).collect();
    assert_eq!(kept_before.len(), 300);

    let late = "calls/2024/01/01/99999";
    let written = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut options = enforce();
    options.progress = Some(Arc::new({
        let (store, bucket, written) = (store.clone(), bucket.clone(), written.clone());
        move |_| {
            if written.swap(true, std::sync::atomic::Ordering::SeqCst) {
                return;
            }
            // Written, due, while the purge is in its first page.
            let (store, bucket) = (store.clone(), bucket.clone());
            std::thread::spawn(move || {
                tokio::runtime::Runtime::new().unwrap().block_on(put(&store, &bucket, late));
            })
            .join()
            .unwrap();
        }
    }));
    let t = target(
        &bucket,
        json!({ "age": "KeyDate", "keyDatePattern": "calls/{yyyy}/{mm}/{dd}/", "versions": "All" }),
        json!([]),
    );
    let report = store.purge_due(&t, &cutoff_at(ts("2025-01-01T00:00:00Z")), &options).await.unwrap();
    assert!(written.load(std::sync::atomic::Ordering::SeqCst));
    assert_eq!(report.account.matched, 2101, "the late object was listed after the first delete: {report:?}");
    assert_eq!(report.account.remaining, Some(0));
    assert_eq!(report.account.not_due, Some(150));
    let after = versions(&store, &bucket).await;
    assert!(after.iter().all(|(k, _, _)| k.starts_with("calls/2030/")), "every due version went");
    assert_eq!(after, kept_before, "every not-due version stays");
}
