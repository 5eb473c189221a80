//! The contract between the services and with the operator: the event on the topic and the wiring
//! (environment variable names, ports, probe paths), and the build every binary reports. serde only, so every
//! crate can depend on it.

pub mod build;
pub mod event;
pub mod partition;
pub mod view;
pub mod wiring;

pub use event::{Address, Customer, DecodeError, EventView, Item, OrderLine, OrderPlaced, Price};
pub use view::{InvoiceView, ShipmentView};
