//! The OrderSystem operator: reconciles an `OrderSystem` resource into a Kafka topic, Postgres schemas and
//! roles, and the Deployments of the order, invoicing and shipping services.

pub mod config;
pub mod controller;
pub mod install_check;
pub mod leader;
pub mod metrics;
pub mod run;
pub mod uninstall;
pub mod web;

/// The API types and names, from their own crate; re-exported so `crate::crd` and `crate::names` read as
/// before.
pub use ordersystem_api::{conditions, crd, names};
