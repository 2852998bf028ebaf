//! The indices a pattern names and what may be done to each: which are
//! closed (kept and reported unreadable), which hold a block that stops
//! deletes (an error before anything is deleted), and which may be dropped
//! whole, behind a write block that is always put back as it was.
//!
//! Never dropped whole, whatever they hold: the write index of a data stream
//! and the write index of an alias (its `is_write_index`, or the only index
//! of the alias). Dropping them stops the application writing, or removes
//! the alias; their documents go by query like any others. Older backing
//! indices of a data stream are dropped like plain indices (OpenSearch and
//! Elasticsearch 7.9+ allow it).

use std::time::Instant;

use reqwest::Method;
use serde_json::{Value, json};

use super::http::{self, Http, KIND, on_pattern};
use crate::api::account::{Account, Dropped, UnreadableReason};
use crate::stores::{PurgeOptions, PurgeReport, StoreError};

/// The indices a pattern names, open and closed, sorted by name.
#[derive(Clone, Debug, Default)]
pub(super) struct Scope {
    /// Open indices: searched, purged, maybe dropped.
    pub open: Vec<String>,
    /// Closed indices: nothing in them can be counted or deleted.
    pub closed: Vec<String>,
    /// Open indices with a primary shard that is not assigned: nothing
    /// can be judged from them (and a refresh waits a minute for them).
    pub red: Vec<String>,
    /// The most primary shards of any open index.
    pub max_shards: u64,
}

impl Scope {
    /// Lists the pattern's indices, closed ones included (`_cat/indices`
    /// with `expand_wildcards=open` would hide them). A pattern without a
    /// wildcard that names no index is an error; one with a wildcard may
    /// match none.
    pub(super) async fn of(http: &Http, pattern: &str) -> Result<Self, StoreError> {
        let query = [
            ("format", "json".to_owned()),
            ("h", "index,status,health,pri".to_owned()),
            ("expand_wildcards", "open,closed".to_owned()),
        ];
        let rows = http.call(Method::GET, &["_cat", "indices", pattern], &query, None, pattern).await?;
        let mut scope = Self::default();
        for row in rows.as_array().into_iter().flatten() {
            let Some(name) = row["index"].as_str() else { continue };
            if row["status"].as_str() == Some("open") {
                scope.open.push(name.to_owned());
                if row["health"].as_str() == Some("red") {
                    scope.red.push(name.to_owned());
                }
                let shards = row["pri"].as_str().and_then(|p| p.parse().ok()).unwrap_or(1);
                scope.max_shards = scope.max_shards.max(shards);
            } else {
                scope.closed.push(name.to_owned());
            }
        }
        scope.open.sort();
        scope.closed.sort();
        scope.red.sort();
        Ok(scope)
    }

    /// An error when an open index is red: the shards that answer cannot
    /// tell what the others hold, so nothing is counted from them, and no
    /// index is judged wholly due from them.
    pub(super) fn check_health(&self, pattern: &str) -> Result<(), StoreError> {
        if self.red.is_empty() {
            return Ok(());
        }
        Err(http::backend(&format!(
            "{} of the indices {pattern} are red ({}): some of their primary shards are not assigned, so a count would come from part of the shards, and a partial answer is never taken as a count. Bring the shards back (GET _cluster/allocation/explain says why they are unassigned), or narrow the target's indexPattern",
            self.red.len(),
            self.red.join(", ")
        )))
    }

    /// Counts the closed indices as unreadable, once each: a closed index
    /// cannot tell how many documents it holds. Their names go to the log
    /// (index names are not personal data), so someone can open them.
    pub(super) fn report_closed(&self, pattern: &str, account: &mut Account) {
        if self.closed.is_empty() {
            return;
        }
        account.add_unreadable(UnreadableReason::ClosedIndex, self.closed.len() as u64);
        tracing::warn!(
            store = KIND,
            pattern,
            closed = ?self.closed,
            "closed indices match the pattern: nothing in them can be counted or deleted, and the run cannot be compliant until they are opened or deleted"
        );
    }
}

/// Refreshes the pattern's open indices, so what was written before is seen.
pub(super) async fn refresh(http: &Http, on: &str) -> Result<(), StoreError> {
    let answer = http.call(Method::POST, &[on, "_refresh"], &on_pattern(), None, on).await?;
    http::refreshed(&answer, on)
}

/// Counts what `query` matches, from every shard or not at all.
pub(super) async fn count(http: &Http, on: &str, query: &Value) -> Result<u64, StoreError> {
    let body = json!({ "query": query });
    let answer = http.call(Method::POST, &[on, "_count"], &on_pattern(), Some(&body), on).await?;
    let answer = http::whole(answer, "counting", on)?;
    answer["count"].as_u64().ok_or_else(|| http::backend("_count answered without a count"))
}

/// Counts every document and those `query` matches, in one request, from
/// every shard or not at all: (all, matched).
pub(super) async fn census(http: &Http, on: &str, query: &Value) -> Result<(u64, u64), StoreError> {
    let body = json!({ "size": 0, "track_total_hits": true, "aggs": { "matched": { "filter": query } } });
    let answer = http.call(Method::POST, &[on, "_search"], &on_pattern(), Some(&body), on).await?;
    let answer = http::whole(answer, "counting", on)?;
    let all = answer["hits"]["total"]["value"].as_u64().or_else(|| answer["hits"]["total"].as_u64());
    let matched = answer["aggregations"]["matched"]["doc_count"].as_u64();
    all.zip(matched).ok_or_else(|| http::backend("a count answered without its totals"))
}

/// Blocks that stop deletes by query, in the order they are named.
const WRITE_BLOCKS: [&str; 3] = ["index.blocks.read_only", "index.blocks.read_only_allow_delete", "index.blocks.write"];

/// Stops before any delete when the cluster, or an open index holding
/// matched documents, carries a block that stops deletes: the error names
/// the block, so nobody looks for a missing permission. An index with a
/// write block (as rollover policies set on old indices) that will be
/// dropped whole is no obstacle: deleting an index is allowed under it.
/// `drop` is the time field and cutoff when whole indices may be dropped.
pub(super) async fn check_blocks(
    http: &Http,
    pattern: &str,
    query: &Value,
    drop: Option<(&str, i64)>,
) -> Result<(), StoreError> {
    let flat = [("flat_settings", "true".to_owned())];
    let cluster = match http.call(Method::GET, &["_cluster", "settings"], &flat, None, pattern).await {
        Ok(settings) => settings,
        // A user without cluster monitoring still learns of a cluster block
        // from the delete itself, as the same error.
        Err(StoreError::PermissionDenied { .. }) => Value::Null,
        Err(e) => return Err(e),
    };
    for level in ["transient", "persistent"] {
        for setting in ["cluster.blocks.read_only", "cluster.blocks.read_only_allow_delete"] {
            if cluster[level][setting].as_str() == Some("true") {
                return Err(http::blocked_by_setting("the cluster", setting));
            }
        }
    }
    let mut q = on_pattern();
    q.push(("flat_settings", "true".to_owned()));
    let settings = http.call(Method::GET, &[pattern, "_settings", "index.blocks.*"], &q, None, pattern).await?;
    for (index, s) in settings.as_object().into_iter().flatten() {
        let Some(block) = WRITE_BLOCKS.into_iter().find(|b| s["settings"][*b].as_str() == Some("true")) else {
            continue;
        };
        if count(http, index, query).await? == 0 {
            continue;
        }
        let droppable = match drop {
            Some((field, cutoff_ms)) if block != "index.blocks.read_only" => {
                wholly_expired(http, index, field, cutoff_ms).await?.0 && kept_whole(http, index).await?.is_none()
            }
            _ => false,
        };
        if !droppable {
            return Err(http::blocked_by_setting(&format!("index {index}"), block));
        }
    }
    Ok(())
}

/// Why an index must not be dropped whole, if it must not.
async fn kept_whole(http: &Http, index: &str) -> Result<Option<&'static str>, StoreError> {
    let all = [("expand_wildcards", "all".to_owned())];
    let resolved = http.call(Method::GET, &["_resolve", "index", index], &all, None, index).await?;
    let me = resolved["indices"].as_array().into_iter().flatten().find(|i| i["name"].as_str() == Some(index));
    let Some(me) = me else { return Ok(None) };
    if let Some(stream) = me["data_stream"].as_str() {
        let ds = http.call(Method::GET, &["_resolve", "index", stream], &all, None, index).await?;
        let backing = ds["data_streams"][0]["backing_indices"].as_array();
        // The newest backing index is the write index; when in doubt, keep it.
        if backing.and_then(|b| b.last()).is_none_or(|w| w.as_str() == Some(index)) {
            return Ok(Some("it is the write index of a data stream"));
        }
    }
    let aliases: Vec<&str> = me["aliases"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    if aliases.is_empty() {
        return Ok(None);
    }
    let members = http.call(Method::GET, &["_alias", &aliases.join(",")], &all, None, index).await?;
    for alias in aliases {
        let holders: Vec<&Value> = members
            .as_object()
            .into_iter()
            .flatten()
            .map(|(_, m)| &m["aliases"][alias])
            .filter(|a| a.is_object())
            .collect();
        if members[index]["aliases"][alias]["is_write_index"].as_bool() == Some(true) {
            return Ok(Some("it is the write index of an alias"));
        }
        if holders.len() <= 1 {
            return Ok(Some("it is the only index of an alias, which would go with it"));
        }
    }
    Ok(None)
}

/// Whether every document of `index` has a time before `cutoff_ms`, judged
/// from every shard; and how many documents it holds.
async fn wholly_expired(http: &Http, index: &str, field: &str, cutoff_ms: i64) -> Result<(bool, u64), StoreError> {
    let body = json!({
        "size": 0,
        "track_total_hits": true,
        "aggs": { "newest": { "max": { "field": field } }, "untimed": { "missing": { "field": field } } }
    });
    let answer = http.call(Method::POST, &[index, "_search"], &[], Some(&body), index).await?;
    let answer = http::whole(answer, "judging whether an index is wholly due", index)?;
    let total = answer["hits"]["total"]["value"].as_u64().or_else(|| answer["hits"]["total"].as_u64()).unwrap_or(0);
    let untimed = answer["aggregations"]["untimed"]["doc_count"].as_u64().unwrap_or(u64::MAX);
    let newest = answer["aggregations"]["newest"]["value"].as_f64();
    let expired = total > 0 && untimed == 0 && newest.is_some_and(|n| n < cutoff_ms as f64);
    Ok((expired, total))
}

/// A write block this purge set on an index, put back as it was: by
/// [`WriteBlock::restore`], or, when the purge is dropped halfway, by a task
/// spawned on drop.
struct WriteBlock {
    http: Http,
    index: String,
    /// `index.blocks.write` before: `None` when it was not set.
    before: Option<Value>,
    armed: bool,
}

impl WriteBlock {
    /// Blocks writes to `index` with the block API, which also waits for
    /// writes in flight; reads the setting first, to restore it exactly.
    async fn set(http: &Http, index: &str) -> Result<Self, StoreError> {
        let q = [("flat_settings", "true".to_owned())];
        let answer = http.call(Method::GET, &[index, "_settings", "index.blocks.*"], &q, None, index).await?;
        let settings = &answer[index]["settings"];
        let before = settings.get("index.blocks.write").cloned();
        let mut block = Self { http: http.clone(), index: index.to_owned(), before, armed: false };
        if WRITE_BLOCKS.iter().any(|b| settings[*b].as_str() == Some("true")) {
            return Ok(block); // no writes already: nothing of ours to undo
        }
        block.armed = true;
        let answer = http.call(Method::PUT, &[index, "_block", "write"], &[], None, index).await?;
        if answer["acknowledged"].as_bool() != Some(true) {
            return Err(http::backend(&format!("the write block on index {index} was not acknowledged")));
        }
        Ok(block)
    }

    fn body(&self) -> Value {
        json!({ "index.blocks.write": self.before.clone().unwrap_or(Value::Null) })
    }

    /// Puts `index.blocks.write` back as it was.
    async fn restore(mut self) -> Result<(), StoreError> {
        if !self.armed {
            return Ok(());
        }
        self.armed = false;
        let body = self.body();
        self.http.call(Method::PUT, &[&self.index, "_settings"], &[], Some(&body), &self.index).await.map(drop)
    }

    /// The index is gone, and its block with it.
    fn dropped(mut self) {
        self.armed = false;
    }
}

impl Drop for WriteBlock {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (http, index, body) = (self.http.clone(), self.index.clone(), self.body());
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => {
                rt.spawn(async move {
                    if let Err(e) = http.call(Method::PUT, &[&index, "_settings"], &[], Some(&body), &index).await {
                        tracing::error!(store = KIND, index, error = %e, "could not lift the write block of a stopped purge: remove index.blocks.write by hand");
                    }
                });
            }
            Err(_) => tracing::error!(
                store = KIND,
                index = self.index,
                "a purge stopped while an index was write-blocked: remove index.blocks.write by hand"
            ),
        }
    }
}

/// Drops the open indices whose documents are all due, each judged from
/// every shard and judged again behind a write block, so a document written
/// meanwhile keeps the index. Every dropped index is in the account's
/// `dropped` with its documents, which count as deleted.
pub(super) async fn drop_expired(
    http: &Http,
    open: &[String],
    field: &str,
    cutoff_ms: i64,
    options: &PurgeOptions,
    report: &mut PurgeReport,
) -> Result<(), StoreError> {
    for index in open {
        if options.stopped() {
            return Err(StoreError::Cancelled { deleted: report.account.deleted });
        }
        let started = Instant::now();
        let (expired, total) = wholly_expired(http, index, field, cutoff_ms).await?;
        if !expired {
            continue;
        }
        if let Some(why) = kept_whole(http, index).await? {
            tracing::info!(store = KIND, index, why, "an index wholly due is purged by query, not dropped");
            continue;
        }
        let reserved = if options.budget.is_empty() { total } else { options.reserve(total) };
        if reserved < total {
            options.refund(reserved); // within the budget, by query
            continue;
        }
        let block = WriteBlock::set(http, index).await?;
        let judged = async {
            refresh(http, index).await?;
            wholly_expired(http, index, field, cutoff_ms).await
        }
        .await;
        let total_now = match judged {
            Ok((true, n)) if n <= reserved => n,
            other => {
                options.refund(reserved);
                let restored = block.restore().await;
                other?;
                restored?;
                continue;
            }
        };
        if let Err(e) = http.call(Method::DELETE, &[index], &[], None, index).await {
            options.refund(reserved);
            if let Err(restore) = block.restore().await {
                tracing::error!(store = KIND, index, error = %restore, "could not lift the write block after a failed drop: remove index.blocks.write by hand");
            }
            return Err(e);
        }
        block.dropped();
        options.refund(reserved - total_now);
        report.record_batch(options, total_now, total_now, started.elapsed());
        report.account.dropped.push(Dropped { name: index.clone(), records: total_now });
        tracing::info!(
            store = KIND,
            index,
            documents = total_now,
            "dropped an index whose newest document is before the cutoff"
        );
    }
    Ok(())
}
