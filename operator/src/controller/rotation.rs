//! rotation: `ordersystem.io/rotate-credentials: <service>` gives one service new database credentials
//! without a single failed connection, and rolls exactly that service's Deployment.
//!
//! Why two login roles and not one role with a new password: Postgres keeps one password per role, and it
//! is checked only when a connection opens. Changing it would make every pod still running with the old
//! Secret fail its next connection (pool growth, reconnect) until the rollout replaced it. So each
//! service has two logins that take turns: the schema-owning role `<id>` and `<id>_b`, a member of it
//! whose sessions run as the owner (`ALTER ROLE … SET role`), so tables created through either login
//! belong to the owner and stay reachable from both.
//!
//! The steps, each decided anew from what Postgres and the API server report (the Secret's
//! `ordersystem.io/retire-login` annotation marks a rotation under way, so a crash at any point resumes):
//! 1. the login not in the Secret gets a new password (created if needed) and may log in;
//! 2. the Secret switches to it, marked with the old login; its new hash rolls only that Deployment;
//! 3. once every pod of the Deployment runs with that Secret: the request annotation is removed, the old
//!    login is disabled (`NOLOGIN`, no password), the mark is removed.
//!
//! Outside a rotation the login not in the Secret is kept disabled, so a Secret that was deleted and
//! recreated never leaves the other login usable.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::EventType;
use ordersystem_contract::wiring::secret_keys;
use serde_json::json;
use sqlx::PgConnection;

use super::build::Observed;
use super::context::Context;
use super::postgres::{self, execute, execute_all, literal, ownership};
use super::secrets;
use super::validate::{ServicePlan, ValidSpec};
use crate::crd::{OrderSystem, SchemaStatus};
use crate::names::{self, Service, quote_ident};

/// The action of the rotation's Events.
const ROTATE: &str = "RotateCredentials";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Postgres(#[from] postgres::Error),
    #[error("failed to read or change Secret {name}")]
    Secret {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("failed to remove the annotation {annotation}")]
    Acknowledge {
        annotation: &'static str,
        #[source]
        source: kube::Error,
    },
    #[error("login role {login} exists and belongs to another resource")]
    ForeignLogin { login: String },
}

/// Where a rotation stands, for the `Progressing` condition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RotationReport {
    /// Rotations waiting for their rollout.
    pub in_progress: Vec<String>,
    /// An annotation naming no service.
    pub invalid_request: Option<String>,
    /// The login each service's Secret names after this step.
    pub logins: BTreeMap<Service, String>,
}

impl RotationReport {
    /// Records the current logins in the schema entries of the status.
    pub fn record_logins(&self, schemas: &mut [SchemaStatus]) {
        for schema in schemas {
            if let Some((_, login)) = self.logins.iter().find(|(s, _)| s.as_str() == schema.service) {
                schema.login = Some(login.clone());
            }
        }
    }
}

/// Advances every service's rotation one step, from the services' database Secrets as this reconcile read
/// or created them. Updates `observed.secret_hashes` when a Secret changed, so this reconcile already
/// rolls the Deployment.
/// Long on purpose: the loop over the services picks each one's step; the steps are functions of their own.
#[tracing::instrument(name = "rotation", skip_all)]
pub async fn step(
    ctx: &Context,
    os: &OrderSystem,
    spec: &ValidSpec,
    admin: &postgres::AdminConnection,
    database_secrets: &secrets::ByService,
    deployments: &[Deployment],
    observed: &mut Observed,
) -> Result<RotationReport, Error> {
    let requested = os.annotations().get(names::ROTATE_CREDENTIALS_ANNOTATION);
    let mut report = RotationReport {
        invalid_request: requested.and_then(|value| invalid_request(value)),
        ..RotationReport::default()
    };
    if observed.schemas_ready.is_empty() {
        return Ok(report);
    }
    // A connection kept from an earlier look when there is one (`postgres::reuse`): at rest each look
    // checks the alternate logins, and a new login for that was most of a look's time.
    let mut conn = ctx.postgres.take(admin, spec).await?;
    let secret_api: Api<Secret> = Api::namespaced(ctx.client.clone(), &spec.namespace);
    for plan in &spec.services {
        // Only services whose schema and role are ours and ready; conflicts are reported elsewhere.
        if !observed.schemas_ready.contains(&plan.service) {
            continue;
        }
        let Some(secret) = database_secrets.get(&plan.service) else {
            continue;
        };
        let logins = Logins::of(plan, secret);
        let turn = Turn {
            ctx,
            os,
            secret_api: &secret_api,
            plan,
            logins: &logins,
        };
        let retiring = secret.annotations().get(names::RETIRE_LOGIN_ANNOTATION).cloned();
        report.logins.insert(plan.service, logins.current.clone());
        let deployment = deployments.iter().find(|d| d.name_any() == plan.child_name);
        match retiring {
            Some(old) if rolled_out(deployment, secret) => {
                turn.finish(&mut conn, &old, requested).await?;
            }
            Some(old) => report.in_progress.push(format!(
                "{}: Secret {} switched to login {}; {old} stays enabled until every pod of {} runs with it",
                plan.service.as_str(),
                plan.secret_name,
                logins.current,
                plan.child_name
            )),
            None if requested.map(String::as_str) == Some(plan.service.as_str()) => {
                let hash = turn.start(&mut conn, spec).await?;
                observed.secret_hashes.insert(plan.service, hash);
                report.logins.insert(plan.service, logins.other.clone());
                report.in_progress.push(format!(
                    "{}: Secret {} switched to login {}; rolling {}",
                    plan.service.as_str(),
                    plan.secret_name,
                    logins.other,
                    plan.child_name
                ));
            }
            None => {
                check_owned(&mut conn, spec, plan, &logins.alternate).await?;
                disable_login(&mut conn, plan, &logins.other).await?;
            }
        }
    }
    ctx.postgres.give_back(admin, spec, conn).await;
    Ok(report)
}

/// The `Degraded` message for a request that names no service.
fn invalid_request(value: &str) -> Option<String> {
    (!Service::ALL.iter().any(|s| s.as_str() == value)).then(|| {
        format!(
            "{}={value:?} names no service (order, invoicing or shipping)",
            names::ROTATE_CREDENTIALS_ANNOTATION
        )
    })
}

/// A service's two logins: the one its Secret names now, and the other one.
struct Logins {
    current: String,
    other: String,
    /// `<id>_b`, the login that is not the schema owner.
    alternate: String,
}

impl Logins {
    fn of(plan: &ServicePlan, secret: &Secret) -> Self {
        let current =
            secrets::text(secret, secret_keys::USERNAME).unwrap_or_else(|| plan.db_identifier.clone());
        let alternate = names::alternate_login(&plan.db_identifier);
        let other = if current == alternate {
            plan.db_identifier.clone()
        } else {
            alternate.clone()
        };
        Self {
            current,
            other,
            alternate,
        }
    }
}

/// One service's rotation step in one reconcile: what `start` and `finish` act on.
struct Turn<'a> {
    ctx: &'a Context,
    os: &'a OrderSystem,
    secret_api: &'a Api<Secret>,
    plan: &'a ServicePlan,
    logins: &'a Logins,
}

impl Turn<'_> {
    /// Steps 1 and 2: the other login gets a new password and may log in, then the Secret switches to
    /// it, marked with the login to retire. Returns the Secret's new hash, which rolls the Deployment.
    async fn start(&self, conn: &mut PgConnection, spec: &ValidSpec) -> Result<String, Error> {
        let (plan, logins) = (self.plan, self.logins);
        check_owned(conn, spec, plan, &logins.alternate).await?;
        let password = secrets::generate_password();
        let owner = postgres::owner_comment(spec);
        enable_login(conn, plan, &logins.other, &password, &owner).await?;
        let patch = json!({
            "metadata": {"annotations": {(names::RETIRE_LOGIN_ANNOTATION): logins.current}},
            "stringData": {(secret_keys::USERNAME): logins.other, (secret_keys::PASSWORD): password},
        });
        let updated = self.patch_secret(&patch).await?;
        let note = format!(
            "{}: new credentials for login {} in Secret {}; {} is disabled after the rollout",
            plan.service.as_str(),
            logins.other,
            plan.secret_name,
            logins.current
        );
        self.ctx
            .event(self.os, EventType::Normal, "CredentialsRotating", ROTATE, note)
            .await;
        Ok(secrets::hash(&updated))
    }

    /// Step 3: acknowledge the request, disable the old login, clear the mark (in this order, so a
    /// crash in between never starts a second rotation).
    async fn finish(
        &self,
        conn: &mut PgConnection,
        old: &str,
        requested: Option<&String>,
    ) -> Result<(), Error> {
        let (os, plan) = (self.os, self.plan);
        if requested.map(String::as_str) == Some(plan.service.as_str()) {
            let api: Api<OrderSystem> =
                Api::namespaced(self.ctx.client.clone(), &os.namespace().unwrap_or_default());
            let patch = json!({"metadata": {"annotations": {(names::ROTATE_CREDENTIALS_ANNOTATION): null}}});
            api.patch(&os.name_any(), &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(|source| Error::Acknowledge {
                    annotation: names::ROTATE_CREDENTIALS_ANNOTATION,
                    source,
                })?;
        }
        // Only our two logins are ever disabled here.
        if old == plan.db_identifier || old == names::alternate_login(&plan.db_identifier) {
            disable_login(conn, plan, old).await?;
        }
        let patch = json!({"metadata": {"annotations": {(names::RETIRE_LOGIN_ANNOTATION): null}}});
        self.patch_secret(&patch).await?;
        let note = format!(
            "{}: every pod logs in as {}; login {old} is disabled",
            plan.service.as_str(),
            self.logins.current
        );
        self.ctx
            .event(os, EventType::Normal, "CredentialsRotated", ROTATE, note)
            .await;
        Ok(())
    }

    /// Merges `patch` into the service's database Secret.
    async fn patch_secret(&self, patch: &serde_json::Value) -> Result<Secret, Error> {
        let name = &self.plan.secret_name;
        self.secret_api
            .patch(name, &PatchParams::default(), &Patch::Merge(patch))
            .await
            .map_err(|source| Error::Secret {
                name: name.clone(),
                source,
            })
    }
}

/// The alternate login, when it exists, must be this resource's to use (`ownership::claim`).
async fn check_owned(
    conn: &mut PgConnection,
    spec: &ValidSpec,
    plan: &ServicePlan,
    alternate: &str,
) -> Result<(), Error> {
    match postgres::role_comment(conn, plan, alternate).await? {
        Some(found) if ownership::claim(spec, found.as_deref()).is_foreign() => Err(Error::ForeignLogin {
            login: alternate.to_string(),
        }),
        _ => Ok(()),
    }
}

fn sql_error(what: &'static str, plan: &ServicePlan) -> impl Fn(sqlx::Error) -> postgres::Error {
    let service = plan.service.as_str();
    move |source| postgres::Error::Provision {
        what,
        service,
        source,
    }
}

/// Lets `login` log in with `password` (a SCRAM verifier, never the plaintext, reaches the server);
/// creates the alternate login as a member of the owner whose sessions act as the owner.
async fn enable_login(
    conn: &mut PgConnection,
    plan: &ServicePlan,
    login: &str,
    password: &str,
    owner: &str,
) -> Result<(), Error> {
    let (ident, owner_role) = (quote_ident(login), quote_ident(&plan.db_identifier));
    let verifier = literal(&postgres::scram::verifier(password));
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)")
        .bind(login)
        .fetch_one(&mut *conn)
        .await
        .map_err(sql_error("login lookup", plan))?;
    if exists {
        let sql = format!("ALTER ROLE {ident} LOGIN PASSWORD {verifier}");
        execute(conn, sql, sql_error("login password", plan)).await?;
    } else {
        let statements = [
            format!("CREATE ROLE {ident} LOGIN PASSWORD {verifier} IN ROLE {owner_role}"),
            format!("COMMENT ON ROLE {ident} IS {}", literal(owner)),
        ];
        execute_all(conn, statements, sql_error("login", plan)).await?;
    }
    if login != plan.db_identifier {
        let owner_literal = literal(&plan.db_identifier);
        let sql = format!("ALTER ROLE {ident} SET role = {owner_literal}");
        execute(conn, sql, sql_error("login role", plan)).await?;
        let sql = format!("ALTER ROLE {ident} SET search_path = {owner_role}");
        execute(conn, sql, sql_error("login search_path", plan)).await?;
    }
    Ok(())
}

/// `login` can no longer open connections (open ones end with their pods).
async fn disable_login(conn: &mut PgConnection, plan: &ServicePlan, login: &str) -> Result<(), Error> {
    let can_login: Option<bool> = sqlx::query_scalar("SELECT rolcanlogin FROM pg_roles WHERE rolname = $1")
        .bind(login)
        .fetch_optional(&mut *conn)
        .await
        .map_err(sql_error("login lookup", plan))?;
    if can_login == Some(true) {
        let sql = format!("ALTER ROLE {} NOLOGIN PASSWORD NULL", quote_ident(login));
        execute(conn, sql, sql_error("disable login", plan)).await?;
    }
    Ok(())
}

/// Every pod of the service's Deployment (as observed at the start of the reconcile) runs with the
/// Secret as it is now: the template carries its hash, the Deployment controller caught up, and no pod
/// of an older template is left.
fn rolled_out(deployment: Option<&Deployment>, secret: &Secret) -> bool {
    let Some((dspec, status)) = deployment.and_then(|d| Some((d.spec.as_ref()?, d.status.as_ref()?))) else {
        return false;
    };
    let template_hash = dspec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.as_ref())
        .and_then(|a| a.get(names::SECRET_HASH_ANNOTATION));
    if template_hash != Some(&secrets::hash(secret)) {
        return false;
    }
    let want = dspec.replicas.unwrap_or(1);
    let caught_up = status.observed_generation >= deployment.and_then(|d| d.metadata.generation);
    let updated = status.updated_replicas.unwrap_or(0);
    let ready = status.ready_replicas.unwrap_or(0);
    let total = status.replicas.unwrap_or(0);
    caught_up && updated >= want && ready >= want && total <= updated
}

/// With `deletionPolicy: Delete`, after the schemas and owner roles are gone: the alternate logins this
/// resource created (they own nothing: their sessions act as the owner).
pub async fn drop_alternates(admin: &postgres::AdminConnection, spec: &ValidSpec) -> Result<(), Error> {
    let mut conn = postgres::connect(admin, spec).await?;
    for plan in &spec.services {
        let alternate = names::alternate_login(&plan.db_identifier);
        let found = postgres::role_comment(&mut conn, plan, &alternate).await?;
        if ownership::exists_and_usable(spec, &found) {
            let sql = format!("DROP ROLE {}", quote_ident(&alternate));
            execute(&mut conn, sql, sql_error("drop login", plan)).await?;
        }
    }
    let _ = sqlx::Connection::close(conn).await;
    Ok(())
}
