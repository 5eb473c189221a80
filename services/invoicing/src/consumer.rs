//! The invoicing handler for the shared consumer loop: event → invoice → store, nothing else. Invoicing reads
//! the full `OrderPlaced` because it keeps email, billing address and prices, so an event lacking any of
//! them is dead-lettered here (while shipping, which needs none of them, stores it).

use crate::domain::Invoice;
use crate::store;
use ordersystem_contract::OrderPlaced;
use ordersystem_service_kit::consumer::{Handler, Stored};
use sqlx::PgConnection;

pub struct InvoiceHandler;

impl Handler for InvoiceHandler {
    type Event = OrderPlaced;

    async fn store(&self, tx: &mut PgConnection, event: &OrderPlaced) -> Result<Stored, sqlx::Error> {
        store::insert(tx, &Invoice::from_event(event)).await
    }
}
