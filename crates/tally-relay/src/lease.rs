//! One active relay per name: a lease held as a session advisory lock on a connection of the
//! relay's own.
//!
//! The lock is PostgreSQL's, so it ends with the session: a relay killed with `kill -9`, or
//! whose connection is lost, lets go at once, and a standby takes over at its next try. The
//! relay's cursor is written only through the connection that holds the lock, so a relay that
//! lost its lease (its connection gone) can no longer move the cursor, whatever it still
//! believes. Two relays may at worst publish the same events for a moment; JetStream's duplicate
//! window and the event's sequence number in every message make that harmless.

use crate::{Outbox, RelayError, sleep_or_shutdown};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tally_store::StoreError;
use tokio::sync::watch;
use tokio_postgres::NoTls;

/// How quickly PostgreSQL notices that a lease holder's machine went away without closing its
/// connection (TCP keepalives of the lease's session).
pub const KEEPALIVE_IDLE: Duration = Duration::from_secs(10);
/// How often a standby tries to take the lease, at least and at most.
pub const LEASE_POLL_MIN: Duration = Duration::from_millis(10);
pub const LEASE_POLL_MAX: Duration = Duration::from_secs(60);

/// A held lease: the connection that holds the lock, and the only one that moves the cursor.
pub struct Lease {
    name: String,
    client: tokio_postgres::Client,
    alive: Arc<AtomicBool>,
}

impl Lease {
    /// Takes the lease `name` if nobody holds it. `holder` is recorded for operators.
    pub async fn try_take(outbox: &Outbox, name: &str, holder: &str) -> Result<Option<Lease>, RelayError> {
        let mut config = outbox.store().connection_config();
        config.application_name("tally-relay-lease").keepalives_idle(KEEPALIVE_IDLE);
        let (client, connection) = config.connect(NoTls).await.map_err(StoreError::from)?;
        let alive = Arc::new(AtomicBool::new(true));
        {
            let alive = alive.clone();
            tokio::spawn(async move {
                let _ = connection.await;
                alive.store(false, Ordering::SeqCst);
            });
        }
        // The server's side of the keepalives, so that a vanished holder's lock is freed.
        client
            .batch_execute(
                "SET tcp_keepalives_idle = 10; SET tcp_keepalives_interval = 5; SET tcp_keepalives_count = 3",
            )
            .await?;
        let taken: bool = client
            .query_one("SELECT pg_try_advisory_lock(hashtextextended('tally.relay:' || $1::text, 0))", &[&name])
            .await?
            .get(0);
        if !taken {
            return Ok(None);
        }
        client
            .execute(
                "INSERT INTO relay_cursors (name, holder, held_since) VALUES ($1, $2, now())
                 ON CONFLICT (name) DO UPDATE SET holder = $2, held_since = now()",
                &[&name, &holder],
            )
            .await?;
        Ok(Some(Lease { name: name.to_owned(), client, alive }))
    }

    /// Waits until the lease is taken (`Some`) or `shutdown` turns true (`None`), trying every
    /// `poll`. Database failures are retried: a standby outlives them.
    pub async fn wait(
        outbox: &Outbox,
        name: &str,
        holder: &str,
        poll: Duration,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Option<Lease> {
        assert!((LEASE_POLL_MIN..=LEASE_POLL_MAX).contains(&poll), "lease poll {poll:?} out of bounds");
        let mut announced = false;
        loop {
            match Lease::try_take(outbox, name, holder).await {
                Ok(Some(lease)) => {
                    tracing::info!(lease = name, holder, "lease taken: relaying");
                    return Some(lease);
                }
                Ok(None) if !announced => {
                    announced = true;
                    tracing::info!(lease = name, "another relay holds the lease: standing by");
                }
                Ok(None) => {}
                Err(error) => tracing::warn!(lease = name, %error, "cannot take the lease now"),
            }
            if sleep_or_shutdown(poll, shutdown).await {
                return None;
            }
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether the lease's connection is still open (if not, the lock is gone with it).
    pub fn is_held(&self) -> bool {
        self.alive.load(Ordering::SeqCst) && !self.client.is_closed()
    }

    /// The cursor: every event up to it has been acknowledged.
    pub async fn cursor(&self) -> Result<i64, RelayError> {
        let row = self.client.query_one("SELECT delivered_seq FROM relay_cursors WHERE name = $1", &[&self.name]).await;
        Ok(row.map_err(|error| self.lost_or(error))?.get(0))
    }

    /// Moves the cursor forward to `seq`, through the lease's connection.
    pub async fn advance(&self, seq: i64) -> Result<(), RelayError> {
        let updated = self
            .client
            .execute(
                "UPDATE relay_cursors SET delivered_seq = $2, updated_at = now() WHERE name = $1 AND delivered_seq <= $2",
                &[&self.name, &seq],
            )
            .await
            .map_err(|error| self.lost_or(error))?;
        assert_eq!(updated, 1, "the cursor of {} never moves back (to {seq})", self.name);
        Ok(())
    }

    /// The lease's connection, for writes that must stop with the lease (the dispatcher's).
    pub(crate) fn client(&self) -> &tokio_postgres::Client {
        &self.client
    }

    /// A failure on the lease's connection: the lease is lost if the connection is.
    pub(crate) fn lost_or(&self, error: tokio_postgres::Error) -> RelayError {
        if self.client.is_closed() || tally_store::error::is_connection_lost(&error) {
            return RelayError::LeaseLost(self.name.clone());
        }
        RelayError::from(error)
    }
}
