//! PostgreSQL, MySQL/MariaDB and SQLite over sqlx's `Any` driver.
//!
//! The parts, in one direction: [`dialect`] knows quoting and types;
//! [`statement`] builds SQL from validated names and bound values;
//! [`catalog`] checks a target against the database and resolves it;
//! [`predicate`] writes the WHERE clauses of a resolved target; `batch`,
//! `sqlite` and `partitions` delete; this module drives a purge or an
//! erasure from count to read-back and keeps the account.
//!
//! What counts as due is decided once, in [`crate::api::calendar`]: the
//! time column's values are compared with bounds made from the run's
//! cutoff for the column's kind of time (instants; wall-clock times and
//! dates in the zone they were written in; numbers of seconds). Values that
//! are not times are counted as unreadable and never deleted.

mod batch;
pub mod catalog;
pub mod dialect;
mod error;
pub mod export;
mod partitions;
pub mod predicate;
mod sqlite;
pub mod statement;

use std::time::Duration;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, Row};

use self::batch::Job;
use self::catalog::{Resolved, TimeKind};
pub use self::dialect::Dialect;
use self::error::classify;
use self::predicate::DueRule;
use self::statement::Sql;
use super::{
    Cutoff, Incomplete, ProbeReport, PurgeFuture, PurgeOptions, PurgeReport, RelatedRecords, Store, StoreError,
    StoreFuture, Subject, SubjectExport,
};
use crate::api::Mode;
use crate::api::account::{Account, UnreadableReason};
use crate::api::policy::Target;

/// What one scan of a target's rows found.
struct Census {
    /// Rows in the filter.
    total: u64,
    /// Rows due.
    due: u64,
    /// Rows that cannot be judged, by reason.
    unreadable: Vec<(UnreadableReason, u64)>,
}

impl Census {
    /// Writes the unreadable and not-due rows into an account, replacing
    /// what an earlier count wrote.
    fn account_for(&self, account: &mut Account) {
        account.unreadable.clear();
        for (reason, n) in &self.unreadable {
            account.add_unreadable(*reason, *n);
        }
        account.not_due = Some(self.total.saturating_sub(self.due + account.unreadable_total()));
    }
}

/// A SQL database reached through a connection pool.
#[derive(Clone, Debug)]
pub struct SqlStore {
    dialect: Dialect,
    pool: AnyPool,
    time_zone: Option<TimeZone>,
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
                    // Instants compare in UTC whatever the server's zone, and
                    // a batch waits for a lock only so long.
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
        Ok(Self { dialect, pool, time_zone: None })
    }

    /// The same store, reading times without a zone of their own in `zone`
    /// unless a target says otherwise (the DataStore's timeZone).
    pub fn with_time_zone(mut self, zone: Option<TimeZone>) -> Self {
        self.time_zone = zone;
        self
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
        let mut r = catalog::resolve(&self.pool, self.dialect, target, self.time_zone.as_ref()).await?;
        for (hold, identities) in target.held.subjects() {
            let subject = Subject::new(identities.iter().cloned());
            let found: catalog::HeldColumns = predicate::subject_identities(&r, &subject, self.dialect.kind())?
                .into_iter()
                .map(|(c, i)| (c.clone(), i))
                .collect();
            if !found.is_empty() {
                r.held.push((hold.to_owned(), found));
            }
        }
        if !r.held.is_empty() {
            // A partition with a held row in it is not expired as a whole.
            r.drop_partitions = false;
        }
        Ok(r)
    }

    /// The due rows each Hold keeps, counted once each (a row two holds
    /// keep counts for the first), into the account as retained.
    async fn count_held(&self, r: &Resolved, cutoff: &Cutoff, account: &mut Account) -> Result<(), StoreError> {
        let mut open = r.clone();
        open.held.clear();
        let mut before = self.remaining_due(&open, cutoff).await?;
        for (hold, identities) in &r.held {
            open.held.push((hold.clone(), identities.clone()));
            let after = self.remaining_due(&open, cutoff).await?;
            account.add_held(hold, before.saturating_sub(after));
            before = after;
        }
        Ok(())
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
            .map_err(|e| classify(self.dialect, &r.object(), e))?;
        Ok(n.max(0) as u64)
    }

    /// The bounds due rows are found with: the cutoff's, and one for each
    /// per-record period the table holds now.
    async fn due_rule(&self, r: &Resolved, cutoff: &Cutoff) -> Result<DueRule, StoreError> {
        let zone = predicate::column_zone(&r.time.kind);
        let bounds = |c: &Cutoff| {
            c.bounds(zone).map_err(|e| StoreError::InvalidTarget { store: self.dialect.kind(), detail: e.to_string() })
        };
        let mut rule = DueRule { default: Some(bounds(cutoff)?), periods: Vec::new() };
        let Some(period) = &r.period else { return Ok(rule) };
        if period.required {
            rule.default = None;
        }
        let mut sql = Sql::new(self.dialect);
        sql.raw("SELECT DISTINCT CAST(").ident(&period.column.name);
        sql.raw(if self.dialect == Dialect::MySql { " AS SIGNED)" } else { " AS bigint)" });
        sql.raw(" FROM ").table(r.table.name.as_str()).raw(" WHERE ");
        predicate::with_valid_period(&mut sql, r);
        let rows = sql.query().fetch_all(&self.pool).await.map_err(|e| classify(self.dialect, &r.object(), e))?;
        for row in rows {
            let n: i64 = row.try_get(0).map_err(|e| classify(self.dialect, &r.object(), e))?;
            if let Some(c) = cutoff.for_record_period(n, period.unit) {
                let c =
                    c.map_err(|e| StoreError::InvalidTarget { store: self.dialect.kind(), detail: e.to_string() })?;
                rule.periods.push((n, bounds(&c)?));
            }
        }
        Ok(rule)
    }

    /// Counts, in one scan, the rows in the filter, those due under `rule`,
    /// and those that cannot be judged, by reason.
    async fn census(&self, r: &Resolved, rule: &DueRule) -> Result<Census, StoreError> {
        let mut sql = Sql::new(self.dialect);
        sql.raw("SELECT COUNT(*), COUNT(CASE WHEN ");
        let time_reason = predicate::time_unreadable(&mut sql, r);
        sql.raw(" THEN 1 END), COUNT(CASE WHEN ");
        predicate::time_readable(&mut sql, r);
        sql.raw(" AND ");
        predicate::period_bad(&mut sql, r);
        sql.raw(" THEN 1 END), COUNT(CASE WHEN ");
        predicate::time_readable(&mut sql, r);
        sql.raw(" AND ");
        predicate::period_missing(&mut sql, r);
        sql.raw(" THEN 1 END), COUNT(CASE WHEN ");
        // Asked of every row the scan reads: its bounds are read once.
        sql.evaluated_once(|sql| predicate::due(sql, r, rule));
        sql.raw(" THEN 1 END) FROM ").table(r.table.name.as_str()).raw(" WHERE ");
        predicate::filter(&mut sql, r);
        let cls = |e| classify(self.dialect, &r.object(), e);
        let row = sql.query().fetch_one(&self.pool).await.map_err(cls)?;
        let get = |i: usize| row.try_get::<i64, _>(i).map(|n| n.max(0) as u64).map_err(cls);
        Ok(Census {
            total: get(0)?,
            due: get(4)?,
            unreadable: vec![
                (time_reason, get(1)?),
                (UnreadableReason::BadPeriod, get(2)?),
                (UnreadableReason::MissingPeriod, get(3)?),
            ],
        })
    }

    /// Counts the rows in scope, those due, and those that cannot be
    /// judged, into `report`'s account (a dry run, and SQLite).
    async fn survey(&self, r: &Resolved, cutoff: &Cutoff, report: &mut PurgeReport) -> Result<(), StoreError> {
        r.judges_time()?;
        let account = &mut report.account;
        if matches!(r.time.kind, TimeKind::Dynamic { .. }) {
            let tally = self.sqlite_tally(r, cutoff).await?;
            for (reason, n) in &tally.unreadable {
                account.add_unreadable(*reason, *n);
            }
            account.matched = tally.due;
            account.not_due = Some(tally.total - tally.due - account.unreadable_total());
            return Ok(());
        }
        let rule = self.due_rule(r, cutoff).await?;
        let census = self.census(r, &rule).await?;
        census.account_for(account);
        account.matched = census.due;
        Ok(())
    }

    /// The due rows left: the read-back, with a rule made afresh (per-record
    /// periods written meanwhile count too).
    async fn remaining_due(&self, r: &Resolved, cutoff: &Cutoff) -> Result<u64, StoreError> {
        r.judges_time()?;
        if matches!(r.time.kind, TimeKind::Dynamic { .. }) {
            return Ok(self.sqlite_tally(r, cutoff).await?.due);
        }
        let rule = self.due_rule(r, cutoff).await?;
        self.count(r, &|sql| predicate::due(sql, r, &rule)).await
    }

    /// The read-back of a purge: the due rows left, into the account with
    /// the rows that cannot be judged. Where the time index finds the due
    /// rows (`indexed`), it reads no more than that index does: whether
    /// any due row is left (the first one in time order), counted exactly
    /// only when one is, and the rows that cannot be judged (which sort
    /// apart in the index: PostgreSQL's `-infinity` first, MariaDB's zero
    /// dates in ranges of their own, `years_held`); the rows not due are
    /// not looked at and not counted. Otherwise it is one scan that also counts the
    /// rows not due.
    async fn read_back(
        &self,
        r: &Resolved,
        cutoff: &Cutoff,
        indexed: bool,
        account: &mut Account,
    ) -> Result<u64, StoreError> {
        let rule = self.due_rule(r, cutoff).await?;
        if !indexed {
            let census = self.census(r, &rule).await?;
            census.account_for(account);
            return Ok(census.due);
        }
        // MariaDB's zero dates are found through the index too, where the
        // column's values lie in few enough years.
        let zero_date_years = match self.dialect {
            Dialect::MySql => self.years_held(r).await?,
            _ => None,
        };
        let mut sql = Sql::new(self.dialect);
        sql.raw("SELECT (SELECT 1 FROM ").table(r.table.name.as_str()).raw(" WHERE ");
        predicate::due(&mut sql, r, &rule);
        sql.raw(" ORDER BY ").ident(&r.time.column.name).raw(" LIMIT 1), (SELECT COUNT(*) FROM ");
        sql.table(r.table.name.as_str()).raw(" WHERE ");
        predicate::filter(&mut sql, r);
        sql.raw(" AND ");
        if let Some(years) = zero_date_years {
            predicate::zero_date_ranges(&mut sql, r, &years);
            sql.raw(" AND ");
        }
        let reason = predicate::time_unreadable(&mut sql, r);
        sql.raw(")");
        let cls = |e| classify(self.dialect, &r.object(), e);
        let row = sql.query().fetch_one(&self.pool).await.map_err(cls)?;
        let any: Option<i64> = row.try_get(0).map_err(cls)?;
        let unreadable: i64 = row.try_get(1).map_err(cls)?;
        account.unreadable.clear();
        account.add_unreadable(reason, unreadable.max(0) as u64);
        account.not_due = None;
        match any {
            None => Ok(0),
            Some(_) => self.count(r, &|sql| predicate::due(sql, r, &rule)).await,
        }
    }

    /// The years a MariaDB time column holds values in, zero dates' too
    /// (`2025-06-00` is in 2025, `0000-00-00` in year 0), found one index
    /// seek a year: the least value of the table, then the least after the
    /// last instant of its year, and so on. The target's filter is not
    /// applied: the years of every row are a superset of the filtered
    /// rows'. `None` where the column holds values in more than
    /// `MAX_ZERO_DATE_YEARS` years (the caller scans for zero dates
    /// instead), and for a TIMESTAMP, whose one zero date needs no year.
    async fn years_held(&self, r: &Resolved) -> Result<Option<Vec<i16>>, StoreError> {
        if !matches!(r.time.kind, TimeKind::Civil(_) | TimeKind::Date(_)) {
            return Ok(Some(Vec::new()));
        }
        let column = &r.time.column.name;
        let mut years: Vec<i16> = Vec::new();
        loop {
            let mut sql = Sql::new(self.dialect);
            sql.raw("SELECT CAST(YEAR(MIN(").ident(column).raw(")) AS SIGNED) FROM ").table(r.table.name.as_str());
            if let Some(&last) = years.last() {
                sql.raw(" WHERE ");
                predicate::after_year(&mut sql, r, last);
            }
            let cls = |e| classify(self.dialect, &r.object(), e);
            let year: Option<i64> = sql.query().fetch_one(&self.pool).await.map_err(cls)?.try_get(0).map_err(cls)?;
            let Some(year) = year else { return Ok(Some(years)) };
            match i16::try_from(year) {
                // Each seek must move forward, inside the calendar.
                Ok(y) if (0..=9999).contains(&y) && years.last().is_none_or(|&last| y > last) => {
                    if years.len() == MAX_ZERO_DATE_YEARS {
                        return Ok(None);
                    }
                    years.push(y);
                    if y == 9999 {
                        return Ok(Some(years));
                    }
                }
                _ => return Ok(None),
            }
        }
    }

    /// How the table lies, for choosing how to walk it.
    pub(super) async fn layout(&self, r: &Resolved) -> Result<catalog::Layout, StoreError> {
        catalog::layout(&self.pool, self.dialect, r).await
    }

    /// Deletes the due rows until the read-back finds none (two passes at
    /// most: rows that became due during the first are caught by the
    /// second). The due rows are not counted first: the run counted them
    /// already (`counted_due`), and the read-back counts what is left.
    async fn purge(
        &self,
        r: &Resolved,
        cutoff: &Cutoff,
        options: &PurgeOptions,
        report: &mut PurgeReport,
    ) -> Result<(), StoreError> {
        if options.mode == Mode::DryRun {
            self.survey(r, cutoff, report).await?;
            report.account.remaining = Some(report.account.matched);
            return Ok(());
        }
        if matches!(r.time.kind, TimeKind::Dynamic { .. }) {
            return self.sqlite_purge_verified(r, cutoff, options, report).await;
        }
        r.judges_time()?;
        if r.drop_partitions {
            let bounds = self.due_rule(r, cutoff).await?.default.expect("no period column with dropExpiredPartitions");
            self.drop_expired_partitions(r, &bounds, options, report).await?;
        }
        let layout = self.layout(r).await?;
        // The time index finds the due rows in time order, partitions and all.
        let indexed = layout.time_index
            && r.period.is_none()
            && matches!(r.time.kind, TimeKind::Instant | TimeKind::Civil(_) | TimeKind::Date(_) | TimeKind::Unix(_));
        let mut remaining = 0;
        let since = (std::time::Instant::now(), report.account.deleted);
        let mut counted = options.counted_due;
        for _pass in 0..2 {
            let rule = self.due_rule(r, cutoff).await?;
            let scope = |sql: &mut Sql| predicate::due(sql, r, &rule);
            let job = Job { store: self, target: r, scope: &scope, with_children: true, options, since };
            let mut attempt = 0;
            loop {
                match job.purge(&layout, counted.take(), report).await {
                    Err(StoreError::Conflict { detail, .. }) if attempt < CONFLICT_RETRIES => {
                        attempt += 1;
                        after_conflict(attempt, &detail).await;
                    }
                    other => break other?,
                }
            }
            remaining = self.read_back(r, cutoff, indexed, &mut report.account).await?;
            report.account.remaining = Some(remaining);
            if remaining == 0 {
                return Ok(());
            }
            if options.spent_budget().is_some() {
                return Err(options.budget_spent(report.account.deleted));
            }
        }
        Err(StoreError::NotVerified { deleted: report.account.deleted, remaining })
    }

    /// SQLite: survey, delete row by row judged in Rust, read back.
    async fn sqlite_purge_verified(
        &self,
        r: &Resolved,
        cutoff: &Cutoff,
        options: &PurgeOptions,
        report: &mut PurgeReport,
    ) -> Result<(), StoreError> {
        self.survey(r, cutoff, report).await?;
        let mut in_scope = report.account.matched;
        for _pass in 0..2 {
            self.sqlite_purge(r, cutoff, options, report).await?;
            in_scope = self.remaining_due(r, cutoff).await?;
            report.account.remaining = Some(in_scope);
            if in_scope == 0 {
                return Ok(());
            }
            if options.spent_budget().is_some() {
                return Err(options.budget_spent(report.account.deleted));
            }
        }
        Err(StoreError::NotVerified { deleted: report.account.deleted, remaining: in_scope })
    }

    /// Deletes the subject's rows, children first, and reads back.
    async fn erase(
        &self,
        r: &Resolved,
        identities: &[(&catalog::Column, Vec<crate::stores::identity::Identity>)],
        options: &PurgeOptions,
        report: &mut PurgeReport,
    ) -> Result<(), StoreError> {
        let scope = |sql: &mut Sql| predicate::subject(sql, r, identities);
        let mut in_scope = self.count(r, &scope).await?;
        report.account.matched = in_scope;
        if options.mode == Mode::DryRun {
            report.account.remaining = Some(in_scope);
            return Ok(());
        }
        let since = (std::time::Instant::now(), report.account.deleted);
        for _pass in 0..2 {
            let job = Job { store: self, target: r, scope: &scope, with_children: true, options, since };
            let mut attempt = 0;
            loop {
                match job.run(in_scope, report).await {
                    Err(StoreError::Conflict { detail, .. }) if attempt < CONFLICT_RETRIES => {
                        attempt += 1;
                        after_conflict(attempt, &detail).await;
                    }
                    other => break other?,
                }
            }
            in_scope = self.count(r, &scope).await?;
            report.account.remaining = Some(in_scope);
            if in_scope == 0 {
                return Ok(());
            }
        }
        Err(StoreError::NotVerified { deleted: report.account.deleted, remaining: in_scope })
    }

    /// Names the tables that refer to the target in a foreign-key error,
    /// leaving out those the target already declares as children.
    async fn explain(&self, r: &Resolved, error: StoreError) -> StoreError {
        match error {
            StoreError::ReferencedByOtherRecords { object, detail, .. } => {
                let declared: Vec<&str> = r.children.iter().map(|c| c.table.as_str()).collect();
                let found: Vec<String> = catalog::referrers(&self.pool, self.dialect, &r.table.name)
                    .await
                    .into_iter()
                    .filter(|(table, _)| !declared.iter().any(|d| d.eq_ignore_ascii_case(table)))
                    .map(|(table, constraint)| format!("table {table} ({constraint})"))
                    .collect();
                let referrers = if found.is_empty() { "the referring table".to_owned() } else { found.join(" and ") };
                StoreError::ReferencedByOtherRecords { object, detail, referrers }
            }
            other => other,
        }
    }
}

impl Store for SqlStore {
    fn kind(&self) -> &'static str {
        self.dialect.kind()
    }

    fn keeps_held_subjects(&self) -> bool {
        true
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

    fn check_target<'a>(&'a self, target: &'a Target) -> StoreFuture<'a, ()> {
        Box::pin(async move { self.resolve(target).await?.judges_time() })
    }

    fn clock(&self) -> StoreFuture<'_, Option<Timestamp>> {
        Box::pin(async move {
            let sql = match self.dialect {
                Dialect::Postgres => "SELECT CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS bigint)",
                Dialect::MySql => "SELECT CAST(UNIX_TIMESTAMP(SYSDATE(6)) * 1000000 AS SIGNED)",
                // A SQLite file has no clock of its own: it is the operator's.
                Dialect::Sqlite => return Ok(None),
            };
            let micros: i64 = sqlx::query(sql)
                .fetch_one(&self.pool)
                .await
                .and_then(|row| row.try_get(0))
                .map_err(|e| classify(self.dialect, "the server", e))?;
            Ok(Timestamp::from_microsecond(micros).ok())
        })
    }

    fn count_due<'a>(&'a self, target: &'a Target, cutoff: &'a Cutoff) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            let r = self.resolve(target).await?;
            self.remaining_due(&r, cutoff).await
        })
    }

    fn count_total<'a>(&'a self, target: &'a Target) -> StoreFuture<'a, Option<u64>> {
        Box::pin(async move {
            let r = self.resolve(target).await?;
            self.count(&r, &|sql| predicate::filter(sql, &r)).await.map(Some)
        })
    }

    fn purge_due<'a>(&'a self, target: &'a Target, cutoff: &'a Cutoff, options: &'a PurgeOptions) -> PurgeFuture<'a> {
        Box::pin(async move {
            let r = self.resolve(target).await?;
            let mut report = PurgeReport::empty(options);
            let mut result = self.purge(&r, cutoff, options, &mut report).await;
            if result.is_ok() && !r.held.is_empty() {
                result = self.count_held(&r, cutoff, &mut report.account).await;
            }
            if options.mode == Mode::Enforce && !matches!(r.time.kind, TimeKind::Dynamic { .. }) {
                // Not counted before the deletes: what the run counted, or
                // what went and what the read-back found left.
                let a = &mut report.account;
                // (Rows written behind the cutoff since the count make it more.)
                let found = a.deleted + a.remaining.unwrap_or(0);
                a.matched = options.counted_due.map_or(found, |counted| counted.max(found));
            }
            match result {
                Ok(()) => Ok(report),
                Err(e) => Err(Incomplete { error: self.explain(&r, e).await, report: Box::new(report) }),
            }
        })
    }

    fn count_subject<'a>(&'a self, target: &'a Target, subject: &'a Subject) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            let r = self.resolve(target).await?;
            let identities = predicate::subject_identities(&r, subject, self.dialect.kind())?;
            if identities.is_empty() {
                return Ok(0);
            }
            self.count(&r, &|sql| predicate::subject(sql, &r, &identities)).await
        })
    }

    fn export_subject<'a>(
        &'a self,
        target: &'a Target,
        subject: &'a Subject,
        limit: u64,
    ) -> StoreFuture<'a, SubjectExport> {
        Box::pin(async move {
            let mut r = self.resolve(target).await?;
            // A held subject's rows are theirs as much as any: an access
            // request exports them too.
            r.held.clear();
            let identities = predicate::subject_identities(&r, subject, self.dialect.kind())?;
            let mut out = SubjectExport::default();
            if identities.is_empty() {
                return Ok(out);
            }
            // One snapshot for the target's rows and its children's, so a
            // child row is never exported without its parent or left out
            // because its parent changed between two reads.
            let dialect = self.dialect;
            let cls = |object: String| move |e| classify(dialect, &object, e);
            let mut tx = self.pool.begin().await.map_err(cls(r.object()))?;
            if self.dialect == Dialect::Postgres {
                sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .execute(&mut *tx)
                    .await
                    .map_err(cls(r.object()))?;
            }
            let sql = export::statement(self.dialect, &r, &identities, limit);
            let rows = sql.query().fetch_all(&mut *tx).await.map_err(cls(r.object()))?;
            if rows.len() as u64 > limit {
                return Err(StoreError::ExportLimit { object: r.object(), limit });
            }
            let mut read = rows.len() as u64;
            let cols = export::columns(self.dialect, &r.table);
            for row in &rows {
                match export::row_to_json(self.dialect, &cols, row) {
                    Some(record) => out.records.push(record),
                    None => out.unreadable += 1,
                }
            }
            // The rows of declared children that an erasure of the subject
            // would delete with these, under the same limit.
            for child in &r.children {
                let object = format!("table {}", child.table);
                let info = catalog::inspect(&self.pool, self.dialect, &child.table).await?;
                let left = limit - read;
                let sql = export::child_statement(self.dialect, &r, child, &info, &identities, left);
                let rows = sql.query().fetch_all(&mut *tx).await.map_err(cls(object.clone()))?;
                if rows.len() as u64 > left {
                    return Err(StoreError::ExportLimit { object: format!("{} and its children", r.object()), limit });
                }
                read += rows.len() as u64;
                let cols = export::columns(self.dialect, &info);
                let mut related = RelatedRecords {
                    table: child.table.as_str().to_owned(),
                    foreign_key: child.foreign_key.name.clone(),
                    parent_key: child.parent_key.name.clone(),
                    records: Vec::with_capacity(rows.len()),
                };
                for row in &rows {
                    match export::row_to_json(self.dialect, &cols, row) {
                        Some(record) => related.records.push(record),
                        None => out.unreadable += 1,
                    }
                }
                out.related.push(related);
            }
            tx.commit().await.map_err(cls(r.object()))?;
            Ok(out)
        })
    }

    fn erase_subject<'a>(
        &'a self,
        target: &'a Target,
        subject: &'a Subject,
        options: &'a PurgeOptions,
    ) -> PurgeFuture<'a> {
        Box::pin(async move {
            let r = self.resolve(target).await?;
            let identities = predicate::subject_identities(&r, subject, self.dialect.kind())?;
            let mut report = PurgeReport::empty(options);
            if identities.is_empty() {
                report.account.remaining = Some(0);
                return Ok(report);
            }
            match self.erase(&r, &identities, options, &mut report).await {
                Ok(()) => Ok(report),
                Err(e) => Err(Incomplete { error: self.explain(&r, e).await, report: Box::new(report) }),
            }
        })
    }
}

/// Times a pass is tried again when the server aborted it for a concurrent
/// change (two runs deleting the same rows at once under REPEATABLE READ, a
/// deadlock): nothing of the aborted transaction was committed, batches
/// before it stay, and the next attempt judges the rows afresh, so what is
/// gone is not counted twice.
const CONFLICT_RETRIES: u32 = 3;

/// The most years a MariaDB time column may hold values in for its zero
/// dates to be found through its index (12 ranges a year); past it they
/// are counted with a scan of the index.
const MAX_ZERO_DATE_YEARS: usize = 100;

/// Waits a little longer after each conflict.
async fn after_conflict(attempt: u32, detail: &str) {
    tracing::info!(attempt, detail, "a batch met a concurrent change; trying again");
    tokio::time::sleep(std::time::Duration::from_millis(20 << attempt)).await;
}
