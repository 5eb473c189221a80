//! The test database is a real PostgreSQL with password authentication and a non-superuser admin.

use ordersystem_e2e::{env, names};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{AssertSqlSafe, Connection};

#[tokio::test]
async fn admin_creates_and_drops_a_schema_without_superuser() {
    let mut conn = PgConnection::connect(&env::database_url())
        .await
        .expect("connect as the test admin");
    let (is_super, can_create_role): (bool, bool) =
        sqlx::query_as("SELECT rolsuper, rolcreaterole FROM pg_roles WHERE rolname = current_user")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert!(
        !is_super,
        "the test admin must not be a superuser: it would hide privilege bugs"
    );
    assert!(can_create_role);

    let schema = names::unique("smoke").replace('-', "_");
    sqlx::query(AssertSqlSafe(format!(r#"CREATE SCHEMA "{schema}""#)))
        .execute(&mut conn)
        .await
        .unwrap();
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = $1)")
        .bind(&schema)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert!(exists);
    sqlx::query(AssertSqlSafe(format!(r#"DROP SCHEMA "{schema}""#)))
        .execute(&mut conn)
        .await
        .unwrap();
}

#[tokio::test]
async fn wrong_password_is_refused() {
    let options: PgConnectOptions = env::database_url().parse().unwrap();
    let err = PgConnection::connect_with(&options.password("not-the-password"))
        .await
        .expect_err("password authentication must be enforced (no trust auth)");
    assert!(
        err.to_string().contains("password authentication failed"),
        "unexpected error: {err}"
    );
}
