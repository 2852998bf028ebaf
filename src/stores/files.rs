//! A directory of log files: plain text or JSON lines.
//!
//! For retention a record is a whole file: a file is due when its
//! modification time is before the cutoff, or when the whole period that a
//! date in its name names lies before the cutoff. For erasure a record is a
//! line: a subject's lines are removed by rewriting the file atomically (a
//! temporary file in the same directory, fsync, rename over the original,
//! fsync of the directory), keeping every other line byte for byte and the
//! file's modification time and permissions.
//!
//! The glob is relative to the DataStore's root and never leaves it: `..`
//! and absolute globs are refused, symbolic links are never followed, and
//! every match is canonicalized and checked to lie under the canonical root.
//! `*` and `?` match within one path segment and never a leading `.`, so
//! hidden files (and this module's own temporary files) are never matched.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use jiff::Timestamp;
use serde_json::Value;

use super::name_date::NameDate;
use super::{
    Cutoff, Incomplete, ProbeReport, PurgeFuture, PurgeOptions, PurgeReport, Store, StoreError, StoreFuture, Subject,
};
use crate::api::Mode;
use crate::api::policy::{FileAge, FileFormat, FilesTarget, Target};

const KIND: &str = "files";

/// A directory of log files.
#[derive(Clone, Debug)]
pub struct FileStore {
    root: PathBuf,
}

impl FileStore {
    /// The store for a directory; checks at each call that it exists.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    fn canonical_root(&self) -> Result<PathBuf, StoreError> {
        let root = fs::canonicalize(&self.root).map_err(|_| StoreError::MissingTable {
            object: format!("directory {}", self.root.display()),
            hint: String::new(),
        })?;
        if !root.is_dir() {
            return Err(StoreError::MissingTable {
                object: format!("directory {}", self.root.display()),
                hint: String::new(),
            });
        }
        Ok(root)
    }

    /// The regular files the glob matches, sorted, each under the root.
    fn matches(&self, glob: &str) -> Result<Vec<PathBuf>, StoreError> {
        let root = self.canonical_root()?;
        let segments: Vec<&str> = glob.split('/').collect();
        if glob.starts_with('/')
            || segments.iter().any(|s| s.is_empty() || *s == "." || *s == "..")
            || glob.contains('\\')
        {
            return Err(invalid(format!(
                "the glob '{glob}' must be relative to the root, without empty, '.' or '..' segments"
            )));
        }
        let mut current = vec![root.clone()];
        for (i, segment) in segments.iter().enumerate() {
            let last = i + 1 == segments.len();
            let mut next = Vec::new();
            for dir in &current {
                let entries = match fs::read_dir(dir) {
                    Ok(entries) => entries,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io_error(dir, e)),
                };
                for entry in entries {
                    let entry = entry.map_err(|e| io_error(dir, e))?;
                    let name = entry.file_name();
                    let Some(name) = name.to_str() else { continue };
                    if !segment_matches(segment, name) {
                        continue;
                    }
                    // Never follow a link: its type is the link's own.
                    let kind = entry.file_type().map_err(|e| io_error(&entry.path(), e))?;
                    if (last && kind.is_file()) || (!last && kind.is_dir()) {
                        next.push(entry.path());
                    }
                }
            }
            current = next;
        }
        let mut files = Vec::with_capacity(current.len());
        for path in current {
            let canonical = fs::canonicalize(&path).map_err(|e| io_error(&path, e))?;
            if canonical.starts_with(&root) && canonical != root {
                files.push(canonical);
            }
        }
        files.sort();
        files.dedup();
        Ok(files)
    }

    fn due_files(&self, t: &FilesTarget, cutoff: &Cutoff) -> Result<Vec<PathBuf>, StoreError> {
        let pattern = match (t.age, &t.name_date_pattern) {
            (FileAge::NameDate, Some(p)) => Some(NameDate::compile(p, true).map_err(invalid)?),
            (FileAge::NameDate, None) => return Err(invalid("age NameDate needs a nameDatePattern".to_owned())),
            (FileAge::ModificationTime, _) => None,
            (FileAge::LineTime, _) => return Err(invalid("age LineTime is not read by this version".to_owned())),
        };
        let mut due = Vec::new();
        for path in self.matches(&t.glob)? {
            let is_due = match &pattern {
                Some(p) => path.file_name().and_then(|n| n.to_str()).is_some_and(|name| p.is_due(name, cutoff.at())),
                None => {
                    let modified =
                        fs::symlink_metadata(&path).and_then(|m| m.modified()).map_err(|e| io_error(&path, e))?;
                    to_timestamp(modified).is_some_and(|m| m < cutoff.at())
                }
            };
            if is_due {
                due.push(path);
            }
        }
        Ok(due)
    }

    fn remove_files(
        &self,
        files: Vec<PathBuf>,
        options: &PurgeOptions,
        report: &mut PurgeReport,
    ) -> Result<(), StoreError> {
        let size = options.max_batch_size.clamp(1, 10_000) as usize;
        let started = Instant::now();
        for chunk in files.chunks(size) {
            if options.cancel.is_cancelled() {
                return Err(StoreError::Cancelled { deleted: report.account.deleted });
            }
            let batch_started = Instant::now();
            let mut deleted = 0;
            for path in chunk {
                match fs::remove_file(path) {
                    Ok(()) => deleted += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_error(path, e)),
                }
            }
            let mut dirs: Vec<&Path> = chunk.iter().filter_map(|p| p.parent()).collect();
            dirs.dedup();
            for dir in dirs {
                sync_dir(dir)?;
            }
            let took = batch_started.elapsed();
            report.record_batch(options, chunk.len() as u64, deleted, took);
            if let Some(wait) = options.pace(report.account.deleted, started) {
                std::thread::sleep(wait.min(Duration::from_secs(5)));
            }
        }
        Ok(())
    }

    fn matcher(&self, target: &Target, t: &FilesTarget, subject: &Subject) -> Result<Option<LineMatcher>, StoreError> {
        let mut wanted: Vec<(Option<String>, String)> = Vec::new();
        for f in &target.subject_fields {
            for value in subject.values(&f.identity) {
                match t.format {
                    FileFormat::Text => {
                        if !value.chars().any(char::is_alphanumeric) || value.contains(['\n', '\r']) {
                            return Err(invalid(format!(
                                "a {} value has no letter or digit, or spans lines, so it cannot be matched as a whole word in text",
                                f.identity
                            )));
                        }
                        wanted.push((None, value.to_owned()));
                    }
                    FileFormat::JsonLines => {
                        let Some(field) = &f.field else { continue };
                        if value.is_empty() {
                            return Err(invalid(format!("a {} value is empty", f.identity)));
                        }
                        wanted.push((Some(field.as_str().to_owned()), value.to_owned()));
                    }
                }
            }
        }
        Ok((!wanted.is_empty()).then_some(LineMatcher { wanted }))
    }

    /// The lines of each file that belong to the subject: (file, count).
    fn subject_lines(&self, t: &FilesTarget, matcher: &LineMatcher) -> Result<Vec<(PathBuf, u64)>, StoreError> {
        let mut found = Vec::new();
        for path in self.matches(&t.glob)? {
            let bytes = fs::read(&path).map_err(|e| io_error(&path, e))?;
            let n = bytes.split_inclusive(|b| *b == b'\n').filter(|line| matcher.matches(line)).count() as u64;
            if n > 0 {
                found.push((path, n));
            }
        }
        Ok(found)
    }

    /// Rewrites a file without the subject's lines; returns how many went.
    fn rewrite(&self, path: &Path, matcher: &LineMatcher) -> Result<u64, StoreError> {
        for _attempt in 0..3 {
            let before = fs::symlink_metadata(path).map_err(|e| io_error(path, e))?;
            let bytes = fs::read(path).map_err(|e| io_error(path, e))?;
            let mut kept = Vec::with_capacity(bytes.len());
            let mut removed = 0u64;
            for line in bytes.split_inclusive(|b| *b == b'\n') {
                if matcher.matches(line) {
                    removed += 1;
                } else {
                    kept.extend_from_slice(line);
                }
            }
            if removed == 0 {
                return Ok(0);
            }
            let dir = path.parent().ok_or_else(|| invalid("a matched file has no directory".to_owned()))?;
            let temp = dir.join(format!(".delenda-{}-{:x}.tmp", std::process::id(), rand_suffix()));
            let written = (|| -> std::io::Result<()> {
                let mut f = File::options().write(true).create_new(true).open(&temp)?;
                f.write_all(&kept)?;
                f.set_permissions(before.permissions())?;
                if let Ok(modified) = before.modified() {
                    f.set_modified(modified)?;
                }
                f.sync_all()
            })();
            if let Err(e) = written {
                let _ = fs::remove_file(&temp);
                return Err(io_error(path, e));
            }
            // A writer appended meanwhile: start again rather than lose its lines.
            let now = fs::symlink_metadata(path).map_err(|e| io_error(path, e))?;
            if now.len() != before.len() || now.modified().ok() != before.modified().ok() {
                let _ = fs::remove_file(&temp);
                continue;
            }
            fs::rename(&temp, path).map_err(|e| {
                let _ = fs::remove_file(&temp);
                io_error(path, e)
            })?;
            sync_dir(dir)?;
            return Ok(removed);
        }
        Err(StoreError::Backend {
            store: KIND,
            detail: "a file kept changing while its lines were being erased; the erasure will be retried".to_owned(),
        })
    }
}

/// Which lines belong to a subject.
struct LineMatcher {
    /// (JSON field, value), or (None, value) for a whole word in text.
    wanted: Vec<(Option<String>, String)>,
}

impl LineMatcher {
    fn matches(&self, line: &[u8]) -> bool {
        let body = line.strip_suffix(b"\n").unwrap_or(line);
        let body = body.strip_suffix(b"\r").unwrap_or(body);
        let mut json: Option<Option<Value>> = None;
        self.wanted.iter().any(|(field, value)| match field {
            None => contains_word(body, value),
            Some(field) => {
                let parsed = json.get_or_insert_with(|| serde_json::from_slice::<Value>(body).ok());
                parsed.as_ref().is_some_and(|v| json_field_equals(v, field, value))
            }
        })
    }
}

/// Whether `word` occurs in `line` with no word character (letter, digit,
/// `_`) right before or after it.
fn contains_word(line: &[u8], word: &str) -> bool {
    let w = word.as_bytes();
    if w.is_empty() || w.len() > line.len() {
        return false;
    }
    let is_word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    let mut from = 0;
    while let Some(pos) = find(&line[from..], w).map(|p| p + from) {
        let before = last_char(&line[..pos]);
        let after = first_char(&line[pos + w.len()..]);
        if !is_word(before) && !is_word(after) {
            return true;
        }
        from = pos + 1;
    }
    false
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The last character of a byte string; a byte that is not valid UTF-8
/// counts as a letter, so a match next to it is not a whole word.
fn last_char(b: &[u8]) -> Option<char> {
    let start = b.len().saturating_sub(4);
    (start..b.len())
        .find_map(|i| std::str::from_utf8(&b[i..]).ok().and_then(|s| s.chars().next_back()))
        .or_else(|| (!b.is_empty()).then_some('x'))
}

fn first_char(b: &[u8]) -> Option<char> {
    let end = b.len().min(4);
    (1..=end)
        .rev()
        .find_map(|i| std::str::from_utf8(&b[..i]).ok().and_then(|s| s.chars().next()))
        .or_else(|| (!b.is_empty()).then_some('x'))
}

/// Whether the field (`a.b` as a key of its own, or nested) equals the value:
/// a string equal to it, or a number or boolean written the same; in an
/// array, any element.
fn json_field_equals(v: &Value, field: &str, value: &str) -> bool {
    let Some(obj) = v.as_object() else { return false };
    let found = obj.get(field).or_else(|| {
        let mut cur = v;
        for part in field.split('.') {
            cur = cur.as_object()?.get(part)?;
        }
        Some(cur)
    });
    let equal = |x: &Value| match x {
        Value::String(s) => s == value,
        Value::Number(n) => n.to_string() == value,
        Value::Bool(b) => b.to_string() == value,
        _ => false,
    };
    match found {
        Some(Value::Array(items)) => items.iter().any(equal),
        Some(x) => equal(x),
        None => false,
    }
}

/// Shell-style matching of one path segment: `*` any run, `?` one character;
/// a leading `.` is matched only by a pattern that starts with `.`.
fn segment_matches(pattern: &str, name: &str) -> bool {
    if name.starts_with('.') && !pattern.starts_with('.') {
        return false;
    }
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    let (mut pi, mut ni, mut star, mut mark) = (0, 0, None, 0);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ni;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ni = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io_error(dir, e))
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.finish()
}

fn to_timestamp(t: SystemTime) -> Option<Timestamp> {
    Timestamp::try_from(t).ok()
}

fn invalid(detail: String) -> StoreError {
    StoreError::InvalidTarget { store: KIND, detail }
}

fn io_error(path: &Path, e: std::io::Error) -> StoreError {
    super::io_error(KIND, path, e)
}

fn files_target(target: &Target) -> Result<&FilesTarget, StoreError> {
    target.files.as_ref().ok_or_else(|| invalid(format!("target {} names no files (glob)", target.name)))
}

/// Runs blocking file work off the async runtime.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    super::blocking(KIND, f).await
}

impl Store for FileStore {
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

    fn count_due<'a>(&'a self, target: &'a Target, cutoff: &'a Cutoff) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            let (me, t, cutoff) = (self.clone(), files_target(target)?.clone(), cutoff.clone());
            blocking(move || me.due_files(&t, &cutoff).map(|f| f.len() as u64)).await
        })
    }

    fn purge_due<'a>(&'a self, target: &'a Target, cutoff: &'a Cutoff, options: &'a PurgeOptions) -> PurgeFuture<'a> {
        Box::pin(async move {
            let (me, t, cutoff, options) =
                (self.clone(), files_target(target)?.clone(), cutoff.clone(), options.clone());
            blocking(move || {
                let due = me.due_files(&t, &cutoff)?;
                let mut report = PurgeReport::empty(&options);
                report.account.matched = due.len() as u64;
                if options.mode == Mode::DryRun {
                    report.account.remaining = Some(report.account.matched);
                    return Ok(Ok(report));
                }
                if let Err(e) = me.remove_files(due, &options, &mut report) {
                    return Ok(Err(Incomplete::after(e, &report)));
                }
                let remaining = me.due_files(&t, &cutoff)?.len() as u64;
                report.account.remaining = Some(remaining);
                if remaining > 0 {
                    let e = StoreError::NotVerified { deleted: report.account.deleted, remaining };
                    return Ok(Err(Incomplete::after(e, &report)));
                }
                Ok(Ok(report))
            })
            .await?
        })
    }

    fn count_subject<'a>(&'a self, target: &'a Target, subject: &'a Subject) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            let t = files_target(target)?;
            let Some(matcher) = self.matcher(target, t, subject)? else { return Ok(0) };
            let (me, t) = (self.clone(), t.clone());
            blocking(move || me.subject_lines(&t, &matcher).map(|f| f.iter().map(|(_, n)| n).sum())).await
        })
    }

    fn erase_subject<'a>(
        &'a self,
        target: &'a Target,
        subject: &'a Subject,
        options: &'a PurgeOptions,
    ) -> PurgeFuture<'a> {
        Box::pin(async move {
            let t = files_target(target)?;
            let Some(matcher) = self.matcher(target, t, subject)? else {
                let mut nothing = PurgeReport::empty(options);
                nothing.account.remaining = Some(0);
                return Ok(nothing);
            };
            let (me, t, options) = (self.clone(), t.clone(), options.clone());
            blocking(move || {
                let (t, options) = (&t, &options);
                let found = me.subject_lines(t, &matcher)?;
                let mut report = PurgeReport::empty(options);
                report.account.matched = found.iter().map(|(_, n)| n).sum();
                if options.mode == Mode::DryRun {
                    report.account.remaining = Some(report.account.matched);
                    return Ok(Ok(report));
                }
                for (path, _) in found {
                    if options.cancel.is_cancelled() {
                        let e = StoreError::Cancelled { deleted: report.account.deleted };
                        return Ok(Err(Incomplete::after(e, &report)));
                    }
                    let started = Instant::now();
                    let removed = match me.rewrite(&path, &matcher) {
                        Ok(n) => n,
                        Err(e) => return Ok(Err(Incomplete::after(e, &report))),
                    };
                    report.record_batch(options, removed, removed, started.elapsed());
                }
                let remaining = me.subject_lines(t, &matcher)?.iter().map(|(_, n)| n).sum();
                report.account.remaining = Some(remaining);
                if remaining > 0 {
                    let e = StoreError::NotVerified { deleted: report.account.deleted, remaining };
                    return Ok(Err(Incomplete::after(e, &report)));
                }
                Ok(Ok(report))
            })
            .await?
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_within_one_segment_and_skip_hidden_files() {
        assert!(segment_matches("access-*.log", "access-2024-01-01.log"));
        assert!(segment_matches("a?c", "abc"));
        assert!(!segment_matches("a?c", "abbc"));
        assert!(!segment_matches("*.log", ".delenda-1.tmp"));
        assert!(!segment_matches("*", ".hidden"));
        assert!(segment_matches("*", "ünïcødé name"));
        assert!(!segment_matches("*.log", "x.log.1"));
    }

    #[test]
    fn whole_words_only() {
        assert!(contains_word(b"login by jan@example.com ok", "jan@example.com"));
        assert!(contains_word(b"jan@example.com", "jan@example.com"));
        assert!(!contains_word(b"login by xjan@example.com", "jan@example.com"));
        assert!(!contains_word(b"login by jan@example.community", "jan@example.com"));
        assert!(contains_word(b"(jan@example.com)", "jan@example.com"));
        assert!(!contains_word("j\u{00e4}n".as_bytes(), "n"));
        assert!(!contains_word(b"user 421", "42"));
        assert!(contains_word(b"user 42, 421", "42"));
    }

    #[test]
    fn json_fields_compare_whole_values() {
        let v: Value = serde_json::from_str(r#"{"user":{"id":42},"client.ip":"10.0.0.1","tags":["a","b"]}"#).unwrap();
        assert!(json_field_equals(&v, "user.id", "42"));
        assert!(json_field_equals(&v, "client.ip", "10.0.0.1"));
        assert!(!json_field_equals(&v, "client.ip", "10.0.0"));
        assert!(json_field_equals(&v, "tags", "b"));
        assert!(!json_field_equals(&v, "user", "42"));
    }
}
