//! The reconciler of `OrderSystem`: observe → validate → backends → build → apply → status.

pub mod build;
pub mod kafka;
pub mod postgres;
pub mod validate;
