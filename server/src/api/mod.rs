//! The HTTP admin API and Prometheus metrics (README.md, "Admin API and metrics"): what
//! `admin.sock` answers (through the same [`crate::daemon::admin::reply_to`]), as JSON, plus
//! `/metrics`. Every request, metrics included, needs `Authorization: Bearer <token>`.

pub mod metrics;
mod routes;
pub mod token;

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    http::{header, HeaderValue, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
    Json,
};

use crate::daemon::Shared;

/// What every handler needs.
#[derive(Clone)]
pub struct ApiState {
    pub daemon: Shared,
    /// The bearer token (see [`token`]).
    pub token: Arc<str>,
}

/// Serves the API on `listener` until the runtime ends.
pub async fn serve(listener: tokio::net::TcpListener, state: ApiState) {
    let router = routes::router(state.clone())
        .layer(axum::middleware::from_fn_with_state(state, authenticate));
    if let Err(err) = axum::serve(listener, router).await {
        tracing::error!(%err, "the admin API stopped");
    }
}

/// A JSON error: `{ "error": "..." }` with `status`.
pub fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let body = serde_json::json!({ "error": message.into() });
    (status, Json(body)).into_response()
}

/// Refuses any request without the right bearer token (401), metrics included.
async fn authenticate(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer);
    let allowed = presented
        .is_some_and(|t| crate::daemon::constant_time_eq(t.as_bytes(), state.token.as_bytes()));
    if allowed {
        return next.run(request).await;
    }
    tracing::warn!(
        method = %request.method(),
        path = request.uri().path(),
        token_given = presented.is_some(),
        "admin API request refused: no or wrong bearer token"
    );
    let mut response = error(
        StatusCode::UNAUTHORIZED,
        "missing or wrong bearer token (Authorization: Bearer <contents of the api token file>)",
    );
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// The token of an `Authorization: Bearer <token>` header (the scheme in any case).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_taken_from_the_header() {
        assert_eq!(bearer("Bearer abc"), Some("abc"));
        assert_eq!(bearer("bearer  abc "), Some("abc"));
        assert_eq!(bearer("Basic abc"), None);
        assert_eq!(bearer("Bearer"), None);
        assert_eq!(bearer("Bearer "), None);
    }
}
