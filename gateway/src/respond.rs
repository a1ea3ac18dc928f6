//! Writing responses to the client: common headers, JSON answers and errors.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;

use crate::admission::{reset_text, retry_after_secs};
use crate::ctx::RequestCtx;
use crate::error::GatewayError;

/// Headers every Sluice response carries: `x-request-id`, `x-sluice-provider` when known, the
/// `x-ratelimit-*` state of the tightest limits, and `x-sluice-max-tokens-clamped`.
pub fn add_common_headers(resp: &mut ResponseHeader, ctx: &RequestCtx) -> pingora::Result<()> {
    resp.insert_header("x-request-id", ctx.request_id.as_str())?;
    if let Some(p) = &ctx.provider {
        resp.insert_header("x-sluice-provider", &**p)?;
    }
    for (suffix, state) in [
        ("requests", ctx.rate_headers.requests),
        ("tokens", ctx.rate_headers.tokens),
    ] {
        if let Some((limit, remaining, reset)) = state {
            resp.insert_header(format!("x-ratelimit-limit-{suffix}"), limit.to_string())?;
            resp.insert_header(
                format!("x-ratelimit-remaining-{suffix}"),
                remaining.to_string(),
            )?;
            resp.insert_header(format!("x-ratelimit-reset-{suffix}"), reset_text(reset))?;
        }
    }
    if let Some(c) = ctx.clamped {
        resp.insert_header("x-sluice-max-tokens-clamped", c.to_string())?;
    }
    Ok(())
}

/// Write a header, remembering the status; closes the connection afterwards while draining.
pub async fn write_header(
    session: &mut Session,
    ctx: &mut RequestCtx,
    mut resp: ResponseHeader,
    draining: bool,
    end: bool,
) -> pingora::Result<()> {
    add_common_headers(&mut resp, ctx)?;
    // A body of unknown length goes chunked to HTTP/1.1 clients: close-delimited bodies would
    // cost the connection and make a cut stream indistinguishable from a complete one.
    if !end
        && session.req_header().version == http::Version::HTTP_11
        && resp.headers.get(http::header::CONTENT_LENGTH).is_none()
        && resp.headers.get(http::header::TRANSFER_ENCODING).is_none()
    {
        resp.insert_header(http::header::TRANSFER_ENCODING, "chunked")?;
    }
    if draining {
        resp.insert_header("connection", "close")?;
        session.set_keepalive(None);
    }
    ctx.status = resp.status.as_u16();
    ctx.response_started = true;
    session.write_response_header(Box::new(resp), end).await
}

/// A complete JSON response.
pub async fn json(
    session: &mut Session,
    ctx: &mut RequestCtx,
    status: u16,
    body: Bytes,
    draining: bool,
) -> pingora::Result<()> {
    let mut resp = ResponseHeader::build(status, Some(4))?;
    resp.insert_header("content-type", "application/json")?;
    resp.insert_header("content-length", body.len().to_string())?;
    write_header(session, ctx, resp, draining, false).await?;
    ctx.mark_first_byte();
    session.write_response_body(Some(body), true).await
}

/// An OpenAI-shaped error response (before any header was written).
pub async fn error(
    session: &mut Session,
    ctx: &mut RequestCtx,
    err: &GatewayError,
    draining: bool,
) -> pingora::Result<()> {
    let shape = err.shape();
    ctx.error = Some(shape.label);
    let body = err.body();
    let mut resp = ResponseHeader::build(shape.status, Some(4))?;
    resp.insert_header("content-type", "application/json")?;
    resp.insert_header("content-length", body.len().to_string())?;
    if let GatewayError::MethodNotAllowed { allowed, .. } = err {
        resp.insert_header("allow", *allowed)?;
    }
    if let Some(after) = err.retry_after() {
        resp.insert_header("retry-after", retry_after_secs(after).to_string())?;
        resp.insert_header("retry-after-ms", after.as_millis().to_string())?;
    }
    write_header(session, ctx, resp, draining, false).await?;
    session.write_response_body(Some(body), true).await
}
