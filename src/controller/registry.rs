//! One client per DataStore, shared by every run: one connection pool, one
//! set of slots (`limits.maxConcurrency` targets at once) and one
//! deletes-per-second limiter, whatever number of policies run on it at
//! once. A DataStore or credentials Secret that changes gets a new client;
//! runs still holding the old one finish with it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kube::{Api, Client, ResourceExt};
use sha2::{Digest as _, Sha256};

use super::{Error, credentials_secret};
use crate::api::DataStore;
use crate::api::datastore::DataStoreSpec;
use crate::engine::connect::{self, Credentials, StoreHandle};

/// A client made for a DataStore: the fingerprint of the spec and Secret
/// it was made from, the client, and the spec.
type Made = (String, StoreHandle, Arc<DataStoreSpec>);

/// The shared clients, by namespace and DataStore name.
#[derive(Default)]
pub struct Registry {
    clients: Mutex<HashMap<(String, String), Made>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.clients.lock().map(|c| c.len()).unwrap_or(0);
        write!(f, "Registry {{ {n} clients }}")
    }
}

impl Registry {
    /// The client of DataStore `name` in `namespace`: the one already made
    /// when neither the DataStore's spec nor its Secret changed since.
    pub async fn get(&self, client: &Client, namespace: &str, name: &str) -> Result<StoreHandle, Error> {
        Ok(self.get_with_spec(client, namespace, name).await?.0)
    }

    /// The client, and the DataStore's spec it was made from.
    pub async fn get_with_spec(
        &self,
        client: &Client,
        namespace: &str,
        name: &str,
    ) -> Result<(StoreHandle, Arc<DataStoreSpec>), Error> {
        let api: Api<DataStore> = Api::namespaced(client.clone(), namespace);
        let store = api.get_opt(name).await?.ok_or_else(|| Error::NotFound {
            kind: "DataStore",
            namespace: namespace.into(),
            name: name.into(),
        })?;
        let secret = match credentials_secret(&store) {
            Some(secret) => Some(super::read_secret_with_version(client, namespace, secret).await?),
            None => None,
        };
        let mut hash = Sha256::new();
        hash.update(serde_json::to_vec(&store.spec).expect("a spec serializes"));
        hash.update(store.uid().unwrap_or_default());
        if let Some((_, version)) = &secret {
            hash.update(version.as_bytes());
        }
        let fingerprint = hex::encode(hash.finalize());
        let key = (namespace.to_owned(), name.to_owned());
        if let Some((seen, handle, spec)) = self.clients.lock().expect("registry lock").get(&key)
            && *seen == fingerprint
        {
            return Ok((handle.clone(), spec.clone()));
        }
        let credentials: Option<&Credentials> = secret.as_ref().map(|(c, _)| c);
        let handle = connect::connect(&store.spec, credentials)?;
        let spec = Arc::new(store.spec.clone());
        self.clients.lock().expect("registry lock").insert(key, (fingerprint, handle.clone(), spec.clone()));
        Ok((handle, spec))
    }

    /// Forgets the client of a DataStore that is gone.
    pub fn forget(&self, namespace: &str, name: &str) {
        self.clients.lock().expect("registry lock").remove(&(namespace.to_owned(), name.to_owned()));
    }
}
