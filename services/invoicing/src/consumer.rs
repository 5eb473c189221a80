//! The invoicing handler for the shared consumer loop: `InvoiceView` (only what invoicing keeps: email,
//! billing address and prices included) → invoice → store, nothing else.

use crate::domain::Invoice;
use ordersystem_contract::InvoiceView;
use ordersystem_service_kit::consumer::{Handler, Written};
use ordersystem_service_kit::keyed;
use sqlx::PgConnection;

pub struct InvoiceHandler;

impl Handler for InvoiceHandler {
    type Event = InvoiceView;
    const DONE: &'static str = "invoiced";

    async fn store(&self, conn: &mut PgConnection, events: &[InvoiceView]) -> Result<Written, sqlx::Error> {
        let rows: Vec<Invoice> = events.iter().map(Invoice::from_event).collect();
        keyed::insert_all(conn, &rows).await
    }
}
