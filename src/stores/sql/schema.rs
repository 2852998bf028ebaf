//! Reads a table's columns from the catalog and checks a target against
//! them, so a wrong name or type is a clear error before any delete.

use sqlx::{AnyPool, Row};

use super::dialect::{Dialect, TypeClass};
use super::error::classify;
use super::query::Sql;
use crate::api::policy::{ColumnCondition, PeriodUnit, Target};
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

/// A table's columns and primary key.
#[derive(Clone, Debug)]
pub struct TableInfo {
    /// The table.
    pub name: TableName,
    /// Its columns in order.
    pub columns: Vec<Column>,
    /// The columns of its primary key.
    pub primary_key: Vec<String>,
}

impl TableInfo {
    /// The column, or a [`StoreError::MissingColumn`] naming its role.
    pub fn column(&self, dialect: Dialect, name: &str, role: &'static str) -> Result<Column, StoreError> {
        // PostgreSQL names are case-sensitive once quoted; MySQL and SQLite
        // column names are not.
        let found = self.columns.iter().find(|c| match dialect {
            Dialect::Postgres => c.name == name,
            Dialect::MySql | Dialect::Sqlite => c.name.eq_ignore_ascii_case(name),
        });
        found.cloned().ok_or_else(|| StoreError::MissingColumn {
            object: format!("table {}", self.name),
            column: name.to_owned(),
            role,
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
                .raw("CAST(NULL AS text) FROM pg_attribute a WHERE a.attrelid = to_regclass(")
                .text(dialect.quote_table(table.as_str()))
                .raw(") AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum");
        }
        Dialect::MySql => {
            sql.raw("SELECT CAST(COLUMN_NAME AS CHAR), CAST(DATA_TYPE AS CHAR), COLUMN_KEY = 'PRI', CAST(CHARACTER_SET_NAME AS CHAR) ")
                .raw("FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ");
            match schema {
                Some(s) => sql.text(s),
                None => sql.raw("DATABASE()"),
            };
            sql.raw(" AND TABLE_NAME = ").text(name).raw(" ORDER BY ORDINAL_POSITION");
        }
        Dialect::Sqlite => {
            sql.raw("SELECT name, type, pk > 0, NULL FROM pragma_table_info(").text(name);
            if let Some(s) = schema {
                sql.raw(", ").text(s);
            }
            sql.raw(") ORDER BY cid");
        }
    }
    let object = format!("table {table}");
    let rows = sql.query().fetch_all(pool).await.map_err(|e| classify(dialect, &object, e))?;
    let mut info = TableInfo { name: table.clone(), columns: Vec::new(), primary_key: Vec::new() };
    for row in rows {
        let name: String = row.try_get(0).map_err(|e| classify(dialect, &object, e))?;
        let declared: String = row.try_get(1).map_err(|e| classify(dialect, &object, e))?;
        let primary: bool = match row.try_get::<bool, _>(2) {
            Ok(b) => b,
            Err(_) => row.try_get::<i64, _>(2).map(|n| n != 0).unwrap_or(false),
        };
        let charset: Option<String> = row.try_get(3).unwrap_or(None);
        if primary {
            info.primary_key.push(name.clone());
        }
        info.columns.push(Column { class: dialect.classify(&declared), name, declared, charset });
    }
    if info.columns.is_empty() {
        return Err(StoreError::MissingTable { object });
    }
    Ok(info)
}

/// A table target checked against the catalog: every name resolved to a
/// column of a usable type.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// The table and its columns.
    pub table: TableInfo,
    /// The column batches are keyed on.
    pub key: Column,
    /// The column retention counts from.
    pub time: Column,
    /// The column with each row's own period, and its unit.
    pub period: Option<(Column, PeriodUnit)>,
    /// The filter's conditions with their columns.
    pub filter: Vec<(Column, ColumnCondition)>,
    /// Identity kinds and the columns that hold them.
    pub subject: Vec<(IdentityName, Column)>,
    /// Child tables: the table, its column referring to the parent, and
    /// the parent's column it refers to.
    pub children: Vec<(TableName, Column, Column)>,
}

/// Checks a target against the catalog.
pub async fn resolve(pool: &AnyPool, dialect: Dialect, target: &Target) -> Result<Resolved, StoreError> {
    let store = dialect.kind();
    let spec = target.table.as_ref().ok_or_else(|| StoreError::InvalidTarget {
        store,
        detail: format!("target {} sets no table; SQL stores hold tables", target.name),
    })?;
    let table = inspect(pool, dialect, &spec.name).await?;
    let key = match &spec.key_column {
        Some(k) => table.column(dialect, k.as_str(), "keyColumn")?,
        None => match table.primary_key.as_slice() {
            [one] => table.column(dialect, one, "primary key")?,
            [] => {
                return Err(StoreError::InvalidTarget {
                    store,
                    detail: format!("table {} has no primary key; set keyColumn to a unique column", spec.name),
                });
            }
            _ => {
                return Err(StoreError::InvalidTarget {
                    store,
                    detail: format!(
                        "table {} has a primary key of several columns; set keyColumn to a unique column",
                        spec.name
                    ),
                });
            }
        },
    };
    expect(&table, &key, "keyColumn", &[TypeClass::Integer, TypeClass::Text], "an integer or text column")?;
    let time = table.column(dialect, spec.time_column.as_str(), "timeColumn")?;
    let time_classes: &[TypeClass] = match dialect {
        Dialect::Sqlite => &[TypeClass::Time, TypeClass::Text],
        Dialect::Postgres | Dialect::MySql => &[TypeClass::Time],
    };
    expect(&table, &time, "timeColumn", time_classes, "a timestamp, datetime or date")?;
    let period = match &spec.period_column {
        Some(p) => {
            let c = table.column(dialect, p.name.as_str(), "periodColumn")?;
            expect(&table, &c, "periodColumn", &[TypeClass::Integer], "an integer")?;
            Some((c, p.unit))
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
        let ident: SqlIdentifier = name.as_str().parse().map_err(|_| StoreError::InvalidTarget {
            store,
            detail: format!("subject field {name} is not a plain column name (letters, digits and underscores)"),
        })?;
        subject.push((field.identity.clone(), table.column(dialect, ident.as_str(), "subject field")?));
    }
    let mut children = Vec::new();
    for child in &spec.children {
        let info = inspect(pool, dialect, &child.name).await?;
        let fk = info.column(dialect, child.foreign_key.as_str(), "child foreignKey")?;
        let parent_key = match &child.parent_key {
            Some(k) => table.column(dialect, k.as_str(), "child parentKey")?,
            None => key.clone(),
        };
        children.push((child.name.clone(), fk, parent_key));
    }
    Ok(Resolved { table, key, time, period, filter, subject, children })
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
