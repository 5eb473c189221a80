//! The whole shop against the real broker and database: order, invoicing and shipping together, in-process
//! (`support`) or as processes killed and restarted under a stream of orders (`faults`). An order becomes
//! exactly one invoice and one shipment whatever happens on the way.

mod browser;
mod crash;
mod dead_letters;
mod faults;
mod flow;
mod hostile_orders;
mod pages;
mod postgres_restart;
mod problems;
mod rebalance;
mod support;
mod tolerant_reader;
mod tracing;
mod upgrade;
