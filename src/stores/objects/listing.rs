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

impl BucketStore {
    /// Every object under `prefix` with its versions, newest first.
    pub(super) async fn list(&self, bucket: &Bucket<'_>, prefix: &str) -> Result<Vec<Object>, StoreError> {
        let mut objects: BTreeMap<String, (Vec<Version>, bool)> = BTreeMap::new();
        let mut add = |key: (String, bool), version: Version| {
            let entry = objects.entry(key.0).or_default();
            entry.0.push(version);
            entry.1 |= key.1;
        };
        if !bucket.versioned {
            let mut pages = self
                .client
                .list_objects_v2()
                .bucket(bucket.name)
                .prefix(prefix)
                .encoding_type(EncodingType::Url)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| classify(bucket.name, e))?;
                let encoded = page.encoding_type() == Some(&EncodingType::Url);
                for o in page.contents() {
                    let Some(key) = o.key() else { continue };
                    let modified = o.last_modified().map(to_timestamp).unwrap_or(Timestamp::MAX);
                    let version =
                        Version { id: None, latest: true, modified, marker: false, etag: o.e_tag().map(str::to_owned) };
                    add(key_of(key, encoded)?, version);
                }
            }
        } else {
            let (mut key_marker, mut version_marker): (Option<String>, Option<String>) = (None, None);
            loop {
                let page = self
                    .client
                    .list_object_versions()
                    .bucket(bucket.name)
                    .prefix(prefix)
                    .encoding_type(EncodingType::Url)
                    .set_key_marker(key_marker.take())
                    .set_version_id_marker(version_marker.take())
                    .send()
                    .await
                    .map_err(|e| classify(bucket.name, e))?;
                let encoded = page.encoding_type() == Some(&EncodingType::Url);
                for v in page.versions() {
                    let Some(key) = v.key() else { continue };
                    let version = Version {
                        id: v.version_id().map(str::to_owned),
                        latest: v.is_latest() == Some(true),
                        modified: v.last_modified().map(to_timestamp).unwrap_or(Timestamp::MAX),
                        marker: false,
                        etag: v.e_tag().map(str::to_owned),
                    };
                    add(key_of(key, encoded)?, version);
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
                    add(key_of(key, encoded)?, version);
                }
                if page.is_truncated() != Some(true) {
                    break;
                }
                key_marker = match page.next_key_marker() {
                    Some(k) if encoded => Some(key_of(k, true)?.0),
                    Some(k) => Some(k.to_owned()),
                    None => None,
                };
                version_marker = page.next_version_id_marker().map(str::to_owned);
                if key_marker.is_none() {
                    return Err(backend(
                        "the server said the version listing goes on, but gave no marker to go on from",
                    ));
                }
            }
        }
        Ok(objects
            .into_iter()
            .map(|(key, (mut versions, mangled))| {
                versions.sort_by(|a, b| b.latest.cmp(&a.latest).then(b.modified.cmp(&a.modified)));
                Object { key, versions, mangled }
            })
            .collect())
    }
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
