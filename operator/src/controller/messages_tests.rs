//! Every condition message a person reads, produced the way a reconcile produces it: each `Reason` the
//! operator can set (all of `Reason::ALL`, matched without a wildcard, so a new reason does not compile
//! until it has a case here) is reached from a resource, a world as `observe` records it (the typed
//! errors of the Kafka, PostgreSQL and Kubernetes clients included) and the writers' outcome, through
//! `decide`, `Report::gather` and `compute`. Each message must be readable (`assert_readable`). The notes
//! of the failure Events (`describe_error` of every kind of reconcile error) are held to the same rule.
//!
//! The rule: a message is one line of text that starts with a letter or digit and does not end in a
//! separator; it contains no Rust `Debug` rendering (`Some(..)`, `None`, `Status { .. }`, a struct's
//! `{ field: .. }`, `Error(..)`, `Api(..)`, an `ErrorKind`, an escaped `\"`). It may start in lower case,
//! as Kubernetes condition messages do ("the topic does not exist"), or with the object it names.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use k8s_openapi::jiff::Timestamp;
use kube::runtime::finalizer;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use serde_json::json;

use super::*;
use crate::controller::apply::{self, DeploymentState};
use crate::controller::build::{self, Observed};
use crate::controller::decide;
use crate::controller::drain::Gate;
use crate::controller::durability::{PartitionReplicas, Replication};
use crate::controller::ensure::{Outcome, TopicFailure};
use crate::controller::error::{Error, describe_error};
use crate::controller::kafka::claim::{Origin, Standing, TopicClaim};
use crate::controller::kafka::security::{ConnectionFailure, FailureKind};
use crate::controller::kafka::{
    self, Admin, ClientSecurity, FfiError, KafkaClients, TopicDescription, TopicObserved, TopicState,
};
use crate::controller::observe::{KafkaFailure, KafkaSeen, World};
use crate::controller::postgres::{self, PostgresObserved, ownership};
use crate::controller::rotation::{self, RotationReport};
use crate::controller::validate::tests::{MINIMAL, os_from_yaml};
use crate::controller::{lag, validate};
use crate::crd::{ConsumerLagStatus, GroupLagStatus, TopicStatus};

/// Why `message` is not readable, or `None`.
fn unreadable(message: &str) -> Option<String> {
    let Some(first) = message.chars().next() else {
        return Some("it is empty".into());
    };
    if !first.is_alphanumeric() {
        return Some(format!("it starts with {first:?}, not a letter or digit"));
    }
    if message.ends_with([':', ';', ',', ' ']) {
        return Some("it ends in a separator".into());
    }
    if message.chars().any(char::is_control) {
        return Some("it is more than one line or holds a control character".into());
    }
    // What `{:?}` of an error, an Option, a struct or a string with quotes writes.
    let debug = [
        "Status {",
        "Some(",
        "Ok(",
        "Err(",
        "Error(",
        "Error {",
        "Api(",
        "Box(",
        "Os {",
        "Custom {",
        "Kind(",
        "ErrorKind",
        "kind: ",
        "code: Some",
        "\\\"",
        "\\n",
        "[\"",
        " { ",
        " }",
        "{ ..",
    ];
    if let Some(found) = debug.iter().find(|pattern| message.contains(**pattern)) {
        return Some(format!("it holds {found:?}, a Rust Debug rendering"));
    }
    let mut words = message.split(|c: char| !c.is_alphanumeric() && c != '_');
    if words.any(|word| word == "None") {
        return Some("it holds None, a Rust Debug rendering".into());
    }
    None
}

/// Fails when `message` is not a readable sentence (see the module's rule).
#[track_caller]
fn assert_readable(message: &str) {
    if let Some(problem) = unreadable(message) {
        panic!("unreadable message ({problem}): {message}");
    }
}

// ---- Errors as the clients return them ----

/// What the API server answers, as kube parses it.
fn answer(code: u16, reason: &str, message: &str, name: &str, kind: &str) -> kube::Error {
    let status = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": {"name": name, "kind": kind},
        "code": code,
    });
    kube::Error::Api(Box::new(
        serde_json::from_value(status).expect("a Status as the API server sends it"),
    ))
}

fn secret_not_found(name: &str) -> kube::Error {
    answer(
        404,
        "NotFound",
        &format!("secrets \"{name}\" not found"),
        name,
        "secrets",
    )
}

fn forbidden(verb: &str, resource: &str) -> kube::Error {
    answer(
        403,
        "Forbidden",
        &format!(
            "{resource} is forbidden: User \"system:serviceaccount:ops:ordersystem-operator\" cannot {verb} \
             resource \"{resource}\" in API group \"\" in the namespace \"shopns\""
        ),
        "",
        resource,
    )
}

fn modified(resource: &str, name: &str) -> kube::Error {
    answer(
        409,
        "Conflict",
        &format!(
            "Operation cannot be fulfilled on {resource} \"{name}\": the object has been modified; please \
             apply your changes to the latest version and try again"
        ),
        name,
        resource,
    )
}

/// The API server could not be reached at all.
fn unreachable_api_server() -> kube::Error {
    kube::Error::Service(Box::new(std::io::Error::from_raw_os_error(111)))
}

/// An error PostgreSQL answered, rendered as sqlx renders it: its message, then the line of the server's
/// own source code that raised it.
#[derive(Debug)]
struct ServerAnswer {
    message: &'static str,
    line: u32,
}

impl std::fmt::Display for ServerAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at line {}", self.message, self.line)
    }
}

impl std::error::Error for ServerAnswer {}

impl sqlx::error::DatabaseError for ServerAnswer {
    fn message(&self) -> &str {
        self.message
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }

    fn kind(&self) -> sqlx::error::ErrorKind {
        sqlx::error::ErrorKind::Other
    }
}

fn server_answer(message: &'static str, line: u32) -> sqlx::Error {
    sqlx::Error::Database(Box::new(ServerAnswer { message, line }))
}

fn refused() -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::from_raw_os_error(111))
}

/// How sqlx with rustls reports a server certificate that no trusted CA signed.
fn unknown_issuer() -> sqlx::Error {
    sqlx::Error::Io(std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        "invalid peer certificate: UnknownIssuer",
    ))
}

fn describe_timeout() -> kafka::Error {
    kafka::Error::DescribeTopic {
        topic: "orders".into(),
        source: FfiError::Timeout {
            op: "DescribeTopics",
            timeout: std::time::Duration::from_secs(10),
        },
    }
}

/// Every kind of Kafka failure a reconcile can meet, as the topic step or `observe` returns it.
fn kafka_errors() -> Vec<kafka::Error> {
    vec![
        describe_timeout(),
        kafka::Error::CreateClient {
            bootstrap: "kafka:9092".into(),
            source: KafkaError::ClientCreation("ssl.ca.location failed: no such file".into()),
        },
        kafka::Error::Metadata {
            source: KafkaError::MetadataFetch(RDKafkaErrorCode::BrokerTransportFailure),
        },
        kafka::Error::CreateTopic {
            topic: "orders".into(),
            source: KafkaError::AdminOp(RDKafkaErrorCode::PolicyViolation),
        },
        kafka::Error::CreatePartitions {
            topic: "orders".into(),
            source: KafkaError::AdminOp(RDKafkaErrorCode::InvalidPartitions),
        },
        kafka::Error::DescribeConfigs {
            topic: "orders".into(),
            source: KafkaError::AdminOp(RDKafkaErrorCode::TopicAuthorizationFailed),
        },
        kafka::Error::AlterConfigs {
            topic: "orders".into(),
            source: FfiError::Broker {
                op: "IncrementalAlterConfigs",
                code: RDKafkaErrorCode::InvalidConfig,
                message: "Invalid value -5 for configuration retention.ms".into(),
            },
        },
        kafka::Error::DeleteTopic {
            topic: "orders".into(),
            source: KafkaError::AdminOp(RDKafkaErrorCode::TopicDeletionDisabled),
        },
        kafka::Error::ScramUser {
            user: "shopns.shop.order".into(),
            source: FfiError::Broker {
                op: "AlterUserScramCredentials",
                code: RDKafkaErrorCode::ClusterAuthorizationFailed,
                message: "Cluster authorization failed.".into(),
            },
        },
        kafka::Error::Acls {
            principal: "User:shopns.shop.order".into(),
            source: FfiError::Nul {
                op: "CreateAcls",
                source: std::ffi::CString::new("a\0b").expect_err("holds a NUL byte"),
            },
        },
        kafka::Error::ServiceSecret {
            name: "shop-order-kafka".into(),
            source: forbidden("create", "secrets"),
        },
        kafka::Error::ReadSecret {
            name: "kafka-ca".into(),
            source: secret_not_found("kafka-ca"),
        },
        kafka::Error::SecretKey {
            name: "kafka-ca".into(),
            key: "ca.crt",
        },
        plain_credentials_missing(),
        kafka::Error::ClusterId,
        kafka::Error::Claim {
            topic: "orders".into(),
            source: forbidden("create", "configmaps"),
        },
        kafka::Error::ClaimedMeanwhile {
            topic: "orders".into(),
            owner: "other/first".into(),
        },
    ]
}

/// SASL PLAIN, and none of the services' Kafka Secrets exists.
fn plain_credentials_missing() -> kafka::Error {
    let spec = validate::validate(&os_from_yaml(MINIMAL)).expect("a valid spec");
    kafka::plain::check_service_secrets(&spec, &Default::default()).expect_err("no Secret exists")
}

/// Every kind of PostgreSQL failure, as `observe` or the database step returns it.
fn postgres_errors() -> Vec<postgres::Error> {
    vec![
        postgres::Error::ReadAdminSecret {
            name: "no-such-secret".into(),
            source: secret_not_found("no-such-secret"),
        },
        postgres::Error::ReadAdminSecret {
            name: "pg-admin".into(),
            source: unreachable_api_server(),
        },
        postgres::Error::ReadCaSecret {
            name: "pg-ca".into(),
            source: secret_not_found("pg-ca"),
        },
        postgres::Error::CaSecretKey { name: "pg-ca".into() },
        postgres::Error::AdminSecretKey {
            name: "pg-admin".into(),
            key: "password",
        },
        postgres::Error::Connect {
            host: "db".into(),
            port: 5432,
            source: refused(),
        },
        postgres::Error::Connect {
            host: "db".into(),
            port: 5432,
            source: server_answer(
                "password authentication failed for user \"ordersystem_admin\"",
                334,
            ),
        },
        postgres::Error::ConnectTimeout {
            host: "db".into(),
            port: 5432,
        },
        postgres::Error::ServiceSecret {
            name: "shop-order-db".into(),
            source: forbidden("create", "secrets"),
        },
        postgres::Error::ServiceSecretKey {
            name: "shop-order-db".into(),
            key: "password",
        },
        postgres::Error::Provision {
            what: "schema",
            service: "order",
            source: sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::UnexpectedEof)),
        },
        postgres::Error::Provision {
            what: "role",
            service: "invoicing",
            source: server_answer("permission denied to create role", 1134),
        },
        postgres::Error::Drop {
            what: "role",
            name: "os_shopns_shop_order".into(),
            source: sqlx::Error::Protocol("unexpected response from server".into()),
        },
    ]
}

fn tls_errors() -> Vec<postgres::Error> {
    [
        unknown_issuer(),
        sqlx::Error::Tls("server does not support TLS".into()),
    ]
    .into_iter()
    .map(|source| postgres::Error::Connect {
        host: "db".into(),
        port: 5432,
        source,
    })
    .collect()
}

fn rotation_errors() -> Vec<rotation::Error> {
    vec![
        rotation::Error::Postgres(postgres::Error::Connect {
            host: "db".into(),
            port: 5432,
            source: refused(),
        }),
        rotation::Error::Secret {
            name: "shop-order-db".into(),
            source: modified("secrets", "shop-order-db"),
        },
        rotation::Error::Acknowledge {
            annotation: crate::names::ROTATE_CREDENTIALS_ANNOTATION,
            source: forbidden("patch", "ordersystems"),
        },
        rotation::Error::ForeignLogin {
            login: "os_shopns_shop_order_b".into(),
        },
    ]
}

fn apply_errors() -> Vec<apply::Error> {
    vec![
        apply::Error::Apply {
            kind: "Deployment",
            name: "shop-order".into(),
            source: answer(
                422,
                "Invalid",
                "Deployment.apps \"shop-order\" is invalid: spec.template.spec.containers[0].image: \
                 Required value",
                "shop-order",
                "deployments",
            ),
        },
        apply::Error::Delete {
            kind: "PodDisruptionBudget",
            name: "shop-order".into(),
            source: forbidden("delete", "poddisruptionbudgets"),
        },
        apply::Error::ListDeployments {
            source: unreachable_api_server(),
        },
        apply::Error::NotServed {
            kind: "HTTPRoute",
            api_version: "gateway.networking.k8s.io/v1",
        },
    ]
}

fn lag_errors() -> Vec<lag::Error> {
    vec![
        lag::Error::CreateClient {
            bootstrap: "kafka:9092".into(),
            source: KafkaError::ClientCreation("Invalid sasl.kerberos.kinit.cmd value".into()),
        },
        lag::Error::Committed {
            group: "shopns.shop.invoicing".into(),
            source: FfiError::Broker {
                op: "ListConsumerGroupOffsets",
                code: RDKafkaErrorCode::GroupAuthorizationFailed,
                message: "Broker: Group authorization failed".into(),
            },
        },
        lag::Error::Offsets {
            topic: "orders".into(),
            source: KafkaError::MetadataFetch(RDKafkaErrorCode::OperationTimedOut),
        },
        lag::Error::Watermarks {
            topic: "orders".into(),
            partition: 2,
            source: KafkaError::MetadataFetch(RDKafkaErrorCode::OperationTimedOut),
        },
    ]
}

/// librdkafka's account of a refused handshake or login, as `security::take_failure` keeps it.
fn connection(kind: FailureKind) -> ConnectionFailure {
    let message = match kind {
        FailureKind::Tls => {
            "ssl://kafka:9093/bootstrap: SSL handshake failed: error:0A000086:SSL routines::certificate \
             verify failed: broker certificate could not be verified, verify that ssl.ca.location is \
             correctly configured or root CA certificates are installed (after 11ms in state SSL_HANDSHAKE)"
        }
        FailureKind::Authentication => {
            "sasl_ssl://kafka:9094/bootstrap: SASL authentication error: Authentication failed during \
             authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512 (after 309ms in \
             state AUTH_REQ)"
        }
        FailureKind::Other => {
            "kafka:9092/bootstrap: Connect to ipv4#10.0.0.7:9092 failed: Connection refused (after 0ms in \
             state CONNECT)"
        }
    };
    ConnectionFailure {
        kind,
        message: message.into(),
    }
}

// ---- One reconcile, without its I/O ----

/// One admin client for every case: `observe` hands the topic step a client, nothing here calls it.
fn admin() -> Arc<Admin> {
    static ADMIN: OnceLock<Arc<Admin>> = OnceLock::new();
    ADMIN
        .get_or_init(|| KafkaClients::default().admin("127.0.0.1:1").expect("a client"))
        .clone()
}

fn topic_status(partitions: i32) -> TopicStatus {
    TopicStatus {
        name: "orders".into(),
        topic_id: Some("J2ZTpmYuQ7a3wSNVqzOKzw".into()),
        partitions,
        replication_factor: 1,
        ..Default::default()
    }
}

fn topic(state: TopicState) -> TopicObserved {
    TopicObserved {
        state,
        status: Some(topic_status(3)),
        created: false,
        partitions_added: false,
        configs_changed: vec![],
        replication: Some(replication(&[1], &[1])),
    }
}

/// Three partitions with `replicas`, `in_sync` in sync and led by the first of them (none: no leader); the
/// cluster lists the brokers in sync; min.insync.replicas is 2 for more than one replica.
fn replication(replicas: &[i32], in_sync: &[i32]) -> Replication {
    Replication {
        brokers: in_sync.to_vec(),
        partitions: (0..3)
            .map(|partition| PartitionReplicas {
                partition,
                leader: in_sync.first().copied(),
                replicas: replicas.to_vec(),
                in_sync: in_sync.to_vec(),
            })
            .collect(),
        min_insync_replicas: if replicas.len() > 1 { 2 } else { 1 },
    }
}

/// MINIMAL with replication factor 3, its topic's replicas on brokers 1, 2, 3 with `in_sync` in sync.
fn replicated(in_sync: &[i32]) -> Reconcile {
    let in_sync = in_sync.to_vec();
    Reconcile::of(&MINIMAL.replace("partitions: 3,", "partitions: 3, replicationFactor: 3,")).with(move |r| {
        let mut observed = topic(TopicState::Ready);
        observed.replication = Some(replication(&[1, 2, 3], &in_sync));
        r.topic = Some(Ok(observed));
    })
}

/// What `observe` found and what the writers did, for one resource.
struct Reconcile {
    os: OrderSystem,
    world: World,
    topic: Option<Result<TopicObserved, TopicFailure>>,
    postgres: Option<Result<PostgresObserved, postgres::Error>>,
    rotation: Option<Result<RotationReport, rotation::Error>>,
    applied: Option<Result<Vec<k8s_openapi::api::apps::v1::Deployment>, apply::Error>>,
    observed: Observed,
}

impl Reconcile {
    /// Everything found as it should be: topic, schemas and Deployments ready, no lag.
    fn healthy() -> Self {
        Self::of(MINIMAL)
    }

    fn of(yaml: &str) -> Self {
        let os = os_from_yaml(yaml);
        let spec = validate::validate(&os).expect("a valid spec");
        let deployment_states = spec
            .services
            .iter()
            .map(|plan| DeploymentState {
                service: plan.service,
                desired: plan.replicas,
                ready: plan.replicas,
                available: true,
                image: plan.image.clone(),
                rolled_out: true,
            })
            .collect();
        let all: BTreeMap<Service, String> = Service::ALL.into_iter().map(|s| (s, "hash".into())).collect();
        Self {
            world: World {
                conflict: None,
                kafka: Some(Ok(KafkaSeen {
                    admin: admin(),
                    security: ClientSecurity::plaintext(),
                    cluster_id: "lkc-7bq3xz".into(),
                    claim: None,
                    topic: Some(TopicDescription {
                        topic_id: "J2ZTpmYuQ7a3wSNVqzOKzw".into(),
                        partitions: 3,
                        replication_factor: 1,
                    }),
                    lag: Some(Ok(BTreeMap::from([
                        (Service::Invoicing, 0),
                        (Service::Shipping, 0),
                    ]))),
                })),
                recorded_topic_id: Ok(Some("J2ZTpmYuQ7a3wSNVqzOKzw".into())),
                order_pods: None,
                deployments: Ok(vec![]),
                deployment_states,
                postgres_admin: None,
                database_secrets: None,
                kafka_secrets: None,
            },
            topic: Some(Ok(topic(TopicState::Ready))),
            postgres: Some(Ok(PostgresObserved {
                ready: Service::ALL.into_iter().collect(),
                secret_hashes: all.clone(),
                ..Default::default()
            })),
            rotation: Some(Ok(RotationReport::default())),
            applied: Some(Ok(vec![])),
            observed: Observed {
                secret_hashes: all.clone(),
                kafka_secret_hashes: BTreeMap::new(),
                topic_ready: true,
                schemas_ready: Service::ALL.into_iter().collect(),
                deployed: Service::ALL.into_iter().collect(),
                postgres_port: Some(5432),
            },
            os,
        }
    }

    fn with(mut self, change: impl FnOnce(&mut Self)) -> Self {
        change(&mut self);
        self
    }

    /// The state of `service`'s Deployment as `observe` found it.
    fn deployment(&mut self, service: Service) -> &mut DeploymentState {
        self.world
            .deployment_states
            .iter_mut()
            .find(|d| d.service == service)
            .expect("every service is deployed")
    }

    /// The topic the brokers describe, with `partitions`.
    fn partitions_in_kafka(mut self, partitions: i32) -> Self {
        if let Some(Ok(seen)) = &mut self.world.kafka
            && let Some(topic) = &mut seen.topic
        {
            topic.partitions = partitions;
        }
        self
    }

    /// `decide`, the outcome, `Report::gather`: the report a reconcile hands to `compute`. The topic
    /// step's own refusals are decided as `ensure` decides them: nothing is created while the recorded
    /// topic id is unknown, nothing is added while the drain's gate is unknown.
    fn report(self) -> (OrderSystem, Report) {
        let spec = validate::validate(&self.os).expect("a valid spec");
        let plan = decide::decide(
            &self.os,
            spec,
            &self.world,
            k8s_openapi::jiff::Timestamp::UNIX_EPOCH,
        );
        let topic = match (&self.world.kafka, &self.world.recorded_topic_id, &plan.gate) {
            (Some(Ok(_)), Err(message), _) => Some(Err(TopicFailure::Unconfirmed(message.clone()))),
            (Some(Ok(_)), _, Gate::Unknown(message)) => Some(Err(TopicFailure::Undecided(message.clone()))),
            _ => self.topic,
        };
        let outcome = Outcome {
            topic,
            postgres: self.postgres,
            rotation: self.rotation,
            desired: build::build(&plan.spec, &self.observed),
            applied: self.applied,
        };
        let outcome = self.world.owns_topic().then_some(&outcome);
        let report = Report::gather(&self.os, &plan, &self.world, outcome);
        (self.os, report)
    }

    fn case(self, condition: &'static str, what: impl Into<String>) -> Case {
        let (os, report) = self.report();
        Case {
            condition,
            what: what.into(),
            os,
            report,
        }
    }
}

/// One way to a reason: the condition that shows it and the report that leads there.
struct Case {
    condition: &'static str,
    what: String,
    os: OrderSystem,
    report: Report,
}

fn kafka_failed(error: kafka::Error, connection: Option<ConnectionFailure>) -> Reconcile {
    Reconcile::healthy().with(|r| {
        r.world.kafka = Some(Err(KafkaFailure { error, connection }));
        r.topic = None;
    })
}

fn postgres_failed_to_read(error: postgres::Error) -> Reconcile {
    Reconcile::healthy().with(|r| {
        r.world.postgres_admin = Some(Err(error));
        r.postgres = None;
        r.rotation = None;
    })
}

/// The ways the brokers fail `observe` (those `keep` keeps), each as `condition` shows it.
fn kafka_failures(condition: &'static str, keep: fn(&kafka::Error) -> bool) -> Vec<Case> {
    kafka_errors()
        .into_iter()
        .filter(keep)
        .map(|error| {
            let what = format!("observe: {error:?}");
            kafka_failed(error, None).case(condition, what)
        })
        .collect()
}

/// The ways PostgreSQL fails: its admin Secret or the services' Secrets in `observe`, the database step,
/// the rotation's step; each as `condition` shows it.
fn postgres_failures(condition: &'static str) -> Vec<Case> {
    let mut cases = Vec::new();
    for error in postgres_errors() {
        let what = format!("observe: {error:?}");
        cases.push(postgres_failed_to_read(error).case(condition, what));
    }
    for error in postgres_errors() {
        let what = format!("the database step: {error:?}");
        let step = Reconcile::healthy().with(|r| r.postgres = Some(Err(error)));
        cases.push(step.case(condition, what));
    }
    let secrets = Reconcile::healthy().with(|r| {
        r.world.database_secrets = Some(Err(postgres::Error::ServiceSecret {
            name: "shop-order-db".into(),
            source: forbidden("get", "secrets"),
        }));
        r.postgres = None;
        r.rotation = None;
    });
    cases.push(secrets.case(condition, "the services' Secrets could not be read"));
    for error in rotation_errors() {
        let what = format!("the rotation: {error:?}");
        let rotation = Reconcile::healthy().with(|r| r.rotation = Some(Err(error)));
        cases.push(rotation.case(condition, what));
    }
    cases
}

fn any(_: &kafka::Error) -> bool {
    true
}

fn not_plain_credentials(error: &kafka::Error) -> bool {
    !matches!(error, kafka::Error::ServiceCredentialsMissing { .. })
}

fn topic_in(state: TopicState, what: &str) -> Vec<Case> {
    vec![
        Reconcile::healthy()
            .with(|r| r.topic = Some(Ok(topic(state))))
            .case(TOPIC_READY, what),
    ]
}

fn only(condition: &'static str, reconcile: Reconcile, what: &str) -> Vec<Case> {
    vec![reconcile.case(condition, what)]
}

/// Every way the operator reaches `reason`. No wildcard: a new reason needs its case here.
fn cases(reason: Reason) -> Vec<Case> {
    match reason {
        Reason::Ready => only(READY, Reconcile::healthy(), "everything ready"),
        Reason::InvalidSpec => {
            let yaml = MINIMAL
                .replace("bootstrapServers: kafka:9092", "bootstrapServers: kafka")
                .replace("partitions: 3,", "partitions: 3, cleanupPolicy: compact,");
            let os = os_from_yaml(&yaml);
            let invalid = validate::validate(&os).expect_err("an invalid spec");
            // As `reconcile_apply` reports it.
            let report = Report::invalid(&os, invalid.to_string());
            vec![Case {
                condition: READY,
                what: "an invalid spec".into(),
                os,
                report,
            }]
        }
        Reason::Conflict => {
            let topic_claimed = Reconcile::healthy().with(|r| {
                let spec = validate::validate(&r.os).expect("valid");
                let mut earlier = TopicClaim::new(&spec, "lkc-7bq3xz", Origin::Created);
                earlier.owner = "other/first".into();
                earlier.uid = "0a00-uid".into();
                // As `observe` turns another resource's claim into the conflict.
                let Standing::Foreign(message) = TopicClaim::standing(Some(&earlier), &spec) else {
                    panic!("another resource's claim is foreign");
                };
                r.world.conflict = Some(message);
                r.world.kafka = None;
                r.topic = None;
                r.postgres = None;
                r.rotation = None;
                r.applied = None;
            });
            let role_taken = Reconcile::healthy().with(|r| {
                let spec = validate::validate(&r.os).expect("valid");
                let message =
                    ownership::conflict_message(&spec, "role os_shopns_shop_order", "OrderSystem other/shop");
                if let Some(Ok(pg)) = &mut r.postgres {
                    pg.conflicts.push(message);
                    pg.ready.remove(&Service::Order);
                }
            });
            vec![
                topic_claimed.case(READY, "another resource claims the topic"),
                role_taken.case(DATABASE_READY, "another resource owns a role"),
            ]
        }
        Reason::TopicNotReady => kafka_failures(READY, any),
        Reason::DatabaseNotReady => postgres_failures(READY),
        Reason::ServicesUnavailable => only(
            READY,
            Reconcile::healthy().with(|r| {
                let invoicing = r.deployment(Service::Invoicing);
                invoicing.ready = 0;
                invoicing.available = false;
            }),
            "invoicing has no ready pod",
        ),
        Reason::TopicReady => only(TOPIC_READY, Reconcile::healthy(), "everything ready"),
        Reason::NotObserved => {
            let unconfirmed = Reconcile::healthy().with(|r| {
                // As `observe` words a failed read of the resource's recorded topic id.
                r.world.recorded_topic_id = Err(format!(
                    "reading OrderSystem shop for the topic id it recorded failed: {}",
                    describe_error(&unreachable_api_server())
                ));
            });
            vec![
                unconfirmed.case(TOPIC_READY, "the recorded topic id could not be read"),
                Reconcile::healthy()
                    .with(|r| r.topic = None)
                    .case(TOPIC_READY, "the topic was not looked at"),
                Reconcile::healthy()
                    .with(|r| r.postgres = None)
                    .case(DATABASE_READY, "the database was not looked at"),
                Reconcile::healthy()
                    .with(|r| r.topic = None)
                    .case(DURABILITY_REDUCED, "the replicas were not looked at"),
            ]
        }
        Reason::KafkaUnavailable => {
            let mut cases = kafka_failures(TOPIC_READY, not_plain_credentials);
            cases.push(
                kafka_failed(describe_timeout(), Some(connection(FailureKind::Other)))
                    .case(TOPIC_READY, "a refused connection"),
            );
            for error in kafka_errors() {
                let what = format!("the identity Secrets: {error:?}");
                let secrets = Reconcile::healthy().with(|r| {
                    r.world.kafka_secrets = Some(Err(error));
                    r.topic = None;
                });
                cases.push(secrets.case(TOPIC_READY, what));
            }
            // A drain whose next step is unknown: the lag could not be read.
            for error in lag_errors() {
                let what = format!("a drain without lag: {error:?}");
                let drain = Reconcile::of(
                    &MINIMAL.replace("partitions: 3,", "partitions: 6, partitionIncrease: Drain,"),
                )
                .partitions_in_kafka(3)
                .with(|r| {
                    if let Some(Ok(seen)) = &mut r.world.kafka {
                        seen.lag = Some(Err(error));
                    }
                    r.world.order_pods = Some(Ok(0));
                });
                cases.push(drain.case(TOPIC_READY, what));
            }
            cases
        }
        Reason::KafkaTlsFailed => only(
            TOPIC_READY,
            kafka_failed(describe_timeout(), Some(connection(FailureKind::Tls))),
            "the brokers' certificate is refused",
        ),
        Reason::KafkaAuthenticationFailed => only(
            TOPIC_READY,
            kafka_failed(describe_timeout(), Some(connection(FailureKind::Authentication))),
            "the SASL login is refused",
        ),
        Reason::KafkaCredentialsMissing => only(
            TOPIC_READY,
            kafka_failed(plain_credentials_missing(), None),
            "SASL PLAIN without the services' Secrets",
        ),
        Reason::PartitionIncreaseRejected => only(
            TOPIC_READY,
            Reconcile::of(&MINIMAL.replace("partitions: 3,", "partitions: 6, partitionIncrease: Reject,"))
                .partitions_in_kafka(3),
            "an increase under Reject",
        ),
        Reason::TopicDeleted => topic_in(
            TopicState::Deleted {
                topic_id: "J2ZTpmYuQ7a3wSNVqzOKzw".into(),
            },
            "the topic was deleted",
        ),
        Reason::TopicIdChanged => topic_in(
            TopicState::IdChanged {
                known: "J2ZTpmYuQ7a3wSNVqzOKzw".into(),
                actual: "Qm9vdHN0cmFwcGVkSWQx".into(),
            },
            "the topic was recreated by someone else",
        ),
        Reason::Missing => {
            let paused = Reconcile::of(&MINIMAL.replace("spec:\n", "spec:\n  paused: true\n"))
                .with(|r| r.topic = Some(Ok(topic(TopicState::Missing))));
            only(TOPIC_READY, paused, "paused, no topic")
        }
        Reason::NotSupported => {
            let state = || TopicState::MorePartitionsThanSpec { spec: 3, actual: 5 };
            let mut cases = topic_in(state(), "more partitions than the spec");
            cases.push(
                Reconcile::healthy()
                    .with(|r| r.topic = Some(Ok(topic(state()))))
                    .case(DEGRADED, "more partitions than the spec"),
            );
            cases
        }
        Reason::ReplicationFactorMismatch => topic_in(
            TopicState::ReplicationFactorMismatch { spec: 3, actual: 1 },
            "another replication factor",
        ),
        Reason::ReplicationFactorTooLarge => topic_in(
            TopicState::ReplicationFactorTooLarge { spec: 3, brokers: 1 },
            "too few brokers",
        ),
        Reason::PostgresUnavailable => postgres_failures(DATABASE_READY),
        Reason::PostgresTlsFailed => tls_errors()
            .into_iter()
            .map(|error| {
                let what = format!("the database step: {error:?}");
                Reconcile::healthy()
                    .with(|r| r.postgres = Some(Err(error)))
                    .case(DATABASE_READY, what)
            })
            .collect(),
        Reason::SchemasReady => only(DATABASE_READY, Reconcile::healthy(), "everything ready"),
        Reason::SchemasNotReady => only(
            DATABASE_READY,
            Reconcile::healthy().with(|r| {
                if let Some(Ok(pg)) = &mut r.postgres {
                    pg.ready.remove(&Service::Shipping);
                }
            }),
            "shipping's isolation is not verified",
        ),
        Reason::AllAvailable => only(SERVICES_AVAILABLE, Reconcile::healthy(), "everything ready"),
        Reason::Unavailable => vec![
            Reconcile::healthy()
                .with(|r| {
                    let invoicing = r.deployment(Service::Invoicing);
                    invoicing.ready = 1;
                    invoicing.available = false;
                })
                .case(SERVICES_AVAILABLE, "invoicing has one of two pods ready"),
            Reconcile::healthy()
                .with(|r| r.world.deployment_states.retain(|d| d.service != Service::Order))
                .case(SERVICES_AVAILABLE, "order is not deployed"),
        ],
        Reason::DrainingForPartitionIncrease => {
            let drain = || {
                Reconcile::of(&MINIMAL.replace("partitions: 3,", "partitions: 6, partitionIncrease: Drain,"))
                    .partitions_in_kafka(3)
            };
            vec![
                drain()
                    .with(|r| r.world.order_pods = Some(Ok(2)))
                    .case(PROGRESSING, "intake stopping"),
                drain()
                    .with(|r| {
                        r.world.order_pods = Some(Ok(0));
                        if let Some(Ok(seen)) = &mut r.world.kafka {
                            seen.lag = Some(Ok(BTreeMap::from([
                                (Service::Invoicing, 12),
                                (Service::Shipping, 0),
                            ])));
                        }
                    })
                    .case(PROGRESSING, "consumers reading"),
                drain()
                    .with(|r| r.world.order_pods = Some(Ok(0)))
                    .case(PROGRESSING, "drained"),
            ]
        }
        Reason::RotatingCredentials => {
            // The rotation's words (see `rotation::step`) for a rotation that started and one that waits.
            let report = RotationReport {
                in_progress: vec![
                    "order: Secret shop-order-db switched to login os_shopns_shop_order_b; rolling shop-order"
                        .into(),
                    "invoicing: Secret shop-invoicing-db switched to login os_shopns_shop_invoicing_b; \
                     os_shopns_shop_invoicing stays enabled until every pod of shop-invoicing runs with it"
                        .into(),
                ],
                ..Default::default()
            };
            only(
                PROGRESSING,
                Reconcile::healthy().with(|r| r.rotation = Some(Ok(report))),
                "a rotation under way",
            )
        }
        Reason::WaitingForTopic => only(
            PROGRESSING,
            Reconcile::healthy().with(|r| {
                r.observed.topic_ready = false;
                r.observed.deployed.clear();
            }),
            "a first rollout before the topic",
        ),
        Reason::WaitingForDatabase => only(
            PROGRESSING,
            Reconcile::healthy().with(|r| {
                r.observed.schemas_ready.clear();
                r.observed.deployed.clear();
            }),
            "a first rollout before the schemas",
        ),
        Reason::WaitingForConsumers => only(
            PROGRESSING,
            Reconcile::healthy().with(|r| r.observed.deployed.clear()),
            "order's first rollout before the consumers'",
        ),
        Reason::RolloutComplete => only(PROGRESSING, Reconcile::healthy(), "everything ready"),
        Reason::RollingOut => only(
            PROGRESSING,
            Reconcile::healthy().with(|r| r.deployment(Service::Order).rolled_out = false),
            "order rolls out",
        ),
        Reason::TransientError => {
            let mut cases = kafka_failures(DEGRADED, any);
            cases.extend(postgres_failures(DEGRADED));
            for error in apply_errors() {
                let what = format!("apply: {error:?}");
                cases.push(
                    Reconcile::healthy()
                        .with(|r| r.applied = Some(Err(error)))
                        .case(DEGRADED, what),
                );
            }
            for error in apply_errors() {
                let what = format!("list: {error:?}");
                cases.push(
                    Reconcile::healthy()
                        .with(|r| r.world.deployments = Err(error))
                        .case(DEGRADED, what),
                );
            }
            for error in lag_errors() {
                let what = format!("lag: {error:?}");
                cases.push(
                    Reconcile::healthy()
                        .with(|r| {
                            if let Some(Ok(seen)) = &mut r.world.kafka {
                                seen.lag = Some(Err(error));
                            }
                        })
                        .case(DEGRADED, what),
                );
            }
            cases
        }
        Reason::TopicMissing => vec![
            Reconcile::healthy()
                .with(|r| {
                    r.topic = Some(Ok(topic(TopicState::Deleted {
                        topic_id: "J2ZTpmYuQ7a3wSNVqzOKzw".into(),
                    })))
                })
                .case(DEGRADED, "the topic vanished"),
        ],
        Reason::TopicRecreated => vec![
            Reconcile::healthy()
                .with(|r| {
                    r.topic = Some(Ok(topic(TopicState::IdChanged {
                        known: "J2ZTpmYuQ7a3wSNVqzOKzw".into(),
                        actual: "Qm9vdHN0cmFwcGVkSWQx".into(),
                    })))
                })
                .case(DEGRADED, "the topic was replaced"),
        ],
        Reason::ConsumersExceedPartitions => only(
            DEGRADED,
            Reconcile::of(&MINIMAL.replace("invoicing: {replicas: 2}", "invoicing: {replicas: 5}")),
            "five invoicing pods on three partitions",
        ),
        Reason::ConsumerLagGrowing => {
            let growing = Reconcile::healthy().with(|r| {
                let spec = r.os.spec.consumer_lag.clone();
                let before = |group: &str| GroupLagStatus {
                    group: group.into(),
                    lag: spec.threshold + 10,
                    growing_observations: spec.observations,
                };
                r.os.status = Some(crate::crd::OrderSystemStatus {
                    consumer_lag: Some(ConsumerLagStatus {
                        total: 2 * (spec.threshold + 10),
                        invoicing: before("shopns.shop.invoicing"),
                        shipping: before("shopns.shop.shipping"),
                    }),
                    ..Default::default()
                });
                if let Some(Ok(seen)) = &mut r.world.kafka {
                    seen.lag = Some(Ok(BTreeMap::from([
                        (Service::Invoicing, spec.threshold + 50),
                        (Service::Shipping, spec.threshold + 20),
                    ])));
                }
            });
            only(DEGRADED, growing, "both groups fall behind")
        }
        Reason::InvalidRotationRequest => {
            // The rotation's words (see `rotation::invalid_request`) for a request naming no service.
            let report = RotationReport {
                invalid_request: Some(format!(
                    "{}=\"orders\" names no service (order, invoicing or shipping)",
                    crate::names::ROTATE_CREDENTIALS_ANNOTATION
                )),
                ..Default::default()
            };
            only(
                DEGRADED,
                Reconcile::healthy().with(|r| r.rotation = Some(Ok(report))),
                "a rotation request naming no service",
            )
        }
        Reason::CompactionLosesHistory => {
            let compacted = |policy: &str| {
                Reconcile::of(&MINIMAL.replace(
                    "partitions: 3, config: {retention.ms: \"1000\"}",
                    &format!("partitions: 3, cleanupPolicy: \"{policy}\""),
                ))
            };
            vec![
                compacted("compact").case(DEGRADED, "compact"),
                compacted("compact,delete").case(DEGRADED, "compact,delete"),
            ]
        }
        Reason::AsExpected => only(DEGRADED, Reconcile::healthy(), "everything ready"),
        Reason::FullyReplicated => vec![
            Reconcile::healthy().case(DURABILITY_REDUCED, "one replica, in sync"),
            replicated(&[1, 2, 3]).case(DURABILITY_REDUCED, "three replicas, in sync"),
        ],
        Reason::UnderReplicated => only(DURABILITY_REDUCED, replicated(&[1, 2]), "a broker of three gone"),
        Reason::BelowMinInsyncReplicas => {
            only(DURABILITY_REDUCED, replicated(&[1]), "two brokers of three gone")
        }
        Reason::PartitionsOffline => only(DURABILITY_REDUCED, replicated(&[]), "every broker gone"),
        Reason::Paused => only(
            PAUSED,
            Reconcile::of(&MINIMAL.replace("spec:\n", "spec:\n  paused: true\n")),
            "paused",
        ),
        Reason::Reconciling => only(PAUSED, Reconcile::healthy(), "everything ready"),
    }
}

fn now() -> Time {
    Time(Timestamp::from_second(1_800_000_000).expect("a valid time"))
}

#[test]
fn every_reason_is_reached_with_a_readable_message_in_every_condition() {
    for reason in Reason::ALL {
        let cases = cases(reason);
        assert!(!cases.is_empty(), "{reason}: no case");
        for case in cases {
            let status = compute(&case.os, &case.report, now());
            let shown = status
                .conditions
                .iter()
                .find(|c| c.type_ == case.condition)
                .expect("every condition is listed");
            assert_eq!(
                shown.reason,
                reason.as_str(),
                "{} ({}): {}",
                case.condition,
                case.what,
                shown.message
            );
            for condition in &status.conditions {
                if let Some(problem) = unreadable(&condition.message) {
                    panic!(
                        "{reason} ({}), {} {}: unreadable message ({problem}): {}",
                        case.what, condition.type_, condition.reason, condition.message
                    );
                }
            }
        }
    }
}

#[test]
fn a_missing_admin_secret_is_named_with_the_api_servers_sentence() {
    let (os, report) = postgres_failed_to_read(postgres::Error::ReadAdminSecret {
        name: "no-such-secret".into(),
        source: secret_not_found("no-such-secret"),
    })
    .report();
    let status = compute(&os, &report, now());
    let database = status
        .conditions
        .iter()
        .find(|c| c.type_ == DATABASE_READY)
        .expect("listed");
    assert_eq!(database.reason, "PostgresUnavailable");
    assert_eq!(
        database.message,
        "failed to read admin Secret no-such-secret: secrets \"no-such-secret\" not found; create it in this \
         resource's namespace, or name the Secret that holds the admin connection in \
         spec.postgres.adminSecretRef"
    );
    let ready = status
        .conditions
        .iter()
        .find(|c| c.type_ == READY)
        .expect("listed");
    assert_eq!(
        (ready.reason.as_str(), ready.message.as_str()),
        ("DatabaseNotReady", database.message.as_str())
    );
}

#[test]
fn an_error_that_repeats_its_source_says_it_once() {
    let connect = postgres::Error::Connect {
        host: "db".into(),
        port: 5432,
        source: refused(),
    };
    assert_eq!(
        describe_error(&connect),
        "failed to connect to Postgres at db:5432: error communicating with database: Connection refused \
         (os error 111)"
    );
    let refused_login = postgres::Error::Connect {
        host: "db".into(),
        port: 5432,
        source: server_answer(
            "password authentication failed for user \"ordersystem_admin\"",
            334,
        ),
    };
    assert_eq!(
        describe_error(&refused_login),
        "failed to connect to Postgres at db:5432: error returned from database: password authentication \
         failed for user \"ordersystem_admin\"",
        "the server's sentence, not the line of its source code"
    );
    let watermarks = &lag_errors()[3];
    assert_eq!(
        describe_error(watermarks),
        "failed to read the offsets of partition 2 of topic orders: Meta data fetch error: \
         OperationTimedOut (Local: Timed out)"
    );
    let list = apply::Error::ListDeployments {
        source: unreachable_api_server(),
    };
    assert_eq!(
        describe_error(&list),
        "failed to list Deployments: the request to the API server failed: Connection refused (os error 111)"
    );
}

/// Every kind of error a reconcile returns, as the failure Event's note says it.
#[test]
fn every_failure_event_note_is_readable() {
    let mut errors: Vec<Error> = Vec::new();
    errors.extend(kafka_errors().into_iter().map(Error::Kafka));
    errors.extend(lag_errors().into_iter().map(Error::Lag));
    errors.extend(postgres_errors().into_iter().map(Error::Postgres));
    errors.extend(tls_errors().into_iter().map(Error::Postgres));
    errors.extend(rotation_errors().into_iter().map(Error::Rotation));
    errors.extend(apply_errors().into_iter().map(Error::Apply));
    errors.push(Error::Status {
        name: "shop".into(),
        source: modified("ordersystems.ordersystem.io", "shop"),
    });
    errors.push(Error::Drain(describe_error(&lag_errors()[1])));
    errors.push(Error::TopicUnconfirmed(format!(
        "reading OrderSystem shop for the topic id it recorded failed: {}",
        describe_error(&unreachable_api_server())
    )));
    errors.push(Error::Finalizer(Box::new(finalizer::Error::AddFinalizer(
        modified("ordersystems.ordersystem.io", "shop"),
    ))));
    errors.push(Error::Finalizer(Box::new(finalizer::Error::RemoveFinalizer(
        unreachable_api_server(),
    ))));
    errors.push(Error::Finalizer(Box::new(finalizer::Error::UnnamedObject)));
    for error in &errors {
        let note = describe_error(error);
        if let Some(problem) = unreadable(&note) {
            panic!("{error:?}: unreadable note ({problem}): {note}");
        }
    }
    assert_eq!(
        describe_error(&Error::Finalizer(Box::new(finalizer::Error::AddFinalizer(
            modified("ordersystems.ordersystem.io", "shop")
        )))),
        "failed to add finalizer: Operation cannot be fulfilled on ordersystems.ordersystem.io \"shop\": the \
         object has been modified; please apply your changes to the latest version and try again"
    );
}

/// The checker is worth something only if it catches what `{:?}` and kube's own rendering write.
#[test]
fn the_checker_refuses_debug_renderings_of_the_errors_above() {
    // A variant without fields prints as its bare name: no dump to catch.
    fn debug<E: std::fmt::Debug>(errors: Vec<E>) -> impl Iterator<Item = String> {
        errors
            .into_iter()
            .map(|e| format!("{e:?}"))
            .filter(|dump| dump.contains(['{', '(']))
    }
    let mut dumps: Vec<String> = Vec::new();
    dumps.extend(debug(kafka_errors()));
    dumps.extend(debug(postgres_errors()));
    dumps.extend(debug(tls_errors()));
    dumps.extend(debug(rotation_errors()));
    dumps.extend(debug(apply_errors()));
    dumps.extend(debug(lag_errors()));
    assert!(dumps.len() > 30, "the errors above are dumped");
    // kube's Display of an API answer carries the Debug of the whole Status.
    dumps.push(format!(
        "failed to read admin Secret x: {}",
        secret_not_found("x")
    ));
    dumps.push(format!("{:?}", Some("orders")));
    dumps.push(format!("lag unknown: {:?}", None::<i64>));
    dumps.push(format!("{:?}", std::io::Error::from_raw_os_error(111)));
    dumps.push(format!(
        "{:?}",
        std::io::Error::from(std::io::ErrorKind::ConnectionRefused)
    ));
    dumps.push(format!("{:?}", vec!["order", "shipping"]));
    for dump in dumps {
        assert!(unreadable(&dump).is_some(), "not caught: {dump}");
    }
    for fine in [
        "the topic does not exist (paused: not created)",
        "Took over the schema and role os_a_b_order of OrderSystem a/b",
        "failed to read admin Secret no-such-secret: secrets \"no-such-secret\" not found",
        "failed to create topic orders: Admin operation error: PolicyViolation (Broker: Policy violation)",
    ] {
        assert_readable(fine);
    }
}

/// The autoscaling messages (status `services.<service>.autoscaling.message` and the scaling Events'
/// notes), reached through `decide` and `Report::gather` from lag readings that lead to each reason.
#[test]
fn every_autoscaling_message_is_a_sentence() {
    use crate::controller::autoscale::ScaleReason;
    let autoscaled = MINIMAL.replace(
        "invoicing: {replicas: 2}",
        "invoicing: {autoscaling: {maxReplicas: 6, targetLagPerReplica: 10}}\n  shipping: {autoscaling: {external: true}}",
    );
    let with_lag = |lag: Option<i64>, current: i32| {
        Reconcile::of(&autoscaled).with(|r| {
            r.deployment(Service::Invoicing).desired = current;
            if let Some(Ok(seen)) = &mut r.world.kafka {
                seen.lag = Some(match lag {
                    Some(lag) => Ok(BTreeMap::from([
                        (Service::Invoicing, lag),
                        (Service::Shipping, 0),
                    ])),
                    None => Err(lag_errors().remove(0)),
                });
            }
        })
    };
    let mut reasons = std::collections::BTreeSet::new();
    for (lag, current) in [
        (Some(25), 1),
        (Some(10), 1),
        (Some(0), 3),
        (Some(1000), 3),
        (Some(1000), 2),
        (None, 2),
    ] {
        let (_, report) = with_lag(lag, current).report();
        for decision in &report.scaling {
            reasons.insert(decision.reason.as_str());
            assert_readable(&decision.message);
            assert!(decision.message.ends_with('.'), "{}", decision.message);
            assert!(
                decision.message.starts_with(char::is_uppercase),
                "{}",
                decision.message
            );
        }
    }
    for reason in [
        ScaleReason::ScaledUp,
        ScaleReason::ScaledDown,
        ScaleReason::Steady,
        ScaleReason::CappedByPartitions,
        ScaleReason::LagUnknown,
        ScaleReason::External,
    ] {
        assert!(reasons.contains(reason.as_str()), "{reason} reached: {reasons:?}");
    }
}
