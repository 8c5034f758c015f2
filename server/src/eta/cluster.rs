//! Traffic across server instances sharing one PostgreSQL. Each instance matches the
//! probes it is sent; what it observed, and the incidents it is told of, reach the other
//! instances as notices of the system [`SYSTEM`] (`Hub::notify_others`), which apply
//! them to their own traffic. So a route asked of any instance sees every instance's
//! probes and incidents.
//!
//! Invariants:
//! - Notices name arcs by id, so they carry the digest of the network they were made on
//!   ([`Network::fingerprint`](super::network::Network::fingerprint)); an instance with
//!   another map ignores them.
//! - Observations go out once per refresh tick, one per arc (the mean ratio of the
//!   tick's observations, the latest time), at most [`OBSERVATIONS_PER_NOTICE`] to a
//!   notice (PostgreSQL's 8000-byte payload). A lost notice costs other instances some
//!   traffic detail, never a wrong route: estimates decay back to free flow anyway.
//! - An incident is in force on its own instance when its POST is answered, and on the
//!   others from their next refresh after the notice arrives.
//! - On a single instance (SQLite) nothing is kept or sent.

use meridian_shared::eta::graph::{ArcId, LatLon};
use serde::{Deserialize, Serialize};

use super::engine::EtaEngine;
use super::traffic::{MAX_RATIO, MIN_RATIO};
use crate::realtime::hub::Hub;

/// The name ETA's notices travel under.
pub const SYSTEM: &str = "eta";
/// `[arc, ratio in thousandths, ms]` takes at most 40 bytes of JSON.
pub const OBSERVATIONS_PER_NOTICE: usize = 150;

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Notice {
    Observations {
        network: String,
        /// `(arc, speed ratio × 1000, time in ms)`.
        observations: Vec<(ArcId, u32, i64)>,
    },
    Incident {
        network: String,
        id: String,
        lat: f64,
        lon: f64,
        radius_m: f64,
        speed_factor: f64,
        until_ms: i64,
    },
}

/// The digest notices carry, as text.
pub fn network_digest(engine: &EtaEngine) -> String {
    format!("{:016x}", engine.net.fingerprint())
}

/// Sends what this instance observed since the last call to the other instances;
/// answers how many observations went.
pub fn send_observations(hub: &Hub, engine: &EtaEngine, digest: &str) -> usize {
    let observations = engine.take_observations();
    for chunk in observations.chunks(OBSERVATIONS_PER_NOTICE) {
        let notice = Notice::Observations {
            network: digest.to_owned(),
            observations: chunk
                .iter()
                .map(|&(arc, ratio, at_ms)| {
                    // Traffic clamps ratios to this range anyway.
                    let ratio = ratio.clamp(MIN_RATIO, MAX_RATIO);
                    (arc, (ratio * 1000.0).round() as u32, at_ms)
                })
                .collect(),
        };
        hub.notify_others(SYSTEM, body(&notice));
    }
    observations.len()
}

/// Tells the other instances of an incident this one just put in force.
pub fn send_incident(
    hub: &Hub,
    digest: &str,
    id: &str,
    at: LatLon,
    radius_m: f64,
    speed_factor: f64,
    until_ms: i64,
) {
    let notice = Notice::Incident {
        network: digest.to_owned(),
        id: id.to_owned(),
        lat: at.lat,
        lon: at.lon,
        radius_m,
        speed_factor,
        until_ms,
    };
    hub.notify_others(SYSTEM, body(&notice));
}

fn body(notice: &Notice) -> serde_json::Value {
    serde_json::to_value(notice).expect("notices serialise")
}

/// Applies one notice; answers whether it was for this network.
pub fn apply(engine: &EtaEngine, digest: &str, body: serde_json::Value) -> bool {
    let notice: Notice = match serde_json::from_value(body) {
        Ok(notice) => notice,
        Err(err) => {
            tracing::warn!(%err, "an ETA notice this instance cannot read");
            return false;
        }
    };
    match notice {
        Notice::Observations {
            network,
            observations,
        } => {
            if network != digest {
                return false;
            }
            let observations: Vec<(ArcId, f64, i64)> = observations
                .into_iter()
                .map(|(arc, permille, at_ms)| (arc, f64::from(permille) / 1000.0, at_ms))
                .collect();
            engine.observe_remote(&observations);
        }
        Notice::Incident {
            network,
            id,
            lat,
            lon,
            radius_m,
            speed_factor,
            until_ms,
        } => {
            if network != digest {
                return false;
            }
            engine.add_incident(id, LatLon::new(lat, lon), radius_m, speed_factor, until_ms);
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eta::network::Network;
    use std::sync::Arc;

    fn engine() -> EtaEngine {
        EtaEngine::new(Arc::new(Network::synthetic(300, 7)), 0)
    }

    #[test]
    fn observations_travel_aggregated_per_arc_and_apply_on_the_same_network() {
        let (here, there) = (engine(), engine());
        let digest = network_digest(&here);
        assert_eq!(digest, network_digest(&there));
        here.share_observations();
        // What this instance matched is kept for the others once sharing is on.
        here.keep_for_others(vec![(3, 0.5, 1_000), (3, 0.7, 2_000), (9, 0.2, 1_500)]);
        let taken = here.take_observations();
        assert_eq!(taken.len(), 2);
        assert_eq!(taken[0].0, 3);
        assert!((taken[0].1 - 0.6).abs() < 1e-9 && taken[0].2 == 2_000);
        assert!(here.take_observations().is_empty(), "taken once");

        let notice = Notice::Observations {
            network: digest.clone(),
            observations: vec![(3, 600, 2_000), (9, 200, 1_500), (u32::MAX, 500, 0)],
        };
        let before = there.traffic_version();
        assert!(apply(&there, &digest, body(&notice)));
        assert_eq!(
            there.traffic_version(),
            before + 2,
            "the unknown arc is skipped"
        );
    }

    #[test]
    fn notices_of_another_network_or_unreadable_ones_are_ignored() {
        let there = engine();
        let digest = network_digest(&there);
        let other = network_digest(&EtaEngine::new(Arc::new(Network::synthetic(300, 8)), 0));
        assert_ne!(digest, other);
        let notice = Notice::Observations {
            network: other,
            observations: vec![(3, 600, 2_000)],
        };
        assert!(!apply(&there, &digest, body(&notice)));
        assert!(!apply(
            &there,
            &digest,
            serde_json::json!({"kind": "nonsense"})
        ));
        assert_eq!(there.traffic_version(), 0);
    }

    #[test]
    fn a_remote_incident_slows_the_same_roads() {
        let (here, there) = (engine(), engine());
        let digest = network_digest(&here);
        let at = here.net.graph.coord(10);
        let roads = here.add_incident("i1".into(), at, 150.0, 0.1, 60_000);
        let notice = Notice::Incident {
            network: digest.clone(),
            id: "i1".into(),
            lat: at.lat,
            lon: at.lon,
            radius_m: 150.0,
            speed_factor: 0.1,
            until_ms: 60_000,
        };
        assert!(apply(&there, &digest, body(&notice)));
        here.refresh(1_000);
        there.refresh(1_000);
        assert!(roads > 0);
        assert_eq!(here.live().weights, there.live().weights);
    }

    #[test]
    fn the_largest_notice_fits_in_a_notify_payload() {
        let notice = Notice::Observations {
            network: format!("{:016x}", u64::MAX),
            observations: vec![(ArcId::MAX, 1500, i64::MIN); OBSERVATIONS_PER_NOTICE],
        };
        let bytes = body(&notice).to_string().len();
        // The realtime path's limit is 7900 with its envelope (origin, system name).
        assert!(bytes < 7_000, "{bytes} bytes");
    }

    #[test]
    fn a_full_outbox_drops_the_oldest() {
        let here = engine();
        here.share_observations();
        here.keep_for_others(vec![(1, 0.5, 0); 100_010]);
        assert_eq!(
            here.counters
                .outbox_dropped
                .load(std::sync::atomic::Ordering::Relaxed),
            10
        );
    }
}
