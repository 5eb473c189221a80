//! Where the tests find the real components: environment variables written by `e2e/infra/up.sh` into
//! `$ORDERSYSTEM_STATE/env` (default `/tmp/ordersystem/env`). A missing component is a test failure that
//! names the variable and the script that provides it, never a silent skip.

use std::path::PathBuf;

/// Kafka bootstrap servers, e.g. `127.0.0.1:19092`.
pub const KAFKA_BOOTSTRAP: &str = "KAFKA_BOOTSTRAP";
/// Postgres URL of the non-superuser admin role (CREATEROLE, CREATE on the database).
pub const DATABASE_URL: &str = "DATABASE_URL";
/// Kafka bootstrap servers as the real node's pods reach them, e.g. `kafka.ordersystem.internal:19094`.
pub const KAFKA_NODE_BOOTSTRAP: &str = "KAFKA_NODE_BOOTSTRAP";
/// The name under which the real node's pods reach the test PostgreSQL (its certificate names it too).
pub const POSTGRES_NODE_HOST: &str = "POSTGRES_NODE_HOST";

fn state_dir() -> PathBuf {
    std::env::var_os("ORDERSYSTEM_STATE").map_or_else(|| PathBuf::from("/tmp/ordersystem"), PathBuf::from)
}

/// The value of `name`, from the process environment or else from the env file the infra scripts wrote.
///
/// # Panics
/// When neither has it: the message names the variable and how to provide it.
pub fn require(name: &str) -> String {
    if let Ok(value) = std::env::var(name)
        && !value.is_empty()
    {
        return value;
    }
    let file = state_dir().join("env");
    let from_file = std::fs::read_to_string(&file).ok().and_then(|text| {
        text.lines().find_map(|line| {
            let line = line.strip_prefix("export ").unwrap_or(line);
            let (key, value) = line.split_once('=')?;
            (key == name).then(|| value.trim_matches('"').to_string())
        })
    });
    match from_file {
        Some(value) if !value.is_empty() => value,
        _ => panic!(
            "{name} is not set and {} does not define it: start the test infrastructure with \
             `e2e/infra/up.sh` (or run the tests through `./test.sh`)",
            file.display()
        ),
    }
}

/// Kafka bootstrap servers of the test broker.
pub fn kafka_bootstrap() -> String {
    require(KAFKA_BOOTSTRAP)
}

/// Postgres URL of the test admin role.
pub fn database_url() -> String {
    require(DATABASE_URL)
}

/// Kafka bootstrap servers of the test broker for the real node's pods (its bridge listener).
pub fn kafka_node_bootstrap() -> String {
    require(KAFKA_NODE_BOOTSTRAP)
}

/// Host name of the test PostgreSQL for the real node's pods.
pub fn postgres_node_host() -> String {
    require(POSTGRES_NODE_HOST)
}

/// Path of the test CA certificate that signed the Postgres server's certificate (`postgres.sh ca`).
pub const PG_TEST_CA: &str = "PG_TEST_CA";

/// The test CA of the Postgres server, for `sslmode=verify-full`.
pub fn postgres_ca() -> String {
    require(PG_TEST_CA)
}

/// The state directory of the infra scripts (`$ORDERSYSTEM_STATE`, default `/tmp/ordersystem`).
pub fn state() -> PathBuf {
    state_dir()
}
