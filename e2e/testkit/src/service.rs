//! A service run in-process (its `run` on a task of the test's runtime) against the real broker and
//! database, and the kit's settings a test gives it: its own schema and role, a port of its own, short
//! consumer timeouts so a group notices a lost member quickly.

use crate::schema::ServiceDb;
use crate::wait;
use ordersystem_service_kit::config::{
    ConsumerArgs, ConsumerConfig, DatabaseArgs, GroupProtocol, HttpArgs, KafkaArgs, LogArgs, LogFormat,
};
use ordersystem_service_kit::shutdown::{self, Shutdown, Trigger};
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::task::JoinHandle;

/// The service's own login and schema on the database `db` names.
pub fn database_args(db: &ServiceDb) -> DatabaseArgs {
    DatabaseArgs {
        host: db.host.clone(),
        port: db.port,
        name: db.name.clone(),
        user: db.user.clone(),
        password: db.password.clone().into(),
        schema: db.schema.clone(),
        sslmode: "prefer".into(),
        sslrootcert: None,
        max_connections: 5,
    }
}

/// `topic` on the broker at `bootstrap`, metadata refreshed every 5 s.
pub fn kafka_args(bootstrap: &str, topic: &str) -> KafkaArgs {
    KafkaArgs {
        bootstrap_servers: bootstrap.into(),
        topic: topic.into(),
        metadata_refresh_ms: 5_000,
        security: Default::default(),
    }
}

/// Group `group` of `protocol`, with timeouts short enough that a killed member is noticed quickly.
pub fn consumer_args(group: &str, protocol: GroupProtocol) -> ConsumerArgs {
    ConsumerArgs {
        group_id: Some(group.into()),
        group_protocol: Some(protocol),
        session_timeout_ms: 6_000,
        group_instance_id: None,
        max_poll_interval_ms: 10_000,
        retry_backoff_ms: 200,
        retry_backoff_max_ms: 1_000,
    }
}

/// Any free port on loopback (the test reads the bound address from its listener).
pub fn http_args() -> HttpArgs {
    HttpArgs {
        listen_addr: "127.0.0.1:0".parse().expect("address"),
        public: Default::default(),
    }
}

/// Plain text logs, as a developer reads them in a failed test's output.
pub fn log_args() -> LogArgs {
    LogArgs {
        log_format: LogFormat::Text,
    }
}

/// A consumer service's whole configuration (invoicing's and shipping's).
pub fn consumer_config(
    db: &ServiceDb,
    bootstrap: &str,
    topic: &str,
    consumer: ConsumerArgs,
) -> ConsumerConfig {
    ConsumerConfig {
        http: http_args(),
        database: database_args(db),
        kafka: kafka_args(bootstrap, topic),
        consumer,
        log: log_args(),
    }
}

/// A service running in this process.
pub struct Running {
    pub addr: SocketAddr,
    pub db: ServiceDb,
    stop: Trigger,
    task: JoinHandle<()>,
}

impl Running {
    /// Runs `run` (a service's `run` with its configuration) on a listener of its own, and waits until the
    /// service answers `/readyz`.
    ///
    /// # Panics
    /// When the service is not ready within 30 s, or (on its task) when `run` fails.
    pub async fn start<F, Fut, E>(db: ServiceDb, run: F) -> Running
    where
        F: FnOnce(tokio::net::TcpListener, Shutdown) -> Fut,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Debug,
    {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        Self::start_on(listener, db, run).await
    }

    /// As [`start`](Self::start), on `listener`, bound by the test (e.g. on the test bed's bridge, where a
    /// browser in its own network namespace reaches it, at a port the test already told the others).
    pub async fn start_on<F, Fut, E>(listener: tokio::net::TcpListener, db: ServiceDb, run: F) -> Running
    where
        F: FnOnce(tokio::net::TcpListener, Shutdown) -> Fut,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: std::fmt::Debug,
    {
        ordersystem_service_kit::telemetry::init(LogFormat::Text, "test");
        let addr = listener.local_addr().expect("address");
        let (stop, waiter) = shutdown::channel();
        let future = run(listener, waiter);
        let task = tokio::spawn(async move { future.await.expect("service ran") });
        let running = Running { addr, db, stop, task };
        let url = running.url("/readyz");
        wait::until("service ready", Duration::from_secs(30), || {
            let url = url.clone();
            async move { reqwest::get(&url).await.is_ok_and(|r| r.status().is_success()) }
        })
        .await;
        running
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// A metric's value from the service's `/metrics` (sum over label sets), 0 when absent.
    pub async fn metric(&self, name: &str) -> f64 {
        crate::metrics::scrape(&self.url("/metrics"), name).await
    }

    /// The count `sql` yields in the service's own schema.
    pub async fn count(&self, sql: &str) -> i64 {
        self.db.count(sql).await
    }

    /// Waits until `sql` (a count in the service's own schema) reaches `expected`.
    ///
    /// # Panics
    /// After 60 s.
    pub async fn wait_count(&self, sql: &str, expected: i64) {
        wait::until(
            &format!("{sql} = {expected}"),
            Duration::from_secs(60),
            || async { self.count(sql).await == expected },
        )
        .await;
    }

    /// Graceful shutdown, as on SIGTERM; waits until the service returned.
    ///
    /// # Panics
    /// When it has not returned within 30 s, or its task panicked.
    pub async fn stop(self) {
        self.stop.fire();
        tokio::time::timeout(Duration::from_secs(30), self.task)
            .await
            .expect("service stopped within 30 s")
            .expect("service task");
    }
}
