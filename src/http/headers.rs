//! What every response carries, and the log line every request leaves.

use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tower::ServiceBuilder;
use tower::layer::util::{Identity, Stack};
use tower::util::MapResponseLayer;
use tower_http::classify::{ServerErrorsAsFailures, SharedClassifier};
use tower_http::trace::{MakeSpan, OnResponse, TraceLayer};
use tracing::Span;

use crate::untrusted::Untrusted;

/// The Content-Security-Policy of every response.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
     frame-ancestors 'none'; form-action 'self'";

/// The layers of every route, as one: the headers that make a response harder to abuse (no
/// inline or foreign scripts, no framing, no MIME sniffing, no referrer leaking the path
/// elsewhere, nothing cached that did not ask to be: assets do), request bodies held to
/// `body_limit`, and too long a `Host` refused. One layer, so one boxed service per route: every
/// `Router::layer` (and `route_layer`) boxes each route again, and each box is cloned for every
/// request. The page routes put the session layer in the same stack ([`ServiceBuilder::layer`]).
pub fn secured(body_limit: DefaultBodyLimit) -> ServiceBuilder<Secured> {
    ServiceBuilder::new()
        .layer(body_limit)
        .map_response(with_security_headers as fn(Response) -> Response)
        .layer(RefuseLongHostLayer)
}

/// The stack [`secured`] builds.
pub type Secured = Stack<
    RefuseLongHostLayer,
    Stack<MapResponseLayer<fn(Response) -> Response>, Stack<DefaultBodyLimit, Identity>>,
>;

/// `router`, with one log line per request when `debug` is logged (see [`request_log`]); as it
/// is otherwise.
pub fn logged<S: Clone + Send + Sync + 'static>(router: Router<S>) -> Router<S> {
    let logging = tracing::level_filters::LevelFilter::current() >= tracing::Level::DEBUG;
    if logging {
        router.layer(request_log())
    } else {
        router
    }
}

/// The longest `Host` header accepted: the longest host name DNS allows (253 bytes) and a port
/// (`:65535`). A longer one cannot name this server, so it is refused before any page is drawn.
pub const MAX_HOST_BYTES: usize = 253 + 6;

/// What a request with a longer `Host` than [`MAX_HOST_BYTES`] is answered.
pub const HOST_TOO_LONG: &str =
    "The Host header is longer than a host name may be, so this request was not served.";

/// Answers `400` to a request whose `Host` is longer than [`MAX_HOST_BYTES`], before any route.
/// A service of its own rather than `middleware::from_fn`, which boxes every request's future
/// and clones the route behind it: this costs a header lookup.
#[derive(Clone)]
pub struct RefuseLongHost<S>(S);

/// The layer of [`RefuseLongHost`].
#[derive(Debug, Clone, Copy)]
pub struct RefuseLongHostLayer;

impl<S> tower::Layer<S> for RefuseLongHostLayer {
    type Service = RefuseLongHost<S>;

    fn layer(&self, inner: S) -> RefuseLongHost<S> {
        RefuseLongHost(inner)
    }
}

impl<S> tower::Service<Request> for RefuseLongHost<S>
where
    S: tower::Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future =
        futures_util::future::Either<std::future::Ready<Result<Response, S::Error>>, S::Future>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let too_long = request
            .headers()
            .get(header::HOST)
            .is_some_and(|host| host.len() > MAX_HOST_BYTES);
        if too_long {
            let refused = (StatusCode::BAD_REQUEST, HOST_TOO_LONG).into_response();
            return futures_util::future::Either::Left(std::future::ready(Ok(refused)));
        }
        futures_util::future::Either::Right(self.0.call(request))
    }
}

/// The headers every response gets, unless it set them itself (assets set their own
/// `Cache-Control`).
const SECURITY_HEADERS: [(HeaderName, &str); 5] = [
    (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::REFERRER_POLICY, "same-origin"),
    (header::X_FRAME_OPTIONS, "DENY"),
    (header::CACHE_CONTROL, "no-store"),
];

/// Adds [`SECURITY_HEADERS`] to `response`, growing its header map once.
fn with_security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.reserve(SECURITY_HEADERS.len());
    for (name, value) in SECURITY_HEADERS {
        headers
            .entry(name)
            .or_insert_with(|| HeaderValue::from_static(value));
    }
    response
}

/// One `debug` line per request, once its response is ready: method, path (never the query
/// string), status and latency. Nothing else about the request is logged: not its cookie, not its
/// body. With `debug` off (the default) when the router is built, the layer is left out.
fn request_log()
-> TraceLayer<SharedClassifier<ServerErrorsAsFailures>, RequestSpan, (), Served, (), (), ()> {
    TraceLayer::new_for_http()
        .make_span_with(RequestSpan)
        .on_request(())
        .on_response(Served)
        .on_body_chunk(())
        .on_eos(())
        .on_failure(())
}

/// The span each request's log line is written in: its method and path, escaped and cut short
/// (both come from the client, and may be up to 64 KiB long).
#[derive(Debug, Clone, Copy)]
struct RequestSpan;

impl<B> MakeSpan<B> for RequestSpan {
    fn make_span(&mut self, request: &axum::http::Request<B>) -> Span {
        let path = request.uri().path();
        // A one-time code is a key to a session while it lives: not for the log.
        let path = if path.starts_with("/link/") {
            "/link/…"
        } else {
            path
        };
        tracing::debug_span!(
            "request",
            method = %Untrusted::str(request.method().as_str()),
            path = %Untrusted::str(path)
        )
    }
}

/// Logs the response's status and how long it took.
#[derive(Debug, Clone, Copy)]
struct Served;

impl<B> OnResponse<B> for Served {
    fn on_response(self, response: &axum::http::Response<B>, latency: Duration, _: &Span) {
        tracing::debug!(
            status = response.status().as_u16(),
            latency_ms = %format_args!("{:.3}", latency.as_secs_f64() * 1000.0),
            "served"
        );
    }
}
