//! Access requests' exports (issue 16) from the stores that are not SQL:
//! S3 buckets (the real versitygw server), local buckets, OpenSearch (the
//! real server) and log files (real files in temporary directories).
//!
//! Per store, a property test writes several subjects' records and noise,
//! exports one subject, and checks the export against what the test finds
//! itself, with a listing, search or file scan of its own; then the limit,
//! and each odd shape a real store holds, each in its own test. Every test
//! also checks that the export changed nothing.
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ObjectLockLegalHoldStatus;
use base64::Engine as _;
use delenda::api::policy::Target;
use delenda::stores::export::BODY_CAP;
use delenda::stores::files::FileStore;
use delenda::stores::local_buckets::LocalBucketStore;
use delenda::stores::objects::BucketStore;
use delenda::stores::{Store, StoreError, Subject, SubjectExport};
use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use reqwest::Method;
use serde_json::{Value, json};
use support::s3::{new_bucket, versions};
use support::search::{Cleanup, call, create_index, index_docs};

fn customer(id: &str) -> Subject {
    Subject::new([("customerId".parse().unwrap(), id.to_owned())])
}

fn email(value: &str) -> Subject {
    Subject::new([("email".parse().unwrap(), value.to_owned())])
}

fn assert_over_limit(result: Result<SubjectExport, StoreError>, limit: u64) {
    match result {
        Err(e @ StoreError::ExportLimit { .. }) => {
            assert!(e.to_string().contains(&format!("more than {limit} records")), "{e}");
            assert_eq!(e.reason(), "GuardrailReached");
        }
        other => panic!("expected ExportLimit, got {other:?}"),
    }
}

/// What an export's body field holds, as bytes or JSON: the way
/// docs/export.md says a body is written.
fn expected_body(bytes: &[u8]) -> (&'static str, Value) {
    match std::str::from_utf8(bytes) {
        Ok(text) => match serde_json::from_str(text) {
            Ok(v) => ("json", v),
            Err(_) => ("text", json!(text)),
        },
        Err(_) => ("base64", json!(base64::engine::general_purpose::STANDARD.encode(bytes))),
    }
}

fn body_of(record: &Value) -> (&str, Value) {
    (record["bodyEncoding"].as_str().unwrap(), record["body"].clone())
}

// ---------------------------------------------------------------- S3 ----

const CUSTOMERS: [&str; 3] = ["1001", "1002", "10011"];

/// Objects of a customer by key template, by tag and by metadata.
fn s3_target(bucket: &str, prefix: &str) -> Target {
    support::s3::target(
        bucket,
        json!({ "prefix": prefix }),
        json!([
            { "identity": "customerId", "keyTemplate": format!("{prefix}customers/{{customerId}}/") },
            { "identity": "customerId", "tag": "customer" },
            { "identity": "customerId", "metadata": "customer" }
        ]),
    )
}

/// Writes an object with a body, and optionally a tag and metadata
/// (`customer=<id>`) and a content type.
async fn put_object(store: &BucketStore, bucket: &str, key: &str, body: &[u8], tag: Option<&str>, meta: Option<&str>) {
    let mut req = store
        .client()
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(ByteStream::from(body.to_vec()))
        .content_type("application/octet-stream");
    if let Some(id) = tag {
        req = req.tagging(format!("customer={id}"));
    }
    if let Some(id) = meta {
        req = req.metadata("customer", id);
    }
    if let Err(e) = req.send().await {
        panic!("put an object into {bucket}: {:?}", aws_sdk_s3::error::DisplayErrorContext(e));
    }
}

/// The test's own finding: every current object under `prefix` whose key
/// lies under the customer's folder, or whose tag or metadata names it,
/// with its body, read object by object.
async fn s3_direct(store: &BucketStore, bucket: &str, prefix: &str, id: &str) -> BTreeMap<String, Vec<u8>> {
    let c = store.client();
    let mut found = BTreeMap::new();
    let listed = support::s3::keys(store, bucket).await;
    for key in listed.into_iter().filter(|k| k.starts_with(prefix)) {
        let tags = c.get_object_tagging().bucket(bucket).key(&key).send().await.unwrap();
        let tagged = tags.tag_set().iter().any(|t| t.key() == "customer" && t.value() == id);
        let head = c.head_object().bucket(bucket).key(&key).send().await.unwrap();
        let meta = head.metadata().and_then(|m| m.get("customer")).is_some_and(|v| v == id);
        if key.starts_with(&format!("{prefix}customers/{id}/")) || tagged || meta {
            let body = c.get_object().bucket(bucket).key(&key).send().await.unwrap().body.collect().await.unwrap();
            found.insert(key, body.into_bytes().to_vec());
        }
    }
    found
}

#[test]
fn s3_export_holds_exactly_the_subjects_objects() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = support::s3::store();
    let bucket = rt.block_on(new_bucket(&store, false, false));
    let mut runner = TestRunner::new(Config { cases: 8, failure_persistence: None, ..Config::default() });
    let case = std::sync::atomic::AtomicUsize::new(0);
    // Per object: whose (a customer, or nobody), how it names them (key,
    // tag, metadata), and its body (JSON, text, binary).
    let object = (0usize..4, 0u8..3, 0u8..3);
    runner
        .run(&proptest::collection::vec(object, 0..10), |objects| {
            let n = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            rt.block_on(async {
                let prefix = format!("case{n}/");
                for (i, (owner, how, body)) in objects.iter().enumerate() {
                    let owner = CUSTOMERS.get(*owner).copied();
                    let body = match body {
                        0 => json!({ "n": i, "customer": owner }).to_string().into_bytes(),
                        1 => format!("call note {i} ü").into_bytes(),
                        _ => vec![0xff, 0xfe, i as u8, 0],
                    };
                    let (key, tag, meta) = match (owner, how) {
                        (Some(id), 0) => (format!("{prefix}customers/{id}/rec {i}.ogg"), None, None),
                        (Some(id), 1) => (format!("{prefix}misc/{i}.ogg"), Some(id), None),
                        (Some(id), _) => (format!("{prefix}misc/{i}.ogg"), None, Some(id)),
                        (None, _) => (format!("{prefix}misc/{i}.ogg"), None, None),
                    };
                    put_object(&store, &bucket, &key, &body, tag, meta).await;
                }
                let before = versions(&store, &bucket).await;
                let t = s3_target(&bucket, &prefix);
                let export = store.export_subject(&t, &customer("1001"), 100).await.unwrap();
                let expected = s3_direct(&store, &bucket, &prefix, "1001").await;
                let got: BTreeMap<String, &Value> =
                    export.records.iter().map(|r| (r["key"].as_str().unwrap().to_owned(), r)).collect();
                assert_eq!(got.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>());
                assert_eq!(got.len(), export.records.len(), "each object once");
                let keys: Vec<&str> = export.records.iter().map(|r| r["key"].as_str().unwrap()).collect();
                assert!(keys.is_sorted(), "in key order: {keys:?}");
                for (key, bytes) in &expected {
                    let record = got[key];
                    assert_eq!(body_of(record), expected_body(bytes), "{key}");
                    assert_eq!(record["size"], json!(bytes.len()), "{key}");
                    assert_eq!(record["contentType"], "application/octet-stream");
                    assert!(record.get("versionId").is_none(), "an unversioned bucket has no versions");
                }
                for other in ["1002", "10011"] {
                    let theirs = s3_direct(&store, &bucket, &prefix, other).await;
                    assert!(theirs.keys().all(|k| !got.contains_key(k)), "nothing of {other}");
                }
                assert_eq!(export.unreadable, 0);
                assert_eq!(store.count_subject(&t, &customer("1001")).await.unwrap(), expected.len() as u64);
                assert_eq!(versions(&store, &bucket).await, before, "the export changed nothing");
            });
            Ok(())
        })
        .unwrap();
}

#[tokio::test]
async fn s3_more_objects_than_the_limit_export_nothing() {
    let store = support::s3::store();
    let bucket = new_bucket(&store, false, false).await;
    for i in 0..3 {
        put_object(&store, &bucket, &format!("customers/1001/{i}"), b"x", None, None).await;
    }
    put_object(&store, &bucket, "misc/tagged", b"x", Some("1001"), None).await;
    let t = s3_target(&bucket, "");
    assert_over_limit(store.export_subject(&t, &customer("1001"), 3).await, 3);
    let export = store.export_subject(&t, &customer("1001"), 4).await.unwrap();
    assert_eq!(export.records.len(), 4);
}

#[tokio::test]
async fn s3_odd_keys_are_exported_exactly_and_unlistable_ones_counted() {
    let store = support::s3::store();
    let bucket = new_bucket(&store, false, false).await;
    let exact = [
        "customers/1001/a b.ogg",
        "customers/1001/tab\tkey.ogg",
        "customers/1001/jörg ünïcode €.ogg",
        "customers/1001/日本語 ファイル",
        "customers/1001/a+b&c=d?e#f%2e",
    ];
    for key in exact {
        put_object(&store, &bucket, key, key.as_bytes(), None, None).await;
    }
    // A control character XML cannot carry: versitygw lists it replaced,
    // so it cannot be read by its key. Counted, never guessed at.
    put_object(&store, &bucket, "customers/1001/ctl\u{1}key.ogg", b"x", None, None).await;
    let export = store.export_subject(&s3_target(&bucket, ""), &customer("1001"), 100).await.unwrap();
    let got: BTreeMap<&str, &Value> = export.records.iter().map(|r| (r["key"].as_str().unwrap(), r)).collect();
    let want: BTreeSet<&str> = exact.into_iter().collect();
    let listed_exactly = got.keys().copied().collect::<BTreeSet<_>>();
    if listed_exactly.len() == want.len() + 1 {
        // A server that lists the control character exactly exports it too.
        assert!(listed_exactly.contains("customers/1001/ctl\u{1}key.ogg"), "{listed_exactly:?}");
        assert_eq!(export.unreadable, 0);
    } else {
        assert_eq!(listed_exactly, want);
        assert_eq!(export.unreadable, 1, "the key listed with a replacement character");
    }
    for key in exact {
        assert_eq!(got[key]["body"], json!(key), "the body read by the exact key");
    }
}

#[tokio::test]
async fn s3_every_version_of_a_versioned_object_is_exported_newest_first() {
    let store = support::s3::store();
    let bucket = new_bucket(&store, true, false).await;
    for body in ["v1", "v2", "v3"] {
        put_object(&store, &bucket, "customers/1001/profile.json", body.as_bytes(), None, None).await;
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    put_object(&store, &bucket, "customers/1001/gone.txt", b"deleted since", None, None).await;
    store.client().delete_object().bucket(&bucket).key("customers/1001/gone.txt").send().await.unwrap();
    put_object(&store, &bucket, "customers/1002/profile.json", b"theirs", None, None).await;
    let before = versions(&store, &bucket).await;
    let export = store.export_subject(&s3_target(&bucket, ""), &customer("1001"), 100).await.unwrap();
    let shown: Vec<(&str, &str, bool, &str)> = export
        .records
        .iter()
        .map(|r| {
            (
                r["key"].as_str().unwrap(),
                r["versionId"].as_str().unwrap(),
                r["latest"].as_bool().unwrap(),
                r["body"].as_str().unwrap(),
            )
        })
        .collect();
    let bodies: Vec<(&str, bool, &str)> = shown.iter().map(|(k, _, l, b)| (*k, *l, *b)).collect();
    assert_eq!(
        bodies,
        vec![
            ("customers/1001/gone.txt", false, "deleted since"),
            ("customers/1001/profile.json", true, "v3"),
            ("customers/1001/profile.json", false, "v2"),
            ("customers/1001/profile.json", false, "v1"),
        ],
        "every data version, newest first; a delete marker holds no data"
    );
    let data_versions: BTreeSet<(String, String)> = before
        .iter()
        .filter(|(k, _, marker)| k.starts_with("customers/1001/") && !marker)
        .map(|(k, v, _)| (k.clone(), v.clone()))
        .collect();
    let exported: BTreeSet<(String, String)> =
        shown.iter().map(|(k, v, ..)| ((*k).to_owned(), (*v).to_owned())).collect();
    assert_eq!(exported, data_versions, "the version ids the server lists");
    assert_over_limit(store.export_subject(&s3_target(&bucket, ""), &customer("1001"), 3).await, 3);
    assert_eq!(versions(&store, &bucket).await, before, "the export changed nothing");
}

#[tokio::test]
async fn s3_a_binary_body_is_base64_and_json_stays_json() {
    let store = support::s3::store();
    let bucket = new_bucket(&store, false, false).await;
    let binary = [0u8, 159, 146, 150, 255, 10, 13];
    put_object(&store, &bucket, "customers/1001/voice.opus", &binary, None, None).await;
    put_object(&store, &bucket, "customers/1001/profile.json", br#"{"name": "Jan", "calls": [1, 2]}"#, None, None)
        .await;
    let export = store.export_subject(&s3_target(&bucket, ""), &customer("1001"), 100).await.unwrap();
    assert_eq!(export.records.len(), 2);
    let (json_record, voice) = (&export.records[0], &export.records[1]);
    assert_eq!(voice["bodyEncoding"], "base64");
    let decoded = base64::engine::general_purpose::STANDARD.decode(voice["body"].as_str().unwrap()).unwrap();
    assert_eq!(decoded, binary);
    assert_eq!(body_of(json_record), ("json", json!({ "name": "Jan", "calls": [1, 2] })));
}

#[tokio::test]
async fn s3_an_object_over_the_size_cap_is_listed_without_its_body_and_counted() {
    let store = support::s3::store();
    let bucket = new_bucket(&store, false, false).await;
    let at_cap = vec![b'a'; BODY_CAP as usize];
    let over = vec![b'b'; BODY_CAP as usize + 1];
    put_object(&store, &bucket, "customers/1001/at-cap.txt", &at_cap, None, None).await;
    put_object(&store, &bucket, "customers/1001/over-cap.txt", &over, Some("1001"), None).await;
    let export = store.export_subject(&s3_target(&bucket, ""), &customer("1001"), 100).await.unwrap();
    assert_eq!(export.records.len(), 2, "both listed");
    let (kept, left_out) = (&export.records[0], &export.records[1]);
    assert_eq!(kept["bodyEncoding"], "text");
    assert_eq!(kept["body"].as_str().unwrap().len(), BODY_CAP as usize, "a body at the cap is whole");
    assert_eq!(left_out["key"], "customers/1001/over-cap.txt");
    assert_eq!((left_out["bodyEncoding"].as_str(), &left_out["body"]), (Some("omitted"), &Value::Null));
    assert_eq!(left_out["size"], json!(BODY_CAP + 1));
    assert_eq!(left_out["tags"], json!({ "customer": "1001" }), "its metadata is there");
    assert_eq!(export.unreadable, 1, "the body left out is counted");
}

#[tokio::test]
async fn s3_an_object_under_legal_hold_is_read_and_exported() {
    let store = support::s3::store();
    let bucket = new_bucket(&store, true, true).await;
    let c = store.client();
    support::reach(
        c.put_object()
            .bucket(&bucket)
            .key("customers/1001/dispute.ogg")
            .body(ByteStream::from_static(b"recording"))
            .object_lock_legal_hold_status(ObjectLockLegalHoldStatus::On)
            .send()
            .await,
        support::s3::SERVER,
    );
    let before = versions(&store, &bucket).await;
    let export = store.export_subject(&s3_target(&bucket, ""), &customer("1001"), 100).await.unwrap();
    assert_eq!(export.records.len(), 1, "{export:?}");
    assert_eq!(export.records[0]["body"], "recording");
    assert_eq!(export.unreadable, 0);
    let hold = c.get_object_legal_hold().bucket(&bucket).key("customers/1001/dispute.ogg").send().await.unwrap();
    assert_eq!(hold.legal_hold().and_then(|h| h.status()), Some(&ObjectLockLegalHoldStatus::On), "still held");
    assert_eq!(versions(&store, &bucket).await, before);
}

// ------------------------------------------------------- local buckets ----

fn local_target(subject_fields: Value) -> Target {
    serde_json::from_value(json!({
        "name": "t", "dataStoreRef": { "name": "recordings" },
        "objects": { "bucket": "recordings", "prefix": "customers/" }, "subjectFields": subject_fields
    }))
    .unwrap()
}

fn local_fields() -> Value {
    json!([{ "identity": "customerId", "keyTemplate": "customers/{customerId}/" }])
}

/// Every file under `dir`, by path relative to it, with its bytes.
fn files_under(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut all = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                let rel = e.path().strip_prefix(dir).unwrap().to_str().unwrap().to_owned();
                all.insert(rel, fs::read(e.path()).unwrap());
            }
        }
    }
    all
}

fn put_file(path: &Path, bytes: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, bytes).unwrap();
}

#[test]
fn local_bucket_export_holds_exactly_the_subjects_files() {
    let mut runner = TestRunner::new(Config { cases: 24, failure_persistence: None, ..Config::default() });
    let object = (0usize..4, 0u8..3, 0u8..3);
    runner
        .run(&proptest::collection::vec(object, 0..14), |objects| {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let dir = tempfile::tempdir().unwrap();
            let bucket = dir.path().join("recordings");
            fs::create_dir_all(&bucket).unwrap();
            for (i, (owner, depth, body)) in objects.iter().enumerate() {
                let folder = match CUSTOMERS.get(*owner) {
                    Some(id) => format!("customers/{id}"),
                    None => "customers".to_owned(),
                };
                let key = match depth {
                    0 => format!("{folder}/{i}.ogg"),
                    1 => format!("{folder}/2024/{i} call.ogg"),
                    _ => format!("{folder}/2024/11/{i}.json"),
                };
                let bytes = match body {
                    0 => json!({ "n": i }).to_string().into_bytes(),
                    1 => format!("note {i}").into_bytes(),
                    _ => vec![0x80, i as u8, 0xff],
                };
                put_file(&bucket.join(&key), &bytes);
            }
            let before = files_under(&bucket);
            let store = LocalBucketStore::new(dir.path());
            let export =
                rt.block_on(store.export_subject(&local_target(local_fields()), &customer("1001"), 100)).unwrap();
            let expected: BTreeMap<&String, &Vec<u8>> =
                before.iter().filter(|(k, _)| k.starts_with("customers/1001/")).collect();
            let got: Vec<&str> = export.records.iter().map(|r| r["key"].as_str().unwrap()).collect();
            prop_assert_eq!(got.clone(), expected.keys().map(|k| k.as_str()).collect::<Vec<_>>(), "in key order");
            for record in &export.records {
                let bytes = expected[&record["key"].as_str().unwrap().to_owned()];
                prop_assert_eq!(body_of(record), expected_body(bytes));
                prop_assert_eq!(&record["size"], &json!(bytes.len()));
                prop_assert!(record.get("tags").is_none() && record.get("versionId").is_none());
            }
            prop_assert!(got.iter().all(|k| !k.starts_with("customers/10011/") && !k.starts_with("customers/1002/")));
            prop_assert_eq!(export.unreadable, 0);
            let counted = rt.block_on(store.count_subject(&local_target(local_fields()), &customer("1001"))).unwrap();
            prop_assert_eq!(counted, export.records.len() as u64);
            prop_assert_eq!(files_under(&bucket), before, "the export changed nothing");
            Ok(())
        })
        .unwrap();
}

#[tokio::test]
async fn local_bucket_more_objects_than_the_limit_export_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let bucket = dir.path().join("recordings");
    for i in 0..3 {
        put_file(&bucket.join(format!("customers/1001/{i}.ogg")), b"x");
    }
    put_file(&bucket.join("customers/10011/0.ogg"), b"x");
    let store = LocalBucketStore::new(dir.path());
    let t = local_target(local_fields());
    assert_over_limit(store.export_subject(&t, &customer("1001"), 2).await, 2);
    assert_eq!(store.export_subject(&t, &customer("1001"), 3).await.unwrap().records.len(), 3);
}

#[tokio::test]
async fn local_bucket_an_object_over_the_cap_is_listed_without_its_body_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let bucket = dir.path().join("recordings");
    put_file(&bucket.join("customers/1001/big.wav"), &vec![0u8; BODY_CAP as usize + 1]);
    put_file(&bucket.join("customers/1001/small.wav"), &[0xffu8, 0, 1]);
    let store = LocalBucketStore::new(dir.path());
    let export = store.export_subject(&local_target(local_fields()), &customer("1001"), 10).await.unwrap();
    assert_eq!(export.records.len(), 2);
    let (big, small) = (&export.records[0], &export.records[1]);
    assert_eq!((big["key"].as_str(), big["bodyEncoding"].as_str()), (Some("customers/1001/big.wav"), Some("omitted")));
    assert_eq!(big["size"], json!(BODY_CAP + 1));
    assert_eq!(body_of(small), ("base64", json!("/wAB")), "not UTF-8: base64");
    assert_eq!(export.unreadable, 1, "the body left out");
}

#[tokio::test]
async fn local_bucket_a_name_that_is_not_utf8_is_counted_not_exported() {
    use std::os::unix::ffi::OsStrExt;
    let dir = tempfile::tempdir().unwrap();
    let bucket = dir.path().join("recordings");
    put_file(&bucket.join("customers/1001/a.ogg"), b"x");
    put_file(&bucket.join("customers/1001").join(std::ffi::OsStr::from_bytes(b"caf\xe9.ogg")), b"x");
    let store = LocalBucketStore::new(dir.path());
    let export = store.export_subject(&local_target(local_fields()), &customer("1001"), 10).await.unwrap();
    assert_eq!(export.records.len(), 1);
    assert_eq!(export.unreadable, 1, "the name that cannot be a key may be the subject's");
}

// ---------------------------------------------------------- OpenSearch ----

fn search_target(pattern: &str) -> Target {
    serde_json::from_value(json!({
        "name": "t", "dataStoreRef": { "name": "search" },
        "logs": { "indexPattern": pattern, "timeField": "@timestamp" },
        "subjectFields": [{ "identity": "email", "field": "email" }]
    }))
    .unwrap()
}

/// E-mail values in documents: the subject's in several spellings, a longer
/// address that contains it, someone else's, and none.
const EMAILS: [Option<&str>; 6] = [
    Some("jan@example.com"),
    Some("JAN@Example.COM"),
    Some(" jan@example.com "),
    Some("mary.jan@example.com"),
    Some("piet@example.com"),
    None,
];

/// The test's own finding: every document of the pattern, read whole, kept
/// when its e-mail is the subject's in any letter case.
async fn search_direct(pattern: &str, address: &str) -> Vec<Value> {
    call(Method::POST, &format!("{pattern}/_refresh"), None).await;
    let all = call(
        Method::POST,
        &format!("{pattern}/_search?expand_wildcards=open"),
        Some(json!({ "size": 10000, "query": { "match_all": {} } })),
    )
    .await;
    let mut found: Vec<Value> = all["hits"]["hits"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|h| h["_source"]["email"].as_str().is_some_and(|e| e.trim().to_lowercase() == address))
        .map(|h| json!({ "index": h["_index"], "id": h["_id"], "source": h["_source"] }))
        .collect();
    found.sort_by_key(|r| (r["index"].as_str().unwrap().to_owned(), r["id"].as_str().unwrap().to_owned()));
    found
}

fn doc(i: usize, email: Option<&str>) -> Value {
    let mut d = json!({ "@timestamp": "2024-01-01T00:00:00Z", "message": format!("call {i}") });
    if let Some(e) = email {
        d["email"] = json!(e);
    }
    d
}

#[test]
fn search_export_holds_exactly_the_subjects_documents() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = support::search::store();
    let mut runner = TestRunner::new(Config { cases: 6, failure_persistence: None, ..Config::default() });
    let docs = proptest::collection::vec(0usize..EMAILS.len(), 0..10);
    runner
        .run(&proptest::collection::vec(docs, 1..4), |indices| {
            rt.block_on(async {
                let prefix = support::unique("dl-access-prop");
                let pattern = format!("{prefix}-*");
                let _cleanup = Cleanup::indices(&[&pattern]);
                for (n, docs) in indices.iter().enumerate() {
                    let index = format!("{prefix}-{n}");
                    create_index(&index, "date").await;
                    let batch: Vec<(String, Value)> =
                        docs.iter().enumerate().map(|(i, e)| (format!("d{i}"), doc(i, EMAILS[*e]))).collect();
                    index_docs(&index, &batch).await;
                }
                let before = support::search::snapshot(&pattern).await;
                let t = search_target(&pattern);
                let export = store.export_subject(&t, &email("Jan@example.com"), 100).await.unwrap();
                let expected = search_direct(&pattern, "jan@example.com").await;
                assert_eq!(export.records, expected);
                assert!(
                    export.records.iter().all(|r| !r["source"]["email"].as_str().unwrap().contains("mary")
                        && !r["source"]["email"].as_str().unwrap().contains("piet")),
                    "nothing of the others"
                );
                assert_eq!(export.unreadable, 0);
                assert_eq!(store.count_subject(&t, &email("jan@example.com")).await.unwrap(), expected.len() as u64);
                assert_eq!(support::search::snapshot(&pattern).await, before, "the export changed nothing");
            });
            Ok(())
        })
        .unwrap();
}

#[tokio::test]
async fn search_more_documents_than_the_limit_export_nothing() {
    let store = support::search::store();
    let index = support::unique("dl-access-limit");
    let _cleanup = Cleanup::indices(&[&index]);
    create_index(&index, "date").await;
    let batch: Vec<(String, Value)> = (0..5).map(|i| (format!("d{i}"), doc(i, Some("jan@example.com")))).collect();
    index_docs(&index, &batch).await;
    let t = search_target(&index);
    assert_over_limit(store.export_subject(&t, &email("jan@example.com"), 4).await, 4);
    assert_eq!(store.export_subject(&t, &email("jan@example.com"), 5).await.unwrap().records.len(), 5);
}

#[tokio::test]
async fn search_a_closed_index_is_counted_unreadable_and_left_closed() {
    let store = support::search::store();
    let prefix = support::unique("dl-access-closed");
    let (open, closed) = (format!("{prefix}-open"), format!("{prefix}-closed"));
    let _cleanup = Cleanup::indices(&[&format!("{prefix}-*")]);
    for index in [&open, &closed] {
        create_index(index, "date").await;
        index_docs(index, &[("1".into(), doc(1, Some("jan@example.com")))]).await;
    }
    call(Method::POST, &format!("{closed}/_close"), None).await;
    let export = store.export_subject(&search_target(&format!("{prefix}-*")), &email("jan@example.com"), 100).await;
    let export = export.unwrap();
    assert_eq!(export.records.len(), 1, "{export:?}");
    assert_eq!(export.records[0]["index"], json!(open));
    assert_eq!(export.unreadable, 1, "the closed index may hold the subject's documents");
    let rows =
        call(Method::GET, &format!("_cat/indices/{closed}?format=json&h=status&expand_wildcards=all"), None).await;
    assert_eq!(rows[0]["status"], "close", "left as it was");
}

#[tokio::test]
async fn search_a_data_streams_backing_indices_are_all_exported() {
    let store = support::search::store();
    let prefix = support::unique("dl-access-ds");
    let stream = format!("{prefix}-ds");
    let _cleanup = Cleanup { indices: Vec::new(), streams: vec![stream.clone()], templates: vec![prefix.clone()] };
    call(
        Method::PUT,
        &format!("_index_template/{prefix}"),
        Some(json!({
            "index_patterns": [format!("{stream}*")], "data_stream": {}, "priority": 500,
            "template": { "settings": { "number_of_shards": 1, "number_of_replicas": 0 },
                          "mappings": support::search::mapping("date") }
        })),
    )
    .await;
    call(Method::PUT, &format!("_data_stream/{stream}"), None).await;
    index_docs(
        &stream,
        &[("old".into(), doc(1, Some("jan@example.com"))), ("x".into(), doc(2, Some("piet@example.com")))],
    )
    .await;
    call(Method::POST, &format!("{stream}/_rollover"), None).await;
    index_docs(&stream, &[("new".into(), doc(3, Some("JAN@example.com")))]).await;
    let export = store.export_subject(&search_target(&stream), &email("jan@example.com"), 100).await.unwrap();
    let backing: BTreeSet<&str> = export.records.iter().map(|r| r["index"].as_str().unwrap()).collect();
    assert_eq!(export.records.len(), 2, "{export:?}");
    assert_eq!(backing.len(), 2, "one document in each backing index: {backing:?}");
    assert!(backing.iter().all(|i| i.starts_with(".ds-")), "{backing:?}");
    assert_eq!(export.records, search_direct(&stream, "jan@example.com").await);
}

// --------------------------------------------------------------- files ----

fn files_target(files: Value, subject_fields: Value) -> Target {
    serde_json::from_value(
        json!({ "name": "t", "dataStoreRef": { "name": "logs" }, "files": files, "subjectFields": subject_fields }),
    )
    .unwrap()
}

fn json_lines_target() -> Target {
    files_target(
        json!({ "glob": "*.jsonl*", "format": "JsonLines" }),
        json!([{ "identity": "email", "field": "email" }]),
    )
}

fn text_target(glob: &str) -> Target {
    files_target(json!({ "glob": glob }), json!([{ "identity": "email" }]))
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn plain(path: &Path) -> Vec<u8> {
    let bytes = fs::read(path).unwrap();
    if path.extension().is_some_and(|e| e == "gz") {
        let mut out = Vec::new();
        MultiGzDecoder::new(&bytes[..]).read_to_end(&mut out).unwrap();
        out
    } else {
        bytes
    }
}

/// The test's own scan of JSON-lines files: each line parsed, kept when its
/// e-mail field is the subject's in any letter case; in path order.
fn files_direct(root: &Path, address: &str) -> Vec<Value> {
    let mut paths: Vec<PathBuf> = fs::read_dir(root).unwrap().map(|e| e.unwrap().path()).collect();
    paths.sort();
    let mut found = Vec::new();
    for path in paths {
        let text = String::from_utf8(plain(&path)).unwrap();
        for (i, line) in text.lines().enumerate() {
            let value: Value = serde_json::from_str(line).unwrap();
            if value["email"].as_str().is_some_and(|e| e.trim().to_lowercase() == address) {
                let file = path.file_name().unwrap().to_str().unwrap();
                found.push(json!({ "file": file, "line": i + 1, "record": value }));
            }
        }
    }
    found
}

#[test]
fn files_export_holds_exactly_the_subjects_lines() {
    let mut runner = TestRunner::new(Config { cases: 32, failure_persistence: None, ..Config::default() });
    let file = (proptest::collection::vec(0usize..EMAILS.len(), 0..12), proptest::bool::ANY);
    runner
        .run(&proptest::collection::vec(file, 1..5), |files| {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            let dir = tempfile::tempdir().unwrap();
            for (n, (lines, gz)) in files.iter().enumerate() {
                let text: String = lines.iter().enumerate().map(|(i, e)| format!("{}\n", doc(i, EMAILS[*e]))).collect();
                if *gz {
                    fs::write(dir.path().join(format!("app.jsonl.{n}.gz")), gzip(text.as_bytes())).unwrap();
                } else {
                    fs::write(dir.path().join(format!("app-{n}.jsonl")), text).unwrap();
                }
            }
            let before = files_under(dir.path());
            let store = FileStore::new(dir.path());
            let export =
                rt.block_on(store.export_subject(&json_lines_target(), &email("jan@EXAMPLE.com"), 1000)).unwrap();
            let expected = files_direct(dir.path(), "jan@example.com");
            prop_assert_eq!(&export.records, &expected);
            let others = export.records.iter().filter(|r| {
                let e = r["record"]["email"].as_str().unwrap();
                e.contains("mary") || e.contains("piet")
            });
            prop_assert_eq!(others.count(), 0, "nothing of the others");
            prop_assert_eq!(export.unreadable, 0);
            let counted = rt.block_on(store.count_subject(&json_lines_target(), &email("jan@example.com"))).unwrap();
            prop_assert_eq!(counted, expected.len() as u64);
            prop_assert_eq!(files_under(dir.path()), before, "the export changed nothing");
            Ok(())
        })
        .unwrap();
}

#[tokio::test]
async fn files_more_lines_than_the_limit_export_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let lines: String = (0..5).map(|i| format!("{}\n", doc(i, Some("jan@example.com")))).collect();
    fs::write(dir.path().join("a.jsonl"), &lines).unwrap();
    fs::write(dir.path().join("b.jsonl"), &lines).unwrap();
    let store = FileStore::new(dir.path());
    assert_over_limit(store.export_subject(&json_lines_target(), &email("jan@example.com"), 9).await, 9);
    assert_eq!(
        store.export_subject(&json_lines_target(), &email("jan@example.com"), 10).await.unwrap().records.len(),
        10
    );
}

#[tokio::test]
async fn files_a_gzip_rotated_file_is_read_like_the_live_one() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("app.log"), "INFO login jan@example.com\nINFO other piet@example.com\n").unwrap();
    let rotated = "INFO start\nERROR failed for Jan@Example.com\n\tat Billing.charge\nINFO done\n";
    fs::write(dir.path().join("app.log.1.gz"), gzip(rotated.as_bytes())).unwrap();
    let store = FileStore::new(dir.path());
    let export = store.export_subject(&text_target("app.log*"), &email("jan@example.com"), 100).await.unwrap();
    assert_eq!(
        export.records,
        vec![
            json!({ "file": "app.log", "line": 1, "record": "INFO login jan@example.com" }),
            json!({ "file": "app.log.1.gz", "line": 2, "record": "ERROR failed for Jan@Example.com\n\tat Billing.charge" }),
        ],
        "a record with the line that continues it, from the gzip file too"
    );
    assert_eq!(export.unreadable, 0);
}

#[tokio::test]
async fn files_a_line_that_is_not_utf8_is_counted_not_exported() {
    let dir = tempfile::tempdir().unwrap();
    let mut log = b"INFO hello jan@example.com\n".to_vec();
    log.extend_from_slice(b"WARN caf\xe9 jan@example.com\n");
    log.extend_from_slice(b"WARN caf\xe9 nobody\n");
    fs::write(dir.path().join("app.log"), &log).unwrap();
    let store = FileStore::new(dir.path());
    let export = store.export_subject(&text_target("*.log"), &email("jan@example.com"), 100).await.unwrap();
    assert_eq!(export.records, vec![json!({ "file": "app.log", "line": 1, "record": "INFO hello jan@example.com" })]);
    assert_eq!(export.unreadable, 1, "the subject's line that is not UTF-8; the other line is not theirs");
    assert_eq!(fs::read(dir.path().join("app.log")).unwrap(), log);
}

#[tokio::test]
async fn files_a_gzip_file_that_breaks_halfway_is_counted_and_none_of_it_exported() {
    let dir = tempfile::tempdir().unwrap();
    let mut broken = gzip(b"INFO jan@example.com logged in\n");
    broken.extend_from_slice(b"\x1f\x8b\x08\x00garbage that is no gzip member");
    fs::write(dir.path().join("app.log.2.gz"), &broken).unwrap();
    fs::write(dir.path().join("app.log"), "INFO jan@example.com again\n").unwrap();
    let store = FileStore::new(dir.path());
    let export = store.export_subject(&text_target("app.log*"), &email("jan@example.com"), 100).await.unwrap();
    assert_eq!(export.records, vec![json!({ "file": "app.log", "line": 1, "record": "INFO jan@example.com again" })]);
    assert_eq!(export.unreadable, 1, "the damaged file, whose first lines cannot be trusted either");
}

#[tokio::test]
async fn files_a_json_line_that_is_no_object_but_names_the_subject_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let lines = format!("{}\n[\"jan@example.com\"]\n{{\"email\": \"jan@exa\n", doc(0, Some("jan@example.com")));
    fs::write(dir.path().join("a.jsonl"), lines).unwrap();
    let store = FileStore::new(dir.path());
    let export = store.export_subject(&json_lines_target(), &email("jan@example.com"), 100).await.unwrap();
    assert_eq!(export.records.len(), 1);
    assert_eq!(export.records[0]["line"], 1);
    assert_eq!(export.unreadable, 1, "the array names the subject; the cut line does not name it whole");
}

#[tokio::test]
async fn files_a_file_still_being_appended_is_read_up_to_where_its_writer_got() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live.jsonl");
    let mut writer = fs::File::create(&path).unwrap();
    for i in 0..50 {
        writer.write_all(format!("{}\n", json!({ "email": "jan@example.com", "seq": i })).as_bytes()).unwrap();
    }
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let appender = std::thread::spawn({
        let stop = stop.clone();
        move || {
            let mut seq = 50;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let line = format!("{}\n", json!({ "email": "jan@example.com", "seq": seq }));
                writer.write_all(line.as_bytes()).unwrap();
                seq += 1;
                std::thread::sleep(Duration::from_micros(200));
            }
            seq
        }
    });
    std::thread::sleep(Duration::from_millis(50));
    let store = FileStore::new(dir.path());
    let export = store.export_subject(&json_lines_target(), &email("jan@example.com"), 1_000_000).await.unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = appender.join().unwrap();
    let seqs: Vec<u64> = export.records.iter().map(|r| r["record"]["seq"].as_u64().unwrap()).collect();
    assert!(seqs.len() >= 50, "every line written before the export began: {}", seqs.len());
    assert_eq!(seqs, (0..seqs.len() as u64).collect::<Vec<_>>(), "whole lines, in order, none twice");
    assert!(seqs.len() as u64 <= written);
    for r in &export.records {
        assert_eq!(r["line"].as_u64().unwrap(), r["record"]["seq"].as_u64().unwrap() + 1);
    }
    // A line the writer was halfway through (a write across a page boundary
    // can show in part) is no JSON object yet: counted, never guessed at.
    assert!(export.unreadable <= 1, "{export:?}");
}
