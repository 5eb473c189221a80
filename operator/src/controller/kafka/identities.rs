//! Least privilege in Kafka: with a SCRAM mechanism every service gets its own user, its credentials in
//! the Secret `<name>-<service>-kafka` (created once with a generated password, never regenerated), and
//! ACLs for exactly its job: order may write the topic; invoicing and shipping may read it and use their
//! own consumer group. Anything else is denied by the broker's authorizer.
//!
//! Every reconcile looks at each user first and applies its credential only when the user lacks it or
//! the password in the Secret is not the one applied last (a hash of it is kept in an annotation of the
//! Secret): a user removed by someone else, or a password edited by hand, is applied again, and nothing
//! else is. ACLs are re-created every time (CreateAcls is idempotent). With `deletionPolicy: Delete` the
//! users and exactly these ACLs are removed with the resource.
//!
//! Writing needs no IDEMPOTENT_WRITE on the cluster for the idempotent producer: since Kafka 3.0 (KIP-679)
//! WRITE on a topic implies it. READ and WRITE imply DESCRIBE on the topic.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use ordersystem_contract::wiring::secret_keys;

use ordersystem_kafka_admin as kafka_admin;
pub use ordersystem_kafka_admin::{Acl, AclOperation, AclResource, ScramMechanism};

use super::{Admin, Error};
use crate::controller::secrets;
use crate::controller::validate::{ServicePlan, ValidSpec};
use crate::crd::SaslMechanism;
use crate::metrics::Metrics;
use crate::names::{self, Service};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// The ACLs of one service.
pub fn acls(spec: &ValidSpec, plan: &ServicePlan) -> Vec<Acl> {
    let principal = format!("User:{}", plan.kafka_user);
    let acl = |resource, operation| Acl {
        resource,
        principal: principal.clone(),
        operation,
    };
    let topic = || AclResource::Topic(spec.topic.name.clone());
    match &plan.group_id {
        None => vec![acl(topic(), AclOperation::Write)],
        Some(group) => vec![
            acl(topic(), AclOperation::Read),
            acl(AclResource::Group(group.clone()), AclOperation::Read),
        ],
    }
}

/// A service's Kafka identity as its Secret `<name>-<service>-kafka` holds it.
pub struct Identity {
    pub service: Service,
    /// Hash of the Secret's data, for the pod template: a changed Secret rolls that service's pods.
    pub secret_hash: String,
    user: String,
    /// Empty when nothing is to be applied (PLAIN, or paused).
    password: String,
    secret_name: String,
    /// [`applied_marker`] of the credential last applied to the broker, from the Secret's annotation.
    applied: Option<String>,
}

/// Each service's identity Secret that exists; none without SASL.
pub async fn read_secrets(client: &kube::Client, spec: &ValidSpec) -> Result<secrets::ByService, Error> {
    if spec.kafka_security.sasl.is_none() {
        return Ok(secrets::ByService::new());
    }
    let read = secrets::read(client, spec, |plan| &plan.kafka_secret_name).await;
    read.map_err(|secrets::ReadError { name, source }| Error::ReadSecret { name, source })
}

/// The services' identities, with SASL, from `existing` (their Secrets as `read_secrets` found them):
/// when the operator makes the SCRAM users a missing Secret is created with a generated password (unless
/// paused); with provided credentials (PLAIN, or `serviceCredentials: Provided`) the user provides them,
/// and a missing one is left out.
pub async fn identities(
    client: &kube::Client,
    spec: &ValidSpec,
    existing: &secrets::ByService,
) -> Result<Vec<Identity>, Error> {
    if spec.kafka_security.sasl.is_none() {
        return Ok(Vec::new());
    }
    let create = spec.kafka_security.scram().is_some() && !spec.paused;
    let mut identities = Vec::new();
    for plan in &spec.services {
        let secret = match existing.get(&plan.service) {
            Some(secret) => secret.clone(),
            None if create => create_secret(client, spec, plan).await?,
            None => continue,
        };
        identities.push(identity(&secret, plan, create)?);
    }
    Ok(identities)
}

fn scram_mechanism(mechanism: SaslMechanism) -> ScramMechanism {
    match mechanism {
        SaslMechanism::ScramSha256 => ScramMechanism::Sha256,
        SaslMechanism::ScramSha512 | SaslMechanism::Plain => ScramMechanism::Sha512,
    }
}

/// Brings each service's SCRAM user and ACLs in line with its Secret: the credential is applied when
/// the user lacks it or the Secret's password changed since it was last applied; a credential of
/// another mechanism (left from a former spec) is deleted.
pub async fn ensure(
    client: &kube::Client,
    admin: &Arc<Admin>,
    spec: &ValidSpec,
    mechanism: SaslMechanism,
    identities: &[Identity],
    metrics: &Metrics,
) -> Result<(), Error> {
    let mechanism = scram_mechanism(mechanism);
    for identity in identities {
        let plan = spec.plan(identity.service);
        let marker = applied_marker(mechanism, &identity.user, &identity.password);
        let present = scram_mechanisms(admin, &identity.user).await?;
        if present.contains(&mechanism) && identity.applied.as_deref() == Some(marker.as_str()) {
            metrics.kafka_identity_checks.inc();
        } else {
            let (user, password) = (identity.user.clone(), identity.password.clone());
            blocking(admin, move |admin| {
                kafka_admin::upsert_scram_user(admin, &user, mechanism, &password, REQUEST_TIMEOUT)
            })
            .await?
            .map_err(|source| Error::ScramUser {
                user: identity.user.clone(),
                source,
            })?;
            record_applied(client, spec, identity, &marker).await?;
            metrics.count_kafka_identity_change("user_applied");
        }
        let stale: Vec<ScramMechanism> = present.into_iter().filter(|m| *m != mechanism).collect();
        if !stale.is_empty() {
            delete_credentials(admin, &identity.user, stale, metrics).await?;
        }
        let acls = acls(spec, plan);
        let principal = acls.first().map(|a| a.principal.clone()).unwrap_or_default();
        blocking(admin, move |admin| {
            kafka_admin::create_acls(admin, &acls, REQUEST_TIMEOUT)
        })
        .await?
        .map_err(|source| Error::Acls { principal, source })?;
    }
    Ok(())
}

/// Removes each service's SCRAM credentials (of any mechanism: the user name is this resource's own)
/// and exactly the ACLs [`acls`] grants. Idempotent: what is already gone is skipped.
pub async fn delete(admin: &Arc<Admin>, spec: &ValidSpec, metrics: &Metrics) -> Result<(), Error> {
    for plan in &spec.services {
        let present = scram_mechanisms(admin, &plan.kafka_user).await?;
        if !present.is_empty() {
            delete_credentials(admin, &plan.kafka_user, present, metrics).await?;
        }
        let acls = acls(spec, plan);
        let principal = acls.first().map(|a| a.principal.clone()).unwrap_or_default();
        let removed = blocking(admin, move |admin| {
            kafka_admin::delete_acls(admin, &acls, REQUEST_TIMEOUT)
        })
        .await?
        .map_err(|source| Error::Acls { principal, source })?;
        for _ in 0..removed {
            metrics.count_kafka_identity_change("acl_deleted");
        }
    }
    Ok(())
}

/// The SCRAM mechanisms `user` has a credential for on the broker.
pub async fn scram_mechanisms(admin: &Arc<Admin>, user: &str) -> Result<Vec<ScramMechanism>, Error> {
    let name = user.to_string();
    blocking(admin, move |admin| {
        kafka_admin::describe_scram_user(admin, &name, REQUEST_TIMEOUT)
    })
    .await?
    .map_err(|source| Error::ScramUser {
        user: user.to_string(),
        source,
    })
}

/// Deletes `user`'s credentials for `mechanisms` (as someone other than the operator might).
pub async fn delete_scram_user(
    admin: &Arc<Admin>,
    user: &str,
    mechanisms: Vec<ScramMechanism>,
) -> Result<(), Error> {
    let name = user.to_string();
    blocking(admin, move |admin| {
        kafka_admin::delete_scram_credentials(admin, &name, &mechanisms, REQUEST_TIMEOUT)
    })
    .await?
    .map_err(|source| Error::ScramUser {
        user: user.to_string(),
        source,
    })
}

/// How many ACL bindings the broker holds for `principal` (`User:<name>`).
pub async fn acl_count(admin: &Arc<Admin>, principal: &str) -> Result<usize, Error> {
    let name = principal.to_string();
    blocking(admin, move |admin| {
        kafka_admin::count_acls(admin, &name, REQUEST_TIMEOUT)
    })
    .await?
    .map_err(|source| Error::Acls {
        principal: principal.to_string(),
        source,
    })
}

async fn delete_credentials(
    admin: &Arc<Admin>,
    user: &str,
    mechanisms: Vec<ScramMechanism>,
    metrics: &Metrics,
) -> Result<(), Error> {
    let count = mechanisms.len();
    delete_scram_user(admin, user, mechanisms).await?;
    for _ in 0..count {
        metrics.count_kafka_identity_change("user_deleted");
    }
    Ok(())
}

/// Runs a synchronous librdkafka call off the async threads.
async fn blocking<T: Send + 'static>(
    admin: &Arc<Admin>,
    call: impl FnOnce(&Admin) -> T + Send + 'static,
) -> Result<T, Error> {
    let admin = admin.clone();
    tokio::task::spawn_blocking(move || call(&admin))
        .await
        .map_err(|source| Error::Blocking { source })
}

/// What identifies an applied credential without holding the password: a SHA-256 over mechanism, user
/// and password. It is kept in the same Secret as the password itself.
fn applied_marker(mechanism: ScramMechanism, user: &str, password: &str) -> String {
    names::hash_hex(format!("{}\0{user}\0{password}", mechanism.as_kafka()).as_bytes())
}

/// Notes on the Secret which credential the broker now holds.
async fn record_applied(
    client: &kube::Client,
    spec: &ValidSpec,
    identity: &Identity,
    marker: &str,
) -> Result<(), Error> {
    let api = Api::<Secret>::namespaced(client.clone(), &spec.namespace);
    let patch = serde_json::json!({"metadata": {"annotations": {(names::KAFKA_CREDENTIAL_APPLIED_ANNOTATION): marker}}});
    api.patch(
        &identity.secret_name,
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .map(|_| ())
    .map_err(|source| Error::ServiceSecret {
        name: identity.secret_name.clone(),
        source,
    })
}

/// The identity in `secret`; its password is required only when it is to be applied (`for_broker`): a
/// PLAIN Secret is the user's, checked by `plain`, and only hashed here.
fn identity(secret: &Secret, plan: &ServicePlan, for_broker: bool) -> Result<Identity, Error> {
    let password = match secret_value(secret, plan, secret_keys::PASSWORD) {
        Err(error) if for_broker => return Err(error),
        result => result.unwrap_or_default(),
    };
    Ok(Identity {
        service: plan.service,
        secret_hash: secrets::hash(secret),
        // The user is the one the ACLs name, whatever the Secret says.
        user: plan.kafka_user.clone(),
        password,
        secret_name: plan.kafka_secret_name.clone(),
        applied: secret
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(names::KAFKA_CREDENTIAL_APPLIED_ANNOTATION))
            .cloned(),
    })
}

/// The service's Secret, created with a generated password.
async fn create_secret(client: &kube::Client, spec: &ValidSpec, plan: &ServicePlan) -> Result<Secret, Error> {
    let data = BTreeMap::from([
        (secret_keys::USERNAME, plan.kafka_user.clone()),
        (secret_keys::PASSWORD, secrets::generate_password()),
    ]);
    secrets::create(client, spec, plan, &plan.kafka_secret_name, data)
        .await
        .map_err(|source| Error::ServiceSecret {
            name: plan.kafka_secret_name.clone(),
            source,
        })
}

fn secret_value(secret: &Secret, plan: &ServicePlan, key: &'static str) -> Result<String, Error> {
    secrets::text(secret, key)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| Error::SecretKey {
            name: plan.kafka_secret_name.clone(),
            key,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::validate::{tests::MINIMAL, tests::os_from_yaml, validate};
    use crate::names::Service;

    #[test]
    fn order_may_only_write_and_each_consumer_only_read_in_its_own_group() {
        let spec = validate(&os_from_yaml(MINIMAL)).expect("valid");
        let order = acls(&spec, spec.plan(Service::Order));
        assert_eq!(
            order,
            vec![Acl {
                resource: AclResource::Topic("orders".into()),
                principal: "User:shopns.shop.order".into(),
                operation: AclOperation::Write,
            }]
        );
        let invoicing = acls(&spec, spec.plan(Service::Invoicing));
        assert_eq!(invoicing.len(), 2);
        assert!(
            invoicing
                .iter()
                .all(|a| a.operation == AclOperation::Read && a.principal == "User:shopns.shop.invoicing")
        );
        assert!(invoicing.contains(&Acl {
            resource: AclResource::Group("shopns.shop.invoicing".into()),
            principal: "User:shopns.shop.invoicing".into(),
            operation: AclOperation::Read,
        }));
    }
}
