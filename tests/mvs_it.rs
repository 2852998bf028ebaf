//! The operator end to end on a slice of the MvS-IT retention table, across
//! every kind of real store: PostgreSQL (CRM), MariaDB (billing), the S3
//! server (call recordings) and OpenSearch (traffic data). Retention runs
//! first, then an erasure request for one former customer contact; the data
//! left in each store and the status are checked row by row.
mod support;

use support::{eventually, manifest};

use std::collections::BTreeSet;
use std::time::Duration;

use aws_sdk_s3::primitives::ByteStream;
use delenda::api::erasure::ErasurePhase;
use delenda::api::{DataStore, ErasureRequest, RetentionPolicy};
use delenda::stores::objects::{BucketStore, S3Settings};
use jiff::{Timestamp, ToSpan};
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::PostParams;
use serde_json::{Value, json};
use sqlx::{Connection, MySqlConnection, PgConnection};

const EMAIL: &str = "p.de.vries@example.nl";
const PHONE: &str = "+31 20 000 0042";
const CUSTOMER: &str = "c-1042";

fn day(t: Timestamp) -> String {
    t.strftime("%Y-%m-%d %H:%M:%S").to_string()
}

async fn search(method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
    let base = support::setting("OPENSEARCH_URL", "OpenSearch");
    let mut req = reqwest::Client::new().request(method, format!("{base}/{path}"));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = support::reach(req.send().await, "OpenSearch");
    assert!(resp.status().is_success(), "{path}: {}", resp.status());
    resp.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mvs_it_table_is_enforced_and_a_subject_erased_across_every_store() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let client = support::kube_client().await;
    support::install_crds(&client).await;
    let ns = support::fresh_namespace(&client, "mvs-it").await;
    let now = Timestamp::now();
    let id = support::unique("x").replace('-', "_");

    // CRM in PostgreSQL: contact persons, kept until the end of the service.
    let pg_url = support::setting("POSTGRES_URL", "PostgreSQL");
    let mut pg = support::reach(PgConnection::connect(&pg_url).await, "PostgreSQL");
    let contacts = format!("contacts{id}");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE {contacts} (id bigint PRIMARY KEY, service_ended_at timestamptz, email text, phone text, customer_id text);
         INSERT INTO {contacts} VALUES
           (1, NULL, '{EMAIL}', '{PHONE}', '{CUSTOMER}'),
           (2, now() - interval '10 days', 'ended@example.nl', '+31 20 000 0001', 'c-7'),
           (3, NULL, 'active@example.nl', '+31 20 000 0002', 'c-8'),
           (4, now() - interval '3 hours', 'today@example.nl', '+31 20 000 0003', 'c-9');"
    )))
    .execute(&mut pg)
    .await
    .unwrap();

    // Billing in MariaDB: call detail records, six months.
    let my_url = support::setting("MYSQL_URL", "MariaDB");
    let mut my = support::reach(MySqlConnection::connect(&my_url).await, "MariaDB");
    let cdrs = format!("cdrs{id}");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE {cdrs} (id BIGINT PRIMARY KEY, started_at DATETIME(6), caller VARCHAR(64));
         INSERT INTO {cdrs} VALUES
           (1, '{}', '{PHONE}'), (2, '{}', '{PHONE}'), (3, '{}', '+31 20 000 0001'), (4, '{}', '+31 20 000 0001');",
        day(now - (200 * 24).hours()),
        day(now - (20 * 24).hours()),
        day(now - (300 * 24).hours()),
        day(now - (5 * 24).hours()),
    )))
    .execute(&mut my)
    .await
    .unwrap();

    // Call recordings in the S3 server: support calls by date (90 days),
    // the customer's own recordings by customer id.
    let s3 = BucketStore::new(S3Settings {
        endpoint: Some(support::setting("S3_ENDPOINT", "the S3 server")),
        region: support::setting("S3_REGION", "the S3 server"),
        path_style: true,
        access_key_id: support::setting("S3_ACCESS_KEY_ID", "the S3 server"),
        secret_access_key: support::setting("S3_SECRET_ACCESS_KEY", "the S3 server"),
        max_concurrency: 4,
    });
    let bucket = support::unique("recordings");
    support::reach(s3.client().create_bucket().bucket(&bucket).send().await, "the S3 server");
    let old = (now - (120 * 24).hours()).strftime("%Y/%m/%d").to_string();
    let recent = (now - (10 * 24).hours()).strftime("%Y/%m/%d").to_string();
    let keys = [
        format!("support/{old}/call-1.ogg"),
        format!("support/{old}/call-2.ogg"),
        format!("support/{recent}/call-3.ogg"),
        format!("customers/{CUSTOMER}/2026-10-01.ogg"),
        format!("customers/{CUSTOMER}0/2026-10-01.ogg"),
    ];
    for key in &keys {
        let body = ByteStream::from(key.as_bytes().to_vec());
        support::reach(s3.client().put_object().bucket(&bucket).key(key).body(body).send().await, "the S3 server");
    }

    // Traffic data in OpenSearch: six months, kept under a legal obligation.
    let index = format!("traffic{}", id.to_lowercase());
    search(
        reqwest::Method::PUT,
        &index,
        Some(json!({
            "settings": {"number_of_shards": 1, "number_of_replicas": 0},
            "mappings": {"properties": {"@timestamp": {"type": "date"}, "caller": {"type": "keyword"}}}
        })),
    )
    .await;
    let mut bulk = String::new();
    for (n, (days, caller)) in
        [(300, PHONE), (250, "+31 20 000 0001"), (30, PHONE), (3, "+31 20 000 0001")].iter().enumerate()
    {
        bulk.push_str(&json!({"index": {"_index": index, "_id": n.to_string()}}).to_string());
        bulk.push('\n');
        bulk.push_str(&json!({"@timestamp": (now - (days * 24).hours()).to_string(), "caller": caller}).to_string());
        bulk.push('\n');
    }
    let base = support::setting("OPENSEARCH_URL", "OpenSearch");
    let resp = reqwest::Client::new()
        .post(format!("{base}/_bulk?refresh=true"))
        .header("content-type", "application/x-ndjson")
        .body(bulk)
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());

    // The DataStores, their Secrets, and four rows of the table.
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    let pg_parsed = url::Url::parse(&pg_url).unwrap();
    let my_parsed = url::Url::parse(&my_url).unwrap();
    for (name, data) in [
        ("crm-db", json!({"username": pg_parsed.username(), "password": pg_parsed.password().unwrap()})),
        ("billing-db", json!({"username": my_parsed.username(), "password": my_parsed.password().unwrap()})),
        (
            "recordings-keys",
            json!({"accessKeyId": support::setting("S3_ACCESS_KEY_ID", "the S3 server"),
            "secretAccessKey": support::setting("S3_SECRET_ACCESS_KEY", "the S3 server")}),
        ),
        ("subject-42", json!({"email": EMAIL, "phone": PHONE, "customerId": CUSTOMER})),
    ] {
        secrets
            .create(
                &PostParams::default(),
                &manifest(json!({"metadata": {"name": name,
                    "labels": if name.starts_with("subject") { json!({"delenda.dev/identity": "true"}) } else { json!({}) }},
                    "stringData": data})),
            )
            .await
            .unwrap();
    }
    let stores: Api<DataStore> = Api::namespaced(client.clone(), &ns);
    for (name, spec) in [
        (
            "crm",
            json!({"postgres": {"host": "127.0.0.1", "port": pg_parsed.port().unwrap(),
            "database": pg_parsed.path().trim_start_matches('/'), "credentialsSecret": {"name": "crm-db"}, "tls": "Disable"}}),
        ),
        (
            "billing",
            json!({"mysql": {"host": "127.0.0.1", "port": my_parsed.port().unwrap(),
            "database": my_parsed.path().trim_start_matches('/'), "credentialsSecret": {"name": "billing-db"}, "tls": "Disable"},
            "timeZone": "Europe/Amsterdam"}),
        ),
        (
            "call-recordings",
            json!({"s3": {"endpoint": support::setting("S3_ENDPOINT", "the S3 server"),
            "region": support::setting("S3_REGION", "the S3 server"), "pathStyle": true, "credentialsSecret": {"name": "recordings-keys"}}}),
        ),
        ("traffic-logs", json!({"opensearch": {"url": base}})),
    ] {
        stores
            .create(
                &PostParams::default(),
                &manifest(json!({"apiVersion": "delenda.dev/v1alpha1", "kind": "DataStore",
                "metadata": {"name": name}, "spec": spec})),
            )
            .await
            .unwrap();
    }
    let policies: Api<RetentionPolicy> = Api::namespaced(client.clone(), &ns);
    let policy = |name: &str, basis: &str, period: &str, target: Value| -> RetentionPolicy {
        manifest(json!({"apiVersion": "delenda.dev/v1alpha1", "kind": "RetentionPolicy",
            "metadata": {"name": name, "annotations": {"delenda.dev/run-now": "first"}},
            "spec": {"category": name, "description": name, "responsibleParty": "self", "legalBasis": basis,
                "retention": {"period": period}, "schedule": {"cron": "0 3 1 1 *", "timeZone": "Europe/Amsterdam"},
                "mode": "Enforce", "targets": [target]}}))
    };
    for p in [
        policy(
            "contact-persons",
            "Contract",
            "1d",
            json!({"name": "contacts", "dataStoreRef": {"name": "crm"},
            "table": {"name": contacts, "timeColumn": "service_ended_at"},
            "subjectFields": [{"identity": "email", "field": "email"}, {"identity": "phone", "field": "phone"}]}),
        ),
        policy(
            "usage-data",
            "Contract",
            "6mo",
            json!({"name": "cdrs", "dataStoreRef": {"name": "billing"},
            "table": {"name": cdrs, "timeColumn": "started_at"},
            "subjectFields": [{"identity": "phone", "field": "caller"}]}),
        ),
        policy(
            "support-call-recordings",
            "LegitimateInterests",
            "90d",
            json!({"name": "support-calls",
            "dataStoreRef": {"name": "call-recordings"},
            "objects": {"bucket": bucket, "prefix": "support/", "age": "KeyDate", "keyDatePattern": "{yyyy}/{mm}/{dd}/"}}),
        ),
        policy(
            "customer-call-recordings",
            "Contract",
            "1y",
            json!({"name": "customer-calls",
            "dataStoreRef": {"name": "call-recordings"}, "objects": {"bucket": bucket, "prefix": "customers/"},
            "subjectFields": [{"identity": "customerId", "keyTemplate": "customers/{customerId}/"}]}),
        ),
        policy(
            "traffic-data",
            "LegalObligation",
            "6mo",
            json!({"name": "traffic", "dataStoreRef": {"name": "traffic-logs"},
            "logs": {"indexPattern": index, "timeField": "@timestamp", "deleteExpiredIndices": false},
            "subjectFields": [{"identity": "phone", "field": "caller"}]}),
        ),
    ] {
        policies.create(&PostParams::default(), &p).await.unwrap();
    }

    let key = delenda::engine::evidence::SubjectDigester::new(&[7u8; 32]).unwrap();
    let settings = delenda::controller::Settings {
        identity: format!("mvs-it-{ns}"),
        digester: Some(key),
        namespace: Some(ns.clone()),
        lease_namespace: Some(ns.clone()),
        ..Default::default()
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let operator = tokio::spawn(delenda::controller::run(client.clone(), settings, async move {
        let _ = stopped.await;
    }));

    // Retention: every policy runs once and proves compliance.
    for (name, deleted) in [
        ("contact-persons", 1),
        ("usage-data", 2),
        ("support-call-recordings", 2),
        ("customer-call-recordings", 0),
        ("traffic-data", 2),
    ] {
        let status = eventually(&format!("{name} to run"), 120, async || {
            let status = policies.get(name).await.ok()?.status?;
            status.last_run.is_some().then_some(status)
        })
        .await;
        let run = status.last_run.unwrap();
        assert_eq!(run.outcome.as_deref(), Some("Succeeded"), "{name}: {:?}", run.targets);
        assert_eq!(run.targets[0].records.deleted, deleted, "{name}: {:?}", run.targets);
        assert_eq!(run.targets[0].records.remaining, Some(0), "{name}");
        let compliant = status.conditions.iter().find(|c| c.type_ == "Compliant").unwrap();
        assert_eq!(compliant.status, "True", "{name}: {compliant:?}");
    }

    // Then the erasure request.
    let requests: Api<ErasureRequest> = Api::namespaced(client.clone(), &ns);
    requests
        .create(&PostParams::default(), &manifest(json!({"apiVersion": "delenda.dev/v1alpha1", "kind": "ErasureRequest",
            "metadata": {"name": "former-contact-42"},
            "spec": {"identitySecretRef": {"name": "subject-42"}, "ground": "NoLongerNecessary",
                "receivedAt": now.to_string(), "onBehalfOf": "Voorbeeld BV",
                "identityVerification": {"verifiedBy": "privacy-office", "method": "IdentityDocument", "reference": "PRIV-42"}}})))
        .await
        .unwrap();
    let status = eventually("the erasure to complete", 120, async || {
        let status = requests.get("former-contact-42").await.ok()?.status?;
        (status.phase == Some(ErasurePhase::Completed)).then_some(status)
    })
    .await;
    let outcome = |policy: &str| {
        status
            .targets
            .iter()
            .find(|t| t.policy == policy)
            .unwrap_or_else(|| panic!("{policy} in {:?}", status.targets))
            .clone()
    };
    assert_eq!((outcome("contact-persons").outcome.as_str(), outcome("contact-persons").erased), ("Erased", 1));
    assert_eq!((outcome("usage-data").outcome.as_str(), outcome("usage-data").erased), ("Erased", 1));
    assert_eq!(
        (outcome("customer-call-recordings").outcome.as_str(), outcome("customer-call-recordings").erased),
        ("Erased", 1)
    );
    assert_eq!((outcome("traffic-data").outcome.as_str(), outcome("traffic-data").matched), ("Retained", 1));
    assert!(outcome("traffic-data").retained_until.unwrap().0 > now + (179 * 24).hours());
    let support = outcome("support-call-recordings");
    assert_eq!(support.outcome, "NotSearched", "in scope, but it holds no identity: listed, not hidden");
    assert!(support.message.as_deref().unwrap_or_default().contains("no subject fields"), "{support:?}");
    assert_eq!(status.summary.as_ref().map(|s| s.not_searched), Some(1));
    assert_eq!(status.subject_digests.len(), 3);

    // What is left, store by store.
    let left: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT id FROM {contacts} ORDER BY id")))
        .fetch_all(&mut pg)
        .await
        .unwrap();
    assert_eq!(
        left,
        [3, 4],
        "the contract that ended 10 days ago and the subject are gone; one that ended today is not due yet"
    );
    let left: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT id FROM {cdrs} ORDER BY id")))
        .fetch_all(&mut my)
        .await
        .unwrap();
    assert_eq!(left, [4], "records past six months and the subject's recent call are gone");
    let listed = s3.client().list_objects_v2().bucket(&bucket).send().await.unwrap();
    let remaining: BTreeSet<String> = listed.contents().iter().filter_map(|o| o.key().map(str::to_owned)).collect();
    let expected: BTreeSet<String> = [keys[2].clone(), keys[4].clone()].into();
    assert_eq!(remaining, expected, "recent support calls and customer c-10420 stay");
    search(reqwest::Method::POST, &format!("{index}/_refresh"), None).await;
    let hits =
        search(reqwest::Method::POST, &format!("{index}/_search"), Some(json!({"size": 10, "sort": ["_id"]}))).await;
    let ids: Vec<String> =
        hits["hits"]["hits"].as_array().unwrap().iter().map(|h| h["_id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(ids, ["2", "3"], "traffic past six months is gone; the subject's recent traffic is retained");

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(30), operator).await.expect("the operator shuts down").unwrap();
}
