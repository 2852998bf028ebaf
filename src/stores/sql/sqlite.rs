//! SQLite keeps times in whatever a row was given: ISO 8601 text with or
//! without an offset, RFC 2822 text, seconds or milliseconds since 1970,
//! Julian day numbers, garbage. SQL's `julianday()` reads only some of
//! these and quietly yields NULL for the rest, so retention is judged here,
//! row by row, with the same strict reading and bounds as everywhere else.
//! Rows are read in key order in chunks; each chunk's due rows are deleted
//! by key in the same IMMEDIATE transaction, so nothing changes between
//! judging a row and deleting it.

use std::collections::HashMap;
use std::time::Instant;

use sqlx::Row;
use sqlx::any::AnyRow;

use super::SqlStore;
use super::batch::key_compare;
use super::catalog::{Resolved, TimeKind};
use super::dialect::Dialect;
use super::error::classify;
use super::predicate;
use super::statement::{Arg, Sql};
use crate::api::account::UnreadableReason;
use crate::api::policy::TimeFormat;
use crate::stores::due::{Bounds, Judgement, read_number, read_text};
use crate::stores::{Cutoff, PurgeOptions, PurgeReport, StoreError, next_batch_size};

/// What a scan of the scope found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Tally {
    /// Rows in scope.
    pub total: u64,
    /// Rows due.
    pub due: u64,
    /// Rows that could not be judged, by reason.
    pub unreadable: Vec<(UnreadableReason, u64)>,
}

impl Tally {
    fn unreadable(&mut self, reason: UnreadableReason) {
        match self.unreadable.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, n)) => *n += 1,
            None => self.unreadable.push((reason, 1)),
        }
    }
}

/// Judges rows against one cutoff, with per-record periods.
struct Judge<'a> {
    cutoff: &'a Cutoff,
    target: &'a Resolved,
    format: TimeFormat,
    default: Result<Bounds, StoreError>,
    periods: HashMap<i64, Option<Bounds>>,
}

impl<'a> Judge<'a> {
    fn new(cutoff: &'a Cutoff, target: &'a Resolved) -> Self {
        let (format, zone) = match &target.time.kind {
            TimeKind::Dynamic { format, zone } => (*format, zone.clone()),
            _ => unreachable!("SQLite targets resolve to dynamic times"),
        };
        let default = cutoff.bounds(zone.as_ref()).map_err(|e| calendar_error(&e));
        Self { cutoff, target, format, default, periods: HashMap::new() }
    }

    fn bounds_for(&mut self, amount: i64) -> Result<Option<Bounds>, StoreError> {
        if let Some(b) = self.periods.get(&amount) {
            return Ok(b.clone());
        }
        let zone = predicate::column_zone(&self.target.time.kind).cloned();
        let unit = self.target.period.as_ref().expect("a period column").unit;
        let bounds = match self.cutoff.for_record_period(amount, unit) {
            None => None,
            Some(c) => Some(c.and_then(|c| c.bounds(zone.as_ref())).map_err(|e| calendar_error(&e))?),
        };
        self.periods.insert(amount, bounds.clone());
        Ok(bounds)
    }

    /// Judges one row read by [`select_rows`]: its time at `at` (typeof,
    /// text) and its period after it, when the target has one.
    fn row(&mut self, row: &AnyRow, at: usize) -> Result<Judgement, StoreError> {
        let kind: String = row.try_get(at).unwrap_or_default();
        let text: Option<String> = row.try_get(at + 1).unwrap_or(None);
        let time = match (kind.as_str(), text) {
            ("null", _) | (_, None) => return Ok(Judgement::NotDue),
            ("text", Some(t)) => read_text(&t, self.format),
            ("integer" | "real", Some(t)) => read_number(&t, self.format),
            _ => Err(UnreadableReason::NotATime),
        };
        let time = match time {
            Ok(t) => t,
            Err(reason) => return Ok(Judgement::Unreadable(reason)),
        };
        let bounds = match &self.target.period {
            None => self.default.as_ref().map_err(clone_error)?.clone(),
            Some(p) => {
                let kind: String = row.try_get(at + 2).unwrap_or_default();
                let value: Option<String> = row.try_get(at + 3).unwrap_or(None);
                match (kind.as_str(), value) {
                    ("null", _) | (_, None) if p.required => {
                        return Ok(Judgement::Unreadable(UnreadableReason::MissingPeriod));
                    }
                    ("null", _) | (_, None) => self.default.as_ref().map_err(clone_error)?.clone(),
                    ("integer", Some(v)) => {
                        match v.parse::<i64>().ok().map(|n| self.bounds_for(n)).transpose()?.flatten() {
                            Some(b) => b,
                            None => return Ok(Judgement::Unreadable(UnreadableReason::BadPeriod)),
                        }
                    }
                    _ => return Ok(Judgement::Unreadable(UnreadableReason::BadPeriod)),
                }
            }
        };
        Ok(bounds.judge(&time))
    }
}

fn calendar_error(e: &crate::api::calendar::CalendarError) -> StoreError {
    StoreError::InvalidTarget { store: "sqlite", detail: e.to_string() }
}

fn clone_error(e: &StoreError) -> StoreError {
    StoreError::InvalidTarget { store: "sqlite", detail: e.to_string() }
}

/// Reads up to `limit` rows in scope after `after` in key order: the key,
/// the parent keys of declared children, then typeof and text of the time
/// and (when the target has one) of the period.
fn select_rows(target: &Resolved, after: Option<&[Arg]>, limit: u64, with_children: bool) -> (Sql, usize) {
    let names: Vec<&str> = target.key.iter().map(|c| c.name.as_str()).collect();
    let mut sql = Sql::new(Dialect::Sqlite);
    sql.raw("SELECT ").join(names.iter(), ", ", |s, n| {
        s.ident(n);
    });
    let mut at = names.len();
    if with_children {
        for child in &target.children {
            sql.raw(", ").ident(&child.parent_key.name);
            at += 1;
        }
    }
    let time = &target.time.column.name;
    sql.raw(", typeof(").ident(time).raw("), CAST(").ident(time).raw(" AS TEXT)");
    if let Some(p) = &target.period {
        sql.raw(", typeof(").ident(&p.column.name).raw("), CAST(").ident(&p.column.name).raw(" AS TEXT)");
    }
    sql.raw(" FROM ").table(target.table.name.as_str()).raw(" WHERE ");
    predicate::filter(&mut sql, target);
    if let Some(after) = after {
        sql.raw(" AND ");
        key_compare(&mut sql, &names, after, ">");
    }
    sql.raw(" ORDER BY ").join(names.iter(), ", ", |s, n| {
        s.ident(n);
    });
    sql.raw(" LIMIT ").int(limit as i64);
    (sql, at)
}

const SCAN_CHUNK: u64 = 5_000;

impl SqlStore {
    /// Counts the rows in scope, those due and those that cannot be judged.
    pub(super) async fn sqlite_tally(&self, target: &Resolved, cutoff: &Cutoff) -> Result<Tally, StoreError> {
        let mut judge = Judge::new(cutoff, target);
        let mut tally = Tally::default();
        let mut after: Option<Vec<Arg>> = None;
        let cls = |e| classify(Dialect::Sqlite, &target.object(), e);
        loop {
            let (sql, at) = select_rows(target, after.as_deref(), SCAN_CHUNK, false);
            let rows = sql.query().fetch_all(&self.pool).await.map_err(cls)?;
            for row in &rows {
                tally.total += 1;
                match judge.row(row, at)? {
                    Judgement::Due => tally.due += 1,
                    Judgement::NotDue => {}
                    Judgement::Unreadable(reason) => tally.unreadable(reason),
                }
            }
            if (rows.len() as u64) < SCAN_CHUNK {
                return Ok(tally);
            }
            after = Some(key_of(rows.last().expect("a full chunk"), target.key.len()).map_err(cls)?);
        }
    }

    /// Deletes the due rows, chunk by chunk, each chunk judged and deleted
    /// inside one IMMEDIATE transaction.
    pub(super) async fn sqlite_purge(
        &self,
        target: &Resolved,
        cutoff: &Cutoff,
        options: &PurgeOptions,
        report: &mut PurgeReport,
    ) -> Result<(), StoreError> {
        let mut judge = Judge::new(cutoff, target);
        let cls = |e| classify(Dialect::Sqlite, &target.object(), e);
        let cap =
            options.max_batch_size.max(1).min(options.max_records_per_second.map_or(u64::MAX, |r| u64::from(r.max(1))));
        let mut size = options.initial_batch_size.clamp(1, cap);
        let mut after: Option<Vec<Arg>> = None;
        let started = Instant::now();
        let deleted_before = report.account.deleted;
        let keys = target.key.len();
        loop {
            if options.stopped() {
                return Err(StoreError::Cancelled { deleted: report.account.deleted });
            }
            let n = if options.budget.is_empty() { size } else { options.reserve(size) };
            if n == 0 {
                // The budget is spent; the read-back tells whether anything due is left.
                return Ok(());
            }
            let batch_started = Instant::now();
            let mut conn = self.pool.acquire().await.map_err(cls)?;
            sqlx::raw_sql("BEGIN IMMEDIATE").execute(&mut *conn).await.map_err(cls)?;
            let work = async {
                let (sql, at) = select_rows(target, after.as_deref(), n, true);
                let rows = sql.query().fetch_all(&mut *conn).await.map_err(cls)?;
                let mut due: Vec<&AnyRow> = Vec::new();
                for row in &rows {
                    if judge.row(row, at)? == Judgement::Due {
                        due.push(row);
                    }
                }
                let mut related = 0;
                for (i, child) in target.children.iter().enumerate() {
                    if due.is_empty() {
                        break;
                    }
                    let mut del = Sql::new(Dialect::Sqlite);
                    del.raw("DELETE FROM ")
                        .table(child.table.as_str())
                        .raw(" WHERE ")
                        .ident(&child.foreign_key.name)
                        .raw(" IN (");
                    for (j, row) in due.iter().enumerate() {
                        del.raw(if j > 0 { ", " } else { "" }).bind(Arg::decode(row, keys + i).map_err(cls)?);
                    }
                    del.raw(")");
                    let done = del
                        .query()
                        .execute(&mut *conn)
                        .await
                        .map_err(|e| classify(Dialect::Sqlite, &format!("table {}", child.table), e))?;
                    related += done.rows_affected();
                }
                let mut deleted = 0;
                if !due.is_empty() {
                    let names: Vec<&str> = target.key.iter().map(|c| c.name.as_str()).collect();
                    let mut del = Sql::new(Dialect::Sqlite);
                    del.raw("DELETE FROM ")
                        .table(target.table.name.as_str())
                        .raw(" WHERE ")
                        .columns(names.iter().copied())
                        .raw(" IN (VALUES ");
                    for (j, row) in due.iter().enumerate() {
                        del.raw(if j > 0 { ", (" } else { "(" });
                        for k in 0..keys {
                            del.raw(if k > 0 { ", " } else { "" }).bind(Arg::decode(row, k).map_err(cls)?);
                        }
                        del.raw(")");
                    }
                    del.raw(")");
                    deleted = del.query().execute(&mut *conn).await.map_err(cls)?.rows_affected();
                }
                let last = match rows.last() {
                    Some(row) => Some(key_of(row, keys).map_err(cls)?),
                    None => None,
                };
                Ok::<_, StoreError>((rows.len() as u64, deleted, related, last))
            }
            .await;
            let (read, deleted, related, last) = match work {
                Ok(done) => {
                    sqlx::raw_sql("COMMIT").execute(&mut *conn).await.map_err(cls)?;
                    done
                }
                Err(e) => {
                    let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await;
                    return Err(e);
                }
            };
            if !options.budget.is_empty() {
                options.refund(n.saturating_sub(deleted));
            }
            report.account.related_deleted += related;
            let took = batch_started.elapsed();
            report.record_batch(options, n, deleted, took);
            if read < n {
                return Ok(());
            }
            after = last;
            size = next_batch_size(size, n, took, options.target_batch_latency, cap);
            if let Some(wait) = options.pace(report.account.deleted - deleted_before, started) {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = options.cancel.cancelled() => {}
                }
            }
        }
    }
}

fn key_of(row: &AnyRow, columns: usize) -> Result<Vec<Arg>, sqlx::Error> {
    (0..columns).map(|i| Arg::decode(row, i)).collect()
}
