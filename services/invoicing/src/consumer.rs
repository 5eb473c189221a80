//! The invoicing handler for the shared consumer loop: `InvoiceView` (only what invoicing keeps: email,
//! billing address and prices included) → invoice → store, nothing else.

use crate::domain::Invoice;
use crate::store;
use ordersystem_contract::InvoiceView;
use ordersystem_service_kit::consumer::{Handler, Stored};
use sqlx::PgConnection;

pub struct InvoiceHandler;

impl Handler for InvoiceHandler {
    type Event = InvoiceView;

    async fn store(&self, tx: &mut PgConnection, event: &InvoiceView) -> Result<Stored, sqlx::Error> {
        store::insert(tx, &Invoice::from_event(event)).await
    }
}
