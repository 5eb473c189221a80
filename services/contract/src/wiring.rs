//! The names the operator sets in a service's pod and the service reads, defined once. The operator builds
//! its pod specs from these constants and each service's `Config` reads them, so the two cannot drift.

/// Port every service listens on inside its pod.
pub const HTTP_PORT: u16 = 8080;
/// Liveness: answers while the process runs; never checks dependencies.
pub const HEALTHZ_PATH: &str = "/healthz";
/// Readiness: the service's database is reachable and migrated.
pub const READYZ_PATH: &str = "/readyz";
/// Prometheus text format.
pub const METRICS_PATH: &str = "/metrics";

/// Environment variables of every service.
pub mod env {
    /// Socket address to listen on. The operator sets `0.0.0.0:8080`: probes and Services reach the pod
    /// IP, `kubectl port-forward` reaches localhost.
    pub const LISTEN_ADDR: &str = "LISTEN_ADDR";
    /// `json` (in a cluster) or `text`.
    pub const LOG_FORMAT: &str = "LOG_FORMAT";
    /// Postgres host, port, database, login role, password and the service's own schema.
    pub const DATABASE_HOST: &str = "DATABASE_HOST";
    pub const DATABASE_PORT: &str = "DATABASE_PORT";
    pub const DATABASE_NAME: &str = "DATABASE_NAME";
    pub const DATABASE_USER: &str = "DATABASE_USER";
    pub const DATABASE_PASSWORD: &str = "DATABASE_PASSWORD";
    pub const DATABASE_SCHEMA: &str = "DATABASE_SCHEMA";
    /// libpq-style `sslmode`: disable | prefer | require | verify-ca | verify-full.
    pub const DATABASE_SSLMODE: &str = "DATABASE_SSLMODE";
    /// Kafka bootstrap servers and the order topic.
    pub const KAFKA_BOOTSTRAP_SERVERS: &str = "KAFKA_BOOTSTRAP_SERVERS";
    pub const KAFKA_TOPIC: &str = "KAFKA_TOPIC";
    /// Consumer group id of invoicing or shipping; the operator sets `<namespace>.<name>.<service>`.
    pub const KAFKA_GROUP_ID: &str = "KAFKA_GROUP_ID";
    /// `consumer` (KIP-848) or `classic` (cooperative-sticky).
    pub const KAFKA_GROUP_PROTOCOL: &str = "KAFKA_GROUP_PROTOCOL";
    /// How often the Kafka clients refresh topic metadata (`topic.metadata.refresh.interval.ms`), so added
    /// partitions are picked up; default 30000.
    pub const KAFKA_METADATA_REFRESH_MS: &str = "KAFKA_METADATA_REFRESH_MS";
    /// Tuning with working defaults; the operator need not set them.
    pub const DATABASE_MAX_CONNECTIONS: &str = "DATABASE_MAX_CONNECTIONS";
    pub const KAFKA_SESSION_TIMEOUT_MS: &str = "KAFKA_SESSION_TIMEOUT_MS";
    pub const KAFKA_MAX_POLL_INTERVAL_MS: &str = "KAFKA_MAX_POLL_INTERVAL_MS";
    pub const RETRY_BACKOFF_MS: &str = "RETRY_BACKOFF_MS";
    pub const RETRY_BACKOFF_MAX_MS: &str = "RETRY_BACKOFF_MAX_MS";
    pub const OUTBOX_MESSAGE_TIMEOUT_MS: &str = "OUTBOX_MESSAGE_TIMEOUT_MS";
    pub const OUTBOX_POLL_MS: &str = "OUTBOX_POLL_MS";
}

/// The topic name the services use when none is configured (the reference's topic).
pub const DEFAULT_TOPIC: &str = "order";

/// Keys of the per-service database Secret the operator creates (and of the admin Secret it reads; the
/// CloudNativePG names `user` and `dbname` are accepted there too).
pub mod secret_keys {
    pub const HOST: &str = "host";
    pub const PORT: &str = "port";
    pub const DBNAME: &str = "dbname";
    pub const USERNAME: &str = "username";
    pub const PASSWORD: &str = "password";
    pub const SCHEMA: &str = "schema";
}
