//! The `sluice` command: run the gateway, check a config, hash a key.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Sluice: an LLM edge gateway on Pingora.
#[derive(Parser)]
#[command(name = "sluice", version, about)]
struct Cli {
    /// Run the gateway with this config file.
    #[arg(long, env = "SLUICE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Validate this config file, print every error, and exit (non-zero on any error).
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    check_config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Read a virtual key on stdin and print its SHA-256 digest (for `keys[].key_sha256`).
    HashKey,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut out = std::io::stdout();
    if let Some(Command::HashKey) = cli.command {
        let mut raw = String::new();
        if let Err(e) = std::io::stdin().read_to_string(&mut raw) {
            eprintln!("error: cannot read stdin: {e}");
            return ExitCode::FAILURE;
        }
        let key = raw.strip_suffix('\n').unwrap_or(&raw);
        let key = key.strip_suffix('\r').unwrap_or(key);
        if key.is_empty() {
            eprintln!("error: no key on stdin (try: printf %s \"$KEY\" | sluice hash-key)");
            return ExitCode::FAILURE;
        }
        let _ = writeln!(out, "{}", sluice_policies::keys::digest_hex(key));
        return ExitCode::SUCCESS;
    }
    if let Some(path) = cli.check_config {
        return match sluice_config::load_file(&path) {
            Ok(cfg) => {
                let _ = writeln!(
                    out,
                    "{}: OK ({} providers, {} models, {} keys)",
                    path.display(),
                    cfg.providers.len(),
                    cfg.models.len(),
                    cfg.keys.len()
                );
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{}: {} error(s)", path.display(), errors.0.len());
                eprintln!("{errors}");
                ExitCode::FAILURE
            }
        };
    }
    let Some(path) = cli.config else {
        eprintln!("error: no config: pass --config FILE (or set SLUICE_CONFIG); see --help");
        return ExitCode::from(2);
    };
    let config = match sluice_config::load_file(&path) {
        Ok(c) => c,
        Err(errors) => {
            eprintln!("{}: {} error(s)", path.display(), errors.0.len());
            eprintln!("{errors}");
            return ExitCode::FAILURE;
        }
    };
    match sluice::server::run(config, Some(path)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
