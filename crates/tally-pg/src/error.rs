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

    /// A standby name that cannot name a replication slot and an `application_name`.
    #[error(
        "the standby name {name:?} is not usable: use 1 to {max} lowercase letters, digits and underscores \
         (it names the standby's replication slot and its application_name on the primary)",
        max = crate::STANDBY_NAME_LEN_MAX
    )]
    StandbyNameInvalid { name: String },

    /// A server that must be running (a standby's primary) is not.
    #[error("PostgreSQL is not running in {}: start it first (`tally pg start --data-dir ...`)", .data_dir.display())]
    NotRunning { data_dir: PathBuf },

    /// A standby was to be made from a standby.
    #[error("{} is a standby itself: make the new standby from its primary", .data_dir.display())]
    IsStandby { data_dir: PathBuf },

    /// Promotion of a data directory that is not a standby.
    #[error("{} is not a standby (it has no standby.signal): there is nothing to promote", .data_dir.display())]
    NotStandby { data_dir: PathBuf },

    /// A standby is made only into a new or empty directory.
    #[error("{} already holds files: a standby is made in a new or empty directory", .data_dir.display())]
    DataDirNotEmpty { data_dir: PathBuf },

    /// The primary already waits for another synchronous standby.
    #[error(
        "the primary in {} already has synchronous_standby_names = '{existing}': it waits for that standby at every \
         COMMIT. Make this one an asynchronous replica, or change the setting on the primary first \
         (ALTER SYSTEM SET synchronous_standby_names = ...; SELECT pg_reload_conf())",
        .data_dir.display()
    )]
    SynchronousStandbyExists { data_dir: PathBuf, existing: String },

    /// A standby of that name streams from the primary now (its replication slot is in use).
    #[error(
        "a standby named {name} streams from the primary in {} now (its replication slot is active): choose another name",
        .data_dir.display()
    )]
    SlotActive { data_dir: PathBuf, name: String },

    /// Replication or a promotion did not reach the expected state in time.
    #[error("waited {secs}s for {what}, in vain ({detail})")]
    ReplicationTimeout { what: &'static str, secs: u64, detail: String },

    /// An I/O error, with what we were doing at the time.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl PgError {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            PgError::NoBinaries { .. } => "postgres_binaries_not_found",
            PgError::BadConfiguredDir { .. } => "postgres_binaries_misconfigured",
            PgError::TooOld { .. } => "postgres_too_old",
            PgError::VersionUnparsable { .. } => "postgres_version_unparsable",
            PgError::VersionMismatch { .. } => "postgres_version_mismatch",
            PgError::ServerUser { .. } => "postgres_server_user",
            PgError::NotAccessible { .. } => "postgres_not_accessible",
            PgError::CommandFailed { .. } => "postgres_command_failed",
            PgError::StartFailed { .. } => "postgres_start_failed",
            PgError::NotReady { .. } => "postgres_not_ready",
            PgError::StandbyNameInvalid { .. } => "standby_name_invalid",
            PgError::NotRunning { .. } => "postgres_not_running",
            PgError::IsStandby { .. } => "postgres_is_standby",
            PgError::NotStandby { .. } => "postgres_not_standby",
            PgError::DataDirNotEmpty { .. } => "data_dir_not_empty",
            PgError::SynchronousStandbyExists { .. } => "synchronous_standby_exists",
            PgError::SlotActive { .. } => "replication_slot_active",
            PgError::ReplicationTimeout { .. } => "replication_timeout",
            PgError::Io { .. } => "io_error",
        }
    }

    /// Wraps an I/O error with a short description of the failed action.
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> PgError {
        let context = context.into();
        move |source| PgError::Io { context, source }
    }
}
