//! OpenSearch: `SearchStore::purge_due` against `_delete_by_query` with
//! `slices=auto` over the same pattern, on identical sets of daily indices
//! in the real OpenSearch (issue 13: 1M documents in 30 daily indices, half
//! due).
//!
//! Two shapes: documents spread over the month in every index (each index
//! half due: a purge inside indices), and daily indices holding their own
//! day (the older half wholly due: Delenda drops them whole with
//! `deleteExpiredIndices`, the baseline still deletes by query).

use delenda::api::Mode;
use delenda::api::policy::Target;
use delenda::stores::search::{SearchSettings, SearchStore};
use delenda::stores::{Cutoff, PurgeOptions, Store};
use jiff::{Timestamp, ToSpan};
use reqwest::Method;
use serde_json::{Value, json};

use super::{Row, Scale, median, timed};

const FULL_DOCS: u64 = 1_000_000;
const DAYS: u64 = 30;

fn base_url() -> String {
    std::env::var("OPENSEARCH_URL")
        .expect("OPENSEARCH_URL: start the servers with tests/env/up and load .testenv/env")
        .trim_end_matches('/')
        .to_owned()
}

async fn call(method: Method, path: &str, body: Option<Value>) -> Value {
    let mut req = reqwest::Client::new().request(method, format!("{}/{path}", base_url()));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp =
        req.send().await.unwrap_or_else(|e| panic!("cannot reach OpenSearch ({e}: {e:?}); start it with tests/env/up"));
    let status = resp.status();
    let value: Value = resp.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{path}: {status} {value}");
    value
}

async fn bulk(lines: String) {
    let resp = reqwest::Client::new()
        .post(format!("{}/_bulk", base_url()))
        .header("content-type", "application/x-ndjson")
        .body(lines)
        .send()
        .await
        .expect("OpenSearch answers a bulk request");
    let value: Value = resp.json().await.expect("a bulk answer");
    assert_eq!(value["errors"], false, "bulk failed: {}", &value.to_string()[..500.min(value.to_string().len())]);
}

fn day0() -> Timestamp {
    "2026-01-01T00:00:00Z".parse().unwrap()
}

/// Builds `DAYS` daily indices `{prefix}-2026.01.DD` holding `docs`
/// documents; `spread` puts times over the whole month in every index,
/// otherwise each index holds its own day. Returns the documents due for
/// the cutoff at day 15.
async fn build(prefix: &str, docs: u64, spread: bool) -> u64 {
    let per_index = docs / DAYS;
    let mut due = 0;
    for d in 0..DAYS {
        let index = format!("{prefix}-2026.01.{:02}", d + 1);
        call(
            Method::PUT,
            &index,
            Some(json!({"settings": {"number_of_shards": 1, "number_of_replicas": 0, "refresh_interval": "-1"},
                "mappings": {"properties": {"@timestamp": {"type": "date"}, "msg": {"type": "keyword"}}}})),
        )
        .await;
        let mut lines = String::new();
        for i in 0..per_index {
            // Spread: every other document in the due half of the month,
            // scattered over it; else within day d.
            let at = if spread {
                let half = DAYS / 2 * 1440;
                day0() + (((i / 2 * 7919 + d * 31) % half + (i % 2) * half) as i64).minutes()
            } else {
                day0() + ((d as i64) * 24).hours() + ((i % 1440) as i64).minutes()
            };
            if at < cutoff_at() {
                due += 1;
            }
            lines.push_str(&format!("{{\"index\":{{\"_index\":\"{index}\"}}}}\n"));
            lines.push_str(&format!("{{\"@timestamp\":\"{at}\",\"msg\":\"m{i}\"}}\n"));
            if lines.len() > 4 << 20 {
                bulk(std::mem::take(&mut lines)).await;
            }
        }
        if !lines.is_empty() {
            bulk(lines).await;
        }
    }
    call(Method::PUT, &format!("{prefix}-*/_settings"), Some(json!({"index": {"refresh_interval": null}}))).await;
    call(Method::POST, &format!("{prefix}-*/_refresh"), None).await;
    due
}

fn cutoff_at() -> Timestamp {
    day0() + (15 * 24).hours()
}

async fn count(prefix: &str) -> u64 {
    call(Method::POST, &format!("{prefix}-*/_refresh"), None).await;
    call(Method::GET, &format!("{prefix}-*/_count"), None).await["count"].as_u64().unwrap_or(0)
}

async fn due_left(prefix: &str) -> u64 {
    let query = json!({"query": {"range": {"@timestamp": {"lt": cutoff_at().to_string()}}}});
    call(Method::POST, &format!("{prefix}-*/_count"), Some(query)).await["count"].as_u64().unwrap_or(0)
}

async fn drop_all(prefix: &str) {
    let _ = reqwest::Client::new().delete(format!("{}/{prefix}-*", base_url())).send().await;
}

/// `_delete_by_query` with `slices=auto`, run as a task that the server
/// itself waits on (`GET _tasks/ID?wait_for_completion=true` answers the
/// moment it ends), then a refresh, as `refresh=true` would. Holding the
/// delete's own request open for the whole task failed at 1M documents:
/// hyper gave up on the response head (`Parse(TooLarge)`) after minutes.
async fn baseline(prefix: &str) {
    let query = json!({"query": {"range": {"@timestamp": {"lt": cutoff_at().to_string()}}}});
    let started = call(
        Method::POST,
        &format!("{prefix}-*/_delete_by_query?slices=auto&conflicts=proceed&wait_for_completion=false"),
        Some(query),
    )
    .await;
    let task = started["task"].as_str().expect("a task id").to_owned();
    let done = call(Method::GET, &format!("_tasks/{task}?wait_for_completion=true&timeout=30m"), None).await;
    assert_eq!(done["completed"].as_bool(), Some(true), "the baseline's delete ended: {done}");
    let failures = &done["response"]["failures"];
    assert!(failures.as_array().is_none_or(Vec::is_empty), "the baseline's delete failed: {failures}");
    call(Method::POST, &format!("{prefix}-*/_refresh"), None).await;
}

async fn delenda(prefix: &str, whole: bool) -> String {
    let store = SearchStore::new(SearchSettings::new(base_url())).expect("a store");
    let target: Target = serde_json::from_value(json!({"name": "bench", "dataStoreRef": {"name": "search"},
        "logs": {"indexPattern": format!("{prefix}-*"), "timeField": "@timestamp", "deleteExpiredIndices": whole}}))
    .expect("a target");
    let cutoff = Cutoff::planned(cutoff_at(), cutoff_at() + 1.hour()).expect("a cutoff");
    let report = store.purge_due(&target, &cutoff, &PurgeOptions::new(Mode::Enforce)).await.expect("the purge");
    format!("{} deleted, {} indices dropped", report.account.deleted, report.account.dropped.len())
}

/// One shape: both sides on identical index sets, rounds alternating.
async fn shape(scale: &Scale, name: &str, spread: bool, goal: f64) -> Row {
    let docs = scale.n(FULL_DOCS, DAYS * 20);
    let (mut base_t, mut dl_t) = (vec![], vec![]);
    let mut note = String::new();
    for round in 0..scale.rounds {
        let tag = format!("{}-{}", std::process::id(), round);
        let (b, d) = (format!("bench-os-base-{tag}"), format!("bench-os-dl-{tag}"));
        let due_b = build(&b, docs, spread).await;
        let due_d = build(&d, docs, spread).await;
        assert_eq!(due_b, due_d);
        let total = count(&b).await;
        let run_base = async {
            let ((), t) = timed(baseline(&b)).await;
            base_t.push(t);
        };
        let run_dl = async {
            let (n, t) = timed(delenda(&d, !spread)).await;
            dl_t.push(t);
            note = format!("{docs} documents in {DAYS} indices, {due_d} due; Delenda: {n}");
        };
        if round % 2 == 0 {
            run_dl.await;
            run_base.await;
        } else {
            run_base.await;
            run_dl.await;
        }
        for p in [&b, &d] {
            assert_eq!(due_left(p).await, 0, "{p}: due documents left");
            assert_eq!(count(p).await, total - due_b, "{p}: exactly the due documents went");
        }
        drop_all(&b).await;
        drop_all(&d).await;
        scale.say(|| format!("{name} round {round}: baseline {:.3} s, Delenda {:.3} s", base_t[round], dl_t[round]));
    }
    let (bm, dm) = (median(base_t), median(dl_t));
    Row {
        shape: format!("OpenSearch, {docs} documents in {DAYS} daily indices, half due, {name}"),
        baseline: "`_delete_by_query`, `slices=auto`".into(),
        baseline_value: bm,
        delenda_value: dm,
        unit: "s",
        ratio: Some(bm / dm),
        goal: Some(goal),
        limits: vec![],
        note,
    }
}

/// Both shapes of issue 13.
pub async fn opensearch(scale: &Scale) -> Vec<Row> {
    vec![
        shape(scale, "spread inside indices", true, 0.9).await,
        shape(scale, "whole indices expire", false, 10.0).await,
    ]
}
