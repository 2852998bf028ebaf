//! A namespace of its own on the test API server with the test PostgreSQL
//! as DataStore `crm`, and the operator run in process against it: what
//! the tests of status and evidence share.

use std::time::Duration;

use delenda::api::{ErasureRequest, ErasureRequestStatus, RetentionPolicy};
use k8s_openapi::api::core::v1::{Event, Secret};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};
use sqlx::{Connection, PgConnection};

use super::{eventually, manifest};

pub const EMAIL: &str = "anna.de.vries@example.nl";

/// One namespace with the test PostgreSQL as DataStore `crm`.
pub struct Fixture {
    /// The client.
    pub client: Client,
    /// The namespace.
    pub ns: String,
    /// A connection to the test PostgreSQL.
    pub pg: PgConnection,
}

impl Fixture {
    pub async fn new(prefix: &str, limits: Option<serde_json::Value>) -> Self {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let client = super::kube_client().await;
        super::install_crds(&client).await;
        let ns = super::fresh_namespace(&client, prefix).await;
        let url = super::setting("POSTGRES_URL", "PostgreSQL");
        let parsed = url::Url::parse(&url).unwrap();
        let pg = super::reach(PgConnection::connect(&url).await, "PostgreSQL");
        let fixture = Self { client, ns, pg };
        fixture
            .secret(
                "crm-db",
                serde_json::json!({"username": parsed.username(), "password": parsed.password().unwrap()}),
            )
            .await;
        let mut spec = serde_json::json!({"postgres": {"host": "127.0.0.1", "port": parsed.port().unwrap(),
            "database": parsed.path().trim_start_matches('/'), "credentialsSecret": {"name": "crm-db"}, "tls": "Disable"}});
        if let Some(limits) = limits {
            spec["limits"] = limits;
        }
        let stores: Api<delenda::api::DataStore> = Api::namespaced(fixture.client.clone(), &fixture.ns);
        stores
            .create(
                &PostParams::default(),
                &manifest(serde_json::json!({"apiVersion": "delenda.dev/v1alpha1", "kind": "DataStore",
                    "metadata": {"name": "crm"}, "spec": spec})),
            )
            .await
            .unwrap();
        fixture
    }

    pub fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
    {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    /// A Secret of credentials.
    pub async fn secret(&self, name: &str, data: serde_json::Value) {
        self.secret_labelled(name, serde_json::json!({}), data).await;
    }

    /// An identity Secret: labelled `delenda.dev/identity: "true"`.
    pub async fn identity_secret(&self, name: &str, data: serde_json::Value) {
        self.secret_labelled(name, serde_json::json!({"delenda.dev/identity": "true"}), data).await;
    }

    /// A Secret with labels.
    pub async fn secret_labelled(&self, name: &str, labels: serde_json::Value, data: serde_json::Value) {
        let secrets: Api<Secret> = self.api();
        let secret = manifest(serde_json::json!({"metadata": {"name": name, "labels": labels}, "stringData": data}));
        secrets.create(&PostParams::default(), &secret).await.unwrap();
    }

    pub async fn sql(&mut self, sql: &str) {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned())).execute(&mut self.pg).await.unwrap();
    }

    pub async fn count(&mut self, table: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table} WHERE email = '{EMAIL}'")))
            .fetch_one(&mut self.pg)
            .await
            .unwrap()
    }

    /// A self-owned policy with `targets` (name, table, identity kind),
    /// each table with a `created_at` and an `email` or `phone` column.
    pub async fn policy(&self, name: &str, responsible: &str, targets: &[(&str, &str, &str)]) {
        let targets: Vec<serde_json::Value> = targets
            .iter()
            .map(|(target, table, kind)| {
                let column = if *kind == "phone" { "phone" } else { "email" };
                serde_json::json!({"name": target, "dataStoreRef": {"name": "crm"},
                    "table": {"name": table, "timeColumn": "created_at"},
                    "subjectFields": [{"identity": kind, "field": column}]})
            })
            .collect();
        let policies: Api<RetentionPolicy> = self.api();
        policies
            .create(
                &PostParams::default(),
                &manifest(serde_json::json!({"apiVersion": "delenda.dev/v1alpha1", "kind": "RetentionPolicy",
                    "metadata": {"name": name},
                    "spec": {"category": name, "description": name, "responsibleParty": responsible,
                        "legalBasis": "Contract", "retention": {"period": "2y"},
                        "schedule": {"cron": "0 3 1 1 *", "timeZone": "Europe/Amsterdam"}, "mode": "Enforce",
                        "targets": targets}})),
            )
            .await
            .unwrap();
    }

    pub async fn request(&self, name: &str, secret: &str, extra: serde_json::Value) {
        let mut spec = serde_json::json!({"identitySecretRef": {"name": secret}, "ground": "NoLongerNecessary",
            "receivedAt": jiff::Timestamp::now().to_string(), "deleteIdentitySecret": true,
            "identityVerification": {"verifiedBy": "privacy-office", "method": "IdentityDocument"}});
        for (k, v) in extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        let requests: Api<ErasureRequest> = self.api();
        requests
            .create(
                &PostParams::default(),
                &manifest(serde_json::json!({"apiVersion": "delenda.dev/v1alpha1", "kind": "ErasureRequest",
                    "metadata": {"name": name}, "spec": spec})),
            )
            .await
            .unwrap();
    }

    /// Settings for an operator of this namespace (no leader election, so
    /// a second one can start at once after a kill).
    pub fn settings(&self, digester: bool, erasure_retry: Duration) -> delenda::controller::Settings {
        delenda::controller::Settings {
            identity: format!("test-{}", self.ns),
            digester: digester.then(|| delenda::engine::evidence::SubjectDigester::new(&[3u8; 32]).unwrap()),
            namespace: Some(self.ns.clone()),
            erasure_retry,
            ..Default::default()
        }
    }

    /// Starts the operator for this namespace.
    pub fn operator(&self, digester: bool, erasure_retry: Duration) -> Operator {
        self.operator_with(self.settings(digester, erasure_retry))
    }

    /// Starts the operator with `settings`.
    pub fn operator_with(&self, settings: delenda::controller::Settings) -> Operator {
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(delenda::controller::run(self.client.clone(), settings, async move {
            let _ = stopped.await;
        }));
        Operator { stop, handle }
    }

    pub async fn status_when(
        &self,
        name: &str,
        what: &str,
        secs: u64,
        done: impl Fn(&ErasureRequestStatus) -> bool,
    ) -> ErasureRequestStatus {
        let requests: Api<ErasureRequest> = self.api();
        eventually(what, secs, async || {
            let status = requests.get(name).await.ok()?.status?;
            done(&status).then_some(status)
        })
        .await
    }

    pub async fn event_reasons(&self) -> Vec<(String, String, String)> {
        let events: Api<Event> = self.api();
        events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|e| (e.reason.unwrap_or_default(), e.type_.unwrap_or_default(), e.message.unwrap_or_default()))
            .collect()
    }

    /// The erasure chain's records, in order.
    pub async fn erasure_records(&self) -> Vec<serde_json::Value> {
        let chain = delenda::controller::evidence::read_chain(&self.client, &self.ns, "erasures").await.unwrap();
        chain.into_iter().map(|r| r.record).collect()
    }
}

/// An operator running in this process.
pub struct Operator {
    /// Stops it gracefully.
    pub stop: tokio::sync::oneshot::Sender<()>,
    /// Its task; abort it to kill the operator.
    pub handle: tokio::task::JoinHandle<bool>,
}

impl Operator {
    /// Stops it and waits for it.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(30), self.handle).await.expect("the operator shuts down").unwrap();
    }
}

/// A table of `n` records of the subject and `others` of other people.
pub fn table_sql(table: &str, n: i64, others: i64) -> String {
    format!(
        "CREATE TABLE {table} (id bigint PRIMARY KEY, created_at timestamptz NOT NULL DEFAULT now(), email text, phone text);
         INSERT INTO {table} (id, email) SELECT g, '{EMAIL}' FROM generate_series(1, {n}) g;
         INSERT INTO {table} (id, email) SELECT g, 'other' || g || '@example.nl' FROM generate_series({n} + 1, {n} + {others}) g;"
    )
}
