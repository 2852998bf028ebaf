//! PostgreSQL, MySQL/MariaDB and SQLite over sqlx's `Any` driver.
//!
//! Deletes go in keyed batches: each batch, in its own short transaction,
//! finds the end of the next window of keys on the key's index, deletes the
//! rows in that window that are due (the predicate is checked by the delete
//! itself, so a row that stopped being due is kept), and commits. Window
//! sizes adapt to stay under the target latency.
//!
//! Not done here: dropping or detaching expired PostgreSQL partitions
//! (`dropExpiredPartitions`); partitioned tables are purged row by row.

pub mod dialect;
mod error;
pub mod query;
mod schema;

use std::time::{Duration, Instant};

use sqlx::any::{AnyConnectOptions, AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

pub use self::dialect::Dialect;
use self::error::classify;
use self::query::{Arg, Sql};
use self::schema::Resolved;
use super::{Cutoff, ProbeReport, PurgeOptions, PurgeReport, Store, StoreError, StoreFuture, Subject, next_batch_size};
use crate::api::Mode;
use crate::api::policy::Target;

/// A SQL database reached through a connection pool.
#[derive(Clone, Debug)]
pub struct SqlStore {
    dialect: Dialect,
    pool: AnyPool,
}

/// How the pool connects.
#[derive(Clone, Debug)]
pub struct PoolSettings {
    /// Connections at most.
    pub max_connections: u32,
    /// How long to wait for a connection before the store counts as unreachable.
    pub acquire_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        Self { max_connections: 4, acquire_timeout: Duration::from_secs(10) }
    }
}

impl SqlStore {
    /// A store for a connection URL (`postgres://`, `mysql://`, `sqlite://`).
    /// Connects lazily: a bad address or password shows at the first call,
    /// as a typed error from [`Store::probe`].
    pub fn connect_lazy(url: &str, settings: PoolSettings) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let dialect = Dialect::of_url(url).ok_or_else(|| StoreError::InvalidTarget {
            store: "sql",
            detail: "the connection URL must start with postgres://, mysql:// or sqlite:".to_owned(),
        })?;
        let options: AnyConnectOptions = url.parse().map_err(|e: sqlx::Error| StoreError::InvalidTarget {
            store: dialect.kind(),
            detail: format!("the connection URL is invalid: {e}"),
        })?;
        let pool = AnyPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.acquire_timeout)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    // Times compare in UTC whatever the server's zone, and a
                    // batch waits for a lock only so long.
                    let setup: &'static str = match dialect {
                        Dialect::Postgres => "SET TIME ZONE 'UTC'; SET lock_timeout = '10s'",
                        Dialect::MySql => "SET time_zone = '+00:00', SESSION innodb_lock_wait_timeout = 10",
                        Dialect::Sqlite => "PRAGMA busy_timeout = 10000",
                    };
                    sqlx::raw_sql(setup).execute(conn).await?;
                    Ok(())
                })
            })
            .connect_lazy_with(options);
        Ok(Self { dialect, pool })
    }

    /// The dialect the store speaks.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The pool, for callers that need to run their own statements
    /// (benchmarks, tests).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    async fn resolve(&self, target: &Target) -> Result<Resolved, StoreError> {
        schema::resolve(&self.pool, self.dialect, target).await
    }

    async fn count(&self, r: &Resolved, scope: &(dyn Fn(&mut Sql) + Sync)) -> Result<u64, StoreError> {
        let mut sql = Sql::new(self.dialect);
        sql.raw("SELECT COUNT(*) FROM ").table(r.table.name.as_str()).raw(" WHERE ");
        scope(&mut sql);
        let n: i64 = sql
            .query()
            .fetch_one(&self.pool)
            .await
            .and_then(|row| row.try_get(0))
            .map_err(|e| classify(self.dialect, &object(r), e))?;
        Ok(n.max(0) as u64)
    }

    /// The number of rows in `scope`, and their smallest and largest keys.
    async fn count_bounds(
        &self,
        r: &Resolved,
        scope: &(dyn Fn(&mut Sql) + Sync),
    ) -> Result<(u64, Option<(Arg, Arg)>), StoreError> {
        let mut sql = Sql::new(self.dialect);
        sql.raw("SELECT COUNT(*), MIN(").ident(&r.key.name).raw("), MAX(").ident(&r.key.name).raw(") FROM ");
        sql.table(r.table.name.as_str()).raw(" WHERE ");
        scope(&mut sql);
        let cls = |e| classify(self.dialect, &object(r), e);
        let row = sql.query().fetch_one(&self.pool).await.map_err(cls)?;
        let n: i64 = row.try_get(0).map_err(cls)?;
        if n <= 0 {
            return Ok((0, None));
        }
        Ok((n as u64, Some((decode_key(&row, 1).map_err(cls)?, decode_key(&row, 2).map_err(cls)?))))
    }

    /// Deletes the rows in `scope` (children first when `with_children`) in
    /// keyed batches. A batch is a window of consecutive keys between the
    /// smallest and largest key in scope: its end is found on the key index,
    /// and the rows in it that are in scope are deleted. The work of a batch
    /// is bounded by the window, whatever the share of rows in scope and
    /// whatever plan the database picks, so windows adapt to the latency
    /// target. A scope smaller than one batch (a subject's rows, usually)
    /// goes in one batch found through the scope's own indexes.
    async fn run_batches(
        &self,
        r: &Resolved,
        scope: &(dyn Fn(&mut Sql) + Sync),
        with_children: bool,
        options: &PurgeOptions,
        report: &mut PurgeReport,
    ) -> Result<(), StoreError> {
        let d = self.dialect;
        let table = r.table.name.as_str();
        let key = r.key.name.as_str();
        let cls = |e| classify(d, &object(r), e);
        let max = options.max_batch_size.max(1).min(match options.max_records_per_second {
            Some(rate) => u64::from(rate.max(1)),
            None => u64::MAX,
        });
        let (in_scope, bounds) = self.count_bounds(r, scope).await?;
        let Some((first, last)) = bounds else { return Ok(()) };
        let single = with_children && in_scope <= max;
        let mut size = options.initial_batch_size.clamp(1, max);
        // The window's lower bound: inclusive for the first, exclusive after.
        let mut lower = (first, true);
        let started = Instant::now();
        let deleted_before = report.deleted;
        loop {
            if options.cancel.is_cancelled() {
                return Err(StoreError::Cancelled { deleted: report.deleted });
            }
            let batch_started = Instant::now();
            let mut tx = self.pool.begin().await.map_err(cls)?;
            let from = |sql: &mut Sql| {
                sql.ident(key).raw(if lower.1 { " >= " } else { " > " }).bind(lower.0.clone()).raw(" AND ");
            };
            let end = if single {
                last.clone()
            } else {
                let mut probe = Sql::new(d);
                probe.raw("SELECT ").ident(key).raw(" FROM ").table(table).raw(" WHERE ");
                from(&mut probe);
                probe.ident(key).raw(" <= ").bind(last.clone());
                probe.raw(" ORDER BY ").ident(key).raw(&format!(" LIMIT 1 OFFSET {}", size - 1));
                match probe.query().fetch_optional(&mut *tx).await.map_err(cls)? {
                    Some(row) => decode_key(&row, 0).map_err(cls)?,
                    None => last.clone(),
                }
            };
            let range = |sql: &mut Sql| {
                if !single {
                    from(sql);
                    sql.ident(key).raw(" <= ").bind(end.clone()).raw(" AND ");
                }
                scope(sql);
            };
            if with_children {
                for (child, fk, parent_key) in &r.children {
                    let mut del = Sql::new(d);
                    del.raw("DELETE FROM ").table(child.as_str()).raw(" WHERE ").ident(&fk.name).raw(" IN (SELECT ");
                    del.ident(&parent_key.name).raw(" FROM ").table(table).raw(" WHERE ");
                    range(&mut del);
                    del.raw(")");
                    let done =
                        del.query().execute(&mut *tx).await.map_err(|e| classify(d, &format!("table {child}"), e))?;
                    report.related_deleted += done.rows_affected();
                }
            }
            let mut del = Sql::new(d);
            del.raw("DELETE FROM ").table(table).raw(" WHERE ");
            range(&mut del);
            let done = del.query().execute(&mut *tx).await.map_err(cls)?;
            tx.commit().await.map_err(cls)?;
            let took = batch_started.elapsed();
            report.record_batch(options, if single { in_scope } else { size }, done.rows_affected(), took);
            tracing::debug!(
                store = d.kind(),
                batch = report.batches,
                size,
                deleted = done.rows_affected(),
                millis = took.as_millis() as u64,
                "batch committed"
            );
            if single || end == last {
                break;
            }
            size = next_batch_size(size, size, took, options.target_batch_latency, max);
            lower = (end, false);
            if let Some(wait) = options.pace(report.deleted - deleted_before, started) {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = options.cancel.cancelled() => {}
                }
            }
        }
        Ok(())
    }

    /// Deletes in batches until the read-back finds nothing (two passes at
    /// most: rows that became visible during the first are caught by the
    /// second), then reports.
    async fn delete_verified(
        &self,
        r: &Resolved,
        scope: &(dyn Fn(&mut Sql) + Sync),
        with_children: bool,
        options: &PurgeOptions,
        matched: u64,
    ) -> Result<PurgeReport, StoreError> {
        let mut report = PurgeReport { matched, ..PurgeReport::default() };
        if options.mode == Mode::DryRun {
            report.remaining = matched;
            report.dry_run = true;
            return Ok(report);
        }
        for _pass in 0..2 {
            self.run_batches(r, scope, with_children, options, &mut report).await?;
            report.remaining = self.count(r, scope).await?;
            if report.remaining == 0 {
                return Ok(report);
            }
        }
        Err(StoreError::NotVerified { deleted: report.deleted, remaining: report.remaining })
    }
}

fn object(r: &Resolved) -> String {
    format!("table {}", r.table.name)
}

fn decode_key(row: &AnyRow, index: usize) -> Result<Arg, sqlx::Error> {
    match row.try_get::<i64, _>(index) {
        Ok(i) => Ok(Arg::Int(i)),
        Err(_) => row.try_get::<String, _>(index).map(Arg::Text),
    }
}

impl Store for SqlStore {
    fn kind(&self) -> &'static str {
        self.dialect.kind()
    }

    fn probe(&self) -> StoreFuture<'_, ProbeReport> {
        Box::pin(async move {
            let sql = match self.dialect {
                Dialect::Postgres => "SELECT current_setting('server_version')",
                Dialect::MySql => "SELECT CAST(VERSION() AS CHAR)",
                Dialect::Sqlite => "SELECT sqlite_version()",
            };
            let version: String = sqlx::query(sql)
                .fetch_one(&self.pool)
                .await
                .and_then(|row| row.try_get(0))
                .map_err(|e| classify(self.dialect, "the server", e))?;
            Ok(ProbeReport { kind: self.dialect.kind(), server_version: version })
        })
    }

    fn count_due<'a>(&'a self, target: &'a Target, cutoff: &'a Cutoff) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            let r = self.resolve(target).await?;
            self.count(&r, &|sql| query::due(sql, &r, cutoff)).await
        })
    }

    fn count_total<'a>(&'a self, target: &'a Target) -> StoreFuture<'a, Option<u64>> {
        Box::pin(async move {
            let r = self.resolve(target).await?;
            self.count(&r, &|sql| query::filter(sql, &r)).await.map(Some)
        })
    }

    fn purge_due<'a>(
        &'a self,
        target: &'a Target,
        cutoff: &'a Cutoff,
        options: &'a PurgeOptions,
    ) -> StoreFuture<'a, PurgeReport> {
        Box::pin(async move {
            let r = self.resolve(target).await?;
            let scope = |sql: &mut Sql| query::due(sql, &r, cutoff);
            let matched = self.count(&r, &scope).await?;
            self.delete_verified(&r, &scope, false, options, matched).await
        })
    }

    fn count_subject<'a>(&'a self, target: &'a Target, subject: &'a Subject) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            let r = self.resolve(target).await?;
            if query::subject(&mut Sql::new(self.dialect), &r, subject).is_none() {
                return Ok(0);
            }
            self.count(&r, &|sql| {
                query::subject(sql, &r, subject);
            })
            .await
        })
    }

    fn erase_subject<'a>(
        &'a self,
        target: &'a Target,
        subject: &'a Subject,
        options: &'a PurgeOptions,
    ) -> StoreFuture<'a, PurgeReport> {
        Box::pin(async move {
            let r = self.resolve(target).await?;
            if query::subject(&mut Sql::new(self.dialect), &r, subject).is_none() {
                return Ok(PurgeReport::empty(options));
            }
            let scope = |sql: &mut Sql| {
                query::subject(sql, &r, subject);
            };
            let matched = self.count(&r, &scope).await?;
            self.delete_verified(&r, &scope, true, options, matched).await
        })
    }
}
