//! The Postgres backend: per service a Secret with generated credentials, a login role, a schema owned by
//! that role, and proof of isolation. Works with a non-superuser admin (CREATEROLE + CREATE on the
//! database) and survives a crash at any step: the Secret first (created only if absent, never
//! regenerated), then the role with a SCRAM verifier computed here (no plaintext reaches the server),
//! then membership, schema, grants and search_path. Never touches `public` or database-level grants.
//! Ownership is recorded with `COMMENT ON` carrying the resource's namespace, name and uid; who may use
//! an object recorded otherwise is decided in `ownership`.

mod credentials;
pub mod ownership;
pub mod reuse;
pub(super) mod scram;

pub use credentials::{AdminConnection, admin_from_secret, read_admin, read_connection};
use credentials::{create_secret, secret_value, stale_location, update_location};

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use ordersystem_contract::wiring::secret_keys;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgSslMode};
use sqlx::{AssertSqlSafe, Connection};

use super::secrets;
use super::validate::{ServicePlan, ValidSpec};
use crate::crd::SchemaStatus;
use crate::names::{self, Service, quote_ident};
use ownership::Claim;

/// How long connecting to Postgres may take before the reconcile fails and is retried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to read admin Secret {name}")]
    ReadAdminSecret {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to read the Postgres CA Secret {name}")]
    ReadCaSecret {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("Postgres CA Secret {name} has no ca.crt")]
    CaSecretKey { name: String },
    #[error("admin Secret {name} has no usable {key}")]
    AdminSecretKey { name: String, key: &'static str },
    #[error("failed to connect to Postgres at {host}:{port}")]
    Connect {
        host: String,
        port: u16,
        #[source]
        source: sqlx::Error,
    },
    #[error("connecting to Postgres at {host}:{port} timed out")]
    ConnectTimeout { host: String, port: u16 },
    #[error("failed to create or read Secret {name}")]
    ServiceSecret {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("Secret {name} has no {key}")]
    ServiceSecretKey { name: String, key: &'static str },
    #[error("failed to provision {what} for {service}")]
    Provision {
        what: &'static str,
        service: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("failed to drop {what} {name}")]
    Drop {
        what: &'static str,
        name: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("this replica no longer holds the leader lease, so it sends no statement to Postgres")]
    NotLeader,
}

impl Error {
    /// True when the TLS handshake with the server failed: its certificate is not signed by the CA, names
    /// another host, or the server offers no TLS.
    pub fn is_tls(&self) -> bool {
        match self {
            Self::Connect { source, .. } => match source {
                sqlx::Error::Tls(_) => true,
                // rustls reports a refused certificate as an I/O error of kind InvalidData.
                sqlx::Error::Io(error) => error.kind() == std::io::ErrorKind::InvalidData,
                _ => false,
            },
            _ => false,
        }
    }
}

/// What the backend found and did for all three services.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PostgresObserved {
    pub schemas: Vec<SchemaStatus>,
    pub secret_hashes: BTreeMap<Service, String>,
    pub ready: BTreeSet<Service>,
    /// Roles or schemas that exist but belong to someone else.
    pub conflicts: Vec<String>,
    /// Roles and schemas taken over in this reconcile, each a sentence for an Event.
    pub taken_over: Vec<String>,
}

pub async fn connect(admin: &AdminConnection, spec: &ValidSpec) -> Result<PgConnection, Error> {
    let ssl_mode = spec.ssl_mode.as_libpq().parse().unwrap_or(PgSslMode::Prefer);
    let mut options = PgConnectOptions::new()
        .host(&admin.host)
        .port(admin.port)
        .database(&admin.dbname)
        .username(&admin.username)
        .password(&admin.password)
        .ssl_mode(ssl_mode);
    if let Some(ca) = &admin.ca_pem {
        options = options.ssl_root_cert_from_pem(ca.clone());
    }
    let (host, port) = (admin.host.clone(), admin.port);
    match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options)).await {
        Ok(result) => result.map_err(|source| Error::Connect { host, port, source }),
        Err(_) => Err(Error::ConnectTimeout { host, port }),
    }
}

/// Each service's database Secret that exists, for `ensure` and the rotation.
pub async fn read_secrets(client: &kube::Client, spec: &ValidSpec) -> Result<secrets::ByService, Error> {
    let read = secrets::read(client, spec, |plan| &plan.secret_name).await;
    read.map_err(|secrets::ReadError { name, source }| Error::ServiceSecret { name, source })
}

/// Provisions all three services in the crash-safe order, or only observes when `paused`. `secrets` are
/// the services' Secrets as `read_secrets` found them; the missing ones are created here and added.
/// Runs on a connection `reuse` kept from an earlier look when it has one, given back to it after a
/// success, so a look at rest logs in to PostgreSQL only when no connection is kept.
#[tracing::instrument(name = "postgres", skip_all)]
pub async fn ensure(
    reuse: &reuse::Reuse,
    client: &kube::Client,
    admin: &AdminConnection,
    spec: &ValidSpec,
    secrets: &mut secrets::ByService,
) -> Result<PostgresObserved, Error> {
    let mut conn = reuse.take(admin, spec).await?;
    let result = ensure_on(&mut conn, client, admin, spec, secrets).await;
    if result.is_ok() {
        reuse.give_back(admin, spec, conn).await;
    } else {
        let _ = conn.close().await;
    }
    result
}

/// [`ensure`] over `conn`. Long on purpose: the crash-safe order for all three services (Secret,
/// ownership check, provisioning), then the isolation check, in one pass over one connection.
async fn ensure_on(
    conn: &mut PgConnection,
    client: &kube::Client,
    admin: &AdminConnection,
    spec: &ValidSpec,
    secrets: &mut secrets::ByService,
) -> Result<PostgresObserved, Error> {
    let mut observed = PostgresObserved::default();
    let mut in_conflict = BTreeSet::new();
    for plan in &spec.services {
        let stale = secrets
            .get(&plan.service)
            .map(|secret| stale_location(secret, admin))
            .unwrap_or_default();
        let (secret, created) = match (secrets.get(&plan.service), spec.paused) {
            (Some(_), false) if !stale.is_empty() => {
                let updated = update_location(client, spec, plan, &stale).await?;
                secrets.insert(plan.service, updated.clone());
                (updated, false)
            }
            (Some(secret), _) => (secret.clone(), false),
            (None, true) => continue,
            (None, false) => {
                let created = create_secret(client, spec, plan, admin).await?;
                secrets.insert(plan.service, created.clone());
                (created, true)
            }
        };
        observed
            .secret_hashes
            .insert(plan.service, secrets::hash(&secret));
        let owner = owner_comment(spec);
        let role_comment = role_comment(conn, plan, &plan.db_identifier).await?;
        let schema_comment = schema_comment(conn, plan).await?;
        let taken = match claims(spec, plan, &role_comment, &schema_comment) {
            Ok(taken) => taken,
            Err(conflict) => {
                observed.conflicts.push(conflict);
                in_conflict.insert(plan.service);
                continue;
            }
        };
        if spec.paused {
            continue;
        }
        let password = secret_value(&secret, plan, secret_keys::PASSWORD)?;
        provision(
            conn,
            plan,
            &owner,
            &password,
            role_comment.is_none(),
            schema_comment.is_none(),
            created,
        )
        .await?;
        if let Some(from) = taken {
            record_owner(conn, spec, plan, &owner).await?;
            observed.taken_over.push(format!(
                "Took over the schema and role {} of {from}; the {} service logs in with the password of Secret {}",
                plan.db_identifier,
                plan.service.as_str(),
                plan.secret_name
            ));
        }
    }
    for plan in &spec.services {
        if !observed.secret_hashes.contains_key(&plan.service) || in_conflict.contains(&plan.service) {
            continue;
        }
        let verified = verify_isolation(conn, spec, plan).await?;
        if verified {
            observed.ready.insert(plan.service);
        }
        observed.schemas.push(SchemaStatus {
            service: plan.service.as_str().into(),
            schema: plan.db_identifier.clone(),
            role: plan.db_identifier.clone(),
            secret: plan.secret_name.clone(),
            privileges_verified: verified,
            login: None,
        });
    }
    Ok(observed)
}

/// The ownership comment this resource writes.
pub(super) fn owner_comment(spec: &ValidSpec) -> String {
    names::owner_comment(&spec.namespace, &spec.name, &spec.uid)
}

/// Whether this resource may use the existing role and schema of `plan` (`None`: they do not exist):
/// `Ok(None)` when they are its own or absent, `Ok(Some(from))` when it takes them over from `from`,
/// `Err(message)` when either belongs to someone else.
fn claims(
    spec: &ValidSpec,
    plan: &ServicePlan,
    role: &Option<Option<String>>,
    schema: &Option<Option<String>>,
) -> Result<Option<String>, String> {
    let mut taken = None;
    for (what, comment) in [("role", role), ("schema", schema)] {
        let Some(comment) = comment else { continue };
        match ownership::claim(spec, comment.as_deref()) {
            Claim::Ours => {}
            Claim::Take { from } => taken = Some(from),
            Claim::Foreign { owner } => {
                let object = format!("{what} {}", plan.db_identifier);
                return Err(ownership::conflict_message(spec, &object, &owner));
            }
        }
    }
    Ok(taken)
}

/// Records this resource on the role, the schema and (when it exists and is not someone else's) the
/// alternate login of `plan`, in one transaction: after a take-over.
async fn record_owner(
    conn: &mut PgConnection,
    spec: &ValidSpec,
    plan: &ServicePlan,
    owner: &str,
) -> Result<(), Error> {
    let ident = quote_ident(&plan.db_identifier);
    let mut statements = vec![
        format!("COMMENT ON ROLE {ident} IS {}", literal(owner)),
        format!("COMMENT ON SCHEMA {ident} IS {}", literal(owner)),
    ];
    let alternate = names::alternate_login(&plan.db_identifier);
    if ownership::exists_and_usable(spec, &role_comment(conn, plan, &alternate).await?) {
        let alternate = quote_ident(&alternate);
        statements.push(format!("COMMENT ON ROLE {alternate} IS {}", literal(owner)));
    }
    let service = plan.service.as_str();
    execute_all(conn, statements, |source| Error::Provision {
        what: "ownership record",
        service,
        source,
    })
    .await
}

/// The ownership comment of the login role `role` of `plan`'s service: `None` when there is no such role,
/// `Some(comment)` when there is, with its comment if any.
pub(super) async fn role_comment(
    conn: &mut PgConnection,
    plan: &ServicePlan,
    role: &str,
) -> Result<Option<Option<String>>, Error> {
    let sql = "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = $1";
    comment(conn, sql, role, plan).await
}

/// The ownership comment of the schema of `plan`'s service, as [`role_comment`].
async fn schema_comment(
    conn: &mut PgConnection,
    plan: &ServicePlan,
) -> Result<Option<Option<String>>, Error> {
    let sql = "SELECT obj_description(oid, 'pg_namespace') FROM pg_namespace WHERE nspname = $1";
    comment(conn, sql, &plan.db_identifier, plan).await
}

async fn comment(
    conn: &mut PgConnection,
    sql: &'static str,
    name: &str,
    plan: &ServicePlan,
) -> Result<Option<Option<String>>, Error> {
    sqlx::query_scalar::<_, Option<String>>(sql)
        .bind(name)
        .fetch_optional(&mut *conn)
        .await
        .map_err(|source| Error::Provision {
            what: "ownership lookup",
            service: plan.service.as_str(),
            source,
        })
}

/// Long on purpose: it is the crash-safe order of design.md 3.2 (role with its comment, membership,
/// schema with its comment and grants, search path), best read as one sequence.
async fn provision(
    conn: &mut PgConnection,
    plan: &ServicePlan,
    owner: &str,
    password: &str,
    create_role: bool,
    create_schema: bool,
    secret_created: bool,
) -> Result<(), Error> {
    let service = plan.service.as_str();
    let ident = quote_ident(&plan.db_identifier);
    let err = |what| {
        move |source| Error::Provision {
            what,
            service,
            source,
        }
    };
    // Computed only when a password is set (4096 rounds of PBKDF2): not on every look at rest.
    if create_role {
        let verifier = scram::verifier(password);
        // Role and its ownership comment in one transaction: a crash never leaves an unowned role behind.
        let statements = [
            format!("CREATE ROLE {ident} LOGIN PASSWORD {}", literal(&verifier)),
            format!("COMMENT ON ROLE {ident} IS {}", literal(owner)),
        ];
        execute_all(conn, statements, err("role")).await?;
    } else if secret_created {
        let verifier = scram::verifier(password);
        // The Secret was (re)created after the role: the role must take the Secret's password.
        execute(
            conn,
            format!("ALTER ROLE {ident} LOGIN PASSWORD {}", literal(&verifier)),
            err("role password"),
        )
        .await?;
    }
    // Needed by a non-superuser admin before CREATE SCHEMA ... AUTHORIZATION and DROP OWNED BY. From
    // PostgreSQL 16 on, creating a role makes the creator a member with ADMIN OPTION only: acting as the
    // role (SET, for CREATE SCHEMA ... AUTHORIZATION) and using its privileges (INHERIT, for DROP SCHEMA
    // and DROP OWNED BY) need a grant of their own, which the options say explicitly.
    let (member, sixteen): (bool, bool) = sqlx::query_as(
        "SELECT CASE WHEN current_setting('server_version_num')::int >= 160000 \
           THEN pg_has_role(current_user, $1, 'SET') AND pg_has_role(current_user, $1, 'USAGE') \
           ELSE pg_has_role(current_user, $1, 'MEMBER') END, \
         current_setting('server_version_num')::int >= 160000",
    )
    .bind(&plan.db_identifier)
    .fetch_one(&mut *conn)
    .await
    .map_err(err("membership"))?;
    if !member {
        let options = if sixteen {
            " WITH INHERIT TRUE, SET TRUE"
        } else {
            ""
        };
        execute(
            conn,
            format!("GRANT {ident} TO CURRENT_USER{options}"),
            err("membership"),
        )
        .await?;
    }
    if create_schema {
        let statements = [
            format!("CREATE SCHEMA {ident} AUTHORIZATION {ident}"),
            format!("COMMENT ON SCHEMA {ident} IS {}", literal(owner)),
            format!("REVOKE ALL ON SCHEMA {ident} FROM PUBLIC"),
        ];
        execute_all(conn, statements, err("schema")).await?;
    }
    // Set once: a server logging DDL sees nothing from a reconcile that changed nothing. Identifiers are
    // validated lower-case names, which PostgreSQL records unquoted.
    let search_path_set: bool = sqlx::query_scalar(
        "SELECT coalesce(rolconfig @> ARRAY['search_path=' || rolname::text], false) FROM pg_roles \
         WHERE rolname = $1",
    )
    .bind(&plan.db_identifier)
    .fetch_one(&mut *conn)
    .await
    .map_err(err("search_path"))?;
    if search_path_set {
        return Ok(());
    }
    execute(
        conn,
        format!("ALTER ROLE {ident} SET search_path = {ident}"),
        err("search_path"),
    )
    .await
}

/// `statements` in one transaction: after a crash, all of them happened or none.
pub(super) async fn execute_all(
    conn: &mut PgConnection,
    statements: impl IntoIterator<Item = String>,
    err: impl Fn(sqlx::Error) -> Error,
) -> Result<(), Error> {
    let mut tx = conn.begin().await.map_err(&err)?;
    for sql in statements {
        execute(&mut tx, sql, &err).await?;
    }
    tx.commit().await.map_err(&err)
}

pub(super) async fn execute<F>(conn: &mut PgConnection, sql: String, err: F) -> Result<(), Error>
where
    F: FnOnce(sqlx::Error) -> Error,
{
    // Every statement that writes comes through here, inside a transaction or alone: the one place where
    // a replica whose lease ran out during the step stops (a transaction begun is rolled back on drop).
    if !crate::leader::may_write_here() {
        return Err(Error::NotLeader);
    }
    // Identifiers are validated and quoted, literals escaped: the only dynamic SQL of the operator.
    sqlx::raw_sql(AssertSqlSafe(sql))
        .execute(conn)
        .await
        .map(|_| ())
        .map_err(err)
}

/// A SQL string literal.
pub(super) fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// The role can use and create in its own schema and cannot use any other service's schema.
async fn verify_isolation(
    conn: &mut PgConnection,
    spec: &ValidSpec,
    plan: &ServicePlan,
) -> Result<bool, Error> {
    let service = plan.service.as_str();
    let privilege = |schema: String, privilege: &'static str| {
        sqlx::query_scalar::<_, Option<bool>>(
            "SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $2) \
             THEN has_schema_privilege($1, $2, $3) END",
        )
        .bind(plan.db_identifier.clone())
        .bind(schema)
        .bind(privilege)
    };
    let err = |source| Error::Provision {
        what: "isolation check",
        service,
        source,
    };
    let own_usage = privilege(plan.db_identifier.clone(), "USAGE")
        .fetch_one(&mut *conn)
        .await
        .map_err(err)?;
    let own_create = privilege(plan.db_identifier.clone(), "CREATE")
        .fetch_one(&mut *conn)
        .await
        .map_err(err)?;
    let mut verified = own_usage == Some(true) && own_create == Some(true);
    for other in spec.services.iter().filter(|o| o.service != plan.service) {
        let usage = privilege(other.db_identifier.clone(), "USAGE")
            .fetch_one(&mut *conn)
            .await
            .map_err(err)?;
        verified &= usage != Some(true);
    }
    Ok(verified)
}

/// With `deletionPolicy: Delete`: drops each schema, what the role owns, and the role; only objects this
/// resource may use (`ownership::claim`): its own, and those kept for it under its namespace and name.
pub async fn drop_all(admin: &AdminConnection, spec: &ValidSpec) -> Result<(), Error> {
    let mut conn = connect(admin, spec).await?;
    for plan in &spec.services {
        let ident = quote_ident(&plan.db_identifier);
        let name = plan.db_identifier.clone();
        let drop_err = |what| {
            let name = name.clone();
            move |source| Error::Drop { what, name, source }
        };
        if ownership::exists_and_usable(spec, &schema_comment(&mut conn, plan).await?) {
            execute(
                &mut conn,
                format!("DROP SCHEMA {ident} CASCADE"),
                drop_err("schema"),
            )
            .await?;
        }
        if ownership::exists_and_usable(spec, &role_comment(&mut conn, plan, &plan.db_identifier).await?) {
            execute(
                &mut conn,
                format!("DROP OWNED BY {ident}"),
                drop_err("objects owned by"),
            )
            .await?;
            execute(&mut conn, format!("DROP ROLE {ident}"), drop_err("role")).await?;
        }
    }
    let _ = conn.close().await;
    Ok(())
}
