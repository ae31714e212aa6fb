//! [`EmbeddedPg`]: one PostgreSQL data directory and the server running on it.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::PgBinaries;
use crate::PgError;
use crate::process::{
    Ids, SERVER_USER, chown_recursive, combined_output, current_euid, ensure_server_user, output, pg_command, run_as,
    run_ok,
};

/// Database superuser created by `initdb` (trust auth, socket only).
pub const SUPERUSER: &str = "tally";
/// Port number; with no TCP listener it only names the socket file `.s.PGSQL.5432`.
pub const PORT: u16 = 5432;
/// How long `pg_ctl start` and readiness checks may take.
pub const START_TIMEOUT_SECS: u64 = 60;
/// How long `pg_ctl stop` may take.
pub const STOP_TIMEOUT_SECS: u64 = 60;
/// Overrides [`DEFAULT_SHARED_BUFFERS`], e.g. `TALLY_PG_SHARED_BUFFERS=128MB`.
pub const SHARED_BUFFERS_ENV: &str = "TALLY_PG_SHARED_BUFFERS";
const DEFAULT_SHARED_BUFFERS: &str = "512MB";
const MAX_CONNECTIONS: u32 = 200;
/// How long a lock wait lasts before the deadlock detector looks at it.
pub const DEADLOCK_TIMEOUT: &str = "100ms";
/// Socket paths are limited to 107 bytes; `<dir>/.s.PGSQL.5432` must fit, so
/// longer data dirs get their socket in a short directory under /tmp.
const MAX_SOCKET_DIR_LEN: usize = 80;
const SHORT_SOCKET_DIR_PREFIX: &str = "/tmp/tally-pg-";
pub(crate) const LOG_FILE: &str = "server.log";
const LOG_TAIL_LINES: usize = 40;
const READY_POLL_INTERVAL: Duration = Duration::from_millis(100);
/// `pg_ctl status` exit codes.
const PG_CTL_RUNNING: i32 = 0;
const PG_CTL_NOT_RUNNING: i32 = 3;
const PG_CTL_NO_DATA_DIR: i32 = 4;

/// What [`EmbeddedPg::start`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StartOutcome {
    /// We started the server.
    Started,
    /// A server was already running on this data directory.
    AlreadyRunning,
}

/// What [`EmbeddedPg::status`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    /// PID of the postmaster, if a server is running.
    pub pid: Option<u32>,
    /// Major version recorded in the data directory (`PG_VERSION`), if initialized.
    pub data_version: Option<u32>,
    /// The data directory is a standby's (`standby.signal`): it starts in recovery and follows
    /// its primary until promoted.
    pub standby: bool,
}

impl Status {
    pub fn is_running(&self) -> bool {
        self.pid.is_some()
    }
}

/// A PostgreSQL cluster in one data directory, managed with `initdb`/`pg_ctl`.
///
/// The server is a daemon: it keeps running after this value is dropped, and
/// a later [`start`](Self::start) (from any process) just finds it running.
#[derive(Debug)]
pub struct EmbeddedPg {
    data_dir: PathBuf,
    bins: PgBinaries,
    /// The unprivileged server user when we are root; `None` otherwise.
    server_ids: OnceLock<Option<Ids>>,
}

impl EmbeddedPg {
    /// Manages the cluster in `data_dir` (made absolute; need not exist yet).
    pub fn new(data_dir: impl Into<PathBuf>, bins: PgBinaries) -> Self {
        let data_dir = data_dir.into();
        let data_dir = std::path::absolute(&data_dir).unwrap_or(data_dir);
        EmbeddedPg { data_dir, bins, server_ids: OnceLock::new() }
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn bins(&self) -> &PgBinaries {
        &self.bins
    }

    /// The server log written by `pg_ctl start`.
    pub fn log_file(&self) -> PathBuf {
        self.data_dir.join(LOG_FILE)
    }

    /// Directory holding the server's Unix socket: the data dir itself if its
    /// path is short enough, else `/tmp/tally-pg-<hash of the data dir>`.
    pub fn socket_dir(&self) -> PathBuf {
        socket_dir_for(&self.data_dir)
    }

    /// libpq key-value conninfo for `dbname`, e.g.
    /// `host=/srv/tally/data port=5432 user=tally dbname=ledger`.
    pub fn connection_string(&self, dbname: &str) -> String {
        let host = self.socket_dir();
        format!(
            "host={} port={PORT} user={SUPERUSER} dbname={}",
            conninfo_value(&host.to_string_lossy()),
            conninfo_value(dbname)
        )
    }

    /// `psql -X -d <conninfo>` from the same bin dir, as the current user
    /// (root may connect over the socket). Add e.g. `-c 'select 1'`.
    pub fn psql_command(&self, dbname: &str) -> Command {
        let mut cmd = pg_command(&self.bins.bin_dir, "psql");
        cmd.args(["-X", "-d", &self.connection_string(dbname)]);
        cmd
    }

    /// Runs `initdb` unless the data directory already holds a cluster.
    /// Returns whether it initialized one.
    pub fn ensure_initialized(&self) -> Result<bool, PgError> {
        if self.data_dir.join("PG_VERSION").exists() {
            return Ok(false);
        }
        let ids = self.server_ids()?;
        let started = Instant::now();
        std::fs::create_dir_all(&self.data_dir)
            .map_err(PgError::io(format!("could not create data directory {}", self.data_dir.display())))?;
        if let Some(ids) = ids {
            check_traversable(&self.data_dir, ids)?;
            chown_recursive(&self.data_dir, ids)?;
        }
        let mut initdb = self.server_command("initdb")?;
        initdb
            .arg("-D")
            .arg(&self.data_dir)
            .args(["-U", SUPERUSER, "--auth=trust", "--encoding=UTF8", "--locale=C"])
            .arg("--no-instructions");
        run_ok(&mut initdb)?;
        tracing::info!(data_dir = %self.data_dir.display(), elapsed_ms = started.elapsed().as_millis(), "initialized PostgreSQL cluster");
        Ok(true)
    }

    /// Starts the server (initializing the data directory first if needed)
    /// and waits until it accepts connections. Idempotent.
    pub fn start(&self) -> Result<StartOutcome, PgError> {
        self.ensure_initialized()?;
        self.check_data_version()?;
        let ids = self.server_ids()?;
        self.prepare_ownership(ids)?;
        if self.is_running()? {
            // It may still be starting up (another process ran `start`).
            self.wait_ready()?;
            return Ok(StartOutcome::AlreadyRunning);
        }
        let started = Instant::now();
        let mut pg_ctl = self.pg_ctl("start")?;
        pg_ctl
            .arg("-l")
            .arg(self.log_file())
            .args(["-w", "-t", &START_TIMEOUT_SECS.to_string()])
            .args(["-o", &self.server_options()]);
        let out = output(&mut pg_ctl)?;
        if !out.status.success() {
            return Err(PgError::StartFailed {
                detail: format!("pg_ctl start: {}: {}", out.status, combined_output(&out)),
                log: self.log_file(),
                log_tail: self.log_tail(),
            });
        }
        tracing::info!(data_dir = %self.data_dir.display(), elapsed_ms = started.elapsed().as_millis(), "started PostgreSQL");
        Ok(StartOutcome::Started)
    }

    /// Fast shutdown (aborts open transactions, then checkpoints).
    /// Returns `false` if no server was running.
    pub fn stop(&self) -> Result<bool, PgError> {
        self.stop_with_mode("fast")
    }

    /// Smart shutdown: waits up to `wait` (whole seconds, at least 1) for the clients to
    /// disconnect, then stops as `stop` does. A caller that closed its own connections first
    /// stops the server without its connections being cut (and logging that they were).
    /// Returns `false` if no server was running.
    pub fn stop_when_clients_leave(&self, wait: std::time::Duration) -> Result<bool, PgError> {
        if !self.is_running()? {
            return Ok(false);
        }
        let mut pg_ctl = self.pg_ctl("stop")?;
        pg_ctl.args(["-m", "smart", "-w", "-t", &wait.as_secs().max(1).to_string()]);
        if run_ok(&mut pg_ctl).is_ok() {
            tracing::info!(data_dir = %self.data_dir.display(), mode = "smart", "stopped PostgreSQL");
            return Ok(true);
        }
        self.stop_with_mode("fast")
    }

    /// Immediate shutdown: no checkpoint, like a crash; the next start runs
    /// WAL recovery. Returns `false` if no server was running.
    pub fn stop_immediate(&self) -> Result<bool, PgError> {
        self.stop_with_mode("immediate")
    }

    /// Whether a server is running (with its PID) and the data dir's version.
    pub fn status(&self) -> Result<Status, PgError> {
        let pid = if self.is_running()? { self.postmaster_pid() } else { None };
        Ok(Status { pid, data_version: self.data_version(), standby: self.is_standby() })
    }

    fn stop_with_mode(&self, mode: &str) -> Result<bool, PgError> {
        if !self.is_running()? {
            return Ok(false);
        }
        let mut pg_ctl = self.pg_ctl("stop")?;
        pg_ctl.args(["-m", mode, "-w", "-t", &STOP_TIMEOUT_SECS.to_string()]);
        run_ok(&mut pg_ctl)?;
        tracing::info!(data_dir = %self.data_dir.display(), mode, "stopped PostgreSQL");
        Ok(true)
    }

    /// The server user when root (created and checked on first use).
    pub(crate) fn server_ids(&self) -> Result<Option<Ids>, PgError> {
        if let Some(ids) = self.server_ids.get() {
            return Ok(*ids);
        }
        let ids = if crate::process::is_root() {
            let ids = ensure_server_user()?;
            self.check_binaries_usable(ids)?;
            Some(ids)
        } else {
            None
        };
        Ok(*self.server_ids.get_or_init(|| ids))
    }

    /// The install may sit under a private home directory (mode 0700) that
    /// the server user cannot enter; fail early with a useful message.
    fn check_binaries_usable(&self, ids: Ids) -> Result<(), PgError> {
        for program in ["postgres", "initdb"] {
            let mut cmd = pg_command(&self.bins.bin_dir, program);
            cmd.arg("--version");
            run_as(&mut cmd, Some(ids));
            let detail = match output(&mut cmd) {
                Ok(out) if out.status.success() => continue,
                Ok(out) => combined_output(&out),
                Err(e) => e.to_string(),
            };
            return Err(PgError::NotAccessible {
                user: SERVER_USER.to_owned(),
                path: self.bins.program(program),
                detail,
            });
        }
        Ok(())
    }

    /// A PostgreSQL program run as the server user.
    pub(crate) fn server_command(&self, program: &str) -> Result<Command, PgError> {
        let mut cmd = pg_command(&self.bins.bin_dir, program);
        run_as(&mut cmd, self.server_ids()?);
        Ok(cmd)
    }

    pub(crate) fn pg_ctl(&self, action: &str) -> Result<Command, PgError> {
        let mut cmd = self.server_command("pg_ctl")?;
        cmd.arg(action).arg("-D").arg(&self.data_dir);
        Ok(cmd)
    }

    pub(crate) fn is_running(&self) -> Result<bool, PgError> {
        let mut pg_ctl = self.pg_ctl("status")?;
        let out = output(&mut pg_ctl)?;
        match out.status.code() {
            Some(PG_CTL_RUNNING) => Ok(true),
            Some(PG_CTL_NOT_RUNNING | PG_CTL_NO_DATA_DIR) => Ok(false),
            _ => Err(PgError::CommandFailed {
                command: crate::process::describe(&pg_ctl),
                status: out.status.to_string(),
                output: combined_output(&out),
            }),
        }
    }

    /// Polls `pg_isready` until the server accepts connections.
    fn wait_ready(&self) -> Result<(), PgError> {
        let deadline = Instant::now() + Duration::from_secs(START_TIMEOUT_SECS);
        loop {
            let mut cmd = pg_command(&self.bins.bin_dir, "pg_isready");
            cmd.arg("-q").arg("-h").arg(self.socket_dir()).args([
                "-p",
                &PORT.to_string(),
                "-U",
                SUPERUSER,
                "-d",
                "postgres",
            ]);
            if output(&mut cmd)?.status.success() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(PgError::NotReady { data_dir: self.data_dir.clone(), secs: START_TIMEOUT_SECS });
            }
            sleep(READY_POLL_INTERVAL);
        }
    }

    /// `-c` settings for the postmaster, quoted for the shell `pg_ctl -o` uses.
    /// Durability settings (fsync, synchronous_commit, full_page_writes) stay stock.
    fn server_options(&self) -> String {
        let shared_buffers = std::env::var(SHARED_BUFFERS_ENV)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_SHARED_BUFFERS.to_owned());
        let socket_dir = self.socket_dir().to_string_lossy().replace('"', "\"\"");
        let settings = [
            // No TCP listener at all: the Unix socket is the only way in.
            ("listen_addresses", String::new()),
            // Quoted: the setting is a comma-separated list.
            ("unix_socket_directories", format!("\"{socket_dir}\"")),
            ("unix_socket_permissions", "0700".to_owned()),
            ("port", PORT.to_string()),
            ("max_connections", MAX_CONNECTIONS.to_string()),
            ("shared_buffers", shared_buffers),
            // Engine batches of several Tally processes wait on each other's locks, and a cycle
            // among them (a transfer id retried on another process, say) is only broken by the
            // deadlock detector: look after 100 ms instead of the stock 1 s.
            ("deadlock_timeout", DEADLOCK_TIMEOUT.to_owned()),
        ];
        settings
            .iter()
            .map(|(name, value)| format!("-c {}", shell_quote(&format!("{name}={value}"))))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Makes the data dir (and a separate socket dir) belong to the user the
    /// server runs as, with mode 0700.
    fn prepare_ownership(&self, ids: Option<Ids>) -> Result<(), PgError> {
        if let Some(ids) = ids {
            // Root may have created files in the data dir (e.g. a restored backup).
            if owner_of(&self.data_dir)? != ids.uid {
                chown_recursive(&self.data_dir, ids)?;
            }
        }
        let socket_dir = self.socket_dir();
        if socket_dir != self.data_dir {
            prepare_socket_dir(&socket_dir, ids)?;
        }
        Ok(())
    }

    pub(crate) fn check_data_version(&self) -> Result<(), PgError> {
        match self.data_version() {
            Some(data_major) if data_major != self.bins.version_major => Err(PgError::VersionMismatch {
                data_dir: self.data_dir.clone(),
                bin_dir: self.bins.bin_dir.clone(),
                data_major,
                bin_major: self.bins.version_major,
            }),
            _ => Ok(()),
        }
    }

    fn data_version(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.data_dir.join("PG_VERSION")).ok()?;
        text.trim().parse().ok()
    }

    /// First line of `postmaster.pid`.
    fn postmaster_pid(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.data_dir.join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    fn log_tail(&self) -> String {
        match std::fs::read_to_string(self.log_file()) {
            Ok(log) => {
                let lines: Vec<&str> = log.lines().collect();
                lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
            }
            Err(e) => format!("(could not read the log: {e})"),
        }
    }
}

fn socket_dir_for(data_dir: &Path) -> PathBuf {
    if data_dir.as_os_str().len() <= MAX_SOCKET_DIR_LEN {
        return data_dir.to_path_buf();
    }
    let hash = fnv1a64(data_dir.as_os_str().as_encoded_bytes());
    PathBuf::from(format!("{SHORT_SOCKET_DIR_PREFIX}{hash:016x}"))
}

/// FNV-1a: tiny and, unlike std's `DefaultHasher`, stable across Rust
/// releases, so every build agrees on the socket path of a data dir.
fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET_BASIS, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(PRIME))
}

/// Creates the /tmp socket dir, owned by the server user, mode 0700. It lives
/// in a world-writable place, so refuse a symlink or someone else's directory.
fn prepare_socket_dir(dir: &Path, ids: Option<Ids>) -> Result<(), PgError> {
    match std::fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(PgError::io(format!("could not create {}", dir.display()))(e)),
    }
    let meta = std::fs::symlink_metadata(dir).map_err(PgError::io(format!("could not inspect {}", dir.display())))?;
    let want_uid = ids.map(|i| i.uid).or_else(current_euid);
    // As root we may take over a directory root created; otherwise it must be ours.
    let ours = Some(meta.uid()) == want_uid || (ids.is_some() && meta.uid() == 0);
    if !meta.is_dir() || !ours {
        return Err(PgError::io(format!("refusing to use socket directory {}", dir.display()))(std::io::Error::other(
            "it is a symlink, not a directory, or owned by another user",
        )));
    }
    if let Some(ids) = ids {
        chown_recursive(dir, ids)?;
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(PgError::io(format!("could not chmod {}", dir.display())))
}

fn owner_of(path: &Path) -> Result<u32, PgError> {
    let meta = std::fs::metadata(path).map_err(PgError::io(format!("could not inspect {}", path.display())))?;
    Ok(meta.uid())
}

/// When root, the server user must be able to reach the data dir through
/// every parent directory.
pub(crate) fn check_traversable(data_dir: &Path, ids: Ids) -> Result<(), PgError> {
    for dir in data_dir.ancestors().skip(1) {
        let Ok(meta) = std::fs::metadata(dir) else {
            continue;
        };
        let mode = meta.mode();
        let ok = mode & 0o001 != 0
            || (meta.uid() == ids.uid && mode & 0o100 != 0)
            || (meta.gid() == ids.gid && mode & 0o010 != 0);
        if !ok {
            return Err(PgError::NotAccessible {
                user: SERVER_USER.to_owned(),
                path: dir.to_path_buf(),
                detail: format!(
                    "directory mode {:o} does not let it reach the data directory {}",
                    mode & 0o777,
                    data_dir.display()
                ),
            });
        }
    }
    Ok(())
}

/// Single-quotes `s` for /bin/sh.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Quotes a libpq conninfo value when needed (spaces, quotes, backslashes).
pub(crate) fn conninfo_value(s: &str) -> String {
    let plain = !s.is_empty() && !s.chars().any(|c| c.is_whitespace() || c == '\'' || c == '\\');
    if plain {
        return s.to_owned();
    }
    format!("'{}'", s.replace('\\', r"\\").replace('\'', r"\'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bins() -> PgBinaries {
        PgBinaries { bin_dir: PathBuf::from("/opt/pg/bin"), version_major: 18 }
    }

    #[test]
    fn short_data_dirs_hold_their_own_socket() {
        let pg = EmbeddedPg::new("/srv/tally/data", bins());
        assert_eq!(pg.socket_dir(), Path::new("/srv/tally/data"));
        assert_eq!(pg.connection_string("ledger"), "host=/srv/tally/data port=5432 user=tally dbname=ledger");
    }

    #[test]
    fn long_data_dirs_get_a_short_stable_socket_dir() {
        let long = format!("/srv/{}/data", "x".repeat(100));
        let dir = socket_dir_for(Path::new(&long));
        let dir_str = dir.to_str().unwrap();
        assert!(dir_str.starts_with(SHORT_SOCKET_DIR_PREFIX), "{dir_str}");
        assert!(dir_str.len() + "/.s.PGSQL.5432".len() < 107);
        assert_eq!(dir, socket_dir_for(Path::new(&long)));
        assert_ne!(dir, socket_dir_for(Path::new(&format!("{long}2"))));
        // The boundary: exactly MAX_SOCKET_DIR_LEN bytes stays in place.
        let edge = format!("/{}", "y".repeat(MAX_SOCKET_DIR_LEN - 1));
        assert_eq!(socket_dir_for(Path::new(&edge)), Path::new(&edge));
    }

    #[test]
    fn fnv_matches_reference_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn relative_data_dirs_become_absolute() {
        let pg = EmbeddedPg::new("rel/data", bins());
        assert!(pg.data_dir().is_absolute());
        assert!(pg.data_dir().ends_with("rel/data"));
    }

    #[test]
    fn quotes_conninfo_values() {
        assert_eq!(conninfo_value("ledger"), "ledger");
        assert_eq!(conninfo_value("/a b/c"), "'/a b/c'");
        assert_eq!(conninfo_value(r"it's\x"), r"'it\'s\\x'");
        assert_eq!(conninfo_value(""), "''");
    }

    #[test]
    fn quotes_for_the_shell() {
        assert_eq!(shell_quote("listen_addresses="), "'listen_addresses='");
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
    }

    #[test]
    fn server_options_disable_tcp_and_name_the_socket_dir() {
        let pg = EmbeddedPg::new("/srv/tally/data", bins());
        let opts = pg.server_options();
        assert!(opts.starts_with("-c 'listen_addresses=' "), "{opts}");
        assert!(opts.contains(r#"-c 'unix_socket_directories="/srv/tally/data"'"#), "{opts}");
        assert!(opts.contains("-c 'max_connections=200'"), "{opts}");
        for durability in ["fsync", "synchronous_commit", "full_page_writes"] {
            assert!(!opts.contains(durability), "{opts}");
        }
    }
}
