//! Locating PostgreSQL server binaries (`postgres`, `initdb`, `pg_ctl`, ...).

use std::path::{Path, PathBuf};

use crate::PgError;
use crate::process::{output, pg_command};

/// Oldest PostgreSQL major version Tally works with, when named explicitly (`TALLY_PG_BIN`,
/// `TALLY_PG_HOME`).
pub const MIN_MAJOR: u32 = 15;
/// Oldest major version the automatic search accepts: the embedded server is PostgreSQL 18 by
/// default, and an older install that happens to be on the machine (Debian's, `pg_config`'s) is
/// never picked silently in its place.
pub const AUTO_MIN_MAJOR: u32 = 18;

/// Where `scripts/install-pg.sh` puts the binaries, relative to the repository.
const LOCAL_INSTALL_BIN: &str = ".pg18/pginstall/bin";
/// Where `$TALLY_PG_HOME` keeps the binaries.
const HOME_INSTALL_BIN: &str = "pginstall/bin";
/// Debian/Ubuntu layout: `/usr/lib/postgresql/<major>/bin`.
const DEBIAN_PG_ROOT: &str = "/usr/lib/postgresql";

/// A directory of PostgreSQL binaries and their major version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PgBinaries {
    pub bin_dir: PathBuf,
    pub version_major: u32,
}

impl PgBinaries {
    /// Uses the binaries in `bin_dir`, checking `postgres` is there and new enough.
    pub fn from_bin_dir(bin_dir: impl Into<PathBuf>) -> Result<Self, PgError> {
        let bin_dir = bin_dir.into();
        let bins = probe(&bin_dir)?.ok_or_else(|| PgError::NoBinaries { searched: bin_dir.display().to_string() })?;
        require_supported(bins)
    }

    /// Path of one program in the bin dir, e.g. `program("psql")`.
    pub fn program(&self, name: &str) -> PathBuf {
        self.bin_dir.join(name)
    }
}

/// Finds PostgreSQL ≥ 15 binaries, in this order:
///
/// 1. `$TALLY_PG_BIN` (a bin directory; an error if it holds no `postgres`);
/// 2. `$TALLY_PG_HOME/pginstall/bin` (likewise strict);
/// 3. `<dir>/.pg18/pginstall/bin` for every `<dir>` from the current directory
///    upwards, then from the directory of the running executable upwards;
/// 4. `pg_config --bindir`, if `pg_config` is on `PATH`;
/// 5. `/usr/lib/postgresql/<major>/bin`, newest major first.
///
/// Automatic candidates older than `AUTO_MIN_MAJOR` (18) are skipped; if only such were found
/// the error says so. Configured directories may hold any version from `MIN_MAJOR` (15).
pub fn find_binaries() -> Result<PgBinaries, PgError> {
    Search::from_env().find()
}

/// Inputs of the search, separated from the process environment for testing.
#[derive(Debug, Default)]
struct Search {
    pg_bin: Option<PathBuf>,
    pg_home: Option<PathBuf>,
    /// Directories to walk upwards from, looking for `.pg18/`.
    start_dirs: Vec<PathBuf>,
    /// The `pg_config` program to ask, if any.
    pg_config: Option<PathBuf>,
    /// Parent of `<major>/bin` directories.
    system_root: PathBuf,
}

impl Search {
    fn from_env() -> Self {
        let non_empty = |var| std::env::var_os(var).filter(|v| !v.is_empty()).map(PathBuf::from);
        let exe_dir = std::env::current_exe().ok().and_then(|exe| exe.parent().map(Path::to_path_buf));
        Search {
            pg_bin: non_empty("TALLY_PG_BIN"),
            pg_home: non_empty("TALLY_PG_HOME"),
            start_dirs: std::env::current_dir().ok().into_iter().chain(exe_dir).collect(),
            pg_config: Some(PathBuf::from("pg_config")),
            system_root: PathBuf::from(DEBIAN_PG_ROOT),
        }
    }

    fn find(&self) -> Result<PgBinaries, PgError> {
        if let Some(dir) = &self.pg_bin {
            return configured("TALLY_PG_BIN", dir, "it must name a PostgreSQL bin directory");
        }
        if let Some(home) = &self.pg_home {
            let hint =
                "expected <TALLY_PG_HOME>/pginstall/bin/postgres; run scripts/install-pg.sh with TALLY_PG_HOME set";
            return configured("TALLY_PG_HOME", &home.join(HOME_INSTALL_BIN), hint);
        }
        let candidates = self.candidates();
        let mut too_old: Option<PgBinaries> = None;
        let mut first_error = None;
        for dir in &candidates {
            match probe(dir) {
                Ok(Some(bins)) if bins.version_major >= AUTO_MIN_MAJOR => return Ok(bins),
                Ok(Some(old)) => {
                    if too_old.as_ref().is_none_or(|t| old.version_major > t.version_major) {
                        too_old = Some(old);
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "skipping PostgreSQL candidate");
                    first_error.get_or_insert(e);
                }
            }
        }
        Err(match (too_old, first_error) {
            (Some(old), _) => PgError::TooOld { bin_dir: old.bin_dir, major: old.version_major, min: AUTO_MIN_MAJOR },
            (None, Some(e)) => e,
            (None, None) => PgError::NoBinaries { searched: describe_search(&candidates) },
        })
    }

    /// Automatic candidate bin dirs in priority order, without duplicates.
    fn candidates(&self) -> Vec<PathBuf> {
        let local = self.start_dirs.iter().flat_map(|start| start.ancestors().map(|dir| dir.join(LOCAL_INSTALL_BIN)));
        let pg_config = self.pg_config.as_deref().and_then(pg_config_bindir);
        let system = system_bin_dirs(&self.system_root);
        let mut out: Vec<PathBuf> = Vec::new();
        for dir in local.chain(pg_config).chain(system) {
            if !out.contains(&dir) {
                out.push(dir);
            }
        }
        out
    }
}

/// A bin dir named by an environment variable must work: silently falling
/// back to some other install would hide the misconfiguration.
fn configured(var: &'static str, dir: &Path, hint: &'static str) -> Result<PgBinaries, PgError> {
    match probe(dir)? {
        Some(bins) => require_supported(bins),
        None => Err(PgError::BadConfiguredDir { var, path: dir.to_path_buf(), hint }),
    }
}

fn require_supported(bins: PgBinaries) -> Result<PgBinaries, PgError> {
    if bins.version_major >= MIN_MAJOR {
        return Ok(bins);
    }
    Err(PgError::TooOld { bin_dir: bins.bin_dir, major: bins.version_major, min: MIN_MAJOR })
}

/// `Ok(None)` if `dir` has no `postgres`; otherwise its version.
fn probe(dir: &Path) -> Result<Option<PgBinaries>, PgError> {
    let postgres = dir.join("postgres");
    if !postgres.is_file() {
        return Ok(None);
    }
    let out = output(pg_command(dir, "postgres").arg("--version"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let major = parse_major(&text).ok_or_else(|| PgError::VersionUnparsable {
        program: postgres,
        output: format!("{}{}", text, String::from_utf8_lossy(&out.stderr)),
    })?;
    Ok(Some(PgBinaries { bin_dir: dir.to_path_buf(), version_major: major }))
}

/// Major version from `postgres --version` output, e.g.
/// `postgres (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)` → 15,
/// `postgres (PostgreSQL) 18beta1` → 18.
pub(crate) fn parse_major(version_output: &str) -> Option<u32> {
    let version = version_output.split_once("(PostgreSQL)").map(|(_, rest)| rest)?.trim_start();
    let digits: String = version.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// `pg_config --bindir`, if pg_config runs (it is often not on PATH).
fn pg_config_bindir(pg_config: &Path) -> Option<PathBuf> {
    let out = std::process::Command::new(pg_config)
        .arg("--bindir")
        .env("LC_ALL", "C")
        .output()
        .ok()
        .filter(|out| out.status.success())?;
    let dir = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (!dir.is_empty()).then(|| PathBuf::from(dir))
}

/// `<root>/<major>/bin` directories, newest major first.
fn system_bin_dirs(root: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut versions: Vec<(u32, PathBuf)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
        .collect();
    versions.sort_by_key(|(major, _)| std::cmp::Reverse(*major));
    versions.into_iter().map(|(_, dir)| dir).collect()
}

fn describe_search(candidates: &[PathBuf]) -> String {
    let mut places = vec!["TALLY_PG_BIN, TALLY_PG_HOME (unset)".to_owned()];
    places.extend(candidates.iter().map(|d| d.display().to_string()));
    places.push("pg_config on PATH".to_owned());
    places.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{TempDir, fake_postgres, lock_exec, write_script};

    #[test]
    fn parses_version_output() {
        assert_eq!(parse_major("postgres (PostgreSQL) 18.6\n"), Some(18));
        assert_eq!(parse_major("postgres (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)"), Some(15));
        assert_eq!(parse_major("postgres (PostgreSQL) 18beta1"), Some(18));
        assert_eq!(parse_major("postgres (PostgreSQL) 9.6.24"), Some(9));
        assert_eq!(parse_major("postgres 18.6"), None);
        assert_eq!(parse_major(""), None);
    }

    /// A tree with a fake install in every place the search looks.
    struct Fixture {
        tmp: TempDir,
    }

    impl Fixture {
        fn new() -> Self {
            let tmp = TempDir::new("search");
            let root = tmp.path();
            fake_postgres(&root.join("explicit/bin"), "16.1");
            fake_postgres(&root.join("home/pginstall/bin"), "17.2");
            fake_postgres(&root.join("repo/.pg18/pginstall/bin"), "18.6");
            fake_postgres(&root.join("exe-repo/.pg18/pginstall/bin"), "18.5");
            fake_postgres(&root.join("pgconfig/bin"), "15.3");
            fake_postgres(&root.join("system/9/bin"), "9.6.24");
            fake_postgres(&root.join("system/16/bin"), "16.4");
            fake_postgres(&root.join("system/17/bin"), "17.6");
            let bindir = root.join("pgconfig/bin");
            write_script(&root.join("pgconfig/pg_config"), &format!("echo {}", bindir.display()));
            std::fs::create_dir_all(root.join("repo/crates/x")).unwrap();
            std::fs::create_dir_all(root.join("exe-repo/target/debug")).unwrap();
            std::fs::create_dir_all(root.join("empty")).unwrap();
            Fixture { tmp }
        }

        fn path(&self, rel: &str) -> PathBuf {
            self.tmp.path().join(rel)
        }

        /// A search where every source is present.
        fn full_search(&self) -> Search {
            Search {
                pg_bin: Some(self.path("explicit/bin")),
                pg_home: Some(self.path("home")),
                start_dirs: vec![self.path("repo/crates/x"), self.path("exe-repo/target/debug")],
                pg_config: Some(self.path("pgconfig/pg_config")),
                system_root: self.path("system"),
            }
        }
    }

    fn found(search: &Search) -> (PathBuf, u32) {
        let bins = search.find().expect("binaries should be found");
        (bins.bin_dir, bins.version_major)
    }

    #[test]
    fn search_order_peels_off_one_source_at_a_time() {
        let _guard = lock_exec();
        let fx = Fixture::new();
        let mut search = fx.full_search();
        assert_eq!(found(&search), (fx.path("explicit/bin"), 16));
        search.pg_bin = None;
        assert_eq!(found(&search), (fx.path("home/pginstall/bin"), 17));
        search.pg_home = None;
        assert_eq!(found(&search), (fx.path("repo/.pg18/pginstall/bin"), 18));
        search.start_dirs.remove(0);
        assert_eq!(found(&search), (fx.path("exe-repo/.pg18/pginstall/bin"), 18));
        search.start_dirs.clear();
        // pg_config's 15 and the system's 16 and 17 are older than 18: never picked by themselves.
        let err = search.find().unwrap_err();
        assert!(matches!(err, PgError::TooOld { major: 17, min: 18, .. }), "{err}");
        search.pg_config = None;
        assert!(matches!(search.find(), Err(PgError::TooOld { major: 17, .. })));
    }

    #[test]
    fn configured_dirs_are_strict() {
        let _guard = lock_exec();
        let fx = Fixture::new();
        let mut search = fx.full_search();
        search.pg_bin = Some(fx.path("empty"));
        let err = search.find().unwrap_err();
        assert!(matches!(err, PgError::BadConfiguredDir { var: "TALLY_PG_BIN", .. }), "{err}");
        search.pg_bin = None;
        search.pg_home = Some(fx.path("empty"));
        let err = search.find().unwrap_err();
        assert!(matches!(err, PgError::BadConfiguredDir { var: "TALLY_PG_HOME", .. }), "{err}");
    }

    #[test]
    fn old_versions_are_rejected_with_a_clear_error() {
        let _guard = lock_exec();
        let fx = Fixture::new();
        std::fs::remove_dir_all(fx.path("system/16")).unwrap();
        std::fs::remove_dir_all(fx.path("system/17")).unwrap();
        let search = Search { system_root: fx.path("system"), ..Search::default() };
        let err = search.find().unwrap_err();
        assert!(matches!(err, PgError::TooOld { major: 9, .. }), "{err}");
        assert!(err.to_string().contains("too old"), "{err}");

        let explicit_old = Search { pg_bin: Some(fx.path("system/9/bin")), ..Search::default() };
        assert!(matches!(explicit_old.find(), Err(PgError::TooOld { .. })));
    }

    #[test]
    fn nothing_found_says_what_to_install() {
        let _guard = lock_exec();
        let fx = Fixture::new();
        let search = Search { start_dirs: vec![fx.path("empty")], system_root: fx.path("empty"), ..Search::default() };
        let message = search.find().unwrap_err().to_string();
        for needle in ["scripts/install-pg.sh", "TALLY_PG_BIN", "postgresql-18"] {
            assert!(message.contains(needle), "{needle} missing from: {message}");
        }
    }
}
