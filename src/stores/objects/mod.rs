//! S3-compatible buckets (AWS S3, versitygw, Ceph, SeaweedFS, Garage).
//!
//! A record is an object (a key) with its versions. Every request goes
//! through aws-sdk-s3, because what this adapter needs is what object_store
//! lacks: listing and deleting object versions, reading tags and user
//! metadata, reading object lock and legal hold, and keys as raw strings
//! (object_store's `Path` refuses keys with `..` or empty segments, and its
//! listing fails on the first such key, so one odd key would stop every
//! purge of the bucket).
//!
//! The parts: [`listing`] (objects and versions, keys exactly as stored),
//! [`locks`] (legal holds and retentions), [`scope`] (which versions are
//! due or the subject's), [`delete`] (batches, conditions, rate),
//! [`export`] (a subject's objects for an access request); this
//! module drives a purge or erasure from listing to read-back and keeps the
//! account.

mod delete;
mod export;
mod listing;
mod locks;
mod scope;

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::types::{BucketVersioningStatus, ObjectLockEnabled};
use futures::{StreamExt, TryStreamExt};
use jiff::Timestamp;

use std::collections::BTreeMap;

use self::listing::{Bucket, Lister};
use self::locks::no_lock;
use self::scope::Tally;
pub(crate) use self::scope::template_prefix;
use super::{
    Cutoff, Incomplete, ProbeReport, PurgeFuture, PurgeOptions, PurgeReport, Store, StoreError, StoreFuture, Subject,
    SubjectExport,
};
use crate::api::Mode;
use crate::api::policy::{ObjectsTarget, SubjectField, Target};

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

/// One version to delete; `version: None` deletes the current version
/// (leaving a delete marker in a versioned bucket), and then only if it
/// still has `etag`.
#[derive(Clone, Debug)]
struct Entry {
    key: String,
    version: Option<String>,
    etag: Option<String>,
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
        // HeadBucket first: a missing bucket is a clear MissingTable.
        if let Err(e) = self.client.head_bucket().bucket(name).send().await
            && e.raw_response().is_some_and(|r| r.status().as_u16() == 404)
        {
            return Err(StoreError::MissingTable { object: format!("bucket {name}"), hint: String::new() });
        }
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

    /// Judges what `of` is about, a listing page at a time (retention) or
    /// all of one subject's objects at once (erasure), and, given `delete`,
    /// deletes each page's due objects while the next page is listed. A
    /// purge so holds a page and the batches in flight in memory, whatever
    /// the bucket's size; what it found is kept as counts.
    async fn sweep(
        &self,
        bucket: &Bucket<'_>,
        of: &ScopeOf<'_>,
        mut delete: Option<(&PurgeOptions, &mut PurgeReport)>,
    ) -> Result<Tally, StoreError> {
        let mut tally = Tally::default();
        match of {
            ScopeOf::Due(t, cutoff, held) => {
                let pattern = scope::due_pattern(t)?;
                let pattern = pattern.as_ref();
                let lister = Lister::new(self, bucket, &t.prefix);
                let counted = std::sync::Mutex::new(Tally::default());
                let counted_ref = &counted;
                // Boxed: the stream's closures borrow, and a boxed stream
                // lets the compiler prove it Send where those borrows are known.
                let pages: futures::stream::BoxStream<'_, Result<Vec<Vec<Entry>>, StoreError>> =
                    futures::stream::try_unfold(lister, |mut lister| async move {
                        Ok::<_, StoreError>(lister.next_page().await?.map(|page| (page, lister)))
                    })
                    .and_then(|objects| async move {
                        let page = self.due_scope(bucket, t, pattern, cutoff, objects, held).await?;
                        counted_ref.lock().expect("not poisoned").add(&page);
                        Ok(page.delete)
                    })
                    .boxed();
                match delete.as_mut() {
                    Some((options, report)) => self.delete_pages(bucket.name, pages, options, report).await?,
                    None => pages.try_for_each(|_| std::future::ready(Ok(()))).await?,
                }
                tally = counted.into_inner().expect("not poisoned");
            }
            ScopeOf::Subject(t, fields, subject) => {
                let scope = self.subject_scope(bucket, t, fields, subject).await?;
                tally.add(&scope);
                if let Some((options, report)) = delete.as_mut() {
                    self.delete(bucket.name, scope.delete, options, report).await?;
                }
            }
        }
        tally.log();
        Ok(tally)
    }

    /// Deletes what is in scope, then reads it back until nothing
    /// deletable remains.
    async fn delete_verified(
        &self,
        bucket: &Bucket<'_>,
        of: ScopeOf<'_>,
        options: &PurgeOptions,
        report: &mut PurgeReport,
    ) -> Result<(), StoreError> {
        if options.mode == Mode::DryRun {
            let found = self.sweep(bucket, &of, None).await?;
            found.account_for(&mut report.account);
            report.account.matched = found.due;
            report.account.remaining = Some(found.due);
            return Ok(());
        }
        let mut remaining = 0;
        for pass in 0..2 {
            let found = self.sweep(bucket, &of, Some((options, &mut *report))).await?;
            if pass == 0 {
                report.account.matched = found.due;
                found.account_for(&mut report.account);
            }
            // Nothing was due, so nothing was sent: the listing just made is
            // the read-back (a daily run usually finds nothing to delete).
            if pass == 0 && found.due == 0 {
                report.account.remaining = Some(0);
                return Ok(());
            }
            // The read-back knows which due objects are held, including any
            // locked between the listing and the delete.
            let back = self.sweep(bucket, &of, None).await?;
            back.account_for(&mut report.account);
            remaining = back.due;
            report.account.remaining = Some(remaining);
            if remaining == 0 {
                return Ok(());
            }
            if options.spent_budget().is_some() {
                return Err(options.budget_spent(report.account.deleted));
            }
        }
        Err(StoreError::NotVerified { deleted: report.account.deleted, remaining })
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

impl BucketStore {
    /// The keys of held subjects' objects, each with the Hold that keeps it.
    async fn held_keys(
        &self,
        bucket: &Bucket<'_>,
        target: &Target,
        t: &ObjectsTarget,
    ) -> Result<BTreeMap<String, String>, StoreError> {
        let mut held = BTreeMap::new();
        for (hold, identities) in target.held.subjects() {
            let subject = Subject::new(identities.iter().cloned());
            for key in self.subject_objects(bucket, t, &target.subject_fields, &subject, None).await?.into_keys() {
                held.entry(key).or_insert_with(|| hold.to_owned());
            }
        }
        Ok(held)
    }

    /// The keys of a subject's objects in a target (for placing and lifting
    /// legal holds).
    pub async fn subject_keys(&self, target: &Target, subject: &Subject) -> Result<Vec<String>, StoreError> {
        let t = objects_target(target)?;
        let bucket = self.bucket(t.bucket.as_str()).await?;
        if target.subject_fields.is_empty() || subject.is_empty() {
            return Ok(Vec::new());
        }
        Ok(self.subject_objects(&bucket, t, &target.subject_fields, subject, None).await?.into_keys().collect())
    }

    /// Whether the bucket has object lock enabled (legal holds can be set).
    pub async fn bucket_locked(&self, bucket: &str) -> Result<bool, StoreError> {
        Ok(self.bucket(bucket).await?.locked)
    }

    /// Sets or lifts the legal hold of an object's current version.
    /// Returns whether it was on before.
    pub async fn set_legal_hold(&self, bucket: &str, key: &str, on: bool) -> Result<bool, StoreError> {
        use aws_sdk_s3::types::{ObjectLockLegalHold, ObjectLockLegalHoldStatus};
        let before = match self.client.get_object_legal_hold().bucket(bucket).key(key).send().await {
            Ok(out) => out.legal_hold().and_then(|h| h.status()) == Some(&ObjectLockLegalHoldStatus::On),
            Err(e) if no_lock(&e) => false,
            Err(e) => return Err(classify(bucket, e)),
        };
        let status = if on { ObjectLockLegalHoldStatus::On } else { ObjectLockLegalHoldStatus::Off };
        self.client
            .put_object_legal_hold()
            .bucket(bucket)
            .key(key)
            .legal_hold(ObjectLockLegalHold::builder().status(status).build())
            .send()
            .await
            .map_err(|e| classify(bucket, e))?;
        Ok(before)
    }
}

/// Which objects a purge or erasure is about.
enum ScopeOf<'a> {
    /// Due objects; those keyed in the map are kept by the Hold it names.
    Due(&'a ObjectsTarget, &'a Cutoff, &'a BTreeMap<String, String>),
    Subject(&'a ObjectsTarget, &'a [SubjectField], &'a Subject),
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
        (SdkError::DispatchFailure(_) | SdkError::TimeoutError(_), _, _) => StoreError::Unreachable {
            store: KIND,
            detail: std::error::Error::source(&e).map_or_else(|| e.to_string(), |s| s.to_string()),
        },
        (_, Some("NoSuchBucket"), _) => StoreError::MissingTable { object: format!("bucket {bucket}"), hint: String::new() },
        (_, Some("InvalidAccessKeyId" | "SignatureDoesNotMatch" | "InvalidToken" | "ExpiredToken"), _) | (_, _, Some(401)) => {
            StoreError::AuthenticationFailed { store: KIND, detail: code.unwrap_or_else(|| "401".to_owned()) }
        }
        (_, Some("AccessDenied"), _) | (_, None, Some(403)) => StoreError::PermissionDenied {
            object: format!("bucket {bucket}"),
            detail: "AccessDenied: the operator's key needs s3:ListBucket(Versions), s3:GetBucketVersioning, s3:GetBucketObjectLockConfiguration, s3:GetObject(Tagging, Retention, LegalHold) and s3:DeleteObject(Version)".to_owned(),
        },
        _ => StoreError::Backend {
            store: KIND,
            detail: format!(
                "{} (HTTP {})",
                code.unwrap_or_else(|| "no error code".to_owned()),
                status.map_or_else(|| "-".to_owned(), |s| s.to_string())
            ),
        },
    }
}

fn objects_target(target: &Target) -> Result<&ObjectsTarget, StoreError> {
    target
        .objects
        .as_deref()
        .ok_or_else(|| invalid(format!("target {} names no objects (bucket and prefix)", target.name)))
}

impl Store for BucketStore {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn keeps_held_subjects(&self) -> bool {
        true
    }

    fn probe(&self) -> StoreFuture<'_, ProbeReport> {
        Box::pin(async move {
            // The operator needs no right to list every bucket: a key that
            // may not is still a key the server accepted.
            match self.client.list_buckets().send().await {
                Ok(_) => {}
                Err(e) if e.code() == Some("AccessDenied") => {}
                Err(e) => return Err(classify("(any)", e)),
            }
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

    fn clock(&self) -> StoreFuture<'_, Option<Timestamp>> {
        Box::pin(async move {
            // Every S3 answer carries the server's time in its Date header.
            let Some(endpoint) = &self.endpoint else { return Ok(None) };
            let Ok(resp) = reqwest::Client::new().head(endpoint).timeout(Duration::from_secs(5)).send().await else {
                return Ok(None);
            };
            Ok(resp
                .headers()
                .get("date")
                .and_then(|v| v.to_str().ok())
                .and_then(|d| jiff::fmt::rfc2822::parse(d).ok())
                .map(|z| z.timestamp()))
        })
    }

    fn check_target<'a>(&'a self, target: &'a Target) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let t = objects_target(target)?;
            self.bucket(t.bucket.as_str()).await.map(|_| ())
        })
    }

    fn count_due<'a>(&'a self, target: &'a Target, cutoff: &'a Cutoff) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            let t = objects_target(target)?;
            let bucket = self.bucket(t.bucket.as_str()).await?;
            let held = self.held_keys(&bucket, target, t).await?;
            Ok(self.sweep(&bucket, &ScopeOf::Due(t, cutoff, &held), None).await?.due)
        })
    }

    fn count_total<'a>(&'a self, target: &'a Target) -> StoreFuture<'a, Option<u64>> {
        Box::pin(async move {
            let t = objects_target(target)?;
            let bucket = self.bucket(t.bucket.as_str()).await?;
            let mut lister = Lister::new(self, &bucket, &t.prefix);
            let mut total = 0;
            while let Some(page) = lister.next_page().await? {
                total += page.len() as u64;
            }
            Ok(Some(total))
        })
    }

    fn purge_due<'a>(&'a self, target: &'a Target, cutoff: &'a Cutoff, options: &'a PurgeOptions) -> PurgeFuture<'a> {
        Box::pin(async move {
            let t = objects_target(target)?;
            let bucket = self.bucket(t.bucket.as_str()).await?;
            let held = self.held_keys(&bucket, target, t).await?;
            self.delete_reported(&bucket, ScopeOf::Due(t, cutoff, &held), options).await
        })
    }

    fn place_legal_holds<'a>(
        &'a self,
        target: &'a Target,
        subject: &'a Subject,
    ) -> StoreFuture<'a, Option<Vec<String>>> {
        Box::pin(async move {
            let t = objects_target(target)?;
            if !self.bucket_locked(t.bucket.as_str()).await? {
                return Ok(None);
            }
            let mut placed = Vec::new();
            for key in self.subject_keys(target, subject).await? {
                if !self.set_legal_hold(t.bucket.as_str(), &key, true).await? {
                    placed.push(key);
                }
            }
            Ok(Some(placed))
        })
    }

    fn lift_legal_holds<'a>(
        &'a self,
        target: &'a Target,
        ours: &'a (dyn Fn(&str) -> bool + Send + Sync),
    ) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            let t = objects_target(target)?;
            let bucket = self.bucket(t.bucket.as_str()).await?;
            if !bucket.locked {
                return Ok(0);
            }
            let mut lister = Lister::new(self, &bucket, &t.prefix);
            let mut lifted = 0;
            while let Some(objects) = lister.next_page().await? {
                for object in objects.iter().filter(|o| !o.mangled && ours(&o.key)) {
                    if object.current().is_none() {
                        continue;
                    }
                    self.set_legal_hold(t.bucket.as_str(), &object.key, false).await?;
                    lifted += 1;
                }
            }
            Ok(lifted)
        })
    }

    fn export_subject<'a>(
        &'a self,
        target: &'a Target,
        subject: &'a Subject,
        limit: u64,
    ) -> StoreFuture<'a, SubjectExport> {
        Box::pin(self.export(target, subject, limit))
    }

    fn count_subject<'a>(&'a self, target: &'a Target, subject: &'a Subject) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            let t = objects_target(target)?;
            if target.subject_fields.is_empty() || subject.is_empty() {
                return Ok(0);
            }
            let bucket = self.bucket(t.bucket.as_str()).await?;
            // Held objects are the subject's too: an erasure retains them.
            let found = self.sweep(&bucket, &ScopeOf::Subject(t, &target.subject_fields, subject), None).await?;
            Ok(found.due + found.held())
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
