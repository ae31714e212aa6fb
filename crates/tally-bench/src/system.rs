//! What the machine spent: CPU time of this process and of the PostgreSQL server, and memory.
//! Read from /proc (Linux), so the figures cover every thread and every backend process.

use std::fs;

/// Clock ticks per second for /proc's utime/stime (the kernel's USER_HZ, 100 on Linux).
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU seconds (user + system) used so far by a process; with `children`, also by its reaped
/// children (PostgreSQL backends that already exited).
fn cpu_seconds(pid: u32, children: bool) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let field = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    // utime, stime, cutime, cstime are fields 14-17 of stat, i.e. 11-14 after the name.
    let own = field(11) + field(12);
    let reaped = if children { field(13) + field(14) } else { 0.0 };
    Some((own + reaped) / TICKS_PER_SECOND)
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

fn status_kib(pid: u32, key: &str) -> u64 {
    let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else { return 0 };
    status
        .lines()
        .find_map(|line| line.strip_prefix(key))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0)
}

/// The PostgreSQL server behind a backend: the postmaster and its current children.
pub struct PgServer {
    postmaster: u32,
}

impl PgServer {
    /// Finds the postmaster from one backend's pid. `None` when the server is on another
    /// machine (or in a container) and /proc cannot see it.
    pub fn from_backend(backend_pid: u32) -> Option<PgServer> {
        let postmaster = parent_of(backend_pid)?;
        let comm = fs::read_to_string(format!("/proc/{postmaster}/comm")).ok()?;
        comm.trim().starts_with("postgres").then_some(PgServer { postmaster })
    }

    fn processes(&self) -> Vec<u32> {
        let mut pids = vec![self.postmaster];
        if let Ok(entries) = fs::read_dir("/proc") {
            for entry in entries.flatten() {
                if let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok())
                    && parent_of(pid) == Some(self.postmaster)
                {
                    pids.push(pid);
                }
            }
        }
        pids
    }

    /// CPU seconds of the whole server so far, including backends that have exited.
    pub fn cpu_seconds(&self) -> f64 {
        let postmaster = cpu_seconds(self.postmaster, true).unwrap_or(0.0);
        let children: f64 = self.processes().iter().skip(1).filter_map(|pid| cpu_seconds(*pid, false)).sum();
        postmaster + children
    }

    /// Resident memory of the server in MiB: private memory of every process, plus the largest
    /// shared mapping once (shared buffers are mapped by every backend).
    pub fn rss_mib(&self) -> f64 {
        let processes = self.processes();
        let private: u64 = processes.iter().map(|pid| status_kib(*pid, "RssAnon:")).sum();
        let shared = processes.iter().map(|pid| status_kib(*pid, "RssShmem:")).max().unwrap_or(0);
        (private + shared) as f64 / 1024.0
    }
}

/// CPU seconds this process has used so far.
pub fn own_cpu_seconds() -> f64 {
    cpu_seconds(std::process::id(), false).unwrap_or(0.0)
}

/// This process's resident memory now, and its peak, in MiB.
pub fn own_rss_mib() -> (f64, f64) {
    let pid = std::process::id();
    (status_kib(pid, "VmRSS:") as f64 / 1024.0, status_kib(pid, "VmHWM:") as f64 / 1024.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_figures() {
        // Burn CPU until the kernel has counted a tick of it (ticks are 10 ms), within a bound;
        // `black_box` keeps the optimiser from folding the loop away.
        let started = std::time::Instant::now();
        while own_cpu_seconds() == 0.0 && started.elapsed() < std::time::Duration::from_secs(10) {
            let spin: u64 = (0..1_000_000u64).fold(0, |a, b| std::hint::black_box(a.wrapping_add(b * b)));
            assert!(spin > 0);
        }
        assert!(own_cpu_seconds() > 0.0);
        let (now, peak) = own_rss_mib();
        assert!(now > 0.0 && peak >= now);
    }
}
