//! Helpers the cart's unit tests share: ops, timestamps and a cart's lines.

use super::{Cart, CartOp, CartOpType, Hlc};

pub(super) fn op(id: &str, t: CartOpType, p: Option<&str>, q: Option<u32>, hlc: Hlc) -> CartOp {
    CartOp {
        op_id: id.into(),
        op_type: t,
        product_id: p.map(Into::into),
        quantity: q,
        hlc,
        observed: Vec::new(),
    }
}

pub(super) fn at(wall_ms: u64, node: &str) -> Hlc {
    Hlc {
        wall_ms,
        counter: 0,
        node: node.into(),
    }
}

pub(super) fn lines(cart: &Cart) -> Vec<(String, u32)> {
    cart.lines().into_iter().collect()
}
