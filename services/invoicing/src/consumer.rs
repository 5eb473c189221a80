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

    async fn store(
        &self,
        conn: &mut PgConnection,
        events: &[InvoiceView],
    ) -> Result<Vec<Stored>, sqlx::Error> {
        let rows: Vec<Invoice> = events.iter().map(Invoice::from_event).collect();
        store::insert_all(conn, &rows).await
    }
}
