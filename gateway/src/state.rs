//! Shared state: the current [`Runtime`] (swapped atomically on reload), metrics, the upstream
//! connector and the drain flag.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use http::{HeaderName, HeaderValue};
use pingora::connectors::http::Connector;
use pingora::protocols::ALPN;
use pingora::upstreams::peer::HttpPeer;
use sluice_config::{Config, Endpoint, ProviderKind, RateLimits, Team, Timeouts};
use sluice_policies::cost::Price;
use sluice_policies::keys::KeyStore;
use sluice_policies::pii::{Action, CustomSpec, Entity, PiiPolicy, PiiSpec, RedactMode};
use sluice_policies::tokens::Tokenizer;

use crate::metrics::Metrics;

/// How long a lookup of a provider's host name may take while building a runtime.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an idle pooled upstream connection is kept.
const POOL_IDLE: Duration = Duration::from_secs(90);

/// Everything one request needs from config, compiled for the hot path. Requests hold an
/// `Arc<Runtime>` from start to end, so a reload never changes a request mid-flight.
pub struct Runtime {
    /// The validated config this was built from.
    pub config: Arc<Config>,
    /// Virtual keys by digest.
    pub keys: KeyStore,
    /// Client-facing model name → route.
    pub routes: HashMap<String, Arc<Route>>,
    /// Configured model names in config order (for `GET /v1/models`).
    pub model_names: Vec<String>,
    /// Teams by name.
    pub teams: HashMap<String, Team>,
    /// PII policy of keys without their own (`guardrails.pii`).
    pub pii: Option<Arc<Guardrail>>,
    /// Keys with their own PII policy (`None` = off for that key).
    pub key_pii: HashMap<String, Option<Arc<Guardrail>>>,
    /// Increases by one on every successful reload.
    pub generation: u64,
    /// When this runtime was built (unix seconds; `created` in `GET /v1/models`).
    pub loaded_unix: u64,
}

/// Where one client-facing model goes.
pub struct Route {
    /// Client-facing name (a metric label).
    pub model: Arc<str>,
    /// Name sent upstream.
    pub upstream_model: Arc<str>,
    /// The provider deployment.
    pub deployment: Arc<Deployment>,
    /// Upstream timeouts for this model.
    pub timeouts: Timeouts,
    /// Prices (cost, budgets); `None` = free.
    pub price: Option<Price>,
    /// Limits on this model for all keys together.
    pub limits: RateLimits,
    /// The model's completion cap.
    pub max_output_tokens: Option<u64>,
    /// How prompts for this model are counted.
    pub tokenizer: Tokenizer,
}

/// A provider deployment, ready to call.
pub struct Deployment {
    /// Provider name from config (a metric label, `x-sluice-provider`).
    pub name: Arc<str>,
    /// Region, when configured.
    pub region: Option<Arc<str>>,
    /// How to reach it.
    pub kind: DeploymentKind,
}

/// The kinds of deployment this build can call.
pub enum DeploymentKind {
    /// OpenAI-compatible HTTP API.
    OpenAi(Box<OpenAiUpstream>),
    /// Built-in mock, no network.
    Mock,
}

/// A resolved OpenAI-compatible upstream.
pub struct OpenAiUpstream {
    /// Peer template (address, TLS, SNI, ALPN); cloned per request to set timeouts. `None`
    /// when the host name did not resolve: requests then fail with 502.
    pub peer: Option<HttpPeer>,
    /// `Host` header value.
    pub authority: HeaderValue,
    /// Path prefix, e.g. `/v1`.
    pub base_path: String,
    /// `Authorization: Bearer ...` from config.
    pub authorization: Option<HeaderValue>,
    /// Extra configured headers.
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// A compiled PII policy and whether answers get pseudonyms restored.
pub struct Guardrail {
    /// The recognizers and actions.
    pub policy: PiiPolicy,
    /// `restore: true` (pseudonym mode).
    pub restore: bool,
}

fn guardrail(cfg: &sluice_config::PiiConfig) -> Result<Guardrail, String> {
    let entities = cfg
        .entities
        .iter()
        .map(|(e, a)| {
            Ok((
                e.parse::<Entity>().map_err(|e| e.to_string())?,
                a.parse::<Action>().map_err(|e| e.to_string())?,
            ))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let custom = cfg
        .custom
        .iter()
        .map(|(name, pattern, action)| {
            Ok(CustomSpec {
                name: name.clone(),
                pattern: pattern.clone(),
                action: action.parse::<Action>().map_err(|e| e.to_string())?,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let spec = PiiSpec {
        entities,
        custom,
        mode: if cfg.mode == "pseudonym" {
            RedactMode::Pseudonym
        } else {
            RedactMode::Mask
        },
    };
    Ok(Guardrail {
        policy: PiiPolicy::new(&spec).map_err(|e| e.to_string())?,
        restore: cfg.restore,
    })
}

impl Runtime {
    /// The PII policy for a key (`None` = no PII handling).
    pub fn guardrail_for(&self, key_id: &str) -> Option<&Arc<Guardrail>> {
        match self.key_pii.get(key_id) {
            Some(own) => own.as_ref(),
            None => self.pii.as_ref(),
        }
    }

    /// Compile a validated config. Resolves provider host names (bounded in time).
    pub async fn build(config: Config, generation: u64) -> Result<Self, String> {
        let mut deployments = Vec::with_capacity(config.providers.len());
        for p in &config.providers {
            let kind = match &p.kind {
                ProviderKind::Mock => DeploymentKind::Mock,
                ProviderKind::OpenAi {
                    endpoint,
                    api_key,
                    headers,
                } => {
                    let peer = match resolve(endpoint).await {
                        Ok(addr) => Some(make_peer(addr, endpoint)),
                        Err(e) => {
                            tracing::error!(provider = %p.name, host = %endpoint.host, error = %e,
                                "could not resolve provider host; its requests will fail with 502");
                            None
                        }
                    };
                    let authority = HeaderValue::from_str(&endpoint.authority())
                        .map_err(|_| format!("provider {}: invalid host", p.name))?;
                    let authorization = match api_key {
                        Some(k) => {
                            let mut v = HeaderValue::from_str(&format!("Bearer {}", k.expose()))
                                .map_err(|_| {
                                    format!("provider {}: api_key has invalid characters", p.name)
                                })?;
                            v.set_sensitive(true);
                            Some(v)
                        }
                        None => None,
                    };
                    let headers = headers
                        .iter()
                        .map(|(k, v)| {
                            Ok((
                                HeaderName::from_bytes(k.as_bytes())
                                    .map_err(|_| format!("provider {}: bad header name", p.name))?,
                                HeaderValue::from_str(v).map_err(|_| {
                                    format!("provider {}: bad header value", p.name)
                                })?,
                            ))
                        })
                        .collect::<Result<Vec<_>, String>>()?;
                    DeploymentKind::OpenAi(Box::new(OpenAiUpstream {
                        peer,
                        authority,
                        base_path: endpoint.base_path.clone(),
                        authorization,
                        headers,
                    }))
                }
            };
            deployments.push(Arc::new(Deployment {
                name: Arc::from(p.name.as_str()),
                region: p.region.as_deref().map(Arc::from),
                kind,
            }));
        }
        let mut routes = HashMap::with_capacity(config.models.len());
        for m in &config.models {
            let deployment = deployments
                .get(m.target.provider)
                .cloned()
                .ok_or_else(|| format!("model {}: provider index out of range", m.name))?;
            let tokenizer = match m.tokenizer.as_deref() {
                Some(name) => name
                    .parse::<Tokenizer>()
                    .map_err(|_| format!("model {}: unknown tokenizer {name}", m.name))?,
                None => Tokenizer::for_model(&m.target.model),
            };
            // Build the BPE tables now (startup or the reloader thread), not on a request.
            tokenizer.preload();
            routes.insert(
                m.name.clone(),
                Arc::new(Route {
                    model: Arc::from(m.name.as_str()),
                    upstream_model: Arc::from(m.target.model.as_str()),
                    deployment,
                    timeouts: m.timeouts,
                    price: m.price.map(|p| Price {
                        input_per_mtok: p.input_per_mtok,
                        output_per_mtok: p.output_per_mtok,
                        cached_input_per_mtok: p.cached_input_per_mtok,
                    }),
                    limits: m.limits,
                    max_output_tokens: m.max_output_tokens,
                    tokenizer,
                }),
            );
        }
        let pii = match &config.pii {
            Some(cfg) => Some(Arc::new(
                guardrail(cfg).map_err(|e| format!("guardrails.pii: {e}"))?,
            )),
            None => None,
        };
        let mut key_pii = HashMap::new();
        for k in &config.keys {
            if let Some(own) = &k.pii {
                let g = match own {
                    Some(cfg) => Some(Arc::new(
                        guardrail(cfg).map_err(|e| format!("keys {}: pii: {e}", k.id))?,
                    )),
                    None => None,
                };
                key_pii.insert(k.id.clone(), g);
            }
        }
        Ok(Self {
            pii,
            key_pii,
            keys: KeyStore::new(&config.keys),
            model_names: config.models.iter().map(|m| m.name.clone()).collect(),
            teams: config
                .teams
                .iter()
                .map(|t| (t.name.clone(), t.clone()))
                .collect(),
            routes,
            config: Arc::new(config),
            generation,
            loaded_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        })
    }
}

async fn resolve(endpoint: &Endpoint) -> Result<SocketAddr, String> {
    let lookup = tokio::net::lookup_host((endpoint.host.as_str(), endpoint.port));
    let mut addrs = tokio::time::timeout(RESOLVE_TIMEOUT, lookup)
        .await
        .map_err(|_| "lookup timed out".to_owned())?
        .map_err(|e| e.to_string())?;
    addrs.next().ok_or_else(|| "no addresses".to_owned())
}

fn make_peer(addr: SocketAddr, endpoint: &Endpoint) -> HttpPeer {
    let mut peer = HttpPeer::new(addr, endpoint.tls, endpoint.host.clone());
    peer.options.idle_timeout = Some(POOL_IDLE);
    if endpoint.tls {
        // Real providers speak HTTP/2 over TLS; fall back to HTTP/1.1 when they do not.
        peer.options.alpn = ALPN::H2H1;
    }
    peer
}

/// Process-wide state shared by the API and admin services.
pub struct Shared {
    /// The config in force; swapped whole on reload.
    pub runtime: ArcSwap<Runtime>,
    /// Metrics registry.
    pub metrics: Metrics,
    /// Pooled upstream connections (HTTP/1.1 and HTTP/2).
    pub connector: Connector,
    /// Requests being handled now.
    pub inflight: AtomicI64,
    /// Set on SIGTERM: readiness fails and connections close after their response.
    pub draining: AtomicBool,
    /// The config file, for reloads.
    pub config_path: Option<PathBuf>,
    /// Sequence for generations.
    pub next_generation: AtomicU64,
    /// Rate limits and budgets (kept across reloads; the backend is chosen at start).
    pub limiter: Arc<crate::limiter::Limiter>,
    /// Usage and cost per key and day.
    pub ledger: crate::ledger::Ledger,
}

impl Shared {
    /// Shared state around a first runtime.
    pub fn new(
        runtime: Runtime,
        metrics: Metrics,
        limiter: crate::limiter::Limiter,
        config_path: Option<PathBuf>,
    ) -> Arc<Self> {
        let next = runtime.generation + 1;
        Arc::new(Self {
            runtime: ArcSwap::from_pointee(runtime),
            metrics,
            connector: Connector::new(None),
            inflight: AtomicI64::new(0),
            draining: AtomicBool::new(false),
            config_path,
            next_generation: AtomicU64::new(next),
            limiter: Arc::new(limiter),
            ledger: crate::ledger::Ledger::default(),
        })
    }

    /// Count a request in; the guard counts it out when dropped.
    pub fn enter(self: &Arc<Self>) -> InflightGuard {
        self.inflight.fetch_add(1, Ordering::AcqRel);
        self.metrics.inflight.inc();
        InflightGuard {
            shared: Arc::clone(self),
        }
    }

    /// Whether SIGTERM was received.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
}

/// Counts one in-flight request; drop to count it out.
#[must_use]
pub struct InflightGuard {
    shared: Arc<Shared>,
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.shared.inflight.fetch_sub(1, Ordering::AcqRel);
        self.shared.metrics.inflight.dec();
    }
}
