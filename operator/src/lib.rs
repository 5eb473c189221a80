//! The OrderSystem operator: reconciles an `OrderSystem` resource into a Kafka topic, Postgres schemas and
//! roles, and the Deployments of the order, invoicing and shipping services.

pub mod config;
pub mod controller;
pub mod crd;
pub mod metrics;
pub mod names;
pub mod web;
