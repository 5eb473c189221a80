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
    /// Path of the CA certificate (PEM) the server's certificate must chain to (libpq `sslrootcert`).
    pub const DATABASE_SSLROOTCERT: &str = "DATABASE_SSLROOTCERT";
    /// Kafka bootstrap servers and the order topic.
    pub const KAFKA_BOOTSTRAP_SERVERS: &str = "KAFKA_BOOTSTRAP_SERVERS";
    pub const KAFKA_TOPIC: &str = "KAFKA_TOPIC";
    /// librdkafka `security.protocol`: plaintext | ssl | sasl_plaintext | sasl_ssl.
    pub const KAFKA_SECURITY_PROTOCOL: &str = "KAFKA_SECURITY_PROTOCOL";
    /// Paths (PEM) of the CA certificate of the brokers and of a client certificate and its key.
    pub const KAFKA_SSL_CA_LOCATION: &str = "KAFKA_SSL_CA_LOCATION";
    pub const KAFKA_SSL_CERTIFICATE_LOCATION: &str = "KAFKA_SSL_CERTIFICATE_LOCATION";
    pub const KAFKA_SSL_KEY_LOCATION: &str = "KAFKA_SSL_KEY_LOCATION";
    /// SASL mechanism (SCRAM-SHA-256, SCRAM-SHA-512, PLAIN) and the service's own Kafka identity.
    pub const KAFKA_SASL_MECHANISM: &str = "KAFKA_SASL_MECHANISM";
    pub const KAFKA_SASL_USERNAME: &str = "KAFKA_SASL_USERNAME";
    pub const KAFKA_SASL_PASSWORD: &str = "KAFKA_SASL_PASSWORD";
    /// Consumer group id of invoicing or shipping; the operator sets `<namespace>.<name>.<service>`.
    pub const KAFKA_GROUP_ID: &str = "KAFKA_GROUP_ID";
    /// Static group membership (`group.instance.id`): the consumer's stable name in its group, so under the
    /// classic protocol a restarted container takes its partitions back at once instead of after the
    /// session timeout (the kit's `config::Membership` says why not under KIP-848). The operator sets the
    /// pod's name.
    pub const KAFKA_GROUP_INSTANCE_ID: &str = "KAFKA_GROUP_INSTANCE_ID";
    /// `consumer` (KIP-848) or `classic` (cooperative-sticky).
    pub const KAFKA_GROUP_PROTOCOL: &str = "KAFKA_GROUP_PROTOCOL";
    /// How often the Kafka clients refresh topic metadata (`topic.metadata.refresh.interval.ms`), so added
    /// partitions are picked up; default 30000.
    pub const KAFKA_METADATA_REFRESH_MS: &str = "KAFKA_METADATA_REFRESH_MS";
    /// The public URL of each service's pages (an Ingress or HTTPRoute in front of it), when it has one:
    /// a service serves its pages under its own URL's path and links to the others by theirs.
    pub const ORDER_PUBLIC_URL: &str = "ORDER_PUBLIC_URL";
    pub const INVOICING_PUBLIC_URL: &str = "INVOICING_PUBLIC_URL";
    pub const SHIPPING_PUBLIC_URL: &str = "SHIPPING_PUBLIC_URL";
    /// Tracing: the OpenTelemetry SDK's standard variables, which the telemetry crate reads. Spans are
    /// exported over OTLP/HTTP (protobuf) to `OTEL_EXPORTER_OTLP_ENDPOINT` + `/v1/traces`, or to
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as it is; nothing is exported when neither is set, when
    /// `OTEL_SDK_DISABLED` is `true` or `OTEL_TRACES_EXPORTER` is `none`. The operator sets them from
    /// `spec.tracing`.
    pub const OTEL_EXPORTER_OTLP_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
    pub const OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
    /// `http/protobuf`, the only protocol the services speak.
    pub const OTEL_EXPORTER_OTLP_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
    pub const OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: &str = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL";
    /// The spans' `service.name` (default: the service's own name) and further resource attributes
    /// (`key=value,…`: the operator names the namespace, Deployment and pod).
    pub const OTEL_SERVICE_NAME: &str = "OTEL_SERVICE_NAME";
    pub const OTEL_RESOURCE_ATTRIBUTES: &str = "OTEL_RESOURCE_ATTRIBUTES";
    /// The pod's name, which the operator's `OTEL_RESOURCE_ATTRIBUTES` refers to as `$(OTEL_K8S_POD_NAME)`.
    pub const OTEL_K8S_POD_NAME: &str = "OTEL_K8S_POD_NAME";
    /// The sampler (`parentbased_traceidratio` from `spec.tracing.samplePercent`) and its ratio.
    pub const OTEL_TRACES_SAMPLER: &str = "OTEL_TRACES_SAMPLER";
    pub const OTEL_TRACES_SAMPLER_ARG: &str = "OTEL_TRACES_SAMPLER_ARG";
    pub const OTEL_TRACES_EXPORTER: &str = "OTEL_TRACES_EXPORTER";
    pub const OTEL_SDK_DISABLED: &str = "OTEL_SDK_DISABLED";
    /// Tuning with working defaults; the operator need not set them.
    pub const DATABASE_MAX_CONNECTIONS: &str = "DATABASE_MAX_CONNECTIONS";
    pub const KAFKA_SESSION_TIMEOUT_MS: &str = "KAFKA_SESSION_TIMEOUT_MS";
    pub const KAFKA_MAX_POLL_INTERVAL_MS: &str = "KAFKA_MAX_POLL_INTERVAL_MS";
    pub const RETRY_BACKOFF_MS: &str = "RETRY_BACKOFF_MS";
    pub const RETRY_BACKOFF_MAX_MS: &str = "RETRY_BACKOFF_MAX_MS";
    pub const OUTBOX_MESSAGE_TIMEOUT_MS: &str = "OUTBOX_MESSAGE_TIMEOUT_MS";
    pub const OUTBOX_POLL_MS: &str = "OUTBOX_POLL_MS";
    pub const OUTBOX_KEEP_SENT_S: &str = "OUTBOX_KEEP_SENT_S";

    /// What the operator sets in a service's container, so a user's `template.container.env` may not (the
    /// operator's build tests check every variable it sets is listed). The tuning knobs above are not: a
    /// user may set them.
    pub const SET_BY_OPERATOR: &[&str] = &[
        LISTEN_ADDR,
        LOG_FORMAT,
        DATABASE_HOST,
        DATABASE_PORT,
        DATABASE_NAME,
        DATABASE_USER,
        DATABASE_PASSWORD,
        DATABASE_SCHEMA,
        DATABASE_SSLMODE,
        DATABASE_SSLROOTCERT,
        KAFKA_BOOTSTRAP_SERVERS,
        KAFKA_TOPIC,
        KAFKA_SECURITY_PROTOCOL,
        KAFKA_SSL_CA_LOCATION,
        KAFKA_SSL_CERTIFICATE_LOCATION,
        KAFKA_SSL_KEY_LOCATION,
        KAFKA_SASL_MECHANISM,
        KAFKA_SASL_USERNAME,
        KAFKA_SASL_PASSWORD,
        KAFKA_GROUP_ID,
        KAFKA_GROUP_INSTANCE_ID,
        ORDER_PUBLIC_URL,
        INVOICING_PUBLIC_URL,
        SHIPPING_PUBLIC_URL,
        OTEL_EXPORTER_OTLP_ENDPOINT,
        OTEL_EXPORTER_OTLP_PROTOCOL,
        OTEL_SERVICE_NAME,
        OTEL_RESOURCE_ATTRIBUTES,
        OTEL_K8S_POD_NAME,
        OTEL_TRACES_SAMPLER,
        OTEL_TRACES_SAMPLER_ARG,
        crate::build::REVISION_ENV,
    ];
}

/// Where the operator mounts the Secrets with certificates in a service's container (read-only).
pub mod mounts {
    /// The brokers' CA certificate, `ca.crt`.
    pub const KAFKA_CA_DIR: &str = "/etc/ordersystem/kafka-ca";
    /// The Kafka client certificate, `tls.crt` and `tls.key`.
    pub const KAFKA_CLIENT_CERT_DIR: &str = "/etc/ordersystem/kafka-client";
    /// The Postgres server's CA certificate, `ca.crt`.
    pub const POSTGRES_CA_DIR: &str = "/etc/ordersystem/postgres-ca";
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
