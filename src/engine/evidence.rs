//! Evidence: records of what the operator did, sealed into chains.
//!
//! Each sealed record carries its chain's name, its position in the chain,
//! the digest of the record before it and its own digest: SHA-256 over the
//! RFC 8785 canonical JSON of all of these. The operator signs every
//! digest it appends with its Ed25519 key, so each record was, when
//! written, a signed head of its chain. Checking a chain tells apart a
//! record changed in place, records rewritten and resealed by someone
//! without the key, records put out of order, and records missing from the
//! middle or the end (see [`verify`]).
//!
//! Identities appear in evidence only as keyed digests ([`SubjectDigester`]),
//! which carry the id of the installation key that made them, so keys can
//! be rotated and old digests still matched.

use std::collections::BTreeSet;
use std::fmt;

use base64::Engine as _;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePublicKey, spki::der::pem::LineEnding};
use ed25519_dalek::{Signer as _, SigningKey, Verifier as _, VerifyingKey};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

use crate::api::IdentityName;

/// The format of sealed records this version writes and reads.
pub const FORMAT: u32 = 2;

/// What a signature signs: this prefix, then the record's digest.
const SIGNED_PREFIX: &str = "delenda.dev/evidence/v2\n";

/// A SHA-256 digest written as `sha256:<64 hex digits>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
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

    /// The 64 hex digits, without the `sha256:` prefix.
    pub fn hex(&self) -> &str {
        self.0.strip_prefix("sha256:").unwrap_or(&self.0)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for Digest {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let hex = s.strip_prefix("sha256:").ok_or_else(|| format!("{s:?} is not a digest: it starts with sha256:"))?;
        if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(format!("{s:?} is not a digest: sha256: then 64 lowercase hex digits"));
        }
        Ok(Self(s.to_owned()))
    }
}

/// The operator's signature over one record's digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EvidenceSignature {
    /// Which key signed: `ed25519:` and 16 hex digits of the SHA-256 of the
    /// public key.
    pub key_id: String,
    /// The Ed25519 signature over `delenda.dev/evidence/v2\n` and the
    /// digest, in base64.
    pub value: String,
}

/// One sealed record of a chain.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SealedEvidence {
    /// The record format ([`FORMAT`]).
    #[serde(default = "format_one")]
    pub format: u32,
    /// The chain the record belongs to, like `policy/contact-persons` or
    /// `erasures`.
    #[serde(default)]
    pub chain: String,
    /// Its position in the chain, from 0, across segments.
    #[serde(default)]
    pub index: u64,
    /// What happened, as JSON.
    pub record: Value,
    /// The digest of the record before, or none for the first of a chain.
    pub previous_digest: Option<Digest>,
    /// SHA-256 over the RFC 8785 canonical JSON of
    /// `{chain, format, index, previousDigest, record}`.
    pub digest: Digest,
    /// The operator's signature over the digest, when it had a signing key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<EvidenceSignature>,
}

fn format_one() -> u32 {
    1
}

impl SealedEvidence {
    /// Where the next record of this chain goes.
    pub fn head(&self) -> Head {
        Head { index: self.index, digest: self.digest.clone() }
    }
}

/// The last record of a chain: its position and digest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    /// Position.
    pub index: u64,
    /// Digest.
    pub digest: Digest,
}

/// RFC 8785 (JSON Canonicalization Scheme) text of a value: keys sorted by
/// their UTF-16 code units, numbers in ECMAScript form, no white space. Any
/// JCS implementation gives the same bytes.
pub fn canonical_json(value: &Value) -> String {
    serde_json_canonicalizer::to_string(value).expect("a serde_json value always canonicalizes")
}

fn digest_of(format: u32, chain: &str, index: u64, previous: Option<&Digest>, record: &Value) -> Digest {
    let envelope = serde_json::json!({
        "chain": chain, "format": format, "index": index, "previousDigest": previous, "record": record,
    });
    Digest::of(canonical_json(&envelope).as_bytes())
}

/// The operator's Ed25519 signing key.
#[derive(Clone)]
pub struct Signer {
    key: SigningKey,
    key_id: String,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signer {{ key_id: {} }}", self.key_id)
    }
}

/// A key that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Not an Ed25519 private key in PKCS#8 PEM.
    #[error(
        "the signing key is not an Ed25519 private key in PKCS#8 PEM (make one with `openssl genpkey -algorithm ed25519`): {0}"
    )]
    Private(String),
    /// Not an Ed25519 public key in PEM.
    #[error(
        "the public key is not an Ed25519 public key in PEM (`delenda evidence public-key` or `openssl pkey -pubout` gives one): {0}"
    )]
    Public(String),
}

/// The id of a public key: `ed25519:` and the first 16 hex digits of the
/// SHA-256 of its 32 bytes.
pub fn key_id(key: &VerifyingKey) -> String {
    format!("ed25519:{}", &hex::encode(Sha256::digest(key.as_bytes()))[..16])
}

impl Signer {
    /// A signer from an Ed25519 private key in PKCS#8 PEM.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let key = SigningKey::from_pkcs8_pem(pem.trim()).map_err(|e| KeyError::Private(e.to_string()))?;
        let key_id = key_id(&key.verifying_key());
        Ok(Self { key, key_id })
    }

    /// The id of the key.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// The public key, in PEM, for `delenda evidence verify --public-key`.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.key.verifying_key())
    }

    fn sign(&self, digest: &Digest) -> EvidenceSignature {
        let signature = self.key.sign(format!("{SIGNED_PREFIX}{digest}").as_bytes());
        EvidenceSignature {
            key_id: self.key_id.clone(),
            value: base64::engine::general_purpose::STANDARD.encode(signature.to_bytes()),
        }
    }
}

/// An Ed25519 public key that checks the operator's signatures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// A key from PEM (`-----BEGIN PUBLIC KEY-----`).
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        VerifyingKey::from_public_key_pem(pem.trim()).map(Self).map_err(|e| KeyError::Public(e.to_string()))
    }

    /// The key in PEM.
    pub fn to_pem(&self) -> String {
        self.0.to_public_key_pem(LineEnding::LF).expect("an Ed25519 key encodes")
    }

    /// The key's id.
    pub fn key_id(&self) -> String {
        key_id(&self.0)
    }

    fn verifies(&self, digest: &Digest, signature: &EvidenceSignature) -> bool {
        let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(&signature.value) else {
            return false;
        };
        let Ok(signature) = ed25519_dalek::Signature::from_slice(&bytes) else {
            return false;
        };
        self.0.verify(format!("{SIGNED_PREFIX}{digest}").as_bytes(), &signature).is_ok()
    }
}

/// Seals `record` as the next record of `chain` after `head` (none for the
/// first record), signed when there is a signer.
pub fn seal(chain: &str, head: Option<&Head>, record: Value, signer: Option<&Signer>) -> SealedEvidence {
    let index = head.map_or(0, |h| h.index + 1);
    let previous = head.map(|h| h.digest.clone());
    let digest = digest_of(FORMAT, chain, index, previous.as_ref(), &record);
    let signature = signer.map(|s| s.sign(&digest));
    SealedEvidence {
        format: FORMAT,
        chain: chain.to_owned(),
        index,
        record,
        previous_digest: previous,
        digest,
        signature,
    }
}

/// Something wrong with a chain, and what it means.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Finding {
    /// A record in a format this version does not read.
    #[error("record at line {line} is in evidence format {format}; this version reads format {FORMAT}")]
    UnknownFormat { line: usize, format: u32 },
    /// A record of another chain.
    #[error("record {index} belongs to chain {found:?}, not {expected:?}: spliced in from another chain")]
    OtherChain { index: u64, expected: String, found: String },
    /// The content no longer gives the stored digest: changed in place.
    #[error("record {index} was changed in place: its digest is {stored} but its content gives {computed}")]
    Changed { index: u64, stored: Digest, computed: Digest },
    /// The digest fits the content but the operator's key did not sign it:
    /// rewritten and resealed by someone without the key (or unsigned).
    #[error("record {index} is not signed by the operator's key ({why}): rewritten and resealed without the key")]
    NotSigned { index: u64, why: String },
    /// Records in another order than their positions.
    #[error("the records are out of order: record {index} comes after record {after}")]
    Reordered { index: u64, after: u64 },
    /// Two records claim one position.
    #[error("two records claim position {index}")]
    Duplicate { index: u64 },
    /// Positions missing between two records, or at the start.
    #[error("records {from} to {to} are missing")]
    Missing { from: u64, to: u64 },
    /// A record does not name the one before it.
    #[error("record {index} names {found:?} as the record before it, but record {} has digest {expected:?}", index.saturating_sub(1))]
    BrokenLink { index: u64, expected: Option<Digest>, found: Option<Digest> },
    /// The chain ends before a head known from elsewhere (a status, the
    /// locked sink): its newest records were removed.
    #[error("the chain ends at record {last} but {source_name} knows {digest}{}: truncated", match index { Some(i) => format!(" at position {i}"), None => String::new() })]
    Truncated { last: i64, source_name: String, digest: Digest, index: Option<u64> },
    /// A copy of a record differs from the same position elsewhere.
    #[error("record {index} differs from {source_name}'s copy ({theirs}): rewritten in one of them")]
    Differs { index: u64, source_name: String, theirs: Digest },
}

impl Finding {
    /// One word for what happened, for people and scripts.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::UnknownFormat { .. } => "unreadable",
            Self::OtherChain { .. } | Self::Changed { .. } | Self::NotSigned { .. } | Self::Differs { .. } => {
                "rewritten"
            }
            Self::BrokenLink { .. } => "rewritten",
            Self::Reordered { .. } | Self::Duplicate { .. } => "reordered",
            Self::Missing { .. } => "records missing",
            Self::Truncated { .. } => "truncated",
        }
    }
}

/// A head known from somewhere other than the chain itself: a digest in a
/// resource's status, or the last record of the locked sink.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KnownHead {
    /// Where it is known from, like `RetentionPolicy contact-persons status`.
    pub source: String,
    /// The digest.
    pub digest: Digest,
    /// Its position, when known.
    pub index: Option<u64>,
}

/// What to check a chain against.
#[derive(Clone, Debug, Default)]
pub struct Expectations {
    /// The chain's name; taken from the first record when empty.
    pub chain: String,
    /// Public keys whose signatures count; with none, signatures are not
    /// checked (and rewriting with new digests cannot be told apart).
    pub keys: Vec<PublicKey>,
    /// Digests known from elsewhere that must be in the chain.
    pub known: Vec<KnownHead>,
    /// Whether the chain must start at position 0 (all segments given).
    pub from_start: bool,
}

/// What a good chain holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainSummary {
    /// The chain's name.
    pub chain: String,
    /// Records checked.
    pub records: usize,
    /// The first position.
    pub first: Option<u64>,
    /// The last record.
    pub head: Option<Head>,
    /// Keys that signed, by id.
    pub signed_by: BTreeSet<String>,
    /// Records with signatures checked against a given key.
    pub signatures_checked: usize,
}

/// Checks a chain: every digest, every signature (with `keys`), every
/// position and link, and that every known head is in it. Returns what a
/// good chain holds, or every finding.
pub fn verify(records: &[SealedEvidence], expect: &Expectations) -> Result<ChainSummary, Vec<Finding>> {
    let mut findings = Vec::new();
    let chain = if expect.chain.is_empty() {
        records.first().map(|r| r.chain.clone()).unwrap_or_default()
    } else {
        expect.chain.clone()
    };
    let mut signed_by = BTreeSet::new();
    let mut checked = 0;
    for (line, r) in records.iter().enumerate() {
        if r.format != FORMAT {
            findings.push(Finding::UnknownFormat { line: line + 1, format: r.format });
            continue;
        }
        if r.chain != chain {
            findings.push(Finding::OtherChain { index: r.index, expected: chain.clone(), found: r.chain.clone() });
        }
        let computed = digest_of(r.format, &r.chain, r.index, r.previous_digest.as_ref(), &r.record);
        if computed != r.digest {
            findings.push(Finding::Changed { index: r.index, stored: r.digest.clone(), computed });
            continue;
        }
        if let Some(s) = &r.signature {
            signed_by.insert(s.key_id.clone());
        }
        if !expect.keys.is_empty() {
            let why = match &r.signature {
                None => Some("it carries no signature".to_owned()),
                Some(s) => match expect.keys.iter().find(|k| k.key_id() == s.key_id) {
                    None => Some(format!("signed by {}, which is none of the keys given", s.key_id)),
                    Some(k) if !k.verifies(&r.digest, s) => {
                        Some(format!("the signature of {} does not verify", s.key_id))
                    }
                    Some(_) => None,
                },
            };
            match why {
                Some(why) => findings.push(Finding::NotSigned { index: r.index, why }),
                None => checked += 1,
            }
        }
    }
    if findings.iter().any(|f| matches!(f, Finding::UnknownFormat { .. })) {
        return Err(findings);
    }
    // Order: each position once, ascending.
    for pair in records.windows(2) {
        if pair[1].index < pair[0].index {
            findings.push(Finding::Reordered { index: pair[1].index, after: pair[0].index });
        } else if pair[1].index == pair[0].index {
            findings.push(Finding::Duplicate { index: pair[1].index });
        }
    }
    let mut sorted: Vec<&SealedEvidence> = records.iter().collect();
    sorted.sort_by_key(|r| r.index);
    sorted.dedup_by_key(|r| r.index);
    if let Some(first) = sorted.first() {
        if expect.from_start && first.index > 0 {
            findings.push(Finding::Missing { from: 0, to: first.index - 1 });
        }
        if first.index == 0 && first.previous_digest.is_some() {
            findings.push(Finding::BrokenLink { index: 0, expected: None, found: first.previous_digest.clone() });
        }
    }
    for pair in sorted.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if b.index > a.index + 1 {
            findings.push(Finding::Missing { from: a.index + 1, to: b.index - 1 });
        } else if b.previous_digest.as_ref() != Some(&a.digest) {
            findings.push(Finding::BrokenLink {
                index: b.index,
                expected: Some(a.digest.clone()),
                found: b.previous_digest.clone(),
            });
        }
    }
    let last = sorted.last().map_or(-1, |r| r.index as i64);
    for known in &expect.known {
        let found = sorted.iter().find(|r| r.digest == known.digest);
        match (found, known.index) {
            (Some(r), Some(i)) if r.index != i => findings.push(Finding::Differs {
                index: i,
                source_name: known.source.clone(),
                theirs: known.digest.clone(),
            }),
            (Some(_), _) => {}
            (None, Some(i)) if (i as i64) > last => findings.push(Finding::Truncated {
                last,
                source_name: known.source.clone(),
                digest: known.digest.clone(),
                index: Some(i),
            }),
            (None, Some(i)) if sorted.iter().any(|r| r.index == i) => findings.push(Finding::Differs {
                index: i,
                source_name: known.source.clone(),
                theirs: known.digest.clone(),
            }),
            (None, _) => findings.push(Finding::Truncated {
                last,
                source_name: known.source.clone(),
                digest: known.digest.clone(),
                index: known.index,
            }),
        }
    }
    if !findings.is_empty() {
        return Err(findings);
    }
    Ok(ChainSummary {
        chain,
        records: records.len(),
        first: sorted.first().map(|r| r.index),
        head: sorted.last().map(|r| r.head()),
        signed_by,
        signatures_checked: checked,
    })
}

/// Keyed digests of identities (HMAC-SHA-256 with the installation key):
/// equal identities give equal digests under one key, and without the key a
/// digest says nothing about the identity. Each digest names the key that
/// made it (`hmac-sha256:<key id>:<hex>`), so after a key is rotated old
/// digests are still matched with the old key.
#[derive(Clone)]
pub struct SubjectDigester {
    key: Vec<u8>,
    key_id: String,
}

impl fmt::Debug for SubjectDigester {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SubjectDigester {{ key_id: {}, key: <redacted> }}", self.key_id)
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
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length");
        mac.update(b"delenda.dev/installation-key-id");
        let key_id = hex::encode(&mac.finalize().into_bytes()[..4]);
        Ok(Self { key: key.to_vec(), key_id })
    }

    /// The digester of one namespace: its key is derived from the
    /// installation key and the namespace's name, so digests of one
    /// namespace say nothing about another's.
    pub fn for_namespace(&self, namespace: &str) -> Self {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(b"delenda.dev/namespace\0");
        mac.update(namespace.as_bytes());
        Self::new(&mac.finalize().into_bytes()).expect("a derived key has 32 bytes")
    }

    /// The key's id: 8 hex digits, derived from the key, saying nothing
    /// about it.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// `hmac-sha256:<key id>:<hex>` of one identity of the given kind. The
    /// value is normalised as the stores match it (an e-mail in lower
    /// case, a phone as its digits, an IP address in canonical form; other
    /// kinds as given, without surrounding white space), so the digest of
    /// `Jan@Example.nl` is that of `jan@example.nl`. The kind is part of
    /// the input, so the same text as an e-mail and as a customer id gives
    /// different digests.
    pub fn digest(&self, kind: &str, value: &str) -> String {
        let normalised = kind
            .parse::<IdentityName>()
            .ok()
            .and_then(|name| crate::stores::identity::Identity::new(&name, value).ok())
            .map_or_else(|| value.trim().to_owned(), |i| i.normalised().trim().to_owned());
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(kind.as_bytes());
        mac.update(b"\0");
        mac.update(normalised.as_bytes());
        format!("hmac-sha256:{}:{}", self.key_id, hex::encode(mac.finalize().into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    const PEM: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIHs4A147bDdEbdJcu8xrAlifUVZkh8ciIErIDVAq0yQf\n-----END PRIVATE KEY-----\n";

    fn signer() -> Signer {
        Signer::from_pem(PEM).unwrap()
    }

    fn chain(n: usize, signer: Option<&Signer>) -> Vec<SealedEvidence> {
        let mut out: Vec<SealedEvidence> = Vec::new();
        for i in 0..n {
            let head = out.last().map(SealedEvidence::head);
            let record = json!({"run": i, "deleted": i * 10, "cutoff": "2026-05-28T00:30:00Z"});
            out.push(seal("policy/p", head.as_ref(), record, signer));
        }
        out
    }

    fn signed() -> Expectations {
        Expectations { keys: vec![signer().public_key()], from_start: true, ..Expectations::default() }
    }

    fn kinds(findings: &[Finding]) -> Vec<&'static str> {
        findings.iter().map(Finding::kind).collect()
    }

    #[test]
    fn canonical_json_follows_rfc_8785() {
        // Keys by UTF-16 code units, numbers in ECMAScript form (RFC 8785 §3.2.2.3 and appendix B).
        // U+1F600 is D83D DE00 in UTF-16, below U+FB01; in UTF-8 it sorts after.
        let a = json!({"b": 1, "a": {"d": [3, {"z": 1, "y": 2}], "c": "x"}, "\u{fb01}": 1, "\u{1f600}": 2});
        assert_eq!(
            canonical_json(&a),
            "{\"a\":{\"c\":\"x\",\"d\":[3,{\"y\":2,\"z\":1}]},\"b\":1,\"\u{1f600}\":2,\"\u{fb01}\":1}"
        );
        let numbers: Value = serde_json::from_str("[1.0, 1e21, 1e-7, 0.000001, -0.0, 333333333.33333329]").unwrap();
        assert_eq!(canonical_json(&numbers), "[1,1e+21,1e-7,0.000001,0,333333333.3333333]");
    }

    #[test]
    fn a_signed_chain_verifies_with_its_key() {
        let s = signer();
        let c = chain(5, Some(&s));
        let summary = verify(&c, &signed()).unwrap();
        assert_eq!((summary.records, summary.signatures_checked), (5, 5));
        assert_eq!(summary.head, Some(Head { index: 4, digest: c[4].digest.clone() }));
        assert_eq!(summary.signed_by, BTreeSet::from([s.key_id().to_owned()]));
        assert!(c[0].digest.as_str().starts_with("sha256:") && c[0].digest.as_str().len() == 7 + 64);
        assert!(s.key_id().starts_with("ed25519:") && s.key_id().len() == 8 + 16);
    }

    #[test]
    fn a_record_changed_in_place_is_told_apart() {
        let mut c = chain(4, Some(&signer()));
        c[2].record["deleted"] = json!(0);
        let findings = verify(&c, &signed()).unwrap_err();
        assert!(matches!(findings[0], Finding::Changed { index: 2, .. }), "{findings:?}");
        assert_eq!(kinds(&findings)[0], "rewritten");
    }

    #[test]
    fn a_chain_rewritten_and_resealed_without_the_key_is_told_apart() {
        let c = chain(4, Some(&signer()));
        // Someone who can write the ConfigMap reseals from record 2 on, consistently.
        let mut forged: Vec<SealedEvidence> = c[..2].to_vec();
        for original in &c[2..4] {
            let mut record = original.record.clone();
            record["deleted"] = json!(0);
            let head = forged.last().map(SealedEvidence::head);
            forged.push(seal("policy/p", head.as_ref(), record, None));
        }
        let unsigned = Expectations { from_start: true, ..Expectations::default() };
        assert!(verify(&forged, &unsigned).is_ok(), "without the key a consistent rewrite cannot be seen");
        let findings = verify(&forged, &signed()).unwrap_err();
        assert_eq!(findings.len(), 2, "{findings:?}");
        assert!(findings.iter().all(|f| matches!(f, Finding::NotSigned { .. })), "{findings:?}");
        // Signed with another key: still not the operator's.
        let other = Signer::from_pem(
            "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIL1/xQlbihG1DBFMmg+osmNH877FtU69TBErKbGue/t+\n-----END PRIVATE KEY-----\n",
        )
        .unwrap();
        let resigned = chain(3, Some(&other));
        let findings = verify(&resigned, &signed()).unwrap_err();
        assert!(findings[0].to_string().contains("none of the keys given"), "{findings:?}");
    }

    #[test]
    fn reordered_records_are_told_apart() {
        let mut c = chain(4, Some(&signer()));
        c.swap(1, 2);
        let findings = verify(&c, &signed()).unwrap_err();
        assert_eq!(kinds(&findings), ["reordered"], "{findings:?}");
    }

    #[test]
    fn records_missing_from_the_middle_or_start_are_told_apart() {
        let mut c = chain(5, Some(&signer()));
        c.remove(2);
        let findings = verify(&c, &signed()).unwrap_err();
        assert_eq!(findings, [Finding::Missing { from: 2, to: 2 }]);
        let c = chain(5, Some(&signer()));
        let findings = verify(&c[2..], &signed()).unwrap_err();
        assert_eq!(findings, [Finding::Missing { from: 0, to: 1 }], "a chain must begin at record 0");
        // A segment checked on its own may begin later.
        let later = Expectations { from_start: false, ..signed() };
        assert!(verify(&c[2..], &later).is_ok());
    }

    #[test]
    fn a_truncated_chain_is_told_apart_by_a_head_known_elsewhere() {
        let c = chain(5, Some(&signer()));
        let known = KnownHead { source: "RetentionPolicy p status".into(), digest: c[4].digest.clone(), index: None };
        let expect = Expectations { known: vec![known.clone()], ..signed() };
        assert!(verify(&c, &expect).is_ok());
        let findings = verify(&c[..3], &expect).unwrap_err();
        assert_eq!(kinds(&findings), ["truncated"], "{findings:?}");
        assert!(findings[0].to_string().contains("ends at record 2"), "{}", findings[0]);
        // Without the outside head, a cut at the end looks like a shorter chain.
        assert!(verify(&c[..3], &signed()).is_ok());
    }

    #[test]
    fn a_record_from_another_chain_is_told_apart() {
        let mut c = chain(3, Some(&signer()));
        let other = seal("erasures", Some(&c[1].head()), json!({"x": 1}), Some(&signer()));
        c[2] = other;
        let findings = verify(&c, &signed()).unwrap_err();
        assert!(findings.iter().any(|f| matches!(f, Finding::OtherChain { .. })), "{findings:?}");
    }

    #[test]
    fn a_first_record_that_claims_a_predecessor_is_refused() {
        let c = chain(3, Some(&signer()));
        let mut forged = seal("policy/p", Some(&c[0].head()), json!({}), None);
        forged.index = 0;
        forged.digest = digest_of(FORMAT, "policy/p", 0, forged.previous_digest.as_ref(), &forged.record);
        let findings = verify(&[forged], &Expectations::default()).unwrap_err();
        assert!(matches!(findings[0], Finding::BrokenLink { index: 0, .. }), "{findings:?}");
    }

    #[test]
    fn records_of_an_older_format_are_named_not_misread() {
        let line = r#"{"record":{"a":1},"previousDigest":null,"digest":"sha256:00"}"#;
        let old: SealedEvidence = serde_json::from_str(line).unwrap();
        let findings = verify(&[old], &Expectations::default()).unwrap_err();
        assert_eq!(findings, [Finding::UnknownFormat { line: 1, format: 1 }]);
    }

    #[test]
    fn keys_round_trip_through_pem() {
        let s = signer();
        let pem = s.public_key().to_pem();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----"));
        assert_eq!(PublicKey::from_pem(&pem).unwrap().key_id(), s.key_id());
        assert!(matches!(Signer::from_pem("not a key"), Err(KeyError::Private(_))));
        assert!(matches!(PublicKey::from_pem(PEM), Err(KeyError::Public(_))));
        assert!(!format!("{s:?}").contains("MC4C"));
    }

    #[test]
    fn subject_digests_are_keyed_normalised_kind_specific_and_name_their_key() {
        let a = SubjectDigester::new(&[7u8; 32]).unwrap();
        let b = SubjectDigester::new(&[8u8; 32]).unwrap();
        let email = "jan.jansen@example.nl";
        assert_eq!(a.digest("email", email), a.digest("email", " Jan.Jansen@Example.NL "));
        assert_eq!(a.digest("phone", "+31 6 1234 5678"), a.digest("phone", "+31-6-12345678"));
        assert_ne!(a.digest("email", email), b.digest("email", email));
        assert_ne!(a.digest("email", "42"), a.digest("customerId", "42"));
        assert_eq!(a.digest("customerId", " 42 "), a.digest("customerId", "42"));
        assert!(!a.digest("email", email).contains("jansen"));
        let digest = a.digest("email", email);
        let parts: Vec<&str> = digest.splitn(3, ':').collect();
        assert_eq!((parts[0], parts[1], parts[2].len()), ("hmac-sha256", a.key_id(), 64));
        assert_ne!(a.key_id(), b.key_id());
        assert!(!format!("{a:?}").contains('7') || !format!("{a:?}").contains("[7"));
    }

    #[test]
    fn digests_of_one_namespace_say_nothing_about_another() {
        let key = SubjectDigester::new(&[7u8; 32]).unwrap();
        let (a, b) = (key.for_namespace("shop"), key.for_namespace("billing"));
        assert_ne!(a.digest("email", "jan@example.nl"), b.digest("email", "jan@example.nl"));
        assert_eq!(a.digest("email", "jan@example.nl"), key.for_namespace("shop").digest("email", "jan@example.nl"));
        assert_ne!(a.key_id(), b.key_id());
        assert_ne!(a.digest("email", "jan@example.nl"), key.digest("email", "jan@example.nl"));
    }

    #[test]
    fn a_short_key_is_refused() {
        assert_eq!(SubjectDigester::new(b"short").unwrap_err(), KeyTooShort(5));
    }

    proptest! {
        #[test]
        fn any_single_change_to_any_record_is_detected(n in 2usize..8, which in 0usize..8, value in any::<i64>()) {
            let mut c = chain(n, Some(&signer()));
            let i = which % n;
            prop_assume!(c[i].record["deleted"] != json!(value));
            c[i].record["deleted"] = json!(value);
            prop_assert!(verify(&c, &signed()).is_err());
        }

        #[test]
        fn any_resealed_change_is_detected_with_the_key(n in 2usize..8, which in 0usize..8, value in any::<i64>()) {
            let c = chain(n, Some(&signer()));
            let i = which % n;
            prop_assume!(c[i].record["deleted"] != json!(value));
            let mut forged: Vec<SealedEvidence> = c[..i].to_vec();
            for (j, original) in c.iter().enumerate().skip(i) {
                let mut record = original.record.clone();
                if j == i {
                    record["deleted"] = json!(value);
                }
                let head = forged.last().map(SealedEvidence::head);
                forged.push(seal("policy/p", head.as_ref(), record, None));
            }
            prop_assert!(verify(&forged, &signed()).is_err());
        }

        #[test]
        fn canonical_json_is_stable_under_reparsing(keys in proptest::collection::btree_map("\\PC{1,6}", any::<f64>(), 0..8)) {
            let value = serde_json::to_value(&keys).unwrap();
            let text = canonical_json(&value);
            let again: Value = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(canonical_json(&again), text);
        }
    }
}
