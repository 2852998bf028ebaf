//! OpenSearch, and the same API of Elasticsearch 7 and 8, over a thin typed
//! wrapper of reqwest: a handful of endpoints, no client crate.
//!
//! A purge first drops whole indices whose newest document is before the
//! cutoff (asked of the store with a `max` aggregation, never read from the
//! index name; an index with any document lacking the time field is never
//! dropped whole). Before dropping, the index is made read-only and asked
//! again, so a document written meanwhile keeps the index. The rest goes
//! with `_delete_by_query` (`lt` the cutoff, strict), run as a sliced task
//! that is polled to its end, with version conflicts and failures reported.
//! The read-back is a `_count` after a `_refresh`.
//!
//! The cutoff is compared in whole milliseconds, rounded down: a document
//! in the cutoff's own millisecond is kept, never the other way round.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode, Url};
use serde_json::{Value, json};

use super::{
    Cutoff, Incomplete, ProbeReport, Progress, PurgeFuture, PurgeOptions, PurgeReport, Store, StoreError, StoreFuture,
    Subject,
};
use crate::api::Mode;
use crate::api::policy::{LogsTarget, Target};

const KIND: &str = "opensearch";

/// How to reach a cluster.
#[derive(Clone, Debug)]
pub struct SearchSettings {
    /// Base URL of the REST API, like `https://search.example:9200`.
    pub url: String,
    /// Basic-authentication user name and password, when the cluster asks.
    pub credentials: Option<(String, String)>,
    /// How long one request may take.
    pub request_timeout: Duration,
}

impl SearchSettings {
    /// Settings for a URL without authentication.
    pub fn new(url: impl Into<String>) -> Self {
        Self { url: url.into(), credentials: None, request_timeout: Duration::from_secs(60) }
    }
}

/// An OpenSearch or Elasticsearch cluster.
#[derive(Clone)]
pub struct SearchStore {
    http: reqwest::Client,
    base: Url,
    credentials: Option<(String, String)>,
}

impl std::fmt::Debug for SearchStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SearchStore")
            .field("base", &self.base.as_str())
            .field("authenticated", &self.credentials.is_some())
            .finish()
    }
}

/// Which indices the query runs on: a whole pattern, or one index.
#[derive(Clone, Copy)]
enum On<'a> {
    Pattern(&'a str),
    Index(&'a str),
}

impl On<'_> {
    fn name(&self) -> &str {
        match self {
            On::Pattern(p) | On::Index(p) => p,
        }
    }
}

/// What one `_delete_by_query` task did.
#[derive(Debug, Default)]
struct TaskOutcome {
    deleted: u64,
    batches: u64,
    version_conflicts: u64,
}

impl SearchStore {
    /// A client for the cluster; nothing is sent until the first call.
    pub fn new(settings: SearchSettings) -> Result<Self, StoreError> {
        let mut base = Url::parse(&settings.url).map_err(|e| invalid(format!("the cluster URL is invalid: {e}")))?;
        if base.cannot_be_a_base() || !matches!(base.scheme(), "http" | "https") {
            return Err(invalid("the cluster URL must be an http:// or https:// URL".to_owned()));
        }
        base.set_query(None);
        let http = reqwest::Client::builder()
            .timeout(settings.request_timeout)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| invalid(format!("cannot build an HTTP client: {e}")))?;
        Ok(Self { http, base, credentials: settings.credentials })
    }

    fn url(&self, segments: &[&str], query: &[(&str, String)]) -> Url {
        let mut url = self.base.clone();
        url.path_segments_mut().expect("checked to be a base").pop_if_empty().extend(segments);
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query.iter().map(|(k, v)| (*k, v.as_str())));
        }
        url
    }

    /// One request; answers the JSON body of a success, or a typed error
    /// naming `object` (an index or pattern).
    async fn call(
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
        let kind = value["error"]["type"].as_str().unwrap_or("").to_owned();
        Err(match status {
            StatusCode::UNAUTHORIZED => StoreError::AuthenticationFailed { store: KIND, detail: "HTTP 401".to_owned() },
            StatusCode::FORBIDDEN => {
                StoreError::PermissionDenied { object: format!("index {object}"), detail: format!("HTTP 403 {kind}") }
            }
            StatusCode::NOT_FOUND if kind == "index_not_found_exception" => {
                StoreError::MissingTable { object: format!("index {object}"), hint: String::new() }
            }
            _ => {
                let reason: String = value["error"]["reason"].as_str().unwrap_or("").chars().take(200).collect();
                StoreError::Backend { store: KIND, detail: format!("HTTP {} {kind}: {reason}", status.as_u16()) }
            }
        })
    }

    fn on_query(on: On<'_>) -> Vec<(&'static str, String)> {
        match on {
            On::Pattern(_) => vec![
                ("expand_wildcards", "open".to_owned()),
                ("allow_no_indices", "true".to_owned()),
                ("ignore_unavailable", "true".to_owned()),
            ],
            On::Index(_) => Vec::new(),
        }
    }

    /// The open indices a pattern names. A pattern without a wildcard that
    /// names no index is an error; one with a wildcard may match none.
    async fn indices(&self, pattern: &str) -> Result<Vec<String>, StoreError> {
        let query = [("format", "json".to_owned()), ("h", "index".to_owned()), ("expand_wildcards", "open".to_owned())];
        let rows = self.call(Method::GET, &["_cat", "indices", pattern], &query, None, pattern).await?;
        let mut names: Vec<String> =
            rows.as_array().into_iter().flatten().filter_map(|r| r["index"].as_str().map(str::to_owned)).collect();
        names.sort();
        Ok(names)
    }

    /// The mapped type of each field in each index: field -> index -> type.
    async fn field_types(
        &self,
        pattern: &str,
        fields: &[&str],
    ) -> Result<BTreeMap<String, BTreeMap<String, String>>, StoreError> {
        let list = fields.join(",");
        let query = Self::on_query(On::Pattern(pattern));
        let answer = self.call(Method::GET, &[pattern, "_mapping", "field", &list], &query, None, pattern).await?;
        let mut types: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for (index, mapping) in answer.as_object().into_iter().flatten() {
            for (field, m) in mapping["mappings"].as_object().into_iter().flatten() {
                let leaf = field.rsplit('.').next().unwrap_or(field);
                if let Some(t) = m["mapping"][leaf]["type"].as_str() {
                    types.entry(field.clone()).or_default().insert(index.clone(), t.to_owned());
                }
            }
        }
        Ok(types)
    }

    async fn check_time_field(&self, t: &LogsTarget) -> Result<(), StoreError> {
        let field = t.time_field.as_str();
        let types = self.field_types(t.index_pattern.as_str(), &[field]).await?;
        let Some(per_index) = types.get(field) else {
            return Err(StoreError::MissingColumn {
                object: format!("indices {}", t.index_pattern),
                column: field.to_owned(),
                role: "time field",
                hint: String::new(),
            });
        };
        if let Some((index, found)) = per_index.iter().find(|(_, ty)| !matches!(ty.as_str(), "date" | "date_nanos")) {
            return Err(StoreError::WrongColumnType {
                object: format!("index {index}"),
                column: field.to_owned(),
                role: "time field",
                found: found.clone(),
                expected: "a date or date_nanos field",
            });
        }
        Ok(())
    }

    async fn count(&self, on: On<'_>, query: &Value) -> Result<u64, StoreError> {
        let q = Self::on_query(on);
        let answer =
            self.call(Method::POST, &[on.name(), "_count"], &q, Some(&json!({ "query": query })), on.name()).await?;
        answer["count"].as_u64().ok_or_else(|| backend("_count answered without a count"))
    }

    async fn refresh(&self, on: On<'_>) -> Result<(), StoreError> {
        let q = Self::on_query(on);
        self.call(Method::POST, &[on.name(), "_refresh"], &q, None, on.name()).await.map(drop)
    }

    /// Whether every document of `index` has a time before `cutoff_ms`; and
    /// how many documents it holds.
    async fn wholly_expired(&self, index: &str, field: &str, cutoff_ms: i64) -> Result<(bool, u64), StoreError> {
        let body = json!({
            "size": 0,
            "track_total_hits": true,
            "aggs": { "newest": { "max": { "field": field } }, "untimed": { "missing": { "field": field } } }
        });
        let answer = self.call(Method::POST, &[index, "_search"], &[], Some(&body), index).await?;
        let total = answer["hits"]["total"]["value"].as_u64().or_else(|| answer["hits"]["total"].as_u64()).unwrap_or(0);
        let untimed = answer["aggregations"]["untimed"]["doc_count"].as_u64().unwrap_or(u64::MAX);
        let newest = answer["aggregations"]["newest"]["value"].as_f64();
        let expired = total > 0 && untimed == 0 && newest.is_some_and(|n| n < cutoff_ms as f64);
        Ok((expired, total))
    }

    async fn set_write_block(&self, index: &str, on: bool) -> Result<(), StoreError> {
        let body = json!({ "index": { "blocks": { "write": if on { json!(true) } else { Value::Null } } } });
        self.call(Method::PUT, &[index, "_settings"], &[], Some(&body), index).await.map(drop)
    }

    /// Drops the pattern's indices whose documents are all due.
    async fn drop_expired_indices(
        &self,
        t: &LogsTarget,
        cutoff_ms: i64,
        options: &PurgeOptions,
        report: &mut PurgeReport,
    ) -> Result<(), StoreError> {
        let field = t.time_field.as_str();
        for index in self.indices(t.index_pattern.as_str()).await? {
            if options.cancel.is_cancelled() {
                return Err(StoreError::Cancelled { deleted: report.account.deleted });
            }
            let started = Instant::now();
            if !self.wholly_expired(&index, field, cutoff_ms).await?.0 {
                continue;
            }
            // Block writes and ask again: a document written since keeps the index.
            self.set_write_block(&index, true).await?;
            self.refresh(On::Index(&index)).await?;
            let (expired, total) = self.wholly_expired(&index, field, cutoff_ms).await?;
            if !expired {
                self.set_write_block(&index, false).await?;
                continue;
            }
            self.call(Method::DELETE, &[&index], &[], None, &index).await?;
            let took = started.elapsed();
            report.record_batch(options, total, total, took);
            tracing::info!(
                store = KIND,
                documents = total,
                "dropped an index whose newest document is before the cutoff"
            );
        }
        Ok(())
    }

    /// Runs `_delete_by_query` as a task and waits for it, reporting progress
    /// as the task's batch count grows; cancels the task when told to.
    async fn delete_by_query(
        &self,
        pattern: &str,
        query: &Value,
        options: &PurgeOptions,
        report: &mut PurgeReport,
    ) -> Result<TaskOutcome, StoreError> {
        let mut q = Self::on_query(On::Pattern(pattern));
        q.extend([
            ("slices", "auto".to_owned()),
            ("wait_for_completion", "false".to_owned()),
            ("conflicts", "proceed".to_owned()),
            ("refresh", "true".to_owned()),
            ("scroll_size", options.max_batch_size.clamp(1, 10_000).to_string()),
        ]);
        if let Some(rate) = options.max_records_per_second {
            q.push(("requests_per_second", rate.max(1).to_string()));
        }
        let answer = self
            .call(Method::POST, &[pattern, "_delete_by_query"], &q, Some(&json!({ "query": query })), pattern)
            .await?;
        let task = answer["task"].as_str().ok_or_else(|| backend("_delete_by_query started no task"))?.to_owned();
        let started = Instant::now();
        let mut seen = TaskOutcome::default();
        let mut last_report = Instant::now();
        let mut wait = Duration::from_millis(100);
        let mut cancelled = false;
        let base = report.account.deleted;
        loop {
            let state = self.call(Method::GET, &["_tasks", &task], &[], None, pattern).await?;
            let status =
                if state["completed"].as_bool() == Some(true) { &state["response"] } else { &state["task"]["status"] };
            let (deleted, batches) = (status["deleted"].as_u64().unwrap_or(0), status["batches"].as_u64().unwrap_or(0));
            if batches > seen.batches || deleted > seen.deleted {
                let took = last_report.elapsed();
                last_report = Instant::now();
                report.max_batch_duration = report.max_batch_duration.max(took);
                if let Some(progress) = &options.progress {
                    progress(&Progress {
                        batch: report.batches + batches.max(1),
                        batch_size: options.max_batch_size,
                        deleted: deleted - seen.deleted.min(deleted),
                        deleted_total: base + deleted,
                        duration: took,
                    });
                }
                seen.deleted = deleted;
                seen.batches = batches;
            }
            seen.version_conflicts = status["version_conflicts"].as_u64().unwrap_or(0);
            if state["completed"].as_bool() == Some(true) {
                if let Some(kind) = state["error"]["type"].as_str() {
                    return Err(backend(&format!("the _delete_by_query task failed: {kind}")));
                }
                let failures = state["response"]["failures"].as_array().map_or(0, Vec::len);
                if failures > 0 {
                    let kind = state["response"]["failures"][0]["cause"]["type"].as_str().unwrap_or("unknown");
                    return Err(backend(&format!(
                        "_delete_by_query deleted {deleted} documents with {failures} failures, for example {kind}"
                    )));
                }
                break;
            }
            if !cancelled && options.cancel.is_cancelled() {
                cancelled = true;
                self.call(Method::POST, &["_tasks", &task, "_cancel"], &[], None, pattern).await?;
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = options.cancel.cancelled(), if !cancelled => {}
            }
            wait = (wait * 2).min(Duration::from_secs(2));
        }
        report.account.deleted = base + seen.deleted;
        report.batches += seen.batches.max(1);
        if seen.version_conflicts > 0 {
            tracing::warn!(
                store = KIND,
                conflicts = seen.version_conflicts,
                "documents changed while being deleted; the read-back decides whether another pass is needed"
            );
        }
        tracing::debug!(
            store = KIND,
            deleted = seen.deleted,
            batches = seen.batches,
            millis = started.elapsed().as_millis() as u64,
            "delete-by-query task finished"
        );
        if cancelled {
            return Err(StoreError::Cancelled { deleted: report.account.deleted });
        }
        Ok(seen)
    }

    /// Deletes what `query` matches on the pattern, then reads back; two
    /// passes at most.
    async fn delete_verified(
        &self,
        t: &LogsTarget,
        query: &Value,
        expired_before: Option<i64>,
        options: &PurgeOptions,
        report: &mut PurgeReport,
    ) -> Result<(), StoreError> {
        let pattern = t.index_pattern.as_str();
        let matched = self.count(On::Pattern(pattern), query).await?;
        report.account.matched = matched;
        report.account.remaining = Some(matched);
        if options.mode == Mode::DryRun || matched == 0 {
            return Ok(());
        }
        if let Some(cutoff_ms) = expired_before.filter(|_| t.delete_expired_indices) {
            self.drop_expired_indices(t, cutoff_ms, options, report).await?;
        }
        for _pass in 0..2 {
            self.refresh(On::Pattern(pattern)).await?;
            let remaining = self.count(On::Pattern(pattern), query).await?;
            report.account.remaining = Some(remaining);
            if remaining == 0 {
                return Ok(());
            }
            self.delete_by_query(pattern, query, options, report).await?;
        }
        self.refresh(On::Pattern(pattern)).await?;
        let remaining = self.count(On::Pattern(pattern), query).await?;
        report.account.remaining = Some(remaining);
        if remaining == 0 {
            return Ok(());
        }
        Err(StoreError::NotVerified { deleted: report.account.deleted, remaining })
    }

    /// [`Self::delete_verified`] with a report of its own, kept when it fails.
    async fn delete_reported(
        &self,
        t: &LogsTarget,
        query: &Value,
        expired_before: Option<i64>,
        options: &PurgeOptions,
    ) -> Result<PurgeReport, Incomplete> {
        let mut report = PurgeReport::empty(options);
        match self.delete_verified(t, query, expired_before, options, &mut report).await {
            Ok(()) => Ok(report),
            Err(error) => Err(Incomplete { error, report: Box::new(report) }),
        }
    }

    /// The query of a subject's documents: a terms query per declared field
    /// on the values of its identity; `None` when the subject has none.
    async fn subject_query(
        &self,
        target: &Target,
        t: &LogsTarget,
        subject: &Subject,
    ) -> Result<Option<Value>, StoreError> {
        let fields: Vec<(&str, Vec<&str>)> = target
            .subject_fields
            .iter()
            .filter_map(|f| {
                f.field.as_ref().map(|name| (name.as_str(), subject.values(&f.identity).collect::<Vec<_>>()))
            })
            .filter(|(_, values)| !values.is_empty())
            .collect();
        if fields.is_empty() {
            return Ok(None);
        }
        let mut names: Vec<String> = Vec::new();
        for (f, _) in &fields {
            names.push((*f).to_owned());
            names.push(format!("{f}.keyword"));
        }
        let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let types = self.field_types(t.index_pattern.as_str(), &name_refs).await?;
        let mut should = Vec::new();
        for (field, values) in fields {
            let Some(per_index) = types.get(field) else { continue }; // mapped nowhere: nothing to find
            let kinds: std::collections::BTreeSet<&str> = per_index.values().map(String::as_str).collect();
            let keyword_sub = format!("{field}.keyword");
            let (name, values): (String, Vec<&str>) = if kinds
                .iter()
                .all(|k| matches!(*k, "keyword" | "constant_keyword" | "wildcard"))
            {
                (field.to_owned(), values)
            } else if kinds.iter().all(|k| *k == "text")
                && types.get(&keyword_sub).is_some_and(|m| m.len() == per_index.len())
            {
                (keyword_sub, values)
            } else if kinds.iter().all(|k| *k == "ip") {
                (field.to_owned(), values.into_iter().filter(|v| v.parse::<std::net::IpAddr>().is_ok()).collect())
            } else if kinds.iter().all(|k| matches!(*k, "long" | "integer" | "short" | "byte")) {
                (field.to_owned(), values.into_iter().filter(|v| v.parse::<i64>().is_ok()).collect())
            } else {
                return Err(StoreError::WrongColumnType {
                    object: format!("indices {}", t.index_pattern),
                    column: field.to_owned(),
                    role: "subject field",
                    found: kinds.into_iter().collect::<Vec<_>>().join(", "),
                    expected: "keyword (or text with a keyword sub-field), ip or an integer type, the same in every index",
                });
            };
            if !values.is_empty() {
                should.push(json!({ "terms": { name: values } }));
            }
        }
        if should.is_empty() {
            return Ok(None);
        }
        Ok(Some(json!({ "bool": { "should": should, "minimum_should_match": 1 } })))
    }
}

fn due_query(field: &str, cutoff_ms: i64) -> Value {
    json!({ "range": { field: { "lt": cutoff_ms, "format": "epoch_millis" } } })
}

fn cutoff_millis(cutoff: &Cutoff) -> i64 {
    cutoff.at().as_nanosecond().div_euclid(1_000_000) as i64
}

fn logs_target(target: &Target) -> Result<&LogsTarget, StoreError> {
    target
        .logs
        .as_ref()
        .ok_or_else(|| invalid(format!("target {} names no logs (index pattern and time field)", target.name)))
}

fn invalid(detail: String) -> StoreError {
    StoreError::InvalidTarget { store: KIND, detail }
}

fn backend(detail: &str) -> StoreError {
    StoreError::Backend { store: KIND, detail: detail.to_owned() }
}

/// A reqwest error's text without the URL (which may carry a pattern or a task id only, but stays out of messages on principle).
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

impl Store for SearchStore {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn probe(&self) -> StoreFuture<'_, ProbeReport> {
        Box::pin(async move {
            let root = self.call(Method::GET, &[], &[], None, "(root)").await?;
            let number = root["version"]["number"].as_str().unwrap_or("unknown");
            let distribution = root["version"]["distribution"].as_str().unwrap_or("elasticsearch");
            Ok(ProbeReport { kind: KIND, server_version: format!("{distribution} {number}") })
        })
    }

    fn count_due<'a>(&'a self, target: &'a Target, cutoff: &'a Cutoff) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            let t = logs_target(target)?;
            if self.indices(t.index_pattern.as_str()).await?.is_empty() {
                return Ok(0);
            }
            self.check_time_field(t).await?;
            self.count(On::Pattern(t.index_pattern.as_str()), &due_query(t.time_field.as_str(), cutoff_millis(cutoff)))
                .await
        })
    }

    fn purge_due<'a>(&'a self, target: &'a Target, cutoff: &'a Cutoff, options: &'a PurgeOptions) -> PurgeFuture<'a> {
        Box::pin(async move {
            let t = logs_target(target)?;
            if self.indices(t.index_pattern.as_str()).await?.is_empty() {
                let mut nothing = PurgeReport::empty(options);
                nothing.account.remaining = Some(0);
                return Ok(nothing);
            }
            self.check_time_field(t).await?;
            let cutoff_ms = cutoff_millis(cutoff);
            self.delete_reported(t, &due_query(t.time_field.as_str(), cutoff_ms), Some(cutoff_ms), options).await
        })
    }

    fn count_subject<'a>(&'a self, target: &'a Target, subject: &'a Subject) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            let t = logs_target(target)?;
            if self.indices(t.index_pattern.as_str()).await?.is_empty() {
                return Ok(0);
            }
            match self.subject_query(target, t, subject).await? {
                Some(query) => self.count(On::Pattern(t.index_pattern.as_str()), &query).await,
                None => Ok(0),
            }
        })
    }

    fn erase_subject<'a>(
        &'a self,
        target: &'a Target,
        subject: &'a Subject,
        options: &'a PurgeOptions,
    ) -> PurgeFuture<'a> {
        Box::pin(async move {
            let t = logs_target(target)?;
            let mut nothing = PurgeReport::empty(options);
            nothing.account.remaining = Some(0);
            if self.indices(t.index_pattern.as_str()).await?.is_empty() {
                return Ok(nothing);
            }
            match self.subject_query(target, t, subject).await? {
                Some(query) => self.delete_reported(t, &query, None, options).await,
                None => Ok(nothing),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cutoff_rounds_down_to_whole_milliseconds() {
        let at: jiff::Timestamp = "2024-01-01T00:00:00.0019Z".parse().unwrap();
        let c = Cutoff::planned(at, at).unwrap();
        assert_eq!(cutoff_millis(&c), 1_704_067_200_001);
        let before: jiff::Timestamp = "1969-12-31T23:59:59.9995Z".parse().unwrap();
        assert_eq!(cutoff_millis(&Cutoff::planned(before, at).unwrap()), -1);
    }

    #[test]
    fn urls_keep_patterns_and_task_ids_in_one_segment() {
        let s = SearchStore::new(SearchSettings::new("http://127.0.0.1:9200/base/")).unwrap();
        let url = s.url(&["traffic-*", "_delete_by_query"], &[("slices", "auto".to_owned())]);
        assert_eq!(url.as_str(), "http://127.0.0.1:9200/base/traffic-*/_delete_by_query?slices=auto");
        assert_eq!(s.url(&["_tasks", "node:12"], &[]).as_str(), "http://127.0.0.1:9200/base/_tasks/node:12");
    }
}
