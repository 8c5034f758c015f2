//! Helpers of the model's tests: products, server ops and views, a replica's lines.

use meridian_shared::cart::{
    Cart, CartLine, CartOp, CartOpType, CartOwner, CartView, Hlc, Product,
};

use super::*;

pub(super) fn product(id: &str, cents: i64) -> Product {
    Product {
        id: id.into(),
        name: format!("Product {id}"),
        description: String::new(),
        category: "Things".into(),
        unit_price_cents: cents,
        stock: 10,
    }
}

pub(super) fn server_op(
    id: &str,
    op_type: CartOpType,
    product: &str,
    quantity: Option<u32>,
) -> CartOp {
    CartOp {
        op_id: id.into(),
        op_type,
        product_id: Some(product.into()),
        quantity,
        hlc: Hlc {
            wall_ms: 1_000,
            counter: 0,
            node: "server".into(),
        },
        observed: Vec::new(),
    }
}

/// A view as the server would send it: lines computed from the ops.
pub(super) fn view(cart_id: &str, version: u64, ops: Vec<CartOp>) -> CartView {
    let cart = Cart::from_ops(ops.clone());
    let lines: Vec<CartLine> = cart
        .lines()
        .into_iter()
        .map(|(product_id, quantity)| CartLine {
            name: format!("Product {product_id}"),
            unit_price_cents: 100,
            line_total_cents: 100 * i64::from(quantity),
            product_id,
            quantity,
        })
        .collect();
    CartView {
        cart_id: cart_id.into(),
        total_cents: lines.iter().map(|l| l.line_total_cents).sum(),
        item_count: lines.iter().map(|l| l.quantity).sum(),
        lines,
        version,
        owner: CartOwner::Guest,
        topic: format!("session:{cart_id}"),
        ops,
        merge: None,
    }
}

pub(super) fn lines(replica: &CartReplica) -> Vec<(String, u32)> {
    replica.lines().into_iter().collect()
}

pub(super) fn add(replica: &mut CartReplica, id: &str, product: &str) -> CartOp {
    replica
        .local(&CartIntent::Add(product.into()), id.into(), 5_000)
        .unwrap()
}
