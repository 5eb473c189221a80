//! The OrderSystem API: the `OrderSystem` custom resource (`ordersystem.io/v1alpha1`) with its security
//! types, the conditions and reasons of its status, and every name the operator gives or recognises. The
//! operator builds on it; the end-to-end tests and the benchmark use it without the operator's Kafka and
//! PostgreSQL clients.

pub mod conditions;
pub mod crd;
pub mod names;
