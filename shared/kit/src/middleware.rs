//! The one middleware every service runs: it gives each request an id and its real
//! client address, turns requests away when they waited too long or too many are in
//! flight (see [`crate::admission`]), renders errors as
//! HTML for browsers, logs one line per request and records the metrics.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest, HttpResponse, ResponseError, web};

use crate::State;
use crate::admission::{self, Verdict};
use crate::config::{TrustedProxies, canonical};
use crate::error::Error;
use crate::metrics::{Rejection, method_label};

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// When the proxy received the request (`t=<seconds.milliseconds>`): nginx's `$msec`.
pub static X_REQUEST_START: HeaderName = HeaderName::from_static("x-request-start");

/// Sent on every answer when the public URL is https: browsers then use https alone
/// for a year. Without `includeSubDomains`: the fleet often lives on one name of an
/// organisation's domain, and its other names are not ours to bind.
pub const HSTS: &str = "max-age=31536000";
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Who asked, as far as we can tell. Handlers take it as an extractor.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// From the trusted proxy's `X-Request-Id`, or made here.
    pub id: String,
    /// The client's address: the peer, or, when the peer is a trusted proxy, the last
    /// untrusted address of `X-Forwarded-For`.
    pub client: IpAddr,
}

impl FromRequest for RequestContext {
    type Error = Error;
    type Future = std::future::Ready<Result<Self, Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(
            req.extensions()
                .get::<RequestContext>()
                .cloned()
                .ok_or_else(|| Error::Internal(anyhow::anyhow!("request context missing"))),
        )
    }
}

/// Counts requests in flight (and those ever admitted); a permit is given back when
/// dropped.
#[derive(Debug)]
pub struct InFlight {
    current: AtomicUsize,
    admitted: AtomicU64,
    max: usize,
}

pub struct Permit<'a>(&'a InFlight);

impl InFlight {
    pub fn new(max: usize) -> Self {
        Self {
            current: AtomicUsize::new(0),
            admitted: AtomicU64::new(0),
            max,
        }
    }

    pub fn try_acquire(&self) -> Option<Permit<'_>> {
        let before = self.current.fetch_add(1, Ordering::AcqRel);
        if before >= self.max {
            self.current.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        self.admitted.fetch_add(1, Ordering::Relaxed);
        Some(Permit(self))
    }

    pub fn current(&self) -> usize {
        self.current.load(Ordering::Acquire)
    }

    /// Requests admitted since start (health and metrics are not).
    pub fn admitted(&self) -> u64 {
        self.admitted.load(Ordering::Relaxed)
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.0.current.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The client address: believe `X-Forwarded-For` only from a trusted peer, and walk it
/// from the right (the entry our proxy appended) past any other trusted proxies; what
/// a client writes on the left is never taken.
pub fn client_addr(peer: Option<IpAddr>, headers: &HeaderMap, trusted: &TrustedProxies) -> IpAddr {
    let peer = canonical(peer.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)));
    if !trusted.contains(peer) {
        return peer;
    }
    let hops: Vec<&str> = headers
        .get_all(&X_FORWARDED_FOR)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        let Ok(ip) = hop.trim().parse::<IpAddr>() else {
            break;
        };
        client = canonical(ip);
        if !trusted.contains(client) {
            break;
        }
    }
    client
}

fn request_id(peer_trusted: bool, headers: &HeaderMap) -> String {
    if peer_trusted
        && let Some(id) = headers.get(&X_REQUEST_ID).and_then(|v| v.to_str().ok())
        && !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return id.to_owned();
    }
    format!("{:016x}", rand::random::<u64>())
}

/// Browsers say they accept HTML; API clients and curl do not.
pub fn wants_html(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"))
}

/// A snake_case code for a status, for errors that are not ours.
fn code_for(status: actix_web::http::StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "bad_request",
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "request_timeout",
        413 => "payload_too_large",
        415 => "unsupported_media_type",
        422 => "invalid_input",
        429 => "too_many_requests",
        503 => "unavailable",
        s if s >= 500 => "internal_error",
        _ => "bad_request",
    }
}

/// Health, readiness and metrics stay answerable when the service is saturated.
fn exempt_from_cap(path: &str) -> bool {
    path.ends_with("/health") || path.ends_with("/ready") || path.ends_with("/metrics")
}

/// Every request: its context (id, client address), the in-flight cap, error pages or
/// JSON by `Accept`, the request id on the answer, metrics and the access log line.
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let started = Instant::now();
    let Some(state) = req.app_data::<web::Data<State>>().cloned() else {
        return Ok(req.into_response(
            Error::Internal(anyhow::anyhow!("service state missing")).error_response(),
        ));
    };
    let context = context_of(&req, &state);
    req.extensions_mut().insert(context.clone());
    let method = method_label(req.method());
    let path = req.path().to_owned();
    let html = wants_html(req.headers());
    // Routing turns handler errors into responses; an `Err` here is rare, and actix
    // renders it itself. Count it and pass it on.
    let mut res = match within_cap(req, next, &state, &path).await {
        Ok(res) => res,
        Err(err) => {
            let status = err.as_response_error().status_code();
            let unmatched = "unmatched".to_owned();
            let elapsed = started.elapsed();
            state
                .metrics
                .observe(method, unmatched, status.as_u16(), elapsed);
            log::info!(target: "access", "{} \"{method} {path}\" {} rid={}", context.client, status.as_u16(), context.id);
            return Err(err);
        }
    };
    let status = res.status();
    if let Some(err) = res.response().error() {
        if status.is_server_error() {
            log::error!(target: "flotilla::error", "rid={} {method} {path}: {err}", context.id);
        }
        let ours = err.as_error::<Error>();
        // A form shown again is an HTML answer already; a redirect needs none.
        let shown = matches!(ours, Some(Error::WithPage { .. } | Error::SeeOther { .. }));
        if (html && !shown) || ours.is_none() {
            let replaced = error_answer(&res, html);
            res = res.into_response(replaced);
        }
    }
    if let Ok(value) = HeaderValue::from_str(&context.id) {
        res.headers_mut().insert(X_REQUEST_ID.clone(), value);
    }
    if state.config.is_https() {
        res.headers_mut().insert(
            actix_web::http::header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(HSTS),
        );
    }
    let elapsed = started.elapsed();
    let route = res
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".to_owned());
    state
        .metrics
        .observe(method, route, status.as_u16(), elapsed);
    log::info!(
        target: "access",
        "{} \"{method} {path}\" {} {:.1}ms rid={}",
        context.client,
        status.as_u16(),
        elapsed.as_secs_f64() * 1000.0,
        context.id
    );
    Ok(res)
}

/// The request's id and client address, believed from a trusted proxy's headers only.
fn context_of(req: &ServiceRequest, state: &State) -> RequestContext {
    let peer = req.peer_addr().map(|a| a.ip());
    let trusted = &state.config.trusted_proxies;
    let peer_trusted = peer.is_some_and(|p| trusted.contains(canonical(p)));
    RequestContext {
        id: request_id(peer_trusted, req.headers()),
        client: client_addr(peer, req.headers(), trusted),
    }
}

/// Runs the request unless it waited too long before reaching us, or too many are in
/// flight (503 `overloaded` then, see [`crate::admission`]; health, readiness and
/// metrics are always answered).
async fn within_cap(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
    state: &State,
    path: &str,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    if exempt_from_cap(path) {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_boxed_body);
    }
    if let Some(delay) = &state.queue_delay
        && let Some(stamp) = proxy_stamp(&req, state)
        && let Verdict::TooLate(waited) = delay.judge(stamp, admission::now_us())
    {
        log::debug!(
            "refused after waiting {:.1} ms in the queue (target {} ms)",
            waited.as_secs_f64() * 1000.0,
            delay.target().as_millis()
        );
        state.metrics.reject(Rejection::Queue);
        return Ok(req.error_response(overloaded()));
    }
    let Some(_permit) = state.in_flight.try_acquire() else {
        state.metrics.reject(Rejection::InFlight);
        return Ok(req.error_response(overloaded()));
    };
    next.call(req)
        .await
        .map(ServiceResponse::map_into_boxed_body)
}

fn overloaded() -> Error {
    Error::Unavailable {
        code: "overloaded",
        message: "The service is handling too many requests; please retry shortly.".into(),
        retry_after_secs: 1,
    }
}

/// When the trusted proxy in front of us received the request (`X-Request-Start`).
fn proxy_stamp(req: &ServiceRequest, state: &State) -> Option<i64> {
    let peer = canonical(req.peer_addr()?.ip());
    if !state.config.trusted_proxies.contains(peer) {
        return None;
    }
    let value = req.headers().get(&X_REQUEST_START)?.to_str().ok()?;
    admission::parse_request_start(value)
}

/// An error's answer, its headers kept: for a browser, our page for it or a generic
/// one; for an API client, actix's own errors (a body over the limit read as bytes,
/// say) in the same JSON shape as ours.
fn error_answer(res: &ServiceResponse, html: bool) -> HttpResponse {
    let status = res.status();
    let mut builder = HttpResponse::build(status);
    for (name, value) in res.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            builder.append_header((name.clone(), value.clone()));
        }
    }
    if html {
        let ours = res.response().error().and_then(|e| e.as_error::<Error>());
        let page = ours.map(Error::html_page).unwrap_or_else(|| {
            crate::html::error_page(status, "The request could not be handled.", None)
        });
        builder.content_type("text/html; charset=utf-8").body(page)
    } else {
        builder.json(serde_json::json!({
            "error": code_for(status),
            "message": status.canonical_reason().unwrap_or("Error"),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxies(list: &str) -> TrustedProxies {
        TrustedProxies::new(list.split(',').map(|n| n.parse().unwrap()).collect())
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for v in values {
            headers.append(X_FORWARDED_FOR.clone(), HeaderValue::from_str(v).unwrap());
        }
        headers
    }

    #[test]
    fn forwarded_for_is_ignored_from_an_untrusted_peer() {
        let trusted = proxies("127.0.0.1");
        let peer = "203.0.113.9".parse().ok();
        assert_eq!(
            client_addr(peer, &xff(&["1.2.3.4"]), &trusted),
            peer.unwrap()
        );
    }

    #[test]
    fn a_trusted_proxy_names_the_client_and_spoofed_entries_are_skipped() {
        let trusted = proxies("127.0.0.1,10.0.0.0/8");
        let peer = "127.0.0.1".parse().ok();
        // The client sent "6.6.6.6" itself; nginx appended the real address.
        let headers = xff(&["6.6.6.6, 198.51.100.7"]);
        assert_eq!(
            client_addr(peer, &headers, &trusted),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        // Through two proxies of ours.
        let headers = xff(&["198.51.100.7", "10.1.1.1"]);
        assert_eq!(
            client_addr(peer, &headers, &trusted),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        // Without the header, the proxy itself.
        assert_eq!(
            client_addr(peer, &HeaderMap::new(), &trusted),
            peer.unwrap()
        );
        // Garbage stops the walk at the last good hop.
        let headers = xff(&["nonsense, 10.2.2.2"]);
        assert_eq!(
            client_addr(peer, &headers, &trusted),
            "10.2.2.2".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn request_ids_come_from_trusted_proxies_only_and_must_be_tame() {
        let mut headers = HeaderMap::new();
        headers.insert(X_REQUEST_ID.clone(), HeaderValue::from_static("abc-123"));
        assert_eq!(request_id(true, &headers), "abc-123");
        assert_ne!(request_id(false, &headers), "abc-123");
        headers.insert(X_REQUEST_ID.clone(), HeaderValue::from_static("bad id\"x"));
        assert_eq!(request_id(true, &headers).len(), 16);
    }

    #[test]
    fn the_cap_gives_permits_back() {
        let cap = InFlight::new(2);
        let a = cap.try_acquire();
        let b = cap.try_acquire();
        assert!(a.is_some() && b.is_some());
        assert!(cap.try_acquire().is_none());
        drop(a);
        assert!(cap.try_acquire().is_some());
        assert_eq!(cap.current(), 1);
    }
}
