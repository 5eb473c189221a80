//! Migrations as a roll meets them, against the test PostgreSQL: a schema that a later version already
//! migrated (its history lists a migration this build does not know) still migrates and the service gets
//! ready, so an earlier version's pod restarted mid-roll keeps serving; and a migration that fails gives up
//! the database's migration lock (sqlx takes one per database, not per schema), so the other services in
//! the same database migrate while it retries.

use ordersystem_service_kit::db::Database;
use ordersystem_service_kit::relay::store::MIGRATOR;
use ordersystem_service_kit::shutdown;
use ordersystem_testkit::schema::{self, ServiceDb};
use ordersystem_testkit::service::database_args;
use std::time::Duration;

/// Longer than any migration of an empty schema takes; what a blocked one waits for in vain.
const PATIENCE: Duration = Duration::from_secs(30);

async fn fresh(prefix: &str) -> (ServiceDb, Database) {
    let db = schema::fresh_schema(prefix).await;
    let database = Database::connect_lazy(&database_args(&db)).expect("pool");
    (db, database)
}

/// `Database::migrate` of the outbox table, as a service starting; panics when it is not done in time.
async fn migrated(database: &Database, what: &str) {
    let (_trigger, waiter) = shutdown::channel();
    let done = tokio::time::timeout(PATIENCE, database.migrate(&[&*MIGRATOR], waiter)).await;
    assert_eq!(done, Ok(true), "{what}: migrated within {PATIENCE:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_a_later_version_migrated_still_migrates_and_gets_ready() {
    let (db, first) = fresh("later_version").await;
    migrated(&first, "the first start").await;
    // A later version's migration, applied by its pods while the roll goes on.
    sqlx::query(
        "INSERT INTO _sqlx_migrations_outbox (version, description, success, checksum, execution_time) \
         VALUES (99991231000000, 'a later version''s', true, '\\x00', 1)",
    )
    .execute(&first.pool)
    .await
    .expect("a later migration in the history");
    // This build's pod restarting now.
    let restarted = Database::connect_lazy(&database_args(&db)).expect("pool");
    migrated(&restarted, "a restart on the later schema").await;
    assert!(restarted.is_ready().await, "ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_migration_leaves_no_lock_the_other_services_wait_on() {
    let (db, first) = fresh("failing").await;
    migrated(&first, "the first start").await;
    // An applied migration whose text changed since: every later run fails, and retries.
    sqlx::query("UPDATE _sqlx_migrations_outbox SET checksum = '\\x00'")
        .execute(&first.pool)
        .await
        .expect("history changed");
    let failing = Database::connect_lazy(&database_args(&db)).expect("pool");
    let (stop, waiter) = shutdown::channel();
    let retrying = tokio::spawn(async move { failing.migrate(&[&*MIGRATOR], waiter).await });
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(!retrying.is_finished(), "the failing migration keeps retrying");

    // Another service in the same database starts meanwhile.
    let (_other_db, other) = fresh("beside_failing").await;
    migrated(&other, "another service beside a failing one").await;

    stop.fire();
    assert!(!retrying.await.expect("joined"), "never migrated");
}
