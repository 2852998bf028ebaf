//! Buckets in a local directory: the embedded default's call recordings, and
//! small installs that keep objects on a volume mounted into the operator.
//!
//! Each subdirectory of the DataStore's root is a bucket; each regular file
//! under a bucket is an object, keyed by its path relative to the bucket with
//! `/` between segments (`support/2026/11/28/call-7f3a.opus`). `objects`
//! targets work as on S3: a record is an object, its age is the file's
//! modification time (`LastModified`) or a date in the key (`KeyDate`, read
//! with [`NameDate`] exactly as the S3 store reads it), and a subject's
//! objects are found by `keyTemplate`.
//!
//! What a directory does not have is refused, never skipped: a file has no
//! tags or user metadata, so a target with `periodTag`, or a subject field
//! with `tag` or `metadata`, fails every call with
//! [`StoreError::InvalidTarget`]. A file has one version, so `versions` has
//! nothing to choose between and is ignored; there is no object lock, so
//! nothing is reported as retained.
//!
//! Nothing outside a bucket is ever touched: the bucket is a validated
//! bucket name directly under the canonical root, and must be a directory
//! itself (not a link); symbolic links below it are never followed, and are
//! not objects; hidden files and directories (names starting with `.`) are
//! not objects and are never entered; names that are not UTF-8 cannot be
//! keys: they are kept and counted as unreadable, as are keys that do not
//! match the target's date pattern.
//! Before each batch is deleted, each file's directory is canonicalized and
//! must still be the one listed, so a directory swapped for a link between
//! the listing and the delete stops the run. Identity values never become
//! paths: a subject's keys are found by listing and comparing keys.
//!
//! Directories that a delete leaves empty are removed, from the file's
//! directory up to (never including) the bucket, with `rmdir`, which removes
//! only a directory that holds nothing at all (a hidden file keeps it). So
//! an erased customer's directory (`recordings/42/`) does not stay behind as
//! a name. Writers should create their directories as they write, as
//! S3-style writers do.
//!
//! An access request's export reads the objects an erasure would delete
//! (the same key-template matching), each with its key, modification time,
//! size and body (see docs/export.md); a name under the subject's prefix
//! that is not UTF-8 is counted as unreadable.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use jiff::Timestamp;

use super::export::{BODY_CAP, Gather, ObjectRecord, read_capped};
use super::name_date::NameDate;
use super::objects::template_prefix;
use super::{
    Cutoff, Incomplete, ProbeReport, PurgeFuture, PurgeOptions, PurgeReport, Store, StoreError, StoreFuture, Subject,
    SubjectExport,
};
use crate::api::Mode;
use crate::api::account::{Account, UnreadableReason};
use crate::api::policy::{ObjectAge, ObjectsTarget, SubjectField, Target};

const KIND: &str = "localBuckets";

/// A directory whose subdirectories are buckets.
#[derive(Clone, Debug)]
pub struct LocalBucketStore {
    root: PathBuf,
}

/// The objects of a listing, and the names that could not be keys.
struct Listing {
    objects: Vec<Object>,
    not_utf8: u64,
}

/// Objects in scope, how many were looked at, and what could not be judged.
#[derive(Default)]
struct Judged {
    objects: Vec<Object>,
    examined: u64,
    unreadable: Vec<UnreadableReason>,
}

impl Judged {
    fn from(listing: &Listing) -> Self {
        Self {
            objects: Vec::new(),
            examined: listing.objects.len() as u64 + listing.not_utf8,
            unreadable: (0..listing.not_utf8).map(|_| UnreadableReason::NameNotUtf8).collect(),
        }
    }

    fn account_for(&self, account: &mut Account) {
        for reason in &self.unreadable {
            account.add_unreadable(*reason, 1);
        }
        let other = self.objects.len() as u64 + self.unreadable.len() as u64;
        account.not_due = Some(self.examined.saturating_sub(other));
    }
}

/// One object: a regular file under a bucket.
#[derive(Clone, Debug)]
struct Object {
    key: String,
    path: PathBuf,
    /// `None` when the file's modification time cannot be read: never due by age.
    modified: Option<Timestamp>,
}

impl LocalBucketStore {
    /// The store for a directory; checks at each call that it exists.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn canonical_root(&self) -> Result<PathBuf, StoreError> {
        let missing =
            || StoreError::MissingTable { object: format!("directory {}", self.root.display()), hint: String::new() };
        let root = fs::canonicalize(&self.root).map_err(|_| missing())?;
        if !root.is_dir() {
            return Err(missing());
        }
        if root.parent().is_none() {
            return Err(invalid(format!(
                "the root {} resolves to '/', which is never a bucket directory",
                self.root.display()
            )));
        }
        Ok(root)
    }

    /// The bucket's directory: a real directory (not a link) directly under the root.
    fn bucket_dir(&self, bucket: &str) -> Result<PathBuf, StoreError> {
        let root = self.canonical_root()?;
        let dir = root.join(bucket);
        let missing = || StoreError::MissingTable {
            object: format!("bucket {bucket} in {}", self.root.display()),
            hint: String::new(),
        };
        match fs::symlink_metadata(&dir) {
            Ok(m) if m.file_type().is_dir() => {}
            Ok(_) => return Err(missing()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(missing()),
            Err(e) => return Err(io_error(&dir, e)),
        }
        let canonical = fs::canonicalize(&dir).map_err(|e| io_error(&dir, e))?;
        if canonical != dir || canonical.parent() != Some(root.as_path()) {
            return Err(missing());
        }
        Ok(dir)
    }

    /// Every object of the bucket whose key starts with `prefix`, sorted by
    /// key, and the number of names under it that are not UTF-8.
    fn list(&self, dir: &Path, prefix: &str) -> Result<Listing, StoreError> {
        let mut objects = Vec::new();
        let mut not_utf8 = 0u64;
        // (directory, its key prefix: "" for the bucket, "a/b/" below it)
        let mut stack = vec![(dir.to_path_buf(), String::new())];
        while let Some((dir, rel)) = stack.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(entries) => entries,
                // Removed since it was listed: nothing in it any more.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_error(&dir, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| io_error(&dir, e))?;
                let name = entry.file_name();
                let Some(name) = name.to_str() else {
                    not_utf8 += 1;
                    continue;
                };
                if name.starts_with('.') {
                    continue;
                }
                // The entry's own type: a link is a link, never what it points to.
                let kind = match entry.file_type() {
                    Ok(kind) => kind,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io_error(&entry.path(), e)),
                };
                if kind.is_dir() {
                    let sub = format!("{rel}{name}/");
                    if sub.starts_with(prefix) || prefix.starts_with(&sub) {
                        stack.push((entry.path(), sub));
                    }
                } else if kind.is_file() {
                    let key = format!("{rel}{name}");
                    if key.starts_with(prefix) {
                        let modified = match entry.metadata() {
                            Ok(m) => m.modified().ok().and_then(|t| Timestamp::try_from(t).ok()),
                            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                            Err(e) => return Err(io_error(&entry.path(), e)),
                        };
                        objects.push(Object { key, path: entry.path(), modified });
                    }
                }
            }
        }
        if not_utf8 > 0 {
            tracing::warn!(store = KIND, files = not_utf8, "names that are not UTF-8 cannot be keys; they are kept");
        }
        objects.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(Listing { objects, not_utf8 })
    }

    /// The target's objects that are due for `cutoff`, and what could not
    /// be judged.
    fn due(&self, t: &ObjectsTarget, cutoff: &Cutoff) -> Result<Judged, StoreError> {
        let pattern = match (t.age, &t.key_date_pattern) {
            (ObjectAge::KeyDate, Some(p)) => Some(NameDate::compile(p, false).map_err(invalid)?),
            (ObjectAge::KeyDate, None) => return Err(invalid("age KeyDate needs a keyDatePattern".to_owned())),
            (ObjectAge::LastModified, _) => None,
        };
        let dir = self.bucket_dir(t.bucket.as_str())?;
        let listing = self.list(&dir, &t.prefix)?;
        let mut judged = Judged::from(&listing);
        for o in listing.objects {
            let due = match &pattern {
                // A key date names a whole period: due once all of it lies before the cutoff.
                Some(p) => match p.period_end(&o.key[t.prefix.len()..]) {
                    Some(end) => end <= cutoff.at(),
                    None => {
                        judged.unreadable.push(UnreadableReason::KeyDateMismatch);
                        continue;
                    }
                },
                None => o.modified.is_some_and(|m| m < cutoff.at()),
            };
            if due {
                judged.objects.push(o);
            }
        }
        Ok(judged)
    }

    /// The subject's objects: keys under each key template's prefix.
    fn subject_objects(
        &self,
        t: &ObjectsTarget,
        fields: &[SubjectField],
        subject: &Subject,
    ) -> Result<Judged, StoreError> {
        let mut prefixes: Vec<(String, bool)> = Vec::new();
        for f in fields {
            let Some(template) = &f.key_template else { continue };
            for value in subject.values(&f.identity) {
                prefixes.push(template_prefix(template, &f.identity, value, &t.prefix).map_err(as_local)?);
            }
        }
        let mut judged = Judged::default();
        if prefixes.is_empty() {
            return Ok(judged);
        }
        let dir = self.bucket_dir(t.bucket.as_str())?;
        let mut found: BTreeMap<String, Object> = BTreeMap::new();
        for (prefix, exact) in &prefixes {
            let listing = self.list(&dir, prefix)?;
            // A name under the subject's own prefix that cannot be read may be theirs.
            judged.unreadable.extend((0..listing.not_utf8).map(|_| UnreadableReason::NameNotUtf8));
            for object in listing.objects {
                let rest = &object.key[prefix.len()..];
                // An identity that ends the template matches its own key or
                // keys below it, never a longer one (42 never reaches 421).
                if !*exact || rest.is_empty() || rest.starts_with('/') {
                    found.insert(object.key.clone(), object);
                }
            }
        }
        judged.examined = found.len() as u64;
        judged.objects = found.into_values().collect();
        Ok(judged)
    }

    /// The subject's objects (the same as an erasure's) with their bodies,
    /// in key order, at most `limit`.
    fn export(
        &self,
        t: &ObjectsTarget,
        fields: &[SubjectField],
        subject: &Subject,
        limit: u64,
    ) -> Result<SubjectExport, StoreError> {
        let mut gather = Gather::new(limit, format!("bucket {} in {}", t.bucket, self.root.display()));
        let judged = self.subject_objects(t, fields, subject)?;
        gather.check(judged.objects.len() as u64)?;
        gather.unreadable(judged.unreadable.len() as u64);
        for object in judged.objects {
            // `None`: removed since it was listed.
            if let Some(record) = read_object(&object)? {
                gather.push_object(record)?;
            }
        }
        Ok(gather.finish())
    }

    /// Deletes the objects in batches, with progress, cancellation between
    /// batches and the rate limit; removes directories left empty.
    fn delete(
        &self,
        bucket: &Path,
        objects: Vec<Object>,
        options: &PurgeOptions,
        report: &mut PurgeReport,
    ) -> Result<(), StoreError> {
        let size = options.max_batch_size.clamp(1, 10_000) as usize;
        let size = options.max_records_per_second.map_or(size, |r| size.min(r.max(1) as usize));
        let started = Instant::now();
        for chunk in objects.chunks(size) {
            if options.stopped() {
                return Err(StoreError::Cancelled { deleted: report.account.deleted });
            }
            let batch_started = Instant::now();
            let mut dirs: Vec<&Path> = chunk.iter().filter_map(|o| o.path.parent()).collect();
            dirs.sort();
            dirs.dedup();
            // Each directory must still be the one listed, not a link swapped in since.
            for dir in &dirs {
                match fs::canonicalize(dir) {
                    Ok(c) if c == *dir && c.starts_with(bucket) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    _ => {
                        return Err(StoreError::Backend {
                            store: KIND,
                            detail: format!(
                                "a directory in {} changed into a link or moved during the run; nothing in it was deleted",
                                bucket.display()
                            ),
                        });
                    }
                }
            }
            let mut deleted = 0;
            for object in chunk {
                match fs::remove_file(&object.path) {
                    Ok(()) => deleted += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_error(&object.path, e)),
                }
            }
            for dir in &dirs {
                sync_dir(dir)?;
            }
            remove_empty_dirs(bucket, &dirs)?;
            let took = batch_started.elapsed();
            report.record_batch(options, chunk.len() as u64, deleted, took);
            if let Some(wait) = options.pace(report.account.deleted, started) {
                let until = Instant::now() + wait;
                while !options.stopped() {
                    let Some(wait) = until.checked_duration_since(Instant::now()) else { break };
                    std::thread::sleep(wait.min(Duration::from_millis(100)));
                }
            }
        }
        Ok(())
    }

    /// Deletes `scope` (a dry run only counts it), then reads back.
    fn delete_verified(
        &self,
        t: &ObjectsTarget,
        scope: impl Fn() -> Result<Judged, StoreError>,
        options: &PurgeOptions,
    ) -> Result<PurgeReport, Incomplete> {
        let judged = scope()?;
        let mut report = PurgeReport::empty(options);
        judged.account_for(&mut report.account);
        let objects = judged.objects;
        report.account.matched = objects.len() as u64;
        if options.mode == Mode::DryRun {
            report.account.remaining = Some(report.account.matched);
            return Ok(report);
        }
        let bucket = self.bucket_dir(t.bucket.as_str())?;
        if let Err(e) = self.delete(&bucket, objects, options, &mut report) {
            return Err(Incomplete::after(e, &report));
        }
        let remaining = scope().map_err(|e| Incomplete::after(e, &report))?.objects.len() as u64;
        report.account.remaining = Some(remaining);
        if remaining > 0 {
            return Err(Incomplete::after(
                StoreError::NotVerified { deleted: report.account.deleted, remaining },
                &report,
            ));
        }
        Ok(report)
    }
}

/// Removes each directory that is now empty, and its parents that become
/// empty, up to but never including the bucket. `rmdir` refuses a directory
/// that holds anything, so nothing but empty directories can go.
fn remove_empty_dirs(bucket: &Path, dirs: &[&Path]) -> Result<(), StoreError> {
    let mut deepest_first: Vec<&Path> = dirs.to_vec();
    deepest_first.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    for start in deepest_first {
        let mut dir = start;
        let mut removed = false;
        while dir != bucket && dir.starts_with(bucket) && fs::remove_dir(dir).is_ok() {
            removed = true;
            let Some(parent) = dir.parent() else { break };
            dir = parent;
        }
        if removed && dir.exists() {
            sync_dir(dir)?;
        }
    }
    Ok(())
}

/// One object's record: its key, time, size and body (a file has no
/// version, content type, metadata or tags). `None` when it is gone. The
/// file is opened without following a link, and its directory must still
/// be the one listed, so nothing outside the bucket is read.
fn read_object(object: &Object) -> Result<Option<ObjectRecord>, StoreError> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = object.path.parent()
        && fs::canonicalize(dir).is_ok_and(|c| c != dir)
    {
        return Err(StoreError::Backend {
            store: KIND,
            detail: "a directory of the bucket changed into a link or moved during the export; nothing was exported"
                .to_owned(),
        });
    }
    let file = match File::options().read(true).custom_flags(libc::O_NOFOLLOW).open(&object.path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(&object.path, e)),
    };
    let meta = file.metadata().map_err(|e| io_error(&object.path, e))?;
    let mut record = ObjectRecord {
        key: object.key.clone(),
        last_modified: meta.modified().ok().and_then(|t| Timestamp::try_from(t).ok()),
        size: meta.len(),
        ..ObjectRecord::default()
    };
    if meta.len() <= BODY_CAP {
        record.body = read_capped(file, BODY_CAP).map_err(|e| io_error(&object.path, e))?;
    }
    Ok(Some(record))
}

/// Refuses what a directory does not have: tags and user metadata.
fn check_target(target: &Target) -> Result<&ObjectsTarget, StoreError> {
    let t = target
        .objects
        .as_ref()
        .ok_or_else(|| invalid(format!("target {} names no objects (bucket and prefix)", target.name)))?;
    if t.period_tag.is_some() {
        return Err(invalid(format!(
            "target {} sets periodTag, but files in a directory have no tags; remove periodTag, or keep the objects in an s3 store",
            target.name
        )));
    }
    for f in &target.subject_fields {
        let unavailable = [("tag", f.tag.is_some()), ("metadata", f.metadata.is_some()), ("field", f.field.is_some())];
        if let Some((what, _)) = unavailable.iter().find(|(_, set)| *set) {
            return Err(invalid(format!(
                "the subject field for {} of target {} uses {what}, which files in a directory do not have; use keyTemplate",
                f.identity, target.name
            )));
        }
    }
    Ok(t)
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    match File::open(dir).and_then(|d| d.sync_all()) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other.map_err(|e| io_error(dir, e)),
    }
}

fn invalid(detail: String) -> StoreError {
    StoreError::InvalidTarget { store: KIND, detail }
}

/// The S3 store's key-template refusals, as this store's.
fn as_local(e: StoreError) -> StoreError {
    match e {
        StoreError::InvalidTarget { detail, .. } => invalid(detail),
        other => other,
    }
}

fn io_error(path: &Path, e: std::io::Error) -> StoreError {
    super::io_error(KIND, path, e)
}

/// Runs blocking file work off the async runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    super::blocking(KIND, f).await
}

impl Store for LocalBucketStore {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn probe(&self) -> StoreFuture<'_, ProbeReport> {
        Box::pin(async move {
            let me = self.clone();
            blocking(move || me.canonical_root()).await?;
            Ok(ProbeReport { kind: KIND, server_version: "local directory".to_owned() })
        })
    }

    fn check_target<'a>(&'a self, target: &'a Target) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let (me, t) = (self.clone(), check_target(target)?.clone());
            blocking(move || me.bucket_dir(t.bucket.as_str()).map(|_| ())).await
        })
    }

    fn count_due<'a>(&'a self, target: &'a Target, cutoff: &'a Cutoff) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            let (me, t, cutoff) = (self.clone(), check_target(target)?.clone(), cutoff.clone());
            blocking(move || me.due(&t, &cutoff).map(|d| d.objects.len() as u64)).await
        })
    }

    fn count_total<'a>(&'a self, target: &'a Target) -> StoreFuture<'a, Option<u64>> {
        Box::pin(async move {
            let (me, t) = (self.clone(), check_target(target)?.clone());
            blocking(move || {
                let dir = me.bucket_dir(t.bucket.as_str())?;
                Ok(Some(me.list(&dir, &t.prefix)?.objects.len() as u64))
            })
            .await
        })
    }

    fn purge_due<'a>(&'a self, target: &'a Target, cutoff: &'a Cutoff, options: &'a PurgeOptions) -> PurgeFuture<'a> {
        Box::pin(async move {
            let (me, t, cutoff, options) =
                (self.clone(), check_target(target)?.clone(), cutoff.clone(), options.clone());
            blocking(move || Ok(me.delete_verified(&t, || me.due(&t, &cutoff), &options))).await?
        })
    }

    fn count_subject<'a>(&'a self, target: &'a Target, subject: &'a Subject) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            let t = check_target(target)?;
            if target.subject_fields.is_empty() || subject.is_empty() {
                return Ok(0);
            }
            let (me, t, fields, subject) = (self.clone(), t.clone(), target.subject_fields.clone(), subject.clone());
            blocking(move || me.subject_objects(&t, &fields, &subject).map(|o| o.objects.len() as u64)).await
        })
    }

    fn export_subject<'a>(
        &'a self,
        target: &'a Target,
        subject: &'a Subject,
        limit: u64,
    ) -> StoreFuture<'a, SubjectExport> {
        Box::pin(async move {
            let t = check_target(target)?;
            if target.subject_fields.is_empty() || subject.is_empty() {
                return Ok(SubjectExport::default());
            }
            let (me, t, fields, subject) = (self.clone(), t.clone(), target.subject_fields.clone(), subject.clone());
            blocking(move || me.export(&t, &fields, &subject, limit)).await
        })
    }

    fn erase_subject<'a>(
        &'a self,
        target: &'a Target,
        subject: &'a Subject,
        options: &'a PurgeOptions,
    ) -> PurgeFuture<'a> {
        Box::pin(async move {
            let t = check_target(target)?;
            if target.subject_fields.is_empty() || subject.is_empty() {
                let mut nothing = PurgeReport::empty(options);
                nothing.account.remaining = Some(0);
                return Ok(nothing);
            }
            let (me, t, fields, subject, options) =
                (self.clone(), t.clone(), target.subject_fields.clone(), subject.clone(), options.clone());
            blocking(move || Ok(me.delete_verified(&t, || me.subject_objects(&t, &fields, &subject), &options))).await?
        })
    }
}
