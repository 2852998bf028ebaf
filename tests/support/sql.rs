//! The SQL servers of the test environment: PostgreSQL and MariaDB from
//! `tests/env/up`, and SQLite files in the temporary directory.

use delenda::stores::Store;
use delenda::stores::sql::{Dialect, PoolSettings, SqlStore};
use sqlx::{AssertSqlSafe, Row};

/// One of the three SQL engines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    Postgres,
    MariaDb,
    Sqlite,
}

impl Engine {
    /// The connection URL of the engine's test server (a new file for SQLite).
    pub fn url(self) -> String {
        match self {
            Self::Postgres => super::setting("POSTGRES_URL", "PostgreSQL"),
            Self::MariaDb => super::setting("MYSQL_URL", "MariaDB"),
            Self::Sqlite => {
                let path = std::env::temp_dir().join(format!("{}.db", table_name("sqlite")));
                format!("sqlite://{}?mode=rwc", path.display())
            }
        }
    }

    /// The server's name, for messages.
    pub fn server(self) -> &'static str {
        match self {
            Self::Postgres => "PostgreSQL",
            Self::MariaDb => "MariaDB",
            Self::Sqlite => "SQLite",
        }
    }

    /// Appended to CREATE TABLE: MariaDB tables in utf8mb4 with the usual
    /// case-insensitive collation.
    pub fn table_suffix(self) -> &'static str {
        match self {
            Self::MariaDb => " DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci",
            _ => "",
        }
    }

    /// A column as text, for snapshots.
    pub fn as_text(self, column: &str) -> String {
        match self {
            Self::Postgres => format!("CAST({column} AS text)"),
            Self::MariaDb => format!("CAST({column} AS CHAR)"),
            Self::Sqlite => format!("CAST({column} AS TEXT)"),
        }
    }
}

/// A table name of its own for one test.
pub fn table_name(prefix: &str) -> String {
    super::unique(prefix).replace('-', "_")
}

/// A store on the engine's test server; fails naming the script that
/// starts the servers when it cannot be reached.
pub async fn store(engine: Engine) -> SqlStore {
    let store = SqlStore::connect_lazy(&engine.url(), PoolSettings::default()).unwrap();
    super::reach(store.probe().await, engine.server());
    store
}

/// Runs SQL written by a test.
pub async fn exec(store: &SqlStore, sql: &str) {
    sqlx::raw_sql(AssertSqlSafe(sql.to_owned())).execute(store.pool()).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// Placeholders 1..=n for the store's dialect, with a running counter.
pub fn ph(store: &SqlStore, n: &mut usize) -> String {
    *n += 1;
    match store.dialect() {
        Dialect::Postgres => format!("${n}"),
        _ => "?".to_owned(),
    }
}

/// Every row as the database renders it as text, ordered by `id`.
pub async fn snapshot(
    store: &SqlStore,
    engine: Engine,
    table: &str,
    columns: &[&str],
) -> Vec<(i64, Vec<Option<String>>)> {
    let cols = columns.iter().map(|c| engine.as_text(c)).collect::<Vec<_>>().join(", ");
    let rows = sqlx::query(AssertSqlSafe(format!("SELECT id, {cols} FROM {table} ORDER BY id")))
        .fetch_all(store.pool())
        .await
        .unwrap();
    rows.iter()
        .map(|r| (r.get::<i64, _>(0), (1..=columns.len()).map(|i| r.get::<Option<String>, _>(i)).collect()))
        .collect()
}

/// Drops a test's table.
pub async fn drop_table(store: &SqlStore, table: &str) {
    exec(store, &format!("DROP TABLE {table}")).await;
}

/// The ids left in a table.
pub async fn ids(store: &SqlStore, table: &str) -> Vec<i64> {
    sqlx::query(AssertSqlSafe(format!("SELECT id FROM {table} ORDER BY id")))
        .fetch_all(store.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<i64, _>(0))
        .collect()
}

/// Rows MariaDB has read from `table` through its index `index` (any, given
/// `None`) so far (`INFORMATION_SCHEMA.INDEX_STATISTICS`, kept while the
/// server runs with `userstat`, as `tests/env/up` starts it).
pub async fn index_rows_read(store: &SqlStore, table: &str, index: Option<&str>) -> i64 {
    let on: i64 = sqlx::query_scalar("SELECT CAST(@@userstat AS SIGNED)").fetch_one(store.pool()).await.unwrap();
    assert_eq!(on, 1, "MariaDB runs without userstat; start it with tests/env/up");
    let index = index.map(|i| format!(" AND INDEX_NAME = '{i}'")).unwrap_or_default();
    sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT CAST(COALESCE(SUM(ROWS_READ), 0) AS SIGNED) FROM INFORMATION_SCHEMA.INDEX_STATISTICS
         WHERE TABLE_SCHEMA = DATABASE() AND TABLE_NAME = '{table}'{index}"
    )))
    .fetch_one(store.pool())
    .await
    .unwrap()
}
