//! `loadgen`: a small HTTP/1.1 load generator for `load.sh` (hyper 1 client, keep-alive
//! connections, hdrhistogram latencies), run on a tokio runtime with ONE worker thread so the
//! servers under test keep the rest of the machine.
//!
//! Modes:
//!
//! - `--rate R --duration S` (open loop): request `i` is scheduled at `start + i/R`, spread over
//!   `--connections C` keep-alive connections; a connection that is free takes the next
//!   scheduled request. When every connection is busy the request waits, and its latency is
//!   measured from its *scheduled* time, so a stalled server cannot hide its stall by slowing
//!   the sender (no coordinated omission). When a connection was free and only had to sleep
//!   until the scheduled time, latency is measured from the actual send: tokio's timer wakes
//!   up to ~1 ms late and that slop belongs to the load generator, not to the server.
//! - `--saturate --connections C --duration S` (closed loop): each connection sends its next
//!   request as soon as the previous answer was read whole; latency from send to last byte.
//!
//! Every request is `POST --path` with the `--body FILE`, `authorization: Bearer sk-bench` and
//! `content-type: application/json`; the response body is always read to its end (SSE
//! included). Prints ONE JSON line:
//! `{requests, errors, non2xx, rps, p50_ms, p90_ms, p99_ms, p999_ms, max_ms, ...}` where
//! `requests` counts responses received, `errors` transport errors and timeouts, `rps` 2xx
//! responses per second.
//!
//! Hard caps: `--duration` ≤ 60 s, ≤ 2,000,000 requests, loopback targets only.
//! `loadgen --free-ports N` prints N currently free loopback ports and exits.

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use hdrhistogram::Histogram;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use http::{HeaderValue, Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::json;

/// Longest run allowed.
const MAX_DURATION_S: f64 = 60.0;
/// Most requests one run may send.
const MAX_REQUESTS: u64 = 2_000_000;
/// Most connections one run may open.
const MAX_CONNECTIONS: usize = 1024;
/// How long past `--duration` an open-loop run keeps sending a backlog before giving up.
const OPEN_LOOP_GRACE: Duration = Duration::from_secs(2);
/// Largest latency the histogram records (µs); longer ones are clamped.
const HIST_MAX_US: u64 = 120_000_000;

/// HTTP/1.1 load generator (open-loop fixed rate or closed-loop saturation).
#[derive(Parser, Debug)]
#[command(name = "loadgen")]
struct Cli {
    /// Target address (loopback only).
    #[arg(long, required_unless_present = "free_ports")]
    addr: Option<SocketAddr>,
    /// Request path.
    #[arg(long, default_value = "/v1/chat/completions")]
    path: String,
    /// File with the request body (JSON).
    #[arg(long, required_unless_present = "free_ports")]
    body: Option<PathBuf>,
    /// Open loop: requests per second, at fixed intervals.
    #[arg(long, conflicts_with = "saturate", required_unless_present_any = ["saturate", "free_ports"])]
    rate: Option<f64>,
    /// Closed loop: every connection sends again as soon as it has its answer.
    #[arg(long)]
    saturate: bool,
    /// Keep-alive connections.
    #[arg(long, default_value_t = 16)]
    connections: usize,
    /// Seconds to run (at most 60).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Per-request timeout in seconds (connect + send + whole response).
    #[arg(long, default_value_t = 5.0)]
    timeout: f64,
    /// A label copied into the JSON output.
    #[arg(long, default_value = "")]
    label: String,
    /// Print this many free loopback ports (space separated) and exit.
    #[arg(long)]
    free_ports: Option<usize>,
}

/// Everything a connection task needs to build and send requests.
struct Target {
    addr: SocketAddr,
    path: String,
    host: HeaderValue,
    auth: HeaderValue,
    body: Bytes,
    timeout: Duration,
}

/// How the run is paced.
#[derive(Clone, Copy)]
enum Mode {
    /// Request `i` at `start + i * interval`, `total` requests, stop sending at `stop_at`.
    Open {
        interval: Duration,
        total: u64,
        stop_at: Instant,
    },
    /// Send until `end` or until the request cap.
    Closed { end: Instant },
}

/// Shared between the connection tasks.
struct Plan {
    start: Instant,
    mode: Mode,
    next: AtomicU64,
}

/// What one connection task measured.
struct Tally {
    hist: Histogram<u64>,
    responses: u64,
    ok: u64,
    non2xx: u64,
    errors: u64,
    last_done: Instant,
}

impl Tally {
    fn new(start: Instant) -> Result<Self, String> {
        Ok(Self {
            hist: Histogram::new_with_bounds(1, HIST_MAX_US, 3).map_err(|e| e.to_string())?,
            responses: 0,
            ok: 0,
            non2xx: 0,
            errors: 0,
            last_done: start,
        })
    }

    fn record(&mut self, outcome: Result<u16, String>, latency: Duration) {
        self.last_done = Instant::now();
        match outcome {
            Ok(status) => {
                self.responses += 1;
                if (200..300).contains(&status) {
                    self.ok += 1;
                } else {
                    self.non2xx += 1;
                }
                let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
                self.hist.saturating_record(us.clamp(1, HIST_MAX_US));
            }
            Err(_) => self.errors += 1,
        }
    }

    fn merge(&mut self, other: Tally) -> Result<(), String> {
        self.hist.add(&other.hist).map_err(|e| e.to_string())?;
        self.responses += other.responses;
        self.ok += other.ok;
        self.non2xx += other.non2xx;
        self.errors += other.errors;
        self.last_done = self.last_done.max(other.last_done);
        Ok(())
    }
}

type Conn = SendRequest<Full<Bytes>>;

async fn connect(addr: SocketAddr) -> Result<Conn, String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(async move {
        // Ends when the connection closes; errors surface on the sender side.
        let _ = conn.await;
    });
    Ok(sender)
}

/// Send one request on `conn` (reconnecting when needed) and read the whole response.
async fn exchange(conn: &mut Option<Conn>, t: &Target) -> Result<u16, String> {
    let sender = match conn {
        Some(s) if !s.is_closed() => s,
        _ => conn.insert(connect(t.addr).await?),
    };
    sender.ready().await.map_err(|e| format!("ready: {e}"))?;
    let mut req = Request::new(Full::new(t.body.clone()));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = t.path.parse().map_err(|e| format!("path: {e}"))?;
    let h = req.headers_mut();
    h.insert(HOST, t.host.clone());
    h.insert(AUTHORIZATION, t.auth.clone());
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("send: {e}"))?;
    let status = resp.status().as_u16();
    resp.into_body()
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?;
    Ok(status)
}

/// [`exchange`] within the per-request timeout; a failed connection is dropped.
async fn timed_exchange(conn: &mut Option<Conn>, t: &Target) -> Result<u16, String> {
    let r = match tokio::time::timeout(t.timeout, exchange(conn, t)).await {
        Ok(r) => r,
        Err(_) => Err("timeout".to_owned()),
    };
    if r.is_err() {
        *conn = None;
    }
    r
}

/// One connection's loop: take the next request of the plan, send it, record it.
async fn connection_loop(
    plan: Arc<Plan>,
    target: Arc<Target>,
    first: Conn,
) -> Result<Tally, String> {
    let mut tally = Tally::new(plan.start)?;
    let mut conn = Some(first);
    match plan.mode {
        Mode::Open {
            interval,
            total,
            stop_at,
        } => loop {
            let i = plan.next.fetch_add(1, Ordering::Relaxed);
            if i >= total {
                break;
            }
            let Some(offset) = u32::try_from(i).ok().and_then(|i| interval.checked_mul(i)) else {
                break;
            };
            let scheduled = plan.start + offset;
            let now = Instant::now();
            if now >= stop_at {
                break;
            }
            let measured_from = if now >= scheduled {
                // Late because every connection was busy: that wait is part of the latency.
                scheduled
            } else {
                tokio::time::sleep_until(scheduled.into()).await;
                Instant::now()
            };
            let outcome = timed_exchange(&mut conn, &target).await;
            tally.record(outcome, measured_from.elapsed());
        },
        Mode::Closed { end } => loop {
            if Instant::now() >= end || plan.next.fetch_add(1, Ordering::Relaxed) >= MAX_REQUESTS {
                break;
            }
            let t0 = Instant::now();
            let outcome = timed_exchange(&mut conn, &target).await;
            let failed = outcome.is_err();
            tally.record(outcome, t0.elapsed());
            if failed {
                // Do not spin on a refused connection.
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        },
    }
    Ok(tally)
}

fn free_ports(n: usize) -> Result<String, String> {
    if n == 0 || n > 64 {
        return Err("--free-ports takes 1..=64".into());
    }
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let ports = listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port().to_string()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    Ok(ports.join(" "))
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

async fn run(cli: Cli) -> Result<serde_json::Value, String> {
    let (Some(addr), Some(body_path)) = (cli.addr, cli.body.as_ref()) else {
        return Err("--addr and --body are required".into());
    };
    if !addr.ip().is_loopback() {
        return Err(format!("--addr must be a loopback address, got {addr}"));
    }
    if !(cli.duration > 0.0 && cli.duration <= MAX_DURATION_S) {
        return Err(format!("--duration must be in (0, {MAX_DURATION_S}]"));
    }
    if cli.connections == 0 || cli.connections > MAX_CONNECTIONS {
        return Err(format!("--connections must be in 1..={MAX_CONNECTIONS}"));
    }
    if !(cli.timeout > 0.0 && cli.timeout <= 30.0) {
        return Err("--timeout must be in (0, 30]".into());
    }
    let body = std::fs::read(body_path).map_err(|e| format!("{}: {e}", body_path.display()))?;
    let target = Arc::new(Target {
        addr,
        host: HeaderValue::from_str(&addr.to_string()).map_err(|e| e.to_string())?,
        auth: HeaderValue::from_static("Bearer sk-bench"),
        path: cli.path.clone(),
        body: Bytes::from(body),
        timeout: Duration::from_secs_f64(cli.timeout),
    });
    let duration = Duration::from_secs_f64(cli.duration);
    // Open the connections before the clock starts, so connect time is not in the numbers.
    let mut conns = Vec::with_capacity(cli.connections);
    for _ in 0..cli.connections {
        conns.push(connect(addr).await?);
    }
    let start = Instant::now();
    let mode = match cli.rate {
        Some(rate) => {
            if !(rate > 0.0 && rate <= 1_000_000.0) {
                return Err("--rate must be in (0, 1000000]".into());
            }
            let total = (rate * cli.duration).floor() as u64;
            if total > MAX_REQUESTS {
                return Err(format!(
                    "rate × duration = {total} requests, more than {MAX_REQUESTS}"
                ));
            }
            Mode::Open {
                interval: Duration::from_secs_f64(1.0 / rate),
                total,
                stop_at: start + duration + OPEN_LOOP_GRACE,
            }
        }
        None => Mode::Closed {
            end: start + duration,
        },
    };
    let plan = Arc::new(Plan {
        start,
        mode,
        next: AtomicU64::new(0),
    });
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|c| {
            let (plan, target) = (Arc::clone(&plan), Arc::clone(&target));
            tokio::spawn(connection_loop(plan, target, c))
        })
        .collect();
    let mut total = Tally::new(start)?;
    for task in tasks {
        let tally = task.await.map_err(|e| e.to_string())??;
        total.merge(tally)?;
    }
    let elapsed = total
        .last_done
        .saturating_duration_since(start)
        .max(duration);
    let (scheduled, dropped) = match mode {
        Mode::Open { total: n, .. } => {
            let sent = total.responses + total.errors;
            (Some(n), n.saturating_sub(sent))
        }
        Mode::Closed { .. } => (None, 0),
    };
    let h = &total.hist;
    let q = |p: f64| {
        if h.is_empty() {
            0.0
        } else {
            ms(h.value_at_quantile(p))
        }
    };
    Ok(json!({
        "label": cli.label,
        "mode": if cli.rate.is_some() { "open" } else { "saturate" },
        "target_rate": cli.rate,
        "connections": cli.connections,
        "duration_s": (elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
        "scheduled": scheduled,
        "dropped": dropped,
        "requests": total.responses,
        "errors": total.errors,
        "non2xx": total.non2xx,
        "rps": ((total.ok as f64 / elapsed.as_secs_f64()) * 10.0).round() / 10.0,
        "p50_ms": q(0.50),
        "p90_ms": q(0.90),
        "p99_ms": q(0.99),
        "p999_ms": q(0.999),
        "max_ms": if h.is_empty() { 0.0 } else { ms(h.max()) },
    }))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut out = std::io::stdout().lock();
    if let Some(n) = cli.free_ports {
        return match free_ports(n) {
            Ok(ports) => {
                let _ = writeln!(out, "{ports}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("loadgen: {e}");
                ExitCode::from(2)
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("loadgen: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(line) => {
            let _ = writeln!(out, "{line}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("loadgen: {e}");
            ExitCode::FAILURE
        }
    }
}
