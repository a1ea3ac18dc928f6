//! Forwarding: the gateway makes the upstream call itself (see DESIGN.md).
//!
//! Called from `request_filter` after the policies ran. Takes a pooled connection from
//! pingora-core's [`Connector`](pingora::connectors::http::Connector), writes the
//! provider-shaped request, reads the response header within the first-byte timeout and relays
//! the body to the client chunk by chunk (SSE events pass as they arrive), feeding the usage
//! observer. A client that goes away cancels the upstream call.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::header;
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::protocols::http::client::HttpSession;
use pingora::proxy::Session;
use sluice_policies::openai::{usage_from_json, ApiKind, ParsedRequest, Usage};
use sluice_policies::sse::SseObserver;

use crate::ctx::RequestCtx;
use crate::error::GatewayError;
use crate::mock;
use crate::respond;
use crate::state::{DeploymentKind, OpenAiUpstream, Route, Shared};

/// How long a released upstream connection may idle in the pool.
const POOL_IDLE: Duration = Duration::from_secs(90);
/// Largest JSON response kept to read `usage` from (the body itself is always relayed whole).
const MAX_USAGE_BUFFER: usize = 8 * 1024 * 1024;
/// Retries on pooled connections found dead before the provider answered.
const MAX_STALE_RETRIES: u32 = 3;

/// Client request headers that never go upstream: credentials (the provider's come from
/// config), hop-by-hop headers, framing that Sluice recomputes, and gateway controls.
fn forwardable(name: &str) -> bool {
    !matches!(
        name,
        "authorization"
            | "x-api-key"
            | "api-key"
            | "cookie"
            | "host"
            | "content-length"
            | "content-type"
            | "content-encoding"
            | "transfer-encoding"
            | "connection"
            | "keep-alive"
            | "proxy-authorization"
            | "proxy-authenticate"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "upgrade"
            | "expect"
            | "accept-encoding"
            | "x-request-id"
            | "openai-organization"
            | "openai-project"
    ) && !name.starts_with("x-sluice-")
}

/// Upstream response headers that are not relayed: hop-by-hop and framing.
fn relayable(name: &str) -> bool {
    !matches!(
        name,
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "x-request-id"
            | "set-cookie"
    )
}

/// Forward a validated request along `route` and relay the answer.
pub async fn forward(
    shared: &Shared,
    route: &Route,
    api: ApiKind,
    parsed: ParsedRequest,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<(), GatewayError> {
    match &route.deployment.kind {
        DeploymentKind::Mock => serve_mock(shared, route, api, &parsed, session, ctx).await,
        DeploymentKind::OpenAi(up) => {
            call_openai(shared, route, up, api, parsed, session, ctx).await
        }
    }
}

async fn serve_mock(
    shared: &Shared,
    route: &Route,
    api: ApiKind,
    parsed: &ParsedRequest,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<(), GatewayError> {
    let answer = mock::respond(api, parsed, &route.upstream_model, &ctx.request_id);
    let mut resp = ResponseHeader::build(200, Some(4)).map_err(internal)?;
    resp.insert_header(header::CONTENT_TYPE, answer.content_type)
        .map_err(internal)?;
    let mut rewrite = ctx
        .pseudonyms
        .take()
        .map(|m| Rewrite::new(m, parsed.stream));
    if parsed.stream {
        resp.insert_header(header::CACHE_CONTROL, "no-cache")
            .map_err(internal)?;
    } else if rewrite.is_none() {
        let len: usize = answer.chunks.iter().map(Bytes::len).sum();
        resp.insert_header(header::CONTENT_LENGTH, len.to_string())
            .map_err(internal)?;
    }
    respond::write_header(session, ctx, resp, shared.is_draining(), false)
        .await
        .map_err(|_| GatewayError::ClientClosed)?;
    ctx.usage = Some(Usage {
        prompt_tokens: answer.prompt_tokens,
        completion_tokens: answer.completion_tokens,
        total_tokens: answer.prompt_tokens + answer.completion_tokens,
        prompt_tokens_details: None,
    });
    let last = answer.chunks.len().saturating_sub(1);
    for (i, chunk) in answer.chunks.into_iter().enumerate() {
        ctx.mark_first_byte();
        if i == last {
            crate::observe::settle(shared, ctx).await;
        }
        let mut chunk = match rewrite.as_mut() {
            Some(r) => r.push(&chunk),
            None => chunk,
        };
        if i == last {
            if let Some(r) = rewrite.take() {
                let mut all = chunk.to_vec();
                all.extend_from_slice(&r.finish());
                chunk = Bytes::from(all);
            }
        }
        if chunk.is_empty() {
            continue;
        }
        session
            .write_response_body(Some(chunk), false)
            .await
            .map_err(|_| GatewayError::ClientClosed)?;
    }
    session
        .write_response_body(None, true)
        .await
        .map_err(|_| GatewayError::ClientClosed)
}

/// Rewrites an answer on its way to the client: puts pseudonymised PII back (PII `restore`).
enum Rewrite {
    Json(crate::restore::JsonRestore),
    Sse(crate::restore::SseRestore),
}

impl Rewrite {
    fn new(map: std::sync::Arc<sluice_policies::pii::PseudonymMap>, sse: bool) -> Self {
        if sse {
            Self::Sse(crate::restore::SseRestore::new(map))
        } else {
            Self::Json(crate::restore::JsonRestore::new(map))
        }
    }

    fn push(&mut self, chunk: &[u8]) -> Bytes {
        match self {
            Self::Json(r) => r.push(chunk),
            Self::Sse(r) => r.push(chunk),
        }
    }

    fn finish(self) -> Bytes {
        match self {
            Self::Json(r) => r.finish(),
            Self::Sse(r) => r.finish(),
        }
    }
}

/// Take the provider's usage (or, for a stream without usage, its text) into the context.
fn record_usage(ctx: &mut RequestCtx, observer: Option<&mut SseObserver>, json: Option<&[u8]>) {
    if ctx.usage.is_some() || ctx.streamed_text.is_some() {
        return;
    }
    ctx.usage = match (&observer, json) {
        (Some(o), _) => o.usage,
        (None, Some(buf)) => usage_from_json(buf),
        _ => None,
    };
    if ctx.usage.is_none() {
        if let Some(o) = observer {
            ctx.streamed_text = Some(std::mem::take(&mut o.content));
        }
    }
}

fn internal(e: impl std::fmt::Display) -> GatewayError {
    GatewayError::Internal(e.to_string())
}

fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// Build the provider request header from the client's.
fn upstream_request_header(
    client: &RequestHeader,
    up: &OpenAiUpstream,
    api: ApiKind,
    body_len: usize,
    request_id: &str,
) -> pingora::Result<RequestHeader> {
    let path = format!("{}{}", up.base_path, api.upstream_path());
    let mut req = RequestHeader::build("POST", path.as_bytes(), Some(client.headers.len() + 8))?;
    for (name, value) in client.headers.iter() {
        if forwardable(name.as_str()) {
            req.append_header(name.clone(), value.clone())?;
        }
    }
    req.insert_header(header::HOST, up.authority.clone())?;
    req.insert_header(header::CONTENT_TYPE, "application/json")?;
    req.insert_header(header::CONTENT_LENGTH, body_len.to_string())?;
    req.insert_header(header::ACCEPT_ENCODING, "identity")?;
    req.insert_header("x-request-id", request_id)?;
    if let Some(auth) = &up.authorization {
        req.insert_header(header::AUTHORIZATION, auth.clone())?;
    }
    for (name, value) in &up.headers {
        req.insert_header(name.clone(), value.clone())?;
    }
    Ok(req)
}

/// Why sending a request and reading its response header failed.
enum Exchange {
    /// The (pooled) connection was dead before the provider answered: safe to try a new one.
    Stale,
    /// No response header within the first-byte (or total) budget.
    Timeout(&'static str),
    /// The client went away while we waited.
    ClientClosed,
}

/// Send header + body, then wait for the response header while watching the client.
async fn exchange(
    up: &mut HttpSession,
    header: RequestHeader,
    body: Bytes,
    first_byte: Duration,
    total: Duration,
    session: &mut Session,
) -> Result<(), Exchange> {
    let send = async {
        up.write_request_header(Box::new(header)).await?;
        up.write_request_body(body, true).await?;
        up.finish_request_body().await
    };
    match tokio::time::timeout(total, send).await {
        Err(_) => return Err(Exchange::Timeout("total")),
        Ok(Err(_)) => return Err(Exchange::Stale),
        Ok(Ok(())) => {}
    }
    let phase = if first_byte < total {
        "first_byte"
    } else {
        "total"
    };
    tokio::select! {
        r = tokio::time::timeout(first_byte.min(total), up.read_response_header()) => match r {
            Err(_) => Err(Exchange::Timeout(phase)),
            Ok(Err(_)) => Err(Exchange::Stale),
            Ok(Ok(())) => Ok(()),
        },
        _ = session.downstream_session.read_body_or_idle(true) => Err(Exchange::ClientClosed),
    }
}

async fn call_openai(
    shared: &Shared,
    route: &Route,
    up: &OpenAiUpstream,
    api: ApiKind,
    mut parsed: ParsedRequest,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<(), GatewayError> {
    let provider = || route.deployment.name.to_string();
    let t = route.timeouts;
    let Some(template) = &up.peer else {
        return Err(GatewayError::UpstreamConnect {
            provider: provider(),
        });
    };
    let mut peer = template.clone();
    peer.options.connection_timeout = Some(t.connect);
    peer.options.total_connection_timeout = Some(t.connect);
    let deadline = Instant::now() + t.total;
    let body = Bytes::from(parsed.upstream_body(&route.upstream_model));
    let header =
        upstream_request_header(session.req_header(), up, api, body.len(), &ctx.request_id)
            .map_err(internal)?;

    // A pooled connection may have been closed by the provider while idle; that shows up as a
    // failed write or an empty read before any response byte. Retry such a request once on a
    // fresh connection: the provider never saw a complete request on the dead one. The pool
    // may hand out several dead connections in a row, so allow a few.
    let mut stale_retries = 0;
    let mut upstream = loop {
        let t0 = Instant::now();
        let got = shared.connector.get_http_session(&peer).await;
        ctx.upstream_wait += t0.elapsed();
        let (mut s, reused) = match got {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(request_id = %ctx.request_id, provider = %route.deployment.name, error = %e, "upstream connect failed");
                return Err(GatewayError::UpstreamConnect {
                    provider: provider(),
                });
            }
        };
        let t0 = Instant::now();
        let result = exchange(
            &mut s,
            header.clone(),
            body.clone(),
            t.first_byte,
            remaining(deadline),
            session,
        )
        .await;
        ctx.upstream_wait += t0.elapsed();
        match result {
            Ok(()) => break s,
            Err(Exchange::Stale) if reused && stale_retries < MAX_STALE_RETRIES => {
                stale_retries += 1;
                continue;
            }
            Err(Exchange::Stale) => {
                return Err(GatewayError::UpstreamProtocol {
                    provider: provider(),
                    reason: "connection closed before a response",
                });
            }
            Err(Exchange::Timeout(phase)) => {
                s.shutdown().await;
                return Err(GatewayError::UpstreamTimeout {
                    provider: provider(),
                    phase,
                });
            }
            Err(Exchange::ClientClosed) => {
                s.shutdown().await;
                return Err(GatewayError::ClientClosed);
            }
        }
    };

    let Some(up_resp) = upstream.response_header() else {
        return Err(GatewayError::UpstreamProtocol {
            provider: provider(),
            reason: "no response header",
        });
    };
    let status = up_resp.status;
    let is_sse = up_resp
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().starts_with("text/event-stream"));
    let mut resp =
        ResponseHeader::build(status, Some(up_resp.headers.len() + 4)).map_err(internal)?;
    for (name, value) in up_resp.headers.iter() {
        if relayable(name.as_str()) {
            resp.append_header(name.clone(), value.clone())
                .map_err(internal)?;
        }
    }
    if let Some(id) = up_resp.headers.get("x-request-id") {
        resp.insert_header("x-sluice-upstream-request-id", id.clone())
            .map_err(internal)?;
    }
    if is_sse {
        resp.remove_header(&header::CONTENT_LENGTH);
        resp.insert_header(header::CACHE_CONTROL, "no-cache")
            .map_err(internal)?;
    }
    let mut rewrite = ctx
        .pseudonyms
        .take()
        .filter(|_| status.is_success())
        .map(|m| Rewrite::new(m, is_sse));
    if rewrite.is_some() {
        // Restored values change the length.
        resp.remove_header(&header::CONTENT_LENGTH);
    }
    respond::write_header(session, ctx, resp, shared.is_draining(), false)
        .await
        .map_err(|_| GatewayError::ClientClosed)?;

    let mut observer = is_sse.then(SseObserver::new);
    let mut json_buf = (!is_sse && status.is_success()).then(BytesMut::new);
    let failure = loop {
        let wait = t.idle.min(remaining(deadline));
        let t0 = Instant::now();
        let next = tokio::select! {
            r = tokio::time::timeout(wait, upstream.read_response_body()) => r,
            _ = session.downstream_session.read_body_or_idle(true) => {
                upstream.shutdown().await;
                return Err(GatewayError::ClientClosed);
            }
        };
        ctx.upstream_wait += t0.elapsed();
        let chunk = match next {
            Err(_) => {
                let phase = if remaining(deadline).is_zero() {
                    "total"
                } else {
                    "idle"
                };
                break Some(GatewayError::UpstreamTimeout {
                    provider: provider(),
                    phase,
                });
            }
            Ok(Err(_)) => {
                break Some(GatewayError::UpstreamProtocol {
                    provider: provider(),
                    reason: "connection lost mid-response",
                })
            }
            Ok(Ok(None)) => break None,
            Ok(Ok(Some(chunk))) => chunk,
        };
        // An empty chunk would end a chunked response early; there is nothing to send.
        if chunk.is_empty() {
            continue;
        }
        if let Some(o) = observer.as_mut() {
            o.feed(&chunk);
        } else if let Some(buf) = json_buf.as_mut() {
            if buf.len() + chunk.len() <= MAX_USAGE_BUFFER {
                buf.extend_from_slice(&chunk);
            } else {
                json_buf = None;
            }
        }
        ctx.mark_first_byte();
        let done = upstream.response_done();
        let chunk = match rewrite.as_mut() {
            Some(r) => r.push(&chunk),
            None => chunk,
        };
        if done {
            // Settle before the client can see the end of the answer, so a client that sends
            // its next request at once finds its unused capacity already returned.
            record_usage(ctx, observer.as_mut(), json_buf.as_deref());
            crate::observe::settle(shared, ctx).await;
        }
        if !chunk.is_empty()
            && session
                .write_response_body(Some(chunk), false)
                .await
                .is_err()
        {
            upstream.shutdown().await;
            return Err(GatewayError::ClientClosed);
        }
        // Stop watching the client once the answer is complete: with a content-length body
        // the client may already be sending its next request on this connection, and the
        // idle probe would swallow it.
        if done {
            break None;
        }
    };

    record_usage(ctx, observer.as_mut(), json_buf.as_deref());
    crate::observe::settle(shared, ctx).await;
    // A 2xx stream must end with a finish reason and [DONE]; anything else is a truncation
    // the client must hear about, never a silently short answer.
    let failure = failure.or_else(|| {
        let o = observer.as_ref()?;
        (status.is_success() && api != ApiKind::Embeddings && !o.done).then(|| {
            GatewayError::UpstreamProtocol {
                provider: provider(),
                reason: "stream ended without [DONE]",
            }
        })
    });
    if let Some(err) = failure {
        upstream.shutdown().await;
        if is_sse {
            // Best effort: the client may be gone too.
            let _ = session
                .write_response_body(Some(err.sse_event()), false)
                .await;
        }
        return Err(err);
    }
    if let Some(tail) = rewrite.map(Rewrite::finish).filter(|t| !t.is_empty()) {
        session
            .write_response_body(Some(tail), false)
            .await
            .map_err(|_| GatewayError::ClientClosed)?;
    }
    session
        .write_response_body(None, true)
        .await
        .map_err(|_| GatewayError::ClientClosed)?;
    if upstream.response_done() {
        shared
            .connector
            .release_http_session(upstream, &peer, Some(POOL_IDLE))
            .await;
    } else {
        upstream.shutdown().await;
    }
    Ok(())
}
