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
        for partition in partitions {
            if options.stopped() {
                return Err(StoreError::Cancelled { deleted: report.account.deleted });
            }
            let Some(upper) = &partition.to else { continue };
            if !self.upper_within(target, upper, bounds).await? {
                continue;
            }
            let started = Instant::now();
            let object = format!("partition {}", partition.name);
            let pcls = |e| classify(d, &object, e);
            let mut tx = self.pool.begin().await.map_err(pcls)?;
            // The partition's rows, counted while writers wait; readers go on.
            let mut lock = Sql::new(d);
            lock.raw("LOCK TABLE ").raw(quote_regclass(&partition.name)).raw(" IN SHARE MODE");
            lock.query().execute(&mut *tx).await.map_err(pcls)?;
            let mut count = Sql::new(d);
            count.raw("SELECT COUNT(*), COUNT(CASE WHEN ");
            let reason = predicate::time_unreadable(&mut count, target);
            count.raw(" THEN 1 END) FROM ").raw(quote_regclass(&partition.name));
            let row = count.query().fetch_one(&mut *tx).await.map_err(pcls)?;
            let records = row.try_get::<i64, _>(0).map_err(pcls)?.max(0) as u64;
            let unreadable = row.try_get::<i64, _>(1).map_err(pcls)?.max(0) as u64;
            if unreadable > 0 {
                // A MINVALUE partition can hold -infinity: those rows are
                // not due, so the partition is purged row by row instead.
                tracing::info!(partition = %partition.name, ?reason, unreadable, "partition holds values that are not times; not dropped");
                tx.rollback().await.map_err(pcls)?;
                continue;
            }
            let reserved = if options.budget.is_empty() { records } else { options.reserve(records) };
            if reserved < records {
                options.refund(reserved);
                tx.rollback().await.map_err(pcls)?;
                continue;
            }
            for child in &target.children {
                let mut del = Sql::new(d);
                del.raw("DELETE FROM ").table(child.table.as_str()).raw(" WHERE ").ident(&child.foreign_key.name);
                del.raw(" IN (SELECT ")
                    .ident(&child.parent_key.name)
                    .raw(" FROM ")
                    .raw(quote_regclass(&partition.name))
                    .raw(")");
                let done = del
                    .query()
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| classify(d, &format!("table {}", child.table), e))?;
                report.account.related_deleted += done.rows_affected();
            }
            let mut drop = Sql::new(d);
            drop.raw("DROP TABLE ").raw(quote_regclass(&partition.name));
            drop.query().execute(&mut *tx).await.map_err(pcls)?;
            tx.commit().await.map_err(pcls)?;
            report.account.dropped.push(Dropped { name: partition.name.clone(), records });
            report.record_batch(options, records, records, started.elapsed());
            tracing::info!(partition = %partition.name, records, "expired partition dropped");
        }
        Ok(())
    }

    /// Whether a partition's upper bound (exclusive) is at or before the
    /// due bound, compared by PostgreSQL in the column's own type.
    async fn upper_within(&self, target: &Resolved, upper: &str, bounds: &Bounds) -> Result<bool, StoreError> {
        let d = Dialect::Postgres;
        let sql_type = match &target.time.kind {
            TimeKind::Instant => "timestamptz",
            TimeKind::Civil(_) => "timestamp",
            TimeKind::Date(_) => "date",
            TimeKind::Unix(_) => "bigint",
            TimeKind::Dynamic { .. } | TimeKind::Unzoned { .. } => return Ok(false),
        };
        // The bound the due predicate compares with, in the same type.
        let mut before = Sql::new(d);
        predicate::time_before(&mut before, target, bounds);
        let bound = before.args().last().cloned().expect("time_before binds its bound");
        let mut probe = Sql::new(d);
        probe
            .raw("SELECT CAST(")
            .text(upper)
            .raw(" AS ")
            .raw(sql_type)
            .raw(") <= CAST(")
            .bind(bound)
            .raw(" AS ")
            .raw(sql_type)
            .raw(")");
        let ok: bool = probe
            .query()
            .fetch_one(&self.pool)
            .await
            .and_then(|row| row.try_get(0))
            .map_err(|e| classify(d, &target.object(), e))?;
        Ok(ok)
    }
}

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
