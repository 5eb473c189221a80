//! Reading a service's `/metrics` the way Prometheus would.

/// The value of metric `name` (summed over its label sets) at `url`, 0 when absent.
///
/// # Panics
/// When the endpoint does not answer.
pub async fn scrape(url: &str, name: &str) -> f64 {
    let text = reqwest::get(url)
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .text()
        .await
        .unwrap_or_else(|e| panic!("GET {url} body: {e}"));
    text.lines()
        .filter(|line| line.starts_with(name) && line[name.len()..].starts_with(['{', ' ']))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}
