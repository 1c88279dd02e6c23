//! Starts ministack (the local EKS and IAM APIs, from `.venv-ci`) for the load examples.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The running ministack; killed when dropped.
pub struct Ministack(Child);

impl Drop for Ministack {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts ministack on a free port of 127.0.0.1 and returns it with its endpoint URL.
pub fn start_ministack(dir: &std::path::Path) -> Result<(Ministack, String), String> {
    let venv = std::env::var_os("AWS_AUTH_OPERATOR_MINISTACK_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv-ci"));
    let bin = venv.join("bin/ministack");
    if !bin.is_file() {
        return Err(format!(
            "{} not found: run `bash .ci/run` once, or set AWS_AUTH_OPERATOR_MINISTACK_VENV",
            bin.display()
        ));
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    let child = Command::new(&bin)
        .current_dir(dir)
        .env("BIND_HOST", "127.0.0.1")
        .env("GATEWAY_PORT", port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting {}: {e}", bin.display()))?;
    let guard = Ministack(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err("ministack did not answer within 60 s".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok((guard, format!("http://127.0.0.1:{port}")))
}
