//! Usage ledger: requests, tokens and cost per key and UTC day, for `GET /admin/usage`.
//!
//! In memory per replica (shared through Redis once `state.backend: redis` exists). Key ids come
//! from config, so the map is bounded by keys × days kept ([`KEEP_DAYS`]).

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::Serialize;

/// Days of history kept.
pub const KEEP_DAYS: u64 = 62;

/// Totals for one key on one day.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DayUsage {
    /// Requests that reached a provider (or the mock).
    pub requests: u64,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Cost in micro-USD.
    pub cost_micros: u64,
}

/// The ledger.
#[derive(Debug, Default)]
pub struct Ledger {
    days: Mutex<BTreeMap<(u64, String), DayUsage>>,
}

impl Ledger {
    /// Add one request's usage.
    pub fn record(&self, key: &str, day: u64, prompt: u64, completion: u64, cost_micros: u64) {
        let mut days = self.days.lock().unwrap_or_else(|p| p.into_inner());
        let e = days.entry((day, key.to_owned())).or_default();
        e.requests += 1;
        e.prompt_tokens += prompt;
        e.completion_tokens += completion;
        e.cost_micros += cost_micros;
        // Drop old days (the map is ordered by day first).
        let oldest = day.saturating_sub(KEEP_DAYS);
        while let Some(((d, _), _)) = days.first_key_value() {
            if *d >= oldest {
                break;
            }
            days.pop_first();
        }
    }

    /// Usage of `key` (or every key) on `day`.
    pub fn query(&self, key: Option<&str>, day: u64) -> BTreeMap<String, DayUsage> {
        let days = self.days.lock().unwrap_or_else(|p| p.into_inner());
        days.range((day, String::new())..)
            .take_while(|((d, _), _)| *d == day)
            .filter(|((_, k), _)| key.is_none_or(|want| want == k))
            .map(|((_, k), u)| (k.clone(), *u))
            .collect()
    }
}

/// `YYYY-MM-DD` → day number since 1970-01-01.
pub fn parse_day(text: &str) -> Option<u64> {
    let mut parts = text.split('-');
    let y: u64 = parts.next()?.parse().ok()?;
    let m: u64 = parts.next()?.parse().ok()?;
    let d: u64 = parts.next()?.parse().ok()?;
    if parts.next().is_some()
        || !(1970..=9999).contains(&y)
        || !(1..=12).contains(&m)
        || !(1..=31).contains(&d)
    {
        return None;
    }
    Some(sluice_policies::limits::days_from_civil(y, m, d))
}

/// Also book usage in Redis when limits are shared, so `/admin/usage` on any replica sees every
/// replica's traffic. Fire-and-forget: the request never waits on it.
pub fn record_shared(
    shared: &crate::state::Shared,
    key: &str,
    day: u64,
    prompt: u64,
    completion: u64,
    cost_micros: u64,
) {
    if !shared.limiter.is_shared() {
        return;
    }
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let limiter = std::sync::Arc::clone(&shared.limiter);
    let key = key.to_owned();
    handle.spawn(async move {
        let Some((mut conn, prefix, timeout)) = limiter.redis().await else {
            return;
        };
        let hash = shared_key(&prefix, day);
        let mut pipe = redis::pipe();
        pipe.hincr(&hash, format!("{key}:requests"), 1u64)
            .ignore()
            .hincr(&hash, format!("{key}:prompt_tokens"), prompt)
            .ignore()
            .hincr(&hash, format!("{key}:completion_tokens"), completion)
            .ignore()
            .hincr(&hash, format!("{key}:cost_micros"), cost_micros)
            .ignore()
            .expire(&hash, i64::try_from(KEEP_DAYS * 86_400).unwrap_or(i64::MAX))
            .ignore();
        match tokio::time::timeout(timeout * 4, pipe.query_async::<()>(&mut conn)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "recording usage in redis failed"),
            Err(_) => tracing::warn!("recording usage in redis timed out"),
        }
    });
}

fn shared_key(prefix: &str, day: u64) -> String {
    format!("{prefix}:{{{prefix}}}:usage:{day}")
}

/// Usage of every replica from Redis; `None` when Redis is not configured or unreachable.
pub async fn query_shared(
    limiter: &crate::limiter::Limiter,
    key: Option<&str>,
    day: u64,
) -> Option<BTreeMap<String, DayUsage>> {
    let (mut conn, prefix, timeout) = limiter.redis().await?;
    let mut cmd = redis::cmd("HGETALL");
    cmd.arg(shared_key(&prefix, day));
    let get = cmd.query_async::<Vec<(String, u64)>>(&mut conn);
    let fields = tokio::time::timeout(timeout * 4, get).await.ok()?.ok()?;
    let mut out: BTreeMap<String, DayUsage> = BTreeMap::new();
    for (field, value) in fields {
        let Some((k, what)) = field.rsplit_once(':') else {
            continue;
        };
        if key.is_some_and(|want| want != k) {
            continue;
        }
        let e = out.entry(k.to_owned()).or_default();
        match what {
            "requests" => e.requests = value,
            "prompt_tokens" => e.prompt_tokens = value,
            "completion_tokens" => e.completion_tokens = value,
            "cost_micros" => e.cost_micros = value,
            _ => {}
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_queries_by_key_and_day() {
        let l = Ledger::default();
        l.record("a", 100, 10, 5, 7);
        l.record("a", 100, 1, 1, 1);
        l.record("b", 100, 3, 0, 0);
        l.record("a", 101, 9, 9, 9);
        let a = l.query(Some("a"), 100);
        assert_eq!(
            a["a"],
            DayUsage {
                requests: 2,
                prompt_tokens: 11,
                completion_tokens: 6,
                cost_micros: 8
            }
        );
        assert_eq!(l.query(None, 100).len(), 2);
        assert!(l.query(Some("a"), 99).is_empty());
    }

    #[test]
    fn old_days_are_dropped() {
        let l = Ledger::default();
        l.record("a", 1, 1, 1, 1);
        l.record("a", 1 + KEEP_DAYS + 1, 1, 1, 1);
        assert!(l.query(Some("a"), 1).is_empty());
    }

    #[test]
    fn parses_days() {
        assert_eq!(parse_day("1970-01-01"), Some(0));
        assert_eq!(parse_day("2027-01-15"), Some(20_833));
        assert_eq!(parse_day("2027-13-01"), None);
        assert_eq!(parse_day("yesterday"), None);
    }
}
