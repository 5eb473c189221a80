//! Test support shared by every crate's integration tests (services included, so no Kubernetes here):
//! where the real components are, and unique names per test.

pub mod env;
pub mod names;
