//! Smoke test of the OpenSearch test server (`tests/env/servers/opensearch.sh`):
//! index a document, find it, erase it with `_delete_by_query` (the reindex
//! module the script adds to the integration-test distribution), and read
//! back that nothing remains.
mod support;

use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

const SERVER: &str = "OpenSearch";

/// Sends a request with an optional JSON body; returns status and JSON answer.
async fn call(client: &Client, method: Method, url: &str, body: Option<Value>) -> (StatusCode, Value) {
    let mut req = client.request(method, url);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let resp = support::reach(req.send().await, SERVER);
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

#[tokio::test]
async fn opensearch_index_search_delete_by_query() {
    let base = support::setting("OPENSEARCH_URL", SERVER);
    let base = base.trim_end_matches('/');
    let client = Client::new();

    let (status, root) = call(&client, Method::GET, &format!("{base}/"), None).await;
    assert!(status.is_success(), "GET / answered {status}: {root}");
    let distribution = root["version"]["distribution"].as_str().unwrap_or("elasticsearch");
    let version = root["version"]["number"].as_str().expect("version.number in GET /");
    println!("reached {distribution} {version} at {base}");

    let index = support::unique("delenda-smoke");
    let (status, body) = call(
        &client,
        Method::PUT,
        &format!("{base}/{index}"),
        Some(json!({
            "settings": { "number_of_shards": 1, "number_of_replicas": 0 },
            "mappings": { "properties": {
                "email": { "type": "keyword" },
                "@timestamp": { "type": "date" }
            } }
        })),
    )
    .await;
    assert!(status.is_success(), "create index {index}: {status} {body}");

    // One document of the subject, and one of somebody else that must stay.
    let subject = "erase-me@example.com";
    for email in [subject, "keep-me@example.com"] {
        let (status, body) = call(
            &client,
            Method::POST,
            &format!("{base}/{index}/_doc?refresh=true"),
            Some(json!({ "email": email, "@timestamp": "2020-01-01T00:00:00Z", "message": "login" })),
        )
        .await;
        assert!(status.is_success(), "index a document: {status} {body}");
    }

    let query = json!({ "query": { "term": { "email": subject } } });
    let (status, body) = call(&client, Method::POST, &format!("{base}/{index}/_search"), Some(query.clone())).await;
    assert!(status.is_success(), "search: {status} {body}");
    assert_eq!(body["hits"]["total"]["value"], 1, "the document is found: {body}");

    let (status, body) =
        call(&client, Method::POST, &format!("{base}/{index}/_delete_by_query?refresh=true"), Some(query.clone()))
            .await;
    assert!(status.is_success(), "_delete_by_query: {status} {body} (is the reindex module installed?)");
    assert_eq!(body["deleted"], 1, "_delete_by_query deletes the document: {body}");
    assert_eq!(body["failures"], json!([]), "_delete_by_query without failures: {body}");

    let (status, body) = call(&client, Method::POST, &format!("{base}/{index}/_count"), Some(query)).await;
    assert!(status.is_success(), "count: {status} {body}");
    assert_eq!(body["count"], 0, "nothing of the subject remains: {body}");
    let (status, body) = call(&client, Method::GET, &format!("{base}/{index}/_count"), None).await;
    assert!(status.is_success(), "count: {status} {body}");
    assert_eq!(body["count"], 1, "the other document is untouched: {body}");

    let (status, body) = call(&client, Method::DELETE, &format!("{base}/{index}"), None).await;
    assert!(status.is_success(), "delete index {index}: {status} {body}");
}
