//! The admin listener (`server.admin_listen`): `GET /metrics`, `/healthz`, `/readyz`.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use serde_json::json;

use crate::state::Shared;

/// Admin HTTP app.
pub struct Admin {
    shared: Arc<Shared>,
}

impl Admin {
    /// An admin app over shared state.
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    fn readiness(&self) -> (StatusCode, Vec<u8>) {
        let rt = self.shared.runtime.load();
        let draining = self.shared.is_draining();
        let body = json!({
            "status": if draining { "draining" } else { "ready" },
            "config_generation": rt.generation,
            "models": rt.model_names.len(),
            "keys": rt.keys.len(),
            "inflight": self.shared.inflight.load(Ordering::Acquire),
        });
        let status = if draining {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::OK
        };
        (status, body.to_string().into_bytes())
    }
}

impl Admin {
    /// `GET /admin/usage?key=ID&day=YYYY-MM-DD` (both optional; day defaults to today, UTC).
    async fn usage(&self, query: &str) -> Response<Vec<u8>> {
        let mut key = None;
        let mut day = None;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "key" => key = Some(v.to_owned()),
                "day" => match crate::ledger::parse_day(v) {
                    Some(d) => day = Some((d, v.to_owned())),
                    None => {
                        return reply(
                            StatusCode::BAD_REQUEST,
                            "application/json",
                            br#"{"error":"day must be YYYY-MM-DD"}"#.to_vec(),
                        )
                    }
                },
                _ => {}
            }
        }
        let today = sluice_policies::limits::day_of(sluice_policies::limits::now_micros());
        let (day, label) = day.unwrap_or((today, String::new()));
        let shared_rows = if self.shared.limiter.is_shared() {
            crate::ledger::query_shared(&self.shared.limiter, key.as_deref(), day).await
        } else {
            None
        };
        let source = if shared_rows.is_some() {
            "redis"
        } else {
            "local"
        };
        let rows = shared_rows.unwrap_or_else(|| self.shared.ledger.query(key.as_deref(), day));
        let keys: serde_json::Map<String, serde_json::Value> = rows
            .into_iter()
            .map(|(k, u)| {
                (
                    k,
                    json!({
                        "requests": u.requests,
                        "prompt_tokens": u.prompt_tokens,
                        "completion_tokens": u.completion_tokens,
                        "cost_usd": u.cost_micros as f64 / 1e6,
                    }),
                )
            })
            .collect();
        let body = json!({"day_number": day, "day": label, "source": source, "keys": keys});
        reply(
            StatusCode::OK,
            "application/json",
            body.to_string().into_bytes(),
        )
    }
}

fn reply(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        resp.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    let len = resp.body().len();
    resp.headers_mut()
        .insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(len));
    resp
}

#[async_trait]
impl ServeHttp for Admin {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let req = session.req_header();
        if req.method != http::Method::GET && req.method != http::Method::HEAD {
            return reply(
                StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                b"method not allowed\n".to_vec(),
            );
        }
        match req.uri.path() {
            "/metrics" => reply(
                StatusCode::OK,
                "text/plain; version=0.0.4; charset=utf-8",
                self.shared.metrics.render(),
            ),
            "/healthz" => reply(StatusCode::OK, "text/plain", b"ok\n".to_vec()),
            "/readyz" => {
                let (status, body) = self.readiness();
                reply(status, "application/json", body)
            }
            "/admin/usage" => {
                let query = req.uri.query().unwrap_or("").to_owned();
                self.usage(&query).await
            }
            _ => reply(StatusCode::NOT_FOUND, "text/plain", b"not found\n".to_vec()),
        }
    }
}
