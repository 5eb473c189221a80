//! SASL PLAIN: the broker's users live in its own configuration (JAAS, an external store), out of reach of
//! the Kafka protocol, so the operator can neither create a user per service nor give one a password. The
//! user creates each service's Secret `<name>-<service>-kafka` (`username`, `password`) and grants its
//! ACLs; the operator checks before any pod needs them that the Secrets are there, and names the ones that
//! are missing or incomplete.

use k8s_openapi::api::core::v1::Secret;
use ordersystem_contract::wiring::secret_keys;

use super::Error;
use crate::controller::secrets;
use crate::controller::validate::ValidSpec;

/// `Ok` when every service's Kafka Secret (in `existing`, as `identities::read_secrets` found them)
/// holds a non-empty `username` and `password`.
pub fn check_service_secrets(spec: &ValidSpec, existing: &secrets::ByService) -> Result<(), Error> {
    let missing: Vec<String> = spec
        .services
        .iter()
        .filter(|plan| !existing.get(&plan.service).is_some_and(complete))
        .map(|plan| plan.kafka_secret_name.clone())
        .collect();
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

    #[test]
    fn every_missing_or_incomplete_secret_is_named() {
        use crate::controller::validate::{tests::MINIMAL, tests::os_from_yaml, validate};
        use crate::names::Service;
        let spec = validate(&os_from_yaml(MINIMAL)).expect("valid");
        let full = || secret(&[("username", "u"), ("password", "p")]);
        let mut existing = secrets::ByService::from([
            (Service::Order, full()),
            (Service::Invoicing, secret(&[("username", "u")])),
        ]);
        let message = check_service_secrets(&spec, &existing)
            .expect_err("two missing")
            .to_string();
        assert!(
            message.contains("shop-invoicing-kafka, shop-shipping-kafka"),
            "{message}"
        );
        assert!(!message.contains("shop-order-kafka"), "{message}");
        existing.insert(Service::Invoicing, full());
        existing.insert(Service::Shipping, full());
        check_service_secrets(&spec, &existing).expect("all complete");
    }
}
