//! The search store against the real OpenSearch (`tests/env/servers/opensearch.sh`):
//! exactly the due documents go, expired indices are dropped whole only when
//! every document in them is due, erasure matches whole values only.
mod support;

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use delenda::api::Mode;
use delenda::api::account::Dropped;
use delenda::api::policy::Target;
use delenda::stores::search::{SearchSettings, SearchStore};
use delenda::stores::{Cutoff, PurgeOptions, Store, StoreError, Subject};
use jiff::{Timestamp, ToSpan};
use proptest::test_runner::{Config, TestRunner};
use reqwest::Method;
use serde_json::{Value, json};
use support::search::{Cleanup, call, create_index, exists, index_docs, snapshot, store};

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
                let _cleanup = Cleanup::indices(&[&pattern]);
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
    let _cleanup = Cleanup::indices(&[&format!("{prefix}-*")]);
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
    assert_eq!(report.account.dropped, vec![Dropped { name: all_old.clone(), records: 2 }]);
    assert_eq!(report.account.not_due, Some(2), "one later document and one without a time");
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
    let _cleanup = Cleanup::indices(&[&index]);
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
async fn erasure_matches_identities_as_whole_values_of_their_kind() {
    let store = store();
    let index = support::unique("dl-search-erase");
    let _cleanup = Cleanup::indices(&[&index]);
    create_index(&index, "date").await;
    let docs: Vec<(String, Value)> = [
        ("jan", json!({ "email": "jan@example.com", "user": "jan@example.com", "client": { "ip": "10.0.0.1" } })),
        ("jan-upper", json!({ "email": "Jan@Example.COM" })),
        ("jan-spaced", json!({ "email": " jan@example.com\u{a0}" })),
        ("user-field", json!({ "user": "JAN@example.com" })),
        ("jan-longer", json!({ "email": "jan@example.com.evil" })),
        ("jan-inside", json!({ "email": "mary.jan@example.com" })),
        ("jan-dotless", json!({ "email": "jan@examplexcom" })),
        ("jorg-upper", json!({ "email": "JÖRG@EXÄMPLE.COM" })),
        ("ip", json!({ "client": { "ip": "10.0.0.2" } })),
        ("ip-near", json!({ "client": { "ip": "10.0.0.20" } })),
        ("phone-plus", json!({ "phone": "+31 6 1234-5678" })),
        ("phone-00", json!({ "phone": "0031612345678" })),
        ("phone-longer", json!({ "phone": "+316123456789" })),
        ("phone-national", json!({ "phone": "31612345678" })),
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
            { "identity": "ipAddress", "field": "client.ip" },
            { "identity": "phone", "field": "phone" }
        ]),
    );
    let before = snapshot(&index).await;

    // Shaped like addresses, but with characters a regular expression or a
    // query string would read: they match nothing.
    let odd = ["\"jan@example.com\"", "jan*@example.com", "j.n@example.com", "jan@example.c.m", "(jan)@example.com"];
    let s = Subject::new(odd.iter().map(|v| ("email".parse().unwrap(), (*v).to_owned())));
    let report = store.erase_subject(&t, &s, &enforce()).await.unwrap();
    assert_eq!(report.account.deleted, 0, "{report:?}");
    assert_eq!(snapshot(&index).await, before);

    let s = Subject::new([
        ("email".parse().unwrap(), "JAN@example.com".to_owned()),
        ("ipAddress".parse().unwrap(), "10.0.0.2".to_owned()),
        ("phone".parse().unwrap(), "+31 6 1234 5678".to_owned()),
    ]);
    assert_eq!(store.count_subject(&t, &s).await.unwrap(), 7);
    let report = store.erase_subject(&t, &s, &enforce()).await.unwrap();
    assert_eq!(
        (report.account.matched, report.account.deleted, report.account.remaining.unwrap()),
        (7, 7, 0),
        "{report:?}"
    );
    let gone: BTreeSet<_> = ["jan", "jan-upper", "jan-spaced", "user-field", "ip", "phone-plus", "phone-00"]
        .into_iter()
        .map(|id| (index.clone(), id.to_owned()))
        .collect();
    assert_eq!(snapshot(&index).await, before.difference(&gone).cloned().collect());

    // Case beyond ASCII, which a case-insensitive term query does not fold.
    let s = Subject::new([("email".parse().unwrap(), "jörg@exämple.com".to_owned())]);
    assert_eq!(store.erase_subject(&t, &s, &enforce()).await.unwrap().account.deleted, 1);
}

#[tokio::test]
async fn malformed_identities_are_refused_naming_only_their_kind() {
    let store = store();
    let index = support::unique("dl-search-refuse");
    let _cleanup = Cleanup::indices(&[&index]);
    create_index(&index, "date").await;
    index_docs(&index, &[("1".into(), json!({ "email": "jan@example.com", "phone": "+31612345678" }))]).await;
    let t = target(
        &index,
        json!([
            { "identity": "email", "field": "email" },
            { "identity": "ipAddress", "field": "client.ip" },
            { "identity": "phone", "field": "phone" }
        ]),
    );
    for (kind, value) in [
        ("email", "*"),
        ("email", "jan*"),
        ("email", "jan"),
        ("email", ""),
        ("email", "jan@example.com OR 1=1"),
        ("email", "@example.com"),
        ("ipAddress", "10.0.0"),
        ("phone", "12345"),
        ("phone", "+31 6 CALL ME"),
    ] {
        let s = Subject::new([(kind.parse().unwrap(), value.to_owned())]);
        let err = store.erase_subject(&t, &s, &enforce()).await.unwrap_err();
        assert_eq!(err.error.reason(), "InvalidIdentity", "{kind} {value:?}: {err}");
        let text = err.to_string();
        assert!(text.contains(kind), "the error names the kind: {text}");
        assert!(value.len() < 3 || !text.contains(value), "the error never shows the value: {text}");
        assert_eq!(err.report.account.deleted, 0);
        let err = store.count_subject(&t, &s).await.unwrap_err();
        assert_eq!(err.reason(), "InvalidIdentity", "{err}");
    }
    assert_eq!(snapshot(&index).await.len(), 1);
}

#[tokio::test]
async fn deletes_thousands_of_documents_as_one_sliced_task() {
    let store = store();
    let index = support::unique("dl-search-bulk");
    let _cleanup = Cleanup::indices(&[&index]);
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
    let _cleanup = Cleanup::indices(&[&index]);
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
