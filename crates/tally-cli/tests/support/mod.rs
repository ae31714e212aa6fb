//! What the CLI tests that run real `tally` processes share: running a command, and a
//! `tally serve` process.
#![allow(dead_code)] // each test file uses its own part

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long `tally serve` may take to announce its address, and to exit on SIGTERM.
pub const SERVE_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs a `tally` command to completion, with no database named by the environment, and
/// returns what it printed and how it exited.
pub fn tally_output(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("TALLY_DATA_DIR")
        .output()
        .expect("run tally")
}

/// Runs a `tally` command to completion and returns its stdout; fails the test on failure.
pub fn tally(args: &[&str]) -> String {
    let out = tally_output(args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "tally {args:?} failed ({}):\n{stdout}\n{stderr}", out.status);
    eprintln!("$ tally {}\n{}{}", args.join(" "), stderr, stdout);
    stdout
}

pub fn path(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 temp path")
}

pub struct Serve {
    pub addr: SocketAddr,
    child: Child,
    stderr: PathBuf,
}

impl Serve {
    /// Starts `tally serve` on `url` with `extra` arguments, its log (at `info`) in `stderr`,
    /// and waits until it announces its address.
    pub fn start(url: &str, extra: &[&str], stderr: PathBuf) -> Serve {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tally"))
            .args(["--database-url", url, "serve", "--listen", "127.0.0.1:0"])
            .args(extra)
            .env_remove("DATABASE_URL")
            .env("TALLY_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("start tally serve");
        let stdout = child.stdout.take().unwrap();
        let (announce, announced) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("Tally serves http://") {
                    let addr = rest.split_whitespace().next().unwrap_or("").to_owned();
                    let _ = announce.send(addr);
                }
            }
        });
        let addr = announced.recv_timeout(SERVE_TIMEOUT).unwrap_or_else(|_| {
            panic!("tally serve announced no address:\n{}", std::fs::read_to_string(&stderr).unwrap_or_default())
        });
        Serve { child, addr: addr.parse().expect("an address"), stderr }
    }

    /// How many lines of its log so far contain `text`.
    pub fn log_lines(&self, text: &str) -> usize {
        std::fs::read_to_string(&self.stderr).unwrap_or_default().lines().filter(|l| l.contains(text)).count()
    }

    pub fn stderr_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// SIGTERM, then it must exit by itself, successfully.
    pub fn stop(mut self) {
        let status = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status().unwrap();
        assert!(status.success());
        let deadline = Instant::now() + SERVE_TIMEOUT;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "tally serve did not exit on SIGTERM:\n{}", self.stderr_tail());
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(status.success(), "tally serve exited with {status}:\n{}", self.stderr_tail());
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
