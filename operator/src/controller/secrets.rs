//! The services' own Secrets: each service's database Secret `<name>-<service>-db` and, with SASL, its
//! Kafka identity Secret `<name>-<service>-kafka`. `observe` reads them once; the writers create the
//! missing ones (`postgres`, `kafka::identities`) with the same labels, owner and field manager, and never
//! regenerate one that exists.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use rand::RngExt;

use super::validate::{ServicePlan, ValidSpec};
use crate::names::{self, Service};

/// Generated passwords: 32 alphanumerics, about 190 bits, and nothing that needs quoting anywhere.
const PASSWORD_LEN: usize = 32;

/// A service's Secrets as they were read, by service; a Secret that does not exist is absent.
pub type ByService = BTreeMap<Service, Secret>;

/// A Secret that could not be read.
#[derive(Debug)]
pub struct ReadError {
    pub name: String,
    pub source: kube::Error,
}

/// Each service's Secret that `name_of` names, as far as it exists.
pub async fn read(
    client: &kube::Client,
    spec: &ValidSpec,
    name_of: fn(&ServicePlan) -> &str,
) -> Result<ByService, ReadError> {
    let api = Api::<Secret>::namespaced(client.clone(), &spec.namespace);
    let mut found = ByService::new();
    for plan in &spec.services {
        let name = name_of(plan);
        let secret = api.get_opt(name).await.map_err(|source| ReadError {
            name: name.to_string(),
            source,
        })?;
        if let Some(secret) = secret {
            found.insert(plan.service, secret);
        }
    }
    Ok(found)
}

/// The Secret `name` of `namespace`, read by name (never from a cache of all Secrets).
pub async fn get(client: &kube::Client, namespace: &str, name: &str) -> Result<Secret, kube::Error> {
    Api::<Secret>::namespaced(client.clone(), namespace)
        .get(name)
        .await
}

/// A new random password.
pub fn generate_password() -> String {
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(PASSWORD_LEN)
        .map(char::from)
        .collect()
}

/// Creates the Secret `name` of `plan`'s service with `data`, labelled as the service's and owned by the
/// resource. When another reconcile created it first, theirs wins and is returned.
pub async fn create(
    client: &kube::Client,
    spec: &ValidSpec,
    plan: &ServicePlan,
    name: &str,
    data: BTreeMap<&str, String>,
) -> Result<Secret, kube::Error> {
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(spec.namespace.clone()),
            labels: Some(names::labels(&spec.name, plan.service)),
            owner_references: Some(vec![spec.owner.clone()]),
            ..Default::default()
        },
        data: Some(
            data.into_iter()
                .map(|(key, value)| (key.to_string(), ByteString(value.into_bytes())))
                .collect(),
        ),
        type_: Some("Opaque".into()),
        ..Default::default()
    };
    let api = Api::<Secret>::namespaced(client.clone(), &spec.namespace);
    let params = PostParams {
        field_manager: Some(names::FIELD_MANAGER.into()),
        ..Default::default()
    };
    match api.create(&params, &secret).await {
        Err(kube::Error::Api(status)) if status.code == 409 => api.get(name).await,
        result => result,
    }
}

/// The text under `key`, when it is there and UTF-8.
pub fn text(secret: &Secret, key: &str) -> Option<String> {
    let value = secret.data.as_ref()?.get(key)?;
    String::from_utf8(value.0.clone()).ok()
}

/// Hash of a Secret's data, for the pod-template annotation: a changed Secret rolls the service's pods.
pub fn hash(secret: &Secret) -> String {
    let mut bytes = Vec::new();
    for (key, value) in secret.data.iter().flatten() {
        bytes.extend_from_slice(key.as_bytes());
        bytes.push(0);
        bytes.extend_from_slice(&value.0);
        bytes.push(0);
    }
    names::hash_hex(&bytes)
}
