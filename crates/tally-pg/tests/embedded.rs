//! Runs a real PostgreSQL server through `EmbeddedPg`: init, start, query,
//! idempotent start, stop. Uses whatever `find_binaries()` finds (after
//! `scripts/install-pg.sh`: the project-local PostgreSQL 18). Works as root.

use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use tally_pg::{EmbeddedPg, StartOutcome, find_binaries};

/// Removes the data dir (and a separate socket dir) even if the test fails,
/// stopping the server first so no postmaster is left behind.
struct Cleanup<'a>(&'a EmbeddedPg);

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let _ = self.0.stop_immediate();
        let _ = std::fs::remove_dir_all(self.0.data_dir());
        if self.0.socket_dir() != self.0.data_dir() {
            let _ = std::fs::remove_dir_all(self.0.socket_dir());
        }
        if let Some(parent) = self.0.data_dir().parent() {
            let _ = std::fs::remove_dir_all(parent);
        }
    }
}

fn unique_dir(tag: &str) -> PathBuf {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
    std::env::temp_dir().join(format!("tally-pg-{tag}-{}-{nanos}", std::process::id()))
}

fn select_version(pg: &EmbeddedPg) -> String {
    let out = pg.psql_command("postgres").args(["-At", "-c", "select version()"]).output().expect("run psql");
    assert!(out.status.success(), "psql failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The whole lifecycle for a cluster in `data_dir`.
fn lifecycle(data_dir: &Path) {
    let bins = find_binaries().expect("PostgreSQL binaries (run scripts/install-pg.sh)");
    eprintln!("using PostgreSQL {} from {}", bins.version_major, bins.bin_dir.display());
    let major = bins.version_major;
    let pg = EmbeddedPg::new(data_dir, bins);
    let _cleanup = Cleanup(&pg);

    let t = Instant::now();
    assert!(pg.ensure_initialized().expect("initdb"));
    eprintln!("initdb took {:?}", t.elapsed());
    assert!(!pg.ensure_initialized().expect("second ensure_initialized"));

    let t = Instant::now();
    assert_eq!(pg.start().expect("start"), StartOutcome::Started);
    eprintln!("start took {:?}", t.elapsed());

    let status = pg.status().expect("status");
    assert!(status.is_running(), "{status:?}");
    assert!(status.pid.is_some_and(|pid| pid > 0));
    assert_eq!(status.data_version, Some(major));

    let version = select_version(&pg);
    eprintln!("select version() -> {version}");
    assert!(version.starts_with(&format!("PostgreSQL {major}.")), "{version}");
    assert_eq!(pg.start().expect("second start"), StartOutcome::AlreadyRunning);

    let t = Instant::now();
    assert!(pg.stop().expect("stop"));
    eprintln!("stop took {:?}", t.elapsed());
    let status = pg.status().expect("status after stop");
    assert!(!status.is_running(), "{status:?}");
    assert!(!pg.stop().expect("second stop"), "stop when stopped is a no-op");
}

#[test]
fn lifecycle_with_socket_in_data_dir() {
    let data_dir = unique_dir("it").join("data");
    assert_eq!(EmbeddedPg::new(&data_dir, dummy_bins()).socket_dir(), data_dir);
    lifecycle(&data_dir);
    assert!(!data_dir.exists(), "cleanup removes the data dir");
}

/// Data dirs too long for a Unix socket path put the socket under /tmp.
#[test]
fn lifecycle_with_long_data_dir() {
    let data_dir = unique_dir("it-long").join("d".repeat(90));
    let socket_dir = EmbeddedPg::new(&data_dir, dummy_bins()).socket_dir();
    assert_ne!(socket_dir, data_dir);
    lifecycle(&data_dir);
    assert!(!socket_dir.exists(), "cleanup removes the socket dir");
}

fn dummy_bins() -> tally_pg::PgBinaries {
    tally_pg::PgBinaries { bin_dir: PathBuf::from("/nonexistent"), version_major: 18 }
}
