//! The Postgres backend against the real database (non-superuser admin, SCRAM authentication) and the
//! real API server (the service Secrets): Secrets kept, locations followed, conflicts. Isolation and
//! cleanup on every PostgreSQL major of the test bed are in `postgres_versions.rs`.

use ordersystem_e2e::control_plane::{TestNamespace, block_on_cleanup};
use ordersystem_e2e::order_system::{minimal_json, to_os};
use ordersystem_operator::controller::postgres;
use ordersystem_operator::controller::validate::{self, ValidSpec};
use ordersystem_operator::names::Service;
use sqlx::Connection;

async fn setup(prefix: &str) -> (kube::Client, TestNamespace, ValidSpec) {
    let client = ordersystem_e2e::kube::client().await;
    let ns = TestNamespace::with_admin_secret(&client, prefix).await;
    // A real owner: Secrets owned by a uid that does not exist are garbage-collected at once.
    let os = ns
        .systems()
        .create(&Default::default(), &to_os(minimal_json("shop", "t")))
        .await
        .expect("create owner");
    let spec = validate::validate(&os).expect("valid");
    (client, ns, spec)
}

struct DropSchemas(ValidSpec, postgres::AdminConnection);

impl Drop for DropSchemas {
    fn drop(&mut self) {
        let (spec, admin) = (self.0.clone(), self.1.clone());
        block_on_cleanup(async move {
            let _ = postgres::drop_all(&admin, &spec).await;
        });
    }
}

/// One reconcile's database step: the services' Secrets as they are, then `ensure`.
async fn provision(
    client: &kube::Client,
    admin: &postgres::AdminConnection,
    spec: &ValidSpec,
) -> Result<postgres::PostgresObserved, postgres::Error> {
    let mut secrets = postgres::read_secrets(client, spec).await?;
    postgres::ensure(
        &postgres::reuse::Reuse::default(),
        client,
        admin,
        spec,
        &mut secrets,
    )
    .await
}

#[tokio::test]
async fn a_second_pass_keeps_the_secret_and_changes_nothing() {
    let (client, ns, spec) = setup("pg-idem").await;
    let admin = postgres::read_admin(&client, &ns.name, "pg-admin")
        .await
        .expect("admin secret");
    let _cleanup = DropSchemas(spec.clone(), admin.clone());
    let first = provision(&client, &admin, &spec).await.expect("provision");
    let secret = &spec.plan(Service::Invoicing).secret_name;
    let password = ns.secret_value(secret, "password").await;
    let second = provision(&client, &admin, &spec).await.expect("provision again");
    assert_eq!(first, second);
    assert_eq!(
        ns.secret_value(secret, "password").await,
        password,
        "never regenerated"
    );
}

#[tokio::test]
async fn a_new_host_in_the_admin_secret_reaches_every_service_secret_and_changes_its_hash() {
    let (client, ns, spec) = setup("pg-moved").await;
    let admin = postgres::read_admin(&client, &ns.name, "pg-admin")
        .await
        .expect("admin secret");
    let _cleanup = DropSchemas(spec.clone(), admin.clone());
    let before = provision(&client, &admin, &spec).await.expect("provision");
    let secret = &spec.plan(Service::Shipping).secret_name;
    let password = ns.secret_value(secret, "password").await;
    // The same server on its other address: the test bridge, where the real node's pods reach it.
    let bridge =
        std::env::var("ORDERSYSTEM_NODE_BRIDGE_IP").expect("ORDERSYSTEM_NODE_BRIDGE_IP (test bed env)");
    let patch = serde_json::json!({"stringData": {"host": bridge}});
    kube::Api::<k8s_openapi::api::core::v1::Secret>::namespaced(client.clone(), &ns.name)
        .patch("pg-admin", &Default::default(), &kube::api::Patch::Merge(&patch))
        .await
        .expect("move the admin Secret");
    let moved = postgres::read_admin(&client, &ns.name, "pg-admin")
        .await
        .expect("admin secret");
    let after = provision(&client, &moved, &spec)
        .await
        .expect("provision at the new host");
    for plan in &spec.services {
        assert_eq!(
            ns.secret_value(&plan.secret_name, "host").await,
            bridge,
            "{:?}",
            plan.service
        );
        assert_ne!(
            before.secret_hashes[&plan.service], after.secret_hashes[&plan.service],
            "{:?}: a new hash rolls the service",
            plan.service
        );
    }
    assert_eq!(
        ns.secret_value(secret, "password").await,
        password,
        "the password is kept"
    );
    let again = provision(&client, &moved, &spec).await.expect("provision again");
    assert_eq!(again.secret_hashes, after.secret_hashes, "written once");
}

#[tokio::test]
async fn schemas_of_another_resource_are_a_conflict_and_delete_removes_only_our_own() {
    let (client, ns, spec) = setup("pg-conflict").await;
    let admin = postgres::read_admin(&client, &ns.name, "pg-admin")
        .await
        .expect("admin secret");
    let _cleanup = DropSchemas(spec.clone(), admin.clone());
    provision(&client, &admin, &spec).await.expect("provision");
    // Another resource whose schema names are the same (as a name recorded in its status may be).
    let mut intruder = spec.clone();
    intruder.name = "intruder".into();
    intruder.uid = "someone-else".into();
    let observed = provision(&client, &admin, &intruder).await.expect("observe");
    assert_eq!(observed.conflicts.len(), 3, "{:?}", observed.conflicts);
    assert!(observed.ready.is_empty());
    postgres::drop_all(&admin, &intruder)
        .await
        .expect("drop as intruder");
    let exists = |name: String| async move {
        let options: sqlx::postgres::PgConnectOptions =
            ordersystem_e2e::env::database_url().parse().expect("url");
        let mut conn = sqlx::PgConnection::connect_with(&options)
            .await
            .expect("admin connects");
        sqlx::query_scalar::<_, bool>("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
            .bind(name)
            .fetch_one(&mut conn)
            .await
            .expect("query")
    };
    let schema = spec.plan(Service::Shipping).db_identifier.clone();
    assert!(
        exists(schema.clone()).await,
        "an intruder's delete leaves our schema alone"
    );
    postgres::drop_all(&admin, &spec).await.expect("drop");
    assert!(!exists(schema).await, "our delete removes it");
}
