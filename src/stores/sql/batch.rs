//! The batch loops: rows in a scope are deleted in short statements, each
//! bounded by something the database finds cheaply, children first, with
//! the run's budget, rate limit and cancellation checked between batches.
//! Every batch is one DELETE (with its children's, in one transaction,
//! when the target declares children): no probe query, and its size comes
//! from the latency of the batch before, aiming at half the target.
//!
//! - A purge walks the time index where one leads with the time column and
//!   the target has no children or per-record periods: `ORDER BY time
//!   LIMIT n`, the last time deleted carried forward as the next lower
//!   bound, so it reads only the due rows, each once. On PostgreSQL it
//!   changes to row ranges once the due rows turn out to be a large part
//!   of the table (a twentieth, by the planner's estimate of its size),
//!   where reading every block once is cheaper than an index; on MariaDB
//!   to the key walk below past a tenth (by InnoDB's estimate).
//! - Otherwise PostgreSQL walks the table's physical row ranges (`ctid`, a
//!   TID range scan since PostgreSQL 14): every block is read about once,
//!   whatever the key (composite, UUID, none) and whatever indexes exist.
//! - MySQL and MariaDB otherwise walk a unique key's index: `DELETE ...
//!   ORDER BY key LIMIT n RETURNING key`, the last key carried forward
//!   (windows of consecutive keys where children go first, since a
//!   DELETE of several tables takes no LIMIT).
//! - A scope of at most [`SINGLE_MAX`] rows (a subject's rows, usually)
//!   goes in one statement found through the scope's own indexes.
//!
//! Each batch re-checks the scope in its DELETE, so a row that stopped
//! being in scope since it was found is kept.

use std::time::{Duration, Instant};

use futures::TryStreamExt;
use sqlx::Row;
use sqlx::any::AnyRow;

use super::SqlStore;
use super::catalog::{Column, Layout, Resolved, TimeKind};
use super::dialect::Dialect;
use super::error::classify;
use super::statement::{Arg, Sql};
use crate::stores::{PurgeOptions, PurgeReport, StoreError, next_batch_size};

/// The rows of a scope to delete.
pub(super) struct Job<'a> {
    /// The store.
    pub store: &'a SqlStore,
    /// The resolved target.
    pub target: &'a Resolved,
    /// The rows in scope.
    pub scope: &'a (dyn Fn(&mut Sql) + Sync),
    /// Whether declared child tables go first.
    pub with_children: bool,
    /// Budget, rate, cancellation, progress.
    pub options: &'a PurgeOptions,
    /// When the purge began and what it had deleted by then: the rate
    /// limit counts from there, across walks and passes, so changing from
    /// one walk to another never starts its count afresh.
    pub since: (Instant, u64),
}

/// Rows a PostgreSQL heap block holds at most (8 kB blocks); a range of
/// blocks never yields more.
const PG_ROWS_PER_BLOCK: u64 = 291;

/// A scope counted at no more rows than this goes in one statement, found
/// through its own indexes (a subject's rows are found by their identity
/// columns' indexes, where a walk of the whole table would read it all).
pub(super) const SINGLE_MAX: u64 = 10_000;

/// How a walk of the time index ended.
enum Ended {
    /// Every due row was met.
    Done,
    /// Due rows are so many that a walk of every block is cheaper.
    Dense,
}

impl Job<'_> {
    fn dialect(&self) -> Dialect {
        self.store.dialect
    }

    fn cls(&self) -> impl Fn(sqlx::Error) -> StoreError + '_ {
        move |e| classify(self.dialect(), &self.target.object(), e)
    }

    /// Books a committed batch that was given `n` rows of budget and deleted
    /// `deleted`: the unused budget goes back, the report counts it, the log
    /// says `what` committed. Returns how long it took.
    fn settle(&self, report: &mut PurgeReport, n: u64, deleted: u64, started: Instant, what: &'static str) -> Duration {
        if !self.options.budget.is_empty() {
            self.options.refund(n.saturating_sub(deleted));
        }
        let took = started.elapsed();
        report.record_batch(self.options, n, deleted, took);
        tracing::debug!(
            store = self.dialect().kind(),
            batch = report.batches,
            size = n,
            deleted,
            millis = took.as_millis() as u64,
            "{what} committed"
        );
        took
    }

    /// The most rows one batch may delete: the options' cap and a second's
    /// worth of the rate limit.
    fn cap(&self) -> u64 {
        let o = self.options;
        o.max_batch_size.max(1).min(o.max_records_per_second.map_or(u64::MAX, |r| u64::from(r.max(1))))
    }

    /// Deletes every row in scope; `in_scope` is their number when counted
    /// (an erasure counts its subject's rows first).
    pub async fn run(&self, in_scope: u64, report: &mut PurgeReport) -> Result<(), StoreError> {
        if in_scope == 0 {
            return Ok(());
        }
        if self.options.budget.is_empty() && in_scope <= self.cap().min(SINGLE_MAX) {
            return self.single(in_scope, report).await;
        }
        match self.dialect() {
            Dialect::Postgres => {
                let layout = self.store.layout(self.target).await?;
                self.row_ranges(&layout, Some(in_scope), report).await
            }
            Dialect::MySql if !self.has_children() => self.key_walk(Some(in_scope), report).await,
            Dialect::MySql | Dialect::Sqlite => self.key_windows(report).await,
        }
    }

    /// Deletes the due rows of a purge without counting them again:
    /// `counted` is what the run counted just before (none on a second
    /// pass). A due set a single statement can take goes in one, as a
    /// hand-written DELETE would; otherwise the walk is chosen from the
    /// table's layout.
    pub async fn purge(
        &self,
        layout: &Layout,
        counted: Option<u64>,
        report: &mut PurgeReport,
    ) -> Result<(), StoreError> {
        let r = self.target;
        let left = counted.map(|c| c.saturating_sub(report.account.deleted));
        if let Some(left) = left
            && self.options.budget.is_empty()
            && left <= self.cap().min(SINGLE_MAX)
        {
            // Nothing counted may still be something written since: the
            // read-back says, and a second pass takes it.
            return if left == 0 { Ok(()) } else { self.single(left, report).await };
        }
        // PostgreSQL changes to row ranges past a twentieth of the table:
        // reading every block once is then cheaper than the index.
        // MariaDB changes to the key walk past a tenth: InnoDB deletes a
        // row found through a secondary index at about twice the cost of
        // one found in the clustered key's order (2M rows, half due: 9.0 s
        // through the time index, 5.4 s walking the key, docs/performance.md).
        let dense = match self.dialect() {
            Dialect::Postgres => Some(
                layout.rows_estimate.map_or(layout.blocks.saturating_mul(20), |n| (n / 20.0) as u64).max(SINGLE_MAX),
            ),
            Dialect::MySql => layout.rows_estimate.map(|n| ((n / 10.0) as u64).max(SINGLE_MAX)),
            Dialect::Sqlite => None,
        };
        let by_time = layout.time_index
            && layout.plain
            && r.children.is_empty()
            && r.period.is_none()
            && matches!(r.time.kind, TimeKind::Instant | TimeKind::Civil(_) | TimeKind::Date(_) | TimeKind::Unix(_))
            && left.zip(dense).is_none_or(|(left, dense)| left <= dense);
        let walked_from = report.account.deleted;
        if by_time {
            match self.time_walk(dense, report).await? {
                Ended::Done => return Ok(()),
                Ended::Dense => {}
            }
        }
        match self.dialect() {
            Dialect::Postgres => {
                // What the time walk deleted is no longer left to find.
                let left = left.map(|l| l.saturating_sub(report.account.deleted - walked_from));
                self.row_ranges(layout, left, report).await
            }
            Dialect::MySql if !self.has_children() => {
                let left = left.map(|l| l.saturating_sub(report.account.deleted - walked_from));
                self.key_walk(left, report).await
            }
            Dialect::MySql | Dialect::Sqlite => self.key_windows(report).await,
        }
    }

    /// The type the time column's values are compared in, for the keyset.
    fn time_type(&self) -> &'static str {
        match (self.dialect(), &self.target.time.kind) {
            (Dialect::Postgres, TimeKind::Instant) => "timestamptz",
            (Dialect::Postgres, TimeKind::Civil(_)) => "timestamp",
            (Dialect::Postgres, TimeKind::Date(_)) => "date",
            (Dialect::Postgres, _) => "bigint",
            (_, TimeKind::Instant | TimeKind::Civil(_)) => "DATETIME(6)",
            (_, TimeKind::Date(_)) => "DATE",
            (_, _) => "SIGNED",
        }
    }

    /// Walks the time index: each batch deletes the `n` due rows with the
    /// earliest times at or after the latest time the batch before deleted
    /// (rows of that same time it left are still ahead, so none is
    /// skipped; none is read twice, since what was deleted is gone). Stops
    /// when a batch finds fewer than it asked for, or, given `dense`, once
    /// it has deleted that many rows.
    async fn time_walk(&self, dense: Option<u64>, report: &mut PurgeReport) -> Result<Ended, StoreError> {
        let r = self.target;
        let table = r.table.name.as_str();
        let time = r.time.column.name.as_str();
        let ty = self.time_type();
        let cap = self.cap();
        let mut size = self.options.initial_batch_size.clamp(1, cap);
        let mut after: Option<String> = None;
        let walk_before = report.account.deleted;
        loop {
            if self.options.stopped() {
                return Err(StoreError::Cancelled { deleted: report.account.deleted });
            }
            let n = if self.options.budget.is_empty() { size } else { self.options.reserve(size) };
            if n == 0 {
                // The budget is spent; the read-back tells whether anything due is left.
                return Ok(Ended::Done);
            }
            let due = |sql: &mut Sql| {
                (self.scope)(sql);
                if let Some(t) = &after {
                    sql.raw(" AND ").ident(time).raw(" >= ").cast_text(t.clone(), ty);
                }
            };
            let mut del = Sql::new(self.dialect());
            let batch_started = Instant::now();
            let (deleted, last) = match self.dialect() {
                Dialect::Postgres => {
                    del.raw("WITH d AS (DELETE FROM ").table(table).raw(" WHERE ctid = ANY(ARRAY(SELECT ctid FROM ");
                    del.table(table).raw(" WHERE ");
                    due(&mut del);
                    del.raw(" ORDER BY ").ident(time).raw(" LIMIT ").int(n as i64).raw(")) AND ");
                    (self.scope)(&mut del);
                    del.raw(" RETURNING ").ident(time).raw(") SELECT CAST(COUNT(*) AS bigint), CAST(MAX(");
                    del.ident(time).raw(") AS text) FROM d");
                    let row = del.query().fetch_one(&self.store.pool).await.map_err(self.cls())?;
                    let deleted: i64 = row.try_get(0).map_err(self.cls())?;
                    let last: Option<String> = row.try_get(1).map_err(self.cls())?;
                    (deleted.max(0) as u64, last)
                }
                _ => {
                    // MariaDB: the time of the n-th due row, read from the
                    // time index alone (it covers the time predicate), bounds
                    // the batch; RETURNING every deleted row instead costs
                    // more than the delete itself saves.
                    let mut probe = Sql::new(self.dialect());
                    probe.raw("SELECT CAST(").ident(time).raw(" AS CHAR) FROM ").table(table).raw(" WHERE ");
                    due(&mut probe);
                    probe.raw(" ORDER BY ").ident(time).raw(" LIMIT 1 OFFSET ").int(n as i64 - 1);
                    let end = probe.query().fetch_optional(&self.store.pool).await.map_err(self.cls())?;
                    let end: Option<String> = end.map(|row| row.try_get(0)).transpose().map_err(self.cls())?;
                    del.raw("DELETE FROM ").table(table).raw(" WHERE ");
                    due(&mut del);
                    if let Some(end) = &end {
                        del.raw(" AND ").ident(time).raw(" <= ").cast_text(end.clone(), ty);
                    }
                    del.raw(" ORDER BY ").ident(time).raw(" LIMIT ").int(n as i64);
                    let deleted = del.query().execute(&self.store.pool).await.map_err(self.cls())?.rows_affected();
                    (deleted, end)
                }
            };
            let took = self.settle(report, n, deleted, batch_started, "time-index batch");
            if deleted < n || last.is_none() {
                return Ok(Ended::Done);
            }
            if dense.is_some_and(|d| report.account.deleted - walk_before >= d) {
                tracing::debug!(store = self.dialect().kind(), "many rows are due: walking every block instead");
                return Ok(Ended::Dense);
            }
            after = last;
            size = next_batch_size(size, n, took, self.options.target_batch_latency, cap);
            self.pace(report).await;
        }
    }

    /// Whether each batch deletes declared children first (and so needs a
    /// transaction of its own).
    fn has_children(&self) -> bool {
        self.with_children && !self.target.children.is_empty()
    }

    /// Opens a batch's transaction. PostgreSQL batches read one snapshot
    /// throughout, so the child rows deleted belong to exactly the parent
    /// rows deleted.
    async fn begin(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, StoreError> {
        let mut tx = self.store.pool.begin().await.map_err(self.cls())?;
        if self.dialect() == Dialect::Postgres {
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                .execute(&mut *tx)
                .await
                .map_err(self.cls())?;
        }
        Ok(tx)
    }

    /// Deletes the children of the rows `rows` selects (a subquery body
    /// that selects the parent key), then returns.
    async fn delete_children(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        rows: &(dyn Fn(&mut Sql, &Column) + Sync),
        report: &mut PurgeReport,
    ) -> Result<(), StoreError> {
        if !self.with_children {
            return Ok(());
        }
        for child in &self.target.children {
            let mut del = Sql::new(self.dialect());
            del.raw("DELETE FROM ")
                .table(child.table.as_str())
                .raw(" WHERE ")
                .ident(&child.foreign_key.name)
                .raw(" IN (");
            rows(&mut del, &child.parent_key);
            del.raw(")");
            let done = del
                .query()
                .execute(&mut **tx)
                .await
                .map_err(|e| classify(self.dialect(), &format!("table {}", child.table), e))?;
            report.account.related_deleted += done.rows_affected();
        }
        Ok(())
    }

    /// In `tx`: the children of the rows `rows` selects, then those rows,
    /// then the commit. The rows deleted.
    async fn delete_with_children(
        &self,
        mut tx: sqlx::Transaction<'static, sqlx::Any>,
        rows: &(dyn Fn(&mut Sql) + Sync),
        report: &mut PurgeReport,
    ) -> Result<u64, StoreError> {
        let table = self.target.table.name.as_str();
        let parents = |sql: &mut Sql, parent_key: &Column| {
            sql.raw("SELECT ").ident(&parent_key.name).raw(" FROM ").table(table).raw(" WHERE ");
            rows(sql);
        };
        self.delete_children(&mut tx, &parents, report).await?;
        let mut del = Sql::new(self.dialect());
        del.raw("DELETE FROM ").table(table).raw(" WHERE ");
        rows(&mut del);
        let done = del.query().execute(&mut *tx).await.map_err(self.cls())?;
        tx.commit().await.map_err(self.cls())?;
        Ok(done.rows_affected())
    }

    /// One statement for the whole scope.
    async fn single(&self, in_scope: u64, report: &mut PurgeReport) -> Result<(), StoreError> {
        let started = Instant::now();
        let deleted = if self.has_children() {
            let tx = self.begin().await?;
            self.delete_with_children(tx, self.scope, report).await?
        } else {
            // One statement is its own transaction.
            let mut del = Sql::new(self.dialect());
            del.raw("DELETE FROM ").table(self.target.table.name.as_str()).raw(" WHERE ");
            (self.scope)(&mut del);
            del.query().execute(&self.store.pool).await.map_err(self.cls())?.rows_affected()
        };
        report.record_batch(self.options, in_scope, deleted, started.elapsed());
        Ok(())
    }

    /// PostgreSQL: walks ranges of heap blocks, up to the table's size, then
    /// on over blocks added meanwhile (rows appended during the walk; rows
    /// written behind it are the read-back's to find). A range is sized
    /// in blocks from the time per block of the range before; it is
    /// limited by a row count (and so read twice) only where a budget or
    /// the cap could be overdrawn, never otherwise.
    ///
    /// Given `counted`, the rows in scope when the walk began (the run's
    /// count), the walk ends once it has deleted that many: the blocks
    /// after the last due row hold nothing to delete, and reading them
    /// cost a third of a half-due purge of a table written in time order.
    /// A row that came into scope meanwhile (written behind the cutoff
    /// after the count) is the read-back's to find, and a second pass
    /// then walks every block.
    async fn row_ranges(
        &self,
        layout: &Layout,
        counted: Option<u64>,
        report: &mut PurgeReport,
    ) -> Result<(), StoreError> {
        let r = self.target;
        let table = r.table.name.as_str();
        let mut blocks = layout.blocks;
        let cap = self.cap();
        let rows_per_block = layout
            .rows_estimate
            .filter(|n| *n > 0.0)
            .map_or(PG_ROWS_PER_BLOCK as f64 / 4.0, |n| (n / blocks as f64).clamp(1.0, PG_ROWS_PER_BLOCK as f64));
        let mut step = ((self.options.initial_batch_size as f64 / rows_per_block).ceil() as u64).clamp(1, 1 << 20);
        // No range may hold more rows than a batch may delete.
        let max_step = (cap / PG_ROWS_PER_BLOCK).max(1);
        let mut lo: u64 = 0;
        let walk_before = report.account.deleted;
        loop {
            if self.options.stopped() {
                return Err(StoreError::Cancelled { deleted: report.account.deleted });
            }
            if counted.is_some_and(|c| report.account.deleted - walk_before >= c) {
                tracing::debug!(store = "postgres", "every counted row deleted: the blocks after them are left unread");
                break;
            }
            if lo >= blocks {
                let grown = self.store.layout(r).await?.blocks;
                if grown <= blocks {
                    break;
                }
                blocks = grown;
            }
            step = step.min(max_step);
            let hi = (lo + step).min(blocks);
            let want = (hi - lo).saturating_mul(PG_ROWS_PER_BLOCK).min(cap);
            let n = if self.options.budget.is_empty() { want } else { self.options.reserve(want) };
            if n == 0 {
                // The budget is spent; the read-back tells whether anything due is left.
                return Ok(());
            }
            // Limited when the range might hold more rows than the batch may
            // delete (a budget nearly spent, or a cap below a block's rows).
            let limited = n < (hi - lo).saturating_mul(PG_ROWS_PER_BLOCK);
            let range = |sql: &mut Sql| {
                sql.raw("ctid >= CAST(").text(format!("({lo},0)")).raw(" AS tid)");
                sql.raw(" AND ctid < CAST(").text(format!("({hi},0)")).raw(" AS tid)");
                // The scope filters the range's rows and nothing else. `IS
                // TRUE` keeps the same rows (WHERE keeps only TRUE) but no
                // index can answer it, so no plan, generic or not, trades the
                // range for a walk of the time index from its start over the
                // entries earlier batches made dead (148 ms against 66 for
                // 127,560 rows); its bounds are read once, not once a row.
                sql.raw(" AND (");
                sql.evaluated_once(|sql| (self.scope)(sql));
                sql.raw(") IS TRUE");
            };
            let select = |sql: &mut Sql, columns: &str| {
                sql.raw("SELECT ").raw(columns).raw(" FROM ").table(table).raw(" WHERE ");
                range(sql);
                if limited {
                    sql.raw(" ORDER BY tableoid, ctid LIMIT ").int(n as i64);
                }
            };
            let mut del = Sql::new(self.dialect());
            del.raw("DELETE FROM ").table(table).raw(" WHERE ");
            range(&mut del);
            if limited {
                del.raw(" AND (tableoid, ctid) IN (");
                select(&mut del, "tableoid, ctid");
                del.raw(")");
            }
            let batch_started = Instant::now();
            let deleted = if self.has_children() {
                let mut tx = self.begin().await?;
                let parents = |sql: &mut Sql, parent_key: &Column| {
                    select(sql, &self.dialect().quote(&parent_key.name));
                };
                self.delete_children(&mut tx, &parents, report).await?;
                let done = del.query().execute(&mut *tx).await.map_err(self.cls())?;
                tx.commit().await.map_err(self.cls())?;
                done.rows_affected()
            } else {
                // One statement is its own transaction.
                del.query().execute(&self.store.pool).await.map_err(self.cls())?.rows_affected()
            };
            if !self.options.budget.is_empty() {
                self.options.refund(n.saturating_sub(deleted));
            }
            let took = batch_started.elapsed();
            report.record_batch(self.options, n, deleted, took);
            tracing::debug!(
                store = "postgres",
                batch = report.batches,
                lo,
                step,
                deleted,
                millis = took.as_millis() as u64,
                "batch committed"
            );
            if limited && deleted >= n {
                // The range may hold more: stay, and look at less at a time.
                step = ((hi - lo) / 2).max(1);
            } else {
                step = next_batch_size(step, hi - lo, took, self.options.target_batch_latency, max_step);
                lo = hi;
            }
            self.pace(report).await;
        }
        Ok(())
    }

    /// MySQL and SQLite: windows of consecutive keys between the smallest
    /// and largest key in scope. A window holds at most as many rows as
    /// keys, so no batch deletes more than it reserved.
    async fn key_windows(&self, report: &mut PurgeReport) -> Result<(), StoreError> {
        let r = self.target;
        let table = r.table.name.as_str();
        let key = &r.key;
        let names: Vec<&str> = key.iter().map(|c| c.name.as_str()).collect();
        // Rows whose key is NULL (a unique `keyColumn` may hold NULLs; a
        // primary key holds none) sort before every key and fit in no
        // window: they go first.
        if names.len() == 1 && r.table.primary_key.as_slice() != [names[0]] {
            self.null_keys(names[0], report).await?;
        }
        let edge = |desc: bool| {
            let mut sql = Sql::new(self.dialect());
            sql.raw("SELECT ").join(names.iter(), ", ", |s, n| {
                s.ident(n);
            });
            sql.raw(" FROM ").table(table).raw(" WHERE ");
            sql.join(names.iter(), " AND ", |s, c| {
                s.ident(c).raw(" IS NOT NULL");
            });
            sql.raw(" AND ");
            (self.scope)(&mut sql);
            order_by(&mut sql, &names, desc);
            sql.raw(" LIMIT 1");
            sql
        };
        let Some(first) = edge(false).query().fetch_optional(&self.store.pool).await.map_err(self.cls())? else {
            return Ok(());
        };
        let last_row = edge(true).query().fetch_optional(&self.store.pool).await.map_err(self.cls())?;
        let first = decode(&first, key.len()).map_err(self.cls())?;
        let last = match last_row {
            Some(row) => decode(&row, key.len()).map_err(self.cls())?,
            None => first.clone(),
        };
        let cap = self.cap();
        let mut size = self.options.initial_batch_size.clamp(1, cap);
        let mut lower = (first, true);
        loop {
            if self.options.stopped() {
                return Err(StoreError::Cancelled { deleted: report.account.deleted });
            }
            let n = if self.options.budget.is_empty() { size } else { self.options.reserve(size) };
            if n == 0 {
                // The budget is spent; the read-back tells whether anything due is left.
                return Ok(());
            }
            let batch_started = Instant::now();
            let mut tx = self.begin().await?;
            let mut probe = Sql::new(self.dialect());
            probe.raw("SELECT ").join(names.iter(), ", ", |s, c| {
                s.ident(c);
            });
            probe.raw(" FROM ").table(table).raw(" WHERE ");
            key_compare(&mut probe, &names, &lower.0, if lower.1 { ">=" } else { ">" });
            probe.raw(" AND ");
            key_compare(&mut probe, &names, &last, "<=");
            order_by(&mut probe, &names, false);
            probe.raw(" LIMIT 1 OFFSET ").int(n as i64 - 1);
            let end = match probe.query().fetch_optional(&mut *tx).await.map_err(self.cls())? {
                Some(row) => decode(&row, key.len()).map_err(self.cls())?,
                None => last.clone(),
            };
            let range = |sql: &mut Sql| {
                key_compare(sql, &names, &lower.0, if lower.1 { ">=" } else { ">" });
                sql.raw(" AND ");
                key_compare(sql, &names, &end, "<=");
                // The scope filters the window's rows and nothing else, as in
                // `row_ranges`: the key range is the only condition an index
                // may answer.
                sql.raw(" AND (");
                sql.evaluated_once(|sql| (self.scope)(sql));
                sql.raw(") IS TRUE");
            };
            let deleted = self.delete_with_children(tx, &range, report).await?;
            let took = self.settle(report, n, deleted, batch_started, "batch");
            if end == last {
                break;
            }
            size = next_batch_size(size, n, took, self.options.target_batch_latency, cap);
            lower = (end, false);
            self.pace(report).await;
        }
        Ok(())
    }

    /// Deletes the rows in scope whose key `column` is NULL, children
    /// first, in one transaction: no key tells them apart, so no batch of
    /// them could be told from the next. They are counted first, and
    /// refused when more than a batch may take (a clear error, nothing
    /// deleted), or left for the read-back to report when the run's budget
    /// cannot take them all.
    async fn null_keys(&self, column: &str, report: &mut PurgeReport) -> Result<(), StoreError> {
        let table = self.target.table.name.as_str();
        let keyless = |sql: &mut Sql| {
            sql.ident(column).raw(" IS NULL AND (");
            (self.scope)(sql);
            sql.raw(")");
        };
        let mut count = Sql::new(self.dialect());
        count.raw("SELECT COUNT(*) FROM ").table(table).raw(" WHERE ");
        keyless(&mut count);
        let found: i64 =
            count.query().fetch_one(&self.store.pool).await.and_then(|row| row.try_get(0)).map_err(self.cls())?;
        let found = found.max(0) as u64;
        if found == 0 {
            return Ok(());
        }
        if found > self.cap() {
            return Err(StoreError::InvalidTarget {
                store: self.dialect().kind(),
                detail: format!(
                    "{found} rows of table {table} in scope have no {column} (NULL), more than one batch may delete ({}); rows without a key are deleted together, so name a keyColumn that holds no NULL, such as the primary key",
                    self.cap()
                ),
            });
        }
        let n = if self.options.budget.is_empty() { found } else { self.options.reserve(found) };
        if n < found {
            // The read-back reports them as left.
            self.options.refund(n);
            return Ok(());
        }
        let started = Instant::now();
        let tx = self.begin().await?;
        let deleted = self.delete_with_children(tx, &keyless, report).await?;
        self.settle(report, n, deleted, started, "rows without a key");
        Ok(())
    }

    /// MySQL and MariaDB, where no children go first: each batch is one
    /// `DELETE ... WHERE key > last AND scope ORDER BY key LIMIT n
    /// RETURNING key`, walking the key's index on from the last key the
    /// batch before deleted. No probe, no window of keys that may hold no
    /// due row: every row is read once, and a batch ends once it has `n`.
    ///
    /// The first batch starts at the least key (`key >= least`): with no
    /// bound on the key, MariaDB may find every due row through the time
    /// index and sort them all by key for the first `n` (a filesort of a
    /// million rows). Rows whose key is NULL (a unique `keyColumn` may hold
    /// NULLs; a primary key holds none) sort before every key and are
    /// never after one, so they go before the walk, found through the
    /// key's index.
    ///
    /// Given `counted` (the rows in scope the run counted), the walk ends
    /// once it has deleted that many: the rows after the last of them in
    /// key order are not read (where the keys follow time, the whole part
    /// of the table not due, which one batch would otherwise scan). A row
    /// that came into scope since the count is found by the read-back and
    /// taken by a second pass, which walks every key.
    async fn key_walk(&self, counted: Option<u64>, report: &mut PurgeReport) -> Result<(), StoreError> {
        let r = self.target;
        let table = r.table.name.as_str();
        let names: Vec<&str> = r.key.iter().map(|c| c.name.as_str()).collect();
        let cap = self.cap();
        let mut size = self.options.initial_batch_size.clamp(1, cap);
        let walk_before = report.account.deleted;
        // A primary key holds no NULL.
        let nullable = names.len() == 1 && r.table.primary_key.as_slice() != [names[0]];
        let mut at = if nullable { KeyWalk::Null } else { KeyWalk::Least };
        loop {
            if self.options.stopped() {
                return Err(StoreError::Cancelled { deleted: report.account.deleted });
            }
            // No batch asks for more than the counted rows left: one that
            // did would read on to the table's end to find the rest.
            let ask = match counted.map(|c| c.saturating_sub(report.account.deleted - walk_before)) {
                Some(0) => {
                    tracing::debug!(store = "mysql", "every counted row deleted: the keys after them are left unread");
                    return Ok(());
                }
                Some(left) if !matches!(at, KeyWalk::Null) => size.min(left),
                _ => size,
            };
            let n = if self.options.budget.is_empty() { ask } else { self.options.reserve(ask) };
            if n == 0 {
                // The budget is spent; the read-back tells whether anything due is left.
                return Ok(());
            }
            let mut del = Sql::new(self.dialect());
            del.raw("DELETE FROM ").table(table).raw(" WHERE ");
            match &at {
                KeyWalk::Null => {
                    del.ident(names[0]).raw(" IS NULL AND ");
                }
                KeyWalk::Least => {
                    let Some(least) = self.least_key(&names).await? else { return Ok(()) };
                    key_compare(&mut del, &names, &least, ">=");
                    del.raw(" AND ");
                }
                KeyWalk::After(last) => {
                    key_compare(&mut del, &names, last, ">");
                    del.raw(" AND ");
                }
            }
            (self.scope)(&mut del);
            let batch_started = Instant::now();
            let (deleted, last) = if matches!(at, KeyWalk::Null) {
                del.raw(" LIMIT ").int(n as i64);
                (del.query().execute(&self.store.pool).await.map_err(self.cls())?.rows_affected(), None)
            } else {
                order_by(&mut del, &names, false);
                del.raw(" LIMIT ").int(n as i64).raw(" RETURNING ").join(names.iter(), ", ", |s, c| {
                    s.ident(c);
                });
                // Returned in the order deleted: the last is the greatest key.
                let mut rows = del.query().fetch(&self.store.pool);
                let (mut deleted, mut last) = (0u64, None);
                while let Some(row) = rows.try_next().await.map_err(self.cls())? {
                    deleted += 1;
                    last = Some(row);
                }
                (deleted, last)
            };
            // Counted before the last key is read: the rows are gone either way.
            let took = self.settle(report, n, deleted, batch_started, "key-walk batch");
            let last = last.map(|row| decode(&row, names.len())).transpose().map_err(self.cls())?;
            size = next_batch_size(size, n, took, self.options.target_batch_latency, cap);
            at = match (at, last) {
                (KeyWalk::Null, _) if deleted == n => KeyWalk::Null,
                (KeyWalk::Null, _) => KeyWalk::Least,
                (_, Some(last)) if deleted == n => KeyWalk::After(last),
                _ => return Ok(()),
            };
            self.pace(report).await;
        }
    }

    /// The least key the table holds, NULLs aside; `None` when it holds
    /// no row with a key.
    async fn least_key(&self, names: &[&str]) -> Result<Option<Vec<Arg>>, StoreError> {
        let mut sql = Sql::new(self.dialect());
        sql.raw("SELECT ").join(names.iter(), ", ", |s, c| {
            s.ident(c);
        });
        sql.raw(" FROM ").table(self.target.table.name.as_str()).raw(" WHERE ");
        sql.join(names.iter(), " AND ", |s, c| {
            s.ident(c).raw(" IS NOT NULL");
        });
        order_by(&mut sql, names, false);
        sql.raw(" LIMIT 1");
        let row = sql.query().fetch_optional(&self.store.pool).await.map_err(self.cls())?;
        row.map(|row| decode(&row, names.len())).transpose().map_err(self.cls())
    }

    /// Waits, if the rate limit asks for it, unless cancelled meanwhile.
    async fn pace(&self, report: &PurgeReport) {
        let (started, before) = self.since;
        if let Some(wait) = self.options.pace(report.account.deleted.saturating_sub(before), started) {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.options.cancel.cancelled() => {}
            }
        }
    }
}

/// Where a key walk is: deleting the rows whose key is NULL, at the least
/// key, or after the last key deleted.
enum KeyWalk {
    Null,
    Least,
    After(Vec<Arg>),
}

fn decode(row: &AnyRow, columns: usize) -> Result<Vec<Arg>, sqlx::Error> {
    (0..columns).map(|i| Arg::decode(row, i)).collect()
}

fn order_by(sql: &mut Sql, names: &[&str], desc: bool) {
    sql.raw(" ORDER BY ").join(names.iter(), ", ", |s, n| {
        s.ident(n).raw(if desc { " DESC" } else { "" });
    });
}

/// Compares a key of one or more columns with bound values, in the order of
/// the columns: `op` is `>`, `>=` or `<=`. MySQL gets the comparison spelt
/// out column by column, which its range optimiser uses; PostgreSQL and
/// SQLite compare row values.
pub(super) fn key_compare(sql: &mut Sql, names: &[&str], values: &[Arg], op: &str) {
    if names.len() == 1 || sql.dialect() != Dialect::MySql {
        sql.columns(names.iter().copied());
        sql.raw(" ").raw(op).raw(" (").join(values.iter(), ", ", |s, v| {
            s.bind(v.clone());
        });
        sql.raw(")");
        return;
    }
    let strict = if op.starts_with('>') { " > " } else { " < " };
    sql.raw("(")
        .ident(names[0])
        .raw(strict)
        .bind(values[0].clone())
        .raw(" OR (")
        .ident(names[0])
        .raw(" = ")
        .bind(values[0].clone());
    sql.raw(" AND ");
    key_compare(sql, &names[1..], &values[1..], op);
    sql.raw("))");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn composite_keys_compare_column_by_column_on_mysql() {
        let mut sql = Sql::new(Dialect::MySql);
        key_compare(&mut sql, &["a", "b"], &[Arg::Int(1), Arg::Text("x".into())], ">");
        assert_eq!(sql.sql(), "(`a` > ? OR (`a` = ? AND (`b`) > (?)))");
        let mut sql = Sql::new(Dialect::Postgres);
        key_compare(&mut sql, &["a", "b"], &[Arg::Int(1), Arg::Int(2)], "<=");
        assert_eq!(sql.sql(), "(\"a\", \"b\") <= ($1, $2)");
    }
}
