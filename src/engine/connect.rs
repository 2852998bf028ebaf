//! From a DataStore and its credentials Secret to a [`Store`].

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use jiff::tz::TimeZone;

use crate::api::datastore::{DEFAULT_MAX_CLOCK_SKEW_SECONDS, DataStoreSpec, SqlServer, TlsMode};
use crate::stores::files::FileStore;
use crate::stores::local_buckets::LocalBucketStore;
use crate::stores::objects::{BucketStore, S3Settings};
use crate::stores::search::{SearchSettings, SearchStore};
use crate::stores::sql::{PoolSettings, SqlStore};
use crate::stores::{RateLimiter, Store, StoreError};

/// The data of a credentials Secret. Its `Debug` shows key names only.
#[derive(Clone, Default)]
pub struct Credentials {
    secret: String,
    data: BTreeMap<String, Vec<u8>>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials {{ secret: {:?}, keys: {:?} }}", self.secret, self.data.keys().collect::<Vec<_>>())
    }
}

impl Credentials {
    /// The data of the Secret named `secret`.
    pub fn new(secret: impl Into<String>, data: BTreeMap<String, Vec<u8>>) -> Self {
        Self { secret: secret.into(), data }
    }

    /// The keys of the Secret.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.data.keys().map(String::as_str)
    }

    /// The UTF-8 value of `key`.
    pub fn get(&self, key: &str) -> Result<&str, ConnectError> {
        let bytes = self
            .data
            .get(key)
            .ok_or_else(|| ConnectError::MissingKey { secret: self.secret.clone(), key: key.to_owned() })?;
        std::str::from_utf8(bytes)
            .map_err(|_| ConnectError::NotText { secret: self.secret.clone(), key: key.to_owned() })
    }
}

/// Why a DataStore cannot be turned into a store client.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The credentials Secret lacks a key.
    #[error("the Secret {secret} has no key {key}; add it (see the DataStore's credentialsSecret)")]
    MissingKey { secret: String, key: String },
    /// A credential is not text.
    #[error("the key {key} of the Secret {secret} is not UTF-8 text")]
    NotText { secret: String, key: String },
    /// The spec names a kind of store this build cannot reach yet.
    #[error("{0} stores are not supported by this operator build yet")]
    Unsupported(&'static str),
    /// The spec names no kind of store (the API server prevents this).
    #[error("the DataStore names no kind of store")]
    NoKind,
    /// The spec's timeZone is not a zone the operator knows.
    #[error("spec.timeZone {0:?} is not a known IANA time zone (like Europe/Amsterdam or UTC)")]
    UnknownTimeZone(String),
    /// The store client refused the settings.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ConnectError {
    /// A low-cardinality reason for conditions, Events and metric labels.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::MissingKey { .. } | Self::NotText { .. } => "InvalidCredentials",
            Self::Unsupported(_) => "UnsupportedStore",
            Self::NoKind | Self::UnknownTimeZone(_) => "InvalidSpec",
            Self::Store(e) => e.reason(),
        }
    }
}

/// The connection URL of a SQL server, with the credentials percent-encoded.
pub fn sql_url(scheme: &str, server: &SqlServer, credentials: &Credentials) -> Result<String, ConnectError> {
    let default_port = if scheme == "postgres" { 5432 } else { 3306 };
    let mut url = url::Url::parse(&format!("{scheme}://placeholder/")).expect("a static URL parses");
    url.set_host(Some(&server.host))
        .map_err(|e| StoreError::InvalidTarget { store: "sql", detail: format!("host: {e}") })?;
    url.set_port(Some(server.port.unwrap_or(default_port))).expect("a host-based URL takes a port");
    url.set_username(credentials.get("username")?).expect("a host-based URL takes a username");
    url.set_password(Some(credentials.get("password")?)).expect("a host-based URL takes a password");
    url.set_path(&server.database);
    let tls = match (scheme, server.tls) {
        ("postgres", TlsMode::Disable) => ("sslmode", "disable"),
        ("postgres", TlsMode::Prefer) => ("sslmode", "prefer"),
        ("postgres", TlsMode::Require) => ("sslmode", "verify-full"),
        (_, TlsMode::Disable) => ("ssl-mode", "DISABLED"),
        (_, TlsMode::Prefer) => ("ssl-mode", "PREFERRED"),
        (_, TlsMode::Require) => ("ssl-mode", "VERIFY_IDENTITY"),
    };
    url.query_pairs_mut().append_pair(tls.0, tls.1);
    Ok(url.into())
}

/// A store client and the DataStore's limits that go with it.
#[derive(Clone)]
pub struct StoreHandle {
    /// The client.
    pub store: Arc<dyn Store>,
    /// How far the store's clock may differ from the operator's before a
    /// run stops without deleting.
    pub max_clock_skew: Duration,
    /// Records deleted per second at most, by each run on the store.
    pub max_deletes_per_second: Option<u32>,
    /// The DataStore's deletes-per-second limit, shared by every run on it.
    pub rate: Option<Arc<RateLimiter>>,
    /// Targets worked on at once, over every run on the DataStore
    /// (`limits.maxConcurrency`); none for a handle made for one run.
    pub slots: Option<Arc<tokio::sync::Semaphore>>,
}

impl fmt::Debug for StoreHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreHandle")
            .field("kind", &self.store.kind())
            .field("max_clock_skew", &self.max_clock_skew)
            .field("max_deletes_per_second", &self.max_deletes_per_second)
            .field("shared", &self.slots.is_some())
            .finish()
    }
}

impl StoreHandle {
    /// A handle with the default limits, for a client made by hand.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            max_clock_skew: Duration::from_secs(u64::from(DEFAULT_MAX_CLOCK_SKEW_SECONDS)),
            max_deletes_per_second: None,
            rate: None,
            slots: None,
        }
    }

    /// Waits for one of the DataStore's slots, when it has a limit.
    pub async fn slot(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        match &self.slots {
            Some(slots) => slots.clone().acquire_owned().await.ok(),
            None => None,
        }
    }

    /// Purge options in `mode` that keep to this DataStore's limits.
    pub fn purge_options(&self, mode: crate::api::Mode) -> crate::stores::PurgeOptions {
        let mut options = crate::stores::PurgeOptions::new(mode);
        options.max_records_per_second = self.max_deletes_per_second;
        options.shared_rate = self.rate.clone();
        options
    }
}

/// Connections, and targets worked on at once, per DataStore.
fn max_concurrency(spec: &DataStoreSpec) -> usize {
    spec.limits.as_ref().and_then(|l| l.max_concurrency).unwrap_or(4).max(1) as usize
}

/// A store client for a DataStore. Connections are made lazily: a wrong
/// address or password shows at the first probe.
pub fn connect(spec: &DataStoreSpec, credentials: Option<&Credentials>) -> Result<StoreHandle, ConnectError> {
    let store = client(spec, credentials)?;
    let max_deletes_per_second = spec.limits.as_ref().and_then(|l| l.max_deletes_per_second);
    Ok(StoreHandle {
        store,
        max_clock_skew: Duration::from_secs(u64::from(
            spec.max_clock_skew_seconds.unwrap_or(DEFAULT_MAX_CLOCK_SKEW_SECONDS),
        )),
        max_deletes_per_second,
        rate: max_deletes_per_second.map(|r| Arc::new(RateLimiter::new(r))),
        slots: Some(Arc::new(tokio::sync::Semaphore::new(max_concurrency(spec)))),
    })
}

fn client(spec: &DataStoreSpec, credentials: Option<&Credentials>) -> Result<Arc<dyn Store>, ConnectError> {
    let empty = Credentials::default();
    let credentials = credentials.unwrap_or(&empty);
    let pool = PoolSettings { max_connections: max_concurrency(spec) as u32, ..PoolSettings::default() };
    let zone = match &spec.time_zone {
        Some(name) => Some(TimeZone::get(name).map_err(|_| ConnectError::UnknownTimeZone(name.clone()))?),
        None => None,
    };
    let sql = |url: String| -> Result<Arc<dyn Store>, ConnectError> {
        Ok(Arc::new(SqlStore::connect_lazy(&url, pool.clone())?.with_time_zone(zone.clone())))
    };
    if let Some(server) = &spec.postgres {
        return sql(sql_url("postgres", server, credentials)?);
    }
    if let Some(server) = &spec.mysql {
        return sql(sql_url("mysql", server, credentials)?);
    }
    if let Some(file) = &spec.sqlite {
        // mode=rw: an operator must never create a database that is not there.
        return sql(format!("sqlite://{}?mode=rw", file.path));
    }
    if let Some(s3) = &spec.s3 {
        return Ok(Arc::new(BucketStore::new(S3Settings {
            endpoint: s3.endpoint.clone(),
            region: s3.region.clone(),
            path_style: s3.path_style,
            access_key_id: credentials.get("accessKeyId")?.to_owned(),
            secret_access_key: credentials.get("secretAccessKey")?.to_owned(),
            max_concurrency: pool.max_connections as usize,
        })));
    }
    if let Some(cluster) = &spec.opensearch {
        let mut settings = SearchSettings::new(cluster.url.clone());
        if cluster.credentials_secret.is_some() {
            settings.credentials =
                Some((credentials.get("username")?.to_owned(), credentials.get("password")?.to_owned()));
        }
        return Ok(Arc::new(SearchStore::new(settings)?));
    }
    if let Some(dir) = &spec.files {
        return Ok(Arc::new(FileStore::new(dir.root.clone()).with_time_zone(zone)));
    }
    if let Some(dir) = &spec.local_buckets {
        return Ok(Arc::new(LocalBucketStore::new(dir.root.clone())));
    }
    Err(spec.store_type().map(ConnectError::Unsupported).unwrap_or(ConnectError::NoKind))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds(user: &str, password: &str) -> Credentials {
        Credentials::new(
            "crm-db",
            BTreeMap::from([("username".into(), user.into()), ("password".into(), password.as_bytes().to_vec())]),
        )
    }

    fn server(tls: TlsMode) -> SqlServer {
        SqlServer {
            host: "crm-db.example.internal".into(),
            port: None,
            database: "crm".into(),
            credentials_secret: crate::api::SecretReference { name: "crm-db".into() },
            tls,
        }
    }

    #[test]
    fn credentials_are_percent_encoded_into_the_url() {
        let url = sql_url("postgres", &server(TlsMode::Require), &creds("delenda", "p@ss:/w?rd#1")).unwrap();
        assert_eq!(
            url,
            "postgres://delenda:p%40ss%3A%2Fw%3Frd%231@crm-db.example.internal:5432/crm?sslmode=verify-full"
        );
    }

    #[test]
    fn tls_modes_map_to_each_driver() {
        let mysql = sql_url("mysql", &server(TlsMode::Disable), &creds("u", "p")).unwrap();
        assert!(mysql.ends_with(":3306/crm?ssl-mode=DISABLED"), "{mysql}");
    }

    #[test]
    fn a_missing_key_names_the_secret_and_key() {
        let only_user = Credentials::new("crm-db", BTreeMap::from([("username".into(), b"u".to_vec())]));
        let err = sql_url("postgres", &server(TlsMode::Disable), &only_user).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the Secret crm-db has no key password; add it (see the DataStore's credentialsSecret)"
        );
        assert_eq!(err.reason(), "InvalidCredentials");
    }

    #[test]
    fn debug_never_shows_a_credential() {
        let shown = format!("{:?}", creds("delenda", "hunter2-secret"));
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("password"), "{shown}");
    }
}
