//! Where people reach the services: the public URL of each service's pages (the operator sets them from
//! `spec.expose`, one Ingress or HTTPRoute per service), the path a service serves its pages under, and
//! the links between the three services' pages: the navigation, and from one order's page at one service
//! to the same order at the others (its order, invoice and shipment).
//!
//! A service published at `https://shop.example.com/invoicing` serves `/invoicing/` and `/invoicing/42`
//! itself: an Ingress or a Gateway passes the path through unchanged, so no controller-specific rewrite
//! is needed. Probes, `/metrics` and every other path stay at the root as well.

use std::sync::Arc;

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

/// What the pages of one service need to know of the site: the path it serves under, the navigation, and
/// where the other services show one order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Site {
    /// Empty, or `/path` without a trailing `/`.
    pub base_path: String,
    /// Its own first page, then the other published services' pages.
    pub nav: Vec<Link>,
    /// The other published services' first pages, labelled by what they show of one order ("Invoice");
    /// an order's record there is the first page followed by its id.
    pub records: Vec<Link>,
}

impl PublicUrls {
    /// The site as `own` (`order`, `invoicing` or `shipping`) sees it.
    pub fn site(&self, own: &str) -> Site {
        let services = [
            ("order", "Orders", "Order", &self.order),
            ("invoicing", "Invoices", "Invoice", &self.invoicing),
            ("shipping", "Shipments", "Shipment", &self.shipping),
        ];
        let base_path = services
            .iter()
            .find(|(name, ..)| *name == own)
            .and_then(|(.., url)| url.as_ref())
            .map(|url| url.base_path().to_string())
            .unwrap_or_default();
        let mut nav = vec![Link {
            label: "Home",
            href: format!("{base_path}/"),
        }];
        let others = services
            .iter()
            .filter(|(name, ..)| *name != own)
            .filter_map(|(_, list, record, url)| Some((*list, *record, url.as_ref()?.home())));
        let (mut records, mut others_nav) = (Vec::new(), Vec::new());
        for (list, record, home) in others {
            others_nav.push(Link {
                label: list,
                href: home.clone(),
            });
            records.push(Link {
                label: record,
                href: home,
            });
        }
        nav.extend(others_nav);
        Site {
            base_path,
            nav,
            records,
        }
    }
}

tokio::task_local! {
    /// The site of the service whose request is being answered, set by [`serve_site`]: in-process tests
    /// run the three services in one process, so it cannot be a global.
    static SITE: Arc<Site>;
}

/// `read` of the site of the request being answered; the default site (only "Home" at `/`) outside one.
fn with_site<T>(read: impl FnOnce(&Site) -> T) -> T {
    match SITE.try_with(Arc::clone) {
        Ok(site) => read(&site),
        Err(_) => read(&PublicUrls::default().site("")),
    }
}

/// The navigation every page shows (`base.html`).
pub fn nav() -> Vec<Link> {
    with_site(|site| site.nav.clone())
}

/// `path` (absolute, from the service's root) as the browser reaches it: under the service's public path.
pub fn local(path: &str) -> String {
    with_site(|site| format!("{}{path}", site.base_path))
}

/// The stylesheet's URL as the pages link it, under the service's public path.
pub fn stylesheet() -> String {
    local(crate::pages::STYLESHEET_PATH)
}

/// Order `id` at the other published services: its order, invoice or shipment page there. (A borrowed id
/// too, as a template holds it.)
pub fn related(id: impl std::borrow::Borrow<i64>) -> Vec<Link> {
    let id = *id.borrow();
    with_site(|site| {
        site.records
            .iter()
            .map(|record| Link {
                label: record.label,
                href: format!("{}{id}", record.href),
            })
            .collect()
    })
}

/// Middleware in front of the router: the pages rendered for the request see `site` ([`nav`],
/// [`related`], [`stylesheet`]); a request under its path is routed as if the path were not there, the
/// bare path is redirected to `path/` (so the pages' relative links resolve under it), anything else
/// (probes, `/metrics`) passes unchanged.
pub async fn serve_site(State(site): State<Arc<Site>>, request: Request, next: Next) -> Response {
    let base = site.base_path.clone();
    SITE.scope(site, strip_base_path(&base, request, next)).await
}

async fn strip_base_path(base: &str, mut request: Request, next: Next) -> Response {
    if base.is_empty() {
        return next.run(request).await;
    }
    let path = request.uri().path();
    if path == base {
        let query = request.uri().query().map(|q| format!("?{q}")).unwrap_or_default();
        return Redirect::permanent(&format!("{base}/{query}")).into_response();
    }
    if let Some(rest) = path.strip_prefix(base).filter(|rest| rest.starts_with('/')) {
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
        assert_eq!(
            site.records,
            vec![Link {
                label: "Order",
                href: "https://shop.example.com/".into()
            }],
            "order 7's page at order is https://shop.example.com/7"
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
        assert!(unpublished.records.is_empty());
    }

    /// The router behind the middleware, as `health::serve` puts it, answering with the path it routed
    /// (`/` answers with the navigation's first link, as the site of the request has it).
    async fn get(base: &str, path: &str) -> (u16, String) {
        use axum::routing::get;
        let router = axum::Router::new()
            .route("/", get(|| async { format!("list {}", nav()[0].href) }))
            .route(
                "/{id}",
                get(|axum::extract::Path(id): axum::extract::Path<String>| async move { id }),
            );
        let urls = PublicUrls {
            invoicing: PublicUrl::parse(&format!("https://shop.example.com{base}")).ok(),
            ..PublicUrls::default()
        };
        let site = Arc::new(urls.site("invoicing"));
        let strip = axum::middleware::from_fn_with_state(site, serve_site);
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
        assert_eq!(
            get("/invoicing", "/invoicing/").await,
            (200, "list /invoicing/".into()),
            "the page sees its own site"
        );
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
