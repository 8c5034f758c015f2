//! [`StoredCart`]: what IndexedDB holds, encoded and decoded; and the newest cart view
//! of a realtime topic.

use meridian_shared::cart::{CartEvent, CartView, Product};
use serde::{Deserialize, Serialize};

use crate::net::realtime::TopicView;

use super::*;

/// What the cart's IndexedDB database holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoredCart {
    pub confirmed: Option<CartView>,
    pub catalog: Option<Vec<Product>>,
    /// In creation (HLC) order.
    pub pending: Vec<PendingOp>,
}

/// A value of the `state` store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StateRecord {
    Confirmed { view: CartView },
    Catalog { products: Vec<Product> },
}

impl StateRecord {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl StoredCart {
    /// Reads the raw values of the two stores; values that do not parse are skipped.
    pub fn decode(state: &[String], pending: &[String]) -> StoredCart {
        let mut stored = StoredCart::default();
        for value in state {
            match serde_json::from_str::<StateRecord>(value) {
                Ok(StateRecord::Confirmed { view }) => stored.confirmed = Some(view),
                Ok(StateRecord::Catalog { products }) => stored.catalog = Some(products),
                Err(_) => {}
            }
        }
        stored.pending = pending
            .iter()
            .filter_map(|value| PendingOp::from_json(value))
            .collect();
        stored.pending.sort_by(|a, b| a.op.hlc.cmp(&b.op.hlc));
        stored
    }
}

/// The newest cart view in a topic's recent events, after sequence number `after`, and
/// the highest sequence number seen.
pub fn newest_event_view(view: &TopicView, after: u64) -> (Option<CartView>, u64) {
    let mut newest: Option<CartView> = None;
    let mut highest = after;
    for event in view.events.iter().filter(|event| event.seq > after) {
        highest = highest.max(event.seq);
        if let Ok(CartEvent::Cart { cart }) = serde_json::from_value(event.payload.clone()) {
            if newest.as_ref().is_none_or(|n| cart.version > n.version) {
                newest = Some(cart);
            }
        }
    }
    (newest, highest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cart::model::test_support::*;
    use meridian_shared::realtime::Event;

    #[test]
    fn stored_values_round_trip() {
        let mut replica = CartReplica::new("tab-a");
        add(&mut replica, "late", "p");
        let mut early = replica.pending()[0].clone();
        early.op.op_id = "early".into();
        early.op.hlc.wall_ms -= 1;
        let state = vec![
            StateRecord::Confirmed {
                view: view("c1", 3, vec![]),
            }
            .to_json(),
            StateRecord::Catalog {
                products: vec![product("p", 1)],
            }
            .to_json(),
            "garbage".to_owned(),
        ];
        let pending = vec![
            replica.pending()[0].to_json(),
            early.to_json(),
            r#"{"op":{"op_id":"a b","type":"clear","hlc":{"wall_ms":1,"counter":0,"node":"x"}}}"#
                .to_owned(),
        ];
        let stored = StoredCart::decode(&state, &pending);
        assert_eq!(stored.confirmed.map(|v| v.version), Some(3));
        assert_eq!(stored.catalog.map(|c| c.len()), Some(1));
        let ids: Vec<&str> = stored.pending.iter().map(|p| p.op.op_id.as_str()).collect();
        assert_eq!(
            ids,
            vec!["early", "late"],
            "sorted by HLC; invalid ops skipped"
        );
    }

    #[test]
    fn the_newest_event_view_wins() {
        let event = |seq: u64, version: u64| Event {
            topic: "session:c1".into(),
            seq,
            op_id: format!("cart:c1:{version}"),
            payload: serde_json::to_value(CartEvent::Cart {
                cart: view("c1", version, vec![]),
            })
            .unwrap(),
            at_ms: 1,
        };
        let topic = TopicView {
            topic: "session:c1".into(),
            subscribed: true,
            events: vec![event(1, 4), event(2, 6), event(3, 5)],
            pending: Vec::new(),
            error: None,
            rejections: Vec::new(),
        };
        let (newest, highest) = newest_event_view(&topic, 0);
        assert_eq!(newest.map(|v| v.version), Some(6));
        assert_eq!(highest, 3);
        let (newest, highest) = newest_event_view(&topic, 3);
        assert_eq!((newest, highest), (None, 3));
    }
}
