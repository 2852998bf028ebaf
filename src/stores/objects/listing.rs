//! Listing a bucket: objects and their versions, newest first, with keys
//! exactly as stored.
//!
//! Keys are asked for URL-encoded (`encoding-type=url`), since XML 1.0
//! cannot carry every character a key may hold (control characters are
//! legal in S3 keys). A server that ignores the request puts U+FFFD where
//! such a character was: that key cannot be named to delete it, so it is
//! reported as unreadable rather than retried forever.

use std::collections::BTreeMap;

use aws_sdk_s3::types::EncodingType;
use jiff::Timestamp;

use super::{BucketStore, backend, classify, to_timestamp};
use crate::stores::StoreError;

/// One version of an object, or a delete marker.
#[derive(Clone, Debug)]
pub(super) struct Version {
    /// `None` in an unversioned bucket.
    pub id: Option<String>,
    pub latest: bool,
    pub modified: Timestamp,
    pub marker: bool,
    /// The ETag of a data version, to delete it only if unchanged.
    pub etag: Option<String>,
}

/// An object and its versions, newest first.
#[derive(Clone, Debug)]
pub(super) struct Object {
    pub key: String,
    pub versions: Vec<Version>,
    /// The server listed the key with characters replaced: it cannot be
    /// named exactly.
    pub mangled: bool,
}

impl Object {
    /// The newest version that holds data (not a delete marker).
    pub fn newest_data(&self) -> Option<&Version> {
        self.versions.iter().find(|v| !v.marker)
    }

    /// The versions that hold data (not delete markers), newest first.
    pub fn data_versions(&self) -> impl Iterator<Item = &Version> {
        self.versions.iter().filter(|v| !v.marker)
    }

    /// The current version, unless the object is deleted (a delete marker is current).
    pub fn current(&self) -> Option<&Version> {
        self.versions.first().filter(|v| !v.marker)
    }
}

/// What a bucket is set up for.
#[derive(Clone, Copy, Debug)]
pub(super) struct Bucket<'a> {
    pub name: &'a str,
    pub versioned: bool,
    pub locked: bool,
}

/// Decodes a key that the server URL-encoded (`%XX`, and `+` for a space,
/// as S3 encodes them). `None` when the text is not a valid encoding.
pub(super) fn url_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Reads a key from a listing page, decoding it when the server encoded it.
fn key_of(raw: &str, encoded: bool) -> Result<(String, bool), StoreError> {
    if encoded {
        let key = url_decode(raw).ok_or_else(|| backend("the server listed a key whose URL encoding is invalid"))?;
        return Ok((key, false));
    }
    Ok((raw.to_owned(), raw.contains('\u{fffd}')))
}

/// Keys asked for per listing page: S3's own maximum, and the most objects
/// a purge holds in memory at once.
pub(super) const PAGE: i32 = 1000;

/// A listing read page by page: each page holds whole objects (every
/// version of a key, newest first), in key order, so a purge can judge
/// and delete page by page and hold no more than a page and the batches in
/// flight in memory, whatever the size of the bucket.
pub(super) struct Lister<'a> {
    store: &'a BucketStore,
    bucket: &'a Bucket<'a>,
    prefix: &'a str,
    page_size: i32,
    /// Where the next request goes on from: a continuation token, or a key
    /// and version marker; `None` before the first page and after the last.
    next: Option<(Option<String>, Option<String>)>,
    started: bool,
    /// The last key of the previous page, whose versions may go on.
    carry: Option<(String, Vec<Version>, bool)>,
}

impl<'a> Lister<'a> {
    pub(super) fn new(store: &'a BucketStore, bucket: &'a Bucket<'a>, prefix: &'a str) -> Self {
        Self::with_page_size(store, bucket, prefix, PAGE)
    }

    pub(super) fn with_page_size(
        store: &'a BucketStore,
        bucket: &'a Bucket<'a>,
        prefix: &'a str,
        page_size: i32,
    ) -> Self {
        Self { store, bucket, prefix, page_size: page_size.clamp(1, PAGE), next: None, started: false, carry: None }
    }

    /// The next page of whole objects; `None` when the listing is done.
    pub(super) async fn next_page(&mut self) -> Result<Option<Vec<Object>>, StoreError> {
        loop {
            if self.started && self.next.is_none() {
                // The last page was read: what was carried is complete.
                return Ok(self.carry.take().map(|(key, versions, mangled)| vec![finish(key, versions, mangled)]));
            }
            self.started = true;
            let (mut page, truncated) =
                if self.bucket.versioned { self.versions_page().await? } else { self.objects_page().await? };
            if let Some((key, versions, mangled)) = self.carry.take() {
                for version in versions {
                    add(&mut page, (key.clone(), mangled), version);
                }
            }
            // The page's last key may go on in the next page (a versioned
            // listing breaks inside a key's versions): carry it over.
            if truncated
                && self.bucket.versioned
                && let Some((key, (versions, mangled))) = page.pop_last()
            {
                self.carry = Some((key, versions, mangled));
            }
            if page.is_empty() && self.next.is_some() {
                continue;
            }
            return Ok(Some(
                page.into_iter().map(|(key, (versions, mangled))| finish(key, versions, mangled)).collect(),
            ));
        }
    }

    async fn objects_page(&mut self) -> Result<(Page, bool), StoreError> {
        let token = self.next.take().and_then(|(token, _)| token);
        let page = self
            .store
            .client
            .list_objects_v2()
            .bucket(self.bucket.name)
            .prefix(self.prefix)
            .max_keys(self.page_size)
            .encoding_type(EncodingType::Url)
            .set_continuation_token(token)
            .send()
            .await
            .map_err(|e| classify(self.bucket.name, e))?;
        let encoded = page.encoding_type() == Some(&EncodingType::Url);
        let mut out = Page::new();
        for o in page.contents() {
            let Some(key) = o.key() else { continue };
            let modified = o.last_modified().map(to_timestamp).unwrap_or(Timestamp::MAX);
            let version =
                Version { id: None, latest: true, modified, marker: false, etag: o.e_tag().map(str::to_owned) };
            add(&mut out, key_of(key, encoded)?, version);
        }
        let truncated = page.is_truncated() == Some(true);
        if truncated {
            let Some(token) = page.next_continuation_token() else {
                return Err(backend("the server said the listing goes on, but gave no token to go on from"));
            };
            self.next = Some((Some(token.to_owned()), None));
        }
        Ok((out, truncated))
    }

    async fn versions_page(&mut self) -> Result<(Page, bool), StoreError> {
        let (key_marker, version_marker) = self.next.take().unwrap_or((None, None));
        let page = self
            .store
            .client
            .list_object_versions()
            .bucket(self.bucket.name)
            .prefix(self.prefix)
            .max_keys(self.page_size)
            .encoding_type(EncodingType::Url)
            .set_key_marker(key_marker)
            .set_version_id_marker(version_marker)
            .send()
            .await
            .map_err(|e| classify(self.bucket.name, e))?;
        let encoded = page.encoding_type() == Some(&EncodingType::Url);
        let mut out = Page::new();
        for v in page.versions() {
            let Some(key) = v.key() else { continue };
            let version = Version {
                id: v.version_id().map(str::to_owned),
                latest: v.is_latest() == Some(true),
                modified: v.last_modified().map(to_timestamp).unwrap_or(Timestamp::MAX),
                marker: false,
                etag: v.e_tag().map(str::to_owned),
            };
            add(&mut out, key_of(key, encoded)?, version);
        }
        for m in page.delete_markers() {
            let Some(key) = m.key() else { continue };
            let version = Version {
                id: m.version_id().map(str::to_owned),
                latest: m.is_latest() == Some(true),
                modified: m.last_modified().map(to_timestamp).unwrap_or(Timestamp::MAX),
                marker: true,
                etag: None,
            };
            add(&mut out, key_of(key, encoded)?, version);
        }
        let truncated = page.is_truncated() == Some(true);
        if truncated {
            let key_marker = match page.next_key_marker() {
                Some(k) if encoded => key_of(k, true)?.0,
                Some(k) => k.to_owned(),
                None => {
                    return Err(backend(
                        "the server said the version listing goes on, but gave no marker to go on from",
                    ));
                }
            };
            self.next = Some((Some(key_marker), page.next_version_id_marker().map(str::to_owned)));
        }
        Ok((out, truncated))
    }
}

/// One page's objects by key: their versions, and whether the key was mangled.
type Page = BTreeMap<String, (Vec<Version>, bool)>;

fn add(page: &mut Page, key: (String, bool), version: Version) {
    let entry = page.entry(key.0).or_default();
    entry.1 |= key.1;
    // versitygw 1.8 starts a version listing's next page *with* the
    // version named by the marker, where S3 starts after it: a version seen
    // twice is the same version, listed once.
    if version.id.is_some() && entry.0.iter().any(|v| v.id == version.id) {
        return;
    }
    entry.0.push(version);
}

fn finish(key: String, mut versions: Vec<Version>, mangled: bool) -> Object {
    versions.sort_by(|a, b| b.latest.cmp(&a.latest).then(b.modified.cmp(&a.modified)));
    Object { key, versions, mangled }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_encoded_keys_decode_to_the_exact_bytes() {
        assert_eq!(url_decode("a%01b").as_deref(), Some("a\u{1}b"));
        assert_eq!(url_decode("sp+ace%2Bplus").as_deref(), Some("sp ace+plus"));
        assert_eq!(url_decode("caf%C3%A9/%E2%82%AC").as_deref(), Some("café/€"));
        assert_eq!(url_decode("bad%zz"), None);
        assert_eq!(url_decode("cut%4"), None);
        assert_eq!(url_decode("%FF"), None, "not UTF-8");
    }

    #[test]
    fn a_key_listed_with_a_replacement_character_is_known_as_mangled() {
        assert_eq!(key_of("a\u{fffd}b", false).unwrap(), ("a\u{fffd}b".to_owned(), true));
        assert_eq!(key_of("a%EF%BF%BDb", true).unwrap(), ("a\u{fffd}b".to_owned(), false), "encoded: the real key");
    }
}
