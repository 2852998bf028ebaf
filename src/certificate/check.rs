//! Whether the evidence under a certificate holds: the whole chain checked
//! with [`verify`] (digests, links, positions, signatures with the keys
//! given, heads known from status), and each record shown on the page
//! checked on its own, so the page can say per record whose signature it
//! carries and whether it verified.

use crate::engine::evidence::{Expectations, Finding, KnownHead, PublicKey, SealedEvidence, verify};

use super::CertificateError;
use super::guard::Shown;

/// One thing wrong with the chain: a kind (a key of the text's `problems`
/// table) and the values its sentence names.
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    /// The kind, like `changed` or `missing`.
    pub kind: &'static str,
    /// Placeholder names and their values.
    pub args: Vec<(&'static str, Shown)>,
}

/// The signature of one record, as checked.
#[derive(Clone, Debug, PartialEq)]
pub enum Seal {
    /// Verified with a key given.
    Verified { key: Shown },
    /// No key was given; the record names the key that signed it, if any.
    NotChecked { key: Option<Shown> },
    /// The record fails on its own: changed, unsigned, another key, a bad
    /// signature.
    Failed(Vec<Problem>),
}

/// The verdict on the chain a certificate rests on.
#[derive(Clone, Debug, PartialEq)]
pub struct ChainVerdict {
    /// The chain's name.
    pub chain: Shown,
    /// Records in the chain.
    pub records: usize,
    /// Ids of the public keys given.
    pub keys: Vec<Shown>,
    /// What is wrong; empty for an intact chain.
    pub problems: Vec<Problem>,
}

impl ChainVerdict {
    /// Whether the chain verified.
    pub fn intact(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks the whole of `chain` (its records in stored order) from record 0.
pub fn chain(
    chain: &str,
    records: &[SealedEvidence],
    keys: &[PublicKey],
    known: &[KnownHead],
) -> Result<ChainVerdict, CertificateError> {
    let expect = Expectations { chain: chain.to_owned(), keys: keys.to_vec(), known: known.to_vec(), from_start: true };
    let problems = match verify(records, &expect) {
        Ok(_) => Vec::new(),
        Err(findings) => findings.iter().map(|f| problem(f, records, keys)).collect::<Result<_, _>>()?,
    };
    Ok(ChainVerdict {
        chain: Shown::checked("chain", chain)?,
        records: records.len(),
        keys: keys.iter().map(|k| Shown::digest("public key", &k.key_id())).collect::<Result<_, _>>()?,
        problems,
    })
}

/// Checks one record on its own: its digest, and its signature with `keys`.
pub fn seal(record: &SealedEvidence, keys: &[PublicKey]) -> Result<Seal, CertificateError> {
    let expect = Expectations { chain: record.chain.clone(), keys: keys.to_vec(), known: vec![], from_start: false };
    let key = record.signature.as_ref().map(|s| Shown::digest("signature.keyId", &s.key_id)).transpose()?;
    Ok(match verify(std::slice::from_ref(record), &expect) {
        Ok(summary) if summary.signatures_checked == 1 => {
            Seal::Verified { key: key.expect("a checked signature names its key") }
        }
        Ok(_) => Seal::NotChecked { key },
        Err(findings) => Seal::Failed(
            findings.iter().map(|f| problem(f, std::slice::from_ref(record), keys)).collect::<Result<_, _>>()?,
        ),
    })
}

fn problem(finding: &Finding, records: &[SealedEvidence], keys: &[PublicKey]) -> Result<Problem, CertificateError> {
    let n = |v: u64| Shown::number(v);
    let d = |field: &str, v: &crate::engine::evidence::Digest| Shown::digest(field, v.as_str());
    let none = || Shown::checked("", "-");
    let (kind, args) = match finding {
        Finding::UnknownFormat { line, format } => {
            ("unreadable", vec![("line", n(*line as u64)), ("format", n(u64::from(*format)))])
        }
        Finding::OtherChain { index, expected, found } => (
            "other-chain",
            vec![
                ("index", n(*index)),
                ("expected", Shown::checked("chain", expected)?),
                ("found", Shown::checked("chain", found)?),
            ],
        ),
        Finding::Changed { index, stored, computed } => (
            "changed",
            vec![("index", n(*index)), ("stored", d("digest", stored)?), ("computed", d("digest", computed)?)],
        ),
        Finding::NotSigned { index, .. } => {
            // The engine's sentence names the key in English; say it in the page's words.
            let signature = records.iter().find(|r| r.index == *index).and_then(|r| r.signature.as_ref());
            match signature {
                None => ("unsigned", vec![("index", n(*index))]),
                Some(s) => {
                    let key = Shown::digest("signature.keyId", &s.key_id)?;
                    let known = keys.iter().any(|k| k.key_id() == s.key_id);
                    (if known { "bad-signature" } else { "unknown-key" }, vec![("index", n(*index)), ("key", key)])
                }
            }
        }
        Finding::Reordered { index, after } => ("reordered", vec![("index", n(*index)), ("after", n(*after))]),
        Finding::Duplicate { index } => ("duplicate", vec![("index", n(*index))]),
        Finding::Missing { from, to } => ("missing", vec![("from", n(*from)), ("to", n(*to))]),
        Finding::BrokenLink { index, expected, .. } => (
            "broken-link",
            vec![("index", n(*index)), ("expected", expected.as_ref().map_or_else(none, |e| d("digest", e))?)],
        ),
        Finding::Truncated { last, source_name, digest, .. } => (
            "truncated",
            vec![
                ("last", Shown::number(*last)),
                ("source", Shown::checked("known head", source_name)?),
                ("digest", d("digest", digest)?),
            ],
        ),
        Finding::Differs { index, source_name, theirs } => (
            "differs",
            vec![
                ("index", n(*index)),
                ("source", Shown::checked("known head", source_name)?),
                ("digest", d("digest", theirs)?),
            ],
        ),
    };
    Ok(Problem { kind, args })
}
