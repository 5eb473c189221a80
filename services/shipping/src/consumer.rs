//! The shipping handler for the shared consumer loop: `ShipmentView` (only what shipping keeps) → shipment →
//! store, nothing else.

use crate::domain::Shipment;
use crate::store;
use ordersystem_contract::ShipmentView;
use ordersystem_service_kit::consumer::{Handler, Stored};
use sqlx::PgConnection;

pub struct ShipmentHandler;

impl Handler for ShipmentHandler {
    type Event = ShipmentView;

    async fn store(&self, tx: &mut PgConnection, event: &ShipmentView) -> Result<Stored, sqlx::Error> {
        store::insert(tx, &Shipment::from_event(event)).await
    }
}
