//! The order service.

fn main() {
    println!(
        "ordersystem-order: listens on port {}",
        ordersystem_contract::wiring::HTTP_PORT
    );
}
