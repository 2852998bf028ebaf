//! Where a certificate's evidence comes from: a namespace of the cluster
//! (the chain's ConfigMap segments, the digests status knows, the erasure
//! request's status if it still exists), or files of sealed records for an
//! auditor who works offline.

use std::path::Path;

use kube::{Api, Client};

use super::{CertificateError, Evidence, RequestLookup, Selection};
use crate::api::ErasureRequest;
use crate::audit;
use crate::controller::evidence::read_chain;

/// The evidence for `selection` in `namespace`.
pub async fn from_cluster(
    client: &Client,
    namespace: &str,
    selection: &Selection,
) -> Result<Evidence, CertificateError> {
    let chain = selection.chain();
    let read =
        |e: &dyn std::fmt::Display| CertificateError::Read(format!("cannot read the evidence from the cluster: {e}"));
    let records = read_chain(client, namespace, &chain).await.map_err(|e| read(&e))?;
    let known = audit::known_heads(client, namespace).await.map_err(|e| read(&e))?.remove(&chain).unwrap_or_default();
    let request = match selection {
        Selection::Erasure { request } => {
            let name = request.rsplit_once('/').map_or(request.as_str(), |(_, n)| n);
            let api: Api<ErasureRequest> = Api::namespaced(client.clone(), namespace);
            match api.get_opt(name).await.map_err(|e| read(&e))? {
                Some(r) => RequestLookup::Found(Box::new(r.status.unwrap_or_default())),
                None => RequestLookup::Gone,
            }
        }
        Selection::Policy { .. } => RequestLookup::NotRead,
    };
    Ok(Evidence {
        records,
        source: format!("namespace {namespace}"),
        namespace: Some(namespace.to_owned()),
        known,
        request,
    })
}

/// The evidence in files of JSON lines (`-` for stdin), in the order given.
pub fn from_files(paths: &[&Path]) -> Result<Evidence, CertificateError> {
    let records = audit::read_files(paths).map_err(|e| CertificateError::Read(e.to_string()))?;
    let source = paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ");
    Ok(Evidence { records, source, namespace: None, known: Vec::new(), request: RequestLookup::NotRead })
}
