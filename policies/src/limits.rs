//! Token-aware rate limits and budgets: reserve before the call, settle on real usage.
//!
//! A request names every limit that applies to it (per key, per key and model, per model, per
//! team) and a [`Demand`]: one request, its prompt tokens plus the completion it may produce,
//! and the worst-case cost. [`LocalLimiter::reserve`] admits it only if **every** limit has room,
//! and then takes the room from all of them at once (all or nothing, under one lock, so there is
//! no check-then-act race). [`LocalLimiter::settle`] later replaces the reservation by the real
//! usage and gives back what was not used.
//!
//! Algorithms, all exact under concurrency:
//! - requests and tokens per minute: GCRA (a token bucket that refills continuously; capacity =
//!   the per-minute limit). A refund moves the bucket's theoretical arrival time back.
//! - concurrent requests: a counter.
//! - USD budgets per UTC day and month: spent + reserved within the calendar period, in integer
//!   micro-USD.
//!
//! Time is passed in (microseconds since the Unix epoch), so tests inject it. The same model runs
//! as a Redis Lua script for limits shared across replicas (see the gateway's state module).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Microseconds since the Unix epoch.
pub type Micros = u64;

/// The rate window: limits are per minute.
pub const WINDOW: Micros = 60_000_000;
const DAY: Micros = 86_400_000_000;

/// Current time for limiters.
pub fn now_micros() -> Micros {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// What a limit applies to. Names come from config, so the set is bounded.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    /// One virtual key.
    Key(Arc<str>),
    /// One key on one model.
    KeyModel(Arc<str>, Arc<str>),
    /// One client-facing model, all keys together.
    Model(Arc<str>),
    /// All keys of a team.
    Team(Arc<str>),
}

impl Scope {
    /// `key`, `key_model`, `model` or `team`: for metric labels.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Key(_) => "key",
            Self::KeyModel(..) => "key_model",
            Self::Model(_) => "model",
            Self::Team(_) => "team",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Key(k) => write!(f, "key {k}"),
            Self::KeyModel(k, m) => write!(f, "key {k} on model {m}"),
            Self::Model(m) => write!(f, "model {m}"),
            Self::Team(t) => write!(f, "team {t}"),
        }
    }
}

/// The kinds of limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// Requests per minute.
    Rpm,
    /// Tokens (prompt + completion) per minute.
    Tpm,
    /// Requests in flight.
    Concurrent,
    /// Micro-USD per UTC day.
    UsdPerDay,
    /// Micro-USD per UTC month.
    UsdPerMonth,
}

impl Kind {
    /// `rpm`, `tpm`, `concurrent`, `budget_day`, `budget_month`: for metric labels.
    pub fn label(self) -> &'static str {
        match self {
            Self::Rpm => "rpm",
            Self::Tpm => "tpm",
            Self::Concurrent => "concurrent",
            Self::UsdPerDay => "budget_day",
            Self::UsdPerMonth => "budget_month",
        }
    }

    /// Budgets are quota (`insufficient_quota`), the rest are rates (`rate_limit_exceeded`).
    pub fn is_budget(self) -> bool {
        matches!(self, Self::UsdPerDay | Self::UsdPerMonth)
    }
}

/// One configured limit.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Limit {
    /// What it applies to.
    pub scope: Scope,
    /// What it limits.
    pub kind: Kind,
    /// Requests/min, tokens/min, concurrent requests, or micro-USD per period.
    pub max: u64,
}

/// What one request needs (or, when settling, what it used).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Demand {
    /// Prompt + completion tokens.
    pub tokens: u64,
    /// Cost in micro-USD.
    pub cost_micros: u64,
}

/// Why a request was not admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// The limit with no room.
    pub limit: Limit,
    /// When enough room frees up; `None` when the request can never fit this limit.
    pub retry_after: Option<Duration>,
    /// What the request asked of this limit (1 request, N tokens, micro-USD).
    pub requested: u64,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.limit.kind {
            Kind::Rpm => "requests per minute",
            Kind::Tpm => "tokens per minute",
            Kind::Concurrent => "concurrent requests",
            Kind::UsdPerDay => "daily budget",
            Kind::UsdPerMonth => "monthly budget",
        };
        let amount = |v: u64| match self.limit.kind {
            Kind::UsdPerDay | Kind::UsdPerMonth => format!("${:.6}", v as f64 / 1e6),
            _ => v.to_string(),
        };
        write!(
            f,
            "{what} limit of {} reached for {}: limit {}, requested {}",
            self.limit.kind.label(),
            self.limit.scope,
            amount(self.limit.max),
            amount(self.requested)
        )?;
        if self.retry_after.is_none() && !self.limit.kind.is_budget() {
            write!(f, " (the request alone exceeds the limit)")?;
        }
        Ok(())
    }
}

/// State of the request and token limits after an admission, for `x-ratelimit-*` headers
/// (the most constrained limit of each kind).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateHeaders {
    /// `(limit, remaining, reset)` of the tightest requests-per-minute limit.
    pub requests: Option<(u64, u64, Duration)>,
    /// `(limit, remaining, reset)` of the tightest tokens-per-minute limit.
    pub tokens: Option<(u64, u64, Duration)>,
}

/// A successful reservation: what to settle later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admission {
    /// Header values after the reservation.
    pub headers: RateHeaders,
    /// Budget periods the cost was reserved in (day number, month number).
    pub periods: (u64, u64),
}

#[derive(Debug, Clone, Copy)]
enum State {
    /// GCRA theoretical arrival time.
    Rate { tat: Micros },
    /// Requests in flight.
    Concurrent { n: u64 },
    /// Spent + reserved in `period`.
    Budget { period: u64, spent: u64 },
}

/// Time cost of `n` units of a per-minute limit `max`, rounded up.
fn gcra_cost(n: u64, max: u64) -> Micros {
    if max == 0 {
        return Micros::MAX;
    }
    let c = (u128::from(n) * u128::from(WINDOW)).div_ceil(u128::from(max));
    u64::try_from(c).unwrap_or(u64::MAX)
}

/// Units still available in a GCRA bucket whose TAT is `tat` (≥ now).
fn gcra_remaining(tat: Micros, now: Micros, max: u64) -> u64 {
    let used = tat.saturating_sub(now).min(WINDOW);
    let free = WINDOW - used;
    u64::try_from(u128::from(free) * u128::from(max) / u128::from(WINDOW)).unwrap_or(0)
}

/// Day number (UTC) of a time.
pub fn day_of(now: Micros) -> u64 {
    now / DAY
}

/// Month number (UTC, months since 1970-01) of a time.
pub fn month_of(now: Micros) -> u64 {
    let (y, m, _) = civil_from_days(day_of(now));
    (y - 1970) * 12 + (m - 1)
}

/// Start of the next UTC day / month after `now`.
pub fn period_end(kind: Kind, now: Micros) -> Micros {
    match kind {
        Kind::UsdPerMonth => {
            let (y, m, _) = civil_from_days(day_of(now));
            let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
            days_from_civil(ny, nm, 1) * DAY
        }
        _ => (day_of(now) + 1) * DAY,
    }
}

/// Howard Hinnant's `civil_from_days`, for days since 1970-01-01 (non-negative).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Days since 1970-01-01 of a (year ≥ 1970, month 1-12, day) civil date (UTC).
pub fn days_from_civil(y: u64, m: u64, d: u64) -> u64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// In-process limiter: exact, all-or-nothing, for one replica (or, divided by the replica
/// count, as the fallback when Redis is unreachable).
#[derive(Default)]
pub struct LocalLimiter {
    state: Mutex<HashMap<(Scope, Kind), State>>,
}

impl fmt::Debug for LocalLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalLimiter").finish_non_exhaustive()
    }
}

impl LocalLimiter {
    /// An empty limiter.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(Scope, Kind), State>> {
        // A panic while holding the lock cannot leave a half-applied admission (all updates
        // are computed first, then written), so a poisoned map is still consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admit `demand` against every limit in `limits`, or none.
    pub fn reserve(
        &self,
        limits: &[Limit],
        demand: Demand,
        now: Micros,
    ) -> Result<Admission, Rejection> {
        let periods = (day_of(now), month_of(now));
        let mut state = self.lock();
        let mut updates: Vec<((Scope, Kind), State)> = Vec::with_capacity(limits.len());
        let mut headers = RateHeaders::default();
        for limit in limits {
            let key = (limit.scope.clone(), limit.kind);
            let current = state.get(&key).copied();
            let (next, requested) = match limit.kind {
                Kind::Rpm | Kind::Tpm => {
                    let n = if limit.kind == Kind::Rpm {
                        1
                    } else {
                        demand.tokens
                    };
                    let tat = match current {
                        Some(State::Rate { tat }) => tat.max(now),
                        _ => now,
                    };
                    let new_tat = tat.saturating_add(gcra_cost(n, limit.max));
                    if new_tat - now > WINDOW {
                        let retry_after =
                            (n <= limit.max).then(|| Duration::from_micros(new_tat - now - WINDOW));
                        return Err(Rejection {
                            limit: limit.clone(),
                            retry_after,
                            requested: n,
                        });
                    }
                    let entry = (
                        limit.max,
                        gcra_remaining(new_tat, now, limit.max),
                        Duration::from_micros(new_tat - now),
                    );
                    let slot = if limit.kind == Kind::Rpm {
                        &mut headers.requests
                    } else {
                        &mut headers.tokens
                    };
                    if slot.is_none_or(|(_, rem, _)| entry.1 < rem) {
                        *slot = Some(entry);
                    }
                    (State::Rate { tat: new_tat }, n)
                }
                Kind::Concurrent => {
                    let n = match current {
                        Some(State::Concurrent { n }) => n,
                        _ => 0,
                    };
                    if n + 1 > limit.max {
                        return Err(Rejection {
                            limit: limit.clone(),
                            // A slot frees when a request finishes; suggest a short wait.
                            retry_after: (limit.max > 0).then_some(Duration::from_secs(1)),
                            requested: 1,
                        });
                    }
                    (State::Concurrent { n: n + 1 }, 1)
                }
                Kind::UsdPerDay | Kind::UsdPerMonth => {
                    let period = if limit.kind == Kind::UsdPerDay {
                        periods.0
                    } else {
                        periods.1
                    };
                    let spent = match current {
                        Some(State::Budget { period: p, spent }) if p == period => spent,
                        _ => 0,
                    };
                    if spent.saturating_add(demand.cost_micros) > limit.max {
                        return Err(Rejection {
                            limit: limit.clone(),
                            retry_after: Some(Duration::from_micros(
                                period_end(limit.kind, now) - now,
                            )),
                            requested: demand.cost_micros,
                        });
                    }
                    (
                        State::Budget {
                            period,
                            spent: spent + demand.cost_micros,
                        },
                        demand.cost_micros,
                    )
                }
            };
            let _ = requested;
            updates.push((key, next));
        }
        for (key, next) in updates {
            state.insert(key, next);
        }
        Ok(Admission { headers, periods })
    }

    /// Replace a reservation of `reserved` by the real usage `actual`, and release the
    /// concurrency slot. Tokens and cost beyond the reservation are charged too (as debt that
    /// delays later requests), so a provider that overruns `max_tokens` cannot dodge the limit.
    pub fn settle(
        &self,
        limits: &[Limit],
        admission: &Admission,
        reserved: Demand,
        actual: Demand,
        now: Micros,
    ) {
        let mut state = self.lock();
        for limit in limits {
            let key = (limit.scope.clone(), limit.kind);
            match limit.kind {
                Kind::Rpm => {}
                Kind::Tpm => {
                    if let Some(State::Rate { tat }) = state.get_mut(&key) {
                        if actual.tokens < reserved.tokens {
                            let refund = gcra_cost(reserved.tokens - actual.tokens, limit.max);
                            *tat = tat.saturating_sub(refund).max(now.min(*tat));
                        } else if actual.tokens > reserved.tokens {
                            let extra = gcra_cost(actual.tokens - reserved.tokens, limit.max);
                            *tat = (*tat).max(now).saturating_add(extra);
                        }
                    }
                }
                Kind::Concurrent => {
                    if let Some(State::Concurrent { n }) = state.get_mut(&key) {
                        *n = n.saturating_sub(1);
                    }
                }
                Kind::UsdPerDay | Kind::UsdPerMonth => {
                    let reserved_in = if limit.kind == Kind::UsdPerDay {
                        admission.periods.0
                    } else {
                        admission.periods.1
                    };
                    let current = if limit.kind == Kind::UsdPerDay {
                        day_of(now)
                    } else {
                        month_of(now)
                    };
                    let entry = state.entry(key).or_insert(State::Budget {
                        period: current,
                        spent: 0,
                    });
                    if let State::Budget { period, spent } = entry {
                        if *period == reserved_in && reserved_in == current {
                            *spent = spent
                                .saturating_sub(reserved.cost_micros)
                                .saturating_add(actual.cost_micros);
                        } else if *period == current {
                            // Reserved in a period that has ended: charge the real cost now.
                            *spent = spent.saturating_add(actual.cost_micros);
                        } else {
                            *period = current;
                            *spent = actual.cost_micros;
                        }
                    }
                }
            }
        }
    }

    /// Spent micro-USD in the current period of a budget limit (for reports and clamping).
    pub fn spent(&self, scope: &Scope, kind: Kind, now: Micros) -> u64 {
        let period = if kind == Kind::UsdPerDay {
            day_of(now)
        } else {
            month_of(now)
        };
        match self.lock().get(&(scope.clone(), kind)) {
            Some(State::Budget { period: p, spent }) if *p == period => *spent,
            _ => 0,
        }
    }

    /// Tokens available now in a tokens-per-minute limit.
    pub fn tokens_available(&self, limit: &Limit, now: Micros) -> u64 {
        match self.lock().get(&(limit.scope.clone(), limit.kind)) {
            Some(State::Rate { tat }) => gcra_remaining((*tat).max(now), now, limit.max),
            _ => limit.max,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Micros = 1_800_000_000_000_000; // 2027-01-15

    fn key(id: &str) -> Scope {
        Scope::Key(Arc::from(id))
    }

    fn lim(scope: Scope, kind: Kind, max: u64) -> Limit {
        Limit { scope, kind, max }
    }

    fn tokens(n: u64) -> Demand {
        Demand {
            tokens: n,
            cost_micros: 0,
        }
    }

    #[test]
    fn rpm_admits_the_limit_then_refills_continuously() {
        let l = LocalLimiter::new();
        let limits = [lim(key("a"), Kind::Rpm, 60)];
        for _ in 0..60 {
            l.reserve(&limits, tokens(0), T0).unwrap();
        }
        let r = l.reserve(&limits, tokens(0), T0).unwrap_err();
        assert_eq!(r.limit.kind, Kind::Rpm);
        // One request per second refills.
        assert_eq!(r.retry_after, Some(Duration::from_secs(1)));
        assert!(l.reserve(&limits, tokens(0), T0 + 999_999).is_err());
        assert!(l.reserve(&limits, tokens(0), T0 + 1_000_000).is_ok());
    }

    #[test]
    fn reservation_is_all_or_nothing() {
        let l = LocalLimiter::new();
        let a = lim(key("a"), Kind::Tpm, 1000);
        let team = lim(Scope::Team(Arc::from("t")), Kind::Tpm, 1500);
        l.reserve(std::slice::from_ref(&team), tokens(1000), T0)
            .unwrap();
        // Fits the key but not the team: neither is charged.
        let r = l
            .reserve(&[a.clone(), team.clone()], tokens(600), T0)
            .unwrap_err();
        assert_eq!(r.limit, team);
        assert_eq!(l.tokens_available(&a, T0), 1000);
        assert!(l.reserve(&[a.clone(), team], tokens(500), T0).is_ok());
        assert_eq!(l.tokens_available(&a, T0), 500);
    }

    #[test]
    fn settle_refunds_unused_tokens_and_charges_overruns() {
        let l = LocalLimiter::new();
        let limits = [lim(key("a"), Kind::Tpm, 1000)];
        let adm = l.reserve(&limits, tokens(800), T0).unwrap();
        assert_eq!(l.tokens_available(&limits[0], T0), 200);
        l.settle(&limits, &adm, tokens(800), tokens(300), T0);
        assert_eq!(l.tokens_available(&limits[0], T0), 700);
        let adm = l.reserve(&limits, tokens(100), T0).unwrap();
        l.settle(&limits, &adm, tokens(100), tokens(900), T0);
        // 300 + 900 = 1200 > 1000: in debt, nothing available until it refills.
        assert_eq!(l.tokens_available(&limits[0], T0), 0);
        let r = l.reserve(&limits, tokens(1), T0).unwrap_err();
        assert!(r.retry_after.unwrap() > Duration::from_secs(12));
    }

    #[test]
    fn a_request_larger_than_the_limit_never_fits() {
        let l = LocalLimiter::new();
        let r = l
            .reserve(&[lim(key("a"), Kind::Tpm, 100)], tokens(101), T0)
            .unwrap_err();
        assert_eq!(r.retry_after, None);
        assert!(r.to_string().contains("alone exceeds"));
    }

    #[test]
    fn concurrency_is_released_on_settle() {
        let l = LocalLimiter::new();
        let limits = [lim(key("a"), Kind::Concurrent, 2)];
        let a1 = l.reserve(&limits, tokens(0), T0).unwrap();
        l.reserve(&limits, tokens(0), T0).unwrap();
        assert!(l.reserve(&limits, tokens(0), T0).is_err());
        l.settle(&limits, &a1, tokens(0), tokens(0), T0);
        assert!(l.reserve(&limits, tokens(0), T0).is_ok());
    }

    #[test]
    fn budgets_reset_with_the_calendar() {
        let l = LocalLimiter::new();
        let day = lim(key("a"), Kind::UsdPerDay, 1_000_000); // $1
        let cost = |c| Demand {
            tokens: 0,
            cost_micros: c,
        };
        let adm = l
            .reserve(std::slice::from_ref(&day), cost(900_000), T0)
            .unwrap();
        let r = l
            .reserve(std::slice::from_ref(&day), cost(200_000), T0)
            .unwrap_err();
        assert!(r.limit.kind.is_budget());
        assert_eq!(
            r.retry_after,
            Some(Duration::from_micros(period_end(Kind::UsdPerDay, T0) - T0))
        );
        l.settle(
            std::slice::from_ref(&day),
            &adm,
            cost(900_000),
            cost(100_000),
            T0,
        );
        assert_eq!(l.spent(&key("a"), Kind::UsdPerDay, T0), 100_000);
        assert!(l
            .reserve(std::slice::from_ref(&day), cost(800_000), T0)
            .is_ok());
        // Next day: a fresh budget.
        let tomorrow = period_end(Kind::UsdPerDay, T0);
        assert!(l.reserve(&[day], cost(1_000_000), tomorrow).is_ok());
    }

    #[test]
    fn calendar_math_matches_known_dates() {
        // 2027-01-15T00:00:00Z is day 20833.
        assert_eq!(civil_from_days(20_833), (2027, 1, 15));
        assert_eq!(days_from_civil(2027, 1, 15), 20_833);
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(days_from_civil(2024, 2, 29)), (2024, 2, 29));
        // Month end: from 2027-01-15 the next month starts 2027-02-01.
        assert_eq!(
            period_end(Kind::UsdPerMonth, T0) / DAY,
            days_from_civil(2027, 2, 1)
        );
        assert_eq!(month_of(T0), (2027 - 1970) * 12);
    }

    #[test]
    fn headers_report_the_tightest_limit() {
        let l = LocalLimiter::new();
        let limits = [
            lim(key("a"), Kind::Rpm, 100),
            lim(Scope::Model(Arc::from("m")), Kind::Rpm, 10),
            lim(key("a"), Kind::Tpm, 10_000),
        ];
        let adm = l.reserve(&limits, tokens(2500), T0).unwrap();
        let (max, remaining, reset) = adm.headers.requests.unwrap();
        assert_eq!((max, remaining), (10, 9));
        assert_eq!(reset, Duration::from_secs(6));
        let (max, remaining, reset) = adm.headers.tokens.unwrap();
        assert_eq!((max, remaining), (10_000, 7_500));
        assert_eq!(reset, Duration::from_secs(15));
    }

    #[test]
    fn parallel_reservations_never_exceed_the_limit() {
        let l = Arc::new(LocalLimiter::new());
        let limits = Arc::new([lim(key("a"), Kind::Tpm, 10_000)]);
        let admitted: u64 = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    let l = Arc::clone(&l);
                    let limits = Arc::clone(&limits);
                    s.spawn(move || {
                        (0..100)
                            .filter(|_| l.reserve(&limits[..], tokens(37), T0).is_ok())
                            .count() as u64
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(admitted, 10_000 / 37);
    }
}
