//! S3: `BucketStore::purge_due` against `rclone delete --files-from` (Debian's
//! rclone, MIT) given the very keys that are due, on identical buckets of the
//! real S3 server of the test environment (issue 13: 50k objects, half due).
//!
//! The baseline is handed the due keys; Delenda finds them itself (listing,
//! judging each key's date) and reads back that none remains. Both buckets
//! are checked afterwards: exactly the due keys gone, every other key there.

use std::collections::BTreeSet;
use std::io::Write as _;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
use delenda::api::Mode;
use delenda::api::policy::Target;
use delenda::stores::objects::{BucketStore, S3Settings};
use delenda::stores::{Cutoff, PurgeOptions, Store};
use futures::StreamExt;
use jiff::{Timestamp, ToSpan};
use serde_json::json;

use super::{Row, Scale, median, timed};

const FULL_OBJECTS: u64 = 50_000;
/// Days the keys spread over; the cutoff falls in the middle.
const DAYS: u64 = 730;
/// Requests in flight on each side: the DataStore's default maxConcurrency
/// (4) for Delenda, rclone's default `--checkers 8` for the baseline.
const DELENDA_CONCURRENCY: usize = 4;

fn env(key: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| panic!("{key}: start the servers with tests/env/up and load .testenv/env"))
}

fn settings() -> S3Settings {
    S3Settings {
        endpoint: Some(env("S3_ENDPOINT")),
        region: env("S3_REGION"),
        path_style: true,
        access_key_id: env("S3_ACCESS_KEY_ID"),
        secret_access_key: env("S3_SECRET_ACCESS_KEY"),
        max_concurrency: DELENDA_CONCURRENCY,
    }
}

fn day0() -> Timestamp {
    "2024-01-01T00:00:00Z".parse().unwrap()
}

fn cutoff_at() -> Timestamp {
    day0() + ((DAYS / 2 * 24) as i64).hours()
}

/// Key `i`: a call recording under its day, the days spread evenly so half
/// the keys fall before the cutoff.
fn key(i: u64, n: u64) -> (String, bool) {
    let day = i * DAYS / n;
    let date = (day0() + ((day * 24) as i64).hours()).to_zoned(jiff::tz::TimeZone::UTC).date();
    let key = format!("calls/{:04}/{:02}/{:02}/rec-{i:06}.wav", date.year(), date.month(), date.day());
    (key, day < DAYS / 2)
}

async fn fill(store: &BucketStore, bucket: &str, keys: &[String], versioned: bool) {
    let c = store.client();
    c.create_bucket().bucket(bucket).send().await.unwrap_or_else(|e| {
        panic!("create {bucket}: {}; start the S3 server with tests/env/up", aws_sdk_s3::error::DisplayErrorContext(e))
    });
    if versioned {
        let config = VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build();
        c.put_bucket_versioning().bucket(bucket).versioning_configuration(config).send().await.expect("versioning");
    }
    futures::stream::iter(keys.iter().map(|k| async move {
        c.put_object()
            .bucket(bucket)
            .key(k)
            .body(ByteStream::from(k.as_bytes().to_vec()))
            .send()
            .await
            .unwrap_or_else(|e| panic!("put {k}: {}", aws_sdk_s3::error::DisplayErrorContext(e)));
    }))
    .buffer_unordered(16)
    .collect::<Vec<_>>()
    .await;
}

async fn listing(store: &BucketStore, bucket: &str) -> BTreeSet<String> {
    let mut all = BTreeSet::new();
    let mut pages = store.client().list_objects_v2().bucket(bucket).into_paginator().send();
    while let Some(page) = pages.next().await {
        for o in page.expect("list objects").contents() {
            all.insert(o.key().unwrap_or_default().to_owned());
        }
    }
    all
}

/// Deletes every version and delete marker, then the bucket.
async fn empty(store: &BucketStore, bucket: &str) {
    let c = store.client();
    let mut versions: Vec<(String, Option<String>)> = Vec::new();
    let (mut km, mut vm): (Option<String>, Option<String>) = (None, None);
    loop {
        let page = c
            .list_object_versions()
            .bucket(bucket)
            .set_key_marker(km.take())
            .set_version_id_marker(vm.take())
            .send()
            .await
            .expect("list versions");
        let named = |k: Option<&str>, v: Option<&str>| (k.unwrap_or_default().to_owned(), v.map(str::to_owned));
        versions.extend(page.versions().iter().map(|v| named(v.key(), v.version_id())));
        versions.extend(page.delete_markers().iter().map(|m| named(m.key(), m.version_id())));
        if page.is_truncated() != Some(true) {
            break;
        }
        km = page.next_key_marker().map(str::to_owned);
        vm = page.next_version_id_marker().map(str::to_owned);
    }
    futures::stream::iter(
        versions.iter().map(|(k, v)| c.delete_object().bucket(bucket).key(k).set_version_id(v.clone()).send()),
    )
    .buffer_unordered(16)
    .collect::<Vec<_>>()
    .await;
    let _ = c.delete_bucket().bucket(bucket).send().await;
}

/// `rclone delete REMOTE:bucket --files-from due.txt`, its remote configured
/// through the environment (no config file).
async fn rclone(bucket: &str, due: &[String]) {
    let rclone = std::env::var("RCLONE").unwrap_or_else(|_| "rclone".into());
    let mut list = tempfile::NamedTempFile::new().expect("a temporary file");
    for k in due {
        writeln!(list, "{k}").expect("write the key list");
    }
    list.flush().expect("flush the key list");
    let endpoint = env("S3_ENDPOINT");
    let out = tokio::process::Command::new(&rclone)
        .args(["delete", &format!("bench:{bucket}"), "--files-from"])
        .arg(list.path())
        .env("RCLONE_CONFIG_BENCH_TYPE", "s3")
        .env("RCLONE_CONFIG_BENCH_PROVIDER", "Other")
        .env("RCLONE_CONFIG_BENCH_ENDPOINT", endpoint)
        .env("RCLONE_CONFIG_BENCH_REGION", env("S3_REGION"))
        .env("RCLONE_CONFIG_BENCH_ACCESS_KEY_ID", env("S3_ACCESS_KEY_ID"))
        .env("RCLONE_CONFIG_BENCH_SECRET_ACCESS_KEY", env("S3_SECRET_ACCESS_KEY"))
        .env("RCLONE_CONFIG_BENCH_FORCE_PATH_STYLE", "true")
        // The endpoint is plain HTTP; rclone's AWS SDK refuses to start at all
        // when AWS_CA_BUNDLE is set (LoadCustomCABundleError), as on some machines.
        .env_remove("AWS_CA_BUNDLE")
        .output()
        .await
        .unwrap_or_else(|e| panic!("run {rclone} ({e}): install it with tests/env/up (tests/env/servers/rclone.sh)"));
    assert!(out.status.success(), "rclone failed: {}", String::from_utf8_lossy(&out.stderr));
}

async fn delenda(store: &BucketStore, bucket: &str, due: u64) -> String {
    let target: Target = serde_json::from_value(json!({"name": "bench", "dataStoreRef": {"name": "s3"},
        "objects": {"bucket": bucket, "prefix": "calls/", "age": "KeyDate", "keyDatePattern": "{yyyy}/{mm}/{dd}/"}}))
    .expect("a target");
    let cutoff = Cutoff::planned(cutoff_at(), cutoff_at() + 1.hour()).expect("a cutoff");
    let report = store.purge_due(&target, &cutoff, &PurgeOptions::new(Mode::Enforce)).await.expect("the purge");
    assert_eq!((report.account.deleted, report.account.remaining), (due, Some(0)), "{report:?}");
    format!("{} deleted in {} batches", report.account.deleted, report.batches)
}

/// One shape: both sides on identical buckets, rounds alternating which
/// goes first.
async fn shape(scale: &Scale, versioned: bool) -> Row {
    let n = scale.n(FULL_OBJECTS, 200);
    let store = BucketStore::new(settings());
    let all: Vec<(String, bool)> = (0..n).map(|i| key(i, n)).collect();
    let keys: Vec<String> = all.iter().map(|(k, _)| k.clone()).collect();
    let due: Vec<String> = all.iter().filter(|(_, d)| *d).map(|(k, _)| k.clone()).collect();
    let kept: BTreeSet<String> = all.iter().filter(|(_, d)| !*d).map(|(k, _)| k.clone()).collect();
    let (mut base_t, mut dl_t) = (vec![], vec![]);
    let mut note = String::new();
    for round in 0..scale.rounds {
        let tag = format!("{}-{round}-{}", std::process::id(), if versioned { "v" } else { "u" });
        let (b, d) = (format!("bench-s3-base-{tag}"), format!("bench-s3-dl-{tag}"));
        fill(&store, &b, &keys, versioned).await;
        fill(&store, &d, &keys, versioned).await;
        let run_base = async {
            let ((), t) = timed(rclone(&b, &due)).await;
            base_t.push(t);
        };
        let run_dl = async {
            let (what, t) = timed(delenda(&store, &d, due.len() as u64)).await;
            dl_t.push(t);
            note = format!("{n} objects, {} due; Delenda: {what}", due.len());
        };
        if round % 2 == 0 {
            run_dl.await;
            run_base.await;
        } else {
            run_base.await;
            run_dl.await;
        }
        for bucket in [&b, &d] {
            assert_eq!(listing(&store, bucket).await, kept, "{bucket}: exactly the due keys went");
        }
        empty(&store, &b).await;
        empty(&store, &d).await;
        scale.say(|| format!("s3 round {round}: rclone {:.3} s, Delenda {:.3} s", base_t[round], dl_t[round]));
    }
    let (bm, dm) = (median(base_t), median(dl_t));
    let (what, how) = if versioned {
        (
            "versioned",
            "`rclone delete --files-from` the due keys (it only adds delete markers; Delenda removes every version)",
        )
    } else {
        ("unversioned", "`rclone delete --files-from` the due keys")
    };
    Row {
        shape: format!("S3 server (versitygw), {n} objects, half due, {what}"),
        baseline: how.into(),
        baseline_value: bm,
        delenda_value: dm,
        unit: "s",
        ratio: Some(bm / dm),
        goal: Some(3.0),
        limits: vec![],
        note,
    }
}

/// The scenario of issue 13, in a bucket without versioning (every object
/// deleted on the condition that it is unchanged, one request each) and
/// with it (DeleteObjects by version id, 1,000 a request).
pub async fn s3(scale: &Scale) -> Vec<Row> {
    vec![shape(scale, false).await, shape(scale, true).await]
}
