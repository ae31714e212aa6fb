//! Spawning PostgreSQL programs: a clean environment, and dropping root.

use std::ffi::OsStr;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Output};
use std::thread::sleep;
use std::time::Duration;

use crate::PgError;

/// System user the server runs as when we are root (PostgreSQL refuses root).
pub const SERVER_USER: &str = "tally-pg";

/// `useradd` may lose a race on /etc/passwd's lock with a concurrent caller.
const USERADD_ATTEMPTS: u32 = 5;
const USERADD_RETRY_DELAY: Duration = Duration::from_millis(200);

/// `useradd` exit code for "user already exists".
const USERADD_EXISTS: i32 = 9;

/// Numeric identity of the unprivileged server user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ids {
    pub uid: u32,
    pub gid: u32,
}

/// A `Command` for `bin_dir/program` with an environment that cannot leak
/// the caller's libpq settings into it.
pub(crate) fn pg_command(bin_dir: &Path, program: &str) -> Command {
    let mut cmd = Command::new(bin_dir.join(program));
    // Inherited PGDATA, PGHOST, PGPORT, PGUSER, PGOPTIONS, ... would silently
    // redirect initdb/pg_ctl/psql to another cluster or change its settings.
    for (key, _) in std::env::vars_os() {
        if key.as_encoded_bytes().starts_with(b"PG") {
            cmd.env_remove(key);
        }
    }
    // Locale-independent messages (we parse some) and no locale lookups.
    cmd.env("LC_ALL", "C");
    // The wheel build's libpq clients (initdb, psql, pg_isready) link against
    // a vendored libpq that scripts/install-pg.sh puts in ../lib; their RPATH
    // only works inside a Python site-packages tree. Harmless for other installs.
    let lib_dir = bin_dir.join("../lib");
    if lib_dir.is_dir() {
        cmd.env("LD_LIBRARY_PATH", prepend_path(&lib_dir, std::env::var_os("LD_LIBRARY_PATH")));
    }
    cmd
}

fn prepend_path(dir: &Path, existing: Option<std::ffi::OsString>) -> std::ffi::OsString {
    let mut value = dir.as_os_str().to_owned();
    if let Some(rest) = existing.filter(|v| !v.is_empty()) {
        value.push(":");
        value.push(rest);
    }
    value
}

/// Makes `cmd` run as `ids` (std also drops supplementary groups when root).
pub(crate) fn run_as(cmd: &mut Command, ids: Option<Ids>) {
    if let Some(ids) = ids {
        // The caller's cwd (e.g. /root) may be unreadable for the server user,
        // and PostgreSQL programs look at their cwd when locating themselves.
        cmd.uid(ids.uid).gid(ids.gid).current_dir("/");
    }
}

/// Renders a command for error messages.
pub(crate) fn describe(cmd: &Command) -> String {
    let mut parts = vec![cmd.get_program().to_string_lossy().into_owned()];
    parts.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    parts.join(" ")
}

/// Runs `cmd` to completion, capturing its output.
pub(crate) fn output(cmd: &mut Command) -> Result<Output, PgError> {
    cmd.output().map_err(PgError::io(format!("could not run `{}`", describe(cmd))))
}

/// Runs `cmd` and fails unless it exits successfully; returns its stdout.
pub(crate) fn run_ok(cmd: &mut Command) -> Result<String, PgError> {
    let out = output(cmd)?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    Err(PgError::CommandFailed {
        command: describe(cmd),
        status: out.status.to_string(),
        output: combined_output(&out),
    })
}

/// stdout and stderr of a finished command, trimmed, for error messages.
pub(crate) fn combined_output(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    format!("{}\n{}", stdout.trim(), stderr.trim()).trim().to_owned()
}

/// Our effective uid, read from /proc to avoid a libc dependency.
pub(crate) fn current_euid() -> Option<u32> {
    effective_uid(&std::fs::read_to_string("/proc/self/status").ok()?)
}

/// True when running as root.
pub(crate) fn is_root() -> bool {
    current_euid() == Some(0)
}

/// Parses the effective uid (second field) from the `Uid:` line of /proc/self/status.
fn effective_uid(status: &str) -> Option<u32> {
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Looks up (creating it if needed) the unprivileged server user.
pub(crate) fn ensure_server_user() -> Result<Ids, PgError> {
    let mut last_error = String::new();
    for _ in 0..USERADD_ATTEMPTS {
        if let Some(ids) = lookup_user(SERVER_USER) {
            return Ok(ids);
        }
        match create_system_user(SERVER_USER) {
            Ok(()) => continue,
            Err(e) => last_error = e,
        }
        sleep(USERADD_RETRY_DELAY);
    }
    lookup_user(SERVER_USER).ok_or_else(|| PgError::ServerUser { user: SERVER_USER.to_owned(), detail: last_error })
}

fn lookup_user(name: &str) -> Option<Ids> {
    let id = |flag: &str| -> Option<u32> {
        let out = Command::new("id").args([flag, name]).output().ok()?;
        if !out.status.success() {
            return None;
        }
        String::from_utf8_lossy(&out.stdout).trim().parse().ok()
    };
    Some(Ids { uid: id("-u")?, gid: id("-g")? })
}

fn create_system_user(name: &str) -> Result<(), String> {
    tracing::info!(user = name, "creating system user for the PostgreSQL server");
    let out = Command::new("useradd")
        .args(["--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name])
        .output()
        .map_err(|e| format!("could not run useradd: {e}"))?;
    match out.status.code() {
        Some(0) | Some(USERADD_EXISTS) => Ok(()),
        _ => Err(format!("useradd {}: {}", out.status, combined_output(&out))),
    }
}

/// `chown -R uid:gid path`.
pub(crate) fn chown_recursive(path: &Path, ids: Ids) -> Result<(), PgError> {
    let owner = format!("{}:{}", ids.uid, ids.gid);
    run_ok(Command::new("chown").args([OsStr::new("-R"), OsStr::new(&owner), path.as_os_str()]))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_effective_uid() {
        let status = "Name:\tcargo\nUid:\t1000\t0\t0\t0\nGid:\t5\t5\t5\t5\n";
        assert_eq!(effective_uid(status), Some(0));
        assert_eq!(effective_uid("Name:\tx\n"), None);
    }

    #[test]
    fn prepends_library_path() {
        let dir = Path::new("/pg/lib");
        assert_eq!(prepend_path(dir, None), "/pg/lib");
        assert_eq!(prepend_path(dir, Some("".into())), "/pg/lib");
        assert_eq!(prepend_path(dir, Some("/x".into())), "/pg/lib:/x");
    }

    #[test]
    fn clears_inherited_libpq_variables() {
        let cmd = pg_command(Path::new("/nonexistent/bin"), "psql");
        let envs: Vec<_> = cmd.get_envs().collect();
        assert!(envs.contains(&(OsStr::new("LC_ALL"), Some(OsStr::new("C")))));
        for (key, value) in envs {
            if key.as_encoded_bytes().starts_with(b"PG") {
                assert_eq!(value, None, "{key:?} should be removed");
            }
        }
    }
}
