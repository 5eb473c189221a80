//! Orders as a client places them through the order service's JSON API.

use serde_json::Value;

/// Posts `order` to `/api/orders` of the order service at `base_url`; returns the created order.
///
/// # Panics
/// When the service does not answer 201 Created with a JSON body (the message shows what it answered).
pub async fn place(client: &reqwest::Client, base_url: &str, order: &Value) -> Value {
    let url = format!("{base_url}/api/orders");
    let response = client.post(&url).json(order).send().await;
    let response = response.unwrap_or_else(|e| panic!("POST {url}: {e}"));
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    assert_eq!(status, 201, "POST {url} refused {order}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("POST {url} answered no JSON ({e}): {body}"))
}
