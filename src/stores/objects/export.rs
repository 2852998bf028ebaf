//! A subject's objects for an access request's export: the objects an
//! erasure would delete ([`BucketStore::subject_objects`], the same
//! matcher), each data version with its metadata, tags and body. Delete
//! markers hold no data and are not records; a key the server listed
//! mangled cannot be read and is counted as unreadable. Nothing is written:
//! objects under legal hold or retention are read like any other.

use futures::{StreamExt, TryStreamExt};

use super::listing::{Bucket, Version};
use super::locks::gone;
use super::{BucketStore, KIND, classify, objects_target, to_timestamp};
use crate::api::policy::Target;
use crate::stores::export::{BODY_CAP, Gather, ObjectRecord};
use crate::stores::{StoreError, Subject, SubjectExport};

impl BucketStore {
    /// The subject's objects in the target, at most `limit` data versions.
    pub(super) async fn export(
        &self,
        target: &Target,
        subject: &Subject,
        limit: u64,
    ) -> Result<SubjectExport, StoreError> {
        let t = objects_target(target)?;
        let mut gather = Gather::new(limit, format!("bucket {}", t.bucket));
        if target.subject_fields.is_empty() || subject.is_empty() {
            return Ok(gather.finish());
        }
        let bucket = self.bucket(t.bucket.as_str()).await?;
        let found = self.subject_objects(&bucket, t, &target.subject_fields, subject, Some(limit)).await?;
        // Too many is known from the listing, before any body is read.
        gather.check(found.values().filter(|o| !o.mangled).map(|o| o.data_versions().count() as u64).sum())?;
        let mangled = found.values().filter(|o| o.mangled).count() as u64;
        if mangled > 0 {
            gather.unreadable(mangled);
            tracing::warn!(
                store = KIND,
                objects = mangled,
                "objects of the subject have keys the server listed with characters replaced; they cannot be read and are counted as unreadable"
            );
        }
        // Owned, so the reads can run side by side without borrowing the listing.
        let versions: Vec<(String, Version)> = found
            .into_values()
            .filter(|o| !o.mangled)
            .flat_map(|o| o.data_versions().cloned().map(|v| (o.key.clone(), v)).collect::<Vec<_>>())
            .collect();
        let bucket = &bucket;
        let mut reads = futures::stream::iter(versions.into_iter().map(|(key, v)| self.read_version(bucket, key, v)))
            .buffered(self.concurrency);
        // `None`: deleted since it was listed, so no longer the subject's data.
        while let Some(record) = reads.try_next().await? {
            if let Some(record) = record {
                gather.push_object(record)?;
            }
        }
        Ok(gather.finish())
    }

    /// One version's record; `None` when it is gone.
    async fn read_version(
        &self,
        bucket: &Bucket<'_>,
        key: String,
        version: Version,
    ) -> Result<Option<ObjectRecord>, StoreError> {
        let Some(tags) = self.tags(bucket.name, &key, version.id.as_deref()).await? else { return Ok(None) };
        let got =
            self.client.get_object().bucket(bucket.name).key(&key).set_version_id(version.id.clone()).send().await;
        let out = match got {
            Ok(out) => out,
            Err(e) if gone(&e) || e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => return Ok(None),
            Err(e) => return Err(classify(bucket.name, e)),
        };
        let size = out.content_length().map_or(0, |n| n.max(0) as u64);
        let mut record = ObjectRecord {
            key,
            version_id: bucket.versioned.then(|| version.id.clone()).flatten(),
            latest: bucket.versioned.then_some(version.latest),
            last_modified: out.last_modified().map(to_timestamp).or(Some(version.modified)),
            size,
            content_type: out.content_type().map(str::to_owned),
            metadata: Some(
                out.metadata()
                    .map(|m| m.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())).collect())
                    .unwrap_or_default(),
            ),
            tags: Some(tags),
            body: None,
        };
        if size <= BODY_CAP {
            record.body = read_capped(out.body).await.map_err(|e| StoreError::Backend {
                store: KIND,
                detail: format!("reading an object's body in bucket {} failed: {e}", bucket.name),
            })?;
        }
        Ok(Some(record))
    }
}

/// Reads a body of at most [`BODY_CAP`] bytes; `None` when it is longer
/// (the server's length was wrong, or the object changed): never cut short.
async fn read_capped(mut body: aws_sdk_s3::primitives::ByteStream) -> Result<Option<Vec<u8>>, String> {
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| e.to_string())?;
        if (out.len() + chunk.len()) as u64 > BODY_CAP {
            return Ok(None);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(Some(out))
}
