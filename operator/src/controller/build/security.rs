//! The TLS and SASL part of a service's pod: env naming the mounted certificate files and the service's
//! own Kafka identity, and the Secret volumes behind them. Passwords only ever as `secretKeyRef`.

use ordersystem_contract::wiring::{env, mounts, secret_keys};
use serde_json::{Value, json};

use super::super::validate::{ServicePlan, ValidSpec};
use crate::crd::{CA_CERT_KEY, TLS_CERT_KEY, TLS_KEY_KEY};

const KAFKA_CA_VOLUME: &str = "kafka-ca";
const KAFKA_CLIENT_VOLUME: &str = "kafka-client-cert";
const POSTGRES_CA_VOLUME: &str = "postgres-ca";

/// Env of the service's container for Kafka TLS/SASL and the Postgres CA.
pub fn env(spec: &ValidSpec, plan: &ServicePlan) -> Vec<Value> {
    let security = &spec.kafka_security;
    let mut vars = Vec::new();
    // Plaintext is the services' default: leaving it out keeps existing pod templates unchanged.
    if security.protocol() != "plaintext" {
        vars.push(json!({"name": env::KAFKA_SECURITY_PROTOCOL, "value": security.protocol()}));
    }
    let file = |name: &str, dir: &str, key: &str| json!({"name": name, "value": format!("{dir}/{key}")});
    if let Some(tls) = &security.tls {
        if tls.ca_secret_ref.is_some() {
            vars.push(file(
                env::KAFKA_SSL_CA_LOCATION,
                mounts::KAFKA_CA_DIR,
                CA_CERT_KEY,
            ));
        }
        if tls.client_certificate_secret_ref.is_some() {
            vars.push(file(
                env::KAFKA_SSL_CERTIFICATE_LOCATION,
                mounts::KAFKA_CLIENT_CERT_DIR,
                TLS_CERT_KEY,
            ));
            vars.push(file(
                env::KAFKA_SSL_KEY_LOCATION,
                mounts::KAFKA_CLIENT_CERT_DIR,
                TLS_KEY_KEY,
            ));
        }
    }
    if let Some(sasl) = &security.sasl {
        let from_secret = |name: &str, key: &str| json!({"name": name, "valueFrom": {"secretKeyRef": {"name": plan.kafka_secret_name, "key": key}}});
        vars.push(json!({"name": env::KAFKA_SASL_MECHANISM, "value": sasl.mechanism.as_kafka()}));
        vars.push(from_secret(env::KAFKA_SASL_USERNAME, secret_keys::USERNAME));
        vars.push(from_secret(env::KAFKA_SASL_PASSWORD, secret_keys::PASSWORD));
    }
    if spec.postgres_ca_secret.is_some() {
        vars.push(file(
            env::DATABASE_SSLROOTCERT,
            mounts::POSTGRES_CA_DIR,
            CA_CERT_KEY,
        ));
    }
    vars
}

/// The pod's Secret volumes and the container's read-only mounts of them. Each volume projects only the
/// keys the services read: a CA Secret may also hold the CA's private key (CloudNativePG's `<cluster>-ca`
/// does), which must not reach a pod.
pub fn volumes(spec: &ValidSpec) -> (Vec<Value>, Vec<Value>) {
    const CA: &[&str] = &[CA_CERT_KEY];
    const CLIENT: &[&str] = &[TLS_CERT_KEY, TLS_KEY_KEY];
    let mut secrets: Vec<(&str, &str, &str, &[&str])> = Vec::new();
    if let Some(tls) = &spec.kafka_security.tls {
        if let Some(ca) = &tls.ca_secret_ref {
            secrets.push((KAFKA_CA_VOLUME, &ca.name, mounts::KAFKA_CA_DIR, CA));
        }
        if let Some(cert) = &tls.client_certificate_secret_ref {
            secrets.push((
                KAFKA_CLIENT_VOLUME,
                &cert.name,
                mounts::KAFKA_CLIENT_CERT_DIR,
                CLIENT,
            ));
        }
    }
    if let Some(ca) = &spec.postgres_ca_secret {
        secrets.push((POSTGRES_CA_VOLUME, ca, mounts::POSTGRES_CA_DIR, CA));
    }
    secrets
        .into_iter()
        .map(|(volume, secret, dir, keys)| {
            let items: Vec<Value> = keys.iter().map(|k| json!({"key": k, "path": k})).collect();
            (
                // 0440: the key of a client certificate is readable by the container's group only.
                json!({"name": volume, "secret": {"secretName": secret, "defaultMode": 0o440, "items": items}}),
                json!({"name": volume, "mountPath": dir, "readOnly": true}),
            )
        })
        .unzip()
}
