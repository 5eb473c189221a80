//! Credentials: the admin connection read from the Secret the spec names (by name, never from a cache of
//! all Secrets), and each service's Secret, created once with a generated password and never
//! regenerated; its host, port and database follow the admin Secret's. Passwords never reach logs:
//! `AdminConnection`'s `Debug` leaves it out.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use ordersystem_contract::wiring::secret_keys;

use super::Error;
use crate::controller::secrets;
use crate::controller::validate::{ServicePlan, ValidSpec};
use crate::crd::CA_CERT_KEY;

/// The admin connection, from the Secret named in the spec.
#[derive(Clone)]
pub struct AdminConnection {
    pub host: String,
    pub port: u16,
    pub dbname: String,
    pub username: String,
    pub(super) password: String,
    /// CA certificate (PEM) the server's certificate must chain to, from the spec's `caSecretRef`.
    pub(super) ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for AdminConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}:{}/{}", self.username, self.host, self.port, self.dbname)
    }
}

/// Reads the admin Secret by name (never a cached list of all Secrets). CloudNativePG's `user` and
/// `dbname`, and `database`, are accepted besides `username` and `dbname`.
pub async fn read_admin(
    client: &kube::Client,
    namespace: &str,
    name: &str,
) -> Result<AdminConnection, Error> {
    let secret = secrets::get(client, namespace, name).await;
    let secret = secret.map_err(|source| Error::ReadAdminSecret {
        name: name.to_string(),
        source,
    })?;
    admin_from_secret(name, &secret)
}

pub fn admin_from_secret(name: &str, secret: &Secret) -> Result<AdminConnection, Error> {
    let data = secret.data.clone().unwrap_or_default();
    let get = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| data.get(*k))
            .and_then(|v| String::from_utf8(v.0.clone()).ok())
    };
    let missing = |key| Error::AdminSecretKey {
        name: name.to_string(),
        key,
    };
    let port = match get(&[secret_keys::PORT]) {
        None => 5432,
        Some(port) => port.trim().parse().map_err(|_| missing(secret_keys::PORT))?,
    };
    Ok(AdminConnection {
        host: get(&[secret_keys::HOST]).ok_or_else(|| missing(secret_keys::HOST))?,
        port,
        dbname: get(&[secret_keys::DBNAME, "database"]).ok_or_else(|| missing(secret_keys::DBNAME))?,
        username: get(&[secret_keys::USERNAME, "user"]).ok_or_else(|| missing(secret_keys::USERNAME))?,
        password: get(&[secret_keys::PASSWORD]).ok_or_else(|| missing(secret_keys::PASSWORD))?,
        ca_pem: None,
    })
}

/// The admin connection and, when the spec names one, the server's CA certificate.
pub async fn read_connection(client: &kube::Client, spec: &ValidSpec) -> Result<AdminConnection, Error> {
    let mut admin = read_admin(client, &spec.namespace, &spec.admin_secret).await?;
    if let Some(name) = &spec.postgres_ca_secret {
        let secret = secrets::get(client, &spec.namespace, name).await;
        let secret = secret.map_err(|source| Error::ReadCaSecret {
            name: name.clone(),
            source,
        })?;
        let pem = secret
            .data
            .unwrap_or_default()
            .remove(CA_CERT_KEY)
            .filter(|v| !v.0.is_empty())
            .ok_or_else(|| Error::CaSecretKey { name: name.clone() })?;
        admin.ca_pem = Some(pem.0);
    }
    Ok(admin)
}

/// Creates the service's Secret with a generated password; only when it does not exist: an existing
/// Secret is never regenerated.
pub(super) async fn create_secret(
    client: &kube::Client,
    spec: &ValidSpec,
    plan: &ServicePlan,
    admin: &AdminConnection,
) -> Result<Secret, Error> {
    let mut data = BTreeMap::from(location(admin));
    data.extend([
        (secret_keys::USERNAME, plan.db_identifier.clone()),
        (secret_keys::PASSWORD, secrets::generate_password()),
        (secret_keys::SCHEMA, plan.db_identifier.clone()),
    ]);
    secrets::create(client, spec, plan, &plan.secret_name, data)
        .await
        .map_err(|source| Error::ServiceSecret {
            name: plan.secret_name.clone(),
            source,
        })
}

/// The keys of a service's Secret that say where the database is, as the admin Secret says now.
fn location(admin: &AdminConnection) -> [(&'static str, String); 3] {
    [
        (secret_keys::HOST, admin.host.clone()),
        (secret_keys::PORT, admin.port.to_string()),
        (secret_keys::DBNAME, admin.dbname.clone()),
    ]
}

/// The location keys of `secret` that differ from the admin Secret's: the admin Secret is the source of
/// truth for where the database is, the service's Secret a copy of it.
pub(super) fn stale_location(secret: &Secret, admin: &AdminConnection) -> BTreeMap<&'static str, String> {
    location(admin)
        .into_iter()
        .filter(|(key, value)| secrets::text(secret, key).as_ref() != Some(value))
        .collect()
}

/// Writes the admin Secret's host, port and database into the service's Secret; its new hash then rolls
/// the service. The Secret as the API server answered.
pub(super) async fn update_location(
    client: &kube::Client,
    spec: &ValidSpec,
    plan: &ServicePlan,
    stale: &BTreeMap<&'static str, String>,
) -> Result<Secret, Error> {
    let api: Api<Secret> = Api::namespaced(client.clone(), &spec.namespace);
    let patch = serde_json::json!({ "stringData": stale });
    api.patch(&plan.secret_name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(|source| Error::ServiceSecret {
            name: plan.secret_name.clone(),
            source,
        })
}

pub(super) fn secret_value(secret: &Secret, plan: &ServicePlan, key: &'static str) -> Result<String, Error> {
    secrets::text(secret, key).ok_or_else(|| Error::ServiceSecretKey {
        name: plan.secret_name.clone(),
        key,
    })
}
