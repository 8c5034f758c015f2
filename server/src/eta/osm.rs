//! The road network from an OpenStreetMap extract (`.osm.pbf`, read with `osmpbf`).
//!
//! Which ways become roads: `highway=` motorway, trunk, primary, secondary, tertiary
//! (and their `_link`s), unclassified, residential, living_street and service, unless
//! `access`/`motor_vehicle` is `no` or `private` or `area=yes`. A way's consecutive nodes
//! become arcs (a straight segment each, so map matching projects onto real geometry).
//!
//! - Free-flow speed: `maxspeed` (km/h, `mph`, `FI:urban` 50, `FI:rural` 80, `walk` 7);
//!   otherwise the class's default ([`RoadClass::default_speed_kmh`]).
//! - Direction: `oneway=yes|true|1` forward, `-1|reverse` backward, `no` both ways;
//!   roundabouts (`junction=roundabout|circular`) and motorways are one-way unless
//!   tagged `oneway=no`.
//! - Turn restrictions: `type=restriction` relations with a `from` way, a `via` node and
//!   a `to` way, `restriction` (or `restriction:motorcar`) `no_*` or `only_*`, become
//!   banned turns (`only_*` bans every other way out of the junction), which the graph
//!   applies by splitting the junction ([`meridian_shared::eta::turns`]). Restrictions
//!   through a via way, or naming roads we do not keep, are counted as not applied.

use std::collections::HashMap;
use std::path::Path;

use meridian_shared::eta::graph::{travel_ms, ArcSpec, LatLon, NodeId, RoadClass};
use meridian_shared::eta::turns::BannedTurn;
use osmpbf::RelMemberType;
use osmpbf::{Element, ElementReader};

/// Why an extract could not be read.
#[derive(Debug, thiserror::Error)]
pub enum OsmError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: osmpbf::Error,
    },
    #[error("{path} holds no drivable road")]
    NoRoads { path: String },
}

/// The drivable roads of an extract, before the graph is built.
#[derive(Debug, Clone)]
pub struct OsmNetwork {
    pub coords: Vec<LatLon>,
    pub arcs: Vec<ArcSpec>,
    /// Turn restrictions in the extract, and how many of them became banned turns.
    pub turn_restrictions: usize,
    pub turn_restrictions_applied: usize,
    pub banned_turns: Vec<BannedTurn>,
    pub ways: usize,
}

/// The class of a `highway=` value, or `None` if cars do not use it.
pub fn road_class(highway: &str) -> Option<RoadClass> {
    Some(match highway {
        "motorway" | "motorway_link" => RoadClass::Motorway,
        "trunk" | "trunk_link" => RoadClass::Trunk,
        "primary" | "primary_link" => RoadClass::Primary,
        "secondary" | "secondary_link" => RoadClass::Secondary,
        "tertiary" | "tertiary_link" => RoadClass::Tertiary,
        "unclassified" | "residential" | "living_street" => RoadClass::Residential,
        "service" => RoadClass::Service,
        _ => return None,
    })
}

/// A `maxspeed` value in km/h, if it is one we understand.
pub fn parse_maxspeed(value: &str) -> Option<f64> {
    let value = value.trim();
    match value {
        "FI:urban" | "RU:urban" | "DE:urban" => return Some(50.0),
        "FI:rural" => return Some(80.0),
        "FI:motorway" => return Some(120.0),
        "walk" => return Some(7.0),
        _ => {}
    }
    let (number, factor) = match value.strip_suffix("mph") {
        Some(rest) => (rest.trim(), 1.609_344),
        None => (value.strip_suffix("km/h").unwrap_or(value).trim(), 1.0),
    };
    let speed = number.parse::<f64>().ok()? * factor;
    (speed > 0.0 && speed <= 200.0).then_some(speed)
}

/// Which ways a road may be driven: (forward, backward).
pub fn directions(class: RoadClass, oneway: Option<&str>, roundabout: bool) -> (bool, bool) {
    match oneway {
        Some("yes" | "true" | "1") => (true, false),
        Some("-1" | "reverse") => (false, true),
        Some("no" | "false" | "0") => (true, true),
        _ if roundabout || class == RoadClass::Motorway => (true, false),
        _ => (true, true),
    }
}

struct Way {
    id: i64,
    refs: Vec<i64>,
    class: RoadClass,
    speed_kmh: f64,
    forward: bool,
    backward: bool,
}

/// Reads the drivable roads of `path`.
pub fn load(path: &Path) -> Result<OsmNetwork, OsmError> {
    let read_error = |source| OsmError::Read {
        path: path.display().to_string(),
        source,
    };
    let reader = ElementReader::from_path(path).map_err(read_error)?;
    let mut node_coords: HashMap<i64, LatLon> = HashMap::new();
    let mut ways: Vec<Way> = Vec::new();
    let mut turn_restrictions = 0usize;
    let mut restrictions: Vec<Restriction> = Vec::new();
    reader
        .for_each(|element| match element {
            Element::Node(node) => {
                node_coords.insert(node.id(), LatLon::new(node.lat(), node.lon()));
            }
            Element::DenseNode(node) => {
                node_coords.insert(node.id(), LatLon::new(node.lat(), node.lon()));
            }
            Element::Way(way) => {
                let mut highway = None;
                let mut maxspeed = None;
                let mut oneway = None;
                let mut roundabout = false;
                let mut closed = false;
                for (key, value) in way.tags() {
                    match key {
                        "highway" => highway = Some(value),
                        "maxspeed" => maxspeed = Some(value),
                        "oneway" => oneway = Some(value),
                        "junction" => roundabout = matches!(value, "roundabout" | "circular"),
                        "access" | "motor_vehicle" | "motorcar" => {
                            closed |= matches!(value, "no" | "private")
                        }
                        "area" => closed |= value == "yes",
                        _ => {}
                    }
                }
                let Some(class) = highway.and_then(road_class) else {
                    return;
                };
                if closed {
                    return;
                }
                let (forward, backward) = directions(class, oneway, roundabout);
                let speed_kmh = maxspeed
                    .and_then(parse_maxspeed)
                    .unwrap_or_else(|| class.default_speed_kmh());
                ways.push(Way {
                    id: way.id(),
                    refs: way.refs().collect(),
                    class,
                    speed_kmh,
                    forward,
                    backward,
                });
            }
            Element::Relation(relation) => {
                let mut is_restriction = false;
                let mut kind = None;
                for (key, value) in relation.tags() {
                    match key {
                        "type" => is_restriction = value == "restriction",
                        "restriction" | "restriction:motorcar" => kind = Some(value),
                        _ => {}
                    }
                }
                if !is_restriction {
                    return;
                }
                turn_restrictions += 1;
                let only = match kind {
                    Some(k) if k.starts_with("only_") => true,
                    Some(k) if k.starts_with("no_") => false,
                    _ => return,
                };
                let (mut from, mut via, mut to) = (None, None, None);
                for member in relation.members() {
                    match (member.role().unwrap_or(""), &member.member_type) {
                        ("from", RelMemberType::Way) => from = Some(member.member_id),
                        ("to", RelMemberType::Way) => to = Some(member.member_id),
                        ("via", RelMemberType::Node) => via = Some(member.member_id),
                        // A via way (a U-turn across a dual carriageway) is not applied.
                        ("via", _) => return,
                        _ => {}
                    }
                }
                if let (Some(from_way), Some(via), Some(to_way)) = (from, via, to) {
                    restrictions.push(Restriction {
                        from_way,
                        via,
                        to_way,
                        only,
                    });
                }
            }
        })
        .map_err(read_error)?;

    let mut index: HashMap<i64, u32> = HashMap::new();
    let mut coords = Vec::new();
    let mut arcs = Vec::new();
    let mut node_of = |osm_id: i64, coords: &mut Vec<LatLon>| -> Option<u32> {
        let at = *node_coords.get(&osm_id)?;
        Some(*index.entry(osm_id).or_insert_with(|| {
            coords.push(at);
            (coords.len() - 1) as u32
        }))
    };
    let restricted_ways: std::collections::HashSet<i64> = restrictions
        .iter()
        .flat_map(|r| [r.from_way, r.to_way])
        .collect();
    let mut way_arcs: HashMap<i64, Vec<(NodeId, NodeId)>> = HashMap::new();
    for way in &ways {
        let first_arc = arcs.len();
        for pair in way.refs.windows(2) {
            let (Some(a), Some(b)) = (node_of(pair[0], &mut coords), node_of(pair[1], &mut coords))
            else {
                continue;
            };
            let length = coords[a as usize].distance_m(coords[b as usize]);
            let ms = travel_ms(length, way.speed_kmh);
            let arc = |tail, head| ArcSpec {
                tail,
                head,
                length_m: length as f32,
                free_flow_ms: ms,
                class: way.class,
            };
            if way.forward {
                arcs.push(arc(a, b));
            }
            if way.backward {
                arcs.push(arc(b, a));
            }
        }
        if restricted_ways.contains(&way.id) {
            way_arcs
                .entry(way.id)
                .or_default()
                .extend(arcs[first_arc..].iter().map(|a| (a.tail, a.head)));
        }
    }
    let mut banned_turns = Vec::new();
    let mut turn_restrictions_applied = 0;
    for r in &restrictions {
        let turns = r.banned_turns(&index, &way_arcs, &arcs);
        if !turns.is_empty() {
            turn_restrictions_applied += 1;
            banned_turns.extend(turns);
        }
    }
    if arcs.is_empty() {
        return Err(OsmError::NoRoads {
            path: path.display().to_string(),
        });
    }
    Ok(OsmNetwork {
        coords,
        arcs,
        turn_restrictions,
        turn_restrictions_applied,
        banned_turns,
        ways: ways.len(),
    })
}

/// A `type=restriction` relation through a via node.
struct Restriction {
    from_way: i64,
    via: i64,
    to_way: i64,
    /// `only_*` (every other way out is banned) rather than `no_*`.
    only: bool,
}

impl Restriction {
    /// The banned turns it makes, in graph node ids: none if its via node or ways are
    /// not roads we keep, or do not meet at the via node.
    fn banned_turns(
        &self,
        index: &HashMap<i64, u32>,
        way_arcs: &HashMap<i64, Vec<(NodeId, NodeId)>>,
        arcs: &[ArcSpec],
    ) -> Vec<BannedTurn> {
        let (Some(&via), Some(from_arcs), Some(to_arcs)) = (
            index.get(&self.via),
            way_arcs.get(&self.from_way),
            way_arcs.get(&self.to_way),
        ) else {
            return Vec::new();
        };
        let froms: Vec<NodeId> = from_arcs
            .iter()
            .filter(|&&(_, head)| head == via)
            .map(|&(tail, _)| tail)
            .collect();
        let tos: Vec<NodeId> = to_arcs
            .iter()
            .filter(|&&(tail, _)| tail == via)
            .map(|&(_, head)| head)
            .collect();
        if froms.is_empty() || tos.is_empty() {
            return Vec::new();
        }
        let banned_heads: Vec<NodeId> = if self.only {
            arcs.iter()
                .filter(|a| a.tail == via && !tos.contains(&a.head))
                .map(|a| a.head)
                .collect()
        } else {
            tos
        };
        froms
            .iter()
            .flat_map(|&from| {
                banned_heads
                    .iter()
                    .map(move |&to| BannedTurn { from, via, to })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maxspeed_values() {
        assert_eq!(parse_maxspeed("50"), Some(50.0));
        assert_eq!(parse_maxspeed("40 km/h"), Some(40.0));
        assert!((parse_maxspeed("30 mph").unwrap() - 48.28).abs() < 0.01);
        assert_eq!(parse_maxspeed("FI:urban"), Some(50.0));
        assert_eq!(parse_maxspeed("none"), None);
        assert_eq!(parse_maxspeed("0"), None);
    }

    #[test]
    fn one_way_rules() {
        let r = RoadClass::Residential;
        assert_eq!(directions(r, None, false), (true, true));
        assert_eq!(directions(r, Some("yes"), false), (true, false));
        assert_eq!(directions(r, Some("-1"), false), (false, true));
        assert_eq!(directions(r, None, true), (true, false));
        assert_eq!(directions(r, Some("no"), true), (true, true));
        assert_eq!(directions(RoadClass::Motorway, None, false), (true, false));
    }

    #[test]
    fn road_classes() {
        assert_eq!(road_class("primary_link"), Some(RoadClass::Primary));
        assert_eq!(road_class("living_street"), Some(RoadClass::Residential));
        assert_eq!(road_class("footway"), None);
        assert_eq!(road_class("cycleway"), None);
    }

    /// The real extract, when the set-up step has fetched it (`ensure_helsinki`).
    #[test]
    fn helsinki_extract_loads() {
        let Ok(path) = std::env::var("MERIDIAN_ETA_MAP") else {
            eprintln!("MERIDIAN_ETA_MAP is not set: skipping the Helsinki extract");
            return;
        };
        let network = load(Path::new(&path)).unwrap();
        assert!(
            network.coords.len() > 1000,
            "{} nodes",
            network.coords.len()
        );
        for c in &network.coords {
            assert!((60.1..60.25).contains(&c.lat) && (24.8..25.1).contains(&c.lon));
        }
        let pairs: std::collections::HashSet<(u32, u32)> =
            network.arcs.iter().map(|a| (a.tail, a.head)).collect();
        let one_way = pairs
            .iter()
            .filter(|&&(t, h)| !pairs.contains(&(h, t)))
            .count();
        assert!(one_way > 0, "central Helsinki has one-way streets");
        assert!(
            network.turn_restrictions_applied > 10,
            "{} of {} turn restrictions applied",
            network.turn_restrictions_applied,
            network.turn_restrictions
        );
        for turn in &network.banned_turns {
            assert!(pairs.contains(&(turn.from, turn.via)) && pairs.contains(&(turn.via, turn.to)));
        }
    }
}
