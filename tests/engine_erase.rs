//! An erasure request carried out against the real PostgreSQL: erased where
//! allowed, retained under a legal obligation, skipped without the
//! controller's instruction, every other row untouched.
mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use delenda::api::erasure::ErasureRequestSpec;
use delenda::api::{IdentityName, RetentionPolicySpec};
use delenda::engine::connect::StoreHandle;
use delenda::engine::erase::{ErasureJob, run_erasure};
use delenda::engine::evidence::SubjectDigester;
use delenda::engine::run::Stores;
use delenda::plan::erasure::{PolicyView, plan};
use delenda::stores::sql::{PoolSettings, SqlStore};
use delenda::stores::{PurgeOptions, Store, Subject};
use sqlx::{Connection, PgConnection};

const EMAIL: &str = "jan.jansen@example.nl";

async fn pg() -> PgConnection {
    let url = support::setting("POSTGRES_URL", "PostgreSQL");
    support::reach(PgConnection::connect(&url).await, "PostgreSQL")
}

/// A table whose rows 1..=n hold other people's addresses and rows n+1..n+k the subject's.
async fn table(conn: &mut PgConnection, column: &str, others: i64, subjects: i64) -> String {
    let name = support::unique("erase").replace('-', "_");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE {name} (id bigint PRIMARY KEY, created_at timestamptz, {column} text);
         INSERT INTO {name} SELECT g, now(), 'other' || g || '@example.nl' FROM generate_series(1, {others}) g;
         INSERT INTO {name} SELECT g, now(), '{EMAIL}' FROM generate_series({others} + 1, {others} + {subjects}) g;"
    )))
    .execute(&mut *conn)
    .await
    .unwrap();
    name
}

async fn count(conn: &mut PgConnection, table: &str, column: &str, value: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table} WHERE {column} = $1")))
        .bind(value)
        .fetch_one(conn)
        .await
        .unwrap()
}

fn policy(category: &str, party: &str, basis: &str, table: &str, column: &str) -> RetentionPolicySpec {
    serde_json::from_value(serde_json::json!({
        "category": category, "description": "d", "responsibleParty": party, "legalBasis": basis,
        "retention": {"period": "6mo"}, "schedule": {"cron": "0 3 * * *", "timeZone": "Europe/Amsterdam"},
        "targets": [{"name": "main", "dataStoreRef": {"name": "crm"},
            "table": {"name": table, "timeColumn": "created_at"},
            "subjectFields": [{"identity": "email", "field": column}]}]
    }))
    .unwrap()
}

fn request(extra: serde_json::Value) -> ErasureRequestSpec {
    let mut base = serde_json::json!({
        "identitySecretRef": {"name": "s"}, "ground": "NoLongerNecessary", "receivedAt": "2026-11-20T09:00:00Z",
        "identityVerification": {"verifiedBy": "privacy-office", "method": "IdentityDocument"}
    });
    base.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    serde_json::from_value(base).unwrap()
}

#[tokio::test]
async fn erases_what_it_may_retains_what_the_law_requires_and_skips_processor_data_without_instruction() {
    let mut conn = pg().await;
    let tickets = table(&mut conn, "requester_email", 20, 3).await;
    let traffic = table(&mut conn, "subscriber", 15, 4).await;
    let keyholders = table(&mut conn, "email", 10, 2).await;
    let policies = BTreeMap::from([
        ("support-tickets".to_owned(), policy("support-tickets", "self", "Contract", &tickets, "requester_email")),
        ("traffic-data".to_owned(), policy("traffic-data", "self", "LegalObligation", &traffic, "subscriber")),
        ("key-holders".to_owned(), policy("key-holders", "customer", "Contract", &keyholders, "email")),
    ]);
    let labels = BTreeMap::new();
    let views: Vec<_> = policies.iter().map(|(name, spec)| PolicyView { name, labels: &labels, spec }).collect();
    let spec = request(serde_json::json!({}));
    let email: IdentityName = "email".parse().unwrap();
    let now = "2026-11-21T10:00:00Z".parse().unwrap();
    let plan = plan(&spec, &views, &BTreeSet::from([email.clone()]), now);
    let subject = Subject::new([(email, EMAIL.to_owned())]);
    let digester = SubjectDigester::new(&[42u8; 32]).unwrap();
    let digests = BTreeMap::from([("email".to_owned(), digester.digest("email", EMAIL))]);
    let url = support::setting("POSTGRES_URL", "PostgreSQL");
    let store: Arc<dyn Store> = Arc::new(SqlStore::connect_lazy(&url, PoolSettings::default()).unwrap());
    let stores: Stores = BTreeMap::from([("crm".to_owned(), StoreHandle::new(store))]);

    let job = ErasureJob {
        request: "ns/req-1",
        spec: &spec,
        plan: &plan,
        policies: &policies,
        subject: &subject,
        subject_digests: &digests,
    };
    let result = run_erasure(&job, &stores, &PurgeOptions::new(spec.mode)).await;

    let by_policy: BTreeMap<_, _> = result.steps.iter().map(|s| (s.policy.as_str(), s)).collect();
    assert_eq!(by_policy["support-tickets"].outcome, "Erased");
    assert_eq!(by_policy["support-tickets"].erased, 3);
    assert_eq!(by_policy["support-tickets"].remaining, Some(0));
    assert_eq!(by_policy["traffic-data"].outcome, "Retained");
    assert_eq!(by_policy["traffic-data"].matched, 4);
    assert!(by_policy["traffic-data"].retained.as_ref().unwrap().1.contains("17(3)(b)"));
    assert_eq!(by_policy["key-holders"].outcome, "Skipped");
    assert!(result.complete);

    assert_eq!(count(&mut conn, &tickets, "requester_email", EMAIL).await, 0);
    assert_eq!(
        sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {tickets}")))
            .fetch_one(&mut conn)
            .await
            .unwrap(),
        20
    );
    assert_eq!(count(&mut conn, &traffic, "subscriber", EMAIL).await, 4, "retained under a legal obligation");
    assert_eq!(count(&mut conn, &keyholders, "email", EMAIL).await, 2, "processor data waits for onBehalfOf");

    let evidence = serde_json::to_string(&result.record).unwrap();
    assert!(!evidence.contains(EMAIL) && !evidence.contains("jansen"), "the evidence holds the identity: {evidence}");
    assert!(evidence.contains(&digests["email"]));
}
