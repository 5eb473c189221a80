//! Test support for the control-plane and end-to-end tests: a kube client for the local control plane and
//! the Kubernetes version this workspace is compiled for. Kafka/Postgres lookups and names are in
//! `ordersystem-testkit`, re-exported here.

pub mod kube;
pub mod versions;

pub use ordersystem_testkit::{env, names};
