//! PostgreSQL range partitions that lie wholly before the cutoff are
//! dropped whole (`dropExpiredPartitions`): a partition's upper bound is
//! exclusive, so when it is at or before the due bound every row the
//! partition can hold is due. The bound, not the data, decides: a partition
//! whose range still reaches past the cutoff is never dropped, even when
//! all of its rows happen to be due, because the application may still
//! write into it. The default partition is never dropped.

use std::sync::OnceLock;
use std::time::Instant;

use regex::Regex;
use sqlx::Row;

use super::SqlStore;
use super::catalog::{Resolved, TimeKind};
use super::dialect::Dialect;
use super::error::classify;
use super::predicate;
use super::statement::Sql;
use crate::api::account::Dropped;
use crate::stores::due::Bounds;
use crate::stores::{PurgeOptions, PurgeReport, StoreError};

/// A partition and the literal of its upper bound.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Partition {
    /// Its name, schema-qualified as PostgreSQL prints it.
    pub name: String,
    /// Its lower bound's literal; `None` for MINVALUE.
    pub from: Option<String>,
    /// Its upper bound's literal; `None` for MAXVALUE.
    pub to: Option<String>,
}

/// Reads `FOR VALUES FROM (...) TO (...)` as PostgreSQL prints a range
/// partition's bound; `None` for anything else (DEFAULT, list, hash).
pub(super) fn parse_bound(name: &str, bound: &str) -> Option<Partition> {
    static RANGE: OnceLock<Regex> = OnceLock::new();
    let re = RANGE.get_or_init(|| Regex::new(r"^FOR VALUES FROM \((.+)\) TO \((.+)\)$").expect("a valid pattern"));
    let m = re.captures(bound.trim())?;
    let literal = |text: &str| -> Option<Option<String>> {
        match text.trim() {
            "MINVALUE" | "MAXVALUE" => Some(None),
            t if t.starts_with('\'') && t.ends_with('\'') && t.len() >= 2 => {
                Some(Some(t[1..t.len() - 1].replace("''", "'")))
            }
            t if t.parse::<i64>().is_ok() => Some(Some(t.to_owned())),
            _ => None,
        }
    };
    Some(Partition { name: name.to_owned(), from: literal(&m[1])?, to: literal(&m[2])? })
}

/// Expired partitions dropped in one transaction at most: their rows are
/// counted under one lock, so a group stays short.
const PARTITIONS_PER_DROP: usize = 16;

impl SqlStore {
    /// Drops the partitions of `target` whose upper bound is at or before
    /// `bounds`, children of their rows first, counting their rows as
    /// deleted and naming each in the account.
    pub(super) async fn drop_expired_partitions(
        &self,
        target: &Resolved,
        bounds: &Bounds,
        options: &PurgeOptions,
        report: &mut PurgeReport,
    ) -> Result<(), StoreError> {
        let d = Dialect::Postgres;
        let cls = |e| classify(d, &target.object(), e);
        let mut list = Sql::new(d);
        list.raw("SELECT CAST(CAST(c.oid AS regclass) AS text), pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass(")
            .text(d.quote_table(target.table.name.as_str()))
            .raw(") ORDER BY 1");
        let rows = list.query().fetch_all(&self.pool).await.map_err(cls)?;
        let mut partitions = Vec::new();
        for row in rows {
            let name: String = row.try_get(0).map_err(cls)?;
            let bound: String = row.try_get(1).unwrap_or_default();
            if let Some(p) = parse_bound(&name, &bound) {
                partitions.push(p);
            }
        }
        if options.stopped() {
            return Err(StoreError::Cancelled { deleted: report.account.deleted });
        }
        let within = self.uppers_within(target, &partitions, bounds).await?;
        let expired: Vec<Partition> =
            partitions.into_iter().zip(within).filter_map(|(partition, within)| within.then_some(partition)).collect();
        // Several partitions go in one transaction, as one `DROP TABLE` of
        // them all would: a transaction each costs more than the drop.
        for group in expired.chunks(PARTITIONS_PER_DROP) {
            if options.stopped() {
                return Err(StoreError::Cancelled { deleted: report.account.deleted });
            }
            let started = Instant::now();
            let object = format!("partitions of table {}", target.table.name);
            let pcls = |e| classify(d, &object, e);
            let names: Vec<&str> = group.iter().map(|p| quote_regclass(&p.name)).collect();
            let mut tx = self.pool.begin().await.map_err(pcls)?;
            // The partitions' rows, counted while writers wait; readers go on.
            let mut lock = Sql::new(d);
            lock.raw("LOCK TABLE ").raw(&names.join(", ")).raw(" IN SHARE MODE");
            lock.query().execute(&mut *tx).await.map_err(pcls)?;
            let mut count = Sql::new(d);
            let mut reason = None;
            for (i, name) in names.iter().enumerate() {
                if i > 0 {
                    count.raw(" UNION ALL ");
                }
                count.raw(&format!("SELECT CAST({i} AS bigint), COUNT(*), COUNT(CASE WHEN "));
                reason = Some(predicate::time_unreadable(&mut count, target));
                count.raw(" THEN 1 END) FROM ").raw(name);
            }
            let mut counts = vec![(0u64, 0u64); group.len()];
            for row in count.query().fetch_all(&mut *tx).await.map_err(pcls)? {
                let i = row.try_get::<i64, _>(0).map_err(pcls)?.max(0) as usize;
                let records = row.try_get::<i64, _>(1).map_err(pcls)?.max(0) as u64;
                let unreadable = row.try_get::<i64, _>(2).map_err(pcls)?.max(0) as u64;
                if let Some(c) = counts.get_mut(i) {
                    *c = (records, unreadable);
                }
            }
            let mut dropping = Vec::new();
            for ((partition, name), (records, unreadable)) in group.iter().zip(&names).zip(counts) {
                if unreadable > 0 {
                    // A MINVALUE partition can hold -infinity: those rows are
                    // not due, so the partition is purged row by row instead.
                    tracing::info!(partition = %partition.name, ?reason, unreadable, "partition holds values that are not times; not dropped");
                    continue;
                }
                let reserved = if options.budget.is_empty() { records } else { options.reserve(records) };
                if reserved < records {
                    options.refund(reserved);
                    continue;
                }
                dropping.push((partition, name, records));
            }
            if dropping.is_empty() {
                tx.rollback().await.map_err(pcls)?;
                continue;
            }
            for child in &target.children {
                let mut del = Sql::new(d);
                del.raw("DELETE FROM ").table(child.table.as_str()).raw(" WHERE ").ident(&child.foreign_key.name);
                del.raw(" IN (");
                for (i, (_, name, _)) in dropping.iter().enumerate() {
                    if i > 0 {
                        del.raw(" UNION ALL ");
                    }
                    del.raw("SELECT ").ident(&child.parent_key.name).raw(" FROM ").raw(name);
                }
                del.raw(")");
                let done = del
                    .query()
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| classify(d, &format!("table {}", child.table), e))?;
                report.account.related_deleted += done.rows_affected();
            }
            let mut drop = Sql::new(d);
            let list: Vec<&str> = dropping.iter().map(|(_, name, _)| **name).collect();
            drop.raw("DROP TABLE ").raw(&list.join(", "));
            drop.query().execute(&mut *tx).await.map_err(pcls)?;
            tx.commit().await.map_err(pcls)?;
            let total: u64 = dropping.iter().map(|(_, _, records)| records).sum();
            for (partition, _, records) in dropping {
                report.account.dropped.push(Dropped { name: partition.name.clone(), records });
                tracing::info!(partition = %partition.name, records, "expired partition dropped");
            }
            report.record_batch(options, total, total, started.elapsed());
        }
        Ok(())
    }

    /// For each partition, whether its upper bound (exclusive) is at or
    /// before the due bound, compared by PostgreSQL in the column's own
    /// type: one statement for up to [`BOUNDS_PER_QUERY`] partitions, not
    /// one each (a table of daily partitions has hundreds). MAXVALUE is
    /// never within.
    async fn uppers_within(
        &self,
        target: &Resolved,
        partitions: &[Partition],
        bounds: &Bounds,
    ) -> Result<Vec<bool>, StoreError> {
        let d = Dialect::Postgres;
        let sql_type = match &target.time.kind {
            TimeKind::Instant => "timestamptz",
            TimeKind::Civil(_) => "timestamp",
            TimeKind::Date(_) => "date",
            TimeKind::Unix(_) => "bigint",
            TimeKind::Dynamic { .. } | TimeKind::Unzoned { .. } => return Ok(vec![false; partitions.len()]),
        };
        // The bound the due predicate compares with, in the same type.
        let mut before = Sql::new(d);
        predicate::time_before(&mut before, target, bounds);
        let bound = before.args().last().cloned().expect("time_before binds its bound");
        let mut within = vec![false; partitions.len()];
        let bounded: Vec<(usize, &str)> =
            partitions.iter().enumerate().filter_map(|(i, p)| p.to.as_deref().map(|to| (i, to))).collect();
        for chunk in bounded.chunks(BOUNDS_PER_QUERY) {
            let mut probe = Sql::new(d);
            probe.raw("SELECT CAST(b.i AS bigint) FROM (VALUES ");
            probe.join(chunk, ", ", |sql, (i, upper)| {
                sql.raw("(").int(*i as i64).raw(", ").text(*upper).raw(")");
            });
            probe.raw(") AS b(i, upper) WHERE CAST(b.upper AS ").raw(sql_type).raw(") <= ");
            probe.raw("CAST(").bind(bound.clone()).raw(" AS ").raw(sql_type).raw(")");
            let rows = probe.query().fetch_all(&self.pool).await.map_err(|e| classify(d, &target.object(), e))?;
            for row in rows {
                let i: i64 = row.try_get(0).map_err(|e| classify(d, &target.object(), e))?;
                if let Some(w) = usize::try_from(i).ok().and_then(|i| within.get_mut(i)) {
                    *w = true;
                }
            }
        }
        Ok(within)
    }
}

/// Partitions whose upper bounds one statement compares (two bound values
/// each, far under PostgreSQL's 65,535).
const BOUNDS_PER_QUERY: usize = 1000;

/// A partition's name as PostgreSQL prints a regclass: quoted where it
/// needs to be and schema-qualified where it is not on the search path, so
/// it is SQL as it stands. It comes from the catalog, never from a user.
fn quote_regclass(name: &str) -> &str {
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_range_bounds_as_postgresql_prints_them() {
        let p =
            parse_bound("calls_2025_01", "FOR VALUES FROM ('2025-01-01 00:00:00+00') TO ('2025-02-01 00:00:00+00')")
                .unwrap();
        assert_eq!(p.from.as_deref(), Some("2025-01-01 00:00:00+00"));
        assert_eq!(p.to.as_deref(), Some("2025-02-01 00:00:00+00"));
        let open = parse_bound("old", "FOR VALUES FROM (MINVALUE) TO ('2024-01-01')").unwrap();
        assert_eq!((open.from, open.to.as_deref()), (None, Some("2024-01-01")));
        assert_eq!(
            parse_bound("epoch", "FOR VALUES FROM (0) TO (1700000000)").unwrap().to.as_deref(),
            Some("1700000000")
        );
        assert!(parse_bound("rest", "DEFAULT").is_none());
        assert!(parse_bound("l", "FOR VALUES IN ('a')").is_none());
    }
}
