//! Where limits live: in process (`state.backend: memory`), or shared by every replica through
//! Redis (`state.backend: redis`).
//!
//! With Redis, one Lua script checks and takes every limit of a request atomically (one round
//! trip, EVALSHA), using Redis' own clock so replicas agree; a second script settles. Every key a
//! script touches carries the same hash tag (`{prefix}`), so the scripts also run on Redis
//! Cluster (all limit keys then live in one slot). Concurrency slots are leases in a sorted set
//! that expire on their own, so a replica that dies cannot leak them.
//!
//! Redis calls have a short timeout (`state.timeout`) and a small circuit breaker: after a few
//! failures in a row the request path stops waiting on Redis for a second. Meanwhile
//! `fail_open: true` admits against local limits divided by `state.replicas` (counted in
//! `sluice_state_errors_total`), and `fail_open: false` refuses with 503. The connection manager
//! reconnects by itself.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::Script;
use sluice_config::{RedisState, StateConfig};
use sluice_policies::limits::{
    day_of, month_of, now_micros, period_end, Admission, Demand, Kind, Limit, LocalLimiter,
    RateHeaders, Rejection, Scope, WINDOW,
};
use tokio::sync::Mutex;

/// Consecutive failures that open the Redis breaker.
const BREAKER_FAILURES: u32 = 3;
/// How long the breaker stays open.
const BREAKER_OPEN: Duration = Duration::from_secs(1);
/// Concurrency lease: a slot frees itself after this long even if its settle never arrives.
const LEASE: Duration = Duration::from_secs(15 * 60);

const RESERVE_LUA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local W = 60000000
local tokens = tonumber(ARGV[1])
local cost = tonumber(ARGV[2])
local id = ARGV[3]
local lease = tonumber(ARGV[4])
local n = #KEYS
local new = {}
for i = 1, n do
  local kind = ARGV[3 + 2 * i]
  local max = tonumber(ARGV[4 + 2 * i])
  if kind == 'rpm' or kind == 'tpm' then
    local units = tokens
    if kind == 'rpm' then units = 1 end
    local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
    if tat < now then tat = now end
    local nt = tat + math.ceil(units * W / max)
    if nt - now > W then
      if units <= max then return {0, i, nt - now - W} end
      return {0, i, -1}
    end
    new[i] = nt
  elseif kind == 'conc' then
    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
    if redis.call('ZCARD', KEYS[i]) + 1 > max then return {0, i, 1000000} end
  else
    local spent = tonumber(redis.call('GET', KEYS[i]) or '0')
    if spent + cost > max then return {0, i, -2} end
  end
end
local out = {1}
for i = 1, n do
  local kind = ARGV[3 + 2 * i]
  if kind == 'rpm' or kind == 'tpm' then
    redis.call('SET', KEYS[i], new[i], 'PX', math.ceil((new[i] - now) / 1000) + 1000)
    out[i + 1] = new[i] - now
  elseif kind == 'conc' then
    redis.call('ZADD', KEYS[i], now + lease * 1000, id)
    redis.call('PEXPIRE', KEYS[i], lease + 1000)
    out[i + 1] = 0
  else
    redis.call('INCRBY', KEYS[i], cost)
    redis.call('EXPIRE', KEYS[i], 40 * 86400)
    out[i + 1] = 0
  end
end
return out
"#;

const SETTLE_LUA: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local W = 60000000
local reserved = tonumber(ARGV[1])
local actual = tonumber(ARGV[2])
local rcost = tonumber(ARGV[3])
local acost = tonumber(ARGV[4])
local id = ARGV[5]
for i = 1, #KEYS do
  local kind = ARGV[4 + 2 * i]
  local max = tonumber(ARGV[5 + 2 * i])
  if kind == 'tpm' and actual ~= reserved then
    local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
    if actual < reserved then
      local floor = now
      if tat < now then floor = tat end
      tat = tat - math.ceil((reserved - actual) * W / max)
      if tat < floor then tat = floor end
    else
      if tat < now then tat = now end
      tat = tat + math.ceil((actual - reserved) * W / max)
    end
    if tat > now then
      redis.call('SET', KEYS[i], tat, 'PX', math.ceil((tat - now) / 1000) + 1000)
    end
  elseif kind == 'conc' then
    redis.call('ZREM', KEYS[i], id)
  elseif kind == 'usd' and acost ~= rcost then
    local v = redis.call('INCRBY', KEYS[i], acost - rcost)
    if v < 0 then redis.call('SET', KEYS[i], 0, 'KEEPTTL') end
  end
end
return 1
"#;

/// Why a reservation could not be made.
pub enum ReserveError {
    /// A limit has no room.
    Rejected(Rejection),
    /// Redis is unreachable and `fail_open` is false.
    Unavailable,
}

/// A reservation to settle later.
pub struct Grant {
    /// Header values and budget periods.
    pub admission: Admission,
    via: Via,
}

enum Via {
    Local,
    Fallback(Vec<Limit>),
    Redis { keys: Vec<String>, id: String },
}

/// The limiter behind every request.
pub struct Limiter {
    local: LocalLimiter,
    redis: Option<RedisLimiter>,
}

struct RedisLimiter {
    client: redis::Client,
    conn: Mutex<Option<ConnectionManager>>,
    reserve: Script,
    settle: Script,
    cfg: RedisState,
    failures: AtomicU32,
    open_until: AtomicU64,
    next_id: AtomicU64,
}

impl Limiter {
    /// A limiter for `state`. Fails only on an unparsable Redis URL; an unreachable Redis is
    /// handled per request.
    pub fn new(state: &StateConfig) -> Result<Self, String> {
        let redis = match state {
            StateConfig::Memory => None,
            StateConfig::Redis(cfg) => Some(RedisLimiter {
                client: redis::Client::open(cfg.url.expose().as_str())
                    .map_err(|e| format!("state.redis_url: {e}"))?,
                conn: Mutex::new(None),
                reserve: Script::new(RESERVE_LUA),
                settle: Script::new(SETTLE_LUA),
                cfg: cfg.clone(),
                failures: AtomicU32::new(0),
                open_until: AtomicU64::new(0),
                next_id: AtomicU64::new(0),
            }),
        };
        Ok(Self {
            local: LocalLimiter::new(),
            redis,
        })
    }

    /// Whether limits are shared through Redis.
    pub fn is_shared(&self) -> bool {
        self.redis.is_some()
    }

    /// Admit `demand` against every limit, or none. `on_error` is called when Redis failed.
    pub async fn reserve(
        &self,
        limits: &[Limit],
        demand: Demand,
        on_error: impl Fn(),
    ) -> Result<Grant, ReserveError> {
        let now = now_micros();
        let Some(r) = &self.redis else {
            return self
                .local
                .reserve(limits, demand, now)
                .map(|admission| Grant {
                    admission,
                    via: Via::Local,
                })
                .map_err(ReserveError::Rejected);
        };
        match r.reserve(limits, demand, now).await {
            Ok(result) => result,
            Err(e) => {
                on_error();
                tracing::warn!(error = %e, "redis unavailable for limits");
                if !r.cfg.fail_open {
                    return Err(ReserveError::Unavailable);
                }
                // Each replica takes its share of every limit (budgets included) while Redis is
                // away, so N replicas together stay within the configured totals.
                let scaled: Vec<Limit> = limits
                    .iter()
                    .map(|l| Limit {
                        max: (l.max / r.cfg.replicas).max(1),
                        ..l.clone()
                    })
                    .collect();
                self.local
                    .reserve(&scaled, demand, now)
                    .map(|admission| Grant {
                        admission,
                        via: Via::Fallback(scaled),
                    })
                    .map_err(ReserveError::Rejected)
            }
        }
    }

    /// Settle a grant with the real usage.
    pub async fn settle(&self, limits: &[Limit], grant: Grant, reserved: Demand, actual: Demand) {
        let now = now_micros();
        match grant.via {
            Via::Local => self
                .local
                .settle(limits, &grant.admission, reserved, actual, now),
            Via::Fallback(scaled) => {
                self.local
                    .settle(&scaled, &grant.admission, reserved, actual, now)
            }
            Via::Redis { keys, id } => {
                if let Some(r) = &self.redis {
                    if let Err(e) = r.settle(limits, &keys, &id, reserved, actual).await {
                        tracing::warn!(error = %e, "settling limits in redis failed; the lease and window expire on their own");
                    }
                }
            }
        }
    }

    /// Settle synchronously when possible (local grants); Redis grants are settled on a task.
    pub fn settle_detached(
        self: &Arc<Self>,
        limits: Vec<Limit>,
        grant: Grant,
        reserved: Demand,
        actual: Demand,
    ) {
        match &grant.via {
            Via::Local | Via::Fallback(_) => {
                let now = now_micros();
                match grant.via {
                    Via::Fallback(scaled) => {
                        self.local
                            .settle(&scaled, &grant.admission, reserved, actual, now)
                    }
                    _ => self
                        .local
                        .settle(&limits, &grant.admission, reserved, actual, now),
                }
            }
            Via::Redis { .. } => {
                if let Ok(handle) = tokio::runtime::Handle::try_current() {
                    let me = Arc::clone(self);
                    handle.spawn(async move { me.settle(&limits, grant, reserved, actual).await });
                }
            }
        }
    }

    /// Micro-USD left in the tightest budget among `limits` (`None` when there is none).
    pub async fn budget_left(&self, limits: &[Limit]) -> Option<u64> {
        let budgets: Vec<&Limit> = limits.iter().filter(|l| l.kind.is_budget()).collect();
        if budgets.is_empty() {
            return None;
        }
        let now = now_micros();
        if let Some(r) = &self.redis {
            if let Ok(spent) = r.spent(&budgets, now).await {
                return budgets
                    .iter()
                    .zip(spent)
                    .map(|(l, s)| l.max.saturating_sub(s))
                    .min();
            }
        }
        budgets
            .iter()
            .map(|l| {
                l.max
                    .saturating_sub(self.local.spent(&l.scope, l.kind, now))
            })
            .min()
    }

    /// Redis connection for other shared state (the usage ledger), if configured and healthy.
    pub async fn redis(&self) -> Option<(ConnectionManager, String, Duration)> {
        let r = self.redis.as_ref()?;
        let conn = r.connection().await.ok()?;
        Some((conn, r.cfg.key_prefix.clone(), r.cfg.timeout))
    }
}

fn scope_key(prefix: &str, scope: &Scope) -> String {
    match scope {
        Scope::Key(k) => format!("{prefix}:{{{prefix}}}:k:{k}"),
        Scope::KeyModel(k, m) => format!("{prefix}:{{{prefix}}}:km:{k}:{m}"),
        Scope::Model(m) => format!("{prefix}:{{{prefix}}}:m:{m}"),
        Scope::Team(t) => format!("{prefix}:{{{prefix}}}:t:{t}"),
    }
}

fn limit_key(prefix: &str, limit: &Limit, now: u64) -> String {
    let base = scope_key(prefix, &limit.scope);
    match limit.kind {
        Kind::Rpm => format!("{base}:rpm"),
        Kind::Tpm => format!("{base}:tpm"),
        Kind::Concurrent => format!("{base}:conc"),
        Kind::UsdPerDay => format!("{base}:usd_day:{}", day_of(now)),
        Kind::UsdPerMonth => format!("{base}:usd_month:{}", month_of(now)),
    }
}

fn kind_arg(kind: Kind) -> &'static str {
    match kind {
        Kind::Rpm => "rpm",
        Kind::Tpm => "tpm",
        Kind::Concurrent => "conc",
        Kind::UsdPerDay | Kind::UsdPerMonth => "usd",
    }
}

impl RedisLimiter {
    fn breaker_open(&self) -> bool {
        let until = self.open_until.load(Ordering::Acquire);
        until != 0 && now_micros() < until
    }

    fn record(&self, ok: bool) {
        if ok {
            self.failures.store(0, Ordering::Release);
            self.open_until.store(0, Ordering::Release);
        } else if self.failures.fetch_add(1, Ordering::AcqRel) + 1 >= BREAKER_FAILURES {
            let until = now_micros() + u64::try_from(BREAKER_OPEN.as_micros()).unwrap_or(1_000_000);
            self.open_until.store(until, Ordering::Release);
        }
    }

    async fn connection(&self) -> Result<ConnectionManager, String> {
        if self.breaker_open() {
            return Err("redis circuit open".into());
        }
        let mut slot = self.conn.lock().await;
        if let Some(c) = slot.as_ref() {
            return Ok(c.clone());
        }
        let connect = ConnectionManager::new(self.client.clone());
        match tokio::time::timeout(self.cfg.timeout.max(Duration::from_millis(200)), connect).await
        {
            Ok(Ok(c)) => {
                *slot = Some(c.clone());
                Ok(c)
            }
            Ok(Err(e)) => {
                self.record(false);
                Err(e.to_string())
            }
            Err(_) => {
                self.record(false);
                Err("connect timed out".into())
            }
        }
    }

    async fn reserve(
        &self,
        limits: &[Limit],
        demand: Demand,
        now: u64,
    ) -> Result<Result<Grant, ReserveError>, String> {
        let mut conn = self.connection().await?;
        let keys: Vec<String> = limits
            .iter()
            .map(|l| limit_key(&self.cfg.key_prefix, l, now))
            .collect();
        let id = format!(
            "{}-{}",
            std::process::id(),
            self.next_id.fetch_add(1, Ordering::Relaxed)
        );
        let mut inv = self.reserve.prepare_invoke();
        for k in &keys {
            inv.key(k);
        }
        inv.arg(demand.tokens)
            .arg(demand.cost_micros)
            .arg(&id)
            .arg(u64::try_from(LEASE.as_millis()).unwrap_or(u64::MAX));
        for l in limits {
            inv.arg(kind_arg(l.kind)).arg(l.max);
        }
        let result: Vec<i64> =
            match tokio::time::timeout(self.cfg.timeout, inv.invoke_async(&mut conn)).await {
                Ok(Ok(v)) => v,
                Ok(Err(e)) => {
                    self.record(false);
                    return Err(e.to_string());
                }
                Err(_) => {
                    self.record(false);
                    return Err("redis call timed out".into());
                }
            };
        self.record(true);
        let periods = (day_of(now), month_of(now));
        if result.first() == Some(&1) {
            let mut headers = RateHeaders::default();
            for (limit, used) in limits.iter().zip(result.iter().skip(1)) {
                if !matches!(limit.kind, Kind::Rpm | Kind::Tpm) {
                    continue;
                }
                let used = u64::try_from(*used).unwrap_or(0).min(WINDOW);
                let remaining = u64::try_from(
                    u128::from(WINDOW - used) * u128::from(limit.max) / u128::from(WINDOW),
                )
                .unwrap_or(0);
                let entry = (limit.max, remaining, Duration::from_micros(used));
                let slot = if limit.kind == Kind::Rpm {
                    &mut headers.requests
                } else {
                    &mut headers.tokens
                };
                if slot.is_none_or(|(_, rem, _)| remaining < rem) {
                    *slot = Some(entry);
                }
            }
            return Ok(Ok(Grant {
                admission: Admission { headers, periods },
                via: Via::Redis { keys, id },
            }));
        }
        let index = result
            .get(1)
            .and_then(|i| usize::try_from(*i).ok())
            .unwrap_or(1);
        let limit = limits
            .get(index.saturating_sub(1))
            .cloned()
            .ok_or("bad script reply")?;
        let code = result.get(2).copied().unwrap_or(-1);
        let (retry_after, requested) = match limit.kind {
            Kind::UsdPerDay | Kind::UsdPerMonth => (
                Some(Duration::from_micros(
                    period_end(limit.kind, now).saturating_sub(now),
                )),
                demand.cost_micros,
            ),
            Kind::Rpm => (u64::try_from(code).ok().map(Duration::from_micros), 1),
            Kind::Concurrent => (Some(Duration::from_secs(1)), 1),
            Kind::Tpm => (
                u64::try_from(code).ok().map(Duration::from_micros),
                demand.tokens,
            ),
        };
        Ok(Err(ReserveError::Rejected(Rejection {
            limit,
            retry_after,
            requested,
        })))
    }

    async fn settle(
        &self,
        limits: &[Limit],
        keys: &[String],
        id: &str,
        reserved: Demand,
        actual: Demand,
    ) -> Result<(), String> {
        let mut conn = self.connection().await?;
        let mut inv = self.settle.prepare_invoke();
        for k in keys {
            inv.key(k);
        }
        inv.arg(reserved.tokens)
            .arg(actual.tokens)
            .arg(reserved.cost_micros)
            .arg(actual.cost_micros)
            .arg(id);
        for l in limits {
            inv.arg(kind_arg(l.kind)).arg(l.max);
        }
        // Settling is off the request's critical path: allow a little longer than a reserve.
        match tokio::time::timeout(self.cfg.timeout * 4, inv.invoke_async::<i64>(&mut conn)).await {
            Ok(Ok(_)) => {
                self.record(true);
                Ok(())
            }
            Ok(Err(e)) => {
                self.record(false);
                Err(e.to_string())
            }
            Err(_) => {
                self.record(false);
                Err("redis settle timed out".into())
            }
        }
    }

    async fn spent(&self, budgets: &[&Limit], now: u64) -> Result<Vec<u64>, String> {
        let mut conn = self.connection().await?;
        let keys: Vec<String> = budgets
            .iter()
            .map(|l| limit_key(&self.cfg.key_prefix, l, now))
            .collect();
        let mut cmd = redis::cmd("MGET");
        cmd.arg(&keys);
        let get = cmd.query_async::<Vec<Option<u64>>>(&mut conn);
        match tokio::time::timeout(self.cfg.timeout, get).await {
            Ok(Ok(v)) => {
                self.record(true);
                Ok(v.into_iter().map(Option::unwrap_or_default).collect())
            }
            Ok(Err(e)) => {
                self.record(false);
                Err(e.to_string())
            }
            Err(_) => {
                self.record(false);
                Err("redis call timed out".into())
            }
        }
    }
}
