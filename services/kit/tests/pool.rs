//! The service's connection pool against the real database: a connection that sat idle is checked before
//! it is handed out, so one the server dropped meanwhile is replaced instead of failing its next user.

use ordersystem_service_kit::config::DatabaseArgs;
use ordersystem_service_kit::db::Database;
use ordersystem_testkit::schema;
use std::time::Duration;

#[tokio::test]
async fn a_connection_the_server_dropped_while_idle_is_replaced_before_use() {
    let service_db = schema::fresh_schema("pool").await;
    let db = Database::connect_lazy(&DatabaseArgs {
        host: service_db.host.clone(),
        port: service_db.port,
        name: service_db.name.clone(),
        user: service_db.user.clone(),
        password: service_db.password.clone().into(),
        schema: service_db.schema.clone(),
        sslmode: "prefer".into(),
        sslrootcert: None,
        // one connection: the one dropped is the one the next query would get
        max_connections: 1,
    })
    .expect("pool");
    let backend = || async {
        sqlx::query_scalar::<_, i32>("SELECT pg_backend_pid()")
            .fetch_one(&db.pool)
            .await
    };
    let first = backend().await.expect("first query");
    // The role may end its own sessions, as a server restart or an idle timeout on the way would.
    let mut other = service_db.connect().await;
    let ended: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(first)
        .fetch_one(&mut other)
        .await
        .expect("terminate");
    assert!(ended, "the pooled session was ended");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let second = backend()
        .await
        .expect("the idle connection was checked and replaced, not handed out broken");
    assert_ne!(first, second, "a new session serves the query");
}
