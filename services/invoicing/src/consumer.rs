//! The invoicing handler for the shared consumer loop: event → invoice → store, nothing else.

use crate::domain::Invoice;
use crate::store;
use ordersystem_contract::OrderPlaced;
use ordersystem_service_kit::consumer::{Handler, Stored};
use sqlx::PgConnection;

pub struct InvoiceHandler;

impl Handler for InvoiceHandler {
    async fn store(&self, tx: &mut PgConnection, event: &OrderPlaced) -> Result<Stored, sqlx::Error> {
        store::insert(tx, &Invoice::from_event(event)).await
    }
}
