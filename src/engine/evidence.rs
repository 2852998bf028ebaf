//! Evidence: canonical JSON records, each sealed with a SHA-256 digest that
//! covers the digest of the record before it, so a changed or missing record
//! breaks the chain. And keyed digests of identities, so evidence can name a
//! data subject without holding their personal data.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

/// A SHA-256 digest written as `sha256:<64 hex digits>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Digest(String);

impl Digest {
    fn of(bytes: &[u8]) -> Self {
        Self(format!("sha256:{}", hex::encode(Sha256::digest(bytes))))
    }

    /// The digest as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One sealed record of a chain.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SealedEvidence {
    /// What happened, as JSON.
    pub record: Value,
    /// The digest of the record before, or none for the first of a chain.
    pub previous_digest: Option<Digest>,
    /// SHA-256 over the canonical JSON of `{previousDigest, record}`.
    pub digest: Digest,
}

/// Canonical JSON: object keys sorted, no insignificant white space, so the
/// same record always gives the same bytes.
pub fn canonical_json(value: &Value) -> String {
    fn write(value: &Value, out: &mut String) {
        match value {
            Value::Object(map) => {
                out.push('{');
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                for (i, k) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&Value::String(k.clone()).to_string());
                    out.push(':');
                    write(&map[k], out);
                }
                out.push('}');
            }
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(item, out);
                }
                out.push(']');
            }
            scalar => out.push_str(&scalar.to_string()),
        }
    }
    let mut out = String::new();
    write(value, &mut out);
    out
}

fn digest_of(record: &Value, previous: Option<&Digest>) -> Digest {
    let envelope = serde_json::json!({ "previousDigest": previous, "record": record });
    Digest::of(canonical_json(&envelope).as_bytes())
}

/// Seals a record onto a chain whose last digest is `previous`.
pub fn seal(record: Value, previous: Option<Digest>) -> SealedEvidence {
    let digest = digest_of(&record, previous.as_ref());
    SealedEvidence { record, previous_digest: previous, digest }
}

/// Where a chain is broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// A record's content no longer matches its digest.
    #[error("record {index} was changed: its digest is {stored} but its content gives {computed}")]
    Changed { index: usize, stored: Digest, computed: Digest },
    /// A record does not follow the one before it: a record is missing,
    /// inserted or out of order.
    #[error("record {index} does not follow record {}: it names {found:?} as previous, but that record's digest is {expected:?}", index - 1)]
    Gap { index: usize, expected: Option<Digest>, found: Option<Digest> },
}

/// Checks every digest and every link of a chain, oldest record first. The
/// first record may continue an older chain (its previous digest is then not
/// checked).
pub fn verify_chain(chain: &[SealedEvidence]) -> Result<(), ChainError> {
    for (index, sealed) in chain.iter().enumerate() {
        let computed = digest_of(&sealed.record, sealed.previous_digest.as_ref());
        if computed != sealed.digest {
            return Err(ChainError::Changed { index, stored: sealed.digest.clone(), computed });
        }
        if index > 0 {
            let expected = Some(chain[index - 1].digest.clone());
            if sealed.previous_digest != expected {
                return Err(ChainError::Gap { index, expected, found: sealed.previous_digest.clone() });
            }
        }
    }
    Ok(())
}

/// Keyed digests of identities (HMAC-SHA-256 with the installation key):
/// equal identities give equal digests under one key, and without the key a
/// digest says nothing about the identity.
#[derive(Clone)]
pub struct SubjectDigester {
    key: Vec<u8>,
}

impl fmt::Debug for SubjectDigester {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SubjectDigester { key: <redacted> }")
    }
}

/// The installation key is too short to be a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the installation key has {0} bytes; it needs at least 32 (for example `openssl rand 32`)")]
pub struct KeyTooShort(pub usize);

impl SubjectDigester {
    /// A digester with the installation key (at least 32 bytes).
    pub fn new(key: &[u8]) -> Result<Self, KeyTooShort> {
        if key.len() < 32 {
            return Err(KeyTooShort(key.len()));
        }
        Ok(Self { key: key.to_vec() })
    }

    /// `hmac-sha256:<hex>` of one identity, of the given kind. The kind is
    /// part of the input, so the same text as an e-mail and as a customer id
    /// gives different digests. Surrounding white space is ignored.
    pub fn digest(&self, kind: &str, value: &str) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(kind.as_bytes());
        mac.update(b"\0");
        mac.update(value.trim().as_bytes());
        format!("hmac-sha256:{}", hex::encode(mac.finalize().into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn chain(n: usize) -> Vec<SealedEvidence> {
        let mut out: Vec<SealedEvidence> = Vec::new();
        for i in 0..n {
            let previous = out.last().map(|s| s.digest.clone());
            out.push(seal(json!({"run": i, "deleted": i * 10, "cutoff": "2026-05-28T00:30:00Z"}), previous));
        }
        out
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_depth() {
        let a = json!({"b": 1, "a": {"d": [3, {"z": 1, "y": 2}], "c": "x"}});
        assert_eq!(canonical_json(&a), r#"{"a":{"c":"x","d":[3,{"y":2,"z":1}]},"b":1}"#);
    }

    #[test]
    fn a_sealed_chain_verifies() {
        assert_eq!(verify_chain(&chain(5)), Ok(()));
        assert!(chain(1)[0].digest.as_str().starts_with("sha256:"));
        assert_eq!(chain(1)[0].digest.as_str().len(), 7 + 64);
    }

    #[test]
    fn a_changed_record_is_found() {
        let mut c = chain(4);
        c[2].record["deleted"] = json!(0);
        assert!(matches!(verify_chain(&c), Err(ChainError::Changed { index: 2, .. })));
    }

    #[test]
    fn a_missing_record_is_a_gap() {
        let mut c = chain(4);
        c.remove(1);
        let err = verify_chain(&c).unwrap_err();
        assert!(matches!(err, ChainError::Gap { index: 1, .. }), "{err}");
        assert!(err.to_string().contains("does not follow record 0"));
    }

    #[test]
    fn reordering_breaks_the_chain() {
        let mut c = chain(3);
        c.swap(1, 2);
        assert!(verify_chain(&c).is_err());
    }

    #[test]
    fn subject_digests_are_keyed_and_kind_specific() {
        let a = SubjectDigester::new(&[7u8; 32]).unwrap();
        let b = SubjectDigester::new(&[8u8; 32]).unwrap();
        let email = "jan.jansen@example.nl";
        assert_eq!(a.digest("email", email), a.digest("email", &format!("  {email} ")));
        assert_ne!(a.digest("email", email), b.digest("email", email));
        assert_ne!(a.digest("email", "42"), a.digest("customerId", "42"));
        assert!(!a.digest("email", email).contains("jansen"));
        assert!(!format!("{a:?}").contains('7'));
    }

    #[test]
    fn a_short_key_is_refused() {
        assert_eq!(SubjectDigester::new(b"short").unwrap_err(), KeyTooShort(5));
    }

    proptest! {
        #[test]
        fn any_single_change_to_any_record_is_detected(n in 2usize..8, which in 0usize..8, value in any::<i64>()) {
            let mut c = chain(n);
            let i = which % n;
            prop_assume!(c[i].record["deleted"] != json!(value));
            c[i].record["deleted"] = json!(value);
            prop_assert!(verify_chain(&c).is_err());
        }

        #[test]
        fn canonical_json_is_stable_under_reparsing(keys in proptest::collection::btree_map("[a-z]{1,6}", any::<i32>(), 0..8)) {
            let value = serde_json::to_value(&keys).unwrap();
            let text = canonical_json(&value);
            let again: Value = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(canonical_json(&again), text);
        }
    }
}
