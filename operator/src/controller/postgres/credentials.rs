//! Credentials: the admin connection read from the Secret the spec names (by name, never from a cache of
//! all Secrets), and each service's Secret, created once with a generated password and never
//! regenerated. Passwords never reach logs: `AdminConnection`'s `Debug` leaves it out.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use ordersystem_contract::wiring::secret_keys;
use rand::RngExt;

use super::Error;
use crate::controller::validate::{ServicePlan, ValidSpec};
use crate::crd::CA_CERT_KEY;
use crate::names;

/// Generated passwords: 32 alphanumerics, about 190 bits, and nothing that needs quoting anywhere.
const PASSWORD_LEN: usize = 32;

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
    let secret = Api::<Secret>::namespaced(client.clone(), namespace)
        .get(name)
        .await
        .map_err(|source| Error::ReadAdminSecret {
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

/// A new random password.
pub fn generate_password() -> String {
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(PASSWORD_LEN)
        .map(char::from)
        .collect()
}

/// The admin connection and, when the spec names one, the server's CA certificate.
pub async fn read_connection(client: &kube::Client, spec: &ValidSpec) -> Result<AdminConnection, Error> {
    let mut admin = read_admin(client, &spec.namespace, &spec.admin_secret).await?;
    if let Some(name) = &spec.postgres_ca_secret {
        let secret = Api::<Secret>::namespaced(client.clone(), &spec.namespace)
            .get(name)
            .await
            .map_err(|source| Error::ReadCaSecret {
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

/// Creates the service's Secret with a generated password if it does not exist; returns its data and
/// whether it was created now. An existing Secret is never regenerated.
pub(super) async fn ensure_secret(
    client: &kube::Client,
    spec: &ValidSpec,
    plan: &ServicePlan,
    admin: &AdminConnection,
) -> Result<(BTreeMap<String, ByteString>, bool), Error> {
    if let Some(existing) = read_secret(client, spec, plan).await? {
        return Ok(existing);
    }
    let password = generate_password();
    let data: BTreeMap<String, ByteString> = [
        (secret_keys::HOST, admin.host.clone()),
        (secret_keys::PORT, admin.port.to_string()),
        (secret_keys::DBNAME, admin.dbname.clone()),
        (secret_keys::USERNAME, plan.db_identifier.clone()),
        (secret_keys::PASSWORD, password),
        (secret_keys::SCHEMA, plan.db_identifier.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), ByteString(v.into_bytes())))
    .collect();
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(plan.secret_name.clone()),
            namespace: Some(spec.namespace.clone()),
            labels: Some(names::labels(&spec.name, plan.service)),
            owner_references: Some(vec![spec.owner.clone()]),
            ..Default::default()
        },
        data: Some(data.clone()),
        type_: Some("Opaque".into()),
        ..Default::default()
    };
    let api = Api::<Secret>::namespaced(client.clone(), &spec.namespace);
    let params = PostParams {
        field_manager: Some(names::FIELD_MANAGER.into()),
        ..Default::default()
    };
    match api.create(&params, &secret).await {
        Ok(_) => Ok((data, true)),
        // Lost a race with another reconcile: the other one's Secret wins.
        Err(kube::Error::Api(status)) if status.code == 409 => read_secret(client, spec, plan)
            .await?
            .ok_or_else(|| Error::ServiceSecretKey {
                name: plan.secret_name.clone(),
                key: secret_keys::PASSWORD,
            }),
        Err(source) => Err(Error::ServiceSecret {
            name: plan.secret_name.clone(),
            source,
        }),
    }
}

pub(super) async fn read_secret(
    client: &kube::Client,
    spec: &ValidSpec,
    plan: &ServicePlan,
) -> Result<Option<(BTreeMap<String, ByteString>, bool)>, Error> {
    let api = Api::<Secret>::namespaced(client.clone(), &spec.namespace);
    let secret = api
        .get_opt(&plan.secret_name)
        .await
        .map_err(|source| Error::ServiceSecret {
            name: plan.secret_name.clone(),
            source,
        })?;
    Ok(secret.map(|s| (s.data.unwrap_or_default(), false)))
}

pub(super) fn secret_value(
    data: &BTreeMap<String, ByteString>,
    plan: &ServicePlan,
    key: &'static str,
) -> Result<String, Error> {
    data.get(key)
        .and_then(|v| String::from_utf8(v.0.clone()).ok())
        .ok_or_else(|| Error::ServiceSecretKey {
            name: plan.secret_name.clone(),
            key,
        })
}

/// Hash of a Secret's data, for the pod-template annotation.
pub fn secret_hash(data: &BTreeMap<String, ByteString>) -> String {
    let mut bytes = Vec::new();
    for (key, value) in data {
        bytes.extend_from_slice(key.as_bytes());
        bytes.push(0);
        bytes.extend_from_slice(&value.0);
        bytes.push(0);
    }
    names::hash_hex(&bytes)
}
