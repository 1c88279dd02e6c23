//! The operator process: spawned by `--simulate`, or named by `--operator-pid`; what it costs.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Memory of a process, from /proc/<pid>/status, in KiB.
#[derive(Debug, Clone, Copy)]
pub struct Memory {
    /// VmRSS: resident now.
    pub rss_kib: u64,
    /// VmHWM: the most it was ever resident.
    pub hwm_kib: u64,
}

pub fn memory(pid: u32) -> Result<Memory, String> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("reading {path}: {e}"))?;
    let field = |name: &str| -> Option<u64> {
        text.lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
    };
    match (field("VmRSS:"), field("VmHWM:")) {
        (Some(rss_kib), Some(hwm_kib)) => Ok(Memory { rss_kib, hwm_kib }),
        _ => Err(format!("{path} has no VmRSS/VmHWM (a zombie?)")),
    }
}

/// CPU time (user + system) the process has used, from /proc/<pid>/stat.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after it are plain.
    let after_name = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on every Linux the tool runs on (it is fixed in the kernel ABI).
    Some(Duration::from_millis(ticks * 10))
}

/// The operator binary, started by the tool.
pub struct Operator {
    child: Child,
    pub log: PathBuf,
}

impl Operator {
    /// Starts `bin args...` with `KUBECONFIG=kubeconfig`, its output going to `log`.
    pub fn spawn(
        bin: &Path,
        args: &[String],
        kubeconfig: &Path,
        log: PathBuf,
    ) -> Result<Operator, String> {
        if !bin.is_file() {
            return Err(format!(
                "operator binary {} not found: build it first (cargo build --release --locked --bin aws-auth-operator) or pass --operator-bin",
                bin.display()
            ));
        }
        let out = File::create(&log).map_err(|e| format!("creating {}: {e}", log.display()))?;
        let err = out
            .try_clone()
            .map_err(|e| format!("creating {}: {e}", log.display()))?;
        let child = Command::new(bin)
            .args(args)
            .env("KUBECONFIG", kubeconfig)
            .env_remove("KUBERNETES_SERVICE_HOST")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", bin.display()))?;
        Ok(Operator { child, log })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `Some(how it ended)` once the process has exited.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(format!("unknown ({e})")),
        }
    }

    /// SIGTERM, then up to `grace` for it to exit, then SIGKILL. Returns how it ended.
    pub async fn stop(&mut self, grace: Duration) -> String {
        if let Some(status) = self.exited() {
            return format!("had already exited: {status}");
        }
        let term = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if !matches!(term, Ok(s) if s.success()) {
            let _ = self.child.kill();
        }
        let started = Instant::now();
        while started.elapsed() < grace {
            if let Some(status) = self.exited() {
                return format!(
                    "{status} {:.2}s after SIGTERM",
                    started.elapsed().as_secs_f64()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        format!("did not exit within {grace:?} of SIGTERM: killed")
    }

    /// The last `lines` lines of its log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
