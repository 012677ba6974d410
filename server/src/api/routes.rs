//! The API's resources, each an [`AdminRequest`] answered by the admin socket's own code and
//! written as JSON (protocol types; session ids as 16 hex digits, kinds and states as words).

use axum::{
    extract::{FromRequestParts, Path, State},
    http::{header, request::Parts, StatusCode},
    response::{IntoResponse, Response},
    routing::{get, post},
    Json, Router,
};
use serde::Serialize;
use wayray_protocol::sessions::{
    parse_session_id, AdminReply, AdminRequest, SessionId, SessionInfo, SessionUsage,
};

use super::{error, metrics, ApiState};
use crate::daemon::admin::{reply_to, NOT_IN_A_POOL, NO_SUCH_SESSION};

pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/api/v1/sessions", get(sessions))
        .route("/api/v1/sessions/{id}", get(session))
        .route("/api/v1/sessions/{id}/usage", get(usage))
        .route("/api/v1/sessions/{id}/detach", post(detach))
        .route("/api/v1/sessions/{id}/kill", post(kill))
        .route("/api/v1/connections", get(connections))
        .route("/api/v1/appliances", get(appliances))
        .route("/api/v1/appliances/{id}/approve", post(approve))
        .route("/api/v1/appliances/{id}/revoke", post(revoke))
        .route("/api/v1/pool/servers", get(pool_servers))
        .route("/api/v1/pool/servers/{name}/drain", post(drain))
        .route("/api/v1/pool/servers/{name}/undrain", post(undrain))
        .route("/metrics", get(scrape))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such resource") })
        .with_state(state)
}

/// `wradm show` in one answer: the session and, when its cgroup tells, its usage.
#[derive(Serialize)]
struct SessionWithUsage {
    #[serde(flatten)]
    session: SessionInfo,
    usage: Option<SessionUsage>,
}

async fn ask(state: &ApiState, request: AdminRequest) -> Response {
    tracing::info!(?request, "admin API request");
    reply(reply_to(&state.daemon, request).await)
}

/// The JSON of an admin reply; errors get the status that fits them.
fn reply(reply: AdminReply) -> Response {
    match reply {
        AdminReply::Sessions(v) => Json(v).into_response(),
        AdminReply::Session(v) => Json(v).into_response(),
        AdminReply::Appliances(v) => Json(v).into_response(),
        AdminReply::KnownAppliances(v) => Json(v).into_response(),
        AdminReply::KnownAppliance(v) => Json(v).into_response(),
        AdminReply::Usage(v) => Json(v).into_response(),
        AdminReply::PoolServers(v) => Json(v).into_response(),
        AdminReply::Done => Json(serde_json::json!({ "done": true })).into_response(),
        AdminReply::Error(message) => error(status_of(&message), message),
    }
}

/// 404 for what does not exist, 400 for an id that names nothing or several appliances, 409
/// for what the server's state does not allow (no pool, no process or cgroup yet), 500 else.
fn status_of(message: &str) -> StatusCode {
    if message == NO_SUCH_SESSION || message.starts_with("no appliance ") {
        StatusCode::NOT_FOUND
    } else if message.contains("is not an appliance id") || message.contains("more than one") {
        StatusCode::BAD_REQUEST
    } else if message == NOT_IN_A_POOL
        || message.contains("has no process yet")
        || message.contains("not in a cgroup")
    {
        StatusCode::CONFLICT
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    }
}

/// A session id in a path: the 16 hex digits `wradm sessions` prints (fewer are accepted);
/// anything else is answered 400 before the handler runs.
struct SessionPath(SessionId);

impl<S: Send + Sync> FromRequestParts<S> for SessionPath {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        let Path(text) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        session_id(&text).map(SessionPath).ok_or_else(|| {
            error(
                StatusCode::BAD_REQUEST,
                format!("{text:?} is not a session id: expected 16 hex digits"),
            )
        })
    }
}

fn session_id(text: &str) -> Option<SessionId> {
    let valid = !text.is_empty() && text.len() <= 16 && text.bytes().all(|b| b.is_ascii_hexdigit());
    parse_session_id(text).filter(|_| valid)
}

async fn sessions(State(state): State<ApiState>) -> Response {
    ask(&state, AdminRequest::ListSessions).await
}

async fn session(State(state): State<ApiState>, SessionPath(id): SessionPath) -> Response {
    let session = match reply_to(&state.daemon, AdminRequest::ShowSession(id)).await {
        AdminReply::Session(session) => session,
        other => return reply(other),
    };
    let usage = match reply_to(&state.daemon, AdminRequest::SessionUsage(id)).await {
        AdminReply::Usage(usage) => Some(usage),
        _ => None,
    };
    Json(SessionWithUsage { session, usage }).into_response()
}

async fn usage(State(state): State<ApiState>, SessionPath(id): SessionPath) -> Response {
    ask(&state, AdminRequest::SessionUsage(id)).await
}

async fn detach(State(state): State<ApiState>, SessionPath(id): SessionPath) -> Response {
    ask(&state, AdminRequest::Detach(id)).await
}

async fn kill(State(state): State<ApiState>, SessionPath(id): SessionPath) -> Response {
    ask(&state, AdminRequest::Kill(id)).await
}

async fn connections(State(state): State<ApiState>) -> Response {
    ask(&state, AdminRequest::ListAppliances).await
}

async fn appliances(State(state): State<ApiState>) -> Response {
    ask(&state, AdminRequest::ListKnownAppliances).await
}

async fn approve(State(state): State<ApiState>, Path(id): Path<String>) -> Response {
    ask(
        &state,
        AdminRequest::ApproveAppliance(id.to_ascii_lowercase()),
    )
    .await
}

async fn revoke(State(state): State<ApiState>, Path(id): Path<String>) -> Response {
    ask(
        &state,
        AdminRequest::RevokeAppliance(id.to_ascii_lowercase()),
    )
    .await
}

async fn pool_servers(State(state): State<ApiState>) -> Response {
    ask(&state, AdminRequest::PoolServers).await
}

async fn drain(State(state): State<ApiState>, Path(server): Path<String>) -> Response {
    ask(
        &state,
        AdminRequest::Drain {
            server,
            drain: true,
        },
    )
    .await
}

async fn undrain(State(state): State<ApiState>, Path(server): Path<String>) -> Response {
    ask(
        &state,
        AdminRequest::Drain {
            server,
            drain: false,
        },
    )
    .await
}

async fn scrape(State(state): State<ApiState>) -> Response {
    match metrics::scrape(&state.daemon) {
        Ok(text) => ([(header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response(),
        Err(message) => error(StatusCode::INTERNAL_SERVER_ERROR, message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_get_fitting_statuses() {
        assert_eq!(status_of(NO_SUCH_SESSION), StatusCode::NOT_FOUND);
        assert_eq!(status_of("no appliance 0123abcd"), StatusCode::NOT_FOUND);
        assert_eq!(status_of(NOT_IN_A_POOL), StatusCode::CONFLICT);
        assert_eq!(
            status_of("\"x\" is not an appliance id: expected at least 8 hex digits"),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(status_of("disk on fire"), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn session_ids_in_paths_are_hex() {
        assert_eq!(session_id("00000000000000ab"), Some(0xab));
        for bad in ["", "zz", "00000000000000000ab", "-1", " 1"] {
            assert!(session_id(bad).is_none(), "{bad:?}");
        }
    }
}
