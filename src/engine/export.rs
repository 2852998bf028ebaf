//! The export destination of access requests: an S3 bucket (and prefix)
//! the installation configures, never one a request names. Access
//! requests write each subject's export there, one object per target and a
//! manifest; when the export expires the operator deletes its objects and
//! lists the prefix again to prove none remain.
//!
//! The S3 client is built as the evidence sink's ([`BucketStore`] from
//! [`S3Settings`]). Errors name the bucket and the S3 error code, never an
//! object's contents.

use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::BucketVersioningStatus;

use crate::stores::objects::{BucketStore, S3Settings};

/// Where exports go and how long they stay.
#[derive(Clone, Debug)]
pub struct ExportSettings {
    /// The S3 service.
    pub s3: S3Settings,
    /// The bucket.
    pub bucket: String,
    /// A prefix for every object name, like `exports/`.
    pub prefix: String,
    /// Days an export stays before the operator deletes it.
    pub ttl_days: u32,
}

/// Why the destination did not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the access export bucket {bucket} refused: {detail}")]
pub struct ExportError {
    /// The bucket.
    pub bucket: String,
    /// The S3 error, without object contents.
    pub detail: String,
}

/// The export destination.
#[derive(Debug)]
pub struct ExportDestination {
    store: BucketStore,
    bucket: String,
    prefix: String,
    ttl_days: u32,
}

impl ExportDestination {
    /// A destination; nothing is sent until the first export.
    pub fn new(settings: ExportSettings) -> Self {
        Self {
            store: BucketStore::new(settings.s3),
            bucket: settings.bucket,
            prefix: settings.prefix,
            ttl_days: settings.ttl_days,
        }
    }

    /// The bucket.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The installation's prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Days an export stays.
    pub fn ttl_days(&self) -> u32 {
        self.ttl_days
    }

    fn error<E: ProvideErrorMetadata + std::error::Error + 'static>(
        &self,
        e: aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    ) -> ExportError {
        let detail = match (e.code(), e.message()) {
            (Some(code), Some(message)) => format!("{code}: {message}"),
            (Some(code), None) => code.to_owned(),
            _ => DisplayErrorContext(&e).to_string(),
        };
        ExportError { bucket: self.bucket.clone(), detail }
    }

    /// Writes one object.
    pub async fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), ExportError> {
        self.store
            .client()
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/json")
            .body(ByteStream::from(bytes))
            .send()
            .await
            .map_err(|e| self.error(e))?;
        Ok(())
    }

    /// The names of the objects below `prefix`.
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, ExportError> {
        let mut out = Vec::new();
        let mut pages =
            self.store.client().list_objects_v2().bucket(&self.bucket).prefix(prefix).into_paginator().send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.error(e))?;
            out.extend(page.contents().iter().filter_map(|o| o.key().map(str::to_owned)));
        }
        Ok(out)
    }

    /// Whether the bucket keeps versions (versioning enabled or suspended
    /// now or once: a suspended bucket still holds the versions it kept).
    async fn versioned(&self) -> Result<bool, ExportError> {
        let out =
            self.store.client().get_bucket_versioning().bucket(&self.bucket).send().await.map_err(|e| self.error(e))?;
        Ok(matches!(out.status(), Some(BucketVersioningStatus::Enabled | BucketVersioningStatus::Suspended)))
    }

    /// Every version and delete marker below `prefix`: (key, version id).
    async fn versions(&self, prefix: &str) -> Result<Vec<(String, Option<String>)>, ExportError> {
        let mut out = Vec::new();
        let (mut key_marker, mut version_marker): (Option<String>, Option<String>) = (None, None);
        loop {
            let page = self
                .store
                .client()
                .list_object_versions()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_key_marker(key_marker.take())
                .set_version_id_marker(version_marker.take())
                .send()
                .await
                .map_err(|e| self.error(e))?;
            let versions = page.versions().iter().map(|v| (v.key(), v.version_id()));
            let markers = page.delete_markers().iter().map(|m| (m.key(), m.version_id()));
            out.extend(versions.chain(markers).filter_map(|(k, v)| Some((k?.to_owned(), v.map(str::to_owned)))));
            if page.is_truncated() != Some(true) {
                return Ok(out);
            }
            key_marker = page.next_key_marker().map(str::to_owned);
            version_marker = page.next_version_id_marker().map(str::to_owned);
            if key_marker.is_none() && version_marker.is_none() {
                return Err(ExportError {
                    bucket: self.bucket.clone(),
                    detail: "the server said the version listing goes on, but gave no marker to go on from".into(),
                });
            }
        }
    }

    /// Deletes every object below `prefix`, then lists the prefix again:
    /// how many objects it deleted, or an error when any remain. In a
    /// bucket that keeps versions, deleting an object only hides it behind
    /// a delete marker and the export would stay readable: there every
    /// version and delete marker is deleted by its id, and the read-back
    /// lists versions.
    pub async fn delete_all(&self, prefix: &str) -> Result<u64, ExportError> {
        if self.versioned().await? {
            let versions = self.versions(prefix).await?;
            for (key, id) in &versions {
                let delete = self.store.client().delete_object().bucket(&self.bucket).key(key);
                delete.set_version_id(id.clone()).send().await.map_err(|e| self.error(e))?;
            }
            let left = self.versions(prefix).await?;
            if !left.is_empty() {
                return Err(ExportError {
                    bucket: self.bucket.clone(),
                    detail: format!("{} versions of the export remain after deleting them", left.len()),
                });
            }
            let objects: std::collections::BTreeSet<&str> = versions.iter().map(|(k, _)| k.as_str()).collect();
            return Ok(objects.len() as u64);
        }
        let keys = self.list(prefix).await?;
        for key in &keys {
            self.store
                .client()
                .delete_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await
                .map_err(|e| self.error(e))?;
        }
        let left = self.list(prefix).await?;
        if !left.is_empty() {
            return Err(ExportError {
                bucket: self.bucket.clone(),
                detail: format!("{} objects of the export remain after deleting them", left.len()),
            });
        }
        Ok(keys.len() as u64)
    }
}
