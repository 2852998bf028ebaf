//! OpenSearch, and the same API of Elasticsearch 7 and 8, over a thin typed
//! wrapper of reqwest: a handful of endpoints, no client crate.
//!
//! A purge lists the pattern's indices, closed ones included: a closed
//! index cannot be searched, so it is counted unreadable (once per index)
//! and the run cannot be compliant. It refreshes the open indices before
//! every count, so documents written but not yet searchable are seen, and
//! takes a count only when every shard answered: a red index or a failed
//! shard is an error, never a smaller count. Before the first delete it
//! stops with [`StoreError::Blocked`] when an index holding due documents,
//! or the cluster, is read-only.
//!
//! It then drops whole indices whose newest document is before the cutoff
//! (asked of the store with a `max` aggregation, never read from the index
//! name; an index with any document lacking the time field is never dropped
//! whole), except a data stream's or an alias's write index: see
//! [`indices`]. Before dropping, the index is write-blocked and asked again,
//! so a document written meanwhile keeps the index; the block is put back as
//! it was on every other path. The rest goes with `_delete_by_query` (`lt`
//! the cutoff, strict), run as a sliced task ([`task`]). The read-back is a
//! `_count` after a `_refresh`.
//!
//! An erasure does the same with a query of the subject's identities
//! ([`query`]), and never drops an index. An access request's export reads
//! what that same query finds ([`export`]).
//!
//! The cutoff is compared in whole milliseconds, rounded down: a document
//! in the cutoff's own millisecond is kept, never the other way round.

mod export;
mod http;
mod indices;
mod query;
mod task;

use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use self::http::{Http, KIND};
use self::indices::Scope;
use super::{
    Cutoff, Incomplete, ProbeReport, PurgeFuture, PurgeOptions, PurgeReport, Store, StoreError, StoreFuture, Subject,
    SubjectExport,
};
use crate::api::Mode;
use crate::api::policy::{LogsTarget, Target};

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
    http: Http,
}

impl std::fmt::Debug for SearchStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SearchStore")
            .field("base", &self.http.base())
            .field("authenticated", &self.http.authenticated())
            .finish()
    }
}

/// What a purge or an erasure deletes: the documents a query matches, and
/// for a purge, the cutoff below which whole indices may be dropped.
struct Work<'a> {
    target: &'a LogsTarget,
    query: Value,
    drop_before: Option<i64>,
    /// Count the documents not matched as not due (a purge does).
    count_not_due: bool,
}

impl SearchStore {
    /// A client for the cluster; nothing is sent until the first call.
    pub fn new(settings: SearchSettings) -> Result<Self, StoreError> {
        Ok(Self { http: Http::new(&settings.url, settings.credentials, settings.request_timeout)? })
    }

    /// Counts what `query` matches on the pattern's open indices, after a
    /// refresh.
    async fn count_fresh(&self, pattern: &str, query: &Value) -> Result<u64, StoreError> {
        indices::refresh(&self.http, pattern).await?;
        indices::count(&self.http, pattern, query).await
    }

    /// Deletes what the work's query matches, then reads back; two passes
    /// at most. The account says where every document went.
    async fn delete_verified(
        &self,
        scope: &Scope,
        work: &Work<'_>,
        options: &PurgeOptions,
        report: &mut PurgeReport,
    ) -> Result<(), StoreError> {
        let pattern = work.target.index_pattern.as_str();
        scope.check_health(pattern)?;
        indices::refresh(&self.http, pattern).await?;
        let (all, matched) = indices::census(&self.http, pattern, &work.query).await?;
        report.account.matched = matched;
        report.account.remaining = Some(matched);
        if work.count_not_due {
            report.account.not_due = Some(all - matched.min(all));
        }
        if options.mode == Mode::DryRun || matched == 0 {
            return Ok(());
        }
        let field = work.target.time_field.as_str();
        let drop_before = work.drop_before.filter(|_| work.target.delete_expired_indices);
        indices::check_blocks(&self.http, pattern, &work.query, drop_before.map(|c| (field, c))).await?;
        if let Some(cutoff_ms) = drop_before {
            indices::drop_expired(&self.http, &scope.open, field, cutoff_ms, options, report).await?;
        }
        for _pass in 0..2 {
            let remaining = self.count_fresh(pattern, &work.query).await?;
            report.account.remaining = Some(remaining);
            if remaining == 0 {
                return Ok(());
            }
            task::delete_by_query(&self.http, pattern, &work.query, remaining, scope.max_shards, options, report)
                .await?;
        }
        let remaining = self.count_fresh(pattern, &work.query).await?;
        report.account.remaining = Some(remaining);
        if remaining == 0 {
            return Ok(());
        }
        Err(StoreError::NotVerified { deleted: report.account.deleted, remaining })
    }

    /// [`Self::delete_verified`] with a report of its own, kept when it
    /// fails; closed indices are in it either way, those closed meanwhile
    /// too.
    async fn delete_reported(
        &self,
        scope: Scope,
        work: Work<'_>,
        options: &PurgeOptions,
    ) -> Result<PurgeReport, Incomplete> {
        let pattern = work.target.index_pattern.as_str();
        let mut report = PurgeReport::empty(options);
        let result = if scope.open.is_empty() {
            report.account.remaining = Some(0);
            Ok(())
        } else {
            self.delete_verified(&scope, &work, options, &mut report).await
        };
        let mut closed = scope;
        if !closed.open.is_empty()
            && let Ok(after) = Scope::of(&self.http, pattern).await
        {
            closed.closed.extend(after.closed);
            closed.closed.sort();
            closed.closed.dedup();
        }
        closed.report_closed(pattern, &mut report.account);
        match result {
            Ok(()) => Ok(report),
            Err(error) => Err(Incomplete { error, report: Box::new(report) }),
        }
    }
}

/// `query`, leaving out what any of the holds keeps.
fn not_held(query: Value, held: &[(String, Value)]) -> Value {
    if held.is_empty() {
        return query;
    }
    let out: Vec<&Value> = held.iter().map(|(_, q)| q).collect();
    serde_json::json!({ "bool": { "filter": [query], "must_not": out } })
}

impl SearchStore {
    /// The query of each held subject's documents, by hold. A hold whose
    /// subject has no identity of a kind the target declares finds nothing
    /// here.
    async fn held_queries(&self, target: &Target, t: &LogsTarget) -> Result<Vec<(String, Value)>, StoreError> {
        let mut out = Vec::new();
        for (hold, identities) in target.held.subjects() {
            let subject = Subject::new(identities.iter().cloned());
            let wanted = query::identities(target, &subject)?;
            if let Some(q) = query::subject_query(&self.http, t, wanted).await? {
                out.push((hold.to_owned(), q));
            }
        }
        Ok(out)
    }
}

fn cutoff_millis(cutoff: &Cutoff) -> i64 {
    cutoff.at().as_nanosecond().div_euclid(1_000_000) as i64
}

fn logs_target(target: &Target) -> Result<&LogsTarget, StoreError> {
    target
        .logs
        .as_deref()
        .ok_or_else(|| http::invalid(format!("target {} names no logs (index pattern and time field)", target.name)))
}

impl Store for SearchStore {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn keeps_held_subjects(&self) -> bool {
        true
    }

    fn probe(&self) -> StoreFuture<'_, ProbeReport> {
        Box::pin(async move {
            let root = self.http.call(Method::GET, &[], &[], None, "(root)").await?;
            let number = root["version"]["number"].as_str().unwrap_or("unknown");
            let distribution = root["version"]["distribution"].as_str().unwrap_or("elasticsearch");
            Ok(ProbeReport { kind: KIND, server_version: format!("{distribution} {number}") })
        })
    }

    /// A pattern with a wildcard may match no index yet (tomorrow's daily
    /// index); one without must name an index. The time field is checked
    /// in the mappings of the indices there are.
    fn check_target<'a>(&'a self, target: &'a Target) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let t = logs_target(target)?;
            let scope = Scope::of(&self.http, t.index_pattern.as_str()).await?;
            if scope.open.is_empty() {
                return Ok(());
            }
            query::check_time_field(&self.http, t).await
        })
    }

    fn count_due<'a>(&'a self, target: &'a Target, cutoff: &'a Cutoff) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            let t = logs_target(target)?;
            let scope = Scope::of(&self.http, t.index_pattern.as_str()).await?;
            if scope.open.is_empty() {
                return Ok(0);
            }
            scope.check_health(t.index_pattern.as_str())?;
            query::check_time_field(&self.http, t).await?;
            let held = self.held_queries(target, t).await?;
            let due = not_held(query::due_query(t.time_field.as_str(), cutoff_millis(cutoff)), &held);
            self.count_fresh(t.index_pattern.as_str(), &due).await
        })
    }

    /// Every document of the pattern's open indices: what maxPercentPerRun
    /// is a share of (closed indices are unreadable, not counted).
    fn count_total<'a>(&'a self, target: &'a Target) -> StoreFuture<'a, Option<u64>> {
        Box::pin(async move {
            let t = logs_target(target)?;
            let scope = Scope::of(&self.http, t.index_pattern.as_str()).await?;
            if scope.open.is_empty() {
                return Ok(Some(0));
            }
            scope.check_health(t.index_pattern.as_str())?;
            let all = serde_json::json!({ "match_all": {} });
            self.count_fresh(t.index_pattern.as_str(), &all).await.map(Some)
        })
    }

    fn purge_due<'a>(&'a self, target: &'a Target, cutoff: &'a Cutoff, options: &'a PurgeOptions) -> PurgeFuture<'a> {
        Box::pin(async move {
            let t = logs_target(target)?;
            let scope = Scope::of(&self.http, t.index_pattern.as_str()).await?;
            if !scope.open.is_empty() {
                query::check_time_field(&self.http, t).await?;
            }
            let cutoff_ms = cutoff_millis(cutoff);
            let held = if scope.open.is_empty() { Vec::new() } else { self.held_queries(target, t).await? };
            let due = query::due_query(t.time_field.as_str(), cutoff_ms);
            let work = Work {
                target: t,
                query: not_held(due.clone(), &held),
                // An index with a held document in it is not expired as a whole.
                drop_before: held.is_empty().then_some(cutoff_ms),
                count_not_due: true,
            };
            let mut report = self.delete_reported(scope, work, options).await?;
            // The due documents each hold keeps, each counted once.
            let mut before: Vec<Value> = Vec::new();
            for (hold, q) in &held {
                let mine =
                    serde_json::json!({ "bool": { "filter": [due.clone(), q.clone()], "must_not": before.clone() } });
                let n = self.count_fresh(t.index_pattern.as_str(), &mine).await.map_err(Incomplete::from)?;
                report.account.add_held(hold, n);
                if let Some(not_due) = report.account.not_due.as_mut() {
                    // The census counted them among the documents not matched.
                    *not_due = not_due.saturating_sub(n);
                }
                before.push(q.clone());
            }
            Ok(report)
        })
    }

    fn export_subject<'a>(
        &'a self,
        target: &'a Target,
        subject: &'a Subject,
        limit: u64,
    ) -> StoreFuture<'a, SubjectExport> {
        Box::pin(async move { export::export(&self.http, target, logs_target(target)?, subject, limit).await })
    }

    fn count_subject<'a>(&'a self, target: &'a Target, subject: &'a Subject) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            let t = logs_target(target)?;
            let wanted = query::identities(target, subject)?;
            let scope = Scope::of(&self.http, t.index_pattern.as_str()).await?;
            if scope.open.is_empty() {
                return Ok(0);
            }
            scope.check_health(t.index_pattern.as_str())?;
            match query::subject_query(&self.http, t, wanted).await? {
                Some(q) => self.count_fresh(t.index_pattern.as_str(), &q).await,
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
            let wanted = query::identities(target, subject)?;
            let mut scope = Scope::of(&self.http, t.index_pattern.as_str()).await?;
            let query = if scope.open.is_empty() { None } else { query::subject_query(&self.http, t, wanted).await? };
            let query = query.unwrap_or_else(|| {
                scope.open.clear(); // nothing can match: only closed indices to report
                Value::Null
            });
            self.delete_reported(scope, Work { target: t, query, drop_before: None, count_not_due: false }, options)
                .await
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
        let s = Http::new("http://127.0.0.1:9200/base/", None, Duration::from_secs(1)).unwrap();
        let url = s.url(&["traffic-*", "_delete_by_query"], &[("slices", "auto".to_owned())]);
        assert_eq!(url.as_str(), "http://127.0.0.1:9200/base/traffic-*/_delete_by_query?slices=auto");
        assert_eq!(s.url(&["_tasks", "node:12"], &[]).as_str(), "http://127.0.0.1:9200/base/_tasks/node:12");
    }
}
