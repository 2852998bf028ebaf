//! `_delete_by_query` as a sliced task, watched to its end.
//!
//! The task is polled every 50 ms at first, then at most every 250 ms, so a
//! purge waits at most a quarter second past the task's end. What the task
//! deleted is in the report from the first poll on, so a purge that fails
//! or is cancelled halfway still accounts for it. A task this purge stops
//! watching before its end (an error, a cancellation, the purge dropped) is
//! cancelled, so nothing deletes unwatched.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use super::http::{self, Http, KIND, on_pattern};
use crate::stores::{Progress, PurgeOptions, PurgeReport, StoreError};

const FIRST_POLL: Duration = Duration::from_millis(50);
const MAX_POLL: Duration = Duration::from_millis(250);

/// A running task, cancelled when dropped before it ended.
struct Running {
    http: Http,
    id: String,
    ended: bool,
}

impl Running {
    async fn cancel(&mut self) -> Result<(), StoreError> {
        self.ended = true;
        self.http
            .call(Method::POST, &["_tasks", &self.id, "_cancel"], &[], None, "a delete-by-query task")
            .await
            .map(drop)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        let (http, id) = (self.http.clone(), self.id.clone());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = http.call(Method::POST, &["_tasks", &id, "_cancel"], &[], None, "a delete-by-query task").await;
            });
        }
    }
}

/// Deletes what `query` matches on the pattern's open indices, `want`
/// documents at most (what the count said), within the purge's budget.
pub(super) async fn delete_by_query(
    http: &Http,
    pattern: &str,
    query: &Value,
    want: u64,
    max_shards: u64,
    options: &PurgeOptions,
    report: &mut PurgeReport,
) -> Result<(), StoreError> {
    let limit = if options.budget.is_empty() { None } else { Some(options.reserve(want)) };
    if limit == Some(0) {
        return Err(options.budget_spent(report.account.deleted));
    }
    let mut q = on_pattern();
    q.extend([
        ("wait_for_completion", "false".to_owned()),
        ("conflicts", "proceed".to_owned()),
        ("refresh", "true".to_owned()),
        ("scroll_size", options.max_batch_size.clamp(1, 10_000).to_string()),
    ]);
    // OpenSearch 2.19 never finishes a sliced task whose max_docs is below
    // its number of slices: slice only when the limit allows it.
    let slices = match limit {
        Some(n) if n < max_shards.max(1) => "1".to_owned(),
        _ => "auto".to_owned(),
    };
    q.push(("slices", slices));
    if let Some(n) = limit {
        q.push(("max_docs", n.to_string()));
    }
    if let Some(rate) = options.max_records_per_second {
        q.push(("requests_per_second", rate.max(1).to_string()));
    }
    let base = report.account.deleted;
    let result = run(http, pattern, query, &q, options, report).await;
    if let Some(n) = limit {
        options.refund(n.saturating_sub(report.account.deleted - base));
    }
    result
}

async fn run(
    http: &Http,
    pattern: &str,
    query: &Value,
    q: &[(&str, String)],
    options: &PurgeOptions,
    report: &mut PurgeReport,
) -> Result<(), StoreError> {
    let body = json!({ "query": query });
    let answer = http.call(Method::POST, &[pattern, "_delete_by_query"], q, Some(&body), pattern).await?;
    let id = answer["task"].as_str().ok_or_else(|| http::backend("_delete_by_query started no task"))?.to_owned();
    let mut task = Running { http: http.clone(), id, ended: false };
    let started = Instant::now();
    let base = report.account.deleted;
    let (mut deleted, mut batches) = (0u64, 0u64);
    let mut last_report = Instant::now();
    let mut wait = FIRST_POLL;
    let mut cancelled = false;
    loop {
        let state = match http.call(Method::GET, &["_tasks", &task.id], &[], None, pattern).await {
            Ok(state) => state,
            Err(e) => {
                let _ = task.cancel().await;
                return Err(e);
            }
        };
        let done = state["completed"].as_bool() == Some(true);
        let status = if done { &state["response"] } else { &state["task"]["status"] };
        let (now_deleted, now_batches) =
            (status["deleted"].as_u64().unwrap_or(0), status["batches"].as_u64().unwrap_or(0));
        if now_batches > batches || now_deleted > deleted {
            let took = last_report.elapsed();
            last_report = Instant::now();
            report.max_batch_duration = report.max_batch_duration.max(took);
            report.account.deleted = base + now_deleted.max(deleted);
            if let Some(progress) = &options.progress {
                progress(&Progress {
                    batch: report.batches + now_batches.max(1),
                    batch_size: options.max_batch_size,
                    deleted: now_deleted.saturating_sub(deleted),
                    deleted_total: report.account.deleted,
                    duration: took,
                });
            }
            deleted = deleted.max(now_deleted);
            batches = batches.max(now_batches);
        }
        if done {
            task.ended = true;
            report.batches += batches.max(1);
            tracing::debug!(
                store = KIND,
                deleted,
                batches,
                millis = started.elapsed().as_millis() as u64,
                "delete-by-query task finished"
            );
            let conflicts = status["version_conflicts"].as_u64().unwrap_or(0);
            if conflicts > 0 {
                tracing::warn!(
                    store = KIND,
                    conflicts,
                    "documents changed while being deleted; the read-back decides whether another pass is needed"
                );
            }
            if cancelled {
                return Err(StoreError::Cancelled { deleted: report.account.deleted });
            }
            return outcome(&state, deleted, pattern);
        }
        if !cancelled && options.stopped() {
            cancelled = true;
            if let Err(e) = task.cancel().await {
                tracing::warn!(store = KIND, error = %e, "could not cancel the delete-by-query task; waiting for its end");
            }
            task.ended = false; // still watched until it reports its end
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = options.cancel.cancelled(), if !cancelled => {}
        }
        wait = (wait * 2).min(MAX_POLL);
    }
}

/// What a finished task's answer means: a failure of the task or of any
/// document is an error (a block is named as one), and so is a timeout.
fn outcome(state: &Value, deleted: u64, pattern: &str) -> Result<(), StoreError> {
    if !state["error"].is_null() {
        let kind = http::error_type(&state["error"]);
        if kind == "cluster_block_exception" {
            return Err(http::blocked(pattern, state["error"]["reason"].as_str().unwrap_or("")));
        }
        return Err(http::backend(&format!(
            "the _delete_by_query task on {pattern} failed ({kind}) after deleting {deleted} documents"
        )));
    }
    let response = &state["response"];
    let failures = response["failures"].as_array().map_or(&[][..], Vec::as_slice);
    if let Some(first) = failures.first() {
        let kind = http::error_type(&first["cause"]);
        let index = first["index"].as_str().unwrap_or(pattern);
        if kind == "cluster_block_exception" {
            return Err(http::blocked(index, first["cause"]["reason"].as_str().unwrap_or("")));
        }
        let count = failures.len();
        return Err(http::backend(&format!(
            "_delete_by_query on {pattern} deleted {deleted} documents, then failed on {count} (for example {kind} in index {index})"
        )));
    }
    if response["timed_out"].as_bool() == Some(true) {
        return Err(http::backend(&format!(
            "_delete_by_query on {pattern} timed out after deleting {deleted} documents"
        )));
    }
    Ok(())
}
