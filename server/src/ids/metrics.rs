//! The ID generator's counters: plain relaxed atomics, shared by the generators and the
//! lease keeper of one instance, read as a [`IdMetrics`] snapshot.

use std::sync::atomic::{AtomicU64, Ordering};

use meridian_shared::ids::IdMetrics;

/// Counters since the instance started. Each is monotonic.
#[derive(Debug, Default)]
pub struct IdCounters {
    pub snowflakes_issued: AtomicU64,
    pub uuids_issued: AtomicU64,
    pub refused_no_lease: AtomicU64,
    pub refused_lease_expired: AtomicU64,
    pub refused_clock_backwards: AtomicU64,
    pub refused_high_water: AtomicU64,
    pub waits_clock_backwards: AtomicU64,
    pub waits_sequence_exhausted: AtomicU64,
    pub lease_acquisitions: AtomicU64,
    pub lease_renewals: AtomicU64,
    pub lease_renewal_failures: AtomicU64,
    pub lease_losses: AtomicU64,
}

impl IdCounters {
    #[inline]
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn add_snowflakes(&self, count: u32) {
        self.snowflakes_issued
            .fetch_add(count as u64, Ordering::Relaxed);
    }

    pub fn snapshot(&self) -> IdMetrics {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        IdMetrics {
            snowflakes_issued: get(&self.snowflakes_issued),
            uuids_issued: get(&self.uuids_issued),
            refused_no_lease: get(&self.refused_no_lease),
            refused_lease_expired: get(&self.refused_lease_expired),
            refused_clock_backwards: get(&self.refused_clock_backwards),
            refused_high_water: get(&self.refused_high_water),
            waits_clock_backwards: get(&self.waits_clock_backwards),
            waits_sequence_exhausted: get(&self.waits_sequence_exhausted),
            lease_acquisitions: get(&self.lease_acquisitions),
            lease_renewals: get(&self.lease_renewals),
            lease_renewal_failures: get(&self.lease_renewal_failures),
            lease_losses: get(&self.lease_losses),
        }
    }
}
