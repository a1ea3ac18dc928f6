//! Hot reload: on SIGHUP or when the config file changes, parse and validate the file, build a
//! new [`Runtime`] and swap it in atomically. An invalid file is rejected with a log line and
//! `sluice_config_reloads_total{result="error"}`; the running config stays. Requests in flight
//! keep the snapshot they started with.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use notify::{EventKind, RecursiveMode, Watcher};
use sha2::{Digest, Sha256};

use crate::state::{Runtime, Shared};

/// Changes arriving within this window are handled as one (editors write in several steps).
const DEBOUNCE: Duration = Duration::from_millis(150);

/// Reload now. Returns the new generation, or every error found.
pub async fn reload(shared: &Shared, trigger: &str) -> Result<u64, String> {
    let Some(path) = &shared.config_path else {
        return Err("no config file to reload".into());
    };
    let result = match sluice_config::load_file(path) {
        Err(errors) => Err(errors.to_string()),
        Ok(config) => {
            let old = shared.runtime.load();
            if config.server.listen != old.config.server.listen
                || config.server.admin_listen != old.config.server.admin_listen
                || config.server.threads != old.config.server.threads
            {
                tracing::warn!("server.listen, server.admin_listen and server.threads take effect only after a restart");
            }
            let generation = shared.next_generation.fetch_add(1, Ordering::AcqRel);
            match Runtime::build(config, generation).await {
                Ok(rt) => {
                    shared.runtime.store(Arc::new(rt));
                    Ok(generation)
                }
                Err(e) => Err(e),
            }
        }
    };
    match &result {
        Ok(generation) => {
            shared
                .metrics
                .config_reloads
                .with_label_values(&["success"])
                .inc();
            tracing::info!(trigger, generation, path = %path.display(), "config reloaded");
        }
        Err(errors) => {
            shared
                .metrics
                .config_reloads
                .with_label_values(&["error"])
                .inc();
            tracing::error!(trigger, path = %path.display(), errors = %errors, "config reload rejected; keeping the running config");
        }
    }
    result
}

fn digest(path: &Path) -> Option<[u8; 32]> {
    std::fs::read(path).ok().map(|b| Sha256::digest(&b).into())
}

/// Whether a file-system event concerns the config file. Kubernetes ConfigMap volumes swap a
/// `..data` symlink instead of writing the file, so that counts too.
fn concerns(event: &notify::Event, file_name: &std::ffi::OsStr) -> bool {
    let kind_matters = matches!(
        event.kind,
        EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) | EventKind::Any
    );
    kind_matters
        && event.paths.iter().any(|p| {
            p.file_name()
                .is_some_and(|n| n == file_name || n == "..data")
        })
}

/// Start the reloader on a thread of its own (a small current-thread runtime): SIGHUP and
/// file-change events, debounced. File events that leave the content unchanged are ignored.
pub fn spawn(shared: Arc<Shared>) -> std::io::Result<()> {
    let Some(path) = shared.config_path.clone() else {
        return Ok(());
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Register for SIGHUP before returning so an early signal is not lost (or fatal).
    let hup = rt.block_on(async {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
    })?;
    std::thread::Builder::new()
        .name("sluice-reload".into())
        .spawn(move || rt.block_on(watch_loop(shared, path, hup)))?;
    Ok(())
}

async fn watch_loop(shared: Arc<Shared>, path: PathBuf, mut hup: tokio::signal::unix::Signal) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(64);
    let file_name = path.file_name().map(|n| n.to_owned()).unwrap_or_default();
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(event) = res {
            if concerns(&event, &file_name) {
                let _ = tx.try_send(());
            }
        }
    });
    let _watcher = match watcher {
        Ok(mut w) => match w.watch(&dir, RecursiveMode::NonRecursive) {
            Ok(()) => Some(w),
            Err(e) => {
                tracing::warn!(error = %e, dir = %dir.display(), "cannot watch the config directory; reload with SIGHUP");
                None
            }
        },
        Err(e) => {
            tracing::warn!(error = %e, "file watching unavailable; reload with SIGHUP");
            None
        }
    };
    let mut last = digest(&path);
    loop {
        tokio::select! {
            s = hup.recv() => {
                if s.is_none() {
                    return;
                }
                last = digest(&path);
                let _ = reload(&shared, "sighup").await;
            }
            e = rx.recv() => {
                if e.is_none() {
                    return;
                }
                tokio::time::sleep(DEBOUNCE).await;
                while rx.try_recv().is_ok() {}
                let now = digest(&path);
                if now.is_some() && now != last {
                    last = now;
                    let _ = reload(&shared, "file").await;
                }
            }
        }
    }
}
