//! The web dashboard at `/` of the HTTP endpoint: one page of jobs, live data, a SQL box and
//! the trading demo's charts (`docs/dashboard.md`). Its files are built into the binary, so
//! the page needs no other server and nothing from the network; everything it shows comes
//! from the JSON API ([`crate::rest`], [`crate::sse`]) with the user's token.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};

/// The page's files: path, content type, contents.
const FILES: [(&str, &str, &[u8]); 4] = [
    (
        "/",
        "text/html; charset=utf-8",
        include_bytes!("dashboard/index.html"),
    ),
    (
        "/ui/app.js",
        "text/javascript; charset=utf-8",
        include_bytes!("dashboard/app.js"),
    ),
    (
        "/ui/style.css",
        "text/css; charset=utf-8",
        include_bytes!("dashboard/style.css"),
    ),
    (
        "/ui/lightweight-charts.js",
        "text/javascript; charset=utf-8",
        include_bytes!("dashboard/vendor/lightweight-charts.standalone.production.js"),
    ),
];

/// Scripts and styles from the server itself only; the chart library sets styles inline.
const CONTENT_SECURITY_POLICY: &str =
    "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:";

/// The file at `path`, if it is one of the dashboard's.
pub fn page(path: &str) -> Option<Response<Full<Bytes>>> {
    let (_, content_type, contents) = FILES.iter().find(|(at, _, _)| *at == path)?;
    let mut response = Response::new(Full::new(Bytes::from_static(contents)));
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    // The files change with the binary: a browser asks again rather than keep an old one.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    Some(response)
}
