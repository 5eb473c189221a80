//! Test support shared by every crate's integration tests (services included, so no Kubernetes here):
//! where the real components are, unique names per test, a service's own schema and role, and a TCP
//! proxy that can cut a connection on demand, and a test's own instance of a component to stop and start.

pub mod env;
pub mod kafka;
pub mod metrics;
pub mod names;
pub mod own_instance;
pub mod proxy;
pub mod schema;
pub mod secure_kafka;
pub mod wait;
