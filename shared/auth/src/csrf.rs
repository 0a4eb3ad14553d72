//! The CSRF rule for changes authenticated by cookie: the request must come from this
//! site (`Origin` / `Sec-Fetch-Site`) and carry the session's form token.

use actix_web::HttpRequest;
use actix_web::http::header::{self, HeaderMap};
use flotilla_kit::Error;

use crate::{Auth, AuthError, Authenticated, Credential};

/// The header (or form field `csrf_token`) that carries the form token.
pub const CSRF_HEADER: &str = "x-csrf-token";

impl Auth {
    /// The CSRF rule for a change authenticated by cookie: it must come from this
    /// site (`Origin` / `Sec-Fetch-Site`) and carry the session's form token (form
    /// field `csrf_token` or header `X-CSRF-Token`). Bearer requests are exempt: a
    /// browser never adds that header by itself.
    pub fn check_csrf(
        &self,
        req: &HttpRequest,
        who: &Authenticated,
        submitted: Option<&str>,
    ) -> Result<(), Error> {
        if who.via == Credential::Bearer || is_safe(req) {
            return Ok(());
        }
        self.check_same_origin(req)?;
        let header = req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok());
        let sent = header.or(submitted).unwrap_or("");
        if sent.is_empty() || !constant_time_eq(sent.as_bytes(), who.claims.csrf.as_bytes()) {
            return Err(AuthError::CsrfInvalid.into());
        }
        Ok(())
    }

    /// [`same_origin`] with this service's public URL.
    pub fn check_same_origin_with(&self, req: &HttpRequest, strict: bool) -> Result<(), Error> {
        same_origin(&self.config().public_url, req, strict)
    }

    pub fn check_same_origin(&self, req: &HttpRequest) -> Result<(), Error> {
        self.check_same_origin_with(req, true)
    }
}

/// Refuses a request a browser sent from anywhere but a page of this site: its
/// `Origin`, when sent, must be `public_url` or the origin nginx was reached at, and its
/// `Sec-Fetch-Site`, when sent, `same-origin`. `none` (a request the person started
/// outside any page: an address typed, a bookmark, an extension) is refused too, as
/// `same-site` (a sibling subdomain) and `cross-site` are: a change is only ever sent
/// by this site's own forms and scripts. Requests that carry neither header did not
/// come from a browser's form or script, and `strict` says whether to refuse those too.
pub fn same_origin(public_url: &str, req: &HttpRequest, strict: bool) -> Result<(), Error> {
    let headers = req.headers();
    // A header sent that is not text is sent all the same, and wrong ("" matches none).
    let site = headers
        .get("sec-fetch-site")
        .map(|v| v.to_str().unwrap_or(""));
    let origin = headers
        .get(header::ORIGIN)
        .map(|v| v.to_str().unwrap_or(""));
    let site_ok = site.is_none_or(|s| s == "same-origin");
    let origin_ok = origin.is_none_or(|o| is_own_origin(public_url, o, headers));
    let anything = site.is_some() || origin.is_some();
    if site_ok && origin_ok && (anything || !strict) {
        return Ok(());
    }
    Err(AuthError::CrossOrigin.into())
}

fn is_own_origin(public_url: &str, origin: &str, headers: &HeaderMap) -> bool {
    if origin == public_url {
        return true;
    }
    // The origin the proxy was reached at (its Host, with the port).
    let host = headers
        .get("x-forwarded-host")
        .or_else(|| headers.get(header::HOST))
        .and_then(|v| v.to_str().ok());
    let proto = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("http");
    host.is_some_and(|host| origin == format!("{proto}://{host}"))
}

fn is_safe(req: &HttpRequest) -> bool {
    req.method().is_safe()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(headers: &[(&str, &str)]) -> HttpRequest {
        let mut req = actix_web::test::TestRequest::post()
            .uri("/login")
            .insert_header((header::HOST, "127.0.0.1:8080"));
        for (name, value) in headers {
            req = req.insert_header((*name, *value));
        }
        req.to_http_request()
    }

    #[test]
    fn only_this_sites_pages_may_send_a_change() {
        const SITE: &str = "https://accounts.example.org";
        let allowed: &[&[(&str, &str)]] = &[
            &[("sec-fetch-site", "same-origin"), ("origin", SITE)],
            &[("sec-fetch-site", "same-origin")],
            &[("origin", SITE)],
            // The origin nginx was reached at.
            &[("origin", "http://127.0.0.1:8080")],
        ];
        for headers in allowed {
            assert!(
                same_origin(SITE, &request(headers), true).is_ok(),
                "{headers:?}"
            );
        }
        let refused: &[&[(&str, &str)]] = &[
            // Started outside any page (an address typed, a bookmark): never a change.
            &[("sec-fetch-site", "none")],
            &[("sec-fetch-site", "none"), ("origin", SITE)],
            &[("sec-fetch-site", "same-site"), ("origin", SITE)],
            &[("sec-fetch-site", "cross-site")],
            &[("origin", "https://evil.example")],
            &[("origin", "null")],
        ];
        for headers in refused {
            for strict in [true, false] {
                let refusal = same_origin(SITE, &request(headers), strict).unwrap_err();
                assert_eq!(refusal.code(), "cross_origin_request", "{headers:?}");
            }
        }
        // Neither header: not a browser's form; refused only when strict.
        assert!(same_origin(SITE, &request(&[]), false).is_ok());
        assert!(same_origin(SITE, &request(&[]), true).is_err());
    }

    #[test]
    fn form_tokens_compare_in_constant_time() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
