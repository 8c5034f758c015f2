//! A guest cart joining an account's cart on sign-in: the ops of the merge, whose op ids
//! derive from the guest cart and the product so that a retried merge applies once.

use super::{Cart, CartOp, CartOpType, HlcClock};
use serde::{Deserialize, Serialize};

/// How a guest cart joins an account's cart on sign-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum MergeMode {
    /// A product in both gets the larger quantity (commercetools' default).
    #[default]
    Max,
    /// A product in both gets the sum.
    Sum,
}

/// The ops that merge `guest` into `account`. Their op ids derive from the guest cart's
/// id and the product, so a retried or repeated merge applies once.
pub fn merge_guest(
    account: &Cart,
    guest: &Cart,
    guest_cart_id: &str,
    mode: MergeMode,
    hlc: &mut HlcClock,
    now_ms: u64,
) -> Vec<CartOp> {
    let mine = account.lines();
    guest
        .lines()
        .into_iter()
        .filter_map(|(product, quantity)| {
            let op_id = format!("merge:{guest_cart_id}:{product}");
            let have = mine.get(&product).copied().unwrap_or(0);
            let (op_type, quantity, observed) = match mode {
                MergeMode::Sum => (CartOpType::Add, quantity, Vec::new()),
                MergeMode::Max if quantity > have => {
                    (CartOpType::Set, quantity, account.observed(Some(&product)))
                }
                MergeMode::Max => return None,
            };
            Some(CartOp {
                op_id,
                op_type,
                product_id: Some(product),
                quantity: Some(quantity),
                hlc: hlc.tick(now_ms),
                observed,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cart::test_support::*;
    use crate::cart::Applied;

    #[test]
    fn guest_merge_takes_the_max_or_the_sum_and_is_idempotent() {
        let mut account = Cart::new();
        account
            .apply(op("a1", CartOpType::Add, Some("p"), Some(3), at(1, "acct")))
            .unwrap();
        let mut guest = Cart::new();
        guest
            .apply(op(
                "g1",
                CartOpType::Add,
                Some("p"),
                Some(2),
                at(1, "guest"),
            ))
            .unwrap();
        guest
            .apply(op(
                "g2",
                CartOpType::Add,
                Some("q"),
                Some(4),
                at(1, "guest"),
            ))
            .unwrap();
        let mut hlc = HlcClock::new("server");
        for mode in [MergeMode::Max, MergeMode::Sum] {
            let mut merged = account.clone();
            let ops = merge_guest(&merged, &guest, "guest-1", mode, &mut hlc, 10);
            for op in ops.iter().cloned() {
                merged.apply(op).unwrap();
            }
            let expected_p = if mode == MergeMode::Max { 3 } else { 5 };
            assert_eq!(
                lines(&merged),
                vec![("p".into(), expected_p), ("q".into(), 4)]
            );
            // A retried sign-in, or a second tab of the same guest, changes nothing.
            let again = merge_guest(&account, &guest, "guest-1", mode, &mut hlc, 11);
            for op in again {
                assert_eq!(merged.apply(op), Ok(Applied::Duplicate));
            }
            assert_eq!(
                lines(&merged),
                vec![("p".into(), expected_p), ("q".into(), 4)]
            );
        }
    }
}
