//! What the page shows: [`CartDisplay`] (from [`CartReplica::display`]), [`SyncState`],
//! [`format_cents`] and [`op_id_from_bytes`].

use std::collections::BTreeMap;

use meridian_shared::cart::Product;

use super::*;

impl CartReplica {
    /// What the page shows, priced from `catalog` (or, for products it lacks, from the
    /// confirmed view), in catalog order.
    pub fn display(&self, catalog: Option<&[Product]>) -> CartDisplay {
        let quantities = self.lines();
        let confirmed_lines: BTreeMap<&str, &meridian_shared::cart::CartLine> = self
            .confirmed
            .iter()
            .flat_map(|view| view.lines.iter())
            .map(|line| (line.product_id.as_str(), line))
            .collect();
        let position: BTreeMap<&str, usize> = catalog
            .unwrap_or_default()
            .iter()
            .enumerate()
            .map(|(index, product)| (product.id.as_str(), index))
            .collect();
        let products: BTreeMap<&str, &Product> = catalog
            .unwrap_or_default()
            .iter()
            .map(|product| (product.id.as_str(), product))
            .collect();
        let mut lines: Vec<ShownLine> = quantities
            .iter()
            .map(|(product_id, &quantity)| {
                let confirmed = confirmed_lines.get(product_id.as_str());
                let (name, unit_price_cents) = match products.get(product_id.as_str()) {
                    Some(product) => (product.name.clone(), Some(product.unit_price_cents)),
                    None => match confirmed {
                        Some(line) => (line.name.clone(), Some(line.unit_price_cents)),
                        None => (product_id.clone(), None),
                    },
                };
                ShownLine {
                    product_id: product_id.clone(),
                    name,
                    unit_price_cents,
                    quantity,
                    line_total_cents: unit_price_cents.map(|price| price * i64::from(quantity)),
                    syncing: confirmed.map(|line| line.quantity) != Some(quantity),
                }
            })
            .collect();
        lines.sort_by_key(|line| {
            (
                position
                    .get(line.product_id.as_str())
                    .copied()
                    .unwrap_or(usize::MAX),
                line.product_id.clone(),
            )
        });
        let removed_unsynced = confirmed_lines
            .keys()
            .any(|product| !quantities.contains_key(*product));
        CartDisplay {
            total_cents: lines.iter().filter_map(|line| line.line_total_cents).sum(),
            item_count: lines.iter().map(|line| line.quantity).sum(),
            fully_priced: lines.iter().all(|line| line.unit_price_cents.is_some()),
            differs_from_server: removed_unsynced || lines.iter().any(|line| line.syncing),
            lines,
        }
    }
}

/// One line as shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShownLine {
    pub product_id: String,
    pub name: String,
    /// `None` when neither the catalog nor the server's view knows the product.
    pub unit_price_cents: Option<i64>,
    pub quantity: u32,
    pub line_total_cents: Option<i64>,
    /// The quantity shown is not (yet) the server's.
    pub syncing: bool,
}

/// The cart as shown.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CartDisplay {
    pub lines: Vec<ShownLine>,
    pub total_cents: i64,
    /// Units (the sum of the quantities).
    pub item_count: u32,
    /// Every line has a price (else the total leaves some out).
    pub fully_priced: bool,
    /// What is shown is not what the server confirmed.
    pub differs_from_server: bool,
}

/// Where the cart stands with the server, as `[data-testid=cart-sync]` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncState {
    Synced,
    Pending,
    Offline,
    Error,
}

impl SyncState {
    /// The machine-readable name (`data-state`).
    pub fn as_str(self) -> &'static str {
        match self {
            SyncState::Synced => "synced",
            SyncState::Pending => "pending",
            SyncState::Offline => "offline",
            SyncState::Error => "error",
        }
    }

    /// Offline wins (nothing can be sent); then a failure; then unsent changes, or a
    /// cart the server has not confirmed yet (`loaded` is false until it answers).
    pub fn of(pending: usize, loaded: bool, offline: bool, failing: bool) -> SyncState {
        if offline {
            SyncState::Offline
        } else if failing {
            SyncState::Error
        } else if pending > 0 || !loaded {
            SyncState::Pending
        } else {
            SyncState::Synced
        }
    }

    /// The words people read.
    pub fn label(self, pending: usize) -> String {
        let changes = if pending == 1 { "change" } else { "changes" };
        match (self, pending) {
            (SyncState::Synced, _) => "Synced".to_owned(),
            (SyncState::Pending, 0) => "Checking with the server…".to_owned(),
            (SyncState::Pending, n) => format!("{n} {changes} pending"),
            (SyncState::Offline, 0) => "Offline".to_owned(),
            (SyncState::Offline, n) => format!("Offline — {n} {changes} will sync"),
            (SyncState::Error, 0) => "Sync failed".to_owned(),
            (SyncState::Error, n) => format!("Sync failed — {n} {changes} will retry"),
        }
    }
}

/// Integer cents as dollars: `$1,234.50`, `-$0.05`.
pub fn format_cents(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    let abs = cents.unsigned_abs();
    let dollars = (abs / 100).to_string();
    let mut grouped = String::with_capacity(dollars.len() + dollars.len() / 3);
    for (index, digit) in dollars.chars().enumerate() {
        if index > 0 && (dollars.len() - index) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    format!("{sign}${grouped}.{:02}", abs % 100)
}

/// An op id from 16 random bytes: [`OP_ID_PREFIX`] and 32 hex digits.
pub fn op_id_from_bytes(bytes: [u8; 16]) -> String {
    let hex: String = bytes.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("{OP_ID_PREFIX}{hex}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cart::model::test_support::*;
    use meridian_shared::cart::CartOpType;

    #[test]
    fn the_display_is_priced_from_the_catalog_in_catalog_order() {
        let mut replica = CartReplica::new("tab-a");
        replica.accept_server_view(view(
            "c1",
            1,
            vec![server_op("s", CartOpType::Add, "b", Some(2))],
        ));
        add(&mut replica, "l1", "a");
        add(&mut replica, "l2", "zz-unknown");
        let catalog = vec![product("b", 250), product("a", 1_999)];
        let display = replica.display(Some(&catalog));
        let shown: Vec<(&str, u32, Option<i64>, bool)> = display
            .lines
            .iter()
            .map(|l| {
                (
                    l.product_id.as_str(),
                    l.quantity,
                    l.line_total_cents,
                    l.syncing,
                )
            })
            .collect();
        assert_eq!(
            shown,
            vec![
                ("b", 2, Some(500), false),
                ("a", 1, Some(1_999), true),
                ("zz-unknown", 1, None, true),
            ]
        );
        assert_eq!(display.total_cents, 2_499);
        assert_eq!(display.item_count, 4);
        assert!(!display.fully_priced);
        assert!(display.differs_from_server);
        // Without a catalog, the confirmed view's names and prices serve.
        let display = replica.display(None);
        let b = display.lines.iter().find(|l| l.product_id == "b").unwrap();
        assert_eq!(b.name, "Product b");
        assert_eq!(b.unit_price_cents, Some(100));
    }

    #[test]
    fn sync_states_read_plainly() {
        assert_eq!(SyncState::of(0, true, false, false), SyncState::Synced);
        assert_eq!(SyncState::of(0, false, false, false), SyncState::Pending);
        assert_eq!(SyncState::of(2, true, false, false), SyncState::Pending);
        assert_eq!(SyncState::of(2, true, true, true), SyncState::Offline);
        assert_eq!(SyncState::of(1, true, false, true), SyncState::Error);
        assert_eq!(SyncState::Synced.label(0), "Synced");
        assert_eq!(SyncState::Pending.label(0), "Checking with the server…");
        assert_eq!(SyncState::Pending.label(1), "1 change pending");
        assert_eq!(SyncState::Pending.label(2), "2 changes pending");
        assert_eq!(SyncState::Offline.label(2), "Offline — 2 changes will sync");
        assert_eq!(SyncState::Offline.label(0), "Offline");
        assert_eq!(SyncState::Error.as_str(), "error");
    }

    #[test]
    fn cents_read_as_dollars() {
        assert_eq!(format_cents(0), "$0.00");
        assert_eq!(format_cents(5), "$0.05");
        assert_eq!(format_cents(1_450), "$14.50");
        assert_eq!(format_cents(123_456_789), "$1,234,567.89");
        assert_eq!(format_cents(100_000), "$1,000.00");
        assert_eq!(format_cents(-1_205), "-$12.05");
        assert_eq!(format_cents(i64::MIN), "-$92,233,720,368,547,758.08");
    }

    #[test]
    fn op_ids_are_valid_and_prefixed() {
        let id = op_id_from_bytes([0xab; 16]);
        assert_eq!(id, format!("cart-{}", "ab".repeat(16)));
        assert!(meridian_shared::realtime::valid_op_id(&id));
    }
}
