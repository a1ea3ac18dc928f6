//! The Pingora `ProxyHttp` implementation: thin, each phase delegates to its module.
//!
//! - `early_request_filter`: request id, endpoint routing ([`crate::pipeline::route`]).
//! - `request_filter`: policies and forwarding ([`crate::pipeline::handle`]); always answers.
//! - `logging`: metrics and the per-request log line ([`crate::observe`]).

use std::sync::Arc;

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};

use crate::ctx::RequestCtx;
use crate::error::GatewayError;
use crate::state::Shared;
use crate::{observe, pipeline, respond};

/// The API service.
pub struct Gateway {
    shared: Arc<Shared>,
}

impl Gateway {
    /// A gateway over shared state.
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

/// Use the client's `x-request-id` when it is short and printable, else a new UUID.
fn request_id(session: &Session) -> String {
    session
        .req_header()
        .headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx::new()
    }

    async fn early_request_filter(
        &self,
        session: &mut Session,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        ctx.inflight = Some(self.shared.enter());
        ctx.request_id = request_id(session);
        let req = session.req_header();
        ctx.endpoint = pipeline::route(req.method.as_str(), req.uri.path()).map_err(Some);
        Ok(())
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        let Err(err) = pipeline::handle(&self.shared, session, ctx).await else {
            return Ok(true);
        };
        let shape = err.shape();
        ctx.error = Some(shape.label);
        if matches!(err, GatewayError::ClientClosed) {
            if !ctx.response_started {
                ctx.status = 499;
            }
            return Error::e_explain(ErrorType::ConnectionClosed, "client closed the connection");
        }
        if ctx.response_started {
            // Mid-response failure: abort the connection so the client cannot mistake a cut
            // answer for a complete one (SSE clients already got an error event).
            tracing::warn!(request_id = %ctx.request_id, error = %err, "response failed after it started");
            return Error::e_explain(
                ErrorType::HTTPStatus(shape.status),
                "response failed after it started",
            );
        }
        if let GatewayError::Internal(detail) = &err {
            tracing::error!(request_id = %ctx.request_id, detail = %detail, "internal error");
        }
        respond::error(session, ctx, &err, self.shared.is_draining()).await?;
        Ok(true)
    }

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut RequestCtx,
    ) -> Result<Box<HttpPeer>> {
        // Every request is answered in `request_filter`; reaching here is a bug.
        Error::e_explain(
            ErrorType::InternalError,
            "sluice answers every request in request_filter",
        )
    }

    async fn fail_to_proxy(
        &self,
        _session: &mut Session,
        _e: &Error,
        _ctx: &mut RequestCtx,
    ) -> FailToProxy {
        // Errors were answered (or the connection is being aborted on purpose): write nothing,
        // and never reuse the connection.
        FailToProxy {
            error_code: 0,
            can_reuse_downstream: false,
        }
    }

    fn suppress_error_log(&self, _session: &Session, _ctx: &RequestCtx, _error: &Error) -> bool {
        // Sluice logs one line per request itself (in `logging`).
        true
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        observe::finish(&self.shared, session, ctx).await;
    }
}
