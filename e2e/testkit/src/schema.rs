//! A fresh schema and a login role owning only it, provisioned the way the operator does it (CREATE ROLE
//! … LOGIN PASSWORD; GRANT role TO CURRENT_USER; CREATE SCHEMA … AUTHORIZATION role; REVOKE ALL … FROM
//! PUBLIC), so a service under test runs with no more privilege than in a cluster.

use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use std::str::FromStr;

/// Connection facts of a service's own login; all a service's `DatabaseArgs` need.
#[derive(Debug, Clone)]
pub struct ServiceDb {
    pub host: String,
    pub port: u16,
    pub name: String,
    pub user: String,
    pub password: String,
    pub schema: String,
}

/// Create schema and role `<prefix>_<random>` with the admin URL from the test environment.
///
/// # Panics
/// When the database is not reachable or the admin lacks CREATEROLE: the message says which.
pub async fn fresh_schema(prefix: &str) -> ServiceDb {
    fresh_schema_at(&crate::env::database_url(), prefix).await
}

/// Like `fresh_schema`, on the server the admin URL `url` names (a test's own instance).
///
/// # Panics
/// When the database is not reachable or the admin lacks CREATEROLE: the message says which.
pub async fn fresh_schema_at(url: &str, prefix: &str) -> ServiceDb {
    let admin =
        PgConnectOptions::from_str(url).unwrap_or_else(|e| panic!("DATABASE_URL is not a Postgres URL: {e}"));
    let name = crate::names::unique(prefix).replace('-', "_");
    let password = crate::names::unique("pw");
    let mut conn = PgConnection::connect_with(&admin)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test Postgres with DATABASE_URL: {e}"));
    // Names come from `unique` (lowercase alphanumerics and `_`); quoted anyway, like the operator does.
    let statements = [
        format!("CREATE ROLE \"{name}\" LOGIN PASSWORD '{password}'"),
        format!("GRANT \"{name}\" TO CURRENT_USER"),
        format!("CREATE SCHEMA \"{name}\" AUTHORIZATION \"{name}\""),
        format!("REVOKE ALL ON SCHEMA \"{name}\" FROM PUBLIC"),
    ];
    for statement in statements {
        sqlx::query(sqlx::AssertSqlSafe(statement.clone()))
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("provisioning the test schema failed at `{statement}`: {e}"));
    }
    ServiceDb {
        host: admin.get_host().to_string(),
        port: admin.get_port(),
        name: admin.get_database().unwrap_or("postgres").to_string(),
        user: name.clone(),
        password,
        schema: name,
    }
}

impl ServiceDb {
    /// A connection as the service's own role, with its schema on the search_path (for assertions).
    pub async fn connect(&self) -> PgConnection {
        let options = PgConnectOptions::new()
            .host(&self.host)
            .port(self.port)
            .database(&self.name)
            .username(&self.user)
            .password(&self.password)
            .options([("search_path", self.schema.as_str())]);
        PgConnection::connect_with(&options)
            .await
            .unwrap_or_else(|e| panic!("cannot connect as the service role {}: {e}", self.user))
    }

    /// The single number `sql` (a count) yields, read as the service's own role.
    ///
    /// # Panics
    /// When the query fails.
    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
            .fetch_one(&mut self.connect().await)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }
}
