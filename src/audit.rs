//! Checking evidence the way an auditor does: every chain of a namespace
//! read from its ConfigMap segments, checked against the operator's public
//! key, against the digests the resources' status names, and against the
//! locked copy in the evidence sink; or chains from files.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};

use crate::api::{ErasureRequest, RetentionPolicy};
use crate::controller::evidence::{self as store, ERASURE_CHAIN, policy_chain};
use crate::engine::evidence::{ChainSummary, Expectations, Finding, KnownHead, PublicKey, SealedEvidence, verify};
use crate::engine::sink::EvidenceSink;

/// The verdict on one chain.
#[derive(Debug)]
pub struct Verdict {
    /// The chain.
    pub chain: String,
    /// Where its records were read from.
    pub source: String,
    /// Good, or what is wrong.
    pub result: Result<ChainSummary, Vec<Finding>>,
    /// Notes for the reader: what could not be checked.
    pub notes: Vec<String>,
}

impl Verdict {
    /// Whether the chain is intact.
    pub fn ok(&self) -> bool {
        self.result.is_ok()
    }
}

/// Why a check could not be made at all.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// A file could not be read.
    #[error("cannot read {path}: {detail}")]
    File { path: String, detail: String },
    /// A line is not a sealed record.
    #[error("{path}, line {line}: not a sealed evidence record: {detail}")]
    Line { path: String, line: usize, detail: String },
    /// The cluster could not be read.
    #[error("cannot read the evidence from the cluster: {0}")]
    Cluster(String),
    /// The sink could not be read.
    #[error("cannot read the evidence sink: {0}")]
    Sink(String),
    /// Nothing to check.
    #[error("no sealed records in {0}")]
    Empty(String),
}

/// Reads sealed records from files of JSON lines, in the order given.
pub fn read_files(paths: &[&Path]) -> Result<Vec<SealedEvidence>, AuditError> {
    let mut out = Vec::new();
    for path in paths {
        let shown = path.display().to_string();
        let text = if path.as_os_str() == "-" {
            std::io::read_to_string(std::io::stdin())
        } else {
            std::fs::read_to_string(path)
        }
        .map_err(|e| AuditError::File { path: shown.clone(), detail: e.to_string() })?;
        for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let sealed = serde_json::from_str(line).map_err(|e| AuditError::Line {
                path: shown.clone(),
                line: n + 1,
                detail: e.to_string(),
            })?;
            out.push(sealed);
        }
    }
    Ok(out)
}

/// Checks records read from files. `partial` accepts a chain that starts
/// after record 0 (one segment on its own).
pub fn verify_files(paths: &[&Path], keys: &[PublicKey], partial: bool) -> Result<Verdict, AuditError> {
    let records = read_files(paths)?;
    if records.is_empty() {
        return Err(AuditError::Empty(paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")));
    }
    let expect = Expectations { keys: keys.to_vec(), from_start: !partial, ..Expectations::default() };
    let mut notes = Vec::new();
    if keys.is_empty() {
        notes.push(unsigned_note());
    }
    Ok(Verdict {
        chain: records.first().map(|r| r.chain.clone()).unwrap_or_default(),
        source: paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "),
        result: verify(&records, &expect),
        notes,
    })
}

fn unsigned_note() -> String {
    "no --public-key given: signatures not checked, so records rewritten with new digests cannot be told from the operator's"
        .to_owned()
}

/// The digests the status of the namespace's resources names, by chain:
/// heads the chain must hold.
pub async fn known_heads(client: &Client, namespace: &str) -> Result<BTreeMap<String, Vec<KnownHead>>, AuditError> {
    let cluster = |e: kube::Error| AuditError::Cluster(e.to_string());
    let mut known: BTreeMap<String, Vec<KnownHead>> = BTreeMap::new();
    let policies: Api<RetentionPolicy> = Api::namespaced(client.clone(), namespace);
    for p in policies.list(&ListParams::default()).await.map_err(cluster)? {
        let Some(status) = &p.status else { continue };
        let chain = policy_chain(&p.name_any());
        for run in &status.history {
            if let Some(digest) = run.digest.as_deref().and_then(|d| d.parse().ok()) {
                let source = format!("the status of RetentionPolicy {} (run {})", p.name_any(), run.id);
                known.entry(chain.clone()).or_default().push(KnownHead { source, digest, index: None });
            }
        }
    }
    use crate::controller::evidence::{ACCESS_CHAIN, HOLD_CHAIN};
    let erasures: Api<ErasureRequest> = Api::namespaced(client.clone(), namespace);
    let erasures = erasures.list(&ListParams::default()).await.map_err(cluster)?;
    let holds: Api<crate::api::Hold> = Api::namespaced(client.clone(), namespace);
    let holds = holds.list(&ListParams::default()).await.map_err(cluster)?;
    let accesses: Api<crate::api::AccessRequest> = Api::namespaced(client.clone(), namespace);
    let accesses = accesses.list(&ListParams::default()).await.map_err(cluster)?;
    // Each kind's last evidence digest in status, on the kind's chain.
    let heads = erasures
        .iter()
        .map(|r| {
            (ERASURE_CHAIN, "ErasureRequest", r.name_any(), r.status.as_ref().and_then(|s| s.evidence_digest.clone()))
        })
        .chain(
            holds
                .iter()
                .map(|h| (HOLD_CHAIN, "Hold", h.name_any(), h.status.as_ref().and_then(|s| s.evidence_digest.clone()))),
        )
        .chain(accesses.iter().map(|a| {
            (ACCESS_CHAIN, "AccessRequest", a.name_any(), a.status.as_ref().and_then(|s| s.evidence_digest.clone()))
        }));
    for (chain, kind, name, digest) in heads {
        if let Some(digest) = digest.as_deref().and_then(|d| d.parse().ok()) {
            let source = format!("the status of {kind} {name}");
            known.entry(chain.to_owned()).or_default().push(KnownHead { source, digest, index: None });
        }
    }
    Ok(known)
}

/// Checks every chain of `namespace` (or only `only`): the cluster's
/// segments against the public keys, the digests in status, and, with a
/// sink, the locked copy, which is itself checked too.
pub async fn verify_namespace(
    client: &Client,
    namespace: &str,
    only: Option<&str>,
    keys: &[PublicKey],
    sink: Option<&EvidenceSink>,
) -> Result<Vec<Verdict>, AuditError> {
    let cluster = |e: store::EvidenceError| AuditError::Cluster(e.to_string());
    let sink_error = |e: crate::engine::sink::SinkError| AuditError::Sink(e.to_string());
    let mut chains = store::chains(client, namespace).await.map_err(cluster)?;
    if let Some(sink) = sink {
        chains.extend(sink.chains(namespace).await.map_err(sink_error)?);
    }
    chains.sort();
    chains.dedup();
    chains.retain(|c| only.is_none_or(|o| o == c));
    if let Some(o) = only
        && chains.is_empty()
    {
        chains.push(o.to_owned());
    }
    let known = known_heads(client, namespace).await?;
    let mut verdicts = Vec::new();
    for chain in chains {
        let records = store::read_chain(client, namespace, &chain).await.map_err(cluster)?;
        let mut expect = Expectations {
            chain: chain.clone(),
            keys: keys.to_vec(),
            known: known.get(&chain).cloned().unwrap_or_default(),
            from_start: true,
        };
        let mut notes = Vec::new();
        if keys.is_empty() {
            notes.push(unsigned_note());
        }
        let mut extra = Vec::new();
        if let Some(sink) = sink {
            let locked = sink.read_chain(namespace, &chain).await.map_err(sink_error)?;
            // The locked copy on its own first.
            let own = Expectations { chain: chain.clone(), keys: keys.to_vec(), known: vec![], from_start: true };
            verdicts.push(Verdict {
                chain: chain.clone(),
                source: format!("evidence sink bucket {}", sink.bucket()),
                result: verify(&locked, &own),
                notes: notes.clone(),
            });
            // Then the cluster's copy against it, record by record.
            let by_index: BTreeMap<u64, &SealedEvidence> = records.iter().map(|r| (r.index, r)).collect();
            for l in &locked {
                match by_index.get(&l.index) {
                    Some(r) if r.digest != l.digest => extra.push(Finding::Differs {
                        index: l.index,
                        source_name: "the locked sink".into(),
                        theirs: l.digest.clone(),
                    }),
                    _ => {}
                }
            }
            if let Some(head) = locked.last() {
                expect.known.push(KnownHead {
                    source: "the locked sink".into(),
                    digest: head.digest.clone(),
                    index: Some(head.index),
                });
            }
            let behind = records.iter().filter(|r| !locked.iter().any(|l| l.index == r.index)).count();
            if behind > 0 {
                notes.push(format!("{behind} records of the cluster's copy are not yet in the sink"));
            }
        }
        let mut result = verify(&records, &expect);
        if !extra.is_empty() {
            result = Err(match result {
                Ok(_) => extra,
                Err(mut findings) => {
                    findings.extend(extra);
                    findings
                }
            });
        }
        verdicts.push(Verdict { chain: chain.clone(), source: format!("namespace {namespace}"), result, notes });
    }
    Ok(verdicts)
}

/// The verdicts for people: one paragraph per chain.
pub fn render(verdicts: &[Verdict]) -> String {
    let mut out = String::new();
    for v in verdicts {
        match &v.result {
            Ok(s) => {
                let head =
                    s.head.as_ref().map_or_else(|| "empty".to_owned(), |h| format!("head {} {}", h.index, h.digest));
                let signed = if s.signatures_checked > 0 {
                    format!(
                        "{} signatures checked ({})",
                        s.signatures_checked,
                        s.signed_by.iter().cloned().collect::<Vec<_>>().join(", ")
                    )
                } else {
                    "signatures not checked".to_owned()
                };
                let _ = writeln!(out, "ok: chain {} in {}: {} records, {signed}, {head}", v.chain, v.source, s.records);
            }
            Err(findings) => {
                let mut kinds: Vec<&str> = findings.iter().map(Finding::kind).collect();
                kinds.dedup();
                let _ = writeln!(out, "BROKEN: chain {} in {}: {}", v.chain, v.source, kinds.join(", "));
                for f in findings {
                    let _ = writeln!(out, "  - {f}");
                }
            }
        }
        for note in &v.notes {
            let _ = writeln!(out, "  note: {note}");
        }
    }
    out
}
