//! What every service needs and what must be fixed in one place: configuration pieces, telemetry, the
//! health and metrics endpoints, graceful shutdown, and the delivery machinery (the consumer loop that
//! invoicing and shipping give a handler, and the outbox relay that order runs) with the tables it runs,
//! created by the kit's own migrations (`consumer::store::MIGRATOR`, `relay::store::MIGRATOR`).

// The shared templates name the kit by its crate name, which must resolve in the kit's own templates too.
extern crate self as ordersystem_service_kit;

pub mod batch;
pub mod config;
pub mod consumer;
pub mod consumer_service;
pub mod db;
pub mod dead_letters;
pub mod failpoints;
pub mod health;
pub mod kafka;
pub mod keyed;
pub mod metrics;
pub mod money;
pub mod pages;
pub mod paging;
pub mod problem;
pub mod process;
pub mod public;
pub mod relay;
pub mod shutdown;
pub mod telemetry;
