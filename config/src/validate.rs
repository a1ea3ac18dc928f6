//! Semantic validation: [`RawConfig`] → [`Config`], collecting every error with its path.
//!
//! Each section is checked independently and problems are accumulated, so one run of the loader
//! reports everything wrong with a file. References (model → provider, key → model) are resolved
//! against the raw names, so a broken provider does not also produce "unknown provider" noise.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use url::{Host, Url};

use crate::error::{ConfigError, ConfigErrors};
use crate::raw::{
    RawConfig, RawKey, RawLogFormat, RawLogs, RawModel, RawOnExceed, RawPii, RawPrice, RawProvider,
    RawProviderKind, RawRateLimits, RawServer, RawState, RawTeam, RawTimeouts, MAX_THREADS,
};
use crate::runtime::{
    AuthConfig, Budgets, Config, Endpoint, LogFormat, LogsConfig, Model, OnExceed, PiiConfig,
    Price, Provider, ProviderKind, RateLimits, ServerConfig, StateConfig, Target, Team, Timeouts,
    VirtualKey,
};
use crate::Secret;

/// Smallest accepted `server.max_body_bytes`.
const MIN_BODY_BYTES: u64 = 1024;
/// Longest provider name.
const MAX_PROVIDER_NAME: usize = 64;

/// Validates `raw` into a runtime [`Config`], or returns every problem found.
pub(crate) fn validate(raw: RawConfig) -> Result<Config, ConfigErrors> {
    let mut v = Validator::default();

    let server = v.server(raw.server);
    let auth = AuthConfig {
        required: raw.auth.required,
    };
    let state = v.state(raw.state);

    // Resolve references against the names as written, first definition wins.
    let provider_index = first_index(raw.providers.iter().map(|p| p.name.as_str()));
    let model_names: HashSet<String> = raw.models.iter().map(|m| m.name.clone()).collect();

    let team_names: HashSet<String> = raw.teams.iter().map(|t| t.name.clone()).collect();
    let providers = v.providers(raw.providers);
    let models = v.models(raw.models, &provider_index);
    let teams = v.teams(raw.teams);
    let pii = match raw.guardrails.pii {
        None => Some(None),
        Some(p) => v.pii("guardrails.pii", p),
    };
    let keys = v.keys(raw.keys, &model_names, &team_names);
    let logs = v.logs(raw.logs);

    if !v.errors.is_empty() {
        return Err(ConfigErrors(v.errors));
    }
    match (server, state, providers, models, keys, teams, pii, logs) {
        (
            Some(server),
            Some(state),
            Some(providers),
            Some(models),
            Some(keys),
            Some(teams),
            Some(pii),
            Some(logs),
        ) => Ok(Config {
            pii,
            server,
            auth,
            state,
            providers,
            models,
            keys,
            teams,
            logs,
        }),
        // Every `None` above comes with a recorded error; this is a safety net.
        _ => Err(ConfigErrors(vec![ConfigError::invalid(
            "",
            "internal error: validation failed without reporting why",
        )])),
    }
}

/// Name → index of its first occurrence.
fn first_index<'a>(names: impl Iterator<Item = &'a str>) -> HashMap<String, usize> {
    let mut map = HashMap::new();
    for (i, name) in names.enumerate() {
        map.entry(name.to_owned()).or_insert(i);
    }
    map
}

#[derive(Default)]
struct Validator {
    errors: Vec<ConfigError>,
}

impl Validator {
    fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError::invalid(path, message));
    }

    /// Runs `check`, recording its error (if any) at `path`.
    fn check<T>(&mut self, path: impl Into<String>, result: Result<T, String>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(message) => {
                self.error(path, message);
                None
            }
        }
    }

    fn server(&mut self, raw: RawServer) -> Option<ServerConfig> {
        let mut ok = true;
        if listeners_conflict(raw.listen, raw.admin_listen) {
            self.error(
                "server.admin_listen",
                format!(
                    "must differ from server.listen (both bind {})",
                    raw.admin_listen
                ),
            );
            ok = false;
        }
        let region = self.check("server.region", optional_region(raw.region));
        let max_body_bytes = self.check(
            "server.max_body_bytes",
            if raw.max_body_bytes < MIN_BODY_BYTES {
                Err(format!(
                    "must be at least {MIN_BODY_BYTES} (got {})",
                    raw.max_body_bytes
                ))
            } else {
                usize::try_from(raw.max_body_bytes)
                    .map_err(|_| format!("{} is too large for this platform", raw.max_body_bytes))
            },
        );
        let threads = self.check(
            "server.threads",
            if (1..=MAX_THREADS).contains(&raw.threads) {
                usize::try_from(raw.threads).map_err(|e| e.to_string())
            } else {
                Err(format!(
                    "must be between 1 and {MAX_THREADS} (got {})",
                    raw.threads
                ))
            },
        );
        Some(ServerConfig {
            listen: raw.listen,
            admin_listen: raw.admin_listen,
            region: region?,
            max_body_bytes: max_body_bytes?,
            drain_timeout: raw.drain_timeout.0,
            threads: threads?,
        })
        .filter(|_| ok)
    }

    fn state(&mut self, raw: RawState) -> Option<StateConfig> {
        match raw.backend.as_str() {
            "memory" => {
                if raw.redis_url.is_some() {
                    self.error("state.redis_url", "only used with `backend: redis`");
                    return None;
                }
                Some(StateConfig::Memory)
            }
            "redis" => {
                let mut ok = true;
                let url = match raw.redis_url {
                    Some(u)
                        if u.expose().starts_with("redis://")
                            || u.expose().starts_with("rediss://") =>
                    {
                        Some(u)
                    }
                    Some(_) => {
                        self.error("state.redis_url", "must start with redis:// or rediss://");
                        None
                    }
                    None => {
                        self.error("state.redis_url", "required with `backend: redis`");
                        None
                    }
                };
                if raw.replicas == 0 || raw.replicas > 10_000 {
                    self.error("state.replicas", "must be between 1 and 10000");
                    ok = false;
                }
                if raw.timeout.0.is_zero() {
                    self.error("state.timeout", "must be greater than zero");
                    ok = false;
                }
                if raw.key_prefix.is_empty() || raw.key_prefix.contains(['{', '}', ' ']) {
                    self.error(
                        "state.key_prefix",
                        "must be non-empty without braces or spaces",
                    );
                    ok = false;
                }
                let url = url?;
                ok.then_some(StateConfig::Redis(crate::runtime::RedisState {
                    url,
                    fail_open: raw.fail_open,
                    replicas: raw.replicas,
                    timeout: raw.timeout.0,
                    key_prefix: raw.key_prefix,
                }))
            }
            other => {
                self.error(
                    "state.backend",
                    format!("unknown backend `{other}` (use `memory` or `redis`)"),
                );
                None
            }
        }
    }

    fn providers(&mut self, raw: Vec<RawProvider>) -> Option<Vec<Provider>> {
        if raw.is_empty() {
            self.error("providers", "at least one provider is required");
            return None;
        }
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut out = Vec::with_capacity(raw.len());
        let mut ok = true;
        for (i, provider) in raw.into_iter().enumerate() {
            let path = format!("providers[{i}]");
            if let Some(first) = seen.get(&provider.name) {
                self.error(
                    format!("{path}.name"),
                    format!(
                        "duplicate provider name `{}` (already used by providers[{first}])",
                        provider.name
                    ),
                );
                ok = false;
            } else {
                seen.insert(provider.name.clone(), i);
            }
            match self.provider(&path, provider) {
                Some(provider) => out.push(provider),
                None => ok = false,
            }
        }
        Some(out).filter(|_| ok)
    }

    fn provider(&mut self, path: &str, raw: RawProvider) -> Option<Provider> {
        let mut ok = true;
        let name = self.check(format!("{path}.name"), provider_name(&raw.name));
        let region = self.check(format!("{path}.region"), optional_region(raw.region));
        // An empty key (e.g. from `${OPENAI_API_KEY:-}`) means "no key".
        let api_key = raw.api_key.filter(|key| !key.expose().is_empty());
        let headers = raw.headers.filter(|headers| !headers.is_empty());

        let kind = match raw.kind {
            RawProviderKind::OpenAi => {
                let endpoint = match raw.base_url {
                    Some(url) => self.check(format!("{path}.base_url"), parse_endpoint(&url)),
                    None => {
                        self.error(
                            format!("{path}.base_url"),
                            format!("is required for kind `{}`", raw.kind.as_str()),
                        );
                        None
                    }
                };
                if let Some(key) = &api_key {
                    ok &= self
                        .check(format!("{path}.api_key"), api_key_value(key))
                        .is_some();
                }
                let headers = self.headers(path, headers.unwrap_or_default(), api_key.is_some());
                Some(ProviderKind::OpenAi {
                    endpoint: endpoint?,
                    api_key,
                    headers: headers?,
                })
            }
            RawProviderKind::Mock => {
                let not_allowed = format!("is not allowed for kind `{}`", raw.kind.as_str());
                if raw.base_url.is_some() {
                    self.error(format!("{path}.base_url"), not_allowed.as_str());
                    ok = false;
                }
                if api_key.is_some() {
                    self.error(format!("{path}.api_key"), not_allowed.as_str());
                    ok = false;
                }
                if headers.is_some() {
                    self.error(format!("{path}.headers"), not_allowed.as_str());
                    ok = false;
                }
                Some(ProviderKind::Mock)
            }
        };
        Some(Provider {
            name: name?,
            kind: kind?,
            region: region?,
        })
        .filter(|_| ok)
    }

    fn headers(
        &mut self,
        path: &str,
        raw: BTreeMap<String, String>,
        has_api_key: bool,
    ) -> Option<BTreeMap<String, String>> {
        let mut ok = true;
        let mut seen: HashSet<String> = HashSet::new();
        for (name, value) in &raw {
            let here = format!("{path}.headers.{name}");
            let lower = name.to_ascii_lowercase();
            let problem = if !is_token(name) {
                Some(format!(
                    "`{name}` is not a valid header name (letters, digits and !#$%&'*+-.^_`|~ only)"
                ))
            } else if !seen.insert(lower.clone()) {
                Some(format!(
                    "header `{name}` is given twice (header names are case-insensitive)"
                ))
            } else if MANAGED_HEADERS.contains(&lower.as_str()) {
                Some(format!(
                    "header `{name}` is managed by the gateway and cannot be set here"
                ))
            } else if lower == "authorization" && has_api_key {
                Some("`Authorization` conflicts with api_key: set one or the other".to_owned())
            } else if !value.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
                Some(
                    "value must be printable ASCII (no control or non-ASCII characters)".to_owned(),
                )
            } else {
                None
            };
            if let Some(message) = problem {
                self.error(here, message);
                ok = false;
            }
        }
        Some(raw).filter(|_| ok)
    }

    fn models(
        &mut self,
        raw: Vec<RawModel>,
        providers: &HashMap<String, usize>,
    ) -> Option<Vec<Model>> {
        if raw.is_empty() {
            self.error("models", "at least one model is required");
            return None;
        }
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut out = Vec::with_capacity(raw.len());
        let mut ok = true;
        for (i, model) in raw.into_iter().enumerate() {
            let path = format!("models[{i}]");
            if let Some(first) = seen.get(&model.name) {
                self.error(
                    format!("{path}.name"),
                    format!(
                        "duplicate model name `{}` (already used by models[{first}])",
                        model.name
                    ),
                );
                ok = false;
            } else {
                seen.insert(model.name.clone(), i);
            }
            match self.model(&path, model, providers) {
                Some(model) => out.push(model),
                None => ok = false,
            }
        }
        Some(out).filter(|_| ok)
    }

    fn model(
        &mut self,
        path: &str,
        raw: RawModel,
        providers: &HashMap<String, usize>,
    ) -> Option<Model> {
        let name = self.check(format!("{path}.name"), model_name(&raw.name));

        let mut targets = Vec::with_capacity(raw.targets.len());
        for (j, target) in raw.targets.into_iter().enumerate() {
            let here = format!("{path}.targets[{j}]");
            let provider = match providers.get(&target.provider) {
                Some(index) => Some(*index),
                None => {
                    self.error(
                        format!("{here}.provider"),
                        format!("unknown provider `{}`", target.provider),
                    );
                    None
                }
            };
            let model = self.check(format!("{here}.model"), non_empty(target.model));
            targets.push(provider.zip(model));
        }
        let target = match targets.len() {
            0 => {
                self.error(format!("{path}.targets"), "exactly one target is required");
                None
            }
            1 => targets.pop().flatten(),
            n => {
                self.error(
                    format!("{path}.targets"),
                    format!(
                        "{n} targets given, but multi-target routing is not supported by this \
                         build yet: list exactly one target"
                    ),
                );
                None
            }
        };
        let timeouts = self.timeouts(&format!("{path}.timeouts"), &raw.timeouts);
        let price = match raw.price {
            None => Some(None),
            Some(p) => self.price(&format!("{path}.price"), p).map(Some),
        };
        let limits = self.rate_limits(&format!("{path}.limits"), &raw.limits);
        let max_output_tokens = self.check(
            format!("{path}.max_output_tokens"),
            positive_opt(raw.max_output_tokens),
        );
        let tokenizer = self.check(
            format!("{path}.tokenizer"),
            match raw.tokenizer.as_deref() {
                None => Ok(None),
                Some(t @ ("cl100k_base" | "o200k_base" | "approx")) => Ok(Some(t.to_owned())),
                Some(other) => Err(format!(
                    "unknown tokenizer `{other}`; use cl100k_base, o200k_base or approx"
                )),
            },
        );
        let (provider, model) = target?;
        Some(Model {
            name: name?,
            target: Target { provider, model },
            timeouts: timeouts?,
            price: price?,
            limits: limits?,
            max_output_tokens: max_output_tokens?,
            tokenizer: tokenizer?,
        })
    }

    fn price(&mut self, path: &str, raw: RawPrice) -> Option<Price> {
        let mut ok = true;
        for (field, value) in [
            ("input_per_mtok", Some(raw.input_per_mtok)),
            ("output_per_mtok", Some(raw.output_per_mtok)),
            ("cached_input_per_mtok", raw.cached_input_per_mtok),
        ] {
            if let Some(v) = value {
                if !v.is_finite() || v < 0.0 {
                    self.error(format!("{path}.{field}"), "must be a non-negative number");
                    ok = false;
                }
            }
        }
        Some(Price {
            input_per_mtok: raw.input_per_mtok,
            output_per_mtok: raw.output_per_mtok,
            cached_input_per_mtok: raw.cached_input_per_mtok,
        })
        .filter(|_| ok)
    }

    fn rate_limits(&mut self, path: &str, raw: &RawRateLimits) -> Option<RateLimits> {
        self.limits3(path, raw.rpm, raw.tpm, raw.max_concurrent)
    }

    fn limits3(
        &mut self,
        path: &str,
        rpm: Option<u64>,
        tpm: Option<u64>,
        max_concurrent: Option<u64>,
    ) -> Option<RateLimits> {
        let sep = if path.is_empty() { "" } else { "." };
        let rpm = self.check(format!("{path}{sep}rpm"), positive_opt(rpm));
        let tpm = self.check(format!("{path}{sep}tpm"), positive_opt(tpm));
        let max_concurrent = self.check(
            format!("{path}{sep}max_concurrent"),
            positive_opt(max_concurrent),
        );
        Some(RateLimits {
            rpm: rpm?,
            tpm: tpm?,
            max_concurrent: max_concurrent?,
        })
    }

    fn budgets(&mut self, path: &str, day: Option<f64>, month: Option<f64>) -> Option<Budgets> {
        let day = self.check(format!("{path}.budget_usd_per_day"), usd_micros(day));
        let month = self.check(format!("{path}.budget_usd_per_month"), usd_micros(month));
        Some(Budgets {
            per_day_micros: day?,
            per_month_micros: month?,
        })
    }

    /// A PII policy; `Some(None)` when `enabled: false`.
    fn pii(&mut self, path: &str, raw: RawPii) -> Option<Option<PiiConfig>> {
        if !raw.enabled {
            return Some(None);
        }
        let mut ok = true;
        let check_action = |v: &mut Self, here: String, action: &str| {
            if !PII_ACTIONS.contains(&action) {
                v.error(
                    here,
                    format!("unknown action `{action}`; use redact, block or log_only"),
                );
                false
            } else {
                true
            }
        };
        ok &= check_action(self, format!("{path}.action"), &raw.action);
        let names: Vec<String> = match raw.entities {
            Some(list) => list,
            None => PII_ENTITIES.iter().map(|e| (*e).to_owned()).collect(),
        };
        let mut entities = Vec::with_capacity(names.len());
        let mut seen = HashSet::new();
        for (i, name) in names.iter().enumerate() {
            if !PII_ENTITIES.contains(&name.as_str()) {
                self.error(
                    format!("{path}.entities[{i}]"),
                    format!("unknown entity `{name}`; use {}", PII_ENTITIES.join(", ")),
                );
                ok = false;
            } else if !seen.insert(name.clone()) {
                self.error(
                    format!("{path}.entities[{i}]"),
                    format!("`{name}` is listed twice"),
                );
                ok = false;
            }
            let action = raw.actions.get(name).unwrap_or(&raw.action).clone();
            entities.push((name.clone(), action));
        }
        for (name, action) in &raw.actions {
            if !names.contains(name) {
                self.error(
                    format!("{path}.actions.{name}"),
                    format!("`{name}` is not in {path}.entities"),
                );
                ok = false;
            }
            ok &= check_action(self, format!("{path}.actions.{name}"), action);
        }
        let mode = raw.mode.clone();
        if mode != "mask" && mode != "pseudonym" {
            self.error(
                format!("{path}.mode"),
                format!("unknown mode `{mode}`; use mask or pseudonym"),
            );
            ok = false;
        }
        if raw.restore && mode != "pseudonym" {
            self.error(format!("{path}.restore"), "restore needs mode: pseudonym");
            ok = false;
        }
        let mut custom = Vec::with_capacity(raw.custom.len());
        for (i, c) in raw.custom.iter().enumerate() {
            let here = format!("{path}.custom[{i}]");
            let action = c.action.clone().unwrap_or_else(|| raw.action.clone());
            ok &= check_action(self, format!("{here}.action"), &action);
            let valid_name = !c.name.is_empty()
                && c.name.len() <= 64
                && c.name.starts_with(|ch: char| ch.is_ascii_lowercase())
                && c.name
                    .chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_');
            if !valid_name || PII_ENTITIES.contains(&c.name.as_str()) {
                self.error(
                    format!("{here}.name"),
                    "use lowercase letters, digits and `_`, starting with a letter, not a built-in entity name",
                );
                ok = false;
            }
            match regex::Regex::new(&c.pattern) {
                Ok(re) if re.is_match("") => {
                    self.error(format!("{here}.pattern"), "matches the empty string");
                    ok = false;
                }
                Ok(_) => {}
                Err(e) => {
                    self.error(format!("{here}.pattern"), format!("invalid regex: {e}"));
                    ok = false;
                }
            }
            custom.push((c.name.clone(), c.pattern.clone(), action));
        }
        Some(Some(PiiConfig {
            entities,
            custom,
            mode,
            restore: raw.restore,
        }))
        .filter(|_| ok)
    }

    fn teams(&mut self, raw: Vec<RawTeam>) -> Option<Vec<Team>> {
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut out = Vec::with_capacity(raw.len());
        let mut ok = true;
        for (i, team) in raw.into_iter().enumerate() {
            let path = format!("teams[{i}]");
            if let Some(first) = seen.get(&team.name) {
                self.error(
                    format!("{path}.name"),
                    format!(
                        "duplicate team `{}` (already used by teams[{first}])",
                        team.name
                    ),
                );
                ok = false;
            } else {
                seen.insert(team.name.clone(), i);
            }
            let name = self.check(format!("{path}.name"), key_id(&team.name));
            let limits = self.limits3(&path, team.rpm, team.tpm, team.max_concurrent);
            let budgets = self.budgets(&path, team.budget_usd_per_day, team.budget_usd_per_month);
            match (name, limits, budgets) {
                (Some(name), Some(limits), Some(budgets)) => out.push(Team {
                    name,
                    limits,
                    budgets,
                }),
                _ => ok = false,
            }
        }
        Some(out).filter(|_| ok)
    }

    fn timeouts(&mut self, path: &str, raw: &RawTimeouts) -> Option<Timeouts> {
        let timeouts = Timeouts {
            connect: raw.connect.0,
            first_byte: raw.first_byte.0,
            idle: raw.idle.0,
            total: raw.total.0,
        };
        let mut ok = true;
        for (field, value) in [
            ("connect", timeouts.connect),
            ("first_byte", timeouts.first_byte),
            ("idle", timeouts.idle),
            ("total", timeouts.total),
        ] {
            if value.is_zero() {
                self.error(format!("{path}.{field}"), "must be greater than zero");
                ok = false;
            }
        }
        for (field, value) in [
            ("connect", timeouts.connect),
            ("first_byte", timeouts.first_byte),
        ] {
            if value > timeouts.total {
                self.error(
                    format!("{path}.{field}"),
                    format!(
                        "{} exceeds {path}.total ({})",
                        show(value),
                        show(timeouts.total)
                    ),
                );
                ok = false;
            }
        }
        Some(timeouts).filter(|_| ok)
    }

    fn keys(
        &mut self,
        raw: Vec<RawKey>,
        models: &HashSet<String>,
        teams: &HashSet<String>,
    ) -> Option<Vec<VirtualKey>> {
        let mut ids: HashMap<String, usize> = HashMap::new();
        let mut digests: HashMap<[u8; 32], usize> = HashMap::new();
        let mut out = Vec::with_capacity(raw.len());
        let mut ok = true;
        for (i, key) in raw.into_iter().enumerate() {
            let path = format!("keys[{i}]");
            let id = self.check(format!("{path}.id"), key_id(&key.id));
            if let Some(first) = ids.get(&key.id) {
                self.error(
                    format!("{path}.id"),
                    format!(
                        "duplicate key id `{}` (already used by keys[{first}])",
                        key.id
                    ),
                );
                ok = false;
            } else {
                ids.insert(key.id.clone(), i);
            }

            let digest = self.check(format!("{path}.key_sha256"), parse_digest(&key.key_sha256));
            if let Some(digest) = digest {
                if let Some(first) = digests.get(&digest) {
                    self.error(
                        format!("{path}.key_sha256"),
                        format!("same digest as keys[{first}]: every key must be distinct"),
                    );
                    ok = false;
                } else {
                    digests.insert(digest, i);
                }
            }

            if let Some(allowed) = &key.models {
                for (j, name) in allowed.iter().enumerate() {
                    if !models.contains(name) {
                        self.error(
                            format!("{path}.models[{j}]"),
                            format!("unknown model `{name}`"),
                        );
                        ok = false;
                    }
                }
            }

            if let Some(team) = &key.team {
                if !teams.contains(team) {
                    self.error(
                        format!("{path}.team"),
                        format!("unknown team `{team}` (define it under `teams:`)"),
                    );
                    ok = false;
                }
            }
            let limits = self.limits3(&path, key.rpm, key.tpm, key.max_concurrent);
            let budgets = self.budgets(&path, key.budget_usd_per_day, key.budget_usd_per_month);
            let max_tokens = self.check(format!("{path}.max_tokens"), positive_opt(key.max_tokens));
            let pii = match key.pii.clone() {
                None => Some(None),
                Some(p) => self.pii(&format!("{path}.pii"), p).map(Some),
            };
            let mut model_limits = BTreeMap::new();
            for (model, raw_limits) in &key.model_limits {
                let here = format!("{path}.model_limits.{model}");
                if !models.contains(model) {
                    self.error(here.clone(), format!("unknown model `{model}`"));
                    ok = false;
                }
                match self.rate_limits(&here, raw_limits) {
                    Some(l) => {
                        model_limits.insert(model.clone(), l);
                    }
                    None => ok = false,
                }
            }

            match (id, digest, limits, budgets, max_tokens, pii) {
                (
                    Some(id),
                    Some(digest),
                    Some(limits),
                    Some(budgets),
                    Some(max_tokens),
                    Some(pii),
                ) => out.push(VirtualKey {
                    id,
                    digest,
                    models: key.models,
                    disabled: key.disabled,
                    team: key.team,
                    limits,
                    budgets,
                    max_tokens,
                    on_exceed: match key.on_exceed {
                        None | Some(RawOnExceed::Clamp) => OnExceed::Clamp,
                        Some(RawOnExceed::Reject) => OnExceed::Reject,
                    },
                    model_limits,
                    pii,
                }),
                _ => ok = false,
            }
        }
        Some(out).filter(|_| ok)
    }

    fn logs(&mut self, raw: RawLogs) -> Option<LogsConfig> {
        let level = self.check("logs.level", non_empty(raw.level))?;
        Some(LogsConfig {
            format: match raw.format {
                RawLogFormat::Text => LogFormat::Text,
                RawLogFormat::Json => LogFormat::Json,
            },
            level,
        })
    }
}

/// Built-in PII entity names.
const PII_ENTITIES: &[&str] = &[
    "email",
    "phone",
    "credit_card",
    "ssn",
    "iban",
    "ip_address",
    "secret",
];

/// PII actions.
const PII_ACTIONS: &[&str] = &["redact", "block", "log_only"];

/// `None` or a value ≥ 1.
fn positive_opt(value: Option<u64>) -> Result<Option<u64>, String> {
    match value {
        Some(0) => Err("must be at least 1 (omit it for no limit)".into()),
        v => Ok(v),
    }
}

/// USD → micro-USD; `None` stays `None`.
fn usd_micros(value: Option<f64>) -> Result<Option<u64>, String> {
    match value {
        None => Ok(None),
        Some(v) if v.is_finite() && v > 0.0 && v < 1e12 => Ok(Some((v * 1e6).round() as u64)),
        Some(_) => Err("must be a positive amount in USD (omit it for no budget)".into()),
    }
}

/// Headers the gateway sets itself (framing, routing, hop-by-hop).
const MANAGED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
];

/// Whether two listeners would fight over the same socket. Port 0 (an ephemeral port, picked
/// by the OS) never conflicts; an unspecified IPv6 address (`[::]`) overlaps everything and an
/// unspecified IPv4 address (`0.0.0.0`) overlaps every IPv4 address.
fn listeners_conflict(a: SocketAddr, b: SocketAddr) -> bool {
    if a.port() == 0 || a.port() != b.port() {
        return false;
    }
    let (a, b) = (a.ip(), b.ip());
    let covers = |wild: std::net::IpAddr, other: std::net::IpAddr| {
        wild.is_unspecified() && (wild.is_ipv6() || other.is_ipv4())
    };
    a == b || covers(a, b) || covers(b, a)
}

fn optional_region(region: Option<String>) -> Result<Option<String>, String> {
    match region {
        Some(region) if region.is_empty() || region.chars().any(char::is_whitespace) => {
            Err("must be non-empty and contain no whitespace".to_owned())
        }
        region => Ok(region),
    }
}

fn provider_name(name: &str) -> Result<String, String> {
    let valid_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-'));
    if !name.is_empty() && name.len() <= MAX_PROVIDER_NAME && valid_chars {
        Ok(name.to_owned())
    } else {
        Err(format!(
            "invalid provider name `{name}`: use 1 to {MAX_PROVIDER_NAME} characters among \
             a-z, 0-9, `_`, `.` and `-`"
        ))
    }
}

fn model_name(name: &str) -> Result<String, String> {
    if name.is_empty() {
        Err("must not be empty".to_owned())
    } else if name.chars().any(char::is_whitespace) {
        Err(format!(
            "invalid model name `{name}`: must not contain whitespace"
        ))
    } else {
        Ok(name.to_owned())
    }
}

fn key_id(id: &str) -> Result<String, String> {
    let valid = !id.is_empty()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    if valid {
        Ok(id.to_owned())
    } else {
        Err(format!(
            "invalid key id `{id}`: use letters, digits, `_`, `.` and `-` (at least one)"
        ))
    }
}

fn non_empty(value: String) -> Result<String, String> {
    if value.trim().is_empty() {
        Err("must not be empty".to_owned())
    } else {
        Ok(value)
    }
}

/// An API key must fit in an `Authorization: Bearer ...` header.
fn api_key_value(key: &Secret<String>) -> Result<(), String> {
    if key.expose().bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        // Never echo the key.
        Err("must be printable ASCII without spaces".to_owned())
    }
}

/// RFC 9110 `token`.
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

/// Parses a `base_url` (http/https, no credentials, query or fragment).
fn parse_endpoint(text: &str) -> Result<Endpoint, String> {
    let url = Url::parse(text).map_err(|e| format!("invalid URL: {e}"))?;
    let tls = match url.scheme() {
        "http" => false,
        "https" => true,
        other => {
            return Err(format!(
                "unsupported scheme `{other}` (use `http` or `https`)"
            ))
        }
    };
    if !url.username().is_empty() || url.password().is_some() {
        // Do not echo the URL: it holds credentials.
        return Err("must not contain credentials; use api_key or headers".to_owned());
    }
    if url.query().is_some() {
        return Err("must not have a query string".to_owned());
    }
    if url.fragment().is_some() {
        return Err("must not have a fragment".to_owned());
    }
    let host = match url.host() {
        Some(Host::Domain(domain)) if !domain.is_empty() => domain.to_owned(),
        Some(Host::Ipv4(ip)) => ip.to_string(),
        Some(Host::Ipv6(ip)) => ip.to_string(),
        _ => return Err("must have a host".to_owned()),
    };
    let port = url
        .port_or_known_default()
        .ok_or_else(|| "must have a port".to_owned())?;
    Ok(Endpoint {
        tls,
        host,
        port,
        base_path: url.path().trim_end_matches('/').to_owned(),
    })
}

/// Decodes a 64-character hex SHA-256 digest (either case). Never echoes the input: a raw key
/// pasted here by mistake must not end up in logs.
fn parse_digest(text: &str) -> Result<[u8; 32], String> {
    const HINT: &str = "generate it with `sluice hash-key`";
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return Err(format!(
            "must be the 64 hex characters of a SHA-256 digest, got {} characters ({HINT})",
            text.chars().count()
        ));
    }
    let mut digest = [0u8; 32];
    for (out, pair) in digest.iter_mut().zip(bytes.chunks_exact(2)) {
        match (hex_value(pair[0]), hex_value(pair[1])) {
            (Some(high), Some(low)) => *out = high << 4 | low,
            _ => {
                return Err(format!(
                    "must be a hex SHA-256 digest, but contains a non-hex character ({HINT})"
                ))
            }
        }
    }
    Ok(digest)
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn show(duration: Duration) -> String {
    humantime::format_duration(duration).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_http_default_port() {
        let e = parse_endpoint("http://localhost/v1").unwrap();
        assert_eq!(
            e,
            Endpoint {
                tls: false,
                host: "localhost".into(),
                port: 80,
                base_path: "/v1".into(),
            }
        );
        assert_eq!(e.authority(), "localhost");
    }

    #[test]
    fn endpoint_https_default_port_and_trailing_slash() {
        let e = parse_endpoint("https://api.openai.com/v1/").unwrap();
        assert!(e.tls);
        assert_eq!(e.host, "api.openai.com");
        assert_eq!(e.port, 443);
        assert_eq!(e.base_path, "/v1");
        assert_eq!(e.authority(), "api.openai.com");
    }

    #[test]
    fn endpoint_explicit_port_and_empty_path() {
        let e = parse_endpoint("http://10.0.0.5:8000").unwrap();
        assert_eq!(e.host, "10.0.0.5");
        assert_eq!(e.port, 8000);
        assert_eq!(e.base_path, "");
        assert_eq!(e.authority(), "10.0.0.5:8000");
        let e = parse_endpoint("https://h:8443/").unwrap();
        assert_eq!((e.port, e.base_path.as_str()), (8443, ""));
        // The scheme default written explicitly is still the default.
        let e = parse_endpoint("https://h:443/a//").unwrap();
        assert_eq!((e.port, e.base_path.as_str()), (443, "/a"));
    }

    #[test]
    fn endpoint_ipv6_literal() {
        let e = parse_endpoint("http://[::1]:8081/v1").unwrap();
        assert_eq!(e.host, "::1");
        assert_eq!(e.port, 8081);
        assert_eq!(e.base_path, "/v1");
        assert!(!e.tls);
        assert_eq!(e.authority(), "[::1]:8081");
    }

    #[test]
    fn endpoint_rejections() {
        for (url, needle) in [
            ("ftp://h/v1", "unsupported scheme `ftp`"),
            ("https://h/v1?x=1", "query"),
            ("https://h/v1#top", "fragment"),
            ("https://user:pw@h/v1", "credentials"),
            ("not a url", "invalid URL"),
            ("/v1", "invalid URL"),
        ] {
            let err = parse_endpoint(url).unwrap_err();
            assert!(err.contains(needle), "{url}: {err}");
            assert!(!err.contains("pw"), "{err}");
        }
    }

    #[test]
    fn digests() {
        let hex = "1c590839af894cf25f9a5fe06929af05b377f60efbe55508ef93d251887b9213";
        let d = parse_digest(hex).unwrap();
        assert_eq!(d[0], 0x1c);
        assert_eq!(d[31], 0x13);
        assert_eq!(parse_digest(&hex.to_uppercase()).unwrap(), d);
        let short = parse_digest("abc").unwrap_err();
        assert!(short.contains("got 3 characters"), "{short}");
        let bad = parse_digest(&format!("{}zz", &hex[..62])).unwrap_err();
        assert!(bad.contains("non-hex"), "{bad}");
        let raw_key = parse_digest("sk-sluice-demo").unwrap_err();
        assert!(!raw_key.contains("sk-sluice-demo"), "{raw_key}");
    }

    #[test]
    fn listener_conflicts() {
        let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
        assert!(listeners_conflict(
            addr("127.0.0.1:80"),
            addr("127.0.0.1:80")
        ));
        assert!(listeners_conflict(addr("0.0.0.0:80"), addr("127.0.0.1:80")));
        assert!(listeners_conflict(addr("127.0.0.1:80"), addr("0.0.0.0:80")));
        assert!(listeners_conflict(addr("[::]:80"), addr("127.0.0.1:80")));
        assert!(!listeners_conflict(addr("0.0.0.0:80"), addr("[::1]:80")));
        assert!(!listeners_conflict(
            addr("127.0.0.1:80"),
            addr("127.0.0.2:80")
        ));
        assert!(!listeners_conflict(addr("0.0.0.0:80"), addr("0.0.0.0:81")));
        assert!(!listeners_conflict(
            addr("127.0.0.1:0"),
            addr("127.0.0.1:0")
        ));
    }

    #[test]
    fn names() {
        assert!(provider_name("openai-us.1_a").is_ok());
        assert!(provider_name("OpenAI").is_err());
        assert!(provider_name("").is_err());
        assert!(provider_name(&"a".repeat(64)).is_ok());
        assert!(provider_name(&"a".repeat(65)).is_err());
        assert!(key_id("Team-A.1_x").is_ok());
        assert!(key_id("team a").is_err());
        assert!(key_id("").is_err());
        assert!(model_name("meta-llama/Llama-3:8b").is_ok());
        assert!(model_name("gpt 4").is_err());
        assert!(is_token("OpenAI-Organization"));
        assert!(!is_token("Bad Header"));
        assert!(!is_token("x:y"));
    }
}
