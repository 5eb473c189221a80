//! SASL PLAIN: the broker's users live in its own configuration (JAAS, an external store), out of reach of
//! the Kafka protocol, so the operator can neither create a user per service nor give one a password. The
//! user creates each service's Secret `<name>-<service>-kafka` (`username`, `password`) and grants its
//! ACLs; the operator checks before any pod needs them that the Secrets are there, and names the ones that
//! are missing or incomplete.

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use ordersystem_contract::wiring::secret_keys;

use super::Error;
use crate::controller::validate::ValidSpec;

/// `Ok` when every service's Kafka Secret holds a non-empty `username` and `password`.
pub async fn check_service_secrets(client: &kube::Client, spec: &ValidSpec) -> Result<(), Error> {
    let api = Api::<Secret>::namespaced(client.clone(), &spec.namespace);
    let mut missing = Vec::new();
    for plan in &spec.services {
        let name = &plan.kafka_secret_name;
        let secret = api.get_opt(name).await.map_err(|source| Error::ReadSecret {
            name: name.clone(),
            source,
        })?;
        if !secret.as_ref().is_some_and(complete) {
            missing.push(name.clone());
        }
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::ServiceCredentialsMissing {
            secrets: missing.join(", "),
        })
    }
}

fn complete(secret: &Secret) -> bool {
    [secret_keys::USERNAME, secret_keys::PASSWORD].iter().all(|key| {
        secret
            .data
            .as_ref()
            .and_then(|d| d.get(*key))
            .is_some_and(|v| !v.0.is_empty())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(data: &[(&str, &str)]) -> Secret {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "s"},
            "data": data.iter().map(|(k, v)| (k.to_string(), k8s_openapi::ByteString(v.as_bytes().to_vec()))).collect::<std::collections::BTreeMap<_, _>>(),
        }))
        .expect("secret")
    }

    #[test]
    fn a_secret_needs_a_username_and_a_password() {
        assert!(complete(&secret(&[("username", "u"), ("password", "p")])));
        assert!(!complete(&secret(&[("username", "u")])));
        assert!(!complete(&secret(&[("username", "u"), ("password", "")])));
        assert!(!complete(&secret(&[])));
    }
}
