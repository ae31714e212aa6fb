//! The crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong while finding, initializing or running PostgreSQL.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// No usable PostgreSQL server binaries were found anywhere.
    #[error(
        "no PostgreSQL server binaries found (searched: {searched}). Fix it by one of: \
         run `scripts/install-pg.sh` from the Tally repository (installs PostgreSQL 18 into .pg18/); \
         or set TALLY_PG_BIN to the bin directory of a PostgreSQL 15+ install; \
         or install the Debian package: `apt-get install postgresql-18`"
    )]
    NoBinaries {
        /// Human-readable list of the places that were looked at.
        searched: String,
    },

    /// An explicitly configured location (env var) does not hold `postgres`.
    #[error("{var}={} does not contain a `postgres` executable ({})", .path.display(), .hint)]
    BadConfiguredDir { var: &'static str, path: PathBuf, hint: &'static str },

    /// Binaries were found, but they are too old.
    #[error(
        "PostgreSQL {major} found in {} is too old: Tally needs PostgreSQL {min} or newer \
         (run `scripts/install-pg.sh` or set TALLY_PG_BIN)",
        .bin_dir.display()
    )]
    TooOld { bin_dir: PathBuf, major: u32, min: u32 },

    /// `postgres --version` printed something we could not understand.
    #[error("could not parse the output of `{} --version`: {output:?}", .program.display())]
    VersionUnparsable { program: PathBuf, output: String },

    /// The data directory was created by a different PostgreSQL major version.
    #[error(
        "data directory {} was initialized by PostgreSQL {data_major}, but the binaries in {} are \
         PostgreSQL {bin_major}; use matching binaries (TALLY_PG_BIN) or a fresh data directory",
        .data_dir.display(), .bin_dir.display()
    )]
    VersionMismatch { data_dir: PathBuf, bin_dir: PathBuf, data_major: u32, bin_major: u32 },

    /// Running as root, the unprivileged server user could not be set up.
    #[error(
        "could not set up the unprivileged server user `{user}` (needed because PostgreSQL refuses to run as root): {detail}"
    )]
    ServerUser { user: String, detail: String },

    /// Running as root, the unprivileged server user cannot use a path we need.
    #[error(
        "the unprivileged server user `{user}` cannot access {}: {detail}. When running as root \
         the server runs as `{user}`, so the PostgreSQL install and the data directory must live \
         in world-readable/traversable places (e.g. TALLY_PG_HOME=/opt/tally-pg scripts/install-pg.sh, \
         then run with TALLY_PG_HOME=/opt/tally-pg)",
        .path.display()
    )]
    NotAccessible { user: String, path: PathBuf, detail: String },

    /// A helper program ran but failed.
    #[error("`{command}` failed ({status}): {output}")]
    CommandFailed { command: String, status: String, output: String },

    /// `pg_ctl start` failed; the server log usually says why.
    #[error("starting PostgreSQL failed: {detail}\n--- last lines of {} ---\n{log_tail}", .log.display())]
    StartFailed { detail: String, log: PathBuf, log_tail: String },

    /// The server process exists but does not accept connections in time.
    #[error("PostgreSQL is running for {} but did not accept connections within {secs}s", .data_dir.display())]
    NotReady { data_dir: PathBuf, secs: u64 },

    /// An I/O error, with what we were doing at the time.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl PgError {
    /// Wraps an I/O error with a short description of the failed action.
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> PgError {
        let context = context.into();
        move |source| PgError::Io { context, source }
    }
}
