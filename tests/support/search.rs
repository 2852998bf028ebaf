//! The OpenSearch server of the test environment (`tests/env/servers/opensearch.sh`):
//! requests, fixtures, and a guard that removes what a test made, also when
//! it fails.

use std::collections::BTreeSet;

use delenda::stores::search::{SearchSettings, SearchStore};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

pub const SERVER: &str = "OpenSearch";

/// The REST API's base URL, without a trailing slash.
pub fn base() -> String {
    super::setting("OPENSEARCH_URL", SERVER).trim_end_matches('/').to_owned()
}

/// A store for the test server.
pub fn store() -> SearchStore {
    SearchStore::new(SearchSettings::new(base())).unwrap()
}

/// Sends a request; answers the status and the JSON body.
pub async fn try_call(method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    let mut req = Client::new().request(method, format!("{}/{path}", base()));
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = super::reach(req.send().await, SERVER);
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Sends a request that must succeed; answers the JSON body.
pub async fn call(method: Method, path: &str, body: Option<Value>) -> Value {
    let (status, value) = try_call(method, path, body.clone()).await;
    assert!(status.is_success(), "{path}: {status} {value}");
    value
}

/// [`call`] from synchronous code (a progress callback, a drop guard): on a
/// thread of its own with a runtime of its own.
pub fn call_blocking(method: Method, path: &str, body: Option<Value>) -> Value {
    let path = path.to_owned();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(call(method, &path, body))
    })
    .join()
    .unwrap()
}

/// The mapping every fixture index has: a time field of `time_type`, and
/// subject fields of each kind.
pub fn mapping(time_type: &str) -> Value {
    json!({ "properties": {
        "@timestamp": { "type": time_type },
        "email": { "type": "keyword" },
        "phone": { "type": "keyword" },
        "client": { "properties": { "ip": { "type": "ip" } } }
    } })
}

/// Creates an index with one shard, no replica, the fixture mapping and
/// `settings` on top.
pub async fn create_index_with(name: &str, time_type: &str, settings: Value) {
    let mut all = json!({ "number_of_shards": 1, "number_of_replicas": 0 });
    all.as_object_mut().unwrap().extend(settings.as_object().cloned().unwrap_or_default());
    call(Method::PUT, name, Some(json!({ "settings": all, "mappings": mapping(time_type) }))).await;
}

/// Creates an index with one shard, no replica and the fixture mapping.
pub async fn create_index(name: &str, time_type: &str) {
    create_index_with(name, time_type, json!({})).await;
}

/// Indexes documents (id, body) into an index, data stream or alias, and
/// refreshes when `refresh` is set.
pub async fn index_docs_with(target: &str, docs: &[(String, Value)], refresh: bool) {
    if docs.is_empty() {
        return;
    }
    let mut bulk = String::new();
    for (id, doc) in docs {
        // Data streams take creates only.
        bulk.push_str(&json!({ "create": { "_index": target, "_id": id } }).to_string());
        bulk.push('\n');
        bulk.push_str(&doc.to_string());
        bulk.push('\n');
    }
    let resp = super::reach(
        Client::new()
            .post(format!("{}/_bulk?refresh={refresh}", base()))
            .header("content-type", "application/x-ndjson")
            .body(bulk)
            .send()
            .await,
        SERVER,
    );
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["errors"], json!(false), "bulk: {answer}");
}

/// Indexes documents (id, body) and refreshes.
pub async fn index_docs(index: &str, docs: &[(String, Value)]) {
    index_docs_with(index, docs, true).await;
}

/// Every (index, id) the pattern holds, closed indices left out, after a
/// refresh.
pub async fn snapshot(pattern: &str) -> BTreeSet<(String, String)> {
    let open = "allow_no_indices=true&ignore_unavailable=true&expand_wildcards=open";
    call(Method::POST, &format!("{pattern}/_refresh?{open}"), None).await;
    let answer = call(
        Method::POST,
        &format!("{pattern}/_search?{open}"),
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

/// Whether an index (or data stream, or alias) exists.
pub async fn exists(name: &str) -> bool {
    super::reach(Client::new().head(format!("{}/{name}", base())).send().await, SERVER).status().is_success()
}

/// An index's `index.blocks.*` settings, flat (`{"index.blocks.write": "true"}`).
pub async fn blocks(index: &str) -> Value {
    let answer = call(Method::GET, &format!("{index}/_settings/index.blocks.*?flat_settings=true"), None).await;
    match &answer[index]["settings"] {
        Value::Null => json!({}),
        settings => settings.clone(),
    }
}

/// Removes what a test made when dropped, passed or failed: the indices
/// named (blocks lifted first), data streams and index templates.
#[derive(Default)]
pub struct Cleanup {
    pub indices: Vec<String>,
    pub streams: Vec<String>,
    pub templates: Vec<String>,
}

impl Cleanup {
    /// Removes these indices (names or patterns) at the end.
    pub fn indices(names: &[&str]) -> Self {
        Self { indices: names.iter().map(|s| (*s).to_owned()).collect(), streams: Vec::new(), templates: Vec::new() }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let (indices, streams, templates) =
            (std::mem::take(&mut self.indices), std::mem::take(&mut self.streams), std::mem::take(&mut self.templates));
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                let all = "expand_wildcards=all&allow_no_indices=true&ignore_unavailable=true";
                for stream in &streams {
                    try_call(Method::DELETE, &format!("_data_stream/{stream}"), None).await;
                }
                for template in &templates {
                    try_call(Method::DELETE, &format!("_index_template/{template}"), None).await;
                }
                for index in &indices {
                    // One at a time: a request that changes several blocks is
                    // refused while one of them holds.
                    for block in ["read_only", "read_only_allow_delete", "metadata"] {
                        let lift = json!({ format!("index.blocks.{block}"): false });
                        try_call(Method::PUT, &format!("{index}/_settings?{all}"), Some(lift)).await;
                    }
                    try_call(Method::DELETE, &format!("{index}?{all}"), None).await;
                }
            });
        });
        let _ = done.join();
    }
}
