//! Which files are still being written.
//!
//! A rewrite replaces a file by renaming a new one over it. A writer that
//! holds the old file open goes on writing into it after the rename, into
//! a file no longer in the directory: everything it writes next is lost.
//! Deleting such a file loses the same. So a file that is still being
//! written is neither rewritten nor deleted; its records wait until it is
//! rotated (renamed away, and its writer reopens a new one) or falls quiet.
//!
//! A file counts as being written when it was modified within the quiet
//! period (a modification time in the future counts too), or when a process
//! the operator can see (`/proc`) holds it open for writing. The second
//! catches slow writers in the same pod or host; writers in other pods are
//! seen only through the modification time.

use std::collections::HashSet;
use std::fs::{self, Metadata};
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, SystemTime};

/// The default quiet period: five minutes without a write.
pub(super) const DEFAULT_QUIET: Duration = Duration::from_secs(300);

/// A file's identity on its file system.
pub(super) type Inode = (u64, u64);

/// The inode of a file's metadata.
pub(super) fn inode(meta: &Metadata) -> Inode {
    (meta.dev(), meta.ino())
}

/// What is known about writers, as of one moment.
#[derive(Debug)]
pub(super) struct Activity {
    quiet: Duration,
    now: SystemTime,
    open_for_writing: HashSet<Inode>,
}

impl Activity {
    /// Looks, once, for processes that hold any of `files` open for writing.
    pub(super) fn observe<'a>(files: impl IntoIterator<Item = &'a Metadata>, quiet: Duration) -> Self {
        let candidates: HashSet<Inode> = files.into_iter().map(inode).collect();
        let open_for_writing = if candidates.is_empty() { HashSet::new() } else { writers(&candidates) };
        Self { quiet, now: SystemTime::now(), open_for_writing }
    }

    /// Whether the file is still being written.
    pub(super) fn is_active(&self, meta: &Metadata) -> bool {
        let recent = match meta.modified() {
            Ok(modified) => self.now.duration_since(modified).map_or(true, |age| age < self.quiet),
            // No modification time: cannot tell, so it is not safe to touch.
            Err(_) => true,
        };
        recent || self.open_for_writing.contains(&inode(meta))
    }

    /// The quiet period, in seconds, for messages.
    pub(super) fn quiet_seconds(&self) -> u32 {
        u32::try_from(self.quiet.as_secs()).unwrap_or(u32::MAX)
    }
}

/// The candidates that some visible process holds open for writing.
/// Processes the operator may not inspect are not seen.
fn writers(candidates: &HashSet<Inode>) -> HashSet<Inode> {
    let mut found = HashSet::new();
    let Ok(procs) = fs::read_dir("/proc") else { return found };
    for proc in procs.flatten() {
        let name = proc.file_name();
        if !name.to_str().is_some_and(|n| n.bytes().all(|b| b.is_ascii_digit())) {
            continue;
        }
        let Ok(fds) = fs::read_dir(proc.path().join("fd")) else { continue };
        for fd in fds.flatten() {
            // Following the link gives the open file's own inode.
            let Ok(meta) = fs::metadata(fd.path()) else { continue };
            let id = inode(&meta);
            if !meta.is_file() || !candidates.contains(&id) || found.contains(&id) {
                continue;
            }
            let info = proc.path().join("fdinfo").join(fd.file_name());
            if fs::read_to_string(info).is_ok_and(|text| opened_for_writing(&text)) {
                found.insert(id);
            }
        }
    }
    found
}

/// Whether an fdinfo text says the descriptor was opened for writing
/// (access mode O_WRONLY or O_RDWR in its octal `flags`).
fn opened_for_writing(fdinfo: &str) -> bool {
    fdinfo
        .lines()
        .find_map(|l| l.strip_prefix("flags:"))
        .and_then(|f| u32::from_str_radix(f.trim(), 8).ok())
        .is_some_and(|flags| flags & 0o3 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn reads_the_access_mode_from_fdinfo() {
        assert!(opened_for_writing("pos:\t0\nflags:\t02102001\nmnt_id:\t30\n"));
        assert!(opened_for_writing("pos:\t0\nflags:\t0100002\n"));
        assert!(!opened_for_writing("pos:\t0\nflags:\t0100000\n"));
        assert!(!opened_for_writing("pos:\t0\n"));
    }

    #[test]
    fn a_file_held_open_for_writing_is_active_however_old() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.log");
        let mut writer = fs::File::create(&path).unwrap();
        writer.write_all(b"line\n").unwrap();
        writer.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000)).unwrap();
        let meta = fs::metadata(&path).unwrap();
        assert!(Activity::observe([&meta], DEFAULT_QUIET).is_active(&meta));
        drop(writer);
        // Opened for reading only (a log shipper): not a writer.
        let _reader = fs::File::open(&path).unwrap();
        assert!(!Activity::observe([&meta], DEFAULT_QUIET).is_active(&meta));
    }
}
