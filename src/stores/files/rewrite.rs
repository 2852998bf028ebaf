//! Reading a file's records, and replacing the file with a copy that leaves
//! some out.
//!
//! Files are streamed, never read whole: memory stays bounded however large
//! a file is. A `.gz` file is read through gzip (several members, as
//! logrotate appends, included) and rewritten as gzip; one that does not
//! decompress is reported as corrupt and never rewritten.
//!
//! A rewrite is atomic: the copy is written to a temporary file in the same
//! directory, given the original's owner, group, mode and times, flushed to
//! disk, and renamed over the original only if the original has not changed
//! since it was judged; then the directory is flushed. A temporary file left
//! by an interrupted rewrite is removed by a later one.

use std::cell::Cell;
use std::fs::{self, File, FileTimes, Metadata};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;

use super::glob::{TEMP_PREFIX, TEMP_SUFFIX};
use super::io_error;
use super::records::{Clear, Framing, Pass, Verdict, filter, filter_numbered};
use crate::stores::StoreError;

/// Buffers for reading and writing: large enough to stream at disk speed.
const BUFFER: usize = 256 << 10;
/// A temporary file untouched this long belongs to a rewrite that died.
const STALE_AFTER: Duration = Duration::from_secs(15 * 60);

/// What identifies a file's content without reading it: its inode, size,
/// and modification and change times (the change time cannot be set back).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Fingerprint {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Fingerprint {
    /// The fingerprint of a file's metadata.
    pub(super) fn of(meta: &Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// Why a pass over a file did not complete.
#[derive(Debug)]
pub(super) enum FileError {
    /// The file is not what its name says: a `.gz` that does not decompress.
    Corrupt,
    /// The file changed (or went) since it was judged; it is left alone.
    Changed,
    /// Reading or writing failed.
    Store(StoreError),
}

/// A file seen by a scan: its fingerprint and metadata then, and the pass.
#[derive(Debug)]
pub(super) struct Scanned {
    pub fingerprint: Fingerprint,
    pub meta: Metadata,
    pub pass: Pass,
}

/// Judges every record of `path` without changing anything. `None` when
/// the file is gone.
pub(super) fn scan(
    path: &Path,
    gzip: bool,
    framing: Framing,
    clear: Clear<'_>,
    judge: &mut dyn FnMut(&[u8]) -> Verdict,
) -> Result<Option<Scanned>, FileError> {
    scan_numbered(path, gzip, framing, clear, &mut |_, record| judge(record))
}

/// [`scan`], telling `judge` also the line each record starts at.
pub(super) fn scan_numbered(
    path: &Path,
    gzip: bool,
    framing: Framing,
    clear: Clear<'_>,
    judge: &mut dyn FnMut(u64, &[u8]) -> Verdict,
) -> Result<Option<Scanned>, FileError> {
    let file = match open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(FileError::Store(io_error(path, e))),
    };
    let meta = file.metadata().map_err(|e| FileError::Store(io_error(path, e)))?;
    let disk_failed = Rc::new(Cell::new(false));
    let mut input = reader(file, gzip, &disk_failed);
    let pass = filter_numbered(&mut *input, framing, &mut io::sink(), clear, judge)
        .map_err(|e| read_error(path, gzip, &disk_failed, e))?;
    Ok(Some(Scanned { fingerprint: Fingerprint::of(&meta), meta, pass }))
}

/// Opens a file for reading without touching its access time where the
/// operator may (it owns the file, or has CAP_FOWNER).
fn open(path: &Path) -> io::Result<File> {
    match File::options().read(true).custom_flags(libc::O_NOATIME).open(path) {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => File::open(path),
        other => other,
    }
}

/// What a rewrite did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Rewritten {
    /// The file was replaced by a copy without `dropped` records.
    Replaced { dropped: u64 },
    /// Every byte of the file was dropped and `remove_if_empty` was set: the
    /// file was removed.
    Removed { dropped: u64 },
    /// Nothing was dropped; the file is as it was.
    Unchanged,
}

/// Replaces `path` by a copy without the records `judge` drops, if the
/// file is still the one `expected` describes.
pub(super) fn rewrite(
    path: &Path,
    gzip: bool,
    framing: Framing,
    expected: &Fingerprint,
    remove_if_empty: bool,
    clear: Clear<'_>,
    judge: &mut dyn FnMut(&[u8]) -> Verdict,
) -> Result<Rewritten, FileError> {
    let store = |e: io::Error| FileError::Store(io_error(path, e));
    let file = match open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(FileError::Changed),
        Err(e) => return Err(store(e)),
    };
    let before = file.metadata().map_err(store)?;
    if Fingerprint::of(&before) != *expected {
        return Err(FileError::Changed);
    }
    let dir =
        path.parent().ok_or_else(|| FileError::Store(super::invalid("a matched file has no directory".into())))?;
    let temp = Temp::create(dir).map_err(store)?;
    let disk_failed = Rc::new(Cell::new(false));
    let mut input = reader(file, gzip, &disk_failed);
    let mut output = Output::new(temp.file.try_clone().map_err(store)?, gzip);
    let pass = match filter(&mut *input, framing, &mut output, clear, judge) {
        Ok(pass) => pass,
        // A write error is the disk's; a read error may be the gzip's.
        Err(e) if output.failed => return Err(store(e)),
        Err(e) => return Err(read_error(path, gzip, &disk_failed, e)),
    };
    if pass.dropped == 0 {
        return Ok(Rewritten::Unchanged);
    }
    let unchanged = || fs::symlink_metadata(path).is_ok_and(|now| Fingerprint::of(&now) == *expected);
    if remove_if_empty && pass.kept_bytes == 0 {
        if !unchanged() {
            return Err(FileError::Changed);
        }
        fs::remove_file(path).map_err(store)?;
        sync_dir(dir).map_err(FileError::Store)?;
        return Ok(Rewritten::Removed { dropped: pass.dropped });
    }
    output.finish().map_err(store)?;
    keep_attributes(&temp.file, &before).map_err(|e| match e.kind() {
        io::ErrorKind::PermissionDenied => FileError::Store(StoreError::PermissionDenied {
            object: format!("a file {} levels deep (names withheld)", path.components().count()),
            detail: "the rewritten file cannot be given its owner and group back: the operator needs the CHOWN capability, or to run as the files' owner; the file was left as it was".into(),
        }),
        _ => store(e),
    })?;
    temp.file.sync_all().map_err(store)?;
    // A writer appended meanwhile: leave the file to a later run rather
    // than lose its lines.
    if !unchanged() {
        return Err(FileError::Changed);
    }
    temp.rename_over(path).map_err(store)?;
    sync_dir(dir).map_err(FileError::Store)?;
    Ok(Rewritten::Replaced { dropped: pass.dropped })
}

/// Gives the copy the original's owner, group, mode (set after the owner:
/// a change of owner clears set-id bits) and access and modification times.
fn keep_attributes(copy: &File, original: &Metadata) -> io::Result<()> {
    let mine = copy.metadata()?;
    if (mine.uid(), mine.gid()) != (original.uid(), original.gid()) {
        std::os::unix::fs::fchown(copy, Some(original.uid()), Some(original.gid()))?;
    }
    copy.set_permissions(fs::Permissions::from_mode(original.mode() & 0o7777))?;
    let mut times = FileTimes::new();
    if let Ok(accessed) = original.accessed() {
        times = times.set_accessed(accessed);
    }
    if let Ok(modified) = original.modified() {
        times = times.set_modified(modified);
    }
    copy.set_times(times)
}

/// A temporary file in the directory of the file it will replace, removed
/// unless it was renamed.
struct Temp {
    path: PathBuf,
    file: File,
    renamed: bool,
}

impl Temp {
    fn create(dir: &Path) -> io::Result<Self> {
        let path = dir.join(format!("{TEMP_PREFIX}{}-{:x}{TEMP_SUFFIX}", std::process::id(), random()));
        // Private until it takes the original's mode.
        let file = File::options().write(true).create_new(true).mode(0o600).open(&path)?;
        Ok(Self { path, file, renamed: false })
    }

    fn rename_over(mut self, target: &Path) -> io::Result<()> {
        fs::rename(&self.path, target)?;
        self.renamed = true;
        Ok(())
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        if !self.renamed {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Where a rewrite writes: plain or gzip, remembering whether a write failed.
struct Output {
    sink: Sink,
    failed: bool,
}

enum Sink {
    Plain(BufWriter<File>),
    Gzip(BufWriter<GzEncoder<File>>),
}

impl Output {
    fn new(file: File, gzip: bool) -> Self {
        let sink = if gzip {
            Sink::Gzip(BufWriter::with_capacity(BUFFER, GzEncoder::new(file, Compression::default())))
        } else {
            Sink::Plain(BufWriter::with_capacity(BUFFER, file))
        };
        Self { sink, failed: false }
    }

    fn finish(self) -> io::Result<()> {
        match self.sink {
            Sink::Plain(mut w) => w.flush(),
            Sink::Gzip(w) => w.into_inner().map_err(|e| e.into_error())?.finish().map(drop),
        }
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let r = match &mut self.sink {
            Sink::Plain(w) => w.write(buf),
            Sink::Gzip(w) => w.write(buf),
        };
        self.failed |= r.is_err();
        r
    }

    fn flush(&mut self) -> io::Result<()> {
        let r = match &mut self.sink {
            Sink::Plain(w) => w.flush(),
            Sink::Gzip(w) => w.flush(),
        };
        self.failed |= r.is_err();
        r
    }
}

/// A file's bytes, through gzip when its name says so; `disk_failed` tells
/// a failure of the disk from one of the decompression.
fn reader(file: File, gzip: bool, disk_failed: &Rc<Cell<bool>>) -> Box<dyn BufRead> {
    let source = Tracked { inner: file, failed: Rc::clone(disk_failed) };
    if gzip {
        Box::new(BufReader::with_capacity(BUFFER, MultiGzDecoder::new(BufReader::with_capacity(BUFFER, source))))
    } else {
        Box::new(BufReader::with_capacity(BUFFER, source))
    }
}

fn read_error(path: &Path, gzip: bool, disk_failed: &Cell<bool>, e: io::Error) -> FileError {
    if gzip && !disk_failed.get() { FileError::Corrupt } else { FileError::Store(io_error(path, e)) }
}

struct Tracked {
    inner: File,
    failed: Rc<Cell<bool>>,
}

impl Read for Tracked {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let r = self.inner.read(buf);
        if r.is_err() {
            self.failed.set(true);
        }
        r
    }
}

/// Removes temporary files of rewrites that died: untouched for 15
/// minutes, or made by a process that is gone. Returns how many went.
pub(super) fn remove_stale(temps: &[PathBuf]) -> u64 {
    let me = std::process::id();
    let now = SystemTime::now();
    let mut removed = 0;
    for path in temps {
        let Ok(meta) = fs::symlink_metadata(path) else { continue };
        if !meta.is_file() {
            continue;
        }
        let changed = SystemTime::UNIX_EPOCH
            + Duration::new(u64::try_from(meta.ctime()).unwrap_or(0), u32::try_from(meta.ctime_nsec()).unwrap_or(0));
        let untouched = now.duration_since(changed).is_ok_and(|age| age > STALE_AFTER);
        let pid = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix(TEMP_PREFIX))
            .and_then(|n| n.split('-').next())
            .and_then(|p| p.parse::<u32>().ok());
        let orphaned = pid.is_some_and(|pid| pid != me && !Path::new(&format!("/proc/{pid}")).exists());
        if (untouched || orphaned) && fs::remove_file(path).is_ok() {
            removed += 1;
            if let Some(dir) = path.parent() {
                let _ = sync_dir(dir);
            }
        }
    }
    removed
}

/// Flushes a directory's entries (a rename, a removal) to disk.
pub(super) fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io_error(dir, e))
}

fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.finish()
}
