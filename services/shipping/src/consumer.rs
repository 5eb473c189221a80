//! The shipping handler for the shared consumer loop: event → shipment → store, nothing else.

use crate::domain::Shipment;
use crate::store;
use ordersystem_contract::OrderPlaced;
use ordersystem_service_kit::consumer::{Handler, Stored};
use sqlx::PgConnection;

pub struct ShipmentHandler;

impl Handler for ShipmentHandler {
    async fn store(&self, tx: &mut PgConnection, event: &OrderPlaced) -> Result<Stored, sqlx::Error> {
        store::insert(tx, &Shipment::from_event(event)).await
    }
}
