//! Reads a table from the catalog and checks a target against it, so that a
//! wrong name, a type the target cannot use or a missing time zone is a
//! clear error before anything is deleted. The result, a [`Resolved`]
//! target, is all the predicates and batch loops above need to know.

use jiff::tz::TimeZone;
use sqlx::{AnyPool, Row};

use super::dialect::{Dialect, TypeClass};
use super::error::classify;
use super::statement::Sql;
use crate::api::policy::{ColumnCondition, PeriodUnit, Target, TimeFormat};
use crate::api::{IdentityName, SqlIdentifier, TableName};
use crate::stores::StoreError;

/// A column as the catalog describes it.
#[derive(Clone, Debug)]
pub struct Column {
    /// Its name, as declared.
    pub name: String,
    /// Its declared type.
    pub declared: String,
    /// What the type lets it be used for.
    pub class: TypeClass,
    /// MySQL: its character set, for text columns.
    pub charset: Option<String>,
}

/// A table's columns and what else the batches need to know of it.
#[derive(Clone, Debug)]
pub struct TableInfo {
    /// The table.
    pub name: TableName,
    /// Its columns in order.
    pub columns: Vec<Column>,
    /// The columns of its primary key.
    pub primary_key: Vec<String>,
    /// PostgreSQL: declaratively partitioned.
    pub partitioned: bool,
    /// SQLite: the name its rowid answers to, unless it is WITHOUT ROWID.
    pub rowid: Option<&'static str>,
}

impl TableInfo {
    /// The column, or a [`StoreError::MissingColumn`] naming its role (and a
    /// column of the same name in another case, where one exists).
    pub fn column(&self, dialect: Dialect, name: &str, role: &'static str) -> Result<Column, StoreError> {
        // PostgreSQL names are case-sensitive once quoted; MySQL and SQLite
        // column names are not.
        let found = self.columns.iter().find(|c| match dialect {
            Dialect::Postgres => c.name == name,
            Dialect::MySql | Dialect::Sqlite => c.name.eq_ignore_ascii_case(name),
        });
        found.cloned().ok_or_else(|| {
            let hint = self
                .columns
                .iter()
                .find(|c| c.name.eq_ignore_ascii_case(name))
                .map(|c| {
                    format!(
                        " A column {} exists: PostgreSQL folds unquoted names to lower case when it creates them, and the operator uses names exactly as written; write it as it is stored.",
                        c.name
                    )
                })
                .unwrap_or_default();
            StoreError::MissingColumn { object: format!("table {}", self.name), column: name.to_owned(), role, hint }
        })
    }
}

/// Reads a table's columns; [`StoreError::MissingTable`] when there are none.
pub async fn inspect(pool: &AnyPool, dialect: Dialect, table: &TableName) -> Result<TableInfo, StoreError> {
    let (schema, name) = match table.as_str().split_once('.') {
        Some((s, n)) => (Some(s.to_owned()), n.to_owned()),
        None => (None, table.as_str().to_owned()),
    };
    let mut sql = Sql::new(dialect);
    match dialect {
        Dialect::Postgres => {
            // to_regclass resolves the quoted name (a bound value) along the
            // search path, exactly as the deletes will.
            sql.raw("SELECT a.attname::text, format_type(a.atttypid, a.atttypmod)::text, ")
                .raw("COALESCE((SELECT true FROM pg_index i WHERE i.indrelid = a.attrelid AND i.indisprimary AND a.attnum = ANY(i.indkey)), false), ")
                .raw("CAST(NULL AS text), (SELECT c.relkind::text FROM pg_class c WHERE c.oid = a.attrelid) FROM pg_attribute a WHERE a.attrelid = to_regclass(")
                .text(dialect.quote_table(table.as_str()))
                .raw(") AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum");
        }
        Dialect::MySql => {
            sql.raw("SELECT CAST(COLUMN_NAME AS CHAR), CAST(DATA_TYPE AS CHAR), COLUMN_KEY = 'PRI', CAST(CHARACTER_SET_NAME AS CHAR), CAST(NULL AS CHAR) ")
                .raw("FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ");
            match &schema {
                Some(s) => sql.text(s.clone()),
                None => sql.raw("DATABASE()"),
            };
            sql.raw(" AND TABLE_NAME = ").text(name.clone()).raw(" ORDER BY ORDINAL_POSITION");
        }
        Dialect::Sqlite => {
            sql.raw("SELECT name, type, pk > 0, NULL, NULL FROM pragma_table_info(").text(name.clone());
            if let Some(s) = &schema {
                sql.raw(", ").text(s.clone());
            }
            sql.raw(") ORDER BY pk, cid");
        }
    }
    let object = format!("table {table}");
    let cls = |e| classify(dialect, &object, e);
    let rows = sql.query().fetch_all(pool).await.map_err(cls)?;
    let mut info = TableInfo {
        name: table.clone(),
        columns: Vec::new(),
        primary_key: Vec::new(),
        partitioned: false,
        rowid: None,
    };
    for row in rows {
        let name: String = row.try_get(0).map_err(cls)?;
        let declared: String = row.try_get(1).map_err(cls)?;
        let primary: bool = match row.try_get::<bool, _>(2) {
            Ok(b) => b,
            Err(_) => row.try_get::<i64, _>(2).map(|n| n != 0).unwrap_or(false),
        };
        let charset: Option<String> = row.try_get(3).unwrap_or(None);
        let kind: Option<String> = row.try_get(4).unwrap_or(None);
        info.partitioned |= kind.as_deref() == Some("p");
        if primary {
            info.primary_key.push(name.clone());
        }
        info.columns.push(Column { class: dialect.classify(&declared), name, declared, charset });
    }
    if info.columns.is_empty() {
        return Err(StoreError::MissingTable {
            hint: case_hint(pool, dialect, schema.as_deref(), &name).await,
            object,
        });
    }
    if dialect == Dialect::Sqlite {
        info.rowid = sqlite_rowid(pool, &info, schema.as_deref(), &name).await?;
    }
    Ok(info)
}

/// A hint naming a table that differs from `name` only in case.
async fn case_hint(pool: &AnyPool, dialect: Dialect, schema: Option<&str>, name: &str) -> String {
    let mut sql = Sql::new(dialect);
    match dialect {
        Dialect::Postgres => {
            sql.raw("SELECT CAST(n.nspname || '.' || c.relname AS text) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace ")
                .raw("WHERE lower(c.relname) = lower(")
                .text(name)
                .raw(") AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND n.nspname NOT IN ('pg_catalog', 'information_schema')");
            if let Some(s) = schema {
                sql.raw(" AND lower(n.nspname) = lower(").text(s).raw(")");
            }
        }
        Dialect::MySql => {
            sql.raw("SELECT CAST(TABLE_NAME AS CHAR) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ");
            match schema {
                Some(s) => sql.text(s),
                None => sql.raw("DATABASE()"),
            };
            sql.raw(" AND LOWER(TABLE_NAME) = LOWER(").text(name).raw(")");
        }
        // SQLite table names ignore case already.
        Dialect::Sqlite => return String::new(),
    }
    let found: Vec<String> = match sql.query().fetch_all(pool).await {
        Ok(rows) => rows.iter().filter_map(|r| r.try_get(0).ok()).collect(),
        Err(_) => return String::new(),
    };
    match found.first() {
        Some(other) => format!(
            " A table {other} exists: names are case-sensitive here (PostgreSQL folds unquoted names to lower case when it creates them), and the operator uses the name exactly as written; write it as it is stored."
        ),
        None => String::new(),
    }
}

/// The name a SQLite table's rowid answers to (`rowid`, `_rowid_` or
/// `oid`, whichever no column shadows), or `None` for a WITHOUT ROWID table.
async fn sqlite_rowid(
    pool: &AnyPool,
    info: &TableInfo,
    schema: Option<&str>,
    name: &str,
) -> Result<Option<&'static str>, StoreError> {
    let mut sql = Sql::new(Dialect::Sqlite);
    sql.raw("SELECT wr FROM pragma_table_list WHERE name = ").text(name);
    if let Some(s) = schema {
        sql.raw(" AND schema = ").text(s);
    }
    let object = format!("table {}", info.name);
    let row = sql.query().fetch_optional(pool).await.map_err(|e| classify(Dialect::Sqlite, &object, e))?;
    let without_rowid = row.and_then(|r| r.try_get::<i64, _>(0).ok()).unwrap_or(0) != 0;
    if without_rowid {
        return Ok(None);
    }
    Ok(["rowid", "_rowid_", "oid"]
        .into_iter()
        .find(|alias| !info.columns.iter().any(|c| c.name.eq_ignore_ascii_case(alias))))
}

/// How the time column holds its times.
#[derive(Clone, Debug)]
pub enum TimeKind {
    /// Points in time (`timestamptz`, MySQL `TIMESTAMP`).
    Instant,
    /// Wall-clock times written in a zone (`timestamp without time zone`,
    /// `DATETIME`).
    Civil(TimeZone),
    /// Whole days in a zone (`DATE`).
    Date(TimeZone),
    /// Integers counting seconds or milliseconds since 1970.
    Unix(TimeFormat),
    /// SQLite: whatever each row holds, read and judged row by row.
    Dynamic { format: TimeFormat, zone: Option<TimeZone> },
    /// Wall-clock times or dates with no zone declared: erasures need no
    /// times and go on; anything that judges time refuses the target with
    /// the error kept here.
    Unzoned { store: &'static str, detail: String },
}

/// The time column and how to read it.
#[derive(Clone, Debug)]
pub struct TimeColumn {
    /// The column.
    pub column: Column,
    /// How it holds times.
    pub kind: TimeKind,
}

/// A column of per-record periods.
#[derive(Clone, Debug)]
pub struct PeriodSpec {
    /// The column.
    pub column: Column,
    /// The calendar unit of its numbers.
    pub unit: PeriodUnit,
    /// Whether a NULL is unreadable rather than "the policy's period".
    pub required: bool,
}

/// A child table whose rows go before the parent rows they refer to.
#[derive(Clone, Debug)]
pub struct Child {
    /// The child table.
    pub table: TableName,
    /// Its column that refers to the parent.
    pub foreign_key: Column,
    /// The parent's column it refers to.
    pub parent_key: Column,
}

/// The columns holding a held subject's identities, with the identities.
pub type HeldColumns = Vec<(Column, Vec<crate::stores::identity::Identity>)>;

/// A table target checked against the catalog: every name resolved to a
/// column of a usable type.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// The table and its columns.
    pub table: TableInfo,
    /// The columns batches are keyed on, where the dialect batches by key
    /// (MySQL; SQLite's rowid or primary key). Empty for PostgreSQL, which
    /// batches by physical row ranges.
    pub key: Vec<Column>,
    /// The column retention counts from.
    pub time: TimeColumn,
    /// The column with each row's own period.
    pub period: Option<PeriodSpec>,
    /// The filter's conditions with their columns.
    pub filter: Vec<(Column, ColumnCondition)>,
    /// Identity kinds and the columns that hold them.
    pub subject: Vec<(IdentityName, Column)>,
    /// Child tables.
    pub children: Vec<Child>,
    /// Whether expired partitions are dropped whole (PostgreSQL only).
    pub drop_partitions: bool,
    /// Subjects whose rows Holds keep: each hold's name, and the columns
    /// with the identities to find its rows by. Such rows are outside the
    /// filter, so nothing counts, deletes or reads them back as due.
    pub held: Vec<(String, HeldColumns)>,
}

impl Resolved {
    /// "table NAME", for errors.
    pub fn object(&self) -> String {
        format!("table {}", self.table.name)
    }

    /// Refuses a target whose times cannot be judged at all: a column of
    /// times without a zone, and no zone declared for it.
    pub fn judges_time(&self) -> Result<(), StoreError> {
        match &self.time.kind {
            TimeKind::Unzoned { store, detail } => Err(StoreError::InvalidTarget { store, detail: detail.clone() }),
            _ => Ok(()),
        }
    }
}

/// Checks a target against the catalog. `default_zone` is the DataStore's
/// timeZone, for columns of times without a zone.
pub async fn resolve(
    pool: &AnyPool,
    dialect: Dialect,
    target: &Target,
    default_zone: Option<&TimeZone>,
) -> Result<Resolved, StoreError> {
    let store = dialect.kind();
    let invalid = |detail: String| StoreError::InvalidTarget { store, detail };
    let spec = target
        .table
        .as_ref()
        .ok_or_else(|| invalid(format!("target {} sets no table; SQL stores hold tables", target.name)))?;
    let table = inspect(pool, dialect, &spec.name).await?;
    let zone = match &spec.time_zone {
        Some(name) => Some(TimeZone::get(name).map_err(|_| {
            invalid(format!("table.timeZone {name:?} is not a known IANA time zone (like Europe/Amsterdam or UTC)"))
        })?),
        None => default_zone.cloned(),
    };
    let time = table.column(dialect, spec.time_column.as_str(), "timeColumn")?;
    let kind = time_kind(dialect, &table, &time, spec.time_format, zone)?;
    let key = batch_key(pool, dialect, &table, spec.key_column.as_ref()).await?;
    let period = match &spec.period_column {
        Some(p) => {
            let c = table.column(dialect, p.name.as_str(), "periodColumn")?;
            expect(&table, &c, "periodColumn", &[TypeClass::Integer], "an integer")?;
            Some(PeriodSpec { column: c, unit: p.unit, required: p.required })
        }
        None => None,
    };
    let filter = spec
        .filter
        .iter()
        .map(|cond| Ok((table.column(dialect, cond.column.as_str(), "filter")?, cond.clone())))
        .collect::<Result<Vec<_>, StoreError>>()?;
    let mut subject = Vec::new();
    for field in &target.subject_fields {
        let Some(name) = &field.field else { continue };
        let ident: SqlIdentifier = name.as_str().parse().map_err(|_| {
            invalid(format!("subject field {name} is not a plain column name (letters, digits and underscores)"))
        })?;
        subject.push((field.identity.clone(), table.column(dialect, ident.as_str(), "subject field")?));
    }
    let mut children = Vec::new();
    for child in &spec.children {
        let info = inspect(pool, dialect, &child.name).await?;
        let foreign_key = info.column(dialect, child.foreign_key.as_str(), "child foreignKey")?;
        let parent_key = match &child.parent_key {
            Some(k) => table.column(dialect, k.as_str(), "child parentKey")?,
            None => match table.primary_key.as_slice() {
                [one] => table.column(dialect, one, "primary key")?,
                _ => {
                    return Err(invalid(format!(
                        "table {} has no single-column primary key; set parentKey on child table {}",
                        spec.name, child.name
                    )));
                }
            },
        };
        children.push(Child { table: child.name.clone(), foreign_key, parent_key });
    }
    if spec.drop_expired_partitions {
        check_partitions(pool, dialect, &table, &time, spec.filter.is_empty() && period.is_none()).await?;
    }
    Ok(Resolved {
        table,
        key,
        time: TimeColumn { column: time, kind },
        period,
        filter,
        subject,
        children,
        drop_partitions: spec.drop_expired_partitions,
        held: Vec::new(),
    })
}

/// How the time column holds its times, or why the target cannot use it.
fn time_kind(
    dialect: Dialect,
    table: &TableInfo,
    column: &Column,
    format: TimeFormat,
    zone: Option<TimeZone>,
) -> Result<TimeKind, StoreError> {
    let wrong = |expected: &'static str| StoreError::WrongColumnType {
        object: format!("table {}", table.name),
        column: column.name.clone(),
        role: "timeColumn",
        found: column.declared.clone(),
        expected,
    };
    if dialect == Dialect::Sqlite {
        // SQLite stores what it is given; a column of integer affinity holds
        // numbers, which are times only as timeFormat says.
        return if column.class == TypeClass::Integer && format == TimeFormat::Native {
            Err(wrong(
                "text holding ISO 8601 or RFC 2822 times; for an integer count of seconds or milliseconds since 1970, set timeFormat",
            ))
        } else {
            Ok(TimeKind::Dynamic { format, zone })
        };
    }
    if format != TimeFormat::Native {
        return if column.class == TypeClass::Integer {
            Ok(TimeKind::Unix(format))
        } else {
            Err(wrong("an integer column (timeFormat UnixSeconds or UnixMilliseconds)"))
        };
    }
    let declared = column.declared.to_ascii_lowercase();
    let civil = match dialect {
        Dialect::Postgres
            if declared.starts_with("timestamp")
                && declared.ends_with("with time zone")
                && !declared.ends_with("without time zone") =>
        {
            return Ok(TimeKind::Instant);
        }
        Dialect::Postgres if declared.starts_with("timestamp") => true,
        Dialect::MySql if declared == "timestamp" => return Ok(TimeKind::Instant),
        Dialect::MySql if declared == "datetime" => true,
        Dialect::Postgres | Dialect::MySql if declared == "date" => false,
        _ if column.class == TypeClass::Integer => {
            return Err(wrong(
                "a timestamp, datetime or date; for an integer count of seconds or milliseconds since 1970, set timeFormat",
            ));
        }
        _ => return Err(wrong("a timestamp, datetime or date")),
    };
    let Some(zone) = zone else {
        return Ok(TimeKind::Unzoned {
            store: dialect.kind(),
            detail: format!(
                "column {} of table {} is {}: its values carry no time zone, and reading them as UTC would delete records hours early or late. Set timeZone on the target (table.timeZone) or on the DataStore (spec.timeZone) to the zone they were written in, like Europe/Amsterdam",
                column.name, table.name, column.declared
            ),
        });
    };
    Ok(if civil { TimeKind::Civil(zone) } else { TimeKind::Date(zone) })
}

/// The columns MySQL and SQLite batches are keyed on: unique and indexed,
/// so that a batch is found on the index and never holds more rows than
/// keys. SQLite's rowid where the table has one.
async fn batch_key(
    pool: &AnyPool,
    dialect: Dialect,
    table: &TableInfo,
    key_column: Option<&SqlIdentifier>,
) -> Result<Vec<Column>, StoreError> {
    let store = dialect.kind();
    match dialect {
        // Batches go by row ranges; a named key must still exist.
        Dialect::Postgres => {
            if let Some(k) = key_column {
                table.column(dialect, k.as_str(), "keyColumn")?;
            }
            Ok(Vec::new())
        }
        // The rowid tells every row apart, also those whose keyColumn is
        // NULL (a unique column may hold many): a named key must still exist.
        Dialect::Sqlite if table.rowid.is_some() => {
            if let Some(k) = key_column {
                table.column(dialect, k.as_str(), "keyColumn")?;
            }
            Ok(vec![Column {
                name: table.rowid.expect("checked").to_owned(),
                declared: "INTEGER".into(),
                class: TypeClass::Integer,
                charset: None,
            }])
        }
        Dialect::Sqlite | Dialect::MySql => {
            let key = match key_column {
                Some(k) => vec![table.column(dialect, k.as_str(), "keyColumn")?],
                None if !table.primary_key.is_empty() => table
                    .primary_key
                    .iter()
                    .map(|k| table.column(dialect, k, "primary key"))
                    .collect::<Result<Vec<_>, _>>()?,
                None => {
                    return Err(StoreError::InvalidTarget {
                        store,
                        detail: format!(
                            "table {} has no primary key; set keyColumn to a unique, indexed column",
                            table.name
                        ),
                    });
                }
            };
            for c in &key {
                expect(
                    table,
                    c,
                    "key",
                    &[TypeClass::Integer, TypeClass::Text, TypeClass::Bytes],
                    "an integer, text or binary column",
                )?;
            }
            if key_column.is_some() && !unique_index_on(pool, dialect, table, &key[0]).await? {
                return Err(StoreError::InvalidTarget {
                    store,
                    detail: format!(
                        "keyColumn {} of table {} has no unique index: every batch would scan the whole table, and a batch could hold more rows than keys. Add a unique index on it, or leave keyColumn out to use the primary key",
                        key[0].name, table.name
                    ),
                });
            }
            Ok(key)
        }
    }
}

/// Whether some unique index starts with `column`... and holds only it.
async fn unique_index_on(
    pool: &AnyPool,
    dialect: Dialect,
    table: &TableInfo,
    column: &Column,
) -> Result<bool, StoreError> {
    let (schema, name) = match table.name.as_str().split_once('.') {
        Some((s, n)) => (Some(s), n),
        None => (None, table.name.as_str()),
    };
    let mut sql = Sql::new(dialect);
    match dialect {
        Dialect::MySql => {
            sql.raw("SELECT COUNT(*) FROM information_schema.STATISTICS s WHERE s.TABLE_SCHEMA = ");
            match schema {
                Some(s) => sql.text(s),
                None => sql.raw("DATABASE()"),
            };
            sql.raw(" AND s.TABLE_NAME = ")
                .text(name)
                .raw(" AND s.NON_UNIQUE = 0 AND s.SEQ_IN_INDEX = 1 AND s.COLUMN_NAME = ")
                .text(column.name.clone());
            sql.raw(" AND NOT EXISTS (SELECT 1 FROM information_schema.STATISTICS o WHERE o.TABLE_SCHEMA = s.TABLE_SCHEMA AND o.TABLE_NAME = s.TABLE_NAME AND o.INDEX_NAME = s.INDEX_NAME AND o.SEQ_IN_INDEX > 1)");
        }
        Dialect::Sqlite => {
            sql.raw("SELECT COUNT(*) FROM pragma_index_list(").text(name).raw(") l WHERE l.\"unique\" = 1 AND (SELECT COUNT(*) FROM pragma_index_info(l.name)) = 1 AND (SELECT name FROM pragma_index_info(l.name)) = ").text(column.name.clone());
        }
        Dialect::Postgres => return Ok(true),
    }
    let object = format!("table {}", table.name);
    let n: i64 =
        sql.query().fetch_one(pool).await.and_then(|r| r.try_get(0)).map_err(|e| classify(dialect, &object, e))?;
    Ok(n > 0)
}

/// Refuses dropExpiredPartitions where it cannot apply: anything but a
/// PostgreSQL table partitioned by range on the time column, with no
/// filter or per-record period.
async fn check_partitions(
    pool: &AnyPool,
    dialect: Dialect,
    table: &TableInfo,
    time: &Column,
    whole_partitions_due: bool,
) -> Result<(), StoreError> {
    let refuse = |detail: String| Err(StoreError::InvalidTarget { store: dialect.kind(), detail });
    if dialect != Dialect::Postgres {
        return refuse(format!(
            "dropExpiredPartitions works on PostgreSQL tables partitioned by range on the time column; a {} table's expired rows are deleted row by row: remove dropExpiredPartitions",
            dialect.kind()
        ));
    }
    if !table.partitioned {
        return refuse(format!(
            "table {} is not partitioned, so there are no partitions to drop: remove dropExpiredPartitions, or partition the table by range on {}",
            table.name, time.name
        ));
    }
    if !whole_partitions_due {
        return refuse(
            "dropExpiredPartitions drops whole partitions, but this target's filter or periodColumn keeps some rows of an expired partition: remove dropExpiredPartitions, or the filter and periodColumn"
                .to_owned(),
        );
    }
    let mut sql = Sql::new(dialect);
    sql.raw("SELECT p.partstrat::text, CAST(p.partnatts AS bigint), CAST(a.attname AS text) FROM pg_partitioned_table p ")
        .raw("LEFT JOIN pg_attribute a ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0] WHERE p.partrelid = to_regclass(")
        .text(dialect.quote_table(table.name.as_str()))
        .raw(")");
    let object = format!("table {}", table.name);
    let row = sql.query().fetch_one(pool).await.map_err(|e| classify(dialect, &object, e))?;
    let strategy: String = row.try_get(0).unwrap_or_default();
    let columns: i64 = row.try_get(1).unwrap_or(0);
    let key: Option<String> = row.try_get(2).unwrap_or(None);
    if strategy != "r" || columns != 1 || key.as_deref() != Some(time.name.as_str()) {
        return refuse(format!(
            "table {} is not partitioned by range on its time column {} alone (strategy {strategy}, key {}): its partitions' bounds say nothing about which rows are due. Remove dropExpiredPartitions",
            table.name,
            time.name,
            key.unwrap_or_else(|| "an expression".into())
        ));
    }
    Ok(())
}

fn expect(
    table: &TableInfo,
    column: &Column,
    role: &'static str,
    classes: &[TypeClass],
    expected: &'static str,
) -> Result<(), StoreError> {
    if classes.contains(&column.class) {
        Ok(())
    } else {
        Err(StoreError::WrongColumnType {
            object: format!("table {}", table.name),
            column: column.name.clone(),
            role,
            found: column.declared.clone(),
            expected,
        })
    }
}

/// The tables whose foreign keys refer to `table`, with the constraint
/// names, for an error that says what to declare.
pub async fn referrers(pool: &AnyPool, dialect: Dialect, table: &TableName) -> Vec<(String, String)> {
    let (schema, name) = match table.as_str().split_once('.') {
        Some((s, n)) => (Some(s), n),
        None => (None, table.as_str()),
    };
    let mut sql = Sql::new(dialect);
    match dialect {
        Dialect::Postgres => {
            sql.raw("SELECT CAST(conrelid::regclass AS text), CAST(conname AS text) FROM pg_constraint WHERE contype = 'f' AND confrelid = to_regclass(")
                .text(dialect.quote_table(table.as_str()))
                .raw(") ORDER BY 1, 2");
        }
        Dialect::MySql => {
            sql.raw("SELECT CAST(TABLE_NAME AS CHAR), CAST(CONSTRAINT_NAME AS CHAR) FROM information_schema.REFERENTIAL_CONSTRAINTS WHERE CONSTRAINT_SCHEMA = ");
            match schema {
                Some(s) => sql.text(s),
                None => sql.raw("DATABASE()"),
            };
            sql.raw(" AND REFERENCED_TABLE_NAME = ").text(name).raw(" ORDER BY 1, 2");
        }
        Dialect::Sqlite => {
            sql.raw("SELECT m.name, 'foreign key on ' || p.\"from\" FROM sqlite_master m, pragma_foreign_key_list(m.name) p WHERE m.type = 'table' AND p.\"table\" = ")
                .text(name)
                .raw(" COLLATE NOCASE ORDER BY 1, 2");
        }
    }
    match sql.query().fetch_all(pool).await {
        Ok(rows) => rows
            .iter()
            .filter_map(|r| Some((r.try_get::<String, _>(0).ok()?, r.try_get::<String, _>(1).ok()?)))
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// What a purge needs to know of a table to choose how to walk it, read
/// from the catalog in one statement.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Layout {
    /// PostgreSQL: the most heap blocks any table of the inheritance tree
    /// (partitions, legacy children) has, plus one.
    pub blocks: u64,
    /// The engine's estimate of the table's rows (PostgreSQL: from the
    /// last ANALYZE or VACUUM; MariaDB: InnoDB's statistics); `None` when
    /// it was never estimated. Only ever used to choose a walk, never to
    /// count.
    pub rows_estimate: Option<f64>,
    /// One plain table: no partitions and no inheritance children.
    pub plain: bool,
    /// A valid, complete B-tree index leads with the time column, so the
    /// due rows can be found in time order without reading the others.
    pub time_index: bool,
}

/// Reads the [`Layout`] of a resolved target's table.
pub async fn layout(pool: &AnyPool, dialect: Dialect, r: &Resolved) -> Result<Layout, StoreError> {
    let table = &r.table.name;
    let time = &r.time.column.name;
    let mut sql = Sql::new(dialect);
    match dialect {
        Dialect::Postgres => {
            sql.raw("WITH RECURSIVE tree(oid) AS (SELECT CAST(to_regclass(")
                .text(dialect.quote_table(table.as_str()))
                .raw(") AS oid) UNION ALL SELECT i.inhrelid FROM pg_inherits i JOIN tree ON i.inhparent = tree.oid) ")
                .raw("SELECT CAST(COALESCE(MAX(pg_relation_size(oid)), 0) / current_setting('block_size')::bigint AS bigint), ")
                .raw("CAST(COUNT(*) AS bigint), ")
                .raw("(SELECT CAST(c.reltuples AS float8) FROM pg_class c WHERE c.oid = to_regclass(")
                .text(dialect.quote_table(table.as_str()))
                .raw(")), ")
                .raw("EXISTS (SELECT 1 FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid JOIN pg_am am ON am.oid = ic.relam ")
                .raw("JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] ")
                .raw("WHERE i.indrelid = to_regclass(")
                .text(dialect.quote_table(table.as_str()))
                .raw(") AND i.indisvalid AND i.indisready AND i.indpred IS NULL AND am.amname = 'btree' AND a.attname = ")
                .text(time.clone())
                .raw("), (SELECT c.relkind::text FROM pg_class c WHERE c.oid = to_regclass(")
                .text(dialect.quote_table(table.as_str()))
                .raw(")) FROM tree");
        }
        Dialect::MySql => {
            let (schema, name) = match table.as_str().split_once('.') {
                Some((s, n)) => (Some(s), n),
                None => (None, table.as_str()),
            };
            let in_schema = |sql: &mut Sql, alias: &str| {
                sql.raw(alias).raw(".TABLE_SCHEMA = ");
                match schema {
                    Some(s) => sql.text(s),
                    None => sql.raw("DATABASE()"),
                };
                sql.raw(" AND ").raw(alias).raw(".TABLE_NAME = ").text(name);
            };
            // InnoDB's estimate of the table's rows, from its statistics.
            sql.raw("SELECT CAST(0 AS SIGNED), CAST(1 AS SIGNED), (SELECT CAST(t.TABLE_ROWS AS DOUBLE) FROM information_schema.TABLES t WHERE ");
            in_schema(&mut sql, "t");
            sql.raw("), EXISTS (SELECT 1 FROM information_schema.STATISTICS s WHERE ");
            in_schema(&mut sql, "s");
            sql.raw(" AND s.SEQ_IN_INDEX = 1 AND s.INDEX_TYPE = 'BTREE' AND s.SUB_PART IS NULL AND s.COLUMN_NAME = ")
                .text(time.clone())
                .raw("), CAST('r' AS CHAR)");
        }
        Dialect::Sqlite => return Ok(Layout { plain: true, ..Layout::default() }),
    }
    let cls = |e| classify(dialect, &r.object(), e);
    let row = sql.query().fetch_one(pool).await.map_err(cls)?;
    let blocks: i64 = row.try_get(0).map_err(cls)?;
    let tables: i64 = row.try_get(1).map_err(cls)?;
    let rows_estimate: Option<f64> = row.try_get(2).unwrap_or(None);
    let time_index = match row.try_get::<bool, _>(3) {
        Ok(b) => b,
        Err(_) => row.try_get::<i64, _>(3).map(|n| n != 0).map_err(cls)?,
    };
    let kind: Option<String> = row.try_get(4).unwrap_or(None);
    Ok(Layout {
        blocks: blocks.max(0) as u64 + 1,
        rows_estimate: rows_estimate.filter(|n| *n >= 0.0),
        plain: tables == 1 && kind.as_deref() == Some("r"),
        time_index,
    })
}
