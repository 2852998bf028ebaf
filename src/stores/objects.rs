//! S3-compatible buckets (AWS S3, versitygw, Ceph, SeaweedFS, Garage).
//!
//! A record is an object (a key). Every request goes through aws-sdk-s3,
//! because what this adapter needs is what object_store lacks: listing and
//! deleting object versions, reading tags and user metadata, reading object
//! lock and legal hold, and keys as raw strings (object_store's `Path`
//! refuses keys with `..` or empty segments, and its listing fails on the
//! first such key, so one odd key would stop every purge of the bucket).
//!
//! A due object's versions are deleted with DeleteObjects (at most 1000
//! keys or versions per request, a bounded number of requests in flight,
//! an optional rate limit); a server that refuses DeleteObjects gets one
//! DeleteObject per version instead. Objects under an object-lock retention
//! or a legal hold are never deleted: they are counted in
//! the account's retained records and logged with the reason (never the key).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::types::{
    BucketVersioningStatus, Delete, ObjectIdentifier, ObjectLockEnabled, ObjectLockLegalHoldStatus,
};
use futures::{StreamExt, TryStreamExt};
use jiff::Timestamp;
use jiff::tz::TimeZone;

use super::name_date::NameDate;
use super::{
    Cutoff, Incomplete, ProbeReport, Progress, PurgeFuture, PurgeOptions, PurgeReport, Store, StoreError, StoreFuture,
    Subject,
};
use crate::api::account::{Account, RetainReason, UnreadableReason};
use crate::api::policy::{ObjectAge, ObjectVersions, ObjectsTarget, SubjectField, Target};
use crate::api::{IdentityName, Mode, RetentionPeriod};

const KIND: &str = "s3";
/// The most keys one DeleteObjects request may name.
pub const MAX_KEYS_PER_DELETE: usize = 1000;

/// How to reach an S3-compatible service.
#[derive(Clone, Debug)]
pub struct S3Settings {
    /// Endpoint URL of an S3-compatible server; `None` for AWS S3.
    pub endpoint: Option<String>,
    /// Region of the buckets.
    pub region: String,
    /// Path-style addressing (`endpoint/bucket`), which most self-hosted servers need.
    pub path_style: bool,
    /// Access key id.
    pub access_key_id: String,
    /// Secret access key.
    pub secret_access_key: String,
    /// Requests in flight at once (deletes, tag and lock reads).
    pub max_concurrency: usize,
}

/// An S3-compatible service.
pub struct BucketStore {
    client: Client,
    endpoint: Option<String>,
    concurrency: usize,
    /// Set once the server refused DeleteObjects: delete one version at a time.
    one_by_one: AtomicBool,
}

impl std::fmt::Debug for BucketStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BucketStore").field("endpoint", &self.endpoint).field("concurrency", &self.concurrency).finish()
    }
}

/// One version of an object, or a delete marker.
#[derive(Clone, Debug)]
struct Version {
    /// `None` in an unversioned bucket.
    id: Option<String>,
    latest: bool,
    modified: Timestamp,
    marker: bool,
}

/// An object and its versions, newest first.
#[derive(Clone, Debug)]
struct Object {
    key: String,
    versions: Vec<Version>,
}

impl Object {
    /// The newest version that holds data (not a delete marker).
    fn newest_data(&self) -> Option<&Version> {
        self.versions.iter().find(|v| !v.marker)
    }

    /// The current version, unless the object is deleted (a delete marker is current).
    fn current(&self) -> Option<&Version> {
        self.versions.first().filter(|v| !v.marker)
    }
}

/// What a bucket is set up for.
#[derive(Clone, Copy, Debug)]
struct Bucket<'a> {
    name: &'a str,
    versioned: bool,
    locked: bool,
}

/// One version to delete; `version: None` deletes the current version
/// (leaving a delete marker in a versioned bucket).
#[derive(Clone, Debug)]
struct Entry {
    key: String,
    version: Option<String>,
}

/// The objects in scope, worked out from a listing.
#[derive(Debug, Default)]
struct Scope {
    /// Per object, the versions to delete.
    delete: Vec<Vec<Entry>>,
    /// Objects in scope kept under a legal hold.
    legal_hold: u64,
    /// Objects in scope kept under an object-lock retention period.
    locked: u64,
    /// Objects whose period tag is not a period.
    bad_periods: u64,
}

impl Scope {
    /// Writes what the scope kept, and why, into an account.
    fn account_for(&self, account: &mut Account) {
        account.retained.clear();
        account.unreadable.clear();
        account.add_retained(RetainReason::LegalHold, None, self.legal_hold);
        account.add_retained(RetainReason::ObjectLock, None, self.locked);
        account.add_unreadable(UnreadableReason::BadPeriod, self.bad_periods);
    }
}

/// Why an object version cannot be deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hold {
    Legal,
    Retention,
    /// The server's answer about the lock could not be read.
    Unreadable,
}

impl BucketStore {
    /// A client for the service; nothing is sent until the first call.
    pub fn new(settings: S3Settings) -> Self {
        let credentials = Credentials::new(&settings.access_key_id, &settings.secret_access_key, None, None, "delenda");
        let mut config = aws_sdk_s3::config::Builder::new()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(settings.region.clone()))
            .credentials_provider(credentials)
            .force_path_style(settings.path_style);
        if let Some(endpoint) = &settings.endpoint {
            config = config.endpoint_url(endpoint);
        }
        Self {
            client: Client::from_conf(config.build()),
            endpoint: settings.endpoint,
            concurrency: settings.max_concurrency.clamp(1, 64),
            one_by_one: AtomicBool::new(false),
        }
    }

    /// The underlying client, for tests and the benchmark harness.
    pub fn client(&self) -> &Client {
        &self.client
    }

    async fn bucket<'a>(&self, name: &'a str) -> Result<Bucket<'a>, StoreError> {
        let versioning =
            self.client.get_bucket_versioning().bucket(name).send().await.map_err(|e| classify(name, e))?;
        let versioned =
            matches!(versioning.status(), Some(BucketVersioningStatus::Enabled | BucketVersioningStatus::Suspended));
        let locked = match self.client.get_object_lock_configuration().bucket(name).send().await {
            Ok(out) => {
                out.object_lock_configuration().and_then(|c| c.object_lock_enabled())
                    == Some(&ObjectLockEnabled::Enabled)
            }
            // No lock configuration: the usual answer of an unlocked bucket.
            Err(e) if no_lock(&e) => false,
            Err(e) => return Err(classify(name, e)),
        };
        Ok(Bucket { name, versioned, locked })
    }

    /// Every object under `prefix` with its versions, newest first.
    async fn list(&self, bucket: &Bucket<'_>, prefix: &str) -> Result<Vec<Object>, StoreError> {
        let mut objects: BTreeMap<String, Vec<Version>> = BTreeMap::new();
        if !bucket.versioned {
            let mut pages = self.client.list_objects_v2().bucket(bucket.name).prefix(prefix).into_paginator().send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| classify(bucket.name, e))?;
                for o in page.contents() {
                    let Some(key) = o.key() else { continue };
                    let modified = o.last_modified().map(to_timestamp).unwrap_or(Timestamp::MAX);
                    objects.entry(key.to_owned()).or_default().push(Version {
                        id: None,
                        latest: true,
                        modified,
                        marker: false,
                    });
                }
            }
        } else {
            let (mut key_marker, mut version_marker): (Option<String>, Option<String>) = (None, None);
            loop {
                let page = self
                    .client
                    .list_object_versions()
                    .bucket(bucket.name)
                    .prefix(prefix)
                    .set_key_marker(key_marker.take())
                    .set_version_id_marker(version_marker.take())
                    .send()
                    .await
                    .map_err(|e| classify(bucket.name, e))?;
                for v in page.versions() {
                    let Some(key) = v.key() else { continue };
                    let modified = v.last_modified().map(to_timestamp).unwrap_or(Timestamp::MAX);
                    let id = v.version_id().map(str::to_owned);
                    objects.entry(key.to_owned()).or_default().push(Version {
                        id,
                        latest: v.is_latest() == Some(true),
                        modified,
                        marker: false,
                    });
                }
                for m in page.delete_markers() {
                    let Some(key) = m.key() else { continue };
                    let modified = m.last_modified().map(to_timestamp).unwrap_or(Timestamp::MAX);
                    let id = m.version_id().map(str::to_owned);
                    objects.entry(key.to_owned()).or_default().push(Version {
                        id,
                        latest: m.is_latest() == Some(true),
                        modified,
                        marker: true,
                    });
                }
                if page.is_truncated() != Some(true) {
                    break;
                }
                key_marker = page.next_key_marker().map(str::to_owned);
                version_marker = page.next_version_id_marker().map(str::to_owned);
                if key_marker.is_none() {
                    return Err(backend(
                        "the server said the version listing goes on, but gave no marker to go on from",
                    ));
                }
            }
        }
        Ok(objects
            .into_iter()
            .map(|(key, mut versions)| {
                versions.sort_by(|a, b| b.latest.cmp(&a.latest).then(b.modified.cmp(&a.modified)));
                Object { key, versions }
            })
            .collect())
    }

    async fn tags(&self, bucket: &str, key: &str, version: Option<&str>) -> Result<Vec<(String, String)>, StoreError> {
        let out = self
            .client
            .get_object_tagging()
            .bucket(bucket)
            .key(key)
            .set_version_id(version.map(str::to_owned))
            .send()
            .await
            .map_err(|e| classify(bucket, e))?;
        Ok(out.tag_set().iter().map(|t| (t.key().to_owned(), t.value().to_owned())).collect())
    }

    async fn metadata(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
    ) -> Result<Vec<(String, String)>, StoreError> {
        let out = self
            .client
            .head_object()
            .bucket(bucket)
            .key(key)
            .set_version_id(version.map(str::to_owned))
            .send()
            .await
            .map_err(|e| classify(bucket, e))?;
        Ok(out
            .metadata()
            .map(|m| m.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())).collect())
            .unwrap_or_default())
    }

    /// Whether a version is under a legal hold or an unexpired retention.
    /// What cannot be read is taken as held: an object is never deleted
    /// because its lock could not be checked.
    async fn hold(&self, bucket: &Bucket<'_>, key: &str, version: Option<&str>) -> Result<Option<Hold>, StoreError> {
        if !bucket.locked {
            return Ok(None);
        }
        let legal = self
            .client
            .get_object_legal_hold()
            .bucket(bucket.name)
            .key(key)
            .set_version_id(version.map(str::to_owned))
            .send()
            .await;
        match legal {
            Ok(out) if out.legal_hold().and_then(|h| h.status()) == Some(&ObjectLockLegalHoldStatus::On) => {
                return Ok(Some(Hold::Legal));
            }
            Ok(_) => {}
            Err(e) if no_lock(&e) => {}
            Err(e) => match classify(bucket.name, e) {
                StoreError::Backend { detail, .. } => {
                    tracing::warn!(store = KIND, detail, "cannot read an object's legal hold; the object is kept");
                    return Ok(Some(Hold::Unreadable));
                }
                other => return Err(other),
            },
        }
        let retention = self
            .client
            .get_object_retention()
            .bucket(bucket.name)
            .key(key)
            .set_version_id(version.map(str::to_owned))
            .send()
            .await;
        let until = match retention {
            Ok(out) => out.retention().and_then(|r| r.retain_until_date()).map(to_timestamp),
            Err(e) if no_lock(&e) => None,
            Err(e) => match retain_until_from_body(&e) {
                // Some servers (versitygw 1.8) answer with <ObjectLockRetention>
                // where S3 says <Retention>; the SDK cannot parse that, so read
                // the date from the body ourselves.
                Some(until) => until,
                None => match classify(bucket.name, e) {
                    StoreError::Backend { detail, .. } => {
                        tracing::warn!(store = KIND, detail, "cannot read an object's retention; the object is kept");
                        return Ok(Some(Hold::Unreadable));
                    }
                    other => return Err(other),
                },
            },
        };
        Ok(until.filter(|u| *u > Timestamp::now()).map(|_| Hold::Retention))
    }

    /// Whether any of `entries` is held; for a plain delete of the current
    /// version, the current version's hold counts.
    async fn any_hold(
        &self,
        bucket: &Bucket<'_>,
        object: &Object,
        entries: &[Entry],
    ) -> Result<Option<Hold>, StoreError> {
        if !bucket.locked {
            return Ok(None);
        }
        for e in entries {
            let version = match &e.version {
                Some(v) => Some(v.as_str()),
                None => object.current().and_then(|c| c.id.as_deref()),
            };
            if object.versions.iter().any(|v| v.marker && v.id.as_deref() == version && version.is_some()) {
                continue; // delete markers hold no data and no lock
            }
            if let Some(hold) = self.hold(bucket, &object.key, version).await? {
                return Ok(Some(hold));
            }
        }
        Ok(None)
    }

    /// Every version and delete marker of an object.
    fn all_versions(bucket: &Bucket<'_>, object: &Object) -> Vec<Entry> {
        if !bucket.versioned {
            return vec![Entry { key: object.key.clone(), version: None }];
        }
        object.versions.iter().map(|v| Entry { key: object.key.clone(), version: v.id.clone() }).collect()
    }

    async fn due_scope(&self, bucket: &Bucket<'_>, t: &ObjectsTarget, cutoff: &Cutoff) -> Result<Scope, StoreError> {
        let pattern = match (t.age, &t.key_date_pattern) {
            (ObjectAge::KeyDate, Some(p)) => Some(NameDate::compile(p, false).map_err(invalid)?),
            (ObjectAge::KeyDate, None) => return Err(invalid("age KeyDate needs a keyDatePattern".to_owned())),
            (ObjectAge::LastModified, _) => None,
        };
        let objects = self.list(bucket, &t.prefix).await?;
        let run_started = cutoff.run_started().to_zoned(TimeZone::UTC);
        let checks = futures::stream::iter(objects.into_iter().map(|object| {
            let pattern = pattern.as_ref();
            let run_started = &run_started;
            async move {
                let reference = match t.versions {
                    ObjectVersions::Current => object.current(),
                    ObjectVersions::All => object.newest_data(),
                };
                let Some(reference) = reference else { return Ok(Verdict::Skip) };
                // Records at or after `end` are the object's; due when `end` <= the cutoff.
                let (end, strict) = match pattern {
                    Some(p) => match p.period_end(&object.key[t.prefix.len()..]) {
                        Some(end) => (end, false),
                        None => return Ok(Verdict::Skip),
                    },
                    None => (reference.modified, true),
                };
                let mut before = cutoff.at();
                if let Some(tag) = &t.period_tag {
                    let tags = self.tags(bucket.name, &object.key, reference.id.as_deref()).await?;
                    if let Some((_, value)) = tags.iter().find(|(k, _)| k == tag) {
                        match value.parse::<RetentionPeriod>().ok().and_then(|p| p.before(run_started).ok()) {
                            Some(z) => before = z.timestamp(),
                            None => return Ok(Verdict::BadPeriod),
                        }
                    }
                }
                let due = if strict { end < before } else { end <= before };
                if !due {
                    return Ok(Verdict::Skip);
                }
                let entries = match t.versions {
                    ObjectVersions::All => Self::all_versions(bucket, &object),
                    ObjectVersions::Current => vec![Entry { key: object.key.clone(), version: None }],
                };
                match self.any_hold(bucket, &object, &entries).await? {
                    Some(hold) => Ok(Verdict::Held(hold)),
                    None => Ok(Verdict::Delete(entries)),
                }
            }
        }))
        .buffered(self.concurrency);
        collect_scope(checks).await
    }

    async fn subject_scope(
        &self,
        bucket: &Bucket<'_>,
        t: &ObjectsTarget,
        fields: &[SubjectField],
        subject: &Subject,
    ) -> Result<Scope, StoreError> {
        let mut prefixes: Vec<(String, bool)> = Vec::new();
        let mut tag_values: Vec<(&str, &str)> = Vec::new();
        let mut meta_values: Vec<(String, &str)> = Vec::new();
        for f in fields {
            for value in subject.values(&f.identity) {
                if let Some(template) = &f.key_template {
                    prefixes.push(template_prefix(template, &f.identity, value, &t.prefix)?);
                }
                if let Some(tag) = &f.tag {
                    tag_values.push((tag.as_str(), value));
                }
                if let Some(key) = &f.metadata {
                    meta_values.push((key.to_ascii_lowercase(), value));
                }
            }
        }
        let mut found: BTreeMap<String, Object> = BTreeMap::new();
        for (prefix, exact) in &prefixes {
            for object in self.list(bucket, prefix).await? {
                let rest = &object.key[prefix.len()..];
                if !*exact || rest.is_empty() || rest.starts_with('/') {
                    found.insert(object.key.clone(), object);
                }
            }
        }
        if !tag_values.is_empty() || !meta_values.is_empty() {
            let objects = self.list(bucket, &t.prefix).await?;
            let matches =
                futures::stream::iter(objects.into_iter().filter(|o| !found.contains_key(&o.key)).map(|object| {
                    let (tag_values, meta_values) = (&tag_values, &meta_values);
                    async move {
                        for v in object.versions.iter().filter(|v| !v.marker) {
                            if !tag_values.is_empty() {
                                let tags = self.tags(bucket.name, &object.key, v.id.as_deref()).await?;
                                if tags.iter().any(|(k, val)| tag_values.iter().any(|(tk, tv)| k == tk && val == tv)) {
                                    return Ok::<_, StoreError>(Some(object));
                                }
                            }
                            if !meta_values.is_empty() {
                                let meta = self.metadata(bucket.name, &object.key, v.id.as_deref()).await?;
                                if meta.iter().any(|(k, val)| meta_values.iter().any(|(mk, mv)| k == mk && val == mv)) {
                                    return Ok(Some(object));
                                }
                            }
                        }
                        Ok(None)
                    }
                }))
                .buffered(self.concurrency)
                .try_collect::<Vec<_>>()
                .await?;
            for object in matches.into_iter().flatten() {
                found.insert(object.key.clone(), object);
            }
        }
        let checks = futures::stream::iter(found.into_values().map(|object| async move {
            // Only delete markers left: nothing of the subject remains.
            if object.newest_data().is_none() {
                return Ok(Verdict::Skip);
            }
            let entries = Self::all_versions(bucket, &object);
            match self.any_hold(bucket, &object, &entries).await? {
                Some(hold) => Ok(Verdict::Held(hold)),
                None => Ok(Verdict::Delete(entries)),
            }
        }))
        .buffered(self.concurrency);
        collect_scope(checks).await
    }

    /// Deletes the scope's objects in batches of at most 1000 versions, a
    /// bounded number in flight. Objects the server refuses to delete for a
    /// lock are left for the read-back to find held.
    async fn delete(
        &self,
        bucket: &str,
        scope: Vec<Vec<Entry>>,
        options: &PurgeOptions,
        report: &mut PurgeReport,
    ) -> Result<(), StoreError> {
        let size = (options.max_batch_size as usize).clamp(1, MAX_KEYS_PER_DELETE);
        let size = options.max_records_per_second.map_or(size, |r| size.min(r.max(1) as usize));
        // Whole objects per batch, up to `size` versions (an object with more
        // versions than that is a batch of its own, sent in several requests).
        let mut batches: Vec<Vec<Vec<Entry>>> = Vec::new();
        let mut filled = usize::MAX;
        for object in scope {
            if filled.saturating_add(object.len()) > size {
                batches.push(Vec::new());
                filled = 0;
            }
            filled += object.len();
            batches.last_mut().expect("a batch was pushed").push(object);
        }
        let shared = Shared {
            pacer: Pacer::new(options.max_records_per_second),
            numbered: AtomicU64::new(report.batches),
            total: AtomicU64::new(report.account.deleted),
            max_took: Mutex::new(report.max_batch_duration),
        };
        let jobs: Vec<_> =
            batches.into_iter().map(|batch| self.delete_batch(bucket, batch, options, &shared)).collect();
        let results: Vec<Result<(), StoreError>> =
            futures::stream::iter(jobs).buffer_unordered(self.concurrency).collect().await;
        let Shared { numbered, total, max_took, .. } = shared;
        report.batches = numbered.into_inner();
        report.account.deleted = total.into_inner();
        report.max_batch_duration = max_took.into_inner().expect("not poisoned");
        let mut cancelled = false;
        for r in results {
            match r {
                Err(StoreError::Cancelled { .. }) => cancelled = true,
                Err(e) => return Err(e),
                Ok(()) => {}
            }
        }
        if cancelled {
            return Err(StoreError::Cancelled { deleted: report.account.deleted });
        }
        Ok(())
    }

    /// One batch of whole objects: pace, delete, report progress.
    async fn delete_batch(
        &self,
        bucket: &str,
        batch: Vec<Vec<Entry>>,
        options: &PurgeOptions,
        shared: &Shared,
    ) -> Result<(), StoreError> {
        let Shared { pacer, numbered, total, max_took } = shared;
        if options.cancel.is_cancelled() {
            return Err(StoreError::Cancelled { deleted: 0 });
        }
        pacer.take(batch.len() as u64, options).await;
        if options.cancel.is_cancelled() {
            return Err(StoreError::Cancelled { deleted: 0 });
        }
        let started = Instant::now();
        let entries: Vec<&Entry> = batch.iter().flatten().collect();
        let mut failed: Vec<(String, Option<String>, String)> = Vec::new();
        for chunk in entries.chunks(MAX_KEYS_PER_DELETE) {
            failed.extend(self.delete_versions(bucket, chunk).await?);
        }
        let locked = failed.iter().filter(|(_, _, code)| code == "AccessDenied" || code == "ObjectLocked").count();
        if let Some((_, _, code)) = failed.iter().find(|(_, _, code)| code != "AccessDenied" && code != "ObjectLocked")
        {
            return Err(backend(&format!("DeleteObjects refused {} versions, for example with {code}", failed.len())));
        }
        let failed_keys: std::collections::BTreeSet<&str> = failed.iter().map(|(k, _, _)| k.as_str()).collect();
        let deleted = batch.iter().filter(|o| !failed_keys.contains(o[0].key.as_str())).count() as u64;
        if locked > 0 {
            tracing::warn!(
                store = KIND,
                objects = failed_keys.len(),
                "the server refused to delete locked object versions; they are retained"
            );
        }
        let took = started.elapsed();
        let n = numbered.fetch_add(1, Ordering::Relaxed) + 1;
        let deleted_total = total.fetch_add(deleted, Ordering::Relaxed) + deleted;
        {
            let mut m = max_took.lock().expect("not poisoned");
            *m = (*m).max(took);
        }
        if let Some(progress) = &options.progress {
            progress(&Progress { batch: n, batch_size: batch.len() as u64, deleted, deleted_total, duration: took });
        }
        tracing::debug!(
            store = KIND,
            batch = n,
            size = batch.len(),
            deleted,
            millis = took.as_millis() as u64,
            "batch committed"
        );
        Ok(())
    }

    /// Deletes up to 1000 versions; returns those the server refused, with its code.
    async fn delete_versions(
        &self,
        bucket: &str,
        entries: &[&Entry],
    ) -> Result<Vec<(String, Option<String>, String)>, StoreError> {
        if !self.one_by_one.load(Ordering::Relaxed) {
            let ids = entries
                .iter()
                .map(|e| ObjectIdentifier::builder().key(&e.key).set_version_id(e.version.clone()).build())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| backend(&e.to_string()))?;
            let delete =
                Delete::builder().set_objects(Some(ids)).quiet(true).build().map_err(|e| backend(&e.to_string()))?;
            match self.client.delete_objects().bucket(bucket).delete(delete).send().await {
                Ok(out) => {
                    return Ok(out
                        .errors()
                        .iter()
                        .map(|e| {
                            (
                                e.key().unwrap_or_default().to_owned(),
                                e.version_id().map(str::to_owned),
                                e.code().unwrap_or("Unknown").to_owned(),
                            )
                        })
                        .collect());
                }
                Err(e)
                    if matches!(
                        e.code(),
                        Some(
                            "NotImplemented"
                                | "InvalidRequest"
                                | "MissingContentMD5"
                                | "InvalidDigest"
                                | "BadDigest"
                                | "XAmzContentChecksumMismatch"
                                | "InvalidArgument"
                        )
                    ) =>
                {
                    tracing::warn!(
                        store = KIND,
                        code = e.code(),
                        "the server refused DeleteObjects; deleting one version at a time"
                    );
                    self.one_by_one.store(true, Ordering::Relaxed);
                }
                Err(e) => return Err(classify(bucket, e)),
            }
        }
        let one_by_one: Vec<_> = entries.iter().map(|e| self.delete_one(bucket, e)).collect();
        let results =
            futures::stream::iter(one_by_one).buffer_unordered(self.concurrency).try_collect::<Vec<_>>().await?;
        Ok(results.into_iter().flatten().collect())
    }

    async fn delete_one(
        &self,
        bucket: &str,
        e: &Entry,
    ) -> Result<Option<(String, Option<String>, String)>, StoreError> {
        {
            match self.client.delete_object().bucket(bucket).key(&e.key).set_version_id(e.version.clone()).send().await
            {
                Ok(_) => Ok(None),
                Err(err)
                    if matches!(err.code(), Some("AccessDenied" | "ObjectLocked"))
                        && err.raw_response().is_some_and(|r| r.status().as_u16() == 403) =>
                {
                    Ok(Some((e.key.clone(), e.version.clone(), err.code().unwrap_or_default().to_owned())))
                }
                Err(err) => Err(classify(bucket, err)),
            }
        }
    }

    async fn scope(&self, bucket: &Bucket<'_>, of: &ScopeOf<'_>) -> Result<Scope, StoreError> {
        match of {
            ScopeOf::Due(t, cutoff) => self.due_scope(bucket, t, cutoff).await,
            ScopeOf::Subject(t, fields, subject) => self.subject_scope(bucket, t, fields, subject).await,
        }
    }

    /// Deletes a scope, then reads it back until nothing deletable remains.
    async fn delete_verified(
        &self,
        bucket: &Bucket<'_>,
        of: ScopeOf<'_>,
        options: &PurgeOptions,
        report: &mut PurgeReport,
    ) -> Result<(), StoreError> {
        let first = self.scope(bucket, &of).await?;
        report.account.matched = first.delete.len() as u64;
        first.account_for(&mut report.account);
        report_bad_periods(&first);
        if options.mode == Mode::DryRun {
            report.account.remaining = Some(report.account.matched);
            return Ok(());
        }
        let mut scope = first;
        for _pass in 0..2 {
            self.delete(bucket.name, scope.delete, options, report).await?;
            scope = self.scope(bucket, &of).await?;
            // The read-back knows which due objects are held, including any
            // locked between the listing and the delete.
            scope.account_for(&mut report.account);
            let remaining = scope.delete.len() as u64;
            report.account.remaining = Some(remaining);
            if remaining == 0 {
                return Ok(());
            }
        }
        Err(StoreError::NotVerified { deleted: report.account.deleted, remaining: scope.delete.len() as u64 })
    }

    /// [`Self::delete_verified`] with a report of its own, kept when it fails.
    async fn delete_reported(
        &self,
        bucket: &Bucket<'_>,
        of: ScopeOf<'_>,
        options: &PurgeOptions,
    ) -> Result<PurgeReport, Incomplete> {
        let mut report = PurgeReport::empty(options);
        match self.delete_verified(bucket, of, options, &mut report).await {
            Ok(()) => Ok(report),
            Err(error) => Err(Incomplete { error, report: Box::new(report) }),
        }
    }
}

/// Which objects a purge or erasure is about.
enum ScopeOf<'a> {
    Due(&'a ObjectsTarget, &'a Cutoff),
    Subject(&'a ObjectsTarget, &'a [SubjectField], &'a Subject),
}

/// What to do with one object.
enum Verdict {
    Skip,
    BadPeriod,
    Held(Hold),
    Delete(Vec<Entry>),
}

async fn collect_scope(checks: impl futures::Stream<Item = Result<Verdict, StoreError>>) -> Result<Scope, StoreError> {
    let verdicts: Vec<Verdict> = checks.try_collect().await?;
    let mut scope = Scope::default();
    let (mut legal, mut retention) = (0u64, 0u64);
    for v in verdicts {
        match v {
            Verdict::Skip => {}
            Verdict::BadPeriod => scope.bad_periods += 1,
            Verdict::Held(Hold::Legal) => legal += 1,
            Verdict::Held(Hold::Retention | Hold::Unreadable) => retention += 1,
            Verdict::Delete(entries) => scope.delete.push(entries),
        }
    }
    scope.legal_hold = legal;
    scope.locked = retention;
    if legal + retention > 0 {
        tracing::info!(
            store = KIND,
            legal_hold = legal,
            retention = retention,
            "objects in scope are under object lock and are retained"
        );
    }
    Ok(scope)
}

fn report_bad_periods(scope: &Scope) {
    if scope.bad_periods > 0 {
        tracing::warn!(
            store = KIND,
            objects = scope.bad_periods,
            "objects whose period tag is not a retention period (like 90d or 1y) are never deleted"
        );
    }
}

/// The key prefix of a subject's objects from a key template such as
/// `recordings/{customerId}/`, and whether the identity ends the template
/// (then only the key itself and keys under `prefix/` match, so customer 42
/// never reaches customer 421). Refuses identity values that could leave
/// their one key segment.
pub(crate) fn template_prefix(
    template: &str,
    identity: &IdentityName,
    value: &str,
    target_prefix: &str,
) -> Result<(String, bool), StoreError> {
    let placeholder = format!("{{{identity}}}");
    let Some(at) = template.find(&placeholder) else {
        return Err(invalid(format!(
            "keyTemplate '{template}' must contain the placeholder {placeholder} of its identity"
        )));
    };
    let (before, after) = (&template[..at], &template[at + placeholder.len()..]);
    if before.contains(['{', '}']) || after.contains(['{', '}']) {
        return Err(invalid(format!("keyTemplate '{template}' must contain exactly one placeholder, {placeholder}")));
    }
    if !(after.is_empty() || after.starts_with('/')) {
        return Err(invalid(format!(
            "in keyTemplate '{template}' the placeholder must end a key segment: follow it with '/' or nothing"
        )));
    }
    if !before.starts_with(target_prefix) {
        return Err(invalid(format!("keyTemplate '{template}' must lie under the target's prefix '{target_prefix}'")));
    }
    let unsafe_value = value.is_empty()
        || value == "."
        || value == ".."
        || value.len() > 512
        || value.contains(['/', '\\'])
        || value.chars().any(char::is_control);
    if unsafe_value {
        return Err(invalid(format!(
            "a {identity} value cannot be used in keyTemplate: it is empty, '.' or '..', longer than 512 bytes, or contains '/', '\\' or a control character"
        )));
    }
    Ok((format!("{before}{value}{after}"), after.is_empty()))
}

/// What concurrent batches share.
struct Shared {
    pacer: Pacer,
    numbered: AtomicU64,
    total: AtomicU64,
    max_took: Mutex<Duration>,
}

/// Spreads deletes so they stay under a rate, across concurrent batches.
struct Pacer {
    rate: Option<u32>,
    next: tokio::sync::Mutex<Option<Instant>>,
}

impl Pacer {
    fn new(rate: Option<u32>) -> Self {
        Self { rate, next: tokio::sync::Mutex::new(None) }
    }

    async fn take(&self, records: u64, options: &PurgeOptions) {
        let Some(rate) = self.rate else { return };
        let start = {
            let mut next = self.next.lock().await;
            let now = Instant::now();
            let start = next.map_or(now, |n| n.max(now));
            *next = Some(start + Duration::from_secs_f64(records as f64 / f64::from(rate.max(1))));
            start
        };
        tokio::select! {
            _ = tokio::time::sleep_until(start.into()) => {}
            _ = options.cancel.cancelled() => {}
        }
    }
}

/// Whether an error says that an object (or bucket) has no lock configured.
fn no_lock<E: ProvideErrorMetadata>(e: &E) -> bool {
    matches!(
        e.code(),
        Some("NoSuchObjectLockConfiguration" | "ObjectLockConfigurationNotFoundError" | "NoSuchObjectLegalHold")
    )
}

/// The retain-until date in the body of a successful answer that the SDK
/// could not parse: `Some(None)` for a body without one, `None` when the
/// body is not such an answer.
fn retain_until_from_body<E>(e: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> Option<Option<Timestamp>> {
    let raw = e.raw_response()?;
    if raw.status().as_u16() != 200 {
        return None;
    }
    let body = std::str::from_utf8(raw.body().bytes()?).ok()?;
    if !body.contains("Retention") {
        return None;
    }
    let Some(start) = body.find("<RetainUntilDate>") else { return Some(None) };
    let rest = &body[start + "<RetainUntilDate>".len()..];
    let text = &rest[..rest.find('<')?];
    text.trim().parse::<Timestamp>().ok().map(Some)
}

fn to_timestamp(t: &aws_sdk_s3::primitives::DateTime) -> Timestamp {
    Timestamp::new(t.secs(), t.subsec_nanos() as i32).unwrap_or(Timestamp::MAX)
}

fn invalid(detail: String) -> StoreError {
    StoreError::InvalidTarget { store: KIND, detail }
}

fn backend(detail: &str) -> StoreError {
    StoreError::Backend { store: KIND, detail: detail.to_owned() }
}

/// Sorts an SDK error into the store's categories. Messages carry the
/// server's code and status, never a key.
fn classify<E: ProvideErrorMetadata + std::error::Error + 'static>(
    bucket: &str,
    e: SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> StoreError {
    let status = e.raw_response().map(|r| r.status().as_u16());
    let code = e.code().map(str::to_owned);
    match (&e, code.as_deref(), status) {
        (SdkError::DispatchFailure(_) | SdkError::TimeoutError(_), _, _) => {
            StoreError::Unreachable { store: KIND, detail: std::error::Error::source(&e).map_or_else(|| e.to_string(), |s| s.to_string()) }
        }
        (_, Some("NoSuchBucket"), _) => StoreError::MissingTable { object: format!("bucket {bucket}"), hint: String::new() },
        (_, Some("InvalidAccessKeyId" | "SignatureDoesNotMatch" | "InvalidToken" | "ExpiredToken"), _) | (_, _, Some(401)) => {
            StoreError::AuthenticationFailed { store: KIND, detail: code.unwrap_or_else(|| "401".to_owned()) }
        }
        (_, Some("AccessDenied"), _) | (_, None, Some(403)) => StoreError::PermissionDenied {
            object: format!("bucket {bucket}"),
            detail: "AccessDenied: the operator's key needs s3:ListBucket(Versions), s3:GetObject(Tagging, Retention, LegalHold) and s3:DeleteObject(Version)".to_owned(),
        },
        _ => StoreError::Backend {
            store: KIND,
            detail: format!("{} (HTTP {})", code.unwrap_or_else(|| "no error code".to_owned()), status.map_or_else(|| "-".to_owned(), |s| s.to_string())),
        },
    }
}

fn objects_target(target: &Target) -> Result<&ObjectsTarget, StoreError> {
    target
        .objects
        .as_ref()
        .ok_or_else(|| invalid(format!("target {} names no objects (bucket and prefix)", target.name)))
}

impl Store for BucketStore {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn probe(&self) -> StoreFuture<'_, ProbeReport> {
        Box::pin(async move {
            self.client.list_buckets().send().await.map_err(|e| classify("(any)", e))?;
            // S3 has no version call; self-hosted servers name themselves in `Server`.
            let mut server_version = "S3".to_owned();
            if let Some(endpoint) = &self.endpoint
                && let Ok(resp) = reqwest::Client::new().head(endpoint).timeout(Duration::from_secs(5)).send().await
                && let Some(server) = resp.headers().get("server").and_then(|v| v.to_str().ok())
            {
                server_version = server.to_owned();
            }
            Ok(ProbeReport { kind: KIND, server_version })
        })
    }

    fn count_due<'a>(&'a self, target: &'a Target, cutoff: &'a Cutoff) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            let t = objects_target(target)?;
            let bucket = self.bucket(t.bucket.as_str()).await?;
            let scope = self.due_scope(&bucket, t, cutoff).await?;
            report_bad_periods(&scope);
            Ok(scope.delete.len() as u64)
        })
    }

    fn purge_due<'a>(&'a self, target: &'a Target, cutoff: &'a Cutoff, options: &'a PurgeOptions) -> PurgeFuture<'a> {
        Box::pin(async move {
            let t = objects_target(target)?;
            let bucket = self.bucket(t.bucket.as_str()).await?;
            self.delete_reported(&bucket, ScopeOf::Due(t, cutoff), options).await
        })
    }

    fn count_subject<'a>(&'a self, target: &'a Target, subject: &'a Subject) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            let t = objects_target(target)?;
            if target.subject_fields.is_empty() || subject.is_empty() {
                return Ok(0);
            }
            let bucket = self.bucket(t.bucket.as_str()).await?;
            Ok(self.subject_scope(&bucket, t, &target.subject_fields, subject).await?.delete.len() as u64)
        })
    }

    fn erase_subject<'a>(
        &'a self,
        target: &'a Target,
        subject: &'a Subject,
        options: &'a PurgeOptions,
    ) -> PurgeFuture<'a> {
        Box::pin(async move {
            let t = objects_target(target)?;
            if target.subject_fields.is_empty() || subject.is_empty() {
                let mut nothing = PurgeReport::empty(options);
                nothing.account.remaining = Some(0);
                return Ok(nothing);
            }
            let bucket = self.bucket(t.bucket.as_str()).await?;
            self.delete_reported(&bucket, ScopeOf::Subject(t, &target.subject_fields, subject), options).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> IdentityName {
        s.parse().unwrap()
    }

    #[test]
    fn a_key_template_yields_the_subjects_own_prefix() {
        let (p, exact) = template_prefix("recordings/{customerId}/", &id("customerId"), "42", "recordings/").unwrap();
        assert_eq!((p.as_str(), exact), ("recordings/42/", false));
        let (p, exact) = template_prefix("recordings/{customerId}", &id("customerId"), "42", "").unwrap();
        assert_eq!((p.as_str(), exact), ("recordings/42", true));
    }

    #[test]
    fn identity_values_cannot_leave_their_segment() {
        for value in ["", ".", "..", "a/b", "../x", "a\\b", "a\nb", &"x".repeat(513)] {
            assert!(template_prefix("r/{customerId}/", &id("customerId"), value, "").is_err(), "{value:?} accepted");
        }
        for value in ["a b", "jörg", "a..b", "…"] {
            assert!(template_prefix("r/{customerId}/", &id("customerId"), value, "").is_ok(), "{value:?} refused");
        }
    }

    #[test]
    fn bad_templates_are_refused() {
        let c = id("customerId");
        assert!(template_prefix("r/{email}/", &c, "1", "").is_err(), "another identity's placeholder");
        assert!(template_prefix("r/{customerId}-x/", &c, "1", "").is_err(), "placeholder inside a segment");
        assert!(template_prefix("r/{customerId}/{customerId}/", &c, "1", "").is_err(), "two placeholders");
        assert!(template_prefix("other/{customerId}/", &c, "1", "r/").is_err(), "outside the prefix");
    }
}
