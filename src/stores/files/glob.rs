//! Which files a target's glob names, below a root it never leaves.
//!
//! The glob is relative to the root: `..`, `.`, empty and absolute segments
//! are refused. `*` and `?` match within one path segment and never a
//! leading `.`, so hidden files (and the store's own temporary files) are
//! never matched. Symbolic links are never followed: a link is neither a
//! file nor a directory here. A name that is not UTF-8 cannot be matched
//! exactly, so one that the glob might name is counted, never acted on.

use std::fs;
use std::path::{Path, PathBuf};

use super::{invalid, io_error};
use crate::stores::StoreError;

/// What a glob names below the root.
#[derive(Debug, Default)]
pub(super) struct Listing {
    /// Regular files, canonical, sorted, each below the root.
    pub files: Vec<PathBuf>,
    /// Files and directories whose names are not UTF-8 but might match.
    pub names_not_utf8: u64,
    /// This store's temporary files, found beside the files.
    pub temps: Vec<PathBuf>,
}

/// The prefix of every temporary file a rewrite makes.
pub(super) const TEMP_PREFIX: &str = ".delenda-";
/// The suffix of every temporary file a rewrite makes.
pub(super) const TEMP_SUFFIX: &str = ".tmp";

/// The root, canonical, or `MissingTable` when it is not a directory.
pub(super) fn canonical_root(root: &Path) -> Result<PathBuf, StoreError> {
    let missing = || StoreError::MissingTable { object: format!("directory {}", root.display()), hint: String::new() };
    let canonical = fs::canonicalize(root).map_err(|_| missing())?;
    if !canonical.is_dir() {
        return Err(missing());
    }
    Ok(canonical)
}

/// Checks that `glob` stays below the root.
pub(super) fn check(glob: &str) -> Result<(), StoreError> {
    let segments: Vec<&str> = glob.split('/').collect();
    if glob.starts_with('/') || segments.iter().any(|s| s.is_empty() || *s == "." || *s == "..") || glob.contains('\\')
    {
        return Err(invalid(format!(
            "the glob '{glob}' must be relative to the root, without empty, '.' or '..' segments"
        )));
    }
    Ok(())
}

/// The regular files `glob` names below `root`.
pub(super) fn list(root: &Path, glob: &str) -> Result<Listing, StoreError> {
    check(glob)?;
    let root = canonical_root(root)?;
    let segments: Vec<&str> = glob.split('/').collect();
    let mut listing = Listing::default();
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
                // Never follow a link: its type is the link's own.
                let kind = entry.file_type().map_err(|e| io_error(&entry.path(), e))?;
                let wanted = (last && kind.is_file()) || (!last && kind.is_dir());
                let name = entry.file_name();
                let Some(name) = name.to_str() else {
                    if wanted && segment_matches(segment, &name.to_string_lossy()) {
                        listing.names_not_utf8 += 1;
                    }
                    continue;
                };
                // The store's own temporary files are never records, whatever the glob.
                if last && kind.is_file() && is_temp(name) {
                    listing.temps.push(entry.path());
                    continue;
                }
                if wanted && segment_matches(segment, name) {
                    next.push(entry.path());
                }
            }
        }
        current = next;
    }
    for path in current {
        let canonical = fs::canonicalize(&path).map_err(|e| io_error(&path, e))?;
        if canonical.starts_with(&root) && canonical != root {
            listing.files.push(canonical);
        }
    }
    listing.files.sort();
    listing.files.dedup();
    Ok(listing)
}

/// Whether a name is one of this store's temporary files.
pub(super) fn is_temp(name: &str) -> bool {
    name.starts_with(TEMP_PREFIX) && name.ends_with(TEMP_SUFFIX)
}

/// Shell-style matching of one path segment: `*` any run, `?` one character;
/// a leading `.` is matched only by a pattern that starts with `.`.
pub(super) fn segment_matches(pattern: &str, name: &str) -> bool {
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

/// Whether a file's name says it is gzip-compressed.
pub(super) fn is_gzip(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "gz")
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
        assert!(is_temp(".delenda-12-ab.tmp"));
        assert!(!is_temp(".delenda-notes"));
    }
}
