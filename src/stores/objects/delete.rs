//! Deleting: version by version id with DeleteObjects (at most 1000 per
//! request, a bounded number of requests in flight, an optional rate),
//! and whatever has no version id to pin it one object at a time, on the
//! condition that it is still what the listing saw (`If-Match` with its
//! ETag): an object rewritten between the listing and the delete is kept.
//! Keys that XML cannot carry (control characters) are deleted one at a
//! time too, since the DeleteObjects request body is XML.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_s3::error::ProvideErrorMetadata;
use aws_sdk_s3::types::{Delete, ObjectIdentifier};
use futures::{StreamExt, TryStreamExt};
use tokio::sync::Semaphore;

use super::locks::gone;
use super::{BucketStore, Entry, KIND, MAX_KEYS_PER_DELETE, backend, classify};
use crate::stores::{Progress, PurgeOptions, PurgeReport, StoreError};

/// What concurrent batches share.
struct Shared {
    pacer: Pacer,
    numbered: AtomicU64,
    total: AtomicU64,
    max_took: Mutex<Duration>,
    /// Requests in flight, over every batch: the store's concurrency.
    requests: Semaphore,
}

/// Whole objects in batches of at most `size` versions (an object larger
/// than `size` is a batch of its own).
fn in_batches(scope: Vec<Vec<Entry>>, size: usize) -> Vec<Vec<Vec<Entry>>> {
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
    batches
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

/// Whether XML 1.0 can carry the key (the DeleteObjects body is XML).
fn xml_safe(key: &str) -> bool {
    key.chars().all(|c| matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{fffe}' && c != '\u{ffff}'))
}

/// What happened to one version.
#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    Deleted,
    /// The server refused for a lock: found held at the read-back.
    Locked,
    /// Changed since the listing, or already gone: not ours to delete.
    Skipped,
}

impl BucketStore {
    /// Deletes the scope's objects in batches of whole objects. Objects the
    /// server refuses to delete for a lock are left for the read-back to
    /// find held; objects changed since the listing are left alone.
    pub(super) async fn delete(
        &self,
        bucket: &str,
        scope: Vec<Vec<Entry>>,
        options: &PurgeOptions,
        report: &mut PurgeReport,
    ) -> Result<(), StoreError> {
        self.delete_pages(bucket, futures::stream::iter([Ok(scope)]), options, report).await
    }

    /// [`Self::delete`] over pages of a listing as they come: the next page
    /// is listed and judged while the batches of the one before are in
    /// flight, up to the store's concurrency in requests (DeleteObjects
    /// and single deletes together), so a purge holds a few batches in
    /// memory, never the bucket. After an error no new batch starts; those
    /// in flight finish and are counted.
    pub(super) async fn delete_pages(
        &self,
        bucket: &str,
        pages: impl futures::Stream<Item = Result<Vec<Vec<Entry>>, StoreError>>,
        options: &PurgeOptions,
        report: &mut PurgeReport,
    ) -> Result<(), StoreError> {
        let size = (options.max_batch_size as usize).clamp(1, MAX_KEYS_PER_DELETE);
        let size = options.max_records_per_second.map_or(size, |r| size.min(r.max(1) as usize));
        let shared = Shared {
            pacer: Pacer::new(options.max_records_per_second),
            numbered: AtomicU64::new(report.batches),
            total: AtomicU64::new(report.account.deleted),
            max_took: Mutex::new(report.max_batch_duration),
            requests: Semaphore::new(self.concurrency),
        };
        let stop = AtomicBool::new(false);
        let (shared, stop) = (&shared, &stop);
        let batches = pages
            .map_ok(|scope| futures::stream::iter(in_batches(scope, size).into_iter().map(Ok)))
            .try_flatten()
            .take_while(|_| std::future::ready(!stop.load(Ordering::Relaxed)));
        let results: Vec<Result<(), StoreError>> = batches
            .map(|batch| async move {
                let result = match batch {
                    Ok(batch) => self.delete_batch(bucket, batch, options, shared).await,
                    Err(e) => Err(e),
                };
                if result.is_err() {
                    stop.store(true, Ordering::Relaxed);
                }
                result
            })
            .buffer_unordered(self.concurrency)
            .collect()
            .await;
        report.batches = shared.numbered.load(Ordering::Relaxed);
        report.account.deleted = shared.total.load(Ordering::Relaxed);
        report.max_batch_duration = *shared.max_took.lock().expect("not poisoned");
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

    /// One batch of whole objects: budget, pace, delete, report progress.
    async fn delete_batch(
        &self,
        bucket: &str,
        mut batch: Vec<Vec<Entry>>,
        options: &PurgeOptions,
        shared: &Shared,
    ) -> Result<(), StoreError> {
        let Shared { pacer, numbered, total, max_took, requests } = shared;
        if options.stopped() {
            return Err(StoreError::Cancelled { deleted: 0 });
        }
        if !options.budget.is_empty() {
            let allowed = options.reserve(batch.len() as u64) as usize;
            batch.truncate(allowed);
            if batch.is_empty() {
                return Ok(());
            }
        }
        pacer.take(batch.len() as u64, options).await;
        if options.stopped() {
            if !options.budget.is_empty() {
                options.refund(batch.len() as u64);
            }
            return Err(StoreError::Cancelled { deleted: 0 });
        }
        let started = Instant::now();
        let (pinned, single): (Vec<&Entry>, Vec<&Entry>) =
            batch.iter().flatten().partition(|e| e.version.is_some() && xml_safe(&e.key));
        let mut outcomes: Vec<(String, Outcome)> = Vec::new();
        for chunk in pinned.chunks(MAX_KEYS_PER_DELETE) {
            outcomes.extend(self.delete_versions(bucket, chunk, requests).await?);
        }
        let one_by_one: Vec<_> = single.iter().map(|e| self.delete_one(bucket, e, requests)).collect();
        outcomes.extend(
            futures::stream::iter(one_by_one).buffer_unordered(self.concurrency).try_collect::<Vec<_>>().await?,
        );
        // An object counts as deleted when every version sent went.
        let not_deleted: BTreeSet<&str> =
            outcomes.iter().filter(|(_, o)| *o != Outcome::Deleted).map(|(k, _)| k.as_str()).collect();
        let locked = outcomes.iter().filter(|(_, o)| *o == Outcome::Locked).count();
        let deleted = batch.iter().filter(|o| !not_deleted.contains(o[0].key.as_str())).count() as u64;
        if !options.budget.is_empty() {
            options.refund(batch.len() as u64 - deleted);
        }
        if locked > 0 {
            tracing::warn!(
                store = KIND,
                versions = locked,
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

    /// Deletes up to 1000 versions by version id; returns what happened to each.
    async fn delete_versions(
        &self,
        bucket: &str,
        entries: &[&Entry],
        requests: &Semaphore,
    ) -> Result<Vec<(String, Outcome)>, StoreError> {
        if !self.one_by_one.load(Ordering::Relaxed) {
            let ids = entries
                .iter()
                .map(|e| ObjectIdentifier::builder().key(&e.key).set_version_id(e.version.clone()).build())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| backend(&e.to_string()))?;
            let delete =
                Delete::builder().set_objects(Some(ids)).quiet(true).build().map_err(|e| backend(&e.to_string()))?;
            let sent = {
                let _permit = requests.acquire().await.expect("never closed");
                self.client.delete_objects().bucket(bucket).delete(delete).send().await
            };
            match sent {
                Ok(out) => {
                    let mut refused: Vec<(String, Option<String>, String)> = out
                        .errors()
                        .iter()
                        .map(|e| {
                            (
                                e.key().unwrap_or_default().to_owned(),
                                e.version_id().map(str::to_owned),
                                e.code().unwrap_or("Unknown").to_owned(),
                            )
                        })
                        .collect();
                    if let Some((_, _, code)) = refused.iter().find(|(_, _, c)| {
                        !matches!(c.as_str(), "AccessDenied" | "ObjectLocked" | "NoSuchKey" | "NoSuchVersion")
                    }) {
                        return Err(backend(&format!(
                            "DeleteObjects refused {} versions, for example with {code}",
                            refused.len()
                        )));
                    }
                    let mut outcomes: Vec<(String, Outcome)> = refused
                        .drain(..)
                        .map(|(k, _, code)| {
                            let o = if matches!(code.as_str(), "NoSuchKey" | "NoSuchVersion") {
                                Outcome::Skipped
                            } else {
                                Outcome::Locked
                            };
                            (k, o)
                        })
                        .collect();
                    let failed: BTreeSet<String> = outcomes.iter().map(|(k, _)| k.clone()).collect();
                    outcomes.extend(
                        entries.iter().filter(|e| !failed.contains(&e.key)).map(|e| (e.key.clone(), Outcome::Deleted)),
                    );
                    return Ok(outcomes);
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
        let one_by_one: Vec<_> = entries.iter().map(|e| self.delete_one(bucket, e, requests)).collect();
        futures::stream::iter(one_by_one).buffer_unordered(self.concurrency).try_collect().await
    }

    /// Deletes one version; without a version id, only if its ETag is still
    /// the one the listing saw.
    async fn delete_one(&self, bucket: &str, e: &Entry, requests: &Semaphore) -> Result<(String, Outcome), StoreError> {
        let mut request = self.client.delete_object().bucket(bucket).key(&e.key).set_version_id(e.version.clone());
        if e.version.is_none()
            && let Some(etag) = &e.etag
        {
            request = request.if_match(etag);
        }
        let sent = {
            let _permit = requests.acquire().await.expect("never closed");
            request.send().await
        };
        let outcome = match sent {
            Ok(_) => Outcome::Deleted,
            Err(err) if err.raw_response().is_some_and(|r| r.status().as_u16() == 412) => {
                tracing::info!(store = KIND, "an object changed since it was listed; it is kept");
                Outcome::Skipped
            }
            Err(err) if gone(&err) || err.raw_response().is_some_and(|r| r.status().as_u16() == 404) => {
                Outcome::Skipped
            }
            Err(err)
                if matches!(err.code(), Some("AccessDenied" | "ObjectLocked"))
                    && err.raw_response().is_some_and(|r| r.status().as_u16() == 403) =>
            {
                Outcome::Locked
            }
            Err(err) => return Err(classify(bucket, err)),
        };
        Ok((e.key.clone(), outcome))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_xml_cannot_carry_go_one_at_a_time() {
        assert!(xml_safe("calls/2026/05/28/call-1.opus"));
        assert!(xml_safe("tab\tkey"));
        assert!(xml_safe("jörg/€"));
        assert!(!xml_safe("a\u{1}b"));
        assert!(!xml_safe("bell\u{7}"));
    }
}
