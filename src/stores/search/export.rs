//! A subject's documents for an access request's export: what the erasure's
//! query ([`query::subject_query`], the same matching) finds on the
//! pattern's open indices (a data stream's backing indices included), each
//! as its index, id and `_source`, sorted by index and id.
//!
//! A closed index cannot be searched: each one the pattern names may hold
//! the subject's documents, so each is counted once as unreadable and named
//! in a log line (index names, never a document). A document stored without
//! its `_source` cannot be shown and is counted as unreadable too. The
//! documents are read with a scroll of `_doc` order, a page at a time, from
//! every shard or not at all; the export stops at the first document past
//! the limit. Nothing is written: a refresh makes recent writes visible and
//! changes no document.

use reqwest::Method;
use serde_json::{Value, json};

use super::http::{self, Http, KIND, on_pattern};
use super::indices::{self, Scope};
use super::query;
use crate::api::policy::{LogsTarget, Target};
use crate::stores::export::Gather;
use crate::stores::{StoreError, Subject, SubjectExport};

/// Documents asked for per scroll page.
const PAGE: u64 = 1000;
/// How long the cluster keeps a scroll between pages.
const KEEP_ALIVE: &str = "2m";

/// The subject's documents in the target, at most `limit`.
pub(super) async fn export(
    http: &Http,
    target: &Target,
    t: &LogsTarget,
    subject: &Subject,
    limit: u64,
) -> Result<SubjectExport, StoreError> {
    let pattern = t.index_pattern.as_str();
    let wanted = query::identities(target, subject)?;
    let mut gather = Gather::new(limit, format!("indices {pattern}"));
    if wanted.is_empty() {
        return Ok(gather.finish());
    }
    let scope = Scope::of(http, pattern).await?;
    if !scope.closed.is_empty() {
        gather.unreadable(scope.closed.len() as u64);
        tracing::warn!(
            store = KIND,
            pattern,
            closed = ?scope.closed,
            "closed indices match the pattern: the subject's documents in them cannot be exported; each is counted as unreadable until it is opened"
        );
    }
    if scope.open.is_empty() {
        return Ok(gather.finish());
    }
    scope.check_health(pattern)?;
    let Some(q) = query::subject_query(http, t, wanted).await? else { return Ok(gather.finish()) };
    indices::refresh(http, pattern).await?;
    // Too many is known from a count, before any document is read.
    gather.check(indices::count(http, pattern, &q).await?)?;
    let mut documents = Vec::new();
    let mut source_less = 0;
    let result = scroll(http, pattern, &q, limit, |hit| {
        match hit.get("_source") {
            Some(source) => documents.push((
                hit["_index"].as_str().unwrap_or_default().to_owned(),
                hit["_id"].as_str().unwrap_or_default().to_owned(),
                source.clone(),
            )),
            None => source_less += 1,
        }
        documents.len() as u64 <= limit
    })
    .await;
    result?;
    if documents.len() as u64 > limit {
        return Err(gather.over_limit());
    }
    if source_less > 0 {
        gather.unreadable(source_less);
        tracing::warn!(
            store = KIND,
            pattern,
            documents = source_less,
            "documents of the subject are stored without _source; they cannot be exported and are counted as unreadable"
        );
    }
    documents.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    for (index, id, source) in documents {
        gather.push(json!({ "index": index, "id": id, "source": source }))?;
    }
    Ok(gather.finish())
}

/// Hands every document `q` matches to `each`, a page at a time, until
/// `each` says stop; clears the scroll either way.
async fn scroll(
    http: &Http,
    pattern: &str,
    q: &Value,
    limit: u64,
    mut each: impl FnMut(&Value) -> bool,
) -> Result<(), StoreError> {
    let mut params = on_pattern();
    params.push(("scroll", KEEP_ALIVE.to_owned()));
    let body = json!({ "size": PAGE.min(limit + 1), "query": q, "sort": ["_doc"] });
    let mut answer = http.call(Method::POST, &[pattern, "_search"], &params, Some(&body), pattern).await?;
    let mut scroll_id = answer["_scroll_id"].as_str().map(str::to_owned);
    let outcome = async {
        loop {
            answer = http::whole(answer, "reading the subject's documents", pattern)?;
            let hits = answer["hits"]["hits"].as_array().cloned().unwrap_or_default();
            if hits.is_empty() {
                return Ok(());
            }
            for hit in &hits {
                if !each(hit) {
                    return Ok(());
                }
            }
            let Some(id) = &scroll_id else {
                return Err(http::backend("a search answered without a scroll id to go on from"));
            };
            let next = json!({ "scroll": KEEP_ALIVE, "scroll_id": id });
            answer = http.call(Method::POST, &["_search", "scroll"], &[], Some(&next), pattern).await?;
            if let Some(id) = answer["_scroll_id"].as_str() {
                scroll_id = Some(id.to_owned());
            }
        }
    }
    .await;
    if let Some(id) = scroll_id {
        let clear = json!({ "scroll_id": [id] });
        // A scroll left behind expires by itself after KEEP_ALIVE.
        let _ = http.call(Method::DELETE, &["_search", "scroll"], &[], Some(&clear), pattern).await;
    }
    outcome
}
