//! The shipping service.

fn main() {
    println!(
        "ordersystem-shipping: listens on port {}",
        ordersystem_contract::wiring::HTTP_PORT
    );
}
