//! A policy's `Valid` condition checks its targets against their real
//! stores before any run (issue 15, item 1): the DataStore exists, the
//! table and its columns, the bucket, the index and the file root are
//! there. A typo shows while the schedule is still months away, a fix shows
//! without a run, and a store that cannot answer now is not called wrong.
mod support;

use support::{eventually, manifest};

use std::time::Duration;

use delenda::api::{DataStore, RetentionPolicy};
use k8s_openapi::api::core::v1::{Event, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};

fn settings(ns: &str, roots: Vec<std::path::PathBuf>) -> delenda::controller::Settings {
    delenda::controller::Settings {
        identity: format!("test-{ns}"),
        namespace: Some(ns.to_owned()),
        lease_namespace: Some(ns.to_owned()),
        allowed_roots: roots,
        ..Default::default()
    }
}

/// A policy with one target, whose schedule is far away (1 January): any
/// run in these tests is one the test asked for.
fn policy(name: &str, target: Value) -> RetentionPolicy {
    manifest(json!({
        "apiVersion": "delenda.dev/v1alpha1", "kind": "RetentionPolicy", "metadata": {"name": name},
        "spec": {"category": name, "description": "checked before its first run", "responsibleParty": "self",
            "legalBasis": "Contract", "retention": {"period": "30d"},
            "schedule": {"cron": "0 3 1 1 *", "timeZone": "Europe/Amsterdam"}, "mode": "Enforce",
            "targets": [target]}
    }))
}

async fn create<K>(api: &Api<K>, object: K)
where
    K: kube::Resource + Clone + serde::Serialize + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.create(&PostParams::default(), &object).await.unwrap();
}

/// The policy's Valid condition once the operator has judged its targets:
/// any reason but the bare spec check's.
async fn judged(policies: &Api<RetentionPolicy>, name: &str) -> Condition {
    eventually(&format!("policy {name}'s targets to be checked"), 60, async || {
        let status = policies.get(name).await.ok()?.status?;
        status.conditions.into_iter().find(|c| c.type_ == "Valid")
    })
    .await
}

#[tokio::test]
async fn targets_that_do_not_resolve_are_invalid_before_any_run_and_a_fix_shows_without_one() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let client = support::kube_client().await;
    support::install_crds(&client).await;
    let ns = support::fresh_namespace(&client, "resolve").await;

    let url = support::setting("POSTGRES_URL", "PostgreSQL");
    let parsed = url::Url::parse(&url).unwrap();
    let mut conn = support::reach(PgConnection::connect(&url).await, "PostgreSQL");
    let table = support::unique("calls").replace('-', "_");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE {table} (id bigint PRIMARY KEY, ended_at timestamptz);
         INSERT INTO {table} VALUES (1, now() - interval '400 days'), (2, now());"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    let s3 = support::s3::store();
    let bucket = support::s3::new_bucket(&s3, false, false).await;
    let logs = tempfile::tempdir().unwrap();

    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    create(
        &secrets,
        manifest(json!({"metadata": {"name": "db"},
            "stringData": {"username": parsed.username(), "password": parsed.password().unwrap()}})),
    )
    .await;
    create(
        &secrets,
        manifest(json!({"metadata": {"name": "s3-keys"}, "stringData": {
            "accessKeyId": support::setting("S3_ACCESS_KEY_ID", "the S3 server"),
            "secretAccessKey": support::setting("S3_SECRET_ACCESS_KEY", "the S3 server")}})),
    )
    .await;
    let stores: Api<DataStore> = Api::namespaced(client.clone(), &ns);
    for (name, spec) in [
        (
            "crm",
            json!({"postgres": {"host": "127.0.0.1", "port": parsed.port().unwrap(),
                "database": parsed.path().trim_start_matches('/'), "credentialsSecret": {"name": "db"}, "tls": "Disable"}}),
        ),
        (
            "recordings",
            json!({"s3": {"endpoint": support::setting("S3_ENDPOINT", "the S3 server"),
                "region": support::setting("S3_REGION", "the S3 server"), "pathStyle": true,
                "credentialsSecret": {"name": "s3-keys"}}}),
        ),
        (
            "archive",
            json!({"postgres": {"host": "127.0.0.1", "port": parsed.port().unwrap(),
                "database": parsed.path().trim_start_matches('/'), "credentialsSecret": {"name": "archive-db"}, "tls": "Disable"}}),
        ),
        ("traffic", json!({"opensearch": {"url": support::setting("OPENSEARCH_URL", "OpenSearch")}})),
        ("nowhere", json!({"opensearch": {"url": "http://127.0.0.1:9"}})),
        ("web-logs", json!({"files": {"root": logs.path().join("not-mounted").to_str().unwrap()}})),
    ] {
        create(
            &stores,
            manifest(json!({"apiVersion": "delenda.dev/v1alpha1", "kind": "DataStore",
                "metadata": {"name": name}, "spec": spec})),
        )
        .await;
    }
    let index = support::unique("dl-resolve");
    let policies: Api<RetentionPolicy> = Api::namespaced(client.clone(), &ns);
    let cases: Vec<(&str, Value)> = vec![
        (
            "resolves",
            json!({"name": "calls", "dataStoreRef": {"name": "crm"},
            "table": {"name": table, "timeColumn": "ended_at"}}),
        ),
        (
            "ghost-store",
            json!({"name": "calls", "dataStoreRef": {"name": "crm-old"},
            "table": {"name": table, "timeColumn": "ended_at"}}),
        ),
        (
            "no-secret",
            json!({"name": "calls", "dataStoreRef": {"name": "archive"},
            "table": {"name": table, "timeColumn": "ended_at"}}),
        ),
        (
            "typo-table",
            json!({"name": "calls", "dataStoreRef": {"name": "crm"},
            "table": {"name": format!("{table}_x"), "timeColumn": "ended_at"}}),
        ),
        (
            "typo-column",
            json!({"name": "calls", "dataStoreRef": {"name": "crm"},
            "table": {"name": table, "timeColumn": "endedat"}}),
        ),
        (
            "no-bucket",
            json!({"name": "recordings", "dataStoreRef": {"name": "recordings"},
            "objects": {"bucket": format!("{bucket}-gone"), "prefix": "calls/"}}),
        ),
        (
            "present-bucket",
            json!({"name": "recordings", "dataStoreRef": {"name": "recordings"},
            "objects": {"bucket": bucket, "prefix": "calls/"}}),
        ),
        (
            "no-index",
            json!({"name": "traffic", "dataStoreRef": {"name": "traffic"},
            "logs": {"indexPattern": index, "timeField": "@timestamp"}}),
        ),
        // Tomorrow's daily index: a pattern may match nothing yet.
        (
            "no-index-yet",
            json!({"name": "traffic", "dataStoreRef": {"name": "traffic"},
            "logs": {"indexPattern": format!("{index}-*"), "timeField": "@timestamp"}}),
        ),
        (
            "unreachable",
            json!({"name": "traffic", "dataStoreRef": {"name": "nowhere"},
            "logs": {"indexPattern": "traffic-*", "timeField": "@timestamp"}}),
        ),
        (
            "no-root",
            json!({"name": "visits", "dataStoreRef": {"name": "web-logs"},
            "files": {"glob": "visits-*.jsonl", "age": "ModificationTime", "format": "JsonLines"}}),
        ),
    ];
    for (name, target) in &cases {
        create(&policies, policy(name, target.clone())).await;
    }

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let operator = tokio::spawn(delenda::controller::run(
        client.clone(),
        settings(&ns, vec![logs.path().to_owned()]),
        async move {
            let _ = stopped.await;
        },
    ));

    // (policy, Valid, reason, a word its message must hold)
    let expected: [(&str, &str, &str, &str); 11] = [
        ("resolves", "True", "Resolved", "every target resolves"),
        ("ghost-store", "False", "DataStoreNotFound", "crm-old"),
        ("no-secret", "False", "SecretNotFound", "archive-db"),
        ("typo-table", "False", "MissingTable", &format!("{table}_x")),
        ("typo-column", "False", "MissingColumn", "endedat"),
        ("no-bucket", "False", "MissingTable", &format!("{bucket}-gone")),
        ("present-bucket", "True", "Resolved", "every target resolves"),
        ("no-index", "False", "MissingTable", &index),
        ("no-index-yet", "True", "Resolved", "every target resolves"),
        // Cannot answer now: not called wrong, and said so.
        ("unreachable", "True", "Valid", "not yet checked"),
        ("no-root", "False", "MissingTable", "not-mounted"),
    ];
    for (name, status, reason, word) in expected {
        let valid = judged(&policies, name).await;
        assert_eq!((valid.status.as_str(), valid.reason.as_str()), (status, reason), "{name}: {valid:?}");
        assert!(valid.message.contains(word), "{name}: the message should name {word:?}: {valid:?}");
        let p = policies.get(name).await.unwrap();
        assert!(p.status.as_ref().unwrap().last_run.is_none(), "{name} ran, but nothing asked it to");
        let stalled = p.status.unwrap().conditions.iter().any(|c| c.type_ == "Stalled" && c.status == "True");
        assert_eq!(stalled, status == "False", "{name}: a target that does not resolve needs a person");
    }

    // A Warning Event, once, names what is wrong.
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let event = eventually("a Warning Event for the misspelt column", 30, async || {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items.into_iter().find(|e| {
            e.reason.as_deref() == Some("MissingColumn") && e.involved_object.name.as_deref() == Some("typo-column")
        })
    })
    .await;
    assert_eq!(event.type_.as_deref(), Some("Warning"));
    assert!(event.message.as_deref().unwrap_or_default().contains("endedat"), "{event:?}");

    // The fix is an edit of the spec: Valid turns True, and still no run.
    let fix = json!({"spec": {"targets": [{"name": "calls", "dataStoreRef": {"name": "crm"},
        "table": {"name": table, "timeColumn": "ended_at"}}]}});
    policies.patch("typo-column", &PatchParams::default(), &Patch::Merge(&fix)).await.unwrap();
    let fixed = eventually("the fixed column to resolve", 60, async || {
        let status = policies.get("typo-column").await.ok()?.status?;
        status.conditions.into_iter().find(|c| c.type_ == "Valid" && c.status == "True")
    })
    .await;
    assert_eq!(fixed.reason, "Resolved", "{fixed:?}");
    assert!(policies.get("typo-column").await.unwrap().status.unwrap().last_run.is_none());
    let rows: (i64,) = sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(rows.0, 2, "checking targets deletes nothing");

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(30), operator).await.expect("the operator shuts down").unwrap();
}

#[tokio::test]
async fn a_target_that_does_not_resolve_holds_the_run_until_it_does() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let client = support::kube_client().await;
    support::install_crds(&client).await;
    let ns = support::fresh_namespace(&client, "resolve-run").await;

    let url = support::setting("POSTGRES_URL", "PostgreSQL");
    let parsed = url::Url::parse(&url).unwrap();
    let mut conn = support::reach(PgConnection::connect(&url).await, "PostgreSQL");
    let table = support::unique("tickets").replace('-', "_");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE {table} (id bigint PRIMARY KEY, closed_at timestamptz);
         INSERT INTO {table} VALUES (1, now() - interval '400 days'), (2, now() - interval '401 days'), (3, now());"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    let secrets: Api<Secret> = Api::namespaced(client.clone(), &ns);
    create(
        &secrets,
        manifest(json!({"metadata": {"name": "db"},
            "stringData": {"username": parsed.username(), "password": parsed.password().unwrap()}})),
    )
    .await;
    let stores: Api<DataStore> = Api::namespaced(client.clone(), &ns);
    create(
        &stores,
        manifest(json!({"apiVersion": "delenda.dev/v1alpha1", "kind": "DataStore", "metadata": {"name": "crm"},
            "spec": {"postgres": {"host": "127.0.0.1", "port": parsed.port().unwrap(),
                "database": parsed.path().trim_start_matches('/'), "credentialsSecret": {"name": "db"}, "tls": "Disable"}}})),
    )
    .await;
    let archive = format!("{table}_archive");
    let mut p = policy(
        "tickets",
        json!({"name": "tickets", "dataStoreRef": {"name": "crm"},
        "table": {"name": table, "timeColumn": "closed_at"}}),
    );
    p.spec.targets.push(manifest(json!({"name": "archive", "dataStoreRef": {"name": "crm"},
        "table": {"name": archive, "timeColumn": "closed_at"}})));
    p.metadata.annotations = Some([("delenda.dev/run-now".to_owned(), "first".to_owned())].into());
    let policies: Api<RetentionPolicy> = Api::namespaced(client.clone(), &ns);
    create(&policies, p).await;

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let operator = tokio::spawn(delenda::controller::run(client.clone(), settings(&ns, vec![]), async move {
        let _ = stopped.await;
    }));
    let valid = judged(&policies, "tickets").await;
    assert_eq!((valid.status.as_str(), valid.reason.as_str()), ("False", "MissingTable"), "{valid:?}");
    assert!(valid.message.contains(&archive) && valid.message.contains("no run starts"), "{valid:?}");
    // Asked to run, it does not: a run would fail on the missing table.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(policies.get("tickets").await.unwrap().status.unwrap().last_run.is_none());
    let count = async |conn: &mut PgConnection| -> i64 {
        let (n,): (i64,) =
            sqlx::query_as(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}"))).fetch_one(conn).await.unwrap();
        n
    };
    assert_eq!(count(&mut conn).await, 3);

    // The table appears; the next look (here: a new run-now token) finds
    // it, and the run goes.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE {archive} (id bigint PRIMARY KEY, closed_at timestamptz)"
    )))
    .execute(&mut conn)
    .await
    .unwrap();
    let again = json!({"metadata": {"annotations": {"delenda.dev/run-now": "second"}}});
    policies.patch("tickets", &PatchParams::default(), &Patch::Merge(&again)).await.unwrap();
    let status = eventually("the run to finish", 90, async || {
        let status = policies.get("tickets").await.ok()?.status?;
        status.last_run.is_some().then_some(status)
    })
    .await;
    let run = status.last_run.as_ref().unwrap();
    assert_eq!(run.outcome.as_deref(), Some("Succeeded"), "{run:?}");
    let valid = status.conditions.iter().find(|c| c.type_ == "Valid").unwrap();
    assert_eq!((valid.status.as_str(), valid.reason.as_str()), ("True", "Resolved"), "{valid:?}");
    assert_eq!(count(&mut conn).await, 1);

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(30), operator).await.expect("the operator shuts down").unwrap();
}
