//! Where the evidence lives in the cluster: each chain as JSON lines in
//! numbered ConfigMap segments, in the namespace of what it records.
//!
//! - A chain is never owned by the resource it records: deleting or
//!   renaming a policy in Git leaves its evidence.
//! - Chain names cannot collide: a policy's chain is `policy/<name>`, the
//!   erasure requests' chain `erasures`, and their ConfigMaps are
//!   `delenda-evidence.policy.<name>.<segment>` and
//!   `delenda-evidence.erasures.<segment>`.
//! - A chain is never trimmed: when a segment would pass [`MAX_BYTES`] it is
//!   made immutable and the next segment opens, its first record naming the
//!   digest of the previous segment's last.
//! - Each record is signed (with the operator's key) and, with a sink, also
//!   written to a bucket under object lock that nobody in the namespace can
//!   rewrite ([`crate::engine::sink`]).

use std::collections::BTreeMap;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use sha2::{Digest as _, Sha256};

use crate::engine::evidence::{Head, SealedEvidence, Signer, seal};
use crate::engine::sink::{EvidenceSink, SinkError};

/// How often an append tries again when another writer came first.
const ATTEMPTS: u32 = 20;

/// The data key holding a segment's records.
pub const KEY: &str = "chain.jsonl";
/// A segment holds at most this many bytes (the API server's limit for a
/// ConfigMap is 1 MiB); the next record opens a new segment.
pub const MAX_BYTES: usize = 900 * 1024;
/// Label on every segment: a short digest of the chain's name (label values
/// are short; chain names may not be).
pub const CHAIN_LABEL: &str = "delenda.dev/evidence-chain";
/// Annotation on every segment: the chain's full name.
pub const CHAIN_ANNOTATION: &str = "delenda.dev/evidence-chain";
/// Annotation on every segment: its number, from 0.
pub const SEGMENT_ANNOTATION: &str = "delenda.dev/evidence-segment";

/// The chain of a policy's runs.
pub fn policy_chain(policy: &str) -> String {
    format!("policy/{policy}")
}

/// The chain of a namespace's erasure requests.
pub const ERASURE_CHAIN: &str = "erasures";

/// The chain of a namespace's Holds: placing and lifting each.
pub const HOLD_CHAIN: &str = "holds";

/// The chain of a namespace's access requests: each export made, and each
/// export deleted when it expired.
pub const ACCESS_CHAIN: &str = "access-requests";

/// The label value of a chain.
pub fn chain_label(chain: &str) -> String {
    hex::encode(&Sha256::digest(chain.as_bytes())[..16])
}

/// The ConfigMap name of a chain's segment. Distinct chains never share a
/// name: policy chains begin `delenda-evidence.policy.`, the erasure chain
/// `delenda-evidence.erasures.`, and the segment number has a fixed width.
/// A policy name too long to fit is replaced by its digest.
pub fn segment_name(chain: &str, segment: u32) -> String {
    let middle = match chain.strip_prefix("policy/") {
        Some(policy) if policy.len() <= 200 => format!("policy.{policy}"),
        Some(_) => format!("policy-sha256.{}", chain_label(chain)),
        None => chain.replace('/', "."),
    };
    format!("delenda-evidence.{middle}.{segment:06}")
}

/// Why evidence was not stored.
#[derive(Debug, thiserror::Error)]
pub enum EvidenceError {
    /// The API server refused or failed.
    #[error("the evidence could not be written to the cluster: {0}")]
    Kube(#[from] kube::Error),
    /// Another writer kept appending.
    #[error("the evidence chain {0} kept changing under {ATTEMPTS} attempts")]
    Contended(String),
    /// A segment holds a line that is not a sealed record.
    #[error("segment {segment} of chain {chain} holds a line that is not a sealed record (line {line}): {detail}")]
    Unreadable { chain: String, segment: String, line: usize, detail: String },
}

/// One segment as read.
#[derive(Debug, Clone)]
pub struct Segment {
    /// Its number.
    pub number: u32,
    /// Its ConfigMap's name.
    pub name: String,
    /// Whether it is closed (immutable).
    pub closed: bool,
    /// Its records, in stored order.
    pub records: Vec<SealedEvidence>,
    text_len: usize,
    map: ConfigMap,
}

fn parse_segment(chain: &str, map: ConfigMap) -> Result<Segment, EvidenceError> {
    let name = map.metadata.name.clone().unwrap_or_default();
    let number = map
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(SEGMENT_ANNOTATION))
        .and_then(|n| n.parse().ok())
        .or_else(|| name.rsplit('.').next().and_then(|n| n.parse().ok()))
        .unwrap_or(0);
    let text = map.data.as_ref().and_then(|d| d.get(KEY)).cloned().unwrap_or_default();
    let mut records = Vec::new();
    for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let sealed = serde_json::from_str(line).map_err(|e| EvidenceError::Unreadable {
            chain: chain.to_owned(),
            segment: name.clone(),
            line: i + 1,
            detail: e.to_string(),
        })?;
        records.push(sealed);
    }
    Ok(Segment { number, name, closed: map.immutable == Some(true), records, text_len: text.len(), map })
}

/// The segments of a chain in a namespace, in order of their numbers.
pub async fn segments(client: &Client, namespace: &str, chain: &str) -> Result<Vec<Segment>, EvidenceError> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let list = api.list(&ListParams::default().labels(&format!("{CHAIN_LABEL}={}", chain_label(chain)))).await?;
    let mut out = Vec::new();
    for map in list.items {
        let named = map.metadata.annotations.as_ref().and_then(|a| a.get(CHAIN_ANNOTATION)).map(String::as_str);
        if named == Some(chain) {
            out.push(parse_segment(chain, map)?);
        }
    }
    out.sort_by_key(|s| s.number);
    Ok(out)
}

/// Every record of a chain, segment after segment.
pub async fn read_chain(client: &Client, namespace: &str, chain: &str) -> Result<Vec<SealedEvidence>, EvidenceError> {
    Ok(segments(client, namespace, chain).await?.into_iter().flat_map(|s| s.records).collect())
}

/// The names of the chains in a namespace.
pub async fn chains(client: &Client, namespace: &str) -> Result<Vec<String>, EvidenceError> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    let list = api.list(&ListParams::default().labels(CHAIN_LABEL)).await?;
    let mut names: Vec<String> =
        list.items.iter().filter_map(|m| m.metadata.annotations.as_ref()?.get(CHAIN_ANNOTATION).cloned()).collect();
    names.sort();
    names.dedup();
    Ok(names)
}

/// A record stored in the cluster, and where it stands in the sink.
#[derive(Debug, Clone)]
pub struct Stored {
    /// The sealed record.
    pub sealed: SealedEvidence,
    /// The segment it went to.
    pub segment: u32,
    /// With a sink: whether the sink holds the chain up to this record
    /// (`Err` says why not; the record is in the cluster either way and
    /// the next append or [`sync_sink`] catches the sink up).
    pub sink: Option<Result<(), SinkError>>,
}

fn new_segment(chain: &str, number: u32, text: String) -> ConfigMap {
    let mut map = ConfigMap::default();
    map.metadata.name = Some(segment_name(chain, number));
    map.metadata.labels = Some(BTreeMap::from([
        ("app.kubernetes.io/managed-by".into(), "delenda".into()),
        (CHAIN_LABEL.into(), chain_label(chain)),
    ]));
    map.metadata.annotations = Some(BTreeMap::from([
        (CHAIN_ANNOTATION.into(), chain.to_owned()),
        (SEGMENT_ANNOTATION.into(), number.to_string()),
    ]));
    map.data = Some(BTreeMap::from([(KEY.to_owned(), text)]));
    map
}

fn conflict(e: &kube::Error) -> bool {
    // 409: someone wrote first. 422: the segment was closed meanwhile.
    matches!(e, kube::Error::Api(s) if s.code == 409 || s.code == 422)
}

/// Seals `record` onto `chain` in `namespace` and stores it, then, with a
/// sink, writes the chain's records the sink lacks, this one included. The
/// record is sealed against the chain's last record at the moment of
/// writing, and every write carries the segment's resourceVersion, so two
/// writers never fork the chain: the one that loses re-reads, re-seals and
/// tries again.
pub async fn append(
    client: &Client,
    namespace: &str,
    chain: &str,
    record: &serde_json::Value,
    signer: Option<&Signer>,
    sink: Option<&EvidenceSink>,
) -> Result<Stored, EvidenceError> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            // Writers that lost wait a little, each a different while.
            let jitter = u64::from(Timestamp::now().subsec_nanosecond().unsigned_abs() % 50);
            tokio::time::sleep(std::time::Duration::from_millis(10 * u64::from(attempt) + jitter)).await;
        }
        let segments = segments(client, namespace, chain).await?;
        let head: Option<Head> = segments.iter().rev().find_map(|s| s.records.last()).map(SealedEvidence::head);
        let sealed = seal(chain, head.as_ref(), record.clone(), signer);
        let line = serde_json::to_string(&sealed).expect("evidence serializes") + "\n";
        let (segment, result) = match segments.last() {
            None => (0, api.create(&PostParams::default(), &new_segment(chain, 0, line)).await),
            Some(last) if !last.closed && (last.records.is_empty() || last.text_len + line.len() <= MAX_BYTES) => {
                let mut map = last.map.clone();
                let text = map.data.as_ref().and_then(|d| d.get(KEY)).cloned().unwrap_or_default() + &line;
                map.data.get_or_insert_with(BTreeMap::new).insert(KEY.into(), text);
                (last.number, api.replace(&last.name, &PostParams::default(), &map).await)
            }
            Some(last) => {
                // Close the full segment first: nothing more is written to it.
                if !last.closed {
                    let mut map = last.map.clone();
                    map.immutable = Some(true);
                    match api.replace(&last.name, &PostParams::default(), &map).await {
                        Ok(_) => {}
                        Err(e) if conflict(&e) => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
                let next = last.number + 1;
                (next, api.create(&PostParams::default(), &new_segment(chain, next, line)).await)
            }
        };
        match result {
            Ok(_) => {
                let sink = match sink {
                    Some(sink) => Some(sync_sink(client, namespace, chain, sink).await),
                    None => None,
                };
                return Ok(Stored { sealed, segment, sink });
            }
            Err(e) if conflict(&e) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(EvidenceError::Contended(chain.to_owned()))
}

/// The EvidenceStored condition after an append: status, reason, message.
pub fn stored_condition(chain: &str, stored: &Result<Stored, EvidenceError>) -> (bool, &'static str, String) {
    match stored {
        Ok(Stored { sealed, segment, sink: None }) => (
            true,
            "Stored",
            format!(
                "record {} sealed in chain {chain}, segment {segment} ({})",
                sealed.index,
                segment_name(chain, *segment)
            ),
        ),
        Ok(Stored { sealed, segment, sink: Some(Ok(())) }) => (
            true,
            "Stored",
            format!(
                "record {} sealed in chain {chain}, segment {segment} ({}), and locked in the evidence sink",
                sealed.index,
                segment_name(chain, *segment)
            ),
        ),
        Ok(Stored { sealed, sink: Some(Err(e)), .. }) => (
            false,
            SINK_UNAVAILABLE,
            format!(
                "record {} is sealed in chain {chain} but not yet in the locked evidence sink; retried: {e}",
                sealed.index
            ),
        ),
        Err(e) => (false, "NotStored", format!("the record is only in the operator's log: {e}")),
    }
}

/// Seals `record` on `chain` in `obj`'s namespace for `obj` (a Hold, an
/// AccessRequest): the sealed record's digest, and the EvidenceStored
/// condition to set. A record that could not be stored goes to the log
/// (it holds digests and counts, never identities) and a Warning Event
/// says so.
pub async fn seal_for<K>(
    ctx: &super::Context,
    obj: &K,
    chain: &str,
    record: &serde_json::Value,
    previous: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    action: &str,
) -> (Option<String>, k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition)
where
    K: kube::Resource<DynamicType = ()>,
{
    use kube::ResourceExt;
    let namespace = obj.namespace().unwrap_or_default();
    let stored = append(&ctx.client, &namespace, chain, record, ctx.signer.as_ref(), ctx.sink.as_deref()).await;
    let (ok, reason, message) = stored_condition(chain, &stored);
    let digest = match stored {
        Ok(s) => Some(s.sealed.digest.to_string()),
        Err(e) => {
            tracing::warn!(object = %obj.name_any(), chain, error = %e, "could not store evidence");
            tracing::info!(object = %obj.name_any(), chain, evidence = %record, "evidence");
            None
        }
    };
    if !ok {
        ctx.event(obj, true, "EvidenceNotStored", action, message.clone()).await;
    }
    let condition = super::condition(
        previous,
        crate::api::common::conditions::EVIDENCE_STORED,
        ok,
        reason,
        message,
        obj.meta().generation,
        Timestamp::now(),
    );
    (digest, condition)
}

/// The reason of an EvidenceStored condition whose sink copy is pending.
pub const SINK_UNAVAILABLE: &str = "SinkUnavailable";

/// Writes to the sink every record of the chain it does not yet hold, in
/// order. The sink never loses a record: each object is locked in
/// compliance mode, and a position it holds is never written again.
pub async fn sync_sink(client: &Client, namespace: &str, chain: &str, sink: &EvidenceSink) -> Result<(), SinkError> {
    let records = read_chain(client, namespace, chain).await.map_err(|e| SinkError::Source(e.to_string()))?;
    let held = sink.positions(namespace, chain).await?;
    for record in records.iter().filter(|r| !held.contains(&r.index)) {
        sink.put(namespace, record).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_names_never_collide() {
        assert_eq!(segment_name(&policy_chain("contact-persons"), 0), "delenda-evidence.policy.contact-persons.000000");
        assert_eq!(segment_name(ERASURE_CHAIN, 12), "delenda-evidence.erasures.000012");
        // A policy named like the erasure chain keeps a chain of its own.
        assert_ne!(segment_name(&policy_chain("erasures"), 0), segment_name(ERASURE_CHAIN, 0));
        // A policy whose name ends like a segment number does too.
        assert_ne!(segment_name(&policy_chain("a.000001"), 0), segment_name(&policy_chain("a"), 1));
        let long = "p".repeat(253);
        let name = segment_name(&policy_chain(&long), 3);
        assert!(name.len() <= 253 && name.ends_with(".000003"), "{name}");
        assert_ne!(chain_label("policy/a"), chain_label("erasures"));
        assert!(chain_label(&policy_chain(&long)).len() <= 63);
    }
}
