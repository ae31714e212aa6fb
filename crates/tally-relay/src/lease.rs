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

/// A connection of the lease's own, and whether it is still open.
struct Session {
    client: tokio_postgres::Client,
    alive: Arc<AtomicBool>,
}

impl Session {
    async fn open(outbox: &Outbox) -> Result<Session, RelayError> {
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
        Ok(Session { client, alive })
    }

    fn is_open(&self) -> bool {
        self.alive.load(Ordering::SeqCst) && !self.client.is_closed()
    }

    /// Tries the lock once; on success the session becomes the lease.
    async fn try_lock(self, name: &str, holder: &str) -> Result<Result<Lease, Session>, RelayError> {
        let taken: bool = self
            .client
            .query_one("SELECT pg_try_advisory_lock(hashtextextended('tally.relay:' || $1::text, 0))", &[&name])
            .await?
            .get(0);
        if !taken {
            return Ok(Err(self));
        }
        self.client
            .execute(
                "INSERT INTO relay_cursors (name, holder, held_since) VALUES ($1, $2, now())
                 ON CONFLICT (name) DO UPDATE SET holder = $2, held_since = now()",
                &[&name, &holder],
            )
            .await?;
        Ok(Ok(Lease { name: name.to_owned(), client: self.client, alive: self.alive }))
    }
}

impl Lease {
    /// Takes the lease `name` if nobody holds it. `holder` is recorded for operators.
    pub async fn try_take(outbox: &Outbox, name: &str, holder: &str) -> Result<Option<Lease>, RelayError> {
        Ok(Session::open(outbox).await?.try_lock(name, holder).await?.ok())
    }

    /// Waits until the lease is taken (`Some`) or `shutdown` turns true (`None`), trying every
    /// `poll` on one connection kept open meanwhile. Database failures are retried: a standby
    /// outlives them, and says so once per outage.
    pub async fn wait(
        outbox: &Outbox,
        name: &str,
        holder: &str,
        poll: Duration,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Option<Lease> {
        assert!((LEASE_POLL_MIN..=LEASE_POLL_MAX).contains(&poll), "lease poll {poll:?} out of bounds");
        let mut session: Option<Session> = None;
        let mut announced = false;
        let mut failing = false;
        loop {
            if session.as_ref().is_none_or(|s| !s.is_open()) {
                session = match Session::open(outbox).await {
                    Ok(opened) => Some(opened),
                    Err(error) => {
                        if !failing {
                            tracing::warn!(lease = name, %error, "cannot reach the database to take the lease; retrying");
                        }
                        failing = true;
                        None
                    }
                };
            }
            if let Some(open) = session.take() {
                match open.try_lock(name, holder).await {
                    Ok(Ok(lease)) => {
                        tracing::info!(lease = name, holder, "lease taken: relaying");
                        return Some(lease);
                    }
                    Ok(Err(kept)) => {
                        failing = false;
                        session = Some(kept);
                        if !announced {
                            announced = true;
                            tracing::info!(lease = name, "another relay holds the lease: standing by");
                        }
                    }
                    Err(error) => {
                        if !failing {
                            tracing::warn!(lease = name, %error, "cannot take the lease now; retrying");
                        }
                        failing = true;
                    }
                }
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
