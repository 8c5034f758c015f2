//! The live configuration: the newest snapshot of every flag and segment, compiled per
//! environment, shared by the OFREP endpoints, the SSE stream and the server's own
//! checks; and the count of SSE subscribers by environment and the version each was
//! last sent.
//!
//! Invariant: the count is kept per environment as "subscribers that were last sent
//! version v", moved by one when a subscriber is sent a newer version. Asking how far a
//! version has reached costs as many steps as there are distinct versions outstanding
//! (a handful), not one per subscriber: the kill switch asks every 5 ms while a change
//! fans out to thousands of streams, and a scan of every subscriber took a tenth of the
//! server's CPU during that fan-out.

use std::collections::{BTreeMap, HashMap, HashSet};
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

/// How many of one environment's subscribers were last sent each version (0: none
/// yet). Each subscriber holds its environment's count, so being sent a version costs
/// one lock of it, no lookup by name.
#[derive(Default)]
struct SentVersions(Mutex<BTreeMap<u64, u64>>);

impl SentVersions {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, u64>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The live configuration of this instance.
pub struct Live {
    current: watch::Sender<Arc<Snapshot>>,
    /// Per environment that ever had a subscriber (environments are few; an entry
    /// outlives its last subscriber).
    subscribers: Mutex<HashMap<String, Arc<SentVersions>>>,
    /// Reloads are serialised so that an older one never replaces a newer.
    reloading: tokio::sync::Mutex<()>,
}

impl Default for Live {
    fn default() -> Live {
        Live {
            current: watch::Sender::new(Arc::new(Snapshot::default())),
            subscribers: Mutex::default(),
            reloading: tokio::sync::Mutex::new(()),
        }
    }
}

/// One stream subscriber's place in its environment's count; it leaves the count when
/// dropped (its stream ended).
pub struct SubscriberGuard {
    counts: Arc<SentVersions>,
    sent: u64,
}

impl SubscriberGuard {
    /// Counts the subscriber as having `version` (and every older one); an older
    /// version than it has changes nothing.
    pub fn mark_sent(&mut self, version: u64) {
        if version <= self.sent {
            return;
        }
        let mut counts = self.counts.lock();
        uncount(&mut counts, self.sent);
        *counts.entry(version).or_default() += 1;
        self.sent = version;
    }
}

impl Drop for SubscriberGuard {
    fn drop(&mut self) {
        uncount(&mut self.counts.lock(), self.sent);
    }
}

/// Takes one subscriber off `version`'s count.
fn uncount(counts: &mut BTreeMap<u64, u64>, version: u64) {
    if let Some(n) = counts.get_mut(&version) {
        *n -= 1;
        if *n == 0 {
            counts.remove(&version);
        }
    }
}

impl Live {
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.borrow().clone()
    }

    pub fn watch(&self) -> watch::Receiver<Arc<Snapshot>> {
        self.current.subscribe()
    }

    fn lock_subscribers(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<SentVersions>>> {
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

    /// Registers an SSE subscriber of `environment`, sent nothing yet.
    pub fn subscribe(&self, environment: &str) -> SubscriberGuard {
        let counts = self
            .lock_subscribers()
            .entry(environment.to_owned())
            .or_default()
            .clone();
        *counts.lock().entry(0).or_default() += 1;
        SubscriberGuard { counts, sent: 0 }
    }

    /// How many of this instance's subscribers of `environment` were sent `version`.
    pub fn delivery(&self, environment: &str, version: u64) -> Delivery {
        let counts = self.lock_subscribers().get(environment).cloned();
        let (total, delivered) = counts.map_or((0, 0), |counts| {
            let counts = counts.lock();
            let total = counts.values().sum();
            let delivered = counts.range(version..).map(|(_, n)| n).sum();
            (total, delivered)
        });
        Delivery {
            environment: environment.to_owned(),
            version,
            subscribers: total,
            delivered,
            complete: delivered == total,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counted(live: &Live, environment: &str, version: u64) -> (u64, u64, bool) {
        let d = live.delivery(environment, version);
        (d.subscribers, d.delivered, d.complete)
    }

    #[test]
    fn delivery_counts_subscribers_by_the_version_they_were_sent() {
        let live = Live::default();
        assert_eq!(counted(&live, "production", 1), (0, 0, true));
        let mut a = live.subscribe("production");
        let mut b = live.subscribe("production");
        let mut other = live.subscribe("staging");
        assert_eq!(counted(&live, "production", 1), (2, 0, false));

        a.mark_sent(3);
        other.mark_sent(3);
        assert_eq!(counted(&live, "production", 3), (2, 1, false));
        assert_eq!(counted(&live, "production", 2), (2, 1, false));
        assert_eq!(counted(&live, "production", 4), (2, 0, false));
        assert_eq!(counted(&live, "staging", 3), (1, 1, true));

        // An older version than a subscriber has changes nothing; a newer one moves it.
        a.mark_sent(2);
        b.mark_sent(3);
        assert_eq!(counted(&live, "production", 3), (2, 2, true));
        b.mark_sent(5);
        assert_eq!(counted(&live, "production", 5), (2, 1, false));
        assert_eq!(counted(&live, "production", 3), (2, 2, true));

        // A stream that ends leaves the count, whatever it was sent.
        drop(a);
        assert_eq!(counted(&live, "production", 5), (1, 1, true));
        drop(b);
        drop(other);
        assert_eq!(counted(&live, "production", 1), (0, 0, true));
        assert_eq!(counted(&live, "staging", 3), (0, 0, true));
    }
}
