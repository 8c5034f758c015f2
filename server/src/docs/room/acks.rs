//! The acknowledgement barrier's bookkeeping, and the batches at the writer it waits on.

use super::*;

/// The acknowledgement barrier's bookkeeping: updates are numbered in the order the
/// room applies them (from 1), and a step 1 is answered only once every update its
/// connection sent before it is stored.
#[derive(Default)]
pub(super) struct Acks {
    /// The number of the latest applied update.
    pub(super) applied: u64,
    /// Every update up to this number is stored.
    pub(super) stored_through: u64,
    /// Step 1 messages held back: (connection, state vector, the update to wait for),
    /// in arrival order.
    pub(super) waiting: Vec<(ConnId, StateVector, u64)>,
}

impl Acks {
    /// Numbers a newly applied update.
    pub(super) fn applied(&mut self) -> u64 {
        self.applied += 1;
        self.applied
    }

    /// A step 1 from a connection whose latest update is `last_update`: given back when
    /// it may be answered now, otherwise held.
    pub(super) fn step1(
        &mut self,
        conn: ConnId,
        sv: StateVector,
        last_update: u64,
    ) -> Option<StateVector> {
        if last_update <= self.stored_through {
            return Some(sv);
        }
        self.waiting.push((conn, sv, last_update));
        None
    }

    /// Every update through `through` is stored: the step 1 messages that may be answered
    /// now, in arrival order.
    pub(super) fn stored(&mut self, through: u64) -> Vec<(ConnId, StateVector)> {
        self.stored_through = self.stored_through.max(through);
        let stored = self.stored_through;
        let (ready, waiting) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition::<Vec<_>, _>(|(_, _, update)| *update <= stored);
        self.waiting = waiting;
        ready.into_iter().map(|(conn, sv, _)| (conn, sv)).collect()
    }

    /// A connection left: its held step 1 messages are dropped.
    pub(super) fn forget(&mut self, conn: ConnId) {
        self.waiting.retain(|(waiting, _, _)| *waiting != conn);
    }
}

/// A batch of updates at the writer.
pub(super) struct InFlight {
    /// The number of its last update.
    pub(super) through: u64,
    pub(super) answer: writer::Pending,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sv_of(client: u64, clock: u32) -> StateVector {
        let mut sv = StateVector::default();
        sv.set_max(yrs::block::ClientID::new(client), clock);
        sv
    }

    #[test]
    fn a_step1_waits_only_for_its_own_connections_updates() {
        let mut acks = Acks::default();
        // Nothing sent yet: answered at once.
        assert_eq!(acks.step1(1, sv_of(1, 1), 0), Some(sv_of(1, 1)));
        // Connection 1 sends updates 1 and 2, connection 2 update 3.
        let (one, two, three) = (acks.applied(), acks.applied(), acks.applied());
        assert_eq!((one, two, three), (1, 2, 3));
        assert_eq!(acks.step1(1, sv_of(1, 2), two), None);
        assert_eq!(acks.step1(2, sv_of(2, 3), three), None);
        // A third connection that sent nothing is not held up by the others.
        assert_eq!(acks.step1(3, sv_of(3, 4), 0), Some(sv_of(3, 4)));
        // Update 1 stored: nobody's updates are all stored yet.
        assert!(acks.stored(1).is_empty());
        // Through 3 (one batch holding 2 and 3): both, in arrival order.
        assert_eq!(acks.stored(3), vec![(1, sv_of(1, 2)), (2, sv_of(2, 3))]);
        // Then a step 1 after stored updates is answered at once.
        assert_eq!(acks.step1(1, sv_of(1, 5), two), Some(sv_of(1, 5)));
    }

    #[test]
    fn a_leaving_connection_is_never_answered_and_stored_never_moves_back() {
        let mut acks = Acks::default();
        let first = acks.applied();
        let second = acks.applied();
        assert_eq!(acks.step1(7, sv_of(7, 1), first), None);
        assert_eq!(acks.step1(8, sv_of(8, 1), second), None);
        acks.forget(7);
        assert_eq!(acks.stored(second), vec![(8, sv_of(8, 1))]);
        // An older answer arriving late does not move the barrier back.
        assert!(acks.stored(first).is_empty());
        assert_eq!(acks.step1(9, sv_of(9, 1), second), Some(sv_of(9, 1)));
    }
}
