//! Where people reach the services: the public URL of each service's pages (the operator sets them from
//! `spec.expose`, one Ingress or HTTPRoute per service), the path a service serves its pages under, and
//! the links between the three services' pages.
//!
//! A service published at `https://shop.example.com/invoicing` serves `/invoicing/` and `/invoicing/42`
//! itself: an Ingress or a Gateway passes the path through unchanged, so no controller-specific rewrite
//! is needed. Probes, `/metrics` and every other path stay at the root as well.

use std::sync::OnceLock;

use axum::extract::{OriginalUri, Request, State};
use axum::http::Uri;
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use ordersystem_contract::wiring::env;

/// The services' public URLs, each only when the service is published.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct PublicUrls {
    /// Public URL of the order service's pages (`http(s)://host[/path]`); the operator sets it when
    /// `spec.expose` publishes the service. Its path is where order serves its pages.
    #[arg(long = "order-public-url", env = env::ORDER_PUBLIC_URL, value_parser = PublicUrl::parse)]
    pub order: Option<PublicUrl>,
    /// Public URL of the invoicing service's pages, as for order.
    #[arg(long = "invoicing-public-url", env = env::INVOICING_PUBLIC_URL, value_parser = PublicUrl::parse)]
    pub invoicing: Option<PublicUrl>,
    /// Public URL of the shipping service's pages, as for order.
    #[arg(long = "shipping-public-url", env = env::SHIPPING_PUBLIC_URL, value_parser = PublicUrl::parse)]
    pub shipping: Option<PublicUrl>,
}

/// An absolute `http` or `https` URL without query or fragment, kept without a trailing `/` after its
/// path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrl {
    /// `scheme://host[:port]`.
    origin: String,
    /// `` for the root, else `/a/b` (no trailing `/`).
    path: String,
}

impl PublicUrl {
    /// Accepts `http(s)://host[:port][/path]`, or says why not.
    pub fn parse(url: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
            .ok_or_else(|| format!("{url} is not an http:// or https:// URL"))?;
        if url.contains(['?', '#']) || url.chars().any(char::is_whitespace) {
            return Err(format!(
                "{url} has a query, a fragment or white space; give the scheme, host and path only"
            ));
        }
        let (host, path) = rest
            .split_once('/')
            .map_or((rest, ""), |(host, path)| (host, path));
        if host.is_empty() {
            return Err(format!("{url} has no host"));
        }
        let path = path.trim_end_matches('/');
        Ok(Self {
            origin: url[..url.len() - rest.len() + host.len()].to_string(),
            path: if path.is_empty() {
                String::new()
            } else {
                format!("/{path}")
            },
        })
    }

    /// The path this URL's service serves its pages under: empty for the root.
    pub fn base_path(&self) -> &str {
        &self.path
    }

    /// The URL of the service's first page (ending in `/`).
    pub fn home(&self) -> String {
        format!("{}{}/", self.origin, self.path)
    }
}

/// A link of the navigation bar every page shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub label: &'static str,
    pub href: String,
}

/// What the pages of one service need to know of the site: the path it serves under and the navigation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Site {
    /// Empty, or `/path` without a trailing `/`.
    pub base_path: String,
    /// Its own first page, then the other published services' pages.
    pub nav: Vec<Link>,
}

impl PublicUrls {
    /// The site as `own` (`order`, `invoicing` or `shipping`) sees it.
    pub fn site(&self, own: &str) -> Site {
        let services = [
            ("order", "Orders", &self.order),
            ("invoicing", "Invoices", &self.invoicing),
            ("shipping", "Shipments", &self.shipping),
        ];
        let base_path = services
            .iter()
            .find(|(name, ..)| *name == own)
            .and_then(|(_, _, url)| url.as_ref())
            .map(|url| url.base_path().to_string())
            .unwrap_or_default();
        let mut nav = vec![Link {
            label: "Home",
            href: format!("{base_path}/"),
        }];
        nav.extend(
            services
                .iter()
                .filter(|(name, ..)| *name != own)
                .filter_map(|(_, label, url)| {
                    Some(Link {
                        label,
                        href: url.as_ref()?.home(),
                    })
                }),
        );
        Site { base_path, nav }
    }
}

static NAV: OnceLock<Vec<Link>> = OnceLock::new();

/// Makes `site`'s navigation the one every page of this process shows; the first call wins.
pub fn init(site: &Site) {
    let _ = NAV.set(site.nav.clone());
}

/// The navigation every page shows (`base.html`): only "Home" at `/` before [`init`].
pub fn nav() -> &'static [Link] {
    NAV.get_or_init(|| PublicUrls::default().site("").nav)
}

/// Middleware in front of the router: a request under `base` is routed as if `base` were not there, the
/// bare `base` is redirected to `base/` (so the pages' relative links resolve under it), anything else
/// (probes, `/metrics`) passes unchanged.
pub async fn strip_base_path(State(base): State<String>, mut request: Request, next: Next) -> Response {
    if base.is_empty() {
        return next.run(request).await;
    }
    let path = request.uri().path();
    if path == base {
        let query = request.uri().query().map(|q| format!("?{q}")).unwrap_or_default();
        return Redirect::permanent(&format!("{base}/{query}")).into_response();
    }
    if let Some(rest) = path
        .strip_prefix(base.as_str())
        .filter(|rest| rest.starts_with('/'))
    {
        let rewritten = match request.uri().query() {
            Some(query) => format!("{rest}?{query}"),
            None => rest.to_string(),
        };
        if let Ok(uri) = rewritten.parse::<Uri>() {
            // The access log names the path as it was requested; the router keeps an `OriginalUri` it finds.
            let original = OriginalUri(request.uri().clone());
            request.extensions_mut().insert(original);
            *request.uri_mut() = uri;
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_public_url_gives_its_path_and_first_page() {
        let url = PublicUrl::parse("https://shop.example.com/invoicing/").expect("valid");
        assert_eq!(url.base_path(), "/invoicing");
        assert_eq!(url.home(), "https://shop.example.com/invoicing/");
        let root = PublicUrl::parse("http://shop.example.com:8443").expect("valid");
        assert_eq!(root.base_path(), "");
        assert_eq!(root.home(), "http://shop.example.com:8443/");
        for bad in ["shop.example.com", "ftp://x/", "https:///path", "https://x/?a=1"] {
            assert!(PublicUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_service_links_home_under_its_path_and_to_the_published_others() {
        let urls = PublicUrls {
            order: PublicUrl::parse("https://shop.example.com/").ok(),
            invoicing: PublicUrl::parse("https://shop.example.com/invoicing").ok(),
            shipping: None,
        };
        let site = urls.site("invoicing");
        assert_eq!(site.base_path, "/invoicing");
        let nav: Vec<_> = site.nav.iter().map(|l| (l.label, l.href.as_str())).collect();
        assert_eq!(
            nav,
            vec![("Home", "/invoicing/"), ("Orders", "https://shop.example.com/")]
        );
        let unpublished = PublicUrls::default().site("shipping");
        assert_eq!(unpublished.base_path, "");
        assert_eq!(
            unpublished.nav,
            vec![Link {
                label: "Home",
                href: "/".into()
            }]
        );
    }

    /// The router behind the middleware, as `health::serve` puts it, answering with the path it routed.
    async fn get(base: &str, path: &str) -> (u16, String) {
        use axum::routing::get;
        let router = axum::Router::new().route("/", get(|| async { "list" })).route(
            "/{id}",
            get(|axum::extract::Path(id): axum::extract::Path<String>| async move { id }),
        );
        let strip = axum::middleware::from_fn_with_state(base.to_string(), strip_base_path);
        let app = tower::Layer::layer(&strip, router);
        let request = Request::get(path)
            .body(axum::body::Body::empty())
            .expect("request");
        let response = tower::ServiceExt::oneshot(app, request)
            .await
            .expect("infallible");
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get("location")
            .map(|l| l.to_str().unwrap().to_string());
        let body = axum::body::to_bytes(response.into_body(), 1024)
            .await
            .expect("body");
        let body = String::from_utf8_lossy(&body).to_string();
        (status, location.unwrap_or(body))
    }

    #[tokio::test]
    async fn pages_are_served_under_the_base_path_and_everything_else_at_the_root() {
        assert_eq!(get("/invoicing", "/invoicing/").await, (200, "list".into()));
        assert_eq!(get("/invoicing", "/invoicing/42").await, (200, "42".into()));
        assert_eq!(
            get("/invoicing", "/invoicing?x=1").await,
            (308, "/invoicing/?x=1".into())
        );
        assert_eq!(
            get("/invoicing", "/healthz").await,
            (200, "healthz".into()),
            "probes stay at the root"
        );
        assert_eq!(
            get("/invoicing", "/invoicingx").await,
            (200, "invoicingx".into()),
            "not under the path"
        );
        assert_eq!(get("", "/42").await, (200, "42".into()));
    }
}
