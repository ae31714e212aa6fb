//! Embedded PostgreSQL for Tally: find server binaries, then initialize,
//! start, stop and inspect a cluster in a data directory of our own.
//!
//! Tally stores its ledger in PostgreSQL 18 (15+ works). Rather than relying
//! on a system-wide server, each Tally data directory gets a private cluster
//! that talks only over a Unix socket (no TCP listener), with trust
//! authentication for the superuser `tally`. Access control is the socket
//! directory's mode (0700), so only the owning user (and root) can connect.
//!
//! Assumptions:
//! - Linux/Unix; everything is done with `std::process` and the stock
//!   PostgreSQL tools (`initdb`, `pg_ctl`, `pg_isready`, `psql`). No async.
//! - Binaries come from [`find_binaries`]: `$TALLY_PG_BIN`, a project-local
//!   install made by `scripts/install-pg.sh` (`.pg18/pginstall/bin`), the
//!   `pg_config` on `PATH`, or Debian's `/usr/lib/postgresql/<major>/bin`.
//! - PostgreSQL refuses to run as root. When we are root (e.g. in CI) the
//!   server programs run as the system user `tally-pg`, created on demand,
//!   which then owns the data directory. Clients (`psql`) still run as root.
//! - Durability settings (fsync, synchronous_commit, full_page_writes) are
//!   left at PostgreSQL's safe defaults: this is a ledger.
//! - The server is a daemon that outlives the process that started it;
//!   [`EmbeddedPg::start`] is idempotent and can be called from any process.
//! - A running server can be copied into a streaming standby
//!   ([`EmbeddedPg::create_standby`], `pg_basebackup`), synchronous or not, which
//!   [`EmbeddedPg::start`] starts as a standby and [`EmbeddedPg::promote`] makes a primary.
//!   Administration (replication state, `ALTER SYSTEM`) goes through `psql`.
//!
//! ```no_run
//! let pg = tally_pg::EmbeddedPg::new("tally-data/pg", tally_pg::find_binaries()?);
//! pg.start()?;
//! println!("{}", pg.connection_string("postgres"));
//! # Ok::<(), tally_pg::PgError>(())
//! ```

mod binaries;
mod error;
mod process;
mod server;
mod standby;
#[cfg(test)]
mod test_support;

pub use binaries::{AUTO_MIN_MAJOR, MIN_MAJOR, PgBinaries, find_binaries};
pub use error::PgError;
pub use process::SERVER_USER;
pub use server::{
    EmbeddedPg, PORT, SHARED_BUFFERS_ENV, START_TIMEOUT_SECS, STOP_TIMEOUT_SECS, SUPERUSER, StartOutcome, Status,
};
pub use standby::{
    PROMOTE_TIMEOUT_SECS, PromoteReport, REPLICATION_TIMEOUT_SECS, STANDBY_NAME_DEFAULT, STANDBY_NAME_LEN_MAX,
    StandbyOptions, StandbyReport, StandbyStep,
};
