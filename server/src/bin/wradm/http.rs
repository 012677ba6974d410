//! `wradm --server URL`: the same requests as `admin.sock`, over wrsrvd's HTTP admin API
//! (README.md, "Admin API and metrics"), each one a method and path whose JSON answer is read
//! back into the [`AdminReply`] the socket would have given.

use std::{path::PathBuf, time::Duration};

use serde::de::DeserializeOwned;
use wayray_protocol::sessions::{session_id_string, AdminReply, AdminRequest};

/// Longest answer read, as for the socket.
const MAX_REPLY_LEN: u64 = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot read the API token {}: {source} (--token-file, WAYRAY_API_TOKEN_FILE)", path.display())]
    Token {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the API token file {} is empty", path.display())]
    EmptyToken { path: PathBuf },
    #[error("is wrsrvd's admin API at {url}? {reason}")]
    Unreachable { url: String, reason: String },
    #[error("wrsrvd at {url} refused the API token (401); is it that server's token file?")]
    Unauthorized { url: String },
    #[error("wrsrvd did not answer within {:.1}s ({url})", timeout.as_secs_f64())]
    Timeout { url: String, timeout: Duration },
    #[error("wrsrvd's admin API at {url} answered {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error(
        "wrsrvd's answer from {url} is not what wradm expects (is it another version?): {reason}"
    )]
    Reply { url: String, reason: String },
}

impl HttpError {
    /// True when the API could not be used at all (no server, no or a wrong token).
    pub fn unreachable(&self) -> bool {
        matches!(
            self,
            HttpError::Token { .. }
                | HttpError::EmptyToken { .. }
                | HttpError::Unreachable { .. }
                | HttpError::Unauthorized { .. }
        )
    }
}

/// wrsrvd's admin API at `base` (`http://HOST:PORT`), with the bearer token.
pub struct Api {
    base: String,
    token: String,
    agent: ureq::Agent,
    timeout: Duration,
}

impl Api {
    pub fn new(base: &str, token_file: PathBuf, timeout: Duration) -> Result<Self, HttpError> {
        let text = std::fs::read_to_string(&token_file).map_err(|source| HttpError::Token {
            path: token_file.clone(),
            source,
        })?;
        let token = text.trim().to_owned();
        if token.is_empty() {
            return Err(HttpError::EmptyToken { path: token_file });
        }
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build()
            .into();
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            token,
            agent,
            timeout,
        })
    }

    /// Sends `request` and reads the answer as the admin socket's reply.
    pub fn exchange(&self, request: &AdminRequest) -> Result<AdminReply, HttpError> {
        let (post, path) = route(request);
        let url = format!("{}{path}", self.base);
        let auth = format!("Bearer {}", self.token);
        let sent = if post {
            self.agent
                .post(&url)
                .header("Authorization", &auth)
                .send_empty()
        } else {
            self.agent.get(&url).header("Authorization", &auth).call()
        };
        let mut response = sent.map_err(|err| self.transport_error(&url, err))?;
        let status = response.status().as_u16();
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_REPLY_LEN)
            .read_to_string()
            .map_err(|err| self.transport_error(&url, err))?;
        if status == 401 {
            return Err(HttpError::Unauthorized { url });
        }
        if !(200..300).contains(&status) {
            // The API's errors are `{ "error": "..." }`: the same message the socket gives.
            return match serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("error")?.as_str().map(str::to_owned))
            {
                Some(message) => Ok(AdminReply::Error(message)),
                None => Err(HttpError::Status { url, status, body }),
            };
        }
        parse(request, &body).map_err(|e| HttpError::Reply {
            url,
            reason: e.to_string(),
        })
    }

    fn transport_error(&self, url: &str, err: ureq::Error) -> HttpError {
        let url = url.to_owned();
        match err {
            ureq::Error::Timeout(_) => HttpError::Timeout {
                url,
                timeout: self.timeout,
            },
            ureq::Error::StatusCode(status) => HttpError::Status {
                url,
                status,
                body: String::new(),
            },
            other => HttpError::Unreachable {
                url,
                reason: other.to_string(),
            },
        }
    }
}

/// The method (`true`: POST) and path of each request.
fn route(request: &AdminRequest) -> (bool, String) {
    let session =
        |id: &u64, tail: &str| format!("/api/v1/sessions/{}{tail}", session_id_string(*id));
    match request {
        AdminRequest::ListSessions => (false, "/api/v1/sessions".into()),
        AdminRequest::ShowSession(id) => (false, session(id, "")),
        AdminRequest::SessionUsage(id) => (false, session(id, "/usage")),
        AdminRequest::Detach(id) => (true, session(id, "/detach")),
        AdminRequest::Kill(id) => (true, session(id, "/kill")),
        AdminRequest::ListAppliances => (false, "/api/v1/connections".into()),
        AdminRequest::ListKnownAppliances => (false, "/api/v1/appliances".into()),
        AdminRequest::ApproveAppliance(id) => {
            (true, format!("/api/v1/appliances/{}/approve", escape(id)))
        }
        AdminRequest::RevokeAppliance(id) => {
            (true, format!("/api/v1/appliances/{}/revoke", escape(id)))
        }
        AdminRequest::PoolServers => (false, "/api/v1/pool/servers".into()),
        AdminRequest::Drain { server, drain } => (
            true,
            format!(
                "/api/v1/pool/servers/{}/{}",
                escape(server),
                if *drain { "drain" } else { "undrain" }
            ),
        ),
    }
}

/// A path segment with everything but unreserved characters percent-encoded.
fn escape(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The answer to `request`, as the admin socket's reply.
fn parse(request: &AdminRequest, body: &str) -> Result<AdminReply, serde_json::Error> {
    fn json<T: DeserializeOwned>(body: &str) -> Result<T, serde_json::Error> {
        serde_json::from_str(body)
    }
    Ok(match request {
        AdminRequest::ListSessions => AdminReply::Sessions(json(body)?),
        AdminRequest::ShowSession(_) => AdminReply::Session(json(body)?),
        AdminRequest::SessionUsage(_) => AdminReply::Usage(json(body)?),
        AdminRequest::Detach(_) | AdminRequest::Kill(_) | AdminRequest::Drain { .. } => {
            AdminReply::Done
        }
        AdminRequest::ListAppliances => AdminReply::Appliances(json(body)?),
        AdminRequest::ListKnownAppliances => AdminReply::KnownAppliances(json(body)?),
        AdminRequest::ApproveAppliance(_) | AdminRequest::RevokeAppliance(_) => {
            AdminReply::KnownAppliance(json(body)?)
        }
        AdminRequest::PoolServers => AdminReply::PoolServers(json(body)?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_map_to_paths() {
        assert_eq!(
            route(&AdminRequest::ShowSession(0xab)),
            (false, "/api/v1/sessions/00000000000000ab".into())
        );
        assert_eq!(
            route(&AdminRequest::Kill(1)),
            (true, "/api/v1/sessions/0000000000000001/kill".into())
        );
        assert_eq!(
            route(&AdminRequest::Drain {
                server: "rack 1/a".into(),
                drain: false
            }),
            (true, "/api/v1/pool/servers/rack%201%2Fa/undrain".into())
        );
    }

    #[test]
    fn answers_parse_into_replies() {
        let body = r#"[{"id":"00000000000000ab","kind":"user","state":"active","user":"alice",
            "tokens":[],"appliance":3,"pid":null,"wayland_display":null,"created_ms":1,
            "changed_ms":2}]"#;
        match parse(&AdminRequest::ListSessions, body).unwrap() {
            AdminReply::Sessions(v) => assert_eq!(v[0].id, 0xab),
            other => panic!("{other:?}"),
        }
        // `wradm show`'s answer carries its usage too; the session reads past it.
        let body = r#"{"id":"ab","kind":"shared","state":"created","user":null,"tokens":[],
            "appliance":null,"pid":7,"wayland_display":null,"created_ms":1,"changed_ms":2,
            "usage":null}"#;
        assert!(matches!(
            parse(&AdminRequest::ShowSession(0xab), body),
            Ok(AdminReply::Session(_))
        ));
        assert!(parse(&AdminRequest::ListSessions, "{}").is_err());
    }
}
