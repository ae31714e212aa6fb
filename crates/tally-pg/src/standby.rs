//! Streaming replication between embedded servers: a standby made from a running primary with
//! `pg_basebackup`, synchronous or not, and its promotion to primary.
//!
//! A standby is an [`EmbeddedPg`] like any other, in a data directory of its own with a socket of
//! its own; what makes it a standby is `standby.signal` and its `primary_conninfo`, so that
//! [`EmbeddedPg::start`] starts it as one (in recovery, following the primary) until
//! [`EmbeddedPg::promote`] makes it a primary. It streams through a physical replication slot of
//! its name on the primary, so the primary keeps the WAL it has not received.
//!
//! A synchronous standby is named in the primary's `synchronous_standby_names` (ALTER SYSTEM,
//! then a reload), and its `application_name` is that name: the primary then answers a COMMIT
//! only once this standby has flushed it, so a transaction acknowledged by the primary survives
//! the primary's loss if the standby is promoted. The price: while the standby is down, every
//! COMMIT on the primary waits.

use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::process::{chown_recursive, run_ok};
use crate::server::{LOG_FILE, check_traversable, conninfo_value};
use crate::{EmbeddedPg, PORT, PgError, SUPERUSER};

/// The name a standby gets unless it is given one.
pub const STANDBY_NAME_DEFAULT: &str = "tally_standby";
/// A standby's name is also its replication slot's, which PostgreSQL limits to 63 bytes.
pub const STANDBY_NAME_LEN_MAX: usize = 63;
/// How long a new standby may take to stream from its primary, and then to be its synchronous
/// standby.
pub const REPLICATION_TIMEOUT_SECS: u64 = 60;
/// How long a promotion may take until the server accepts writes.
pub const PROMOTE_TIMEOUT_SECS: u64 = 60;
/// How often replication and promotion are looked at while waiting for them.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// The file that makes PostgreSQL start a data directory as a standby.
const STANDBY_SIGNAL: &str = "standby.signal";
/// Where ALTER SYSTEM and `pg_basebackup` keep settings; the standby's own settings go there.
const AUTO_CONF: &str = "postgresql.auto.conf";
/// Settings of the primary's copy that a standby must not keep, or sets itself.
const STANDBY_OWN_SETTINGS: [&str; 3] = ["synchronous_standby_names", "primary_conninfo", "primary_slot_name"];

/// How a new standby is named and whether its primary waits for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StandbyOptions {
    /// Its `application_name` on the primary and the name of its replication slot: 1 to
    /// `STANDBY_NAME_LEN_MAX` lowercase ASCII letters, digits and underscores.
    pub name: String,
    /// Name it in the primary's `synchronous_standby_names`, so that every COMMIT on the primary
    /// waits until this standby has flushed it. `false`: an asynchronous replica (for reads).
    pub synchronous: bool,
}

impl StandbyOptions {
    /// A synchronous standby called `name`.
    pub fn synchronous(name: impl Into<String>) -> StandbyOptions {
        StandbyOptions { name: name.into(), synchronous: true }
    }

    /// An asynchronous replica called `name`: the primary does not wait for it.
    pub fn asynchronous(name: impl Into<String>) -> StandbyOptions {
        StandbyOptions { name: name.into(), synchronous: false }
    }
}

/// A step of [`EmbeddedPg::create_standby`], in plain words (its `Display`), for progress output.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StandbyStep {
    /// An inactive replication slot of the same name, left by an earlier standby, was dropped.
    DroppedSlot { slot: String },
    /// `pg_basebackup` is copying the primary's data directory.
    Copying { primary: PathBuf, slot: String },
    /// The copy is complete.
    Copied { elapsed: Duration },
    /// The standby server is starting, in recovery.
    Starting,
    /// The primary shows the standby streaming.
    Streaming,
    /// The primary names the standby in `synchronous_standby_names`, and reports it as `sync`.
    Synchronous { name: String },
}

impl fmt::Display for StandbyStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StandbyStep::DroppedSlot { slot } => {
                write!(f, "dropped the unused replication slot {slot} that an earlier standby left on the primary")
            }
            StandbyStep::Copying { primary, slot } => write!(
                f,
                "copying the primary's data from {} with pg_basebackup (replication slot {slot})",
                primary.display()
            ),
            StandbyStep::Copied { elapsed } => write!(f, "copied in {:.1} s", elapsed.as_secs_f64()),
            StandbyStep::Starting => write!(f, "starting the standby"),
            StandbyStep::Streaming => write!(f, "the standby streams the primary's changes"),
            StandbyStep::Synchronous { name } => write!(
                f,
                "the primary now answers every COMMIT only once this standby has it \
                 (synchronous_standby_names = '{name}')"
            ),
        }
    }
}

/// What [`EmbeddedPg::create_standby`] made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StandbyReport {
    pub name: String,
    pub synchronous: bool,
    /// How long `pg_basebackup` took.
    pub copy_time: Duration,
    /// From the start until the standby streamed (and, if synchronous, was the primary's
    /// synchronous standby).
    pub total_time: Duration,
}

/// What [`EmbeddedPg::promote`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PromoteReport {
    /// How long `pg_ctl promote` took.
    pub promote_time: Duration,
    /// From the start until the server accepted writes.
    pub writable_after: Duration,
}

impl EmbeddedPg {
    /// Whether the data directory is a standby's (`standby.signal`): [`start`](Self::start)
    /// then starts it in recovery, following its primary.
    pub fn is_standby(&self) -> bool {
        self.data_dir().join(STANDBY_SIGNAL).exists()
    }

    /// Makes `standby` (a new or empty data directory) a streaming replica of this running
    /// primary, and starts it: `pg_basebackup` through a replication slot named
    /// `options.name`, `standby.signal`, `primary_conninfo` with `application_name` =
    /// `options.name`. Synchronous, the primary then names it in `synchronous_standby_names`
    /// (ALTER SYSTEM and a reload) and this returns once the primary reports it `sync`.
    /// `progress` hears of each step as it happens.
    ///
    /// Refused: a primary that is not running or is a standby itself, a `standby` directory
    /// that holds files, a slot of that name in use, and a synchronous standby when the primary
    /// already waits for a different one.
    pub fn create_standby(
        &self,
        standby: &EmbeddedPg,
        options: &StandbyOptions,
        progress: &mut dyn FnMut(&StandbyStep),
    ) -> Result<StandbyReport, PgError> {
        let started = Instant::now();
        let name = options.name.as_str();
        validate_name(name)?;
        if !self.is_running()? {
            return Err(PgError::NotRunning { data_dir: self.data_dir().to_path_buf() });
        }
        if self.is_standby() {
            return Err(PgError::IsStandby { data_dir: self.data_dir().to_path_buf() });
        }
        self.check_data_version()?;
        if !dir_is_empty(standby.data_dir())? {
            return Err(PgError::DataDirNotEmpty { data_dir: standby.data_dir().to_path_buf() });
        }
        if options.synchronous {
            let existing = self.query("SHOW synchronous_standby_names")?;
            if !existing.is_empty() && !names_only(&existing, name) {
                return Err(PgError::SynchronousStandbyExists { data_dir: self.data_dir().to_path_buf(), existing });
            }
        }
        // The name is checked above to be lowercase letters, digits and underscores: it can
        // stand in SQL text as it is.
        match self.query(&format!("SELECT active FROM pg_replication_slots WHERE slot_name = '{name}'"))?.as_str() {
            "" => {}
            "f" => {
                self.query(&format!("SELECT pg_drop_replication_slot('{name}')"))?;
                progress(&StandbyStep::DroppedSlot { slot: name.to_owned() });
            }
            _ => {
                return Err(PgError::SlotActive { data_dir: self.data_dir().to_path_buf(), name: name.to_owned() });
            }
        }

        prepare_standby_dir(standby)?;
        progress(&StandbyStep::Copying { primary: self.data_dir().to_path_buf(), slot: name.to_owned() });
        let copy_started = Instant::now();
        let conninfo = format!(
            "host={} port={PORT} user={SUPERUSER} application_name={name}",
            conninfo_value(&self.socket_dir().to_string_lossy())
        );
        let mut backup = standby.server_command("pg_basebackup")?;
        backup.arg("-D").arg(standby.data_dir());
        // -X stream: the WAL written during the copy comes along; -C -S: through a new slot of
        // the standby's name; -c fast: checkpoint now instead of waiting for the next one; -w:
        // never prompt for a password.
        backup.args(["-d", &conninfo, "-X", "stream", "-C", "-S", name, "-c", "fast", "-w"]);
        if let Err(error) = run_ok(&mut backup) {
            // pg_basebackup removed what it copied; a slot it created would hold WAL forever.
            let _ = self.query(&format!(
                "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots \
                 WHERE slot_name = '{name}' AND NOT active"
            ));
            return Err(error);
        }
        let copy_time = copy_started.elapsed();
        progress(&StandbyStep::Copied { elapsed: copy_time });
        remove_primary_leftovers(standby.data_dir())?;
        write_standby_settings(standby, &conninfo, name)?;

        progress(&StandbyStep::Starting);
        standby.start()?;
        let state = format!("SELECT state FROM pg_stat_replication WHERE application_name = '{name}'");
        self.wait_for("the standby streaming from the primary", REPLICATION_TIMEOUT_SECS, &state, |s| {
            s == "streaming"
        })?;
        progress(&StandbyStep::Streaming);
        if options.synchronous {
            let mut alter = self.psql_command("postgres");
            // Two commands: ALTER SYSTEM may not run inside the transaction block one -c makes.
            alter.args(["-q", "-v", "ON_ERROR_STOP=1", "-c"]);
            alter.arg(format!("ALTER SYSTEM SET synchronous_standby_names = '{name}'"));
            alter.args(["-c", "SELECT pg_reload_conf()"]);
            run_ok(&mut alter)?;
            let sync = format!("SELECT sync_state FROM pg_stat_replication WHERE application_name = '{name}'");
            self.wait_for("the primary reporting the standby synchronous", REPLICATION_TIMEOUT_SECS, &sync, |s| {
                s == "sync"
            })?;
            progress(&StandbyStep::Synchronous { name: name.to_owned() });
        }
        tracing::info!(primary = %self.data_dir().display(), standby = %standby.data_dir().display(), name,
            synchronous = options.synchronous, elapsed_ms = started.elapsed().as_millis(), "created a standby");
        Ok(StandbyReport {
            name: name.to_owned(),
            synchronous: options.synchronous,
            copy_time,
            total_time: started.elapsed(),
        })
    }

    /// Promotes this standby to primary (`pg_ctl promote`), starting it first if it is not
    /// running, and returns once it accepts writes. Its former primary must never run as a
    /// primary again: make it a standby of this one instead (a new copy).
    pub fn promote(&self) -> Result<PromoteReport, PgError> {
        if !self.is_standby() {
            return Err(PgError::NotStandby { data_dir: self.data_dir().to_path_buf() });
        }
        self.start()?;
        let started = Instant::now();
        let mut pg_ctl = self.pg_ctl("promote")?;
        pg_ctl.args(["-w", "-t", &PROMOTE_TIMEOUT_SECS.to_string()]);
        run_ok(&mut pg_ctl)?;
        let promote_time = started.elapsed();
        let writable = "SELECT pg_is_in_recovery()::text || ' ' || current_setting('transaction_read_only')";
        self.wait_for("the promoted server accepting writes", PROMOTE_TIMEOUT_SECS, writable, |s| s == "false off")?;
        let writable_after = started.elapsed();
        tracing::info!(data_dir = %self.data_dir().display(), elapsed_ms = writable_after.as_millis(), "promoted");
        Ok(PromoteReport { promote_time, writable_after })
    }

    /// One value from the server (`psql -At`, database `postgres`), trimmed; empty for no row.
    fn query(&self, sql: &str) -> Result<String, PgError> {
        let mut psql = self.psql_command("postgres");
        psql.args(["-At", "-v", "ON_ERROR_STOP=1", "-c", sql]);
        Ok(run_ok(&mut psql)?.trim().to_owned())
    }

    /// Polls `sql` until `done` accepts its value, for at most `secs`.
    fn wait_for(&self, what: &'static str, secs: u64, sql: &str, done: impl Fn(&str) -> bool) -> Result<(), PgError> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let last = match self.query(sql) {
                Ok(value) if done(&value) => return Ok(()),
                Ok(value) => format!("last seen: {value:?}"),
                Err(error) => error.to_string(),
            };
            if Instant::now() >= deadline {
                return Err(PgError::ReplicationTimeout { what, secs, detail: last });
            }
            sleep(POLL_INTERVAL);
        }
    }
}

/// A standby's name is its slot's name and its `application_name`, and it stands in SQL text
/// and in settings unquoted: lowercase ASCII letters, digits and underscores only.
fn validate_name(name: &str) -> Result<(), PgError> {
    let valid = (1..=STANDBY_NAME_LEN_MAX).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if valid { Ok(()) } else { Err(PgError::StandbyNameInvalid { name: name.to_owned() }) }
}

/// Whether `synchronous_standby_names` names just `name` (possibly double-quoted).
fn names_only(setting: &str, name: &str) -> bool {
    let setting = setting.trim();
    setting == name || setting.strip_prefix('"').and_then(|s| s.strip_suffix('"')) == Some(name)
}

fn dir_is_empty(dir: &Path) -> Result<bool, PgError> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(PgError::io(format!("could not read {}", dir.display()))(e)),
    }
}

/// Creates the standby's data directory, mode 0700, owned by the server user when root.
fn prepare_standby_dir(standby: &EmbeddedPg) -> Result<(), PgError> {
    let dir = standby.data_dir();
    std::fs::create_dir_all(dir).map_err(PgError::io(format!("could not create data directory {}", dir.display())))?;
    if let Some(ids) = standby.server_ids()? {
        check_traversable(dir, ids)?;
        chown_recursive(dir, ids)?;
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(PgError::io(format!("could not chmod {}", dir.display())))
}

/// The copy carries files of the primary's running server when its socket lives in its data
/// directory: the socket's lock file (the standby would refuse to start) and the server log.
fn remove_primary_leftovers(dir: &Path) -> Result<(), PgError> {
    let entries = std::fs::read_dir(dir).map_err(PgError::io(format!("could not read {}", dir.display())))?;
    for entry in entries {
        let entry = entry.map_err(PgError::io(format!("could not read {}", dir.display())))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if (name.starts_with(".s.PGSQL.") && name.ends_with(".lock")) || name == LOG_FILE {
            std::fs::remove_file(entry.path())
                .map_err(PgError::io(format!("could not remove {}", entry.path().display())))?;
        }
    }
    Ok(())
}

/// Writes the standby's settings into its `postgresql.auto.conf` and creates `standby.signal`.
/// The copied `synchronous_standby_names` goes: it names the primary's standbys (this one
/// among them), and kept, it would make this standby, once promoted, wait at every COMMIT for
/// a standby it does not have.
fn write_standby_settings(standby: &EmbeddedPg, conninfo: &str, name: &str) -> Result<(), PgError> {
    let dir = standby.data_dir();
    let auto_conf = dir.join(AUTO_CONF);
    let copied = std::fs::read_to_string(&auto_conf).unwrap_or_default();
    let mut text = without_settings(&copied, &STANDBY_OWN_SETTINGS);
    text.push_str(&format!("primary_conninfo = {}\n", conf_literal(conninfo)));
    text.push_str(&format!("primary_slot_name = {}\n", conf_literal(name)));
    std::fs::write(&auto_conf, text).map_err(PgError::io(format!("could not write {}", auto_conf.display())))?;
    let signal = dir.join(STANDBY_SIGNAL);
    std::fs::write(&signal, "").map_err(PgError::io(format!("could not write {}", signal.display())))?;
    if let Some(ids) = standby.server_ids()? {
        chown_recursive(&auto_conf, ids)?;
        chown_recursive(&signal, ids)?;
    }
    Ok(())
}

/// `postgresql.auto.conf` text without the lines that set any of `names`.
fn without_settings(text: &str, names: &[&str]) -> String {
    let mut kept = String::with_capacity(text.len());
    for line in text.lines() {
        let key = line.split('=').next().unwrap_or("").trim();
        if !names.contains(&key) {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    kept
}

/// A string literal of a PostgreSQL configuration file: single-quoted, quotes doubled, and
/// backslashes doubled (the file's strings take backslash escapes).
fn conf_literal(value: &str) -> String {
    format!("'{}'", value.replace('\\', r"\\").replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_plain_lowercase_identifiers() {
        for good in ["tally_standby", "b", "replica_2", &"x".repeat(STANDBY_NAME_LEN_MAX)] {
            assert!(validate_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Standby", "a-b", "a b", "a'b", "é", &"x".repeat(STANDBY_NAME_LEN_MAX + 1)] {
            assert!(matches!(validate_name(bad), Err(PgError::StandbyNameInvalid { .. })), "{bad}");
        }
    }

    #[test]
    fn a_setting_naming_only_this_standby_is_recognised() {
        assert!(names_only("tally_standby", "tally_standby"));
        assert!(names_only("\"tally_standby\"", "tally_standby"));
        assert!(!names_only("other", "tally_standby"));
        assert!(!names_only("FIRST 1 (tally_standby, other)", "tally_standby"));
        assert!(!names_only("*", "tally_standby"));
    }

    #[test]
    fn the_standby_drops_the_primary_s_own_settings() {
        let copied = "# Do not edit this file manually!\nsynchronous_standby_names = 'b'\n\
                      shared_buffers = '1GB'\nprimary_conninfo = 'host=x'\nprimary_slot_name='s'\n";
        let kept = without_settings(copied, &STANDBY_OWN_SETTINGS);
        assert_eq!(kept, "# Do not edit this file manually!\nshared_buffers = '1GB'\n");
    }

    #[test]
    fn configuration_literals_escape_quotes_and_backslashes() {
        assert_eq!(conf_literal("host=/a port=5432"), "'host=/a port=5432'");
        assert_eq!(conf_literal(r"host='/a b\c'"), r"'host=''/a b\\c'''");
    }

    #[test]
    fn an_empty_or_missing_directory_takes_a_standby() {
        let dir = crate::test_support::TempDir::new("standby-dir");
        assert!(dir_is_empty(dir.path()).unwrap());
        assert!(dir_is_empty(&dir.path().join("missing")).unwrap());
        std::fs::write(dir.path().join("PG_VERSION"), "18\n").unwrap();
        assert!(!dir_is_empty(dir.path()).unwrap());
    }

    #[test]
    fn leftovers_of_the_primary_s_server_are_removed() {
        let dir = crate::test_support::TempDir::new("leftovers");
        for file in [".s.PGSQL.5432.lock", LOG_FILE, "PG_VERSION", "postgresql.conf"] {
            std::fs::write(dir.path().join(file), "x").unwrap();
        }
        remove_primary_leftovers(dir.path()).unwrap();
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["PG_VERSION", "postgresql.conf"]);
    }
}
