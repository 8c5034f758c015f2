//! [`Sender`]: what one flush sends and what each answer does to the replica.

use meridian_shared::cart::{CartOp, CartView};

use crate::net::http::HttpError;

use super::*;

/// How a failed request is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendFailure {
    /// No answer: keep the ops, retry when the network is back.
    Network,
    /// The server refused the request (4xx): a batch is retried op by op, a single op
    /// is dropped and shown.
    Refused,
    /// A passing failure (5xx, 408, 429, an unreadable answer): keep the ops, retry with
    /// backoff.
    Transient,
}

impl SendFailure {
    pub fn of(error: &HttpError) -> SendFailure {
        let status = match error {
            HttpError::Network(_) => return SendFailure::Network,
            HttpError::Api { status, .. } | HttpError::Unexpected { status, .. } => *status,
        };
        match status {
            408 | 425 | 429 => SendFailure::Transient,
            400..=499 => SendFailure::Refused,
            _ => SendFailure::Transient,
        }
    }
}

/// The answer to one `POST /api/cart/ops`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    Applied(CartView),
    Failed {
        failure: SendFailure,
        code: Option<String>,
        message: String,
    },
}

/// What to do after an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendStep {
    /// Send the next request. `accepted` says what to write to storage; `refusal` is an
    /// op the server refused for good, to show.
    Continue {
        accepted: Accepted,
        refusal: Option<Box<Refusal>>,
    },
    /// Stop until the network is back or a backoff has passed; the ops stay pending.
    Stop {
        failure: SendFailure,
        message: String,
    },
}

/// The sending side of one flush: which ops go out next (batches of the oldest pending
/// ops; after a refused batch, its ops one at a time, so that only the refused ones are
/// dropped) and what each answer does to the replica.
#[derive(Debug, Clone, Default)]
pub struct Sender {
    one_by_one: std::collections::VecDeque<String>,
}

impl Sender {
    /// The ops of the next request (none: nothing is pending). Each op is sent once per
    /// flush, in its current (possibly rebased) form.
    pub fn next(&mut self, replica: &CartReplica) -> Vec<CartOp> {
        while let Some(op_id) = self.one_by_one.pop_front() {
            if let Some(pending) = replica.pending().iter().find(|p| p.op.op_id == op_id) {
                return vec![pending.op.clone()];
            }
        }
        replica.next_batch()
    }

    /// Applies the answer to `sent`. `same_session`: the session did not change while
    /// the request was out (else its cart view is not this session's and is not taken;
    /// the ops were applied all the same).
    pub fn answer(
        &mut self,
        replica: &mut CartReplica,
        sent: &[CartOp],
        outcome: SendOutcome,
        same_session: bool,
    ) -> SendStep {
        let op_ids: Vec<String> = sent.iter().map(|op| op.op_id.clone()).collect();
        match outcome {
            SendOutcome::Applied(view) => {
                replica.acknowledge(&op_ids);
                let mut accepted = if same_session {
                    replica.accept_server_view(view)
                } else {
                    Accepted::default()
                };
                accepted.dropped.extend(op_ids);
                SendStep::Continue {
                    accepted,
                    refusal: None,
                }
            }
            SendOutcome::Failed {
                failure: SendFailure::Refused,
                ..
            } if sent.len() > 1 => {
                self.one_by_one = op_ids.into();
                SendStep::Continue {
                    accepted: Accepted::default(),
                    refusal: None,
                }
            }
            SendOutcome::Failed {
                failure: SendFailure::Refused,
                code,
                message,
            } => {
                let refusal = op_ids
                    .first()
                    .and_then(|op_id| replica.refuse(op_id))
                    .map(|op| Box::new(Refusal { op, code, message }));
                SendStep::Continue {
                    accepted: Accepted {
                        dropped: op_ids,
                        ..Accepted::default()
                    },
                    refusal,
                }
            }
            SendOutcome::Failed {
                failure, message, ..
            } => SendStep::Stop { failure, message },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cart::model::test_support::*;

    #[test]
    fn a_refused_batch_is_retried_op_by_op_and_only_the_refused_op_leaves() {
        let mut replica = CartReplica::new("tab-a");
        replica.accept_server_view(view("c1", 1, vec![]));
        let a = add(&mut replica, "a", "p");
        let ghost = add(&mut replica, "ghost", "no-such-product");
        let c = add(&mut replica, "c", "q");
        let refused = |message: &str| SendOutcome::Failed {
            failure: SendFailure::Refused,
            code: Some("unknown_product".into()),
            message: message.into(),
        };
        let mut sender = Sender::default();
        let batch = sender.next(&replica);
        assert_eq!(batch.len(), 3);
        let step = sender.answer(&mut replica, &batch, refused("ops[1]"), true);
        assert!(matches!(step, SendStep::Continue { refusal: None, .. }));
        assert_eq!(replica.pending().len(), 3, "nothing is dropped for a batch");

        // One at a time: the first is applied...
        let one = sender.next(&replica);
        assert_eq!(one, vec![a.clone()]);
        let applied = SendOutcome::Applied(view("c1", 2, vec![a.clone()]));
        let step = sender.answer(&mut replica, &one, applied, true);
        let SendStep::Continue { accepted, .. } = step else {
            panic!("applied ops go on: {step:?}")
        };
        assert!(accepted.dropped.contains(&"a".to_owned()));
        // ...the unknown product is refused and shown...
        let one = sender.next(&replica);
        assert_eq!(one, vec![ghost.clone()]);
        let step = sender.answer(&mut replica, &one, refused("no such product"), true);
        let SendStep::Continue { accepted, refusal } = step else {
            panic!("a refusal goes on: {step:?}")
        };
        assert_eq!(accepted.dropped, vec!["ghost".to_owned()]);
        let refusal = refusal.expect("the refusal is shown");
        assert_eq!(refusal.op, ghost);
        assert_eq!(refusal.code.as_deref(), Some("unknown_product"));
        // ...and the last goes alone, then nothing is left.
        assert_eq!(sender.next(&replica), vec![c.clone()]);
        let applied = SendOutcome::Applied(view("c1", 3, vec![a, c.clone()]));
        sender.answer(&mut replica, &[c], applied, true);
        assert!(sender.next(&replica).is_empty());
        assert_eq!(lines(&replica), vec![("p".into(), 1), ("q".into(), 1)]);
    }

    #[test]
    fn a_network_failure_keeps_the_ops_and_stops() {
        let mut replica = CartReplica::new("tab-a");
        replica.accept_server_view(view("c1", 1, vec![]));
        add(&mut replica, "a", "p");
        let mut sender = Sender::default();
        let batch = sender.next(&replica);
        let step = sender.answer(
            &mut replica,
            &batch,
            SendOutcome::Failed {
                failure: SendFailure::Network,
                code: None,
                message: "offline".into(),
            },
            true,
        );
        assert!(matches!(
            step,
            SendStep::Stop {
                failure: SendFailure::Network,
                ..
            }
        ));
        assert_eq!(replica.pending().len(), 1);
        // After a session change, the answer acknowledges the ops but its view (of the
        // old session's cart) is not taken.
        let applied = SendOutcome::Applied(view("old-cart", 9, vec![batch[0].clone()]));
        sender.answer(&mut replica, &batch, applied, false);
        assert!(replica.pending().is_empty());
        assert_eq!(replica.confirmed().map(|v| v.cart_id.as_str()), Some("c1"));
    }

    #[test]
    fn failures_are_classified_by_status() {
        use meridian_shared::api::ApiErrorBody;
        let api = |status| HttpError::Api {
            status,
            body: ApiErrorBody {
                code: "unknown_product".into(),
                message: "no".into(),
            },
        };
        assert_eq!(
            SendFailure::of(&HttpError::Network("down".into())),
            SendFailure::Network
        );
        assert_eq!(SendFailure::of(&api(422)), SendFailure::Refused);
        assert_eq!(SendFailure::of(&api(429)), SendFailure::Transient);
        assert_eq!(SendFailure::of(&api(503)), SendFailure::Transient);
        let proxy = HttpError::Unexpected {
            status: 413,
            detail: "too large".into(),
        };
        assert_eq!(SendFailure::of(&proxy), SendFailure::Refused);
    }
}
