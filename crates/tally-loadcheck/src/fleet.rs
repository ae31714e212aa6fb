//! The `tally serve` child processes of a run: started on loopback port 0, their announced
//! addresses read from stdout, stopped with SIGTERM (SIGKILL after a bound), and killed when
//! dropped, so that no run leaves a server behind, whatever way it ends.
//!
//! Each child's stdout and stderr are drained by a thread of their own: a child whose pipe
//! filled up would block on a log line, and the run would blame Tally for the harness. The last
//! few KiB of stderr are kept for the report.

use crate::LoadError;
use serde::Serialize;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a child may take to announce its address.
pub const ANNOUNCE_TIMEOUT: Duration = Duration::from_secs(60);
/// The end of each child's stderr kept for the report.
pub const STDERR_TAIL_BYTES_MAX: usize = 4_096;
/// How often a stopping child is asked whether it has exited.
const EXIT_POLL_INTERVAL: Duration = Duration::from_millis(20);
/// The line `tally serve` announces itself with, before the address.
const ANNOUNCEMENT: &str = "Tally serves http://";

/// The end of a child's stderr, filled by its drain thread.
type StderrTail = Arc<Mutex<VecDeque<u8>>>;

/// A process's engine figures, from its `/metrics` (`tally_engine_batches_committed`,
/// `tally_engine_reruns`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct EngineFigures {
    /// Batches the engine committed.
    pub batches: u64,
    /// Batches that speculation could not commit (another writer changed an account under
    /// them) and that ran again through the locking path: the fallbacks.
    pub reruns: u64,
}

/// How one process ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcessExit {
    pub index: usize,
    pub addr: String,
    /// Read just before it was stopped; `None` when `/metrics` did not answer.
    pub engine: Option<EngineFigures>,
    /// `exit 0`, `exit 1`, `signal 9`, ...
    pub status: String,
    /// It exited by itself, successfully, within the stop timeout after SIGTERM.
    pub graceful: bool,
    pub stop_ms: u64,
    /// The end of its stderr (warnings and errors it logged).
    pub stderr_tail: String,
}

/// A running `tally serve`.
struct ServeProcess {
    index: usize,
    child: Child,
    addr: SocketAddr,
    stderr_tail: StderrTail,
}

/// The processes of a run.
pub struct Fleet {
    processes: Vec<ServeProcess>,
}

impl Fleet {
    /// Starts `count` servers on the database and waits until each has announced its address.
    pub async fn start(tally_bin: &Path, database_url: &str, count: usize) -> Result<Fleet, LoadError> {
        let mut fleet = Fleet { processes: Vec::with_capacity(count) };
        let mut announcements = Vec::with_capacity(count);
        for index in 0..count {
            let (child, announced, stderr_tail) = spawn(tally_bin, database_url, index)?;
            // Pushed at once, so that a failure below still kills what started.
            fleet.processes.push(ServeProcess { index, child, addr: SocketAddr::from(([0, 0, 0, 0], 0)), stderr_tail });
            announcements.push(announced);
        }
        for (index, announced) in announcements.into_iter().enumerate() {
            let addr = match tokio::time::timeout(ANNOUNCE_TIMEOUT, announced).await {
                Ok(Ok(addr)) => addr,
                Ok(Err(_)) => {
                    let process = &mut fleet.processes[index];
                    let status = process.child.wait().map(|s| s.to_string()).unwrap_or_default();
                    // The stderr thread may still be copying the last lines.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let detail = format!("it exited ({status}) before announcing an address: {}", process.tail());
                    return Err(LoadError::ServeStartFailed { index, detail });
                }
                Err(_) => {
                    let detail = format!("no address announced within {ANNOUNCE_TIMEOUT:?}");
                    return Err(LoadError::ServeStartFailed { index, detail });
                }
            };
            fleet.processes[index].addr = addr;
        }
        Ok(fleet)
    }

    pub fn addrs(&self) -> Vec<SocketAddr> {
        self.processes.iter().map(|p| p.addr).collect()
    }

    /// Sends SIGTERM to every process, waits up to `timeout` for each to exit, and SIGKILLs
    /// the ones that did not.
    pub async fn stop(mut self, timeout: Duration) -> Vec<ProcessExit> {
        let started = Instant::now();
        for process in &self.processes {
            terminate(&process.child);
        }
        let mut exits = Vec::with_capacity(self.processes.len());
        for process in &mut self.processes {
            let status = loop {
                match process.child.try_wait() {
                    Ok(Some(status)) => break Some(status),
                    Ok(None) if started.elapsed() < timeout => tokio::time::sleep(EXIT_POLL_INTERVAL).await,
                    _ => break None,
                }
            };
            let graceful = status.is_some_and(|s| s.success());
            let status = match status {
                Some(status) => status,
                None => {
                    let _ = process.child.kill();
                    match process.child.wait() {
                        Ok(status) => status,
                        Err(error) => panic!("reaping tally serve {}: {error}", process.index),
                    }
                }
            };
            exits.push(ProcessExit {
                index: process.index,
                addr: process.addr.to_string(),
                status: describe(status),
                engine: None,
                graceful,
                stop_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
                stderr_tail: String::new(),
            });
        }
        // The drain threads see end of file once a child is gone; give them a moment.
        tokio::time::sleep(Duration::from_millis(50)).await;
        for (exit, process) in exits.iter_mut().zip(&self.processes) {
            exit.stderr_tail = process.tail();
        }
        exits
    }
}

impl ServeProcess {
    fn tail(&self) -> String {
        let tail = self.stderr_tail.lock().expect("stderr tail lock");
        without_colours(&String::from_utf8_lossy(&tail.iter().copied().collect::<Vec<u8>>()))
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

type Announced = tokio::sync::oneshot::Receiver<SocketAddr>;

fn spawn(tally_bin: &Path, database_url: &str, index: usize) -> Result<(Child, Announced, StderrTail), LoadError> {
    let mut command = Command::new(tally_bin);
    command
        .arg("--database-url")
        .arg(database_url)
        .args(["serve", "--listen", "127.0.0.1:0", "--reconcile-after", "off"])
        .env_remove("DATABASE_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    die_with_parent(&mut command);
    let mut child = command.spawn().map_err(|source| LoadError::Spawn { index, source })?;
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    let (sender, announced) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut sender = Some(sender);
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.strip_prefix(ANNOUNCEMENT)
                && let Some(addr) = rest.split_whitespace().next().and_then(|a| a.parse().ok())
                && let Some(sender) = sender.take()
            {
                let _ = sender.send(addr);
            }
        }
    });
    let stderr_tail = Arc::new(Mutex::new(VecDeque::with_capacity(STDERR_TAIL_BYTES_MAX)));
    let tail = stderr_tail.clone();
    std::thread::spawn(move || {
        let mut stderr = stderr;
        let mut buffer = [0u8; 1_024];
        while let Ok(read) = stderr.read(&mut buffer) {
            if read == 0 {
                break;
            }
            let mut tail = tail.lock().expect("stderr tail lock");
            tail.extend(&buffer[..read]);
            let excess = tail.len().saturating_sub(STDERR_TAIL_BYTES_MAX);
            tail.drain(..excess);
        }
    });
    Ok((child, announced, stderr_tail))
}

/// On Linux the child gets SIGKILL when the thread that started it ends, so that even a run
/// killed with SIGKILL (a CI timeout) leaves no server behind; `Drop` covers every other way.
#[cfg(target_os = "linux")]
fn die_with_parent(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: prctl is async-signal-safe and touches no memory of the parent; it runs in the
    // child between fork and exec, as pre_exec requires.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_command: &mut Command) {}

fn terminate(child: &Child) {
    let pid = libc::pid_t::try_from(child.id()).expect("process ids fit pid_t");
    // SAFETY: kill(2) with a pid we spawned and have not reaped yet, so it names our child.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
}

/// The text without ANSI escape sequences (`ESC [ ... final byte`): Tally's log lines are
/// coloured even when written to a pipe.
fn without_colours(text: &str) -> String {
    let mut plain = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if ('\u{40}'..='\u{7e}').contains(&c) {
                    break;
                }
            }
            continue;
        }
        plain.push(c);
    }
    plain
}

fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        (None, None) => status.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colours_are_removed_from_log_lines() {
        let line = "\u{1b}[2m2026-11-30T06:12:15Z\u{1b}[0m \u{1b}[33m WARN\u{1b}[0m expiry sweep failed";
        assert_eq!(without_colours(line), "2026-11-30T06:12:15Z  WARN expiry sweep failed");
        assert_eq!(without_colours("plain [text]"), "plain [text]");
    }
}
