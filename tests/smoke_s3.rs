//! Smoke test of the S3 test server (versitygw from `tests/env/servers/s3.sh`):
//! a bucket with versioning, then put, list and delete through object_store.
//!
//! object_store cannot create buckets or change their settings, so those
//! requests are presigned with object_store's own signer (`Signer`) and sent
//! with reqwest: no other S3 client is needed.
mod support;

use std::time::Duration;

use futures::TryStreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::signer::{Method, SignedUrlOptions, Signer};
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

const SERVER: &str = "S3 server";

struct S3 {
    endpoint: String,
    access_key: String,
    secret_key: String,
    region: String,
}

impl S3 {
    fn from_settings() -> Self {
        S3 {
            endpoint: support::setting("S3_ENDPOINT", SERVER),
            access_key: support::setting("S3_ACCESS_KEY_ID", SERVER),
            secret_key: support::setting("S3_SECRET_ACCESS_KEY", SERVER),
            region: support::setting("S3_REGION", SERVER),
        }
    }

    fn store(&self, bucket: &str) -> AmazonS3 {
        AmazonS3Builder::new()
            .with_endpoint(&self.endpoint)
            .with_allow_http(true)
            .with_region(&self.region)
            .with_access_key_id(&self.access_key)
            .with_secret_access_key(&self.secret_key)
            .with_virtual_hosted_style_request(false)
            .with_bucket_name(bucket)
            .build()
            .expect("S3 client configuration")
    }
}

/// Sends a bucket-level request (path "" of `store`'s bucket), presigned by
/// object_store with `query` folded into the signature; returns status and body.
async fn bucket_request(
    store: &AmazonS3,
    method: Method,
    query: &[(&str, &str)],
    body: &str,
) -> (reqwest::StatusCode, String) {
    let opts = SignedUrlOptions::default().with_query(query.iter().copied());
    let url = store
        .signed_url_opts(method.clone(), &Path::from(""), Duration::from_secs(300), &opts)
        .await
        .expect("presign bucket request");
    let resp =
        support::reach(reqwest::Client::new().request(method, url.as_str()).body(body.to_owned()).send().await, SERVER);
    let status = resp.status();
    (status, resp.text().await.unwrap_or_default())
}

#[tokio::test]
async fn s3_bucket_put_list_delete() {
    let s3 = S3::from_settings();

    // Which server is this? versitygw answers with `Server: VERSITYGW`.
    let resp = support::reach(reqwest::get(format!("{}/", s3.endpoint)).await, SERVER);
    let server_header = resp.headers().get("server").and_then(|v| v.to_str().ok()).unwrap_or("unknown").to_owned();
    println!("reached S3 server at {} (Server: {server_header})", s3.endpoint);

    let bucket = support::unique("smoke");
    let store = s3.store(&bucket);

    // Create the bucket.
    let (status, body) = bucket_request(&store, Method::PUT, &[], "").await;
    assert!(status.is_success(), "create bucket {bucket}: {status} {body}");

    // Enable versioning, then read it back.
    let config = r#"<VersioningConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Status>Enabled</Status></VersioningConfiguration>"#;
    let (status, body) = bucket_request(&store, Method::PUT, &[("versioning", "")], config).await;
    assert!(status.is_success(), "enable versioning on {bucket}: {status} {body}");
    let (status, body) = bucket_request(&store, Method::GET, &[("versioning", "")], "").await;
    assert!(
        status.is_success() && body.contains("<Status>Enabled</Status>"),
        "versioning of {bucket} reads back as: {status} {body}"
    );

    // Put, list, delete through object_store.
    let key = Path::from("dir/object.txt");
    support::reach(store.put(&key, PutPayload::from_static(b"hello delenda")).await, SERVER);
    let got = store.get(&key).await.expect("get").bytes().await.expect("read body");
    assert_eq!(&got[..], b"hello delenda");

    let listed: Vec<_> = store.list(None).try_collect().await.expect("list");
    assert_eq!(listed.len(), 1, "listing: {listed:?}");
    assert_eq!(listed[0].location, key);
    assert_eq!(listed[0].size, 13);

    store.delete(&key).await.expect("delete");
    let listed: Vec<_> = store.list(None).try_collect().await.expect("list after delete");
    assert!(listed.is_empty(), "still listed after delete: {listed:?}");

    // With versioning on, the delete left a delete marker and the old version.
    let (status, body) = bucket_request(&store, Method::GET, &[("versions", "")], "").await;
    assert!(status.is_success(), "list versions: {status} {body}");
    assert!(body.contains("<DeleteMarker>"), "no delete marker after delete: {body}");
    assert!(body.contains("<Version>"), "no noncurrent version after delete: {body}");
}
