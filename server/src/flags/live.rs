//! The live configuration: the newest snapshot of every flag and segment, compiled per
//! environment, shared by the OFREP endpoints, the SSE stream and the server's own
//! checks; and the registry of SSE subscribers with the version each was last sent.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use meridian_shared::flags::admin::{Delivery, FlagSnapshot};
use meridian_shared::flags::{
    CompiledFlag, EvaluationContext, EvaluationRef, Flag, Segment, Segments,
};
use sqlx::AnyPool;
use tokio::sync::watch;

use super::store;

/// One environment's compiled flags and its pre-serialised SSE `put` payload.
pub struct EnvSnapshot {
    pub compiled: HashMap<String, CompiledFlag>,
    /// The JSON of [`FlagSnapshot`], serialised once for every subscriber.
    pub put: Arc<str>,
    /// The whole SSE event (`event: put`, `id:`, `data:`), encoded once and shared by
    /// every subscriber's connection.
    pub frame: axum::body::Bytes,
}

/// Everything at one configuration version.
#[derive(Default)]
pub struct Snapshot {
    pub version: u64,
    pub flags: BTreeMap<String, Flag>,
    pub segments: Segments,
    pub environments: BTreeMap<String, EnvSnapshot>,
    /// The delivery keys revoked as of this version: a stream that uses one ends.
    pub revoked_keys: HashSet<String>,
}

impl Snapshot {
    /// Compiles every flag for every environment (a flag that no longer compiles — it
    /// cannot, as writes are validated — is left out and logged).
    pub fn build(
        version: u64,
        environments: &[String],
        flags: Vec<Flag>,
        segment_list: Vec<Segment>,
        revoked_keys: impl IntoIterator<Item = String>,
    ) -> Snapshot {
        let segments: Segments = segment_list.iter().cloned().collect();
        let mut per_env = BTreeMap::new();
        for env in environments {
            let mut compiled = HashMap::new();
            let mut configs = Vec::new();
            for flag in &flags {
                let Some(config) = flag.config(env) else {
                    continue;
                };
                match CompiledFlag::compile(&config, &segments) {
                    Ok(c) => {
                        compiled.insert(flag.key.clone(), c);
                        configs.push(config);
                    }
                    Err(err) => {
                        tracing::error!(flag = %flag.key, %env, %err, "flag does not compile")
                    }
                }
            }
            let put = serde_json::to_string(&FlagSnapshot {
                version,
                environment: env.clone(),
                flags: configs,
                segments: segment_list.clone(),
            })
            .expect("a snapshot serialises");
            let frame =
                axum::body::Bytes::from(format!("event: put\nid: {version}\ndata: {put}\n\n"));
            per_env.insert(
                env.clone(),
                EnvSnapshot {
                    compiled,
                    put: Arc::from(put),
                    frame,
                },
            );
        }
        Snapshot {
            version,
            flags: flags.into_iter().map(|f| (f.key.clone(), f)).collect(),
            segments,
            environments: per_env,
            revoked_keys: revoked_keys.into_iter().collect(),
        }
    }

    /// Whether the delivery key `id` is revoked as of this version.
    pub fn is_revoked(&self, id: &str) -> bool {
        self.revoked_keys.contains(id)
    }

    /// Evaluates a flag locally (how Meridian gates its own features).
    pub fn evaluate<'a>(
        &'a self,
        environment: &str,
        key: &str,
        context: &EvaluationContext,
    ) -> Option<EvaluationRef<'a>> {
        let flag = self.environments.get(environment)?.compiled.get(key)?;
        Some(flag.evaluate(context))
    }
}

/// A stream subscriber's entry: its environment and the last version it was sent.
struct Subscriber {
    environment: String,
    sent: Arc<AtomicU64>,
}

/// The live configuration of this instance.
pub struct Live {
    current: watch::Sender<Arc<Snapshot>>,
    subscribers: Mutex<HashMap<u64, Subscriber>>,
    next_subscriber: AtomicU64,
    /// Reloads are serialised so that an older one never replaces a newer.
    reloading: tokio::sync::Mutex<()>,
}

impl Default for Live {
    fn default() -> Live {
        Live {
            current: watch::Sender::new(Arc::new(Snapshot::default())),
            subscribers: Mutex::default(),
            next_subscriber: AtomicU64::new(1),
            reloading: tokio::sync::Mutex::new(()),
        }
    }
}

/// Removes a subscriber from the registry when its stream ends.
pub struct SubscriberGuard {
    live: Arc<Live>,
    id: u64,
    pub sent: Arc<AtomicU64>,
}

impl Drop for SubscriberGuard {
    fn drop(&mut self) {
        self.live.lock_subscribers().remove(&self.id);
    }
}

impl Live {
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.borrow().clone()
    }

    pub fn watch(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.current.subscribe()
    }

    fn lock_subscribers(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Subscriber>> {
        self.subscribers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the configuration if the database has a newer version than the snapshot.
    pub async fn reload(&self, pool: &AnyPool) -> Result<u64, sqlx::Error> {
        let _one = self.reloading.lock().await;
        let version = store::version(pool).await?;
        if version <= self.snapshot().version && version != 0 {
            return Ok(self.snapshot().version);
        }
        let stored = store::load_all(pool).await?;
        let environments = store::environment_names(pool).await?;
        let version = stored.version;
        if version < self.snapshot().version {
            return Ok(self.snapshot().version);
        }
        let snapshot = Snapshot::build(
            version,
            &environments,
            stored.flags,
            stored.segments,
            stored.revoked_keys,
        );
        self.current.send_replace(Arc::new(snapshot));
        Ok(version)
    }

    /// Registers an SSE subscriber of `environment`.
    pub fn subscribe(self: &Arc<Live>, environment: &str) -> SubscriberGuard {
        let id = self.next_subscriber.fetch_add(1, Ordering::Relaxed);
        let sent = Arc::new(AtomicU64::new(0));
        self.lock_subscribers().insert(
            id,
            Subscriber {
                environment: environment.to_owned(),
                sent: sent.clone(),
            },
        );
        SubscriberGuard {
            live: self.clone(),
            id,
            sent,
        }
    }

    /// How many of this instance's subscribers of `environment` were sent `version`.
    pub fn delivery(&self, environment: &str, version: u64) -> Delivery {
        let subscribers = self.lock_subscribers();
        let of_env = subscribers
            .values()
            .filter(|s| s.environment == environment);
        let (mut total, mut delivered) = (0, 0);
        for s in of_env {
            total += 1;
            if s.sent.load(Ordering::Acquire) >= version {
                delivered += 1;
            }
        }
        Delivery {
            environment: environment.to_owned(),
            version,
            subscribers: total,
            delivered,
            complete: delivered == total,
        }
    }
}
