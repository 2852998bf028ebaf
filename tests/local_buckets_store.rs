//! The localBuckets store against real files in a temporary directory: exactly
//! the due objects go and every other file stays byte for byte, a subject's
//! key template never reaches another subject, what a directory lacks (tags,
//! metadata) is refused, and a dry run touches nothing.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use delenda::api::Mode;
use delenda::api::policy::Target;
use delenda::stores::local_buckets::LocalBucketStore;
use delenda::stores::{Cutoff, PurgeOptions, Store, StoreError, Subject};
use jiff::Timestamp;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};

fn target(objects: Value, subject_fields: Value) -> Target {
    serde_json::from_value(json!({
        "name": "t", "dataStoreRef": { "name": "recordings" }, "objects": objects, "subjectFields": subject_fields
    }))
    .unwrap()
}

fn base() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_704_067_200) // 2024-01-01
}

fn cutoff(at: SystemTime) -> Cutoff {
    Cutoff::planned(Timestamp::try_from(at).unwrap(), Timestamp::now()).unwrap()
}

fn write(path: &Path, bytes: &[u8], modified: SystemTime) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
    fs::File::options().write(true).open(path).unwrap().set_modified(modified).unwrap();
}

/// Every file and link under `dir` with its bytes and modification time.
fn snapshot(dir: &Path) -> BTreeMap<String, (Vec<u8>, SystemTime)> {
    let mut all = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let ty = e.file_type().unwrap();
            let meta = fs::symlink_metadata(e.path()).unwrap();
            if ty.is_dir() {
                stack.push(e.path());
            } else {
                let bytes = if ty.is_symlink() { b"<link>".to_vec() } else { fs::read(e.path()).unwrap() };
                let rel = e.path().strip_prefix(dir).unwrap().to_str().unwrap().to_owned();
                all.insert(rel, (bytes, meta.modified().unwrap()));
            }
        }
    }
    all
}

fn subject(kind: &str, value: &str) -> Subject {
    Subject::new([(kind.parse().unwrap(), value.to_owned())])
}

/// Names that are awkward as keys: spaces, Unicode, dots, a long segment.
const NAMES: &[&str] = &[
    "a b",
    "jörg ünï",
    "x..y",
    "日本語",
    "semi;colon",
    "-dash",
    "%2e%2e",
    "ends.",
    "long-ŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁŁ",
];

#[test]
fn purge_deletes_exactly_the_due_objects_by_modification_time_and_by_key_date() {
    let mut runner = TestRunner::new(Config { cases: 24, failure_persistence: None, ..Config::default() });
    // (name pick, under the prefix or not, day 1..=10 of January 2024, hour)
    let object = (0usize..100, proptest::bool::weighted(0.8), 1u64..=10, 0u64..24);
    let strategy = (proptest::collection::vec(object, 0..16), 0u64..(12 * 24), proptest::bool::ANY);
    runner
        .run(&strategy, |(objects, cutoff_hour, by_key_date)| {
            let dir = tempfile::tempdir().unwrap();
            let root = dir.path().join("root");
            let outside = dir.path().join("outside");
            let at = base() + Duration::from_secs(cutoff_hour * 3600);
            let mut due = Vec::new();
            for (i, (pick, in_scope, day, hour)) in objects.iter().enumerate() {
                let name = format!("{i}-{}.opus", NAMES[pick % NAMES.len()]);
                let top = if *in_scope { "calls" } else { "other" };
                let key = format!("{top}/2024/01/{day:02}/{name}");
                // The modification time is another day than the key's, so the two ages differ.
                let modified = base() + Duration::from_secs(((10 - day) * 24 + hour) * 3600);
                write(&root.join("recordings").join(&key), key.as_bytes(), modified);
                let day_ends = base() + Duration::from_secs(day * 24 * 3600);
                if *in_scope && if by_key_date { day_ends <= at } else { modified < at } {
                    due.push(format!("recordings/{key}"));
                }
            }
            // Old files no purge may reach: hidden, in another bucket, and
            // outside the root through a linked file and a linked directory.
            let old = base() - Duration::from_secs(86_400 * 400);
            write(&root.join("recordings/calls/2023/01/01/.hidden.opus"), b"hidden", old);
            write(&root.join("recordings/calls/.partial/2023/01/01/x.opus"), b"hidden dir", old);
            write(&root.join("other-bucket/calls/2023/01/01/x.opus"), b"other bucket", old);
            write(&outside.join("secret.opus"), b"secret", old);
            fs::create_dir_all(root.join("recordings/calls/2023/01/02")).unwrap();
            std::os::unix::fs::symlink(outside.join("secret.opus"), root.join("recordings/calls/2023/01/02/l.opus"))
                .unwrap();
            std::os::unix::fs::symlink(&outside, root.join("recordings/calls/2023/01/03")).unwrap();
            let before = (snapshot(&root), snapshot(&outside));

            let store = LocalBucketStore::new(&root);
            let t = if by_key_date {
                target(
                    json!({ "bucket": "recordings", "prefix": "calls/", "age": "KeyDate", "keyDatePattern": "{yyyy}/{mm}/{dd}/" }),
                    json!([]),
                )
            } else {
                target(json!({ "bucket": "recordings", "prefix": "calls/" }), json!([]))
            };
            let rt = tokio::runtime::Runtime::new().unwrap();
            let c = cutoff(at);
            prop_assert_eq!(rt.block_on(store.count_due(&t, &c)).unwrap(), due.len() as u64);
            let progressed = Arc::new(AtomicU64::new(0));
            let seen = progressed.clone();
            let mut options = PurgeOptions::new(Mode::Enforce)
                .with_progress(move |p| _ = seen.fetch_add(p.deleted, Ordering::Relaxed));
            options.max_batch_size = 3;
            let report = rt.block_on(store.purge_due(&t, &c, &options)).unwrap();
            prop_assert_eq!(
                (report.account.matched, report.account.deleted, report.account.remaining.unwrap(), report.account.retained_total()),
                (due.len() as u64, due.len() as u64, 0, 0)
            );
            prop_assert_eq!(report.batches, due.len().div_ceil(3) as u64);
            prop_assert_eq!(progressed.load(Ordering::Relaxed), due.len() as u64);
            let mut expected = before.0.clone();
            for key in &due {
                expected.remove(key);
            }
            prop_assert_eq!(snapshot(&root), expected);
            prop_assert_eq!(snapshot(&outside), before.1);
            Ok(())
        })
        .unwrap();
}

#[tokio::test]
async fn a_key_date_only_counts_once_that_whole_day_is_over() {
    let dir = tempfile::tempdir().unwrap();
    let now = SystemTime::now();
    for key in ["support/2024/01/01/a.opus", "support/2024/01/02/b.opus", "support/2024/13/01/c.opus", "support/x.opus"]
    {
        write(&dir.path().join("recordings").join(key), b"x", now);
    }
    let t = target(
        json!({ "bucket": "recordings", "age": "KeyDate", "keyDatePattern": "support/{yyyy}/{mm}/{dd}/" }),
        json!([]),
    );
    let store = LocalBucketStore::new(dir.path());
    // The first of January's last second does not end it; 2 January 00:00
    // ends it, and not the second.
    assert_eq!(store.count_due(&t, &cutoff(base() + Duration::from_secs(86_399))).await.unwrap(), 0);
    let c = cutoff(base() + Duration::from_secs(86_400));
    assert_eq!(store.count_total(&t).await.unwrap(), Some(4));
    let report = store.purge_due(&t, &c, &PurgeOptions::new(Mode::Enforce)).await.unwrap();
    assert_eq!(report.account.deleted, 1);
    let left: Vec<String> = snapshot(dir.path()).into_keys().collect();
    assert_eq!(
        left,
        ["recordings/support/2024/01/02/b.opus", "recordings/support/2024/13/01/c.opus", "recordings/support/x.opus"]
    );
    assert!(!dir.path().join("recordings/support/2024/01/01").exists(), "the emptied day directory is removed");
}

#[tokio::test]
async fn erasure_by_key_template_never_reaches_a_longer_id() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for key in [
        "customers/42/2024-01-01.opus",
        "customers/42/deep/er/2024-01-02.opus",
        "customers/421/2024-01-01.opus",
        "customers/4/x.opus",
        "customers/42.opus",
        "other/42/x.opus",
    ] {
        write(&root.join("recordings").join(key), key.as_bytes(), base());
    }
    let store = LocalBucketStore::new(root);
    let t = target(
        json!({ "bucket": "recordings", "prefix": "customers/" }),
        json!([{ "identity": "customerId", "keyTemplate": "customers/{customerId}/" }]),
    );
    let s = subject("customerId", "42");
    assert_eq!(store.count_subject(&t, &s).await.unwrap(), 2);
    let report = store.erase_subject(&t, &s, &PurgeOptions::new(Mode::Enforce)).await.unwrap();
    assert_eq!((report.account.matched, report.account.deleted, report.account.remaining.unwrap()), (2, 2, 0));
    assert_eq!(store.count_subject(&t, &s).await.unwrap(), 0);
    assert!(!root.join("recordings/customers/42").exists(), "the subject's emptied directory does not stay behind");
    let left: Vec<String> = snapshot(root).into_keys().collect();
    assert_eq!(
        left,
        [
            "recordings/customers/4/x.opus",
            "recordings/customers/42.opus",
            "recordings/customers/421/2024-01-01.opus",
            "recordings/other/42/x.opus"
        ]
    );

    // A template that ends in the identity takes the key itself and keys
    // below it, never 421 or 42.opus.
    let exact = target(
        json!({ "bucket": "recordings" }),
        json!([{ "identity": "customerId", "keyTemplate": "customers/{customerId}" }]),
    );
    write(&root.join("recordings/customers/42/again.opus"), b"again", base());
    let report = store.erase_subject(&exact, &s, &PurgeOptions::new(Mode::Enforce)).await.unwrap();
    assert_eq!(report.account.deleted, 1);
    let left: Vec<String> = snapshot(root).into_keys().collect();
    assert_eq!(
        left,
        [
            "recordings/customers/4/x.opus",
            "recordings/customers/42.opus",
            "recordings/customers/421/2024-01-01.opus",
            "recordings/other/42/x.opus"
        ]
    );
}

#[tokio::test]
async fn hostile_identities_are_found_exactly_or_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let long = "ŁŁ".repeat(60);
    let values = ["jörg müller", "a b", "x..y", "日本語", "semi;colon", "%2e%2e", long.as_str()];
    for v in values {
        write(&root.join("recordings/r").join(v).join("call.opus"), v.as_bytes(), base());
        write(&root.join("recordings/r").join(format!("{v}x")).join("call.opus"), b"someone else", base());
    }
    let store = LocalBucketStore::new(root);
    let t = target(
        json!({ "bucket": "recordings" }),
        json!([{ "identity": "customerId", "keyTemplate": "r/{customerId}/" }]),
    );
    for v in values {
        let s = subject("customerId", v);
        let report = store.erase_subject(&t, &s, &PurgeOptions::new(Mode::Enforce)).await.unwrap();
        assert_eq!((report.account.deleted, report.account.remaining.unwrap()), (1, 0), "{v}");
        assert!(root.join("recordings/r").join(format!("{v}x")).join("call.opus").exists(), "{v}");
    }
    let before = snapshot(root);
    let too_long = "x".repeat(513);
    for v in ["..", ".", "../recordings", "r/../..", "a/b", "a\\b", "a\nb", "", too_long.as_str()] {
        let err = store
            .erase_subject(&t, &subject("customerId", v), &PurgeOptions::new(Mode::Enforce))
            .await
            .unwrap_err()
            .error;
        assert!(matches!(&err, StoreError::InvalidTarget { store: "localBuckets", .. }), "{v:?}: {err}");
    }
    assert_eq!(snapshot(root), before, "a refused identity deletes nothing");
}

#[tokio::test]
async fn tags_metadata_and_period_tags_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("recordings/r/42/a.opus"), b"a", base());
    let store = LocalBucketStore::new(dir.path());
    let s = subject("customerId", "42");
    let c = cutoff(SystemTime::now());
    let enforce = PurgeOptions::new(Mode::Enforce);
    for (field, word) in [
        (json!({ "identity": "customerId", "tag": "customer-id" }), "tag"),
        (json!({ "identity": "customerId", "metadata": "customer-id" }), "metadata"),
    ] {
        let t = target(json!({ "bucket": "recordings" }), json!([field]));
        for err in [
            store.count_subject(&t, &s).await.unwrap_err(),
            store.erase_subject(&t, &s, &enforce).await.unwrap_err().error,
            store.purge_due(&t, &c, &enforce).await.unwrap_err().error,
        ] {
            assert_eq!(err.reason(), "InvalidTarget");
            assert!(err.to_string().contains(&format!("uses {word}")), "{err}");
        }
    }
    let t = target(json!({ "bucket": "recordings", "periodTag": "retention" }), json!([]));
    let err = store.purge_due(&t, &c, &enforce).await.unwrap_err().error;
    assert!(matches!(err, StoreError::InvalidTarget { .. }) && err.to_string().contains("periodTag"), "{err}");
    assert!(dir.path().join("recordings/r/42/a.opus").exists());
}

#[tokio::test]
async fn a_dry_run_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    for key in ["customers/42/a.opus", "customers/42/b.opus", "customers/7/c.opus"] {
        write(&dir.path().join("recordings").join(key), b"x", base());
    }
    let before = snapshot(dir.path());
    let store = LocalBucketStore::new(dir.path());
    let t = target(
        json!({ "bucket": "recordings" }),
        json!([{ "identity": "customerId", "keyTemplate": "customers/{customerId}/" }]),
    );
    let dry = PurgeOptions::new(Mode::DryRun);
    let report = store.purge_due(&t, &cutoff(SystemTime::now()), &dry).await.unwrap();
    assert_eq!(
        (report.account.matched, report.account.deleted, report.account.remaining.unwrap(), report.dry_run),
        (3, 0, 3, true)
    );
    let report = store.erase_subject(&t, &subject("customerId", "42"), &dry).await.unwrap();
    assert_eq!(
        (report.account.matched, report.account.deleted, report.account.remaining.unwrap(), report.dry_run),
        (2, 0, 2, true)
    );
    assert_eq!(snapshot(dir.path()), before);
}

#[tokio::test]
async fn a_cancelled_purge_stops_and_a_missing_or_linked_bucket_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("recordings/a.opus"), b"a", base());
    let store = LocalBucketStore::new(dir.path());
    let t = target(json!({ "bucket": "recordings" }), json!([]));
    let options = PurgeOptions::new(Mode::Enforce);
    options.cancel.cancel();
    let err = store.purge_due(&t, &cutoff(SystemTime::now()), &options).await.unwrap_err().error;
    assert!(matches!(err, StoreError::Cancelled { deleted: 0 }), "{err}");
    assert!(dir.path().join("recordings/a.opus").exists());

    std::os::unix::fs::symlink(dir.path().join("recordings"), dir.path().join("linked")).unwrap();
    for bucket in ["absent", "linked"] {
        let t = target(json!({ "bucket": bucket }), json!([]));
        let err = store.count_due(&t, &cutoff(SystemTime::now())).await.unwrap_err();
        assert_eq!(err.reason(), "MissingTable", "{bucket}: {err}");
    }
    assert_eq!(store.probe().await.unwrap().kind, "localBuckets");
    assert_eq!(LocalBucketStore::new(dir.path().join("absent")).probe().await.unwrap_err().reason(), "MissingTable");
}

#[tokio::test]
async fn names_that_are_not_utf8_and_keys_outside_the_date_pattern_are_counted_as_unreadable() {
    use std::os::unix::ffi::OsStrExt;
    let root = tempfile::tempdir().unwrap();
    let bucket = root.path().join("recordings");
    let old = base();
    write(&bucket.join("calls/2024/01/01/a.opus"), b"a", old);
    write(&bucket.join("calls/latest.json"), b"x", old);
    let strange = bucket.join("calls/2024/01/01").join(std::ffi::OsStr::from_bytes(b"caf\xe9.opus"));
    write(&strange, b"latin-1 name", old);
    let store = LocalBucketStore::new(root.path());
    let t = target(
        json!({ "bucket": "recordings", "age": "KeyDate", "keyDatePattern": "calls/{yyyy}/{mm}/{dd}/" }),
        json!([]),
    );
    let report = store.purge_due(&t, &cutoff(SystemTime::now()), &PurgeOptions::new(Mode::Enforce)).await.unwrap();
    let unreadable: Vec<_> = report.account.unreadable.iter().map(|u| (u.reason, u.count)).collect();
    assert_eq!(
        unreadable,
        vec![
            (delenda::api::account::UnreadableReason::KeyDateMismatch, 1),
            (delenda::api::account::UnreadableReason::NameNotUtf8, 1)
        ],
        "{report:?}"
    );
    assert_eq!(report.account.deleted, 1);
    assert!(strange.exists() && bucket.join("calls/latest.json").exists(), "what cannot be judged is kept");
    assert!(!report.account.proves_nothing_due_remains());
}
