//! The purchase as a pure reducer: idle → checking → queued (position) → reserved (until
//! `expires_at_ms`) → paying → confirmed, or sold out / limit reached / expired.
//!
//! Invariants: one idempotency key per purchase, kept from the first checkout through
//! every replay (a queued purchase asks again with it); an answer for another key (a
//! stale request) is ignored; a declined payment keeps the reservation.

use std::rc::Rc;

use meridian_shared::sales::CheckoutAnswer;
use yew::Reducible;

/// Where this tab's purchase stands.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Purchase {
    #[default]
    Idle,
    Checking {
        key: String,
    },
    Queued {
        key: String,
        position: u64,
    },
    Reserved {
        key: String,
        reservation_id: String,
        expires_at_ms: i64,
        paying: bool,
        /// The last payment was declined (the reservation holds; retry).
        declined: bool,
    },
    Confirmed {
        order_id: String,
    },
    SoldOut,
    LimitReached,
    Expired,
    Failed {
        message: String,
    },
}

impl Purchase {
    /// The machine-readable state, for `data-state`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Purchase::Idle => "idle",
            Purchase::Checking { .. } => "checking",
            Purchase::Queued { .. } => "queued",
            Purchase::Reserved { .. } => "reserved",
            Purchase::Confirmed { .. } => "confirmed",
            Purchase::SoldOut => "sold_out",
            Purchase::LimitReached => "limit_reached",
            Purchase::Expired => "expired",
            Purchase::Failed { .. } => "error",
        }
    }

    /// The key a replay of this purchase must carry, while one is pending.
    pub fn key(&self) -> Option<&str> {
        match self {
            Purchase::Checking { key } | Purchase::Queued { key, .. } => Some(key),
            Purchase::Reserved { key, .. } => Some(key),
            _ => None,
        }
    }

    /// Whether the buy button starts a new purchase.
    pub fn may_buy(&self) -> bool {
        matches!(
            self,
            Purchase::Idle
                | Purchase::Expired
                | Purchase::Failed { .. }
                | Purchase::Confirmed { .. }
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PurchaseAction {
    /// A new purchase with a fresh key.
    Buy {
        key: String,
    },
    /// A checkout's answer for `key`: success, or the error's code and message.
    Answer {
        key: String,
        result: Result<CheckoutAnswer, (Option<String>, String)>,
    },
    PayStarted,
    Paid {
        order_id: String,
    },
    PayFailed {
        code: Option<String>,
        message: String,
    },
    /// The reservation's time ran out on this tab's clock.
    TimedOut,
}

impl Reducible for Purchase {
    type Action = PurchaseAction;

    fn reduce(self: Rc<Self>, action: PurchaseAction) -> Rc<Self> {
        let next = match (&*self, action) {
            (current, PurchaseAction::Buy { key }) if current.may_buy() => {
                Purchase::Checking { key }
            }
            (current, PurchaseAction::Answer { key, result }) if current.key() == Some(&key) => {
                match result {
                    Ok(CheckoutAnswer::Reserved {
                        reservation_id,
                        expires_at_ms,
                        paid,
                        ..
                    }) => match current {
                        // A replay of a reservation being paid keeps its payment state.
                        Purchase::Reserved { .. } if !paid => return self,
                        _ if paid => Purchase::Confirmed {
                            order_id: String::new(),
                        },
                        _ => Purchase::Reserved {
                            key,
                            reservation_id,
                            expires_at_ms,
                            paying: false,
                            declined: false,
                        },
                    },
                    Ok(CheckoutAnswer::Queued { position }) => Purchase::Queued { key, position },
                    Err((code, message)) => match code.as_deref() {
                        Some("sold_out") => Purchase::SoldOut,
                        Some("limit_reached") => Purchase::LimitReached,
                        Some("reservation_expired") => Purchase::Expired,
                        _ => Purchase::Failed { message },
                    },
                }
            }
            (
                Purchase::Reserved {
                    key,
                    reservation_id,
                    expires_at_ms,
                    ..
                },
                PurchaseAction::PayStarted,
            ) => Purchase::Reserved {
                key: key.clone(),
                reservation_id: reservation_id.clone(),
                expires_at_ms: *expires_at_ms,
                paying: true,
                declined: false,
            },
            (Purchase::Reserved { .. }, PurchaseAction::Paid { order_id }) => {
                Purchase::Confirmed { order_id }
            }
            (
                Purchase::Reserved {
                    key,
                    reservation_id,
                    expires_at_ms,
                    ..
                },
                PurchaseAction::PayFailed { code, message },
            ) => match code.as_deref() {
                Some("payment_failed") => Purchase::Reserved {
                    key: key.clone(),
                    reservation_id: reservation_id.clone(),
                    expires_at_ms: *expires_at_ms,
                    paying: false,
                    declined: true,
                },
                Some("reservation_expired") => Purchase::Expired,
                _ => Purchase::Failed { message },
            },
            (Purchase::Reserved { .. }, PurchaseAction::TimedOut) => Purchase::Expired,
            _ => return self,
        };
        Rc::new(next)
    }
}

/// `m:ss` left until `until_ms`, never negative.
pub fn countdown(until_ms: i64, now_ms: i64) -> String {
    let secs = ((until_ms - now_ms).max(0) + 999) / 1000;
    if secs >= 3600 {
        format!("{}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60)
    } else {
        format!("{}:{:02}", secs / 60, secs % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(actions: Vec<PurchaseAction>) -> Purchase {
        let mut state = Rc::new(Purchase::Idle);
        for action in actions {
            state = state.reduce(action);
        }
        (*state).clone()
    }

    fn answer(
        key: &str,
        result: Result<CheckoutAnswer, (Option<String>, String)>,
    ) -> PurchaseAction {
        PurchaseAction::Answer {
            key: key.into(),
            result,
        }
    }

    fn refused(code: &str) -> Result<CheckoutAnswer, (Option<String>, String)> {
        Err((Some(code.into()), "no".into()))
    }

    #[test]
    fn a_purchase_goes_from_queue_to_reservation_to_order() {
        let reserved = CheckoutAnswer::reserved("r1".into(), 5_000, false);
        let state = run(vec![
            PurchaseAction::Buy { key: "k".into() },
            answer("k", Ok(CheckoutAnswer::Queued { position: 4 })),
        ]);
        assert_eq!(
            state,
            Purchase::Queued {
                key: "k".into(),
                position: 4
            }
        );
        let state = run(vec![
            PurchaseAction::Buy { key: "k".into() },
            answer("k", Ok(CheckoutAnswer::Queued { position: 4 })),
            answer("k", Ok(reserved.clone())),
            PurchaseAction::PayStarted,
            PurchaseAction::PayFailed {
                code: Some("payment_failed".into()),
                message: "declined".into(),
            },
        ]);
        assert!(matches!(
            state,
            Purchase::Reserved {
                declined: true,
                paying: false,
                ..
            }
        ));
        let state = run(vec![
            PurchaseAction::Buy { key: "k".into() },
            answer("k", Ok(reserved)),
            PurchaseAction::PayStarted,
            PurchaseAction::Paid {
                order_id: "o1".into(),
            },
        ]);
        assert_eq!(
            state,
            Purchase::Confirmed {
                order_id: "o1".into()
            }
        );
    }

    #[test]
    fn refusals_and_stale_answers() {
        let buy = || PurchaseAction::Buy { key: "k".into() };
        assert_eq!(
            run(vec![buy(), answer("k", refused("sold_out"))]),
            Purchase::SoldOut
        );
        assert_eq!(
            run(vec![buy(), answer("k", refused("limit_reached"))]),
            Purchase::LimitReached
        );
        // An answer for another key is ignored; a second buy while queued is too.
        let queued = run(vec![
            buy(),
            answer("k", Ok(CheckoutAnswer::Queued { position: 2 })),
            answer("other", refused("sold_out")),
            PurchaseAction::Buy { key: "k2".into() },
        ]);
        assert_eq!(queued.key(), Some("k"));
        // A reservation that times out on this clock is expired.
        let expired = run(vec![
            buy(),
            answer("k", Ok(CheckoutAnswer::reserved("r".into(), 1, false))),
            PurchaseAction::TimedOut,
        ]);
        assert_eq!(expired, Purchase::Expired);
        assert!(expired.may_buy());
    }

    #[test]
    fn countdowns_round_up_and_stop_at_zero() {
        assert_eq!(countdown(10_500, 0), "0:11");
        assert_eq!(countdown(0, 10), "0:00");
        assert_eq!(countdown(3_600_000 + 61_000, 0), "1:01:01");
    }
}
