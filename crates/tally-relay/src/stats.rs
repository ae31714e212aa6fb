//! What this process's relay and webhook dispatcher have done, for `/metrics`.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};

/// Counters shared by the relay, the dispatcher and whoever reports them. Gauges that any
/// process can read from the database (lag, parked deliveries) are in `Outbox::positions`.
#[derive(Debug, Default)]
pub struct Stats {
    /// Events JetStream acknowledged (duplicates included).
    pub nats_published: AtomicU64,
    /// Of those, the ones JetStream said it already had (re-sends after a restart).
    pub nats_duplicates: AtomicU64,
    /// The relay's cursor, as this process last moved it.
    pub nats_delivered_seq: AtomicI64,
    /// Whether this process holds the NATS relay's lease.
    pub nats_active: AtomicBool,
    /// Webhook attempts by outcome: answered 2xx; failed and to be retried; failed and parked.
    pub webhook_delivered: AtomicU64,
    pub webhook_failed: AtomicU64,
    pub webhook_parked: AtomicU64,
    /// Whether this process holds the webhook dispatcher's lease.
    pub webhooks_active: AtomicBool,
}

impl Stats {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
