//! A real `redis-server` (Debian's package) for the fleet tests: started on a free loopback
//! port in a temporary directory, stopped when dropped. No mocks.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl RedisServer {
    /// Starts one. Without `redis-server`, installs Debian's package (once per run); when that
    /// cannot be done either, `None` with the reason printed, except on CI (`CI` set), where
    /// the test fails: CI never skips.
    pub fn start() -> Option<Self> {
        if !installed() {
            assert!(
                std::env::var_os("CI").is_none(),
                "redis-server is not installed and could not be: .ci/run installs it (apt-get install -y redis-server)"
            );
            eprintln!("skipped: redis-server is not installed and could not be (apt-get install -y redis-server)");
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let dir = std::env::temp_dir().join(format!("atlas-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut server = Self {
            child: None,
            port,
            dir,
        };
        server.restart();
        Some(server)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Kills the server (SIGKILL: no goodbye to its clients).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port (empty: nothing is persisted).
    pub fn restart(&mut self) {
        self.kill();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self
                .command(&["PING"])
                .is_some_and(|reply| reply.contains("PONG"))
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server did not answer on port {}", self.port);
    }

    /// Runs a command with `redis-cli`, its output.
    pub fn command(&self, args: &[&str]) -> Option<String> {
        let output = Command::new("redis-cli")
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .ok()?;
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Every key and value it holds, as text.
    pub fn dump(&self) -> String {
        let keys = self.command(&["--scan"]).unwrap_or_default();
        let mut text = keys.clone();
        for key in keys.lines() {
            let kind = self.command(&["TYPE", key]).unwrap_or_default();
            let value = match kind.trim() {
                "string" => self.command(&["GET", key]),
                "stream" => self.command(&["XRANGE", key, "-", "+"]),
                _ => None,
            };
            text.push_str(&value.unwrap_or_default());
        }
        text
    }
}

/// Whether `redis-server` is there, after installing it when it was not and apt can.
fn installed() -> bool {
    static INSTALLED: OnceLock<bool> = OnceLock::new();
    *INSTALLED.get_or_init(|| {
        let present = || {
            Command::new("redis-server")
                .arg("--version")
                .output()
                .is_ok()
        };
        if present() {
            return true;
        }
        eprintln!("redis-server is missing: installing Debian's package");
        let apt = |args: &[&str]| {
            Command::new("apt-get")
                .args(args)
                .env("DEBIAN_FRONTEND", "noninteractive")
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|status| status.success())
        };
        apt(&["update", "-qq"]) && apt(&["install", "-y", "-qq", "redis-server"]) && present()
    })
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
