//! Test support shared by every crate's integration tests and the benchmarks (services included, so no
//! Kubernetes here): where the real components are, unique names per test, a service's own schema and role,
//! a TCP proxy that can cut a connection on demand, a test's own instance of a component to stop and start,
//! a service run in-process or as a process, and the one way to wait.

pub mod env;
pub mod events;
pub mod kafka;
pub mod metrics;
pub mod names;
pub mod orders;
pub mod otlp;
pub mod own_instance;
pub mod process;
pub mod proxy;
pub mod schema;
pub mod secure_kafka;
pub mod service;
pub mod wait;
