//! `fake-llm`: standalone fake OpenAI-compatible upstream (for benchmarks and
//! manual testing).
//!
//! Usage: `fake-llm [--listen 127.0.0.1:PORT] [--require-api-key KEY]`
//! (default listen address `127.0.0.1:8081`). Prints `listening on <addr>`
//! once bound and serves until killed.

use std::io::Write;

use sluice_tests::fake::{serve, FakeOptions};

const USAGE: &str = "usage: fake-llm [--listen 127.0.0.1:PORT] [--require-api-key KEY]";

fn parse_args() -> Result<(String, FakeOptions), String> {
    let mut listen = "127.0.0.1:8081".to_owned();
    let mut opts = FakeOptions::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let (name, inline) = match arg.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n.to_owned(), Some(v.to_owned())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            match inline.clone() {
                Some(v) => Ok(v),
                None => args
                    .next()
                    .ok_or_else(|| format!("{name} needs a value\n{USAGE}")),
            }
        };
        match name.as_str() {
            "--listen" => listen = value("--listen")?,
            "--require-api-key" => opts.require_api_key = Some(value("--require-api-key")?),
            "-h" | "--help" => return Err(USAGE.to_owned()),
            other => return Err(format!("unknown argument: {other}\n{USAGE}")),
        }
    }
    Ok((listen, opts))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (listen, opts) = match parse_args() {
        Ok(v) => v,
        Err(msg) => {
            eprintln!("{msg}");
            std::process::exit(2);
        }
    };
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    let addr = listener.local_addr()?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {addr}")?;
        out.flush()?;
    }
    serve(listener, opts).await?;
    Ok(())
}
