//! The search store against the real OpenSearch (`tests/env/servers/opensearch.sh`):
//! exactly the due documents go, expired indices are dropped whole only when
//! every document in them is due, erasure matches whole values only.
mod support;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use delenda::api::Mode;
use delenda::api::policy::Target;
use delenda::stores::search::{SearchSettings, SearchStore};
use delenda::stores::{Cutoff, PurgeOptions, Store, StoreError, Subject};
use jiff::{Timestamp, ToSpan};
use proptest::test_runner::{Config, TestRunner};
use reqwest::{Client, Method};
use serde_json::{Value, json};

const SERVER: &str = "OpenSearch";

fn base() -> String {
    support::setting("OPENSEARCH_URL", SERVER).trim_end_matches('/').to_owned()
}

fn store() -> SearchStore {
    SearchStore::new(SearchSettings::new(base())).unwrap()
}

async fn call(method: Method, path: &str, body: Option<Value>) -> Value {
    let mut req = Client::new().request(method, format!("{}/{path}", base()));
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = support::reach(req.send().await, SERVER);
    let status = resp.status();
    let value: Value = resp.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{path}: {status} {value}");
    value
}

async fn create_index(name: &str, time_type: &str) {
    let mapping = json!({
        "settings": { "number_of_shards": 1, "number_of_replicas": 0 },
        "mappings": { "properties": {
            "@timestamp": { "type": time_type },
            "email": { "type": "keyword" },
            "client": { "properties": { "ip": { "type": "ip" } } }
        } }
    });
    call(Method::PUT, name, Some(mapping)).await;
}

/// Indexes documents (id, body) and refreshes.
async fn index_docs(index: &str, docs: &[(String, Value)]) {
    if docs.is_empty() {
        return;
    }
    let mut bulk = String::new();
    for (id, doc) in docs {
        bulk.push_str(&json!({ "index": { "_index": index, "_id": id } }).to_string());
        bulk.push('\n');
        bulk.push_str(&doc.to_string());
        bulk.push('\n');
    }
    let resp = support::reach(
        Client::new()
            .post(format!("{}/_bulk?refresh=true", base()))
            .header("content-type", "application/x-ndjson")
            .body(bulk)
            .send()
            .await,
        SERVER,
    );
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["errors"], json!(false), "bulk: {answer}");
}

/// Every (index, id) the pattern holds.
async fn snapshot(pattern: &str) -> BTreeSet<(String, String)> {
    let answer = call(
        Method::POST,
        &format!("{pattern}/_search?allow_no_indices=true&ignore_unavailable=true"),
        Some(json!({ "size": 10000, "_source": false, "query": { "match_all": {} } })),
    )
    .await;
    answer["hits"]["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["_index"].as_str().unwrap().to_owned(), h["_id"].as_str().unwrap().to_owned()))
        .collect()
}

async fn exists(index: &str) -> bool {
    support::reach(Client::new().head(format!("{}/{index}", base())).send().await, SERVER).status().is_success()
}

fn target(pattern: &str, subject_fields: Value) -> Target {
    serde_json::from_value(json!({
        "name": "t", "dataStoreRef": { "name": "os" },
        "logs": { "indexPattern": pattern, "timeField": "@timestamp" },
        "subjectFields": subject_fields
    }))
    .unwrap()
}

fn base_time() -> Timestamp {
    "2024-01-01T00:00:00Z".parse().unwrap()
}

fn cutoff(at: Timestamp) -> Cutoff {
    Cutoff::planned(at, Timestamp::now()).unwrap()
}

fn enforce() -> PurgeOptions {
    PurgeOptions::new(Mode::Enforce)
}

#[test]
fn purge_deletes_exactly_the_documents_before_the_cutoff() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = store();
    let mut runner = TestRunner::new(Config { cases: 12, failure_persistence: None, ..Config::default() });
    // Per index: documents with an hour offset (or no time at all).
    let docs = proptest::collection::vec(proptest::option::weighted(0.9, 0i64..48), 0..8);
    let strategy = (proptest::collection::vec(docs, 1..4), 0i64..50, proptest::bool::ANY);
    runner
        .run(&strategy, |(indices, cutoff_hour, drop_whole)| {
            rt.block_on(async {
                let prefix = support::unique("dl-search-prop");
                let pattern = format!("{prefix}-*");
                let at = base_time().checked_add(cutoff_hour.hours()).unwrap();
                let mut due = BTreeSet::new();
                for (i, docs) in indices.iter().enumerate() {
                    let index = format!("{prefix}-{i}");
                    create_index(&index, "date").await;
                    let mut batch = Vec::new();
                    for (j, hour) in docs.iter().enumerate() {
                        let id = format!("{j}");
                        let doc = match hour {
                            Some(h) => {
                                let time = base_time().checked_add(h.hours()).unwrap();
                                if time < at {
                                    due.insert((index.clone(), id.clone()));
                                }
                                json!({ "@timestamp": time.to_string(), "message": "x" })
                            }
                            None => json!({ "message": "no time" }),
                        };
                        batch.push((id, doc));
                    }
                    index_docs(&index, &batch).await;
                }
                let before = snapshot(&pattern).await;
                let mut t = target(&pattern, json!([]));
                t.logs.as_mut().unwrap().delete_expired_indices = drop_whole;
                let c = cutoff(at);
                assert_eq!(store.count_due(&t, &c).await.unwrap(), due.len() as u64);
                let report = store.purge_due(&t, &c, &enforce()).await.unwrap();
                assert_eq!(
                    (report.account.matched, report.account.deleted, report.account.remaining.unwrap()),
                    (due.len() as u64, due.len() as u64, 0),
                    "{report:?}"
                );
                let after = snapshot(&pattern).await;
                let expected: BTreeSet<_> = before.difference(&due).cloned().collect();
                assert_eq!(after, expected);
                support::reach(Client::new().delete(format!("{}/{pattern}", base())).send().await, SERVER);
            });
            Ok(())
        })
        .unwrap();
}

#[tokio::test]
async fn only_indices_whose_every_document_is_due_are_dropped_whole() {
    let store = store();
    let prefix = support::unique("dl-search-whole");
    let old = |h: i64| json!({ "@timestamp": base_time().checked_add(h.hours()).unwrap().to_string() });
    let (all_old, mixed, untimed) = (format!("{prefix}-old"), format!("{prefix}-mixed"), format!("{prefix}-untimed"));
    for i in [&all_old, &mixed, &untimed] {
        create_index(i, "date").await;
    }
    index_docs(&all_old, &[("1".into(), old(1)), ("2".into(), old(2))]).await;
    index_docs(&mixed, &[("1".into(), old(1)), ("2".into(), old(100))]).await;
    index_docs(&untimed, &[("1".into(), old(1)), ("2".into(), json!({ "message": "no time" }))]).await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let options = enforce().with_progress({
        let seen = seen.clone();
        move |p| seen.lock().unwrap().push(p.clone())
    });
    let report = store
        .purge_due(
            &target(&format!("{prefix}-*"), json!([])),
            &cutoff(base_time().checked_add(10.hours()).unwrap()),
            &options,
        )
        .await
        .unwrap();
    assert_eq!(
        (report.account.matched, report.account.deleted, report.account.remaining.unwrap()),
        (4, 4, 0),
        "{report:?}"
    );
    assert!(!exists(&all_old).await, "the wholly expired index is dropped");
    assert!(exists(&mixed).await && exists(&untimed).await);
    assert_eq!(
        snapshot(&format!("{prefix}-*")).await,
        BTreeSet::from([(mixed.clone(), "2".to_owned()), (untimed.clone(), "2".to_owned())])
    );
    assert!(!seen.lock().unwrap().is_empty(), "progress was reported");
    assert_eq!(
        call(Method::GET, &format!("{mixed}/_settings"), None).await[&mixed]["settings"]["index"]["blocks"],
        Value::Null,
        "no write block is left behind"
    );
}

#[tokio::test]
async fn the_cutoff_is_strict_even_for_nanosecond_times() {
    let store = store();
    let index = support::unique("dl-search-nanos");
    create_index(&index, "date_nanos").await;
    let at: Timestamp = "2024-01-01T00:00:00.000500Z".parse().unwrap();
    index_docs(
        &index,
        &[
            ("before".into(), json!({ "@timestamp": "2023-12-31T23:59:59.999999999Z" })),
            ("same-ms-before".into(), json!({ "@timestamp": "2024-01-01T00:00:00.000100Z" })),
            ("at".into(), json!({ "@timestamp": "2024-01-01T00:00:00.000500Z" })),
            ("after".into(), json!({ "@timestamp": "2024-01-01T00:00:00.001Z" })),
        ],
    )
    .await;
    let report = store.purge_due(&target(&index, json!([])), &cutoff(at), &enforce()).await.unwrap();
    assert_eq!(report.account.deleted, 1, "{report:?}");
    let left: BTreeSet<String> = snapshot(&index).await.into_iter().map(|(_, id)| id).collect();
    // The cutoff's own millisecond is kept: it is never the other way round.
    assert_eq!(left, BTreeSet::from(["same-ms-before".to_owned(), "at".to_owned(), "after".to_owned()]));
}

#[tokio::test]
async fn erasure_removes_whole_value_matches_only_and_hostile_identities_match_nothing() {
    let store = store();
    let index = support::unique("dl-search-erase");
    create_index(&index, "date").await;
    let docs: Vec<(String, Value)> = [
        ("jan", json!({ "email": "jan@example.com", "user": "jan@example.com", "client": { "ip": "10.0.0.1" } })),
        ("jan-upper", json!({ "email": "Jan@example.com" })),
        ("jan-prefix", json!({ "email": "jan@example.com.evil" })),
        ("user-field", json!({ "user": "jan@example.com" })),
        ("ip", json!({ "client": { "ip": "10.0.0.2" } })),
        ("space", json!({ "email": "a b" })),
        ("unicode", json!({ "email": "jörg@exämple.com" })),
        ("dots", json!({ "email": ".." })),
        ("other", json!({ "email": "piet@example.com", "user": "piet" })),
    ]
    .into_iter()
    .map(|(id, d)| (id.to_owned(), d))
    .collect();
    index_docs(&index, &docs).await;
    let t = target(
        &index,
        json!([
            { "identity": "email", "field": "email" },
            { "identity": "email", "field": "user" },
            { "identity": "ipAddress", "field": "client.ip" }
        ]),
    );
    let before = snapshot(&index).await;

    let hostile = [
        "*",
        "jan*",
        "jan@example.com OR 1=1",
        "\"jan@example.com\"",
        "jan",
        "",
        &"x".repeat(5000),
        "a  b",
        "jörg",
        "not-an-ip",
    ];
    let s = Subject::new(
        hostile
            .iter()
            .map(|v| ("email".parse().unwrap(), (*v).to_owned()))
            .chain([("ipAddress".parse().unwrap(), "not-an-ip".to_owned())]),
    );
    let report = store.erase_subject(&t, &s, &enforce()).await.unwrap();
    assert_eq!(report.account.deleted, 0, "{report:?}");
    assert_eq!(snapshot(&index).await, before);

    let s = Subject::new([
        ("email".parse().unwrap(), "jan@example.com".to_owned()),
        ("ipAddress".parse().unwrap(), "10.0.0.2".to_owned()),
    ]);
    assert_eq!(store.count_subject(&t, &s).await.unwrap(), 3);
    let report = store.erase_subject(&t, &s, &enforce()).await.unwrap();
    assert_eq!(
        (report.account.matched, report.account.deleted, report.account.remaining.unwrap()),
        (3, 3, 0),
        "{report:?}"
    );
    let gone: BTreeSet<_> = ["jan", "user-field", "ip"].into_iter().map(|id| (index.clone(), id.to_owned())).collect();
    assert_eq!(snapshot(&index).await, before.difference(&gone).cloned().collect());

    let s = Subject::new([
        ("email".parse().unwrap(), "jörg@exämple.com".to_owned()),
        ("email".parse().unwrap(), "a b".to_owned()),
        ("email".parse().unwrap(), "..".to_owned()),
    ]);
    assert_eq!(store.erase_subject(&t, &s, &enforce()).await.unwrap().account.deleted, 3);
}

#[tokio::test]
async fn deletes_thousands_of_documents_as_one_sliced_task() {
    let store = store();
    let index = support::unique("dl-search-bulk");
    create_index(&index, "date").await;
    let docs: Vec<(String, Value)> =
        (0..6000).map(|i| (i.to_string(), json!({ "@timestamp": base_time().checked_add((i % 100).hours()).unwrap().to_string(), "email": format!("u{i}@example.com") }))).collect();
    for chunk in docs.chunks(2000) {
        index_docs(&index, chunk).await;
    }
    let mut options = enforce();
    options.max_batch_size = 1000;
    let started = Instant::now();
    let report = store
        .purge_due(&target(&index, json!([])), &cutoff(base_time().checked_add(50.hours()).unwrap()), &options)
        .await
        .unwrap();
    let took = started.elapsed();
    println!(
        "deleted {} documents in {} batches in {took:?} ({:.0} documents/s)",
        report.account.deleted,
        report.batches,
        report.account.deleted as f64 / took.as_secs_f64()
    );
    assert_eq!((report.account.matched, report.account.deleted, report.account.remaining.unwrap()), (3000, 3000, 0));
    assert_eq!(snapshot(&index).await.len(), 3000);
}

#[tokio::test]
async fn errors_say_what_is_wrong() {
    let store = store();
    let c = cutoff(base_time());
    let err = store.count_due(&target("dl-no-such-index-anywhere", json!([])), &c).await.unwrap_err();
    assert!(matches!(err, StoreError::MissingTable { .. }), "{err}");

    let index = support::unique("dl-search-types");
    create_index(&index, "keyword").await;
    index_docs(&index, &[("1".into(), json!({ "@timestamp": "x" }))]).await;
    let err = store.count_due(&target(&index, json!([])), &c).await.unwrap_err();
    assert!(matches!(err, StoreError::WrongColumnType { .. }), "{err}");
    let mut no_field = target(&index, json!([]));
    no_field.logs.as_mut().unwrap().time_field = "written_at".parse().unwrap();
    let err = store.count_due(&no_field, &c).await.unwrap_err();
    assert!(matches!(err, StoreError::MissingColumn { .. }), "{err}");

    let nowhere = SearchStore::new(SearchSettings::new("http://127.0.0.1:9")).unwrap();
    let err = nowhere.probe().await.unwrap_err();
    assert!(matches!(err, StoreError::Unreachable { .. }), "{err}");

    let probe = store.probe().await.unwrap();
    assert!(probe.server_version.starts_with("opensearch 2."), "{probe:?}");
    // A wildcard pattern matching nothing is nothing to do, not an error.
    assert_eq!(store.count_due(&target("dl-nothing-matches-*", json!([])), &c).await.unwrap(), 0);
}
