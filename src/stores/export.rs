//! What an access request's export holds of a record, the parts every store
//! shares: an object's body as text, JSON or base64 under a size cap, a log
//! line as JSON or text, and the gathering of records that stops, with
//! [`StoreError::ExportLimit`], at the first record past the limit. Each
//! store's own module finds the subject's records with the same matching
//! as its erasure and hands them here; see docs/export.md.

use base64::Engine as _;
use jiff::Timestamp;
use serde_json::{Map, Value, json};

use super::{StoreError, SubjectExport};

/// The largest object body an export carries (1 MiB). A larger object is
/// listed with its metadata, its body left out (`bodyEncoding: omitted`),
/// and counted as unreadable: never cut short.
pub const BODY_CAP: u64 = 1 << 20;

/// Records gathered for one target, at most `limit` of them.
#[derive(Debug)]
pub(crate) struct Gather {
    limit: u64,
    object: String,
    export: SubjectExport,
}

impl Gather {
    /// Gathers at most `limit` records of `object` (a bucket, an index
    /// pattern, a glob: named in the error, never a record value).
    pub(crate) fn new(limit: u64, object: impl Into<String>) -> Self {
        Self { limit, object: object.into(), export: SubjectExport::default() }
    }

    /// The error for more than `limit` records: nothing is exported.
    pub(crate) fn over_limit(&self) -> StoreError {
        StoreError::ExportLimit { object: self.object.clone(), limit: self.limit }
    }

    /// Fails as [`Self::over_limit`] when `found` records are more than the limit.
    pub(crate) fn check(&self, found: u64) -> Result<(), StoreError> {
        if found > self.limit { Err(self.over_limit()) } else { Ok(()) }
    }

    /// Adds one record; the one past the limit is an error and is not kept.
    pub(crate) fn push(&mut self, record: Value) -> Result<(), StoreError> {
        self.check(self.export.records.len() as u64 + 1)?;
        self.export.records.push(record);
        Ok(())
    }

    /// Adds an object's record; one whose body was left out (over
    /// [`BODY_CAP`]) is counted as unreadable too.
    pub(crate) fn push_object(&mut self, record: ObjectRecord) -> Result<(), StoreError> {
        let (value, omitted) = record.into_json();
        if omitted {
            self.unreadable(1);
        }
        self.push(value)
    }

    /// Counts records that match (or may) but cannot be read.
    pub(crate) fn unreadable(&mut self, n: u64) {
        self.export.unreadable += n;
    }

    /// Records gathered so far.
    pub(crate) fn len(&self) -> u64 {
        self.export.records.len() as u64
    }

    /// Drops the records gathered after the first `n` (those of a file
    /// found corrupt halfway).
    pub(crate) fn truncate(&mut self, n: u64) {
        self.export.records.truncate(n as usize);
    }

    /// The export.
    pub(crate) fn finish(self) -> SubjectExport {
        self.export
    }
}

/// One object version as an export shows it. Fields a store does not have
/// (a local file has no version, content type, metadata or tags) are left
/// out of the record, not filled with empty values.
#[derive(Debug, Default)]
pub(crate) struct ObjectRecord {
    pub key: String,
    pub version_id: Option<String>,
    pub latest: Option<bool>,
    pub last_modified: Option<Timestamp>,
    pub size: u64,
    pub content_type: Option<String>,
    pub metadata: Option<Vec<(String, String)>>,
    pub tags: Option<Vec<(String, String)>>,
    /// The body, or `None` when it is larger than [`BODY_CAP`].
    pub body: Option<Vec<u8>>,
}

impl ObjectRecord {
    /// The record as JSON, keys in a fixed order; whether its body was
    /// left out (and so must be counted as unreadable).
    pub(crate) fn into_json(self) -> (Value, bool) {
        let mut out = Map::new();
        out.insert("key".into(), json!(self.key));
        if let Some(v) = self.version_id {
            out.insert("versionId".into(), json!(v));
        }
        if let Some(latest) = self.latest {
            out.insert("latest".into(), json!(latest));
        }
        out.insert("lastModified".into(), json!(self.last_modified.map(|t| t.to_string())));
        out.insert("size".into(), json!(self.size));
        if let Some(ct) = self.content_type {
            out.insert("contentType".into(), json!(ct));
        }
        let pairs = |mut p: Vec<(String, String)>| {
            p.sort();
            Value::Object(p.into_iter().map(|(k, v)| (k, Value::String(v))).collect())
        };
        if let Some(m) = self.metadata {
            out.insert("metadata".into(), pairs(m));
        }
        if let Some(t) = self.tags {
            out.insert("tags".into(), pairs(t));
        }
        let omitted = self.body.is_none();
        let (encoding, body) = match self.body {
            Some(bytes) => body(&bytes),
            None => ("omitted", Value::Null),
        };
        out.insert("bodyEncoding".into(), json!(encoding));
        out.insert("body".into(), body);
        (Value::Object(out), omitted)
    }
}

/// An object's body: JSON when it is UTF-8 that parses as JSON, text when
/// it is other UTF-8, base64 (standard, padded) otherwise. Returns the
/// encoding's name and the value.
pub(crate) fn body(bytes: &[u8]) -> (&'static str, Value) {
    match std::str::from_utf8(bytes) {
        Ok(text) => match serde_json::from_str::<Value>(text) {
            Ok(v) => ("json", v),
            Err(_) => ("text", Value::String(text.to_owned())),
        },
        Err(_) => ("base64", Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))),
    }
}

/// A log record without its final line end: parsed JSON when `json` and it
/// parses, else text. `None` when it is not UTF-8 (it cannot be shown
/// exactly, so it is counted as unreadable).
pub(crate) fn line(bytes: &[u8], json: bool) -> Option<Value> {
    let bytes = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
    let text = std::str::from_utf8(bytes).ok()?;
    if json && let Ok(v) = serde_json::from_str::<Value>(text) {
        return Some(v);
    }
    Some(Value::String(text.to_owned()))
}

/// Reads at most `cap + 1` bytes from `input`: `None` when there are more
/// than `cap` (an object that grew past the cap since it was listed).
pub(crate) fn read_capped(input: impl std::io::Read, cap: u64) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::Read as _;
    let mut out = Vec::new();
    input.take(cap + 1).read_to_end(&mut out)?;
    Ok((out.len() as u64 <= cap).then_some(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_json_text_or_base64() {
        assert_eq!(body(br#"{"a": 1}"#), ("json", json!({ "a": 1 })));
        assert_eq!(body(b"hello"), ("text", json!("hello")));
        assert_eq!(body(b""), ("text", json!("")));
        assert_eq!(body(&[0xff, 0x00, 0x01]), ("base64", json!("/wAB")));
    }

    #[test]
    fn lines_lose_their_line_end_and_invalid_ones_are_refused() {
        assert_eq!(line(b"{\"a\":1}\r\n", true), Some(json!({ "a": 1 })));
        assert_eq!(line(b"{\"a\":1}\n", false), Some(json!("{\"a\":1}")));
        assert_eq!(line(b"not json\n", true), Some(json!("not json")));
        assert_eq!(line(b"caf\xe9\n", false), None);
    }

    #[test]
    fn the_record_past_the_limit_is_an_error_and_is_not_kept() {
        let mut g = Gather::new(2, "bucket b");
        g.push(json!(1)).unwrap();
        g.push(json!(2)).unwrap();
        let e = g.push(json!(3)).unwrap_err();
        assert_eq!(e.reason(), "GuardrailReached");
        assert!(e.to_string().contains("more than 2 records in bucket b"), "{e}");
        assert_eq!(g.len(), 2);
    }

    #[test]
    fn an_object_over_the_cap_is_listed_without_its_body() {
        let record = ObjectRecord { key: "k".into(), size: BODY_CAP + 1, ..ObjectRecord::default() };
        let (v, omitted) = record.into_json();
        assert!(omitted);
        assert_eq!((v["bodyEncoding"].as_str(), &v["body"]), (Some("omitted"), &Value::Null));
        assert!(v.get("tags").is_none(), "absent, not empty: {v}");
        assert_eq!(read_capped(&b"abc"[..], 3).unwrap(), Some(b"abc".to_vec()));
        assert_eq!(read_capped(&b"abcd"[..], 3).unwrap(), None);
    }
}
