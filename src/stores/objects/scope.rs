//! Which objects, and which of their versions, a purge or an erasure is
//! about, worked out from a listing.
//!
//! For retention an object's age is its last-modified time, or the date in
//! its key. In a versioned bucket each version is judged on its own, as
//! S3's lifecycle rules do: the current version by when it was written, a
//! noncurrent version by when it *became* noncurrent (when the version
//! after it was written), so the old versions of a profile rewritten every
//! day go when they are due although the object itself lives on. When
//! every data version of a key goes, its delete markers go too, and the key
//! is gone. A date in the key applies to every version of the key.

use std::collections::BTreeMap;

use futures::{StreamExt, TryStreamExt};
use jiff::Timestamp;

use super::listing::{Bucket, Lister, Object};
use super::locks::{Hold, gone};
use super::{BucketStore, Entry, KIND, classify, invalid};
use crate::api::account::{Account, UnreadableReason};
use crate::api::policy::{ObjectAge, ObjectVersions, ObjectsTarget, SubjectField};
use crate::api::{IdentityName, RetentionPeriod};
use crate::stores::name_date::NameDate;
use crate::stores::{Cutoff, StoreError, Subject};

/// The objects in scope, of one listing page (retention) or of one
/// subject (erasure).
#[derive(Debug, Default)]
pub(super) struct Scope {
    /// Per object, the versions to delete.
    pub delete: Vec<Vec<Entry>>,
    /// Objects looked at.
    pub examined: u64,
    /// Objects in scope kept under a hold, each with its hold.
    pub held: Vec<Hold>,
    /// Due objects a Hold keeps, each with the Hold's name.
    pub held_by: Vec<String>,
    /// Objects that could not be judged, each with the reason.
    pub unreadable: Vec<UnreadableReason>,
}

/// What a whole listing held, page by page, in counts: a purge keeps
/// this, not the objects, so its memory does not grow with the bucket.
#[derive(Debug, Default)]
pub(super) struct Tally {
    /// Objects looked at.
    pub examined: u64,
    /// Objects with versions to delete.
    pub due: u64,
    /// Held and unreadable objects, by reason (only those fields are used).
    kept: Account,
}

impl Tally {
    /// Adds one page's scope.
    pub fn add(&mut self, scope: &Scope) {
        self.examined += scope.examined;
        self.due += scope.delete.len() as u64;
        for hold in &scope.held {
            self.kept.add_retained(hold.reason, hold.until.map(k8s_time), 1);
        }
        for name in &scope.held_by {
            self.kept.add_held(name, 1);
        }
        for reason in &scope.unreadable {
            self.kept.add_unreadable(*reason, 1);
        }
    }

    /// Objects kept under a lock or a Hold.
    pub fn held(&self) -> u64 {
        self.kept.retained_total()
    }

    /// Writes what the listing found into an account: the held are
    /// retained, the unreadable counted, the rest not due. What is left to
    /// delete is for the caller to call `matched` or `remaining`.
    pub fn account_for(&self, account: &mut Account) {
        account.retained = self.kept.retained.clone();
        account.unreadable = self.kept.unreadable.clone();
        let other = self.due + self.kept.retained_total() + self.kept.unreadable_total();
        account.not_due = Some(self.examined.saturating_sub(other));
    }

    /// Logs what was kept, once per listing.
    pub fn log(&self) {
        let held = self.kept.retained_total();
        if held > 0 {
            tracing::info!(store = KIND, objects = held, "objects in scope are under object lock and are retained");
        }
        let unreadable = self.kept.unreadable_total();
        if unreadable > 0 {
            tracing::warn!(store = KIND, objects = unreadable, "objects in scope could not be judged and are kept");
        }
    }
}

fn k8s_time(t: Timestamp) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Time {
    k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(t)
}

/// What to do with one object.
enum Verdict {
    NotDue,
    Unreadable(UnreadableReason),
    Held(Hold),
    HeldBy(String),
    Delete(Vec<Entry>),
}

fn entry(object: &Object, version: &super::listing::Version) -> Entry {
    Entry { key: object.key.clone(), version: version.id.clone(), etag: version.etag.clone() }
}

/// The versions of a versioned object that are due for `before`: each data
/// version by when it was written (current) or replaced (noncurrent); and
/// the delete markers too when every data version goes.
fn due_versions(object: &Object, before: Timestamp) -> Vec<Entry> {
    let mut due = Vec::new();
    let mut kept_data = false;
    for (i, v) in object.versions.iter().enumerate() {
        if v.marker {
            continue;
        }
        // A noncurrent version ages from when it was replaced: the write of
        // the version after it. Servers differ in what they report as an old
        // version's last-modified (its write, or its replacement, as
        // versitygw does); the later of the two never deletes early.
        let age_from = if i == 0 { v.modified } else { v.modified.max(object.versions[i - 1].modified) };
        if age_from < before {
            due.push(entry(object, v));
        } else {
            kept_data = true;
        }
    }
    let only_markers = object.versions.iter().all(|v| v.marker);
    let markers_expired = object.versions.first().is_some_and(|v| v.modified < before);
    if (!kept_data && !due.is_empty()) || (only_markers && markers_expired) {
        due.extend(object.versions.iter().filter(|v| v.marker).map(|v| entry(object, v)));
    }
    due
}

/// The date pattern of a target whose objects' age is the date in their key.
pub(super) fn due_pattern(t: &ObjectsTarget) -> Result<Option<NameDate>, StoreError> {
    match (t.age, &t.key_date_pattern) {
        (ObjectAge::KeyDate, Some(p)) => Ok(Some(NameDate::compile(p, false).map_err(invalid)?)),
        (ObjectAge::KeyDate, None) => Err(invalid("age KeyDate needs a keyDatePattern".to_owned())),
        (ObjectAge::LastModified, _) => Ok(None),
    }
}

impl BucketStore {
    /// Turns verdicts into a scope, `buffered` to the store's concurrency.
    async fn collect(
        &self,
        checks: impl futures::Stream<Item = Result<Verdict, StoreError>>,
    ) -> Result<Scope, StoreError> {
        let verdicts: Vec<Verdict> = checks.try_collect().await?;
        let mut scope = Scope { examined: verdicts.len() as u64, ..Scope::default() };
        for v in verdicts {
            match v {
                Verdict::NotDue => {}
                Verdict::Unreadable(reason) => scope.unreadable.push(reason),
                Verdict::Held(hold) => scope.held.push(hold),
                Verdict::HeldBy(name) => scope.held_by.push(name),
                Verdict::Delete(entries) => scope.delete.push(entries),
            }
        }
        Ok(scope)
    }

    /// Deletes `entries` unless a version is held.
    async fn unless_held(
        &self,
        bucket: &Bucket<'_>,
        object: &Object,
        entries: Vec<Entry>,
    ) -> Result<Verdict, StoreError> {
        if entries.is_empty() {
            return Ok(Verdict::NotDue);
        }
        Ok(match self.any_hold(bucket, object, &entries).await? {
            Some(hold) => Verdict::Held(hold),
            None => Verdict::Delete(entries),
        })
    }

    /// Judges one listing page of a retention target: which versions of
    /// each object are due.
    pub(super) async fn due_scope(
        &self,
        bucket: &Bucket<'_>,
        t: &ObjectsTarget,
        pattern: Option<&NameDate>,
        cutoff: &Cutoff,
        objects: Vec<Object>,
        held: &BTreeMap<String, String>,
    ) -> Result<Scope, StoreError> {
        let checks = futures::stream::iter(objects.into_iter().map(|object| {
            async move {
                if object.mangled {
                    return Ok(Verdict::Unreadable(UnreadableReason::UnlistableKey));
                }
                let verdict = self.due_verdict(bucket, t, pattern, cutoff, &object).await?;
                Ok(match (verdict, held.get(&object.key)) {
                    // A Hold keeps the object: counted under its name.
                    (Verdict::Delete(_) | Verdict::Held(_), Some(name)) => Verdict::HeldBy(name.clone()),
                    (v, _) => v,
                })
            }
        }))
        .buffered(self.concurrency);
        self.collect(checks).await
    }

    /// Judges one object of a retention target.
    async fn due_verdict(
        &self,
        bucket: &Bucket<'_>,
        t: &ObjectsTarget,
        pattern: Option<&NameDate>,
        cutoff: &Cutoff,
        object: &Object,
    ) -> Result<Verdict, StoreError> {
        let reference = match t.versions {
            ObjectVersions::Current => object.current(),
            ObjectVersions::All => object.newest_data(),
        };
        // The object's own period, from its tag.
        let mut before = cutoff.at();
        if let (Some(tag), Some(reference)) = (&t.period_tag, reference) {
            match self.tags(bucket.name, &object.key, reference.id.as_deref()).await? {
                None => return Ok(Verdict::NotDue),
                Some(tags) => {
                    if let Some((_, value)) = tags.iter().find(|(k, _)| k == tag) {
                        let own = value.parse::<RetentionPeriod>().ok().and_then(|p| cutoff.for_period(p));
                        match own {
                            Some(c) => before = c.map_err(|e| invalid(e.to_string()))?.at(),
                            None => return Ok(Verdict::Unreadable(UnreadableReason::BadPeriod)),
                        }
                    }
                }
            }
        }
        if let Some(p) = pattern {
            // The key names a whole period: due when all of it lies before the cutoff.
            let Some(end) = p.period_end(&object.key[t.prefix.len()..]) else {
                return Ok(Verdict::Unreadable(UnreadableReason::KeyDateMismatch));
            };
            if end > before || reference.is_none() {
                return Ok(Verdict::NotDue);
            }
            let entries = match (t.versions, bucket.versioned) {
                (ObjectVersions::All, true) => object.versions.iter().map(|v| entry(object, v)).collect(),
                _ => reference.map(|r| Entry { version: None, ..entry(object, r) }).into_iter().collect(),
            };
            return self.unless_held(bucket, object, entries).await;
        }
        let entries = match (t.versions, bucket.versioned) {
            (ObjectVersions::All, true) => due_versions(object, before),
            _ => match object.current() {
                Some(current) if current.modified < before => {
                    vec![Entry { version: None, ..entry(object, current) }]
                }
                _ => vec![],
            },
        };
        self.unless_held(bucket, object, entries).await
    }

    pub(super) async fn subject_scope(
        &self,
        bucket: &Bucket<'_>,
        t: &ObjectsTarget,
        fields: &[SubjectField],
        subject: &Subject,
    ) -> Result<Scope, StoreError> {
        let found = self.subject_objects(bucket, t, fields, subject, None).await?;
        let checks = futures::stream::iter(found.into_values().map(|object| async move {
            if object.mangled {
                return Ok(Verdict::Unreadable(UnreadableReason::UnlistableKey));
            }
            // Every version and delete marker: a key left with only delete
            // markers still names the subject.
            let entries = if bucket.versioned {
                object.versions.iter().map(|v| entry(&object, v)).collect()
            } else {
                object.versions.iter().map(|v| entry(&object, v)).take(1).collect()
            };
            self.unless_held(bucket, &object, entries).await
        }))
        .buffered(self.concurrency);
        self.collect(checks).await
    }

    /// A subject's objects under the target, by key: those under its key
    /// templates' prefixes, and those whose tags or metadata name it. With
    /// `stop_after`, it stops looking (a page later at most) once the
    /// objects found hold more readable data versions than that: an export
    /// needs to know no more than that there are too many.
    pub(super) async fn subject_objects(
        &self,
        bucket: &Bucket<'_>,
        t: &ObjectsTarget,
        fields: &[SubjectField],
        subject: &Subject,
        stop_after: Option<u64>,
    ) -> Result<BTreeMap<String, Object>, StoreError> {
        // Mangled keys cannot be read, so they do not count towards it.
        let enough = |found: &BTreeMap<String, Object>| {
            stop_after.is_some_and(|n| {
                found.values().filter(|o| !o.mangled).map(|o| o.data_versions().count() as u64).sum::<u64>() > n
            })
        };
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
            // One subject's prefix: small enough to hold.
            let mut lister = Lister::new(self, bucket, prefix);
            while let Some(objects) = lister.next_page().await? {
                for object in objects {
                    let rest = &object.key[prefix.len()..];
                    if !*exact || rest.is_empty() || rest.starts_with('/') {
                        found.insert(object.key.clone(), object);
                    }
                }
                if enough(&found) {
                    return Ok(found);
                }
            }
        }
        // Tags and metadata are read object by object, a page at a time;
        // only the subject's objects are kept.
        let mut lister = Lister::new(self, bucket, &t.prefix);
        while (!tag_values.is_empty() || !meta_values.is_empty()) && !enough(&found) {
            let Some(objects) = lister.next_page().await? else { break };
            let matches =
                futures::stream::iter(objects.into_iter().filter(|o| !found.contains_key(&o.key)).map(|object| {
                    let (tag_values, meta_values) = (&tag_values, &meta_values);
                    async move {
                        for v in object.versions.iter().filter(|v| !v.marker) {
                            if !tag_values.is_empty()
                                && let Some(tags) = self.tags(bucket.name, &object.key, v.id.as_deref()).await?
                                && tags.iter().any(|(k, val)| tag_values.iter().any(|(tk, tv)| k == tk && val == tv))
                            {
                                return Ok::<_, StoreError>(Some(object));
                            }
                            if !meta_values.is_empty()
                                && let Some(meta) = self.metadata(bucket.name, &object.key, v.id.as_deref()).await?
                                && meta.iter().any(|(k, val)| meta_values.iter().any(|(mk, mv)| k == mk && val == mv))
                            {
                                return Ok(Some(object));
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
        Ok(found)
    }

    /// An object version's tags; `None` when it is gone.
    pub(super) async fn tags(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
    ) -> Result<Option<Vec<(String, String)>>, StoreError> {
        match self
            .client
            .get_object_tagging()
            .bucket(bucket)
            .key(key)
            .set_version_id(version.map(str::to_owned))
            .send()
            .await
        {
            Ok(out) => Ok(Some(out.tag_set().iter().map(|t| (t.key().to_owned(), t.value().to_owned())).collect())),
            Err(e) if gone(&e) => Ok(None),
            Err(e) => Err(classify(bucket, e)),
        }
    }

    /// An object version's user metadata, keys in lower case; `None` when it is gone.
    pub(super) async fn metadata(
        &self,
        bucket: &str,
        key: &str,
        version: Option<&str>,
    ) -> Result<Option<Vec<(String, String)>>, StoreError> {
        match self.client.head_object().bucket(bucket).key(key).set_version_id(version.map(str::to_owned)).send().await
        {
            Ok(out) => Ok(Some(
                out.metadata()
                    .map(|m| m.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())).collect())
                    .unwrap_or_default(),
            )),
            Err(e) if gone(&e) || e.raw_response().is_some_and(|r| r.status().as_u16() == 404) => Ok(None),
            Err(e) => Err(classify(bucket, e)),
        }
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

#[cfg(test)]
mod tests {
    use super::super::listing::Version;
    use super::*;

    fn id(s: &str) -> IdentityName {
        s.parse().unwrap()
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn v(id: &str, modified: &str, marker: bool, latest: bool) -> Version {
        Version { id: Some(id.into()), latest, modified: ts(modified), marker, etag: None }
    }

    fn object(versions: Vec<Version>) -> Object {
        Object { key: "profile".into(), versions, mangled: false }
    }

    fn ids(entries: &[Entry]) -> Vec<&str> {
        entries.iter().map(|e| e.version.as_deref().unwrap()).collect()
    }

    #[test]
    fn a_noncurrent_version_ages_from_when_it_was_replaced() {
        // Rewritten every 10 days; the cutoff is 1 March.
        let o = object(vec![
            v("v4", "2026-03-20T00:00:00Z", false, true),
            v("v3", "2026-02-25T00:00:00Z", false, false),
            v("v2", "2026-02-15T00:00:00Z", false, false),
            v("v1", "2026-02-05T00:00:00Z", false, false),
        ]);
        // v1 was replaced on 15 February, v2 on 25 February: both due; v3
        // was replaced on 20 March and v4 is current: neither.
        assert_eq!(ids(&due_versions(&o, ts("2026-03-01T00:00:00Z"))), vec!["v2", "v1"]);
    }

    #[test]
    fn when_every_data_version_goes_the_delete_markers_go_too() {
        let deleted =
            object(vec![v("m1", "2026-01-10T00:00:00Z", true, true), v("v1", "2026-01-01T00:00:00Z", false, false)]);
        assert_eq!(ids(&due_versions(&deleted, ts("2026-03-01T00:00:00Z"))), vec!["v1", "m1"]);
        // Deleted recently: the data version became noncurrent then, not due.
        let recent =
            object(vec![v("m1", "2026-02-28T00:00:00Z", true, true), v("v1", "2025-01-01T00:00:00Z", false, false)]);
        assert!(due_versions(&recent, ts("2026-02-01T00:00:00Z")).is_empty());
        let markers =
            object(vec![v("m2", "2026-01-10T00:00:00Z", true, true), v("m1", "2026-01-05T00:00:00Z", true, false)]);
        assert_eq!(ids(&due_versions(&markers, ts("2026-03-01T00:00:00Z"))), vec!["m2", "m1"]);
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
