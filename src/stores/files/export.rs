//! A subject's records for an access request's export: every record the
//! erasure's [`SubjectMatcher`] finds (the same matching), in the files the
//! glob names (rotated and gzip files read as a purge reads them), each as
//! its file (relative to the root), the line it starts at, and its text, or
//! its JSON for JSON lines. Files in path order, records in file order.
//!
//! Files are streamed, never read whole; once a record past the limit is
//! found nothing more is kept. Counted as unreadable, as the erasure counts
//! them: a record that might hold the subject but cannot be told, one that
//! matches but is not UTF-8 (it cannot be shown exactly), one too long to
//! judge, a `.gz` that does not decompress (what it yielded before is not
//! trusted, so none of it is exported), a name that is not UTF-8. A file
//! still being written is read up to where its writer has got.

use serde_json::json;

use super::judge::{Found, SubjectMatcher};
use super::records::Verdict;
use super::rewrite::{self, FileError};
use super::{FileStore, Resolved, glob};
use crate::api::policy::FileFormat;
use crate::stores::export::{self, Gather};
use crate::stores::{StoreError, SubjectExport};

impl FileStore {
    /// The subject's records in the target's files, at most `limit`.
    pub(super) fn export(
        &self,
        r: &Resolved,
        matcher: &SubjectMatcher,
        limit: u64,
    ) -> Result<SubjectExport, StoreError> {
        let root = glob::canonical_root(&self.root)?;
        let listing = glob::list(&self.root, &r.glob)?;
        let mut gather = Gather::new(limit, format!("the files {}", r.glob));
        gather.unreadable(listing.names_not_utf8);
        let json = r.format == FileFormat::JsonLines;
        for path in &listing.files {
            // Listed names are UTF-8 and below the root.
            let file = path.strip_prefix(&root).ok().and_then(|p| p.to_str()).unwrap_or_default().to_owned();
            let before = gather.len();
            let mut over = false;
            let scanned = rewrite::scan_numbered(path, glob::is_gzip(path), r.framing, None, &mut |line, record| {
                if over {
                    return Verdict::Keep;
                }
                match matcher.find(record) {
                    Found::Yes => match export::line(record, json) {
                        Some(value) => {
                            over = gather.push(json!({ "file": file, "line": line, "record": value })).is_err();
                        }
                        None => gather.unreadable(1),
                    },
                    Found::Unsure(_) => gather.unreadable(1),
                    Found::No => {}
                }
                Verdict::Keep
            });
            if over {
                return Err(gather.over_limit());
            }
            match scanned {
                Ok(Some(scanned)) => gather.unreadable(scanned.pass.oversized),
                Ok(None) | Err(FileError::Changed) => {}
                Err(FileError::Corrupt) => {
                    gather.truncate(before);
                    gather.unreadable(1);
                }
                Err(FileError::Store(e)) => return Err(e),
            }
        }
        Ok(gather.finish())
    }
}
