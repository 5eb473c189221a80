//! Test support for the control-plane and end-to-end tests: a kube client for the local control plane,
//! the Kubernetes version this workspace is compiled for, a control-plane test's namespace and the
//! `OrderSystem` it writes and waits on, the real node and the two modes of the end-to-end tests, a
//! Kafka cluster of a test's own, a real browser, a client of the running shop, and what the upgrade tests read of a running build. Kafka/Postgres lookups, names and
//! waits are in `ordersystem-testkit`, re-exported.

pub mod browser;
pub mod chart_rbac;
pub mod cluster;
pub mod control_plane;
pub mod kafka_cluster;
pub mod kube;
pub mod mode;
pub mod node_shop;
pub mod order_system;
pub mod real_node;
pub mod shop;
pub mod upgrade;
pub mod versions;

pub use ordersystem_testkit::{env, kafka, metrics, names, otlp, own_instance, secure_kafka, wait};
