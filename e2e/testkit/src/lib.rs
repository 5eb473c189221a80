//! Test support shared by every crate's integration tests (services included, so no Kubernetes here):
//! where the real components are, unique names per test, a service's own schema and role, and a TCP
//! proxy that can cut a connection on demand.

pub mod env;
pub mod kafka;
pub mod metrics;
pub mod names;
pub mod proxy;
pub mod schema;
pub mod secure_kafka;
pub mod wait;
