//! Fixtures the cart's page tests share.

use meridian_shared::cart::{MergeMode, MergeSummary, Product};

pub(crate) fn product(id: &str, category: &str, name: &str) -> Product {
    Product {
        id: id.into(),
        name: name.into(),
        description: format!("All about {name}"),
        category: category.into(),
        unit_price_cents: 100,
        stock: 5,
    }
}

pub(crate) fn summary(added_items: u32, lines_not_merged: u32) -> MergeSummary {
    MergeSummary {
        guest_cart_id: "guest-s1".into(),
        mode: MergeMode::Max,
        guest_lines: 2,
        guest_items: 3,
        added_items,
        lines_not_merged,
        at_ms: 1,
    }
}
