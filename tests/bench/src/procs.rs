//! The processes under test (OpenIM emulator, imgate, nginx, redis-server) as children of the
//! harness, how their binaries are found, and what the harness reads about them and the machine
//! from /proc: CPU time, memory, open files and their limit, cores, load.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process that is stopped (SIGTERM, then SIGKILL) when dropped.
pub(crate) struct Proc {
    pub(crate) name: String,
    child: Child,
    log: std::path::PathBuf,
}

impl Proc {
    /// Starts `cmd` with stdout and stderr appended to `log`.
    pub(crate) fn spawn(name: &str, mut cmd: Command, log: &Path) -> Result<Proc, String> {
        let out = std::fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(err);
        let child = cmd.spawn().map_err(|e| format!("starting {name} ({:?}): {e}", cmd.get_program()))?;
        Ok(Proc { name: name.to_owned(), child, log: log.to_owned() })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// An error naming the process if it has exited.
    pub(crate) fn check_alive(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(Some(status)) => {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                Err(format!(
                    "{} exited: {status}; last lines of {}:\n{}",
                    self.name,
                    self.log.display(),
                    tail.join("\n")
                ))
            }
            Ok(None) => Ok(()),
            Err(e) => Err(format!("{}: {e}", self.name)),
        }
    }

    /// SIGTERM, up to `grace` to exit, then SIGKILL.
    pub(crate) fn stop(&mut self, grace: Duration) {
        if let Ok(Some(_)) = self.child.try_wait() {
            return;
        }
        let _ = Command::new("kill").arg("-TERM").arg(self.pid().to_string()).status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(3));
    }
}

/// `name` as a path: itself if it names a file (absolute, or relative with a `/`), else the first
/// executable file of that name in a folder of `PATH`, else the first of `fallbacks` that exists.
pub(crate) fn which(name: &str, fallbacks: &[&str]) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if name.contains('/') {
        return executable(Path::new(name)).then(|| Path::new(name).to_owned());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .chain(fallbacks.iter().map(std::path::PathBuf::from))
        .find(|p| executable(p))
}

/// A loopback port nobody listens on right now (bound, then released).
pub(crate) fn free_port() -> Result<u16, String> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

/// Clock ticks per second of /proc/<pid>/stat times (`getconf CLK_TCK`, 100 on Linux).
pub(crate) fn clock_ticks() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

/// The fields of /proc/<pid>/stat after the command name (field 3 = index 0).
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &text[text.rfind(')')? + 2..];
    Some(rest.split_whitespace().map(str::to_owned).collect())
}

/// utime + stime of a process (all its threads), in clock ticks.
pub(crate) fn cpu_ticks(pid: u32) -> u64 {
    stat_fields(pid)
        .map(|f| {
            let n = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            n(11) + n(12) // utime, stime: fields 14 and 15
        })
        .unwrap_or(0)
}

/// The sum of [`cpu_ticks`] over `pids`.
pub(crate) fn cpu_ticks_of(pids: &[u32]) -> u64 {
    pids.iter().map(|&p| cpu_ticks(p)).sum()
}

/// The processes whose parent is `ppid` (nginx's workers).
pub(crate) fn children_of(ppid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| stat_fields(pid).and_then(|f| f.get(1)?.parse::<u32>().ok()) == Some(ppid))
        .collect()
}

/// Resident memory of a process in MiB (VmRSS).
pub(crate) fn rss_mib(pid: u32) -> Option<f64> {
    rss_kib(pid).map(|kib| kib as f64 / 1024.0)
}

/// Resident memory of a process in KiB (VmRSS of /proc/<pid>/status).
pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().trim_end_matches("kB").trim().parse().ok()
}

/// The open-file limit of a process (soft, hard) from its "Max open files" line of
/// /proc/<pid>/limits; `None` when unreadable or "unlimited".
pub(crate) fn open_file_limit(pid: u32) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    parse_open_file_limit(&text)
}

fn parse_open_file_limit(limits: &str) -> Option<(u64, u64)> {
    let rest = limits.lines().find_map(|l| l.strip_prefix("Max open files"))?;
    let mut fields = rest.split_whitespace();
    Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
}

/// File descriptors a process has open (entries of /proc/<pid>/fd).
pub(crate) fn open_fds(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// Raises this process's soft open-file limit to its hard limit (the processes it starts inherit
/// it); returns the limit now in force.
#[allow(clippy::unnecessary_cast)] // `rlim_t` is `u64` on Linux only.
pub(crate) fn raise_open_file_limit() -> Result<u64, String> {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `lim` is a valid, writable rlimit for getrlimit to fill.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(format!("getrlimit: {}", std::io::Error::last_os_error()));
    }
    if lim.rlim_cur < lim.rlim_max {
        let raised = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
        // SAFETY: `raised` is a valid rlimit; a refusal leaves the limit as it was.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
            return Err(format!("setrlimit: {}", std::io::Error::last_os_error()));
        }
        return Ok(lim.rlim_max as u64);
    }
    Ok(lim.rlim_cur as u64)
}

/// The machine the numbers come from.
#[derive(Clone, Debug, serde::Serialize)]
pub(crate) struct Machine {
    pub(crate) cores: u32,
    pub(crate) cpu_model: String,
    pub(crate) loadavg: String,
    pub(crate) kernel: String,
}

pub(crate) fn machine() -> Machine {
    let cores = Command::new("nproc")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0);
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned()))
        })
        .unwrap_or_else(|| "unknown".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").map(|s| s.trim().to_owned()).unwrap_or_default();
    Machine { cores, cpu_model, loadavg: loadavg(), kernel }
}

/// The first three fields of /proc/loadavg.
pub(crate) fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_open_file_limit_and_this_process() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
                      Max processes             94931                94931                processes \n\
                      Max open files            20000                20000                files     \n";
        assert_eq!(parse_open_file_limit(limits), Some((20000, 20000)));
        assert_eq!(parse_open_file_limit("Max open files  unlimited unlimited files"), None);
        let me = std::process::id();
        assert!(open_file_limit(me).is_some_and(|(soft, hard)| soft > 0 && soft <= hard));
        assert!(open_fds(me).is_some_and(|n| n >= 3));
        assert!(rss_kib(me).is_some_and(|k| k > 0));
    }

    #[test]
    fn finds_binaries_on_path_or_at_a_fallback() {
        assert!(which("sh", &[]).is_some_and(|p| p.is_absolute() && p.ends_with("sh")));
        assert_eq!(which("/bin/sh", &[]), Some("/bin/sh".into()));
        assert_eq!(which("no-such-binary-imgate-bench", &[]), None);
        assert_eq!(which("no-such-binary-imgate-bench", &["/nonexistent/x", "/bin/sh"]), Some("/bin/sh".into()));
        assert_eq!(which("/nonexistent/redis-server", &["/bin/sh"]), None, "an explicit path has no fallback");
    }
}
