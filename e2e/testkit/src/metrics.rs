//! Reading a service's `/metrics` the way Prometheus would.

/// The value of metric `name` (summed over its label sets; a counter's `_total` sample counts as `name`) at
/// `url`, 0 when absent (a labelled family before its first increment).
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
    sum(&text, name)
}

/// The value of metric `name` in `text`, the Prometheus text format (summed over its label sets; a
/// counter's `_total` sample counts as `name`), 0 when absent.
pub fn sum(text: &str, name: &str) -> f64 {
    text.lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?;
            let rest = rest.strip_prefix("_total").unwrap_or(rest);
            rest.starts_with(['{', ' ']).then_some(line)
        })
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .fold(0.0, |sum, value| sum + value)
}
