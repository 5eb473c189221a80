//! Lists a page at a time. Every list, page or JSON, takes `?limit=&after=`: at most `limit` records
//! (default [`DEFAULT_LIMIT`], at most [`MAX_LIMIT`]) whose order id is above `after`, in order id order,
//! so a page is read by key, never by offset, and an order stored meanwhile is neither skipped nor shown
//! twice. A JSON list stays a plain array; when more follow, its `Link` header names the next page
//! (`<…?limit=100&after=123>; rel="next"`, RFC 8288), and a page links it as "Next page".

use crate::problem::Problem;
use axum::Json;
use axum::extract::{FromRequestParts, OriginalUri, Query};
use axum::http::header;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// Records per page when the request names no `limit`.
pub const DEFAULT_LIMIT: u32 = 100;
/// The largest `limit` accepted.
pub const MAX_LIMIT: u32 = 1000;

/// Which page of a list was asked for, and where the list is (the path as the client asked for it). As an
/// extractor it answers a bad value with the validation problem as problem+json; a page takes [`PagePaging`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paging {
    pub limit: u32,
    pub after: Option<i64>,
    path: String,
}

/// The query as sent: strings, so that a bad value gets our message rather than the parser's.
#[derive(Deserialize)]
struct Asked {
    limit: Option<String>,
    after: Option<String>,
}

impl Paging {
    /// The page `limit` and `after` ask for, of the list at `path`; a bad value is a validation problem
    /// naming the parameter.
    pub fn parse(limit: Option<&str>, after: Option<&str>, path: impl Into<String>) -> Result<Self, Problem> {
        let limit = match limit {
            None => DEFAULT_LIMIT,
            Some(text) => text
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|limit| (1..=MAX_LIMIT).contains(limit))
                .ok_or_else(|| {
                    Problem::validation(
                        format!("limit must be a whole number from 1 to {MAX_LIMIT}"),
                        Some("limit".into()),
                    )
                })?,
        };
        let after = after
            .map(|text| {
                text.trim().parse::<i64>().map_err(|_| {
                    Problem::validation("after must be an order id, a whole number", Some("after".into()))
                })
            })
            .transpose()?;
        Ok(Self {
            limit,
            after,
            path: path.into(),
        })
    }

    /// The rows to read: one more than a page shows, to learn whether another page follows.
    pub fn fetch(&self) -> i64 {
        i64::from(self.limit) + 1
    }

    /// The key to read after: everything when the request named none.
    pub fn after_key(&self) -> i64 {
        self.after.unwrap_or(i64::MIN)
    }

    /// The page of `rows` (read with [`fetch`](Self::fetch) after [`after_key`](Self::after_key), in key
    /// order), each row's key given by `key`.
    pub fn page<T>(&self, mut rows: Vec<T>, key: impl Fn(&T) -> i64) -> Page<T> {
        let more = rows.len() > self.limit as usize;
        rows.truncate(self.limit as usize);
        let next = rows
            .last()
            .filter(|_| more)
            .map(|last| format!("?limit={}&after={}", self.limit, key(last)));
        Page {
            rows,
            next,
            path: self.path.clone(),
        }
    }
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub rows: Vec<T>,
    /// The next page's query (`?limit=…&after=…`) when more follow, for a page's relative link.
    pub next: Option<String>,
    path: String,
}

impl<T> Page<T> {
    /// The same page, each row turned into what `show` makes of it.
    pub fn map<U>(self, show: impl FnMut(T) -> U) -> Page<U> {
        Page {
            rows: self.rows.into_iter().map(show).collect(),
            next: self.next,
            path: self.path,
        }
    }

    /// The `Link` header's value naming the next page, when more follow.
    pub fn link(&self) -> Option<String> {
        let next = self.next.as_ref()?;
        Some(format!("<{}{next}>; rel=\"next\"", self.path))
    }
}

impl<T: Serialize> IntoResponse for Page<T> {
    /// The rows as a JSON array, with the `Link` header when more follow.
    fn into_response(self) -> Response {
        let link = self.link();
        let mut response = Json(self.rows).into_response();
        if let Some(value) = link.and_then(|link| link.parse().ok()) {
            response.headers_mut().insert(header::LINK, value);
        }
        response
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Paging {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Problem> {
        let Query(asked) = Query::<Asked>::try_from_uri(&parts.uri)
            .map_err(|rejection| Problem::validation(rejection.body_text(), None))?;
        // As requested: under a public path the router sees the path without it.
        let path = parts
            .extensions
            .get::<OriginalUri>()
            .map_or_else(|| parts.uri.path().to_string(), |o| o.0.path().to_string());
        Self::parse(asked.limit.as_deref(), asked.after.as_deref(), path)
    }
}

/// The page of a list a person asked for: the same as [`Paging`], but a bad value is answered with the
/// problem's message page rather than problem+json.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PagePaging(pub Paging);

impl<S: Send + Sync> FromRequestParts<S> for PagePaging {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        Paging::from_request_parts(parts, state)
            .await
            .map(Self)
            .map_err(|problem| problem.page())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_and_after_are_read_with_a_default_and_bounds() {
        let default = Paging::parse(None, None, "/api/orders").expect("valid");
        assert_eq!((default.limit, default.after), (DEFAULT_LIMIT, None));
        assert_eq!(default.after_key(), i64::MIN);
        let asked = Paging::parse(Some("5"), Some("42"), "/").expect("valid");
        assert_eq!((asked.limit, asked.after, asked.fetch()), (5, Some(42), 6));
        for bad in ["0", "-1", "1001", "ten", ""] {
            let problem = Paging::parse(Some(bad), None, "/").expect_err(bad);
            assert_eq!(problem.errors[0].field, "limit", "{bad}");
        }
        let problem = Paging::parse(None, Some("x"), "/").expect_err("bad after");
        assert_eq!(problem.errors[0].field, "after");
    }

    #[test]
    fn a_page_links_the_next_only_when_more_rows_were_read() {
        let paging = Paging::parse(Some("2"), Some("10"), "/invoicing/api/invoices").expect("valid");
        let full = paging.page(vec![11, 12, 13], |id| *id);
        assert_eq!(full.rows, vec![11, 12]);
        assert_eq!(full.next.as_deref(), Some("?limit=2&after=12"));
        assert_eq!(
            full.link().as_deref(),
            Some("</invoicing/api/invoices?limit=2&after=12>; rel=\"next\"")
        );
        let last = paging.page(vec![11, 12], |id| *id);
        assert_eq!((last.rows.len(), last.link(), last.next), (2, None, None));
    }

    #[tokio::test]
    async fn the_extractor_reads_the_query_and_the_path_as_requested() {
        let (mut parts, ()) = axum::http::Request::get("/api/orders?limit=3&after=7")
            .body(())
            .expect("request")
            .into_parts();
        parts.extensions.insert(OriginalUri(
            "/shop/api/orders?limit=3&after=7".parse().expect("uri"),
        ));
        let paging = Paging::from_request_parts(&mut parts, &()).await.expect("valid");
        assert_eq!((paging.limit, paging.after), (3, Some(7)));
        let page = paging.page(vec![8, 9, 10, 11], |id| *id);
        assert_eq!(
            page.link().as_deref(),
            Some("</shop/api/orders?limit=3&after=10>; rel=\"next\"")
        );
    }

    #[tokio::test]
    async fn a_bad_limit_is_problem_json_on_a_list_and_the_message_page_on_a_page() {
        let parts = || {
            axum::http::Request::get("/api/orders?limit=0")
                .body(())
                .expect("request")
                .into_parts()
                .0
        };
        let json = Paging::from_request_parts(&mut parts(), &())
            .await
            .expect_err("bad limit")
            .into_response();
        let page = PagePaging::from_request_parts(&mut parts(), &())
            .await
            .expect_err("bad limit");
        for (response, media_type) in [(json, "application/problem+json"), (page, "text/html")] {
            assert_eq!(response.status(), axum::http::StatusCode::UNPROCESSABLE_ENTITY);
            assert!(
                response.headers()[header::CONTENT_TYPE]
                    .to_str()
                    .is_ok_and(|t| t.starts_with(media_type)),
                "{media_type}"
            );
            let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
                .await
                .expect("body");
            assert!(
                String::from_utf8_lossy(&bytes).contains("limit must be a whole number from 1 to 1000"),
                "{media_type}"
            );
        }
    }
}
