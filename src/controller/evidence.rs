//! The durable copy of the evidence: each chain is kept as JSON lines in a
//! ConfigMap beside the resource, so an auditor can check it with
//! `kubectl get configmap NAME -o jsonpath='{.data.chain\.jsonl}' | delenda evidence verify -`.
//! Status keeps the digests; the ConfigMap keeps the records they seal.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::PostParams;
use kube::{Api, Client};

use crate::engine::evidence::{Digest, SealedEvidence, seal};

/// The data key holding the chain.
pub const KEY: &str = "chain.jsonl";
/// Keep a chain's ConfigMap under this many bytes (the API server's limit is
/// 1 MiB): the oldest records go first. The chain still verifies, since its
/// first record may continue an older chain.
pub const MAX_BYTES: usize = 900 * 1024;

/// The ConfigMap of a policy's chain.
pub fn policy_chain(policy: &str) -> String {
    format!("delenda-evidence-{policy}")
}

/// The ConfigMap of a namespace's chain of erasure requests.
pub const ERASURE_CHAIN: &str = "delenda-evidence-erasures";

fn last_digest(text: &str) -> Option<Digest> {
    text.lines().rev().find_map(|l| serde_json::from_str::<SealedEvidence>(l).ok()).map(|s| s.digest)
}

fn trimmed(mut text: String) -> String {
    while text.len() > MAX_BYTES {
        match text.find('\n') {
            Some(end) => {
                text.drain(..=end);
            }
            None => break,
        }
    }
    text
}

/// Seals `record` onto the chain `name` in `namespace` and stores it,
/// returning the sealed record. The record is sealed against the chain's
/// last record at the moment of writing, and the write carries the
/// ConfigMap's resourceVersion, so two writers never fork the chain: the
/// one that loses re-reads, re-seals and tries again. `owner`, when given,
/// owns a new ConfigMap (a policy's chain goes with its policy; the erasure
/// chain has none, so deleting one request never deletes others' evidence).
pub async fn append(
    client: &Client,
    namespace: &str,
    name: &str,
    owner: Option<OwnerReference>,
    record: &serde_json::Value,
) -> Result<SealedEvidence, kube::Error> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
    for _ in 0..5 {
        let existing = api.get_opt(name).await?;
        let chain = existing.as_ref().and_then(|cm| cm.data.as_ref()?.get(KEY).cloned()).unwrap_or_default();
        let sealed = seal(record.clone(), last_digest(&chain));
        let line = serde_json::to_string(&sealed).expect("evidence serializes") + "\n";
        let result = match existing {
            Some(mut cm) => {
                cm.data.get_or_insert_with(BTreeMap::new).insert(KEY.into(), trimmed(chain + &line));
                api.replace(name, &PostParams::default(), &cm).await
            }
            None => {
                let mut cm = ConfigMap::default();
                cm.metadata.name = Some(name.to_owned());
                cm.metadata.labels = Some(BTreeMap::from([("app.kubernetes.io/managed-by".into(), "delenda".into())]));
                cm.metadata.owner_references = owner.clone().map(|r| vec![r]);
                cm.data = Some(BTreeMap::from([(KEY.to_owned(), line.clone())]));
                api.create(&PostParams::default(), &cm).await
            }
        };
        match result {
            Ok(_) => return Ok(sealed),
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            Err(e) => return Err(e),
        }
    }
    Err(kube::Error::Api(
        kube::core::Status::failure("the evidence ConfigMap kept changing under five attempts", "Conflict")
            .with_code(409)
            .boxed(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_chain_loses_its_oldest_lines_first() {
        let line = "x".repeat(1023) + "\n";
        let text = line.repeat(1000);
        let kept = trimmed(text);
        assert!(kept.len() <= MAX_BYTES);
        assert!(kept.ends_with('\n') && kept.lines().all(|l| l.len() == 1023));
    }
}
