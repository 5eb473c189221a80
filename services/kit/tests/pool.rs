//! The service's connection pool against the real database: a connection that sat idle is checked before
//! it is handed out, so one the server dropped meanwhile is replaced instead of failing its next user; and a
//! worker's warm connections are handed out again without the pool until they cool.

use ordersystem_service_kit::config::DatabaseArgs;
use ordersystem_service_kit::db::{Database, WarmConnections};
use ordersystem_testkit::schema;
use std::time::Duration;

#[tokio::test]
async fn a_connection_the_server_dropped_while_idle_is_replaced_before_use() {
    let service_db = schema::fresh_schema("pool").await;
    let db = one_connection_pool(&service_db);
    let backend = || async {
        sqlx::query_scalar::<_, i32>("SELECT pg_backend_pid()")
            .fetch_one(&db.pool)
            .await
    };
    let first = backend().await.expect("first query");
    end_session(&service_db, first).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let second = backend()
        .await
        .expect("the idle connection was checked and replaced, not handed out broken");
    assert_ne!(first, second, "a new session serves the query");
}

#[tokio::test]
async fn a_warm_connection_is_reused_and_an_unused_one_goes_back_to_the_pool_which_checks_it() {
    let service_db = schema::fresh_schema("pool").await;
    let db = one_connection_pool(&service_db);
    let warm = WarmConnections::new(db.pool.clone());
    let mut conn = warm.take().await.expect("from the pool");
    let first = backend(&mut conn).await.expect("query");
    warm.put_back(conn);
    assert!(
        db.pool.try_acquire().is_none(),
        "a warm connection stays out of the pool"
    );
    let mut conn = warm.take().await.expect("the warm one");
    assert_eq!(
        backend(&mut conn).await.expect("query"),
        first,
        "the same session again"
    );
    warm.put_back(conn);

    // Unused for a while, it goes back to the pool by itself, so others of the pool can have it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut pooled = db
        .pool
        .acquire()
        .await
        .expect("the one connection, given back to the pool");
    assert_eq!(backend(&mut pooled).await.expect("query"), first);
    drop(pooled);
    let conn = warm.take().await.expect("from the pool again");
    warm.put_back(conn);

    end_session(&service_db, first).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut conn = warm
        .take()
        .await
        .expect("the cold one went back to the pool, which replaced it");
    let second = backend(&mut conn)
        .await
        .expect("a live session, not the ended one");
    assert_ne!(first, second);
}

async fn backend(conn: &mut sqlx::PgConnection) -> Result<i32, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(conn)
        .await
}

/// A pool of one connection: the one dropped or kept is the one the next user would get.
fn one_connection_pool(service_db: &schema::ServiceDb) -> Database {
    Database::connect_lazy(&DatabaseArgs {
        host: service_db.host.clone(),
        port: service_db.port,
        name: service_db.name.clone(),
        user: service_db.user.clone(),
        password: service_db.password.clone().into(),
        schema: service_db.schema.clone(),
        sslmode: "prefer".into(),
        sslrootcert: None,
        max_connections: 1,
    })
    .expect("pool")
}

/// Ends session `pid` from another connection. The role may end its own sessions, as a server restart or
/// an idle timeout on the way would.
async fn end_session(service_db: &schema::ServiceDb, pid: i32) {
    let mut other = service_db.connect().await;
    let ended: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(&mut other)
        .await
        .expect("terminate");
    assert!(ended, "session {pid} was ended");
}
