//! The batch loops: rows in a scope are deleted in short transactions, each
//! bounded by something the database finds cheaply, children first, with
//! the run's budget, rate limit and cancellation checked between batches.
//!
//! - PostgreSQL walks the table's physical row ranges (`ctid`, a TID range
//!   scan since PostgreSQL 14): every block is read about once, whatever
//!   the key (composite, UUID, none) and whatever indexes exist.
//! - MySQL and MariaDB walk windows of consecutive keys on a unique index.
//! - A scope smaller than a batch (a subject's rows, usually) goes in one
//!   statement found through the scope's own indexes.
//!
//! Each batch re-checks the scope in its DELETE, so a row that stopped
//! being in scope since it was counted is kept.

use std::time::Instant;

use sqlx::Row;
use sqlx::any::AnyRow;

use super::SqlStore;
use super::catalog::{Column, Resolved};
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
}

/// Rows a PostgreSQL heap block holds at most (8 kB blocks); a range of
/// blocks never yields more.
const PG_ROWS_PER_BLOCK: u64 = 291;

impl Job<'_> {
    fn dialect(&self) -> Dialect {
        self.store.dialect
    }

    fn cls(&self) -> impl Fn(sqlx::Error) -> StoreError + '_ {
        move |e| classify(self.dialect(), &self.target.object(), e)
    }

    /// The most rows one batch may delete: the options' cap and a second's
    /// worth of the rate limit.
    fn cap(&self) -> u64 {
        let o = self.options;
        o.max_batch_size.max(1).min(o.max_records_per_second.map_or(u64::MAX, |r| u64::from(r.max(1))))
    }

    /// Deletes every row in scope; `in_scope` is their number when counted.
    pub async fn run(&self, in_scope: u64, report: &mut PurgeReport) -> Result<(), StoreError> {
        if in_scope == 0 {
            return Ok(());
        }
        if self.options.budget.is_empty() && in_scope <= self.cap() {
            return self.single(in_scope, report).await;
        }
        match self.dialect() {
            Dialect::Postgres => self.row_ranges(report).await,
            Dialect::MySql | Dialect::Sqlite => self.key_windows(report).await,
        }
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

    /// One statement for the whole scope.
    async fn single(&self, in_scope: u64, report: &mut PurgeReport) -> Result<(), StoreError> {
        let started = Instant::now();
        let r = self.target;
        let mut tx = self.begin().await?;
        let select = |sql: &mut Sql, parent_key: &Column| {
            sql.raw("SELECT ").ident(&parent_key.name).raw(" FROM ").table(r.table.name.as_str()).raw(" WHERE ");
            (self.scope)(sql);
        };
        self.delete_children(&mut tx, &select, report).await?;
        let mut del = Sql::new(self.dialect());
        del.raw("DELETE FROM ").table(r.table.name.as_str()).raw(" WHERE ");
        (self.scope)(&mut del);
        let done = del.query().execute(&mut *tx).await.map_err(self.cls())?;
        tx.commit().await.map_err(self.cls())?;
        report.record_batch(self.options, in_scope, done.rows_affected(), started.elapsed());
        Ok(())
    }

    /// PostgreSQL: walks ranges of heap blocks. The last range is open at
    /// the top, so rows appended meanwhile are seen too.
    async fn row_ranges(&self, report: &mut PurgeReport) -> Result<(), StoreError> {
        let r = self.target;
        let table = r.table.name.as_str();
        let blocks = self.store.table_blocks(r).await?;
        let cap = self.cap();
        let mut step = (self.options.initial_batch_size / 64).clamp(1, 1 << 20);
        let max_step = (cap / 4).max(64);
        let mut lo: u64 = 0;
        let started = Instant::now();
        let deleted_before = report.account.deleted;
        loop {
            if self.options.stopped() {
                return Err(StoreError::Cancelled { deleted: report.account.deleted });
            }
            let hi = lo + step;
            let open = hi >= blocks;
            let want = step.saturating_mul(PG_ROWS_PER_BLOCK).min(cap);
            let n = if self.options.budget.is_empty() { want } else { self.options.reserve(want) };
            if n == 0 {
                // The budget is spent; the read-back tells whether anything due is left.
                return Ok(());
            }
            // Limited when the range might hold more rows than the batch may delete.
            let limited = open || n < step.saturating_mul(PG_ROWS_PER_BLOCK);
            let range = |sql: &mut Sql| {
                sql.raw("ctid >= CAST(").text(format!("({lo},0)")).raw(" AS tid)");
                if !open {
                    sql.raw(" AND ctid < CAST(").text(format!("({hi},0)")).raw(" AS tid)");
                }
                sql.raw(" AND ");
                (self.scope)(sql);
            };
            let select = |sql: &mut Sql, columns: &str| {
                sql.raw("SELECT ").raw(columns).raw(" FROM ").table(table).raw(" WHERE ");
                range(sql);
                if limited {
                    sql.raw(" ORDER BY tableoid, ctid LIMIT ").int(n as i64);
                }
            };
            let batch_started = Instant::now();
            let mut tx = self.begin().await?;
            let parents = |sql: &mut Sql, parent_key: &Column| {
                select(sql, &self.dialect().quote(&parent_key.name));
            };
            self.delete_children(&mut tx, &parents, report).await?;
            let mut del = Sql::new(self.dialect());
            del.raw("DELETE FROM ").table(table).raw(" WHERE ");
            range(&mut del);
            if limited {
                del.raw(" AND (tableoid, ctid) IN (");
                select(&mut del, "tableoid, ctid");
                del.raw(")");
            }
            let done = del.query().execute(&mut *tx).await.map_err(self.cls())?;
            tx.commit().await.map_err(self.cls())?;
            let deleted = done.rows_affected();
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
                step = (step / 2).max(1);
            } else if open {
                break;
            } else {
                lo = hi;
                step = next_batch_size(step, step, took, self.options.target_batch_latency, max_step);
            }
            self.pace(report.account.deleted - deleted_before, started).await;
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
        let edge = |desc: bool| {
            let mut sql = Sql::new(self.dialect());
            sql.raw("SELECT ").join(names.iter(), ", ", |s, n| {
                s.ident(n);
            });
            sql.raw(" FROM ").table(table).raw(" WHERE ");
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
        let started = Instant::now();
        let deleted_before = report.account.deleted;
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
                sql.raw(" AND ");
                (self.scope)(sql);
            };
            let parents = |sql: &mut Sql, parent_key: &Column| {
                sql.raw("SELECT ").ident(&parent_key.name).raw(" FROM ").table(table).raw(" WHERE ");
                range(sql);
            };
            self.delete_children(&mut tx, &parents, report).await?;
            let mut del = Sql::new(self.dialect());
            del.raw("DELETE FROM ").table(table).raw(" WHERE ");
            range(&mut del);
            let done = del.query().execute(&mut *tx).await.map_err(self.cls())?;
            tx.commit().await.map_err(self.cls())?;
            let deleted = done.rows_affected();
            if !self.options.budget.is_empty() {
                self.options.refund(n.saturating_sub(deleted));
            }
            let took = batch_started.elapsed();
            report.record_batch(self.options, n, deleted, took);
            tracing::debug!(
                store = self.dialect().kind(),
                batch = report.batches,
                size = n,
                deleted,
                millis = took.as_millis() as u64,
                "batch committed"
            );
            if end == last {
                break;
            }
            size = next_batch_size(size, n, took, self.options.target_batch_latency, cap);
            lower = (end, false);
            self.pace(report.account.deleted - deleted_before, started).await;
        }
        Ok(())
    }

    /// Waits, if the rate limit asks for it, unless cancelled meanwhile.
    async fn pace(&self, deleted: u64, started: Instant) {
        if let Some(wait) = self.options.pace(deleted, started) {
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.options.cancel.cancelled() => {}
            }
        }
    }
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

impl SqlStore {
    /// PostgreSQL: the most heap blocks any table of the target's
    /// inheritance tree (partitions, legacy children) has.
    pub(super) async fn table_blocks(&self, r: &Resolved) -> Result<u64, StoreError> {
        let mut sql = Sql::new(self.dialect);
        sql.raw("WITH RECURSIVE tree(oid) AS (SELECT CAST(to_regclass(")
            .text(self.dialect.quote_table(r.table.name.as_str()))
            .raw(") AS oid) UNION ALL SELECT i.inhrelid FROM pg_inherits i JOIN tree ON i.inhparent = tree.oid) ")
            .raw("SELECT CAST(COALESCE(MAX(pg_relation_size(oid)), 0) / current_setting('block_size')::bigint AS bigint) FROM tree");
        let n: i64 = sql
            .query()
            .fetch_one(&self.pool)
            .await
            .and_then(|row| row.try_get(0))
            .map_err(|e| classify(self.dialect, &r.object(), e))?;
        Ok(n.max(0) as u64 + 1)
    }
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
