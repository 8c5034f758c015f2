//! Presence (awareness) as y-protocols applies it ([`PresenceTable`]): clocks, removals,
//! renewal, expiry, this client's state, and the peers' cursors resolved against the
//! replica; tested natively.

use super::*;

/// This client's awareness state, exactly as every client publishes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceState {
    pub user: PresenceUser,
    pub cursor: Option<PresenceCursor>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceUser {
    pub name: String,
    pub color: String,
}

/// A selection as relative positions (Yjs' `relativePositionToJSON`, yrs `StickyIndex`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceCursor {
    pub anchor: StickyIndex,
    pub head: StickyIndex,
}

/// Colours given to participants, readable on light and dark backgrounds.
pub const PRESENCE_COLORS: [&str; 12] = [
    "#e5484d", "#f76b15", "#c28a00", "#30a46c", "#12a594", "#0091ff", "#3e63dd", "#8e4ec6",
    "#d6409f", "#978365", "#0d74ce", "#5bb98b",
];

/// The colour of a username: the same for everyone, every time (FNV-1a of the name).
pub fn user_color(name: &str) -> &'static str {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in name.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    PRESENCE_COLORS[(hash % PRESENCE_COLORS.len() as u32) as usize]
}

/// Whether `color` is a CSS hex colour (`#rgb` or `#rrggbb`): only those reach a style.
pub fn is_hex_color(color: &str) -> bool {
    let Some(hex) = color.strip_prefix('#') else {
        return false;
    };
    matches!(hex.len(), 3 | 6) && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A peer's state as read from their awareness JSON (which another client may shape
/// loosely: everything is optional and checked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerState {
    pub name: String,
    pub color: String,
    pub cursor: Option<PresenceCursor>,
}

#[derive(Deserialize)]
struct LooseState {
    #[serde(default)]
    user: Option<LooseUser>,
    #[serde(default)]
    cursor: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct LooseUser {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    color: Option<String>,
}

impl PeerState {
    /// Reads an awareness state; `None` for JSON that is not an object.
    pub fn parse(json: &str) -> Option<PeerState> {
        let loose: LooseState = serde_json::from_str(json).ok()?;
        let user = loose.user;
        let name: String = user
            .as_ref()
            .and_then(|user| user.name.as_deref())
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .unwrap_or("Anonymous")
            .chars()
            .take(MAX_PEER_NAME_CHARS)
            .collect();
        let color = user
            .and_then(|user| user.color)
            .filter(|color| is_hex_color(color))
            .unwrap_or_else(|| user_color(&name).to_owned());
        let cursor = loose
            .cursor
            .and_then(|cursor| serde_json::from_value::<PresenceCursor>(cursor).ok());
        Some(PeerState {
            name,
            color,
            cursor,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
struct PeerEntry {
    clock: u32,
    /// `None` once removed (the clock is kept, so an old message cannot revive it).
    state: Option<PeerState>,
    seen_ms: f64,
}

/// Someone shown in the presence list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presence {
    pub client_id: u64,
    pub name: String,
    pub color: String,
    /// This tab.
    pub me: bool,
}

/// What applying an awareness update changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PresenceChange {
    /// Someone appeared, left, moved or renamed.
    pub changed: bool,
    /// Someone said this client is gone: announce again (with a higher clock).
    pub reannounce: bool,
}

/// Awareness: this client's state and every peer's, with y-protocols' rules.
#[derive(Debug, Clone, PartialEq)]
pub struct PresenceTable {
    local_client: u64,
    local_clock: u32,
    /// `None` after the goodbye.
    local: Option<PresenceState>,
    last_sent_ms: f64,
    peers: BTreeMap<u64, PeerEntry>,
}

const NULL_STATE: &str = "null";

impl PresenceTable {
    pub fn new(local_client: u64, name: &str) -> PresenceTable {
        PresenceTable {
            local_client,
            local_clock: 0,
            local: Some(PresenceState {
                user: PresenceUser {
                    name: name.to_owned(),
                    color: user_color(name).to_owned(),
                },
                cursor: None,
            }),
            last_sent_ms: 0.0,
            peers: BTreeMap::new(),
        }
    }

    pub fn local_client(&self) -> u64 {
        self.local_client
    }

    pub fn local_state(&self) -> Option<&PresenceState> {
        self.local.as_ref()
    }

    /// Sets this client's cursor; `true` when it changed (and must be announced).
    pub fn set_cursor(&mut self, cursor: Option<PresenceCursor>) -> bool {
        let Some(local) = self.local.as_mut() else {
            return false;
        };
        if local.cursor == cursor {
            return false;
        }
        local.cursor = cursor;
        self.local_clock += 1;
        true
    }

    /// Before announcing on a new connection: the server removed this client (clock + 1)
    /// when the previous one closed, so the next announcement must be above that.
    pub fn reconnecting(&mut self) {
        self.local_clock += 2;
    }

    /// This client's state as an awareness update (sent at `now_ms`).
    pub fn local_update(&mut self, now_ms: f64) -> AwarenessUpdate {
        self.last_sent_ms = now_ms;
        let json = match &self.local {
            Some(state) => serde_json::to_string(state).unwrap_or_else(|_| NULL_STATE.into()),
            None => NULL_STATE.to_owned(),
        };
        one_client(self.local_client, self.local_clock, json)
    }

    /// The tab is being hidden or unloaded: the `null` state to send now. The state is
    /// kept: if the page comes back (back/forward cache), the next tick announces it
    /// again, with a clock above this removal.
    pub fn farewell(&mut self) -> AwarenessUpdate {
        self.local_clock += 1;
        self.last_sent_ms = f64::NEG_INFINITY;
        one_client(self.local_client, self.local_clock, NULL_STATE.to_owned())
    }

    /// Removes this client for good: the `null` state to send.
    pub fn goodbye(&mut self) -> AwarenessUpdate {
        self.local = None;
        self.local_clock += 1;
        one_client(self.local_client, self.local_clock, NULL_STATE.to_owned())
    }

    /// Whether this client's state is due for renewal at `now_ms`; if so its clock moves
    /// on (as y-protocols renews) and the caller sends [`PresenceTable::local_update`].
    pub fn renew_due(&mut self, now_ms: f64) -> bool {
        if self.local.is_some() && now_ms - self.last_sent_ms >= AWARENESS_RENEW_MS {
            self.local_clock += 1;
            true
        } else {
            false
        }
    }

    /// Applies a peer's (or the server's) awareness update received at `now_ms`.
    pub fn apply(&mut self, update: &AwarenessUpdate, now_ms: f64) -> PresenceChange {
        let mut change = PresenceChange::default();
        for (client, entry) in &update.clients {
            let client = client.get();
            let removal = entry.json.trim() == NULL_STATE;
            if client == self.local_client {
                // Never let someone else remove this client: announce again above them.
                if removal && self.local.is_some() && entry.clock >= self.local_clock {
                    self.local_clock = entry.clock + 1;
                    change.reannounce = true;
                }
                continue;
            }
            let accept = match self.peers.get(&client) {
                None => true,
                Some(previous) => {
                    previous.clock < entry.clock
                        || (previous.clock == entry.clock && removal && previous.state.is_some())
                }
            };
            if !accept {
                continue;
            }
            let state = if removal {
                None
            } else {
                PeerState::parse(&entry.json)
            };
            let before = self.peers.get(&client).and_then(|p| p.state.clone());
            if before != state {
                change.changed = true;
            }
            self.peers.insert(
                client,
                PeerEntry {
                    clock: entry.clock,
                    state,
                    seen_ms: now_ms,
                },
            );
        }
        change
    }

    /// Removes peers not renewed for [`AWARENESS_TIMEOUT_MS`]; `true` if any was.
    pub fn expire(&mut self, now_ms: f64) -> bool {
        let mut removed = false;
        for entry in self.peers.values_mut() {
            if entry.state.is_some() && now_ms - entry.seen_ms >= AWARENESS_TIMEOUT_MS {
                entry.state = None;
                removed = true;
            }
        }
        removed
    }

    /// Forgets every peer (the connection that told us about them is gone; the server
    /// tells the present ones again on reconnect).
    pub fn forget_peers(&mut self) -> bool {
        let had = self.peers.values().any(|entry| entry.state.is_some());
        for entry in self.peers.values_mut() {
            entry.state = None;
        }
        had
    }

    /// Who is here: this tab first, then the peers by name.
    pub fn present(&self) -> Vec<Presence> {
        let mut out = Vec::new();
        if let Some(local) = &self.local {
            out.push(Presence {
                client_id: self.local_client,
                name: local.user.name.clone(),
                color: local.user.color.clone(),
                me: true,
            });
        }
        let mut peers: Vec<Presence> = self
            .peers
            .iter()
            .filter_map(|(client, entry)| {
                entry.state.as_ref().map(|state| Presence {
                    client_id: *client,
                    name: state.name.clone(),
                    color: state.color.clone(),
                    me: false,
                })
            })
            .collect();
        peers.sort_by(|a, b| a.name.cmp(&b.name).then(a.client_id.cmp(&b.client_id)));
        out.extend(peers);
        out
    }

    /// The peers' cursors as offsets into `text` (peers without a cursor, or whose
    /// positions this replica does not have yet, are left out; never this client).
    pub fn cursors<T: ReadTxn>(&self, txn: &T, text: &TextRef) -> Vec<PeerCursor> {
        let len = text.len(txn);
        self.peers
            .iter()
            .filter_map(|(client, entry)| {
                let state = entry.state.as_ref()?;
                let cursor = state.cursor.as_ref()?;
                let anchor = cursor.anchor.get_offset(txn)?.index.min(len);
                let head = cursor.head.get_offset(txn)?.index.min(len);
                Some(PeerCursor {
                    client_id: *client,
                    name: state.name.clone(),
                    color: state.color.clone(),
                    anchor,
                    head,
                })
            })
            .collect()
    }
}

pub(super) fn one_client(client: u64, clock: u32, json: String) -> AwarenessUpdate {
    let mut clients = HashMap::new();
    clients.insert(
        ClientID::new(client),
        AwarenessUpdateEntry {
            clock,
            json: Arc::from(json),
        },
    );
    AwarenessUpdate { clients }
}

/// A selection (UTF-16 offsets) as relative positions in `text`.
pub fn cursor_at<T: ReadTxn>(txn: &T, text: &TextRef, anchor: u32, head: u32) -> PresenceCursor {
    PresenceCursor {
        anchor: sticky_at(txn, text, anchor),
        head: sticky_at(txn, text, head),
    }
}

/// The position before the character at `offset`; at the end of the text, the end of
/// the type (as Yjs' `createRelativePositionFromTypeIndex` makes it), which stays at the
/// end whatever is appended.
fn sticky_at<T: ReadTxn>(txn: &T, text: &TextRef, offset: u32) -> StickyIndex {
    let offset = offset.min(text.len(txn));
    text.sticky_index(txn, offset, Assoc::After)
        .unwrap_or_else(|| StickyIndex::from_type(txn, text, Assoc::After))
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_shared::docs::schema;
    use yrs::GetString;

    fn awareness(client: u64, clock: u32, json: &str) -> AwarenessUpdate {
        one_client(client, clock, json.to_owned())
    }

    fn state_json(name: &str) -> String {
        format!(r##"{{"user":{{"name":"{name}","color":"#30a46c"}},"cursor":null}}"##)
    }

    #[test]
    fn the_local_state_has_the_documented_shape() {
        let mut table = PresenceTable::new(7, "alice");
        let update = table.local_update(0.0);
        let entry = &update.clients[&ClientID::new(7)];
        let json: serde_json::Value = serde_json::from_str(&entry.json).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"user": {"name": "alice", "color": user_color("alice")}, "cursor": null})
        );

        let doc = schema::new_doc_with_client(7);
        let text = doc.get_or_insert_text(schema::TEXT);
        text.insert(&mut doc.transact_mut(), 0, "hello");
        let cursor = cursor_at(&doc.transact(), &text, 1, 3);
        assert!(table.set_cursor(Some(cursor.clone())));
        assert!(
            !table.set_cursor(Some(cursor)),
            "unchanged: nothing to announce"
        );
        let update = table.local_update(0.0);
        let entry = &update.clients[&ClientID::new(7)];
        assert_eq!(entry.clock, 1);
        let json: serde_json::Value = serde_json::from_str(&entry.json).unwrap();
        // Yjs' relativePositionToJSON: {"item": {"client", "clock"}, "assoc"}.
        assert_eq!(
            json["cursor"]["anchor"],
            serde_json::json!({"item": {"client": 7, "clock": 1}, "assoc": 0})
        );
        assert_eq!(json["cursor"]["head"]["item"]["clock"], 3);
    }

    #[test]
    fn colours_are_derived_from_the_name() {
        assert_eq!(user_color("alice"), user_color("alice"));
        assert!(PRESENCE_COLORS.contains(&user_color("bob")));
        let distinct: std::collections::BTreeSet<&str> = ["alice", "bob", "carol", "dave", "erin"]
            .iter()
            .map(|name| user_color(name))
            .collect();
        assert!(distinct.len() >= 3, "{distinct:?}");
        assert!(is_hex_color("#abc") && is_hex_color("#A0b1C2"));
        assert!(!is_hex_color("red") && !is_hex_color("#12345") && !is_hex_color("#ggg"));
    }

    #[test]
    fn peers_follow_y_protocols_clock_rules() {
        let mut table = PresenceTable::new(1, "me");
        let change = table.apply(&awareness(2, 1, &state_json("bob")), 0.0);
        assert!(change.changed && !change.reannounce);
        let names: Vec<(String, bool)> = table
            .present()
            .into_iter()
            .map(|p| (p.name, p.me))
            .collect();
        assert_eq!(names, vec![("me".into(), true), ("bob".into(), false)]);
        // An older or equal clock with a state is ignored.
        assert!(
            !table
                .apply(&awareness(2, 1, &state_json("robert")), 1.0)
                .changed
        );
        assert!(
            !table
                .apply(&awareness(2, 0, &state_json("robert")), 1.0)
                .changed
        );
        // A renewal (same state, higher clock) is no change, but counts as seen.
        assert!(
            !table
                .apply(&awareness(2, 2, &state_json("bob")), 20_000.0)
                .changed
        );
        assert!(!table.expire(40_000.0), "renewed at 20 s");
        // Removal at the same clock is accepted once, and is not undone by a replay.
        assert!(table.apply(&awareness(2, 2, "null"), 21_000.0).changed);
        assert!(
            !table
                .apply(&awareness(2, 2, &state_json("bob")), 21_000.0)
                .changed
        );
        assert_eq!(table.present().len(), 1);
        // A newer state brings them back.
        assert!(
            table
                .apply(&awareness(2, 3, &state_json("bob")), 22_000.0)
                .changed
        );
        assert_eq!(table.present().len(), 2);
        // Forgetting peers (a closed connection) leaves only this tab.
        assert!(table.forget_peers());
        assert_eq!(table.present().len(), 1);
    }

    #[test]
    fn silent_peers_expire_after_thirty_seconds() {
        let mut table = PresenceTable::new(1, "me");
        table.apply(&awareness(2, 1, &state_json("bob")), 1_000.0);
        table.apply(&awareness(3, 1, &state_json("carol")), 10_000.0);
        assert!(!table.expire(30_999.0));
        assert!(table.expire(31_000.0));
        let names: Vec<String> = table.present().into_iter().map(|p| p.name).collect();
        assert_eq!(names, vec!["me", "carol"]);
        assert!(table.expire(40_000.0));
        assert_eq!(table.present().len(), 1);
    }

    #[test]
    fn this_client_is_renewed_and_never_removed_by_others() {
        let mut table = PresenceTable::new(1, "me");
        table.local_update(0.0);
        assert!(!table.renew_due(14_999.0));
        assert!(table.renew_due(15_000.0));
        assert_eq!(
            table.local_update(15_000.0).clients[&ClientID::new(1)].clock,
            1
        );
        // The server removed us (clock + 1) when a connection closed: announce above it.
        let change = table.apply(&awareness(1, 2, "null"), 16_000.0);
        assert!(change.reannounce && !change.changed);
        assert_eq!(
            table.local_update(16_000.0).clients[&ClientID::new(1)].clock,
            3
        );
        // Our own state echoed back is not a peer.
        table.apply(&awareness(1, 3, &state_json("me")), 16_000.0);
        assert_eq!(table.present().len(), 1);
        // A reconnect announces two steps up: above the removal the close will cause.
        table.reconnecting();
        assert_eq!(
            table.local_update(17_000.0).clients[&ClientID::new(1)].clock,
            5
        );
        // The goodbye removes for good: no renewal after it.
        let goodbye = table.goodbye();
        assert_eq!(&*goodbye.clients[&ClientID::new(1)].json, "null");
        assert_eq!(goodbye.clients[&ClientID::new(1)].clock, 6);
        assert!(!table.renew_due(100_000.0));
        assert!(table.present().is_empty());
    }

    #[test]
    fn a_farewell_keeps_the_state_for_a_return() {
        let mut table = PresenceTable::new(1, "me");
        table.local_update(0.0);
        let farewell = table.farewell();
        assert_eq!(farewell.clients[&ClientID::new(1)].clock, 1);
        assert_eq!(&*farewell.clients[&ClientID::new(1)].json, "null");
        // Back from the back/forward cache: the next tick announces above the removal.
        assert!(table.renew_due(1.0));
        assert_eq!(table.local_update(1.0).clients[&ClientID::new(1)].clock, 2);
    }

    #[test]
    fn loosely_shaped_states_are_read_safely() {
        let state = PeerState::parse(r#"{"user":{"name":"  zoe  ","color":"url(x)"}}"#).unwrap();
        assert_eq!(state.name, "zoe");
        assert_eq!(state.color, user_color("zoe"));
        assert_eq!(state.cursor, None);
        let anonymous = PeerState::parse("{}").unwrap();
        assert_eq!(anonymous.name, "Anonymous");
        let long =
            PeerState::parse(&format!(r#"{{"user":{{"name":"{}"}}}}"#, "x".repeat(99))).unwrap();
        assert_eq!(long.name.chars().count(), MAX_PEER_NAME_CHARS);
        // A cursor in a shape we do not know is dropped, the peer is kept.
        let odd = PeerState::parse(r#"{"user":{"name":"a"},"cursor":{"index":3}}"#).unwrap();
        assert_eq!(odd.cursor, None);
        assert_eq!(PeerState::parse("[1,2]"), None);
        assert_eq!(PeerState::parse("not json"), None);
    }

    /// A replica and a peer's state (written by the JavaScript client's shape) resolve to
    /// offsets that move with the text.
    #[test]
    fn peer_cursors_resolve_against_the_replica_and_move_with_edits() {
        let theirs = schema::new_doc_with_client(2);
        let their_text = theirs.get_or_insert_text(schema::TEXT);
        their_text.insert(&mut theirs.transact_mut(), 0, "hello world");
        let cursor = cursor_at(&theirs.transact(), &their_text, 6, 11);
        let state = serde_json::json!({
            "user": {"name": "bob", "color": "#0091ff"},
            "cursor": {"anchor": cursor.anchor, "head": cursor.head},
        })
        .to_string();

        let ours = schema::new_doc_with_client(1);
        let text = ours.get_or_insert_text(schema::TEXT);
        let mut table = PresenceTable::new(1, "me");
        table.apply(&awareness(2, 1, &state), 0.0);
        // Their text has not arrived yet: no cursor to show.
        assert!(table.cursors(&ours.transact(), &text).is_empty());

        let update = theirs
            .transact()
            .encode_state_as_update_v1(&StateVector::default());
        ours.transact_mut()
            .apply_update(Update::decode_v1(&update).unwrap())
            .unwrap();
        let cursors = table.cursors(&ours.transact(), &text);
        assert_eq!(
            cursors,
            vec![PeerCursor {
                client_id: 2,
                name: "bob".into(),
                color: "#0091ff".into(),
                anchor: 6,
                head: 11,
            }]
        );
        // An insertion before the cursor moves it; text after it does not.
        text.insert(&mut ours.transact_mut(), 0, ">> ");
        text.insert(&mut ours.transact_mut(), 14, "!");
        assert_eq!(text.get_string(&ours.transact()), ">> hello world!");
        let moved = &table.cursors(&ours.transact(), &text)[0];
        // The head was at the end: it stays at the end.
        assert_eq!((moved.anchor, moved.head), (9, 15));
        // Our own client's state never becomes a peer cursor.
        let mine = serde_json::json!({"user": {"name": "me"}, "cursor": {"anchor": cursor.anchor, "head": cursor.head}});
        table.apply(&awareness(1, 9, &mine.to_string()), 0.0);
        assert_eq!(table.cursors(&ours.transact(), &text).len(), 1);
    }
}
