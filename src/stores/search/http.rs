//! The REST client: one request at a time, typed errors, and the checks that
//! turn an answer the cluster gave only in part into an error.
//!
//! Error bodies of OpenSearch can quote the request (a query holds a data
//! subject's identity), so only an error's `type` reaches a [`StoreError`],
//! never its `reason`; block reasons are read for the block's number only.

use std::time::Duration;

use reqwest::{Method, StatusCode, Url};
use serde_json::Value;

use crate::stores::StoreError;

pub(super) const KIND: &str = "opensearch";

/// A cluster's REST API.
#[derive(Clone)]
pub(super) struct Http {
    http: reqwest::Client,
    base: Url,
    credentials: Option<(String, String)>,
}

impl Http {
    pub(super) fn new(
        url: &str,
        credentials: Option<(String, String)>,
        request_timeout: Duration,
    ) -> Result<Self, StoreError> {
        let mut base = Url::parse(url).map_err(|e| invalid(format!("the cluster URL is invalid: {e}")))?;
        if base.cannot_be_a_base() || !matches!(base.scheme(), "http" | "https") {
            return Err(invalid("the cluster URL must be an http:// or https:// URL".to_owned()));
        }
        base.set_query(None);
        let http = reqwest::Client::builder()
            .timeout(request_timeout)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| invalid(format!("cannot build an HTTP client: {e}")))?;
        Ok(Self { http, base, credentials })
    }

    pub(super) fn base(&self) -> &str {
        self.base.as_str()
    }

    pub(super) fn authenticated(&self) -> bool {
        self.credentials.is_some()
    }

    pub(super) fn url(&self, segments: &[&str], query: &[(&str, String)]) -> Url {
        let mut url = self.base.clone();
        url.path_segments_mut().expect("checked to be a base").pop_if_empty().extend(segments);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        url
    }

    /// One request; answers the JSON body of a success, or a typed error
    /// naming `object` (an index or pattern).
    pub(super) async fn call(
        &self,
        method: Method,
        segments: &[&str],
        query: &[(&str, String)],
        body: Option<&Value>,
        object: &str,
    ) -> Result<Value, StoreError> {
        let mut req = self.http.request(method, self.url(segments, query));
        if let Some((user, password)) = &self.credentials {
            req = req.basic_auth(user, Some(password));
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await.map_err(|e| StoreError::Unreachable { store: KIND, detail: without_url(e) })?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| StoreError::Unreachable { store: KIND, detail: without_url(e) })?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok(value);
        }
        Err(error_of(status, &value["error"], object))
    }
}

/// Query parameters for a request on a pattern: open indices only, none
/// is no error.
pub(super) fn on_pattern() -> Vec<(&'static str, String)> {
    vec![
        ("expand_wildcards", "open".to_owned()),
        ("allow_no_indices", "true".to_owned()),
        ("ignore_unavailable", "true".to_owned()),
    ]
}

/// The error an answer of `status` with `error` (the body's `error`) means.
pub(super) fn error_of(status: StatusCode, error: &Value, object: &str) -> StoreError {
    let kind = error_type(error);
    if kind == "cluster_block_exception" {
        return blocked(object, error["reason"].as_str().unwrap_or(""));
    }
    match status {
        StatusCode::UNAUTHORIZED => StoreError::AuthenticationFailed { store: KIND, detail: "HTTP 401".to_owned() },
        StatusCode::FORBIDDEN => {
            StoreError::PermissionDenied { object: format!("index {object}"), detail: format!("HTTP 403 {kind}") }
        }
        StatusCode::NOT_FOUND if kind == "index_not_found_exception" => {
            StoreError::MissingTable { object: format!("index {object}"), hint: String::new() }
        }
        _ => {
            let root = error["root_cause"][0]["type"].as_str().map(safe_word).filter(|r| *r != kind);
            let detail = match root {
                Some(root) => format!("HTTP {} {kind} (caused by {root}) on {object}", status.as_u16()),
                None => format!("HTTP {} {kind} on {object}", status.as_u16()),
            };
            StoreError::Backend { store: KIND, detail }
        }
    }
}

/// An error's `type`, which is a word the server chose, never request text.
pub(super) fn error_type(error: &Value) -> String {
    error["type"].as_str().map_or_else(|| "unknown".to_owned(), |t| safe_word(t).to_owned())
}

/// `text` when it is a plain identifier, else a placeholder: a type that is
/// not one is not trusted to carry no request text.
fn safe_word(text: &str) -> &str {
    if !text.is_empty() && text.len() <= 80 && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        text
    } else {
        "unknown"
    }
}

/// The blocks of OpenSearch and Elasticsearch by their stable numbers: the
/// setting that sets each, and what to do about it.
const BLOCKS: &[(u32, &str, &str)] = &[
    (
        5,
        "index.blocks.read_only",
        "Remove the block (PUT <index>/_settings {\"index.blocks.read_only\": null}) if the index may be changed, or narrow the target's indexPattern to leave it out",
    ),
    (
        6,
        "cluster.blocks.read_only",
        "The whole cluster is read-only: remove the block (PUT _cluster/settings {\"persistent\": {\"cluster.blocks.read_only\": null}}) when maintenance is over",
    ),
    (
        7,
        "index.blocks.read",
        "Reads are blocked, so nothing can be counted: remove the block (PUT <index>/_settings {\"index.blocks.read\": null})",
    ),
    (
        8,
        "index.blocks.write",
        "Remove the block (PUT <index>/_settings {\"index.blocks.write\": null}) if nothing else needs it; a purge that was stopped while dropping the index can have left it",
    ),
    (
        12,
        "index.blocks.read_only_allow_delete",
        "The disk flood-stage watermark set it: free disk space on the data nodes; OpenSearch lifts the block once usage falls below the high watermark (or remove it: PUT <index>/_settings {\"index.blocks.read_only_allow_delete\": null})",
    ),
    (
        13,
        "cluster.blocks.read_only_allow_delete",
        "The cluster accepts only index deletions: free disk space, then remove the block (PUT _cluster/settings {\"persistent\": {\"cluster.blocks.read_only_allow_delete\": null}})",
    ),
];

/// The error for a block, read from a `cluster_block_exception`'s reason
/// (`index [x] blocked by: [FORBIDDEN/5/index read-only (api)];`): only the
/// numbers of the blocks are taken from it.
pub(super) fn blocked(object: &str, reason: &str) -> StoreError {
    let ids = reason.split("blocked by: ").nth(1).unwrap_or("").split('[').filter_map(|part| {
        let mut fields = part.split('/');
        let _status = fields.next()?;
        fields.next()?.parse::<u32>().ok()
    });
    let known = ids.filter_map(|id| BLOCKS.iter().find(|(n, ..)| *n == id)).next();
    let (block, advice) = known.map_or(
        ("a block", "Look at the index's and the cluster's blocks (GET <index>/_settings, GET _cluster/settings)"),
        |(_, block, advice)| (*block, *advice),
    );
    let object = if block.starts_with("cluster.") { "the cluster".to_owned() } else { format!("index {object}") };
    StoreError::Blocked { object, block, advice }
}

/// The block a setting name sets, for blocks found in settings before any
/// delete is sent.
pub(super) fn blocked_by_setting(object: &str, setting: &str) -> StoreError {
    let found = BLOCKS.iter().find(|(_, block, _)| *block == setting);
    let (block, advice) = found.map_or(("a block", ""), |(_, b, a)| (*b, *a));
    StoreError::Blocked { object: object.to_owned(), block, advice }
}

/// Checks that every shard answered a search, count or delete: a partial
/// answer (a red index, a shard that failed or timed out) is an error,
/// never a count. `what` names the request, `object` the indices.
pub(super) fn whole(answer: Value, what: &str, object: &str) -> Result<Value, StoreError> {
    if answer["timed_out"].as_bool() == Some(true) {
        return Err(partial(format!(
            "{what} on {object} timed out before every shard answered; a partial answer is never taken as a count"
        )));
    }
    let shards = &answer["_shards"];
    let n = |k: &str| shards[k].as_u64().unwrap_or(0);
    let (total, answered, failed) = (n("total"), n("successful") + n("skipped"), n("failed"));
    if failed > 0 || answered < total {
        let cause = first_failure(shards).map(|c| format!(" ({c})")).unwrap_or_default();
        return Err(partial(format!(
            "{what} on {object}: {} of {total} shards did not answer{cause}; a partial answer is never taken as a count, and no index is judged from one. Check the health of the indices (GET _cluster/health?level=indices): a red index needs its shards back",
            total - answered.min(total)
        )));
    }
    Ok(answer)
}

/// Checks that no shard copy failed a refresh. Copies that are not
/// assigned do not count: replicas are often missing on small clusters, and
/// a missing primary shows in the count that follows.
pub(super) fn refreshed(answer: &Value, object: &str) -> Result<(), StoreError> {
    let failed = answer["_shards"]["failed"].as_u64().unwrap_or(0);
    if failed > 0 {
        let cause = first_failure(&answer["_shards"]).map(|c| format!(" ({c})")).unwrap_or_default();
        return Err(partial(format!("refreshing {object} failed on {failed} shards{cause}")));
    }
    Ok(())
}

/// The type of the first shard failure, if any is told.
fn first_failure(shards: &Value) -> Option<String> {
    let reason = &shards["failures"][0]["reason"];
    reason.get("type").map(|_| error_type(reason))
}

fn partial(detail: String) -> StoreError {
    StoreError::Backend { store: KIND, detail }
}

pub(super) fn invalid(detail: String) -> StoreError {
    StoreError::InvalidTarget { store: KIND, detail }
}

pub(super) fn backend(detail: &str) -> StoreError {
    StoreError::Backend { store: KIND, detail: detail.to_owned() }
}

/// A reqwest error's text without the URL (which may carry a pattern or a
/// task id only, but stays out of messages on principle).
fn without_url(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection refused or failed"
    } else {
        "request failed"
    };
    let source = std::error::Error::source(&e).map(ToString::to_string).unwrap_or_default();
    format!("{kind}: {}", source.chars().take(200).collect::<String>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn blocks_are_named_by_their_number_and_never_by_the_reason_text() {
        let e = blocked("logs-1", "index [logs-1] blocked by: [FORBIDDEN/5/index read-only (api)];");
        assert_eq!(e.reason(), "Blocked");
        assert!(e.to_string().contains("index.blocks.read_only is set"), "{e}");
        let e = blocked(
            "logs-1",
            "index [logs-1] blocked by: [TOO_MANY_REQUESTS/12/disk usage exceeded flood-stage watermark, index has read-only-allow-delete block];",
        );
        assert!(e.to_string().contains("index.blocks.read_only_allow_delete"), "{e}");
        assert!(e.is_transient(), "the disk watermark block lifts by itself");
        let e = blocked("logs-1", "blocked by: [FORBIDDEN/6/cluster read-only (api)];");
        assert!(e.to_string().contains("cluster.blocks.read_only is set"), "{e}");
        assert!(!e.is_transient());
        let e = blocked("logs-1", "blocked by: [FORBIDDEN/99/jan@example.com];");
        assert!(!e.to_string().contains("jan@"), "{e}");
    }

    #[test]
    fn error_reasons_never_reach_a_message() {
        let error = json!({
            "type": "search_phase_execution_exception",
            "reason": "failed to parse [jan@example.com]",
            "root_cause": [{ "type": "query_shard_exception", "reason": "jan@example.com" }]
        });
        let e = error_of(StatusCode::BAD_REQUEST, &error, "logs-*");
        let text = e.to_string();
        assert!(text.contains("search_phase_execution_exception") && text.contains("query_shard_exception"));
        assert!(!text.contains("jan@"), "{text}");
        let odd = error_of(StatusCode::BAD_REQUEST, &json!({ "type": "jan@example.com" }), "x");
        assert!(!odd.to_string().contains("jan@"), "{odd}");
    }

    #[test]
    fn a_partial_answer_is_an_error() {
        let all = json!({ "count": 3, "_shards": { "total": 2, "successful": 2, "skipped": 0, "failed": 0 } });
        assert!(whole(all, "counting", "x").is_ok());
        let red = json!({ "count": 1, "_shards": { "total": 2, "successful": 1, "skipped": 0, "failed": 0 } });
        assert!(whole(red, "counting", "x").unwrap_err().to_string().contains("1 of 2 shards"));
        let failed = json!({ "count": 1, "_shards": { "total": 2, "successful": 1, "failed": 1,
            "failures": [{ "reason": { "type": "node_disconnected_exception", "reason": "jan@example.com" } }] } });
        let e = whole(failed, "counting", "x").unwrap_err().to_string();
        assert!(e.contains("node_disconnected_exception") && !e.contains("jan@"), "{e}");
        let slow = json!({ "timed_out": true, "_shards": { "total": 1, "successful": 1, "failed": 0 } });
        assert!(whole(slow, "counting", "x").is_err());
        let yellow = json!({ "_shards": { "total": 2, "successful": 1, "failed": 0 } });
        assert!(refreshed(&yellow, "x").is_ok(), "an unassigned replica is no failed refresh");
    }
}
