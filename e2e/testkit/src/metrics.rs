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

/// The value of label `label` on the first sample of metric `name` in `text` (an info metric such as
/// `ordersystem_build_info{version="0.1.0",revision="…"} 1`); `None` when there is no such sample or label.
pub fn label(text: &str, name: &str, label: &str) -> Option<String> {
    let labels = text
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix('{'))?;
    let start = labels.find(&format!("{label}=\""))? + label.len() + 2;
    let value = &labels[start..];
    Some(value[..value.find('"')?].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_label_is_read_from_the_first_sample_of_its_metric() {
        let text = "# TYPE ordersystem_build info\n\
                    ordersystem_build_info{version=\"0.1.0\",revision=\"abc123\"} 1\n\
                    ordersystem_builds_total{revision=\"other\"} 3\n";
        assert_eq!(
            label(text, "ordersystem_build_info", "revision").as_deref(),
            Some("abc123")
        );
        assert_eq!(
            label(text, "ordersystem_build_info", "version").as_deref(),
            Some("0.1.0")
        );
        assert_eq!(label(text, "ordersystem_build_info", "commit"), None);
        assert_eq!(label(text, "ordersystem_missing_info", "revision"), None);
    }
}
