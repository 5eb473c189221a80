//! The shipping handler for the shared consumer loop: `ShipmentView` (only what shipping keeps) → shipment →
//! store, nothing else.

use crate::domain::Shipment;
use ordersystem_contract::ShipmentView;
use ordersystem_service_kit::consumer::{Handler, Written};
use ordersystem_service_kit::keyed;
use sqlx::PgConnection;

pub struct ShipmentHandler;

impl Handler for ShipmentHandler {
    type Event = ShipmentView;
    const DONE: &'static str = "shipped";

    async fn store(&self, conn: &mut PgConnection, events: &[ShipmentView]) -> Result<Written, sqlx::Error> {
        let rows: Vec<Shipment> = events.iter().map(Shipment::from_event).collect();
        keyed::insert_all(conn, &rows).await
    }
}
