//! The real PostgreSQL and MariaDB from `tests/env/up` answer sqlx.
mod support;

use sqlx::Connection;

#[tokio::test]
async fn postgres_answers_select_version() {
    let url = support::setting("POSTGRES_URL", "PostgreSQL");
    let mut conn = support::reach(sqlx::PgConnection::connect(&url).await, "PostgreSQL");
    let (version,): (String,) = sqlx::query_as("SELECT version()").fetch_one(&mut conn).await.unwrap();
    println!("reached {version}");
    assert!(version.starts_with("PostgreSQL "), "unexpected version string {version}");
}

#[tokio::test]
async fn mariadb_answers_select_version() {
    let url = support::setting("MYSQL_URL", "MariaDB");
    let mut conn = support::reach(sqlx::MySqlConnection::connect(&url).await, "MariaDB");
    let (version,): (String,) = sqlx::query_as("SELECT version()").fetch_one(&mut conn).await.unwrap();
    println!("reached MariaDB {version}");
    assert!(version.contains("MariaDB"), "unexpected version string {version}");
}
