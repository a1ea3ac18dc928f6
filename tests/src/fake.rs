//! A fake OpenAI-compatible LLM upstream for end-to-end tests and benchmarks.
//!
//! [`FakeLlm`] runs a real HTTP/1.1 server (hyper, keep-alive on) on
//! `127.0.0.1`. It serves:
//!
//! * `POST /v1/chat/completions` (JSON and SSE streaming)
//! * `POST /v1/completions` (legacy, JSON and SSE streaming)
//! * `POST /v1/embeddings` (float or base64 encoding)
//! * `GET /v1/models`
//! * `GET /healthz` (200 `ok`)
//!
//! Anything else gets a 404 OpenAI-shaped error; an unparsable JSON body gets
//! a 400 OpenAI-shaped error.
//!
//! Behaviour is selected by the request's `model` string: `+`-separated
//! tokens, unknown tokens ignored (plain echo):
//!
//! ```text
//! echo                 default: content = "echo: " + last user message text
//! fixed-<N>            content is exactly N bytes ("lorem ipsum dolor sit amet " repeated)
//! huge-<N>             alias of fixed-<N>
//! slow-<ms>            wait ms before sending the response header
//! chunks-<N>-<ms>      streaming: exactly N content chunks, ms delay before each but the first
//!                      (default: ~16-byte chunks, no delay)
//! status-<code>        that status (400..=599) + OpenAI error body
//! ratelimit-<secs>     429 + `retry-after: <secs>`, error type `requests`
//! reset-after-<N>      streaming: role chunk + N content chunks, then the connection is
//!                      aborted (no finish chunk, no [DONE], no terminating chunk);
//!                      non-streaming: content-length larger than the body sent, then abort
//! ```
//!
//! Example: `chunks-5-100+slow-200`, `fixed-1000+status-503`.

mod handlers;
mod model;
#[cfg(test)]
mod tests;
mod util;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::{JoinHandle, JoinSet};

/// Options for the fake upstream.
#[derive(Debug, Default, Clone)]
pub struct FakeOptions {
    /// When set, every request (except `GET /healthz`) must carry
    /// `Authorization: Bearer <key>`; otherwise it gets a 401 OpenAI-shaped
    /// `invalid_api_key` error.
    pub require_api_key: Option<String>,
}

/// One request as received by the fake upstream.
#[derive(Clone, Debug)]
pub struct ReceivedRequest {
    /// HTTP method, e.g. `POST`.
    pub method: String,
    /// Request path without query string, e.g. `/v1/chat/completions`.
    pub path: String,
    /// Headers in arrival order; names are lowercase.
    pub headers: Vec<(String, String)>,
    /// The full request body.
    pub body: Bytes,
}

impl ReceivedRequest {
    /// First value of header `name` (case-insensitive), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON, if it is valid JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// State shared between the server task, connections and the [`FakeLlm`] handle.
#[derive(Debug)]
pub(crate) struct Shared {
    /// `Authorization` header value expected when `require_api_key` is set.
    pub(crate) expected_auth: Option<String>,
    record: bool,
    requests: Mutex<Vec<ReceivedRequest>>,
    request_count: AtomicUsize,
    pub(crate) cancelled_streams: AtomicUsize,
    pub(crate) completed_streams: AtomicUsize,
    next_id: AtomicU64,
}

impl Shared {
    fn new(opts: FakeOptions, record: bool) -> Shared {
        Shared {
            expected_auth: opts.require_api_key.map(|k| format!("Bearer {k}")),
            record,
            requests: Mutex::new(Vec::new()),
            request_count: AtomicUsize::new(0),
            cancelled_streams: AtomicUsize::new(0),
            completed_streams: AtomicUsize::new(0),
            next_id: AtomicU64::new(1),
        }
    }

    /// Counts (and, when recording, stores) a request; returns its id.
    pub(crate) fn record(&self, parts: &http::request::Parts, body: &Bytes) -> u64 {
        self.request_count.fetch_add(1, Ordering::SeqCst);
        if self.record {
            let req = ReceivedRequest {
                method: parts.method.as_str().to_owned(),
                path: parts.uri.path().to_owned(),
                headers: parts
                    .headers
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.as_str().to_ascii_lowercase(),
                            String::from_utf8_lossy(v.as_bytes()).into_owned(),
                        )
                    })
                    .collect(),
                body: body.clone(),
            };
            self.requests
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(req);
        }
        self.next_id.fetch_add(1, Ordering::SeqCst)
    }
}

/// A running fake LLM upstream. Dropping it shuts the server down (the accept
/// task and all its connections are aborted).
#[derive(Debug)]
pub struct FakeLlm {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl FakeLlm {
    /// Starts a fake upstream on `127.0.0.1:0` with default options.
    pub async fn start() -> std::io::Result<FakeLlm> {
        Self::start_with(FakeOptions::default()).await
    }

    /// Starts a fake upstream on `127.0.0.1:0` with the given options.
    pub async fn start_with(opts: FakeOptions) -> std::io::Result<FakeLlm> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(opts, true));
        let task = tokio::spawn(serve_shared(listener, Arc::clone(&shared)));
        Ok(FakeLlm { addr, shared, task })
    }

    /// The bound socket address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL including the `/v1` prefix, e.g. `http://127.0.0.1:PORT/v1`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<ReceivedRequest> {
        self.shared
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Number of requests received so far.
    pub fn request_count(&self) -> usize {
        self.shared.request_count.load(Ordering::SeqCst)
    }

    /// Streams whose client went away before the stream finished.
    pub fn cancelled_streams(&self) -> usize {
        self.shared.cancelled_streams.load(Ordering::SeqCst)
    }

    /// Streams whose `[DONE]` event was handed to the connection.
    pub fn completed_streams(&self) -> usize {
        self.shared.completed_streams.load(Ordering::SeqCst)
    }
}

impl Drop for FakeLlm {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves the fake upstream on `listener` until the returned future is
/// dropped or its task aborted. Used by the `fake-llm` binary.
///
/// Request bodies are not retained here (nobody could read them); counters
/// are kept but not exposed. Use [`FakeLlm`] when requests must be inspected.
pub async fn serve(listener: TcpListener, opts: FakeOptions) -> std::io::Result<()> {
    serve_shared(listener, Arc::new(Shared::new(opts, false))).await;
    Ok(())
}

async fn serve_shared(listener: TcpListener, shared: Arc<Shared>) {
    // Connections live in a JoinSet so that aborting/dropping this future
    // tears every connection down too.
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            res = listener.accept() => match res {
                Ok((stream, _)) => {
                    conns.spawn(serve_conn(stream, Arc::clone(&shared)));
                }
                Err(_) => {
                    // e.g. EMFILE: back off briefly instead of spinning.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

async fn serve_conn(stream: TcpStream, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let svc = service_fn(move |req| {
        let shared = Arc::clone(&shared);
        async move { Ok::<_, Infallible>(handlers::handle(shared, req).await) }
    });
    let _ = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), svc)
        .await;
}

/// Response body: either a complete buffer or frames fed through a channel
/// (so each SSE event goes out as its own flushed frame; an `Err` item aborts
/// the connection).
#[derive(Debug)]
pub(crate) enum FakeBody {
    /// Whole body at once (hyper sets content-length).
    Full(Option<Bytes>),
    /// Incremental body fed by a producer task.
    Channel(mpsc::Receiver<Result<Bytes, std::io::Error>>),
}

impl Body for FakeBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        match self.get_mut() {
            FakeBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            FakeBody::Channel(rx) => rx.poll_recv(cx).map(|o| o.map(|r| r.map(Frame::data))),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, FakeBody::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            FakeBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            FakeBody::Full(None) => SizeHint::with_exact(0),
            FakeBody::Channel(_) => SizeHint::default(),
        }
    }
}
