//! The `request_filter` phase: auth, body, model resolution, then forwarding.
//!
//! Every request is answered here (the phase returns `Ok(true)`), so Pingora's own upstream path
//! is never used for LLM calls.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use pingora::proxy::Session;
use serde_json::json;
use sluice_policies::keys::{key_from_headers, Principal};
use sluice_policies::openai::{parse_request, ApiKind};

use crate::admission;
use crate::ctx::{Endpoint, RequestCtx};
use crate::error::GatewayError;
use crate::forward;
use crate::respond;
use crate::state::{Runtime, Shared};

/// Decide the endpoint from method and path (`early_request_filter`).
pub fn route(method: &str, path: &str) -> Result<Endpoint, GatewayError> {
    let (endpoint, allowed) = match path {
        "/v1/chat/completions" => (Endpoint::Api(ApiKind::ChatCompletions), "POST"),
        "/v1/completions" => (Endpoint::Api(ApiKind::Completions), "POST"),
        "/v1/embeddings" => (Endpoint::Api(ApiKind::Embeddings), "POST"),
        "/v1/models" => (Endpoint::Models, "GET"),
        _ => {
            let mut path: String = path.chars().take(256).collect();
            path.retain(|c| !c.is_control());
            return Err(GatewayError::NotFound {
                method: method.chars().take(16).collect(),
                path,
            });
        }
    };
    if method == allowed || (allowed == "GET" && method == "HEAD") {
        Ok(endpoint)
    } else {
        Err(GatewayError::MethodNotAllowed {
            method: method.chars().take(16).collect(),
            path: path.to_owned(),
            allowed,
        })
    }
}

/// Authenticate the caller from `Authorization: Bearer` or `x-api-key`.
pub fn authenticate(rt: &Runtime, session: &Session) -> Result<Principal, GatewayError> {
    let headers = &session.req_header().headers;
    let presented = key_from_headers(
        headers
            .get(http::header::AUTHORIZATION)
            .map(|v| v.as_bytes()),
        headers.get("x-api-key").map(|v| v.as_bytes()),
    );
    Ok(rt.keys.authorize(presented, rt.config.auth.required)?)
}

/// Read the whole request body, refusing more than `limit` bytes.
pub async fn read_body(session: &mut Session, limit: usize) -> Result<Bytes, GatewayError> {
    let headers = &session.req_header().headers;
    if let Some(enc) = headers.get(http::header::CONTENT_ENCODING) {
        if !enc.as_bytes().eq_ignore_ascii_case(b"identity") {
            session.set_keepalive(None);
            return Err(GatewayError::UnsupportedEncoding);
        }
    }
    let declared = headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        // The body stays unread: the connection cannot be reused.
        session.set_keepalive(None);
        return Err(GatewayError::BodyTooLarge { limit });
    }
    let expects_continue = headers
        .get(http::header::EXPECT)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
    if expects_continue {
        // curl and others wait (1 s by default) for this before sending a large body.
        session
            .downstream_session
            .write_continue_response()
            .await
            .map_err(|_| GatewayError::ClientClosed)?;
    }
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(8 * 1024).min(limit));
    loop {
        let chunk = session.read_request_body().await.map_err(|e| {
            tracing::debug!(error = %e, "reading request body failed");
            GatewayError::ClientClosed
        })?;
        let Some(chunk) = chunk else { break };
        if buf.len() + chunk.len() > limit {
            session.set_keepalive(None);
            return Err(GatewayError::BodyTooLarge { limit });
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// Run the request through the policies and forward it. Errors are answered by the caller.
pub async fn handle(
    shared: &Arc<Shared>,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<(), GatewayError> {
    let endpoint = match std::mem::replace(&mut ctx.endpoint, Err(None)) {
        Ok(e) => {
            ctx.endpoint = Ok(e);
            e
        }
        Err(Some(err)) => return Err(err),
        Err(None) => return Err(GatewayError::Internal("endpoint not routed".into())),
    };
    let rt = shared.runtime.load_full();
    ctx.runtime = Some(Arc::clone(&rt));
    let principal = authenticate(&rt, session)?;
    ctx.key_id = Some(Arc::clone(&principal.key_id));
    match endpoint {
        Endpoint::Models => list_models(shared, &rt, &principal, session, ctx).await,
        Endpoint::Api(api) => {
            let body = read_body(session, rt.config.server.max_body_bytes).await?;
            let mut parsed = parse_request(api, &body)?;
            let body_len = body.len();
            drop(body);
            let route = rt
                .routes
                .get(&parsed.model)
                .ok_or_else(|| GatewayError::model_not_found(&parsed.model))?;
            principal.authorize_model(&route.model)?;
            ctx.model = Some(Arc::clone(&route.model));
            ctx.provider = Some(Arc::clone(&route.deployment.name));
            ctx.route = Some(Arc::clone(route));
            guard(shared, &rt, &principal, &mut parsed, ctx)?;
            let admitted =
                admission::admit(shared, &rt, &principal, route, api, &mut parsed, body_len)
                    .await?;
            ctx.rate_headers = admitted.headers;
            ctx.clamped = admitted.clamped;
            ctx.prompt_tokens = admitted.prompt_tokens;
            ctx.reservation = admitted.reservation;
            forward::forward(shared, route, api, parsed, session, ctx).await
        }
    }
}

/// PII guardrails (before anything is counted, cached or forwarded): redact, pseudonymise or
/// block per the key's policy, and count detections.
fn guard(
    shared: &Shared,
    rt: &Runtime,
    principal: &Principal,
    parsed: &mut sluice_policies::openai::ParsedRequest,
    ctx: &mut RequestCtx,
) -> Result<(), GatewayError> {
    let Some(g) = rt.guardrail_for(&principal.key_id) else {
        return Ok(());
    };
    let mut map = sluice_policies::pii::PseudonymMap::new();
    let counts = match g.policy.apply_to_chat(&mut parsed.body, &mut map) {
        Ok(report) => report.counts,
        Err(blocked) => {
            count_detections(shared, &blocked.counts);
            return Err(GatewayError::PiiBlocked {
                entity: blocked.entity.as_str().to_owned(),
            });
        }
    };
    count_detections(shared, &counts);
    if g.restore && !map.is_empty() {
        ctx.pseudonyms = Some(Arc::new(map));
    }
    Ok(())
}

fn count_detections(shared: &Shared, counts: &sluice_policies::pii::Counts) {
    for (entity, action, n) in counts.iter() {
        if n > 0 {
            shared
                .metrics
                .guardrail_detections
                .with_label_values(&[entity.as_str(), action.as_str()])
                .inc_by(u64::from(n));
        }
    }
}

async fn list_models(
    shared: &Shared,
    rt: &Runtime,
    principal: &Principal,
    session: &mut Session,
    ctx: &mut RequestCtx,
) -> Result<(), GatewayError> {
    let created = rt.loaded_unix;
    let data: Vec<_> = rt
        .model_names
        .iter()
        .filter(|m| principal.allows(m))
        .map(|m| json!({"id": m, "object": "model", "created": created, "owned_by": "sluice"}))
        .collect();
    let body = Bytes::from(json!({"object": "list", "data": data}).to_string());
    respond::json(session, ctx, 200, body, shared.is_draining())
        .await
        .map_err(|_| GatewayError::ClientClosed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_methods_and_paths() {
        assert_eq!(
            route("POST", "/v1/chat/completions").unwrap(),
            Endpoint::Api(ApiKind::ChatCompletions)
        );
        assert_eq!(route("GET", "/v1/models").unwrap(), Endpoint::Models);
        assert_eq!(
            route("GET", "/v1/chat/completions")
                .unwrap_err()
                .shape()
                .status,
            405
        );
        assert_eq!(route("POST", "/v1/models").unwrap_err().shape().status, 405);
        assert_eq!(route("POST", "/v2/chat").unwrap_err().shape().status, 404);
        assert_eq!(route("GET", "/").unwrap_err().shape().status, 404);
    }
}
