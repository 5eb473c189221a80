//! Test support for the control-plane and end-to-end tests: a kube client for the local control plane,
//! the Kubernetes version this workspace is compiled for, waits with deadlines, the real node and the two
//! modes of the end-to-end tests, and a client of the running shop. Kafka/Postgres lookups and names are in `ordersystem-testkit`, re-exported.

pub mod chart_rbac;
pub mod cluster;
pub mod kube;
pub mod mode;
pub mod real_node;
pub mod shop;
pub mod versions;
pub mod wait;

pub use ordersystem_testkit::{env, kafka, names, own_instance, secure_kafka};
