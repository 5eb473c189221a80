//! Least privilege in Kafka: with a SCRAM mechanism every service gets its own user, its credentials in
//! the Secret `<name>-<service>-kafka` (created once with a generated password, never regenerated), and
//! ACLs for exactly its job: order may write the topic; invoicing and shipping may read it and use their
//! own consumer group. Anything else is denied by the broker's authorizer. Re-applied on every reconcile,
//! so a user or ACL removed by someone else comes back.
//!
//! Writing needs no IDEMPOTENT_WRITE on the cluster for the idempotent producer: since Kafka 3.0 (KIP-679)
//! WRITE on a topic implies it. READ and WRITE imply DESCRIBE on the topic.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, PostParams};
use ordersystem_contract::wiring::secret_keys;
use rand::RngExt;

pub use super::identity_ffi::{Acl, AclOperation, AclResource, ScramMechanism};
use super::{Admin, Error, identity_ffi};
use crate::controller::validate::{ServicePlan, ValidSpec};
use crate::crd::SaslMechanism;
use crate::names;

/// Generated passwords: 32 alphanumerics, about 190 bits.
const PASSWORD_LEN: usize = 32;
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

/// Creates each service's Secret if absent, then its SCRAM user and ACLs.
pub async fn ensure(
    client: &kube::Client,
    admin: &Arc<Admin>,
    spec: &ValidSpec,
    mechanism: SaslMechanism,
) -> Result<(), Error> {
    let mechanism = match mechanism {
        SaslMechanism::ScramSha256 => ScramMechanism::Sha256,
        SaslMechanism::ScramSha512 | SaslMechanism::Plain => ScramMechanism::Sha512,
    };
    for plan in &spec.services {
        let password = ensure_secret(client, spec, plan).await?;
        let (admin, user, acls) = (admin.clone(), plan.kafka_user.clone(), acls(spec, plan));
        tokio::task::spawn_blocking(move || {
            identity_ffi::upsert_scram_user(&admin, &user, mechanism, &password, REQUEST_TIMEOUT)
                .map_err(|source| Error::ScramUser { user, source })?;
            identity_ffi::create_acls(&admin, &acls, REQUEST_TIMEOUT).map_err(|source| Error::Acls {
                principal: acls.first().map(|a| a.principal.clone()).unwrap_or_default(),
                source,
            })
        })
        .await
        .map_err(|source| Error::Blocking { source })??;
    }
    Ok(())
}

/// The service's password from its Secret, creating the Secret with a generated one if absent.
async fn ensure_secret(client: &kube::Client, spec: &ValidSpec, plan: &ServicePlan) -> Result<String, Error> {
    let api = Api::<Secret>::namespaced(client.clone(), &spec.namespace);
    let error = |source| Error::ServiceSecret {
        name: plan.kafka_secret_name.clone(),
        source,
    };
    if let Some(existing) = api.get_opt(&plan.kafka_secret_name).await.map_err(error)? {
        return password(&existing, plan);
    }
    let password: String = rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(PASSWORD_LEN)
        .map(char::from)
        .collect();
    let data: BTreeMap<String, ByteString> = [
        (secret_keys::USERNAME, plan.kafka_user.clone()),
        (secret_keys::PASSWORD, password.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), ByteString(v.into_bytes())))
    .collect();
    let secret = Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(plan.kafka_secret_name.clone()),
            namespace: Some(spec.namespace.clone()),
            labels: Some(names::labels(&spec.name, plan.service)),
            owner_references: Some(vec![spec.owner.clone()]),
            ..Default::default()
        },
        data: Some(data),
        type_: Some("Opaque".into()),
        ..Default::default()
    };
    let params = PostParams {
        field_manager: Some(names::FIELD_MANAGER.into()),
        ..Default::default()
    };
    match api.create(&params, &secret).await {
        Ok(_) => Ok(password),
        // Lost a race with another reconcile: the other one's Secret wins.
        Err(kube::Error::Api(status)) if status.code == 409 => {
            let existing = api.get(&plan.kafka_secret_name).await.map_err(error)?;
            self::password(&existing, plan)
        }
        Err(source) => Err(error(source)),
    }
}

fn password(secret: &Secret, plan: &ServicePlan) -> Result<String, Error> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(secret_keys::PASSWORD))
        .and_then(|v| String::from_utf8(v.0.clone()).ok())
        .filter(|p| !p.is_empty())
        .ok_or_else(|| Error::SecretKey {
            name: plan.kafka_secret_name.clone(),
            key: secret_keys::PASSWORD,
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
