//! Object lock: legal holds and retention periods keep an object version
//! from being deleted. A held version is never deleted; it is counted as
//! retained with the reason and, for a retention, the date it ends. A lock
//! state the server cannot report is an error, never a guess either way.

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::types::ObjectLockLegalHoldStatus;
use jiff::Timestamp;

use super::listing::{Bucket, Object};
use super::{BucketStore, Entry, backend, classify, to_timestamp};
use crate::api::account::RetainReason;
use crate::stores::StoreError;

/// Why an object version cannot be deleted, and until when.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Hold {
    /// Legal hold or retention.
    pub reason: RetainReason,
    /// When a retention ends; a legal hold has no end until it is lifted.
    pub until: Option<Timestamp>,
}

/// Whether an error says that an object (or bucket) has no lock configured.
pub(super) fn no_lock<E: ProvideErrorMetadata>(e: &E) -> bool {
    matches!(
        e.code(),
        Some("NoSuchObjectLockConfiguration" | "ObjectLockConfigurationNotFoundError" | "NoSuchObjectLegalHold")
    )
}

/// Whether an error says the object or version is gone.
pub(super) fn gone<E: ProvideErrorMetadata>(e: &E) -> bool {
    matches!(e.code(), Some("NoSuchKey" | "NoSuchVersion" | "NotFound"))
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

fn unreadable_lock(bucket: &str, what: &str, e: StoreError) -> StoreError {
    match e {
        StoreError::Backend { detail, .. } => backend(&format!(
            "the {what} of an object in bucket {bucket} cannot be read ({detail}); nothing in it was deleted. Whether it is locked decides whether it may go"
        )),
        other => other,
    }
}

impl BucketStore {
    /// Whether a version is under a legal hold or an unexpired retention;
    /// `Ok(None)` also when it is gone.
    pub(super) async fn hold(
        &self,
        bucket: &Bucket<'_>,
        key: &str,
        version: Option<&str>,
    ) -> Result<Option<Hold>, StoreError> {
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
                return Ok(Some(Hold { reason: RetainReason::LegalHold, until: None }));
            }
            Ok(_) => {}
            Err(e) if no_lock(&e) => {}
            Err(e) if gone(&e) => return Ok(None),
            Err(e) => return Err(unreadable_lock(bucket.name, "legal hold", classify(bucket.name, e))),
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
            Err(e) if no_lock(&e) || gone(&e) => None,
            Err(e) => match retain_until_from_body(&e) {
                // Some servers (versitygw 1.8) answer with <ObjectLockRetention>
                // where S3 says <Retention>; the SDK cannot parse that, so read
                // the date from the body ourselves.
                Some(until) => until,
                None => return Err(unreadable_lock(bucket.name, "retention", classify(bucket.name, e))),
            },
        };
        Ok(until.filter(|u| *u > Timestamp::now()).map(|u| Hold { reason: RetainReason::ObjectLock, until: Some(u) }))
    }

    /// The hold on any of `entries` (the one ending last, a legal hold
    /// first); for a plain delete of the current version, the current
    /// version's hold counts.
    pub(super) async fn any_hold(
        &self,
        bucket: &Bucket<'_>,
        object: &Object,
        entries: &[Entry],
    ) -> Result<Option<Hold>, StoreError> {
        if !bucket.locked {
            return Ok(None);
        }
        let mut held: Option<Hold> = None;
        for e in entries {
            let version = match &e.version {
                Some(v) => Some(v.as_str()),
                None => object.current().and_then(|c| c.id.as_deref()),
            };
            if object.versions.iter().any(|v| v.marker && v.id.as_deref() == version && version.is_some()) {
                continue; // delete markers hold no data and no lock
            }
            if let Some(hold) = self.hold(bucket, &object.key, version).await? {
                held = Some(match held {
                    None => hold,
                    Some(h) if h.reason == RetainReason::LegalHold => h,
                    Some(_) if hold.reason == RetainReason::LegalHold => hold,
                    Some(h) => Hold { until: h.until.max(hold.until), ..h },
                });
            }
        }
        Ok(held)
    }
}
