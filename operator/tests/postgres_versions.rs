//! The operator's database step on both PostgreSQL servers of the test bed, each with SCRAM password
//! authentication and a non-superuser admin (LOGIN, CREATEROLE, CREATE on the database): the shared
//! PostgreSQL 15 (`DATABASE_URL`, `postgres.sh`) and the newest major beside it (`PG_NEXT_DATABASE_URL`,
//! `postgres-next.sh`). PostgreSQL 16 changed CREATEROLE: the creator of a role administers it, but may
//! neither act as it (CREATE SCHEMA ... AUTHORIZATION) nor use its privileges (DROP SCHEMA, DROP OWNED BY)
//! without a grant of its own. On each server: `postgres::ensure` and `drop_all` directly, and the
//! controller running in-process for a credentials rotation and the cleanup of `deletionPolicy: Delete`.

#[path = "support/operator.rs"]
mod operator;
#[path = "support/setup.rs"]
mod setup;

use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use ordersystem_e2e::control_plane::{ADMIN_SECRET, TestNamespace, block_on_cleanup};
use ordersystem_e2e::order_system::{condition, generation, minimal_json, shop_json, to_os, wait_condition};
use ordersystem_e2e::{versions, wait};
use ordersystem_operator::controller::postgres;
use ordersystem_operator::controller::validate::{self, ValidSpec};
use ordersystem_operator::names::{self, Service};
use serde_json::json;
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection};

/// The variable `up.sh` writes with the newest major's admin URL (`postgres-next.sh url`).
const PG_NEXT_DATABASE_URL: &str = "PG_NEXT_DATABASE_URL";

/// One PostgreSQL server of the test bed, and the major version versions.env pins for it.
struct Server {
    url: String,
    major: i32,
}

/// The major of a version `versions.env` pins under `key` (`15`, `18.7.0`).
fn pinned_major(key: &str) -> i32 {
    let pinned = versions::pinned();
    let version = pinned
        .get(key)
        .unwrap_or_else(|| panic!("versions.env pins {key}"));
    let major = version.split('.').next().unwrap_or_default();
    major
        .parse()
        .unwrap_or_else(|_| panic!("{key}={version} starts with a major"))
}

impl Server {
    /// The shared cluster, PostgreSQL `POSTGRES_MAJOR`.
    fn shared() -> Self {
        Self {
            url: ordersystem_e2e::env::database_url(),
            major: pinned_major("POSTGRES_MAJOR"),
        }
    }

    /// The newest major, `POSTGRES_NEXT_VERSION`.
    fn next() -> Self {
        Self {
            url: ordersystem_e2e::env::require(PG_NEXT_DATABASE_URL),
            major: pinned_major("POSTGRES_NEXT_VERSION"),
        }
    }

    fn options(&self) -> PgConnectOptions {
        self.url.parse().expect("the server's URL parses")
    }

    /// The admin's password, the one part of the URL the options do not give back.
    fn admin_password(&self) -> String {
        let rest = self
            .url
            .split_once("://")
            .map_or(self.url.as_str(), |(_, rest)| rest);
        let (credentials, _) = rest.rsplit_once('@').expect("the URL carries credentials");
        let (_, password) = credentials.split_once(':').expect("user:password");
        password.to_string()
    }

    async fn connect_as(&self, user: &str, password: &str) -> Result<PgConnection, sqlx::Error> {
        PgConnection::connect_with(&self.options().username(user).password(password)).await
    }

    async fn admin(&self) -> PgConnection {
        PgConnection::connect_with(&self.options())
            .await
            .expect("the admin connects")
    }

    /// The role a login's sessions act as.
    async fn current_user(&self, user: &str, password: &str) -> Result<String, sqlx::Error> {
        let mut conn = self.connect_as(user, password).await?;
        let current = sqlx::query_scalar("SELECT current_user::text")
            .fetch_one(&mut conn)
            .await;
        conn.close().await.ok();
        current
    }

    /// The answer of `query`, one `$1` and a text result, for `name`; `None` for no row.
    async fn lookup(&self, query: &'static str, name: &str) -> Option<String> {
        let mut conn = self.admin().await;
        let found = sqlx::query_scalar(query)
            .bind(name)
            .fetch_optional(&mut conn)
            .await
            .expect("catalog query");
        conn.close().await.ok();
        found
    }

    async fn role_exists(&self, name: &str) -> bool {
        let sql = "SELECT rolname::text FROM pg_roles WHERE rolname = $1";
        self.lookup(sql, name).await.is_some()
    }

    /// The owner of schema `name`, if it exists.
    async fn schema_owner(&self, name: &str) -> Option<String> {
        let sql = "SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = $1";
        self.lookup(sql, name).await
    }

    /// The server runs the pinned major, and its admin is the non-superuser with CREATEROLE the README
    /// asks for: otherwise this test would prove nothing about that admin on that version.
    async fn check(&self) {
        let mut conn = self.admin().await;
        let (version, superuser, createrole): (i32, bool, bool) = sqlx::query_as(
            "SELECT current_setting('server_version_num')::int, rolsuper, rolcreaterole \
             FROM pg_roles WHERE rolname = current_user",
        )
        .fetch_one(&mut conn)
        .await
        .expect("the admin reads its role");
        conn.close().await.ok();
        assert_eq!(
            version / 10000,
            self.major,
            "server_version_num {version} at {}",
            self.host()
        );
        assert!(!superuser, "the admin must not be a superuser");
        assert!(createrole, "the admin has CREATEROLE");
    }

    fn host(&self) -> String {
        let options = self.options();
        format!("{}:{}", options.get_host(), options.get_port())
    }

    /// Points the namespace's admin Secret at this server, with CloudNativePG's key names.
    async fn put_admin_secret(&self, ns: &TestNamespace) {
        let options = self.options();
        let port = options.get_port().to_string();
        let password = self.admin_password();
        let data = [
            ("host", options.get_host()),
            ("port", port.as_str()),
            (
                "dbname",
                options.get_database().expect("the URL names a database"),
            ),
            ("user", options.get_username()),
            ("password", password.as_str()),
        ];
        ns.put_secret(ADMIN_SECRET, "Opaque", &data).await;
    }
}

/// Drops what a test provisioned, also when it fails midway.
struct DropAll(ValidSpec, postgres::AdminConnection);

impl Drop for DropAll {
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

/// `ensure` makes a role and a schema owned by it per service, proves isolation, and keeps to that on a
/// second pass; each role logs in with its Secret's password, creates in its own schema and can neither
/// create in nor read another's; `drop_all` removes every role and schema.
async fn provisions_isolated_schemas_and_drops_them(server: Server, prefix: &str) {
    server.check().await;
    let client = ordersystem_e2e::kube::client().await;
    let ns = TestNamespace::with_admin_secret(&client, prefix).await;
    server.put_admin_secret(&ns).await;
    // A real owner: Secrets owned by a uid that does not exist are garbage-collected at once.
    let os = ns
        .systems()
        .create(&Default::default(), &to_os(minimal_json("shop", "t")))
        .await
        .expect("create owner");
    let spec = validate::validate(&os).expect("valid");
    let admin = postgres::read_admin(&client, &ns.name, ADMIN_SECRET)
        .await
        .expect("admin secret");
    assert_eq!(format!("{}:{}", admin.host, admin.port), server.host());
    let _cleanup = DropAll(spec.clone(), admin.clone());

    let observed = provision(&client, &admin, &spec).await.expect("provision");
    assert!(observed.conflicts.is_empty(), "{:?}", observed.conflicts);
    assert_eq!(observed.ready.len(), 3, "{observed:?}");
    assert_eq!(observed.schemas.len(), 3);
    assert!(
        observed.schemas.iter().all(|s| s.privileges_verified),
        "{observed:?}"
    );
    let again = provision(&client, &admin, &spec).await.expect("a second pass");
    assert_eq!(again, observed, "a second pass changes nothing");

    for plan in &spec.services {
        let id = &plan.db_identifier;
        assert!(server.role_exists(id).await, "role {id}");
        assert_eq!(
            server.schema_owner(id).await.as_ref(),
            Some(id),
            "schema {id} owned by its role"
        );
        let user = ns.secret_value(&plan.secret_name, "username").await;
        let password = ns.secret_value(&plan.secret_name, "password").await;
        assert_eq!(&user, id);
        let mut conn = server
            .connect_as(&user, &password)
            .await
            .expect("the role logs in with its Secret's password");
        let schema: String = sqlx::query_scalar("SELECT current_schema()")
            .fetch_one(&mut conn)
            .await
            .expect("query");
        assert_eq!(&schema, id, "search_path points at the own schema");
        sqlx::query("CREATE TABLE probe (id int)")
            .execute(&mut conn)
            .await
            .expect("creates in its own schema");
        let other = spec
            .services
            .iter()
            .find(|o| o.service != plan.service)
            .expect("another service");
        let sql = format!("CREATE TABLE \"{}\".intruder (id int)", other.db_identifier);
        let denied = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut conn)
            .await
            .expect_err("another schema is closed");
        assert!(denied.to_string().contains("permission denied"), "{denied}");
        conn.close().await.ok();
    }
    // Reading is closed too: each role created `probe` in its own schema, and sees no other's.
    for reader in &spec.services {
        let password = ns.secret_value(&reader.secret_name, "password").await;
        let mut conn = server
            .connect_as(&reader.db_identifier, &password)
            .await
            .expect("the role logs in");
        for owner in spec.services.iter().filter(|o| o.service != reader.service) {
            let sql = format!("SELECT count(*) FROM \"{}\".probe", owner.db_identifier);
            let denied = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await
                .expect_err("another schema's table is unreadable");
            assert!(
                denied.to_string().contains("permission denied for schema"),
                "{:?} reading {:?}: {denied}",
                reader.service,
                owner.service
            );
        }
        conn.close().await.ok();
    }
    let order = &spec.plan(Service::Order).db_identifier;
    assert!(
        server.connect_as(order, "wrong-password").await.is_err(),
        "a wrong password is refused"
    );

    postgres::drop_all(&admin, &spec).await.expect("drop");
    for plan in &spec.services {
        let id = &plan.db_identifier;
        assert_eq!(server.schema_owner(id).await, None, "schema {id} dropped");
        assert!(!server.role_exists(id).await, "role {id} dropped");
    }
}

/// With the controller running: the schemas become ready on this server, a rotation of invoicing's
/// credentials switches its Secret to the second login (acting as the schema owner) while the old one
/// keeps working until the rollout is done, then disables the old one; deleting the resource with
/// `deletionPolicy: Delete` removes every role and schema it made, the second login included.
async fn rotates_credentials_and_delete_removes_everything(server: Server, prefix: &str) {
    server.check().await;
    let s = setup::setup(prefix).await;
    server.put_admin_secret(&s.ns).await;
    s.create(shop_json(&s.topic, &s.bootstrap, "Delete")).await;
    let os = wait_condition(&s.api, "DatabaseReady", "True", "SchemasReady").await;
    let schemas = os.status.map(|status| status.schemas).unwrap_or_default();
    assert_eq!(schemas.len(), 3, "{schemas:?}");
    for schema in &schemas {
        assert!(
            server.role_exists(&schema.role).await,
            "role {} on this server",
            schema.role
        );
        assert_eq!(
            server.schema_owner(&schema.schema).await.as_ref(),
            Some(&schema.role)
        );
    }
    let invoicing = wait::until_some("invoicing deployed", Duration::from_secs(90), || {
        s.deployment("shop-invoicing")
    })
    .await;
    let secret = "shop-invoicing-db";
    let owner = s.ns.secret_value(secret, "username").await;
    let first_password = s.ns.secret_value(secret, "password").await;
    assert_eq!(
        server
            .current_user(&owner, &first_password)
            .await
            .expect("the owner logs in"),
        owner
    );

    let rotate = json!({"metadata": {"annotations": {(names::ROTATE_CREDENTIALS_ANNOTATION): "invoicing"}}});
    s.api
        .patch("shop", &PatchParams::default(), &Patch::Merge(&rotate))
        .await
        .expect("request the rotation");
    wait::until_some("the Secret switches logins", Duration::from_secs(60), || async {
        (s.ns.secret_value(secret, "username").await != owner).then_some(())
    })
    .await;
    let login_b = s.ns.secret_value(secret, "username").await;
    let password_b = s.ns.secret_value(secret, "password").await;
    assert_eq!(login_b, names::alternate_login(&owner));
    let mut conn = server
        .connect_as(&login_b, &password_b)
        .await
        .expect("the new login works");
    let acting_as: String = sqlx::query_scalar("SELECT current_user::text")
        .fetch_one(&mut conn)
        .await
        .expect("query");
    assert_eq!(acting_as, owner, "its sessions act as the schema owner");
    sqlx::query("CREATE TABLE rotated (id int)")
        .execute(&mut conn)
        .await
        .expect("the new login creates in the owner's schema");
    conn.close().await.ok();
    // No pods run here, so the rollout stays incomplete: the old login must keep working.
    assert_eq!(
        server
            .current_user(&owner, &first_password)
            .await
            .expect("the old login still works"),
        owner
    );
    wait::until_some("invoicing rolled", Duration::from_secs(60), || async {
        let d = s.deployment("shop-invoicing").await?;
        (generation(&d) > generation(&invoicing)).then_some(())
    })
    .await;

    // No replica left on the old template: the rollout is complete and the old login is disabled.
    s.patch_spec(json!({"invoicing": {"replicas": 0}})).await;
    wait::until_some(
        "the rotation is acknowledged",
        Duration::from_secs(90),
        || async {
            let os = s.api.get("shop").await.ok()?;
            let pending = os
                .annotations()
                .contains_key(names::ROTATE_CREDENTIALS_ANNOTATION);
            let rotating = condition(&os, "Progressing").is_some_and(|c| c.1 == "RotatingCredentials");
            (!pending && !rotating).then_some(())
        },
    )
    .await;
    assert!(
        server.current_user(&owner, &first_password).await.is_err(),
        "the old login is disabled"
    );
    assert_eq!(
        server
            .current_user(&login_b, &password_b)
            .await
            .expect("the new login"),
        owner
    );
    let switched = Api::<Secret>::namespaced(s.client.clone(), &s.ns.name)
        .get(secret)
        .await
        .expect("the Secret");
    assert!(
        !switched
            .annotations()
            .contains_key(names::RETIRE_LOGIN_ANNOTATION),
        "the rotation is finished"
    );

    s.delete_shop_and_wait(90, "shop gone").await;
    // No reconcile failed on the database: a step that only worked when retried would pass unseen.
    let metrics = s.metrics.encode();
    let failed: Vec<&str> = metrics
        .lines()
        .filter(|line| line.starts_with("ordersystem_operator_reconcile_failures"))
        .filter(|line| line.contains("error=\"postgres\"") || line.contains("error=\"rotation\""))
        .collect();
    assert!(failed.is_empty(), "database steps failed: {failed:?}");
    for schema in &schemas {
        assert_eq!(
            server.schema_owner(&schema.schema).await,
            None,
            "schema {} dropped",
            schema.schema
        );
        assert!(
            !server.role_exists(&schema.role).await,
            "role {} dropped",
            schema.role
        );
    }
    assert!(!server.role_exists(&login_b).await, "the second login dropped");
}

#[tokio::test]
async fn postgres_15_provisions_isolated_schemas_and_drops_them() {
    provisions_isolated_schemas_and_drops_them(Server::shared(), "pgv-15").await;
}

#[tokio::test]
async fn newest_postgres_provisions_isolated_schemas_and_drops_them() {
    provisions_isolated_schemas_and_drops_them(Server::next(), "pgv-next").await;
}

#[tokio::test]
async fn postgres_15_rotates_credentials_and_delete_removes_everything() {
    rotates_credentials_and_delete_removes_everything(Server::shared(), "pgv-15-rot").await;
}

#[tokio::test]
async fn newest_postgres_rotates_credentials_and_delete_removes_everything() {
    rotates_credentials_and_delete_removes_everything(Server::next(), "pgv-next-rot").await;
}
