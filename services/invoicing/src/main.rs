//! The invoicing service.

fn main() {
    println!(
        "ordersystem-invoicing: listens on port {}",
        ordersystem_contract::wiring::HTTP_PORT
    );
}
