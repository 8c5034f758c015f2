//! Hybrid logical clocks: an [`Hlc`] timestamp orders ops by wall time, then counter, then
//! node; a replica's [`HlcClock`] ticks past everything it has seen. Pure: the caller
//! passes the time in.

use serde::{Deserialize, Serialize};

/// A hybrid logical clock timestamp; ordered by wall time, then counter, then node.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Hlc {
    pub wall_ms: u64,
    pub counter: u32,
    pub node: String,
}

/// A replica's hybrid logical clock. Pure: the caller passes the time in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HlcClock {
    node: String,
    wall_ms: u64,
    counter: u32,
}

impl HlcClock {
    pub fn new(node: impl Into<String>) -> HlcClock {
        HlcClock {
            node: node.into(),
            wall_ms: 0,
            counter: 0,
        }
    }

    /// A timestamp for a local op, later than every one this clock issued or observed.
    pub fn tick(&mut self, now_ms: u64) -> Hlc {
        if now_ms > self.wall_ms {
            self.wall_ms = now_ms;
            self.counter = 0;
        } else {
            self.counter += 1;
        }
        Hlc {
            wall_ms: self.wall_ms,
            counter: self.counter,
            node: self.node.clone(),
        }
    }

    /// Moves past a timestamp seen on another replica's op.
    pub fn observe(&mut self, seen: &Hlc) {
        if (seen.wall_ms, seen.counter) > (self.wall_ms, self.counter) {
            self.wall_ms = seen.wall_ms;
            self.counter = seen.counter;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hlc_orders_past_everything_seen() {
        let mut clock = HlcClock::new("a");
        let first = clock.tick(10);
        let second = clock.tick(10);
        assert!(second > first);
        clock.observe(&Hlc {
            wall_ms: 50,
            counter: 3,
            node: "b".into(),
        });
        let third = clock.tick(20);
        assert!(third.wall_ms == 50 && third.counter == 4);
    }
}
