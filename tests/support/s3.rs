//! The S3 server of the test environment (versitygw from
//! `tests/env/servers/s3.sh`): a store, fresh buckets, objects, listings.

use std::collections::BTreeSet;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketVersioningStatus, VersioningConfiguration};
use delenda::api::policy::Target;
use delenda::stores::objects::{BucketStore, S3Settings};
use futures::StreamExt;
use serde_json::{Value, json};

/// The server's name, for messages.
pub const SERVER: &str = "S3 server";

/// How to reach the test server.
pub fn settings() -> S3Settings {
    S3Settings {
        endpoint: Some(super::setting("S3_ENDPOINT", SERVER)),
        region: super::setting("S3_REGION", SERVER),
        path_style: true,
        access_key_id: super::setting("S3_ACCESS_KEY_ID", SERVER),
        secret_access_key: super::setting("S3_SECRET_ACCESS_KEY", SERVER),
        max_concurrency: 4,
    }
}

/// A store on the test server.
pub fn store() -> BucketStore {
    BucketStore::new(settings())
}

/// A fresh bucket; versioned and/or with object lock enabled at creation.
pub async fn new_bucket(store: &BucketStore, versioned: bool, locked: bool) -> String {
    let name = super::unique("dl-objects");
    let c = store.client();
    super::reach(c.create_bucket().bucket(&name).object_lock_enabled_for_bucket(locked).send().await, SERVER);
    if versioned && !locked {
        let config = VersioningConfiguration::builder().status(BucketVersioningStatus::Enabled).build();
        super::reach(c.put_bucket_versioning().bucket(&name).versioning_configuration(config).send().await, SERVER);
    }
    name
}

/// Writes an object whose body is its key.
pub async fn put(store: &BucketStore, bucket: &str, key: &str) {
    let body = ByteStream::from(key.as_bytes().to_vec());
    let result = store.client().put_object().bucket(bucket).key(key).body(body).send().await;
    if let Err(e) = result {
        panic!("put {key:?} into {bucket}: {:?}", aws_sdk_s3::error::DisplayErrorContext(e));
    }
}

/// Writes many objects, eight at a time.
pub async fn put_many(store: &BucketStore, bucket: &str, keys: &[String]) {
    futures::stream::iter(keys.iter().map(|k| put(store, bucket, k))).buffer_unordered(8).collect::<Vec<_>>().await;
}

/// Every (key, version id, is delete marker) in the bucket.
pub async fn versions(store: &BucketStore, bucket: &str) -> BTreeSet<(String, String, bool)> {
    let mut all = BTreeSet::new();
    let (mut km, mut vm): (Option<String>, Option<String>) = (None, None);
    loop {
        let page = store
            .client()
            .list_object_versions()
            .bucket(bucket)
            .set_key_marker(km.take())
            .set_version_id_marker(vm.take())
            .send()
            .await
            .expect("list versions");
        for v in page.versions() {
            all.insert((v.key().unwrap().to_owned(), v.version_id().unwrap_or("null").to_owned(), false));
        }
        for m in page.delete_markers() {
            all.insert((m.key().unwrap().to_owned(), m.version_id().unwrap_or("null").to_owned(), true));
        }
        if page.is_truncated() != Some(true) {
            return all;
        }
        km = page.next_key_marker().map(str::to_owned);
        vm = page.next_version_id_marker().map(str::to_owned);
    }
}

/// The current keys of a bucket.
pub async fn keys(store: &BucketStore, bucket: &str) -> BTreeSet<String> {
    let mut all = BTreeSet::new();
    let mut pages = store.client().list_objects_v2().bucket(bucket).into_paginator().send();
    while let Some(page) = pages.next().await {
        for o in page.expect("list objects").contents() {
            all.insert(o.key().unwrap().to_owned());
        }
    }
    all
}

/// An objects target on `bucket`.
pub fn target(bucket: &str, objects: Value, subject_fields: Value) -> Target {
    let mut objects = objects;
    objects["bucket"] = json!(bucket);
    serde_json::from_value(
        json!({ "name": "t", "dataStoreRef": { "name": "s3" }, "objects": objects, "subjectFields": subject_fields }),
    )
    .expect("a valid target")
}
