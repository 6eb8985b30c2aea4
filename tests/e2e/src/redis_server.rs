//! A real `redis-server` for the fleet tests: started on a free loopback port with no
//! persistence, killed and restarted on the same port to test outages, stopped on drop.
//!
//! `make deps` installs Debian's `redis-server`; a test that needs one and finds none fails with
//! a message saying so (it is not skipped: the fleet is part of what `make test` proves).

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    dir: PathBuf,
    /// Every write on disk before it is acknowledged (`appendfsync always`): a restart keeps it.
    persistent: bool,
}

fn binary() -> String {
    for c in ["redis-server", "/usr/bin/redis-server", "/usr/local/bin/redis-server"] {
        if Command::new(c).arg("--version").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok() {
            return c.to_owned();
        }
    }
    panic!("redis-server not found: `make deps` installs it (Debian package redis-server)")
}

impl RedisServer {
    /// No persistence: what a restart loses is lost.
    pub fn start() -> RedisServer {
        RedisServer::start_with(false)
    }

    /// With an append-only file synced on every write, as docs/deploy.md recommends: sessions,
    /// nonces and tickets outlive a restart (or a crash) of Redis.
    pub fn start_persistent() -> RedisServer {
        RedisServer::start_with(true)
    }

    fn start_with(persistent: bool) -> RedisServer {
        let port = TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port();
        let dir = std::env::temp_dir().join(format!("imgate-redis-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).expect("redis dir");
        let mut r = RedisServer { port, child: None, dir, persistent };
        r.restart();
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Starts (again) on the same port; returns once it answers PING.
    pub fn restart(&mut self) {
        let child = Command::new(binary())
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", ""])
            .args(if self.persistent {
                ["--appendonly", "yes", "--appendfsync", "always"]
            } else {
                ["--appendonly", "no", "--appendfsync", "no"]
            })
            .args(["--dir", &self.dir.to_string_lossy(), "--maxmemory-policy", "noeviction"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.ping() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("redis-server on port {} did not answer PING within 10 s", self.port);
    }

    /// Kills the server at once (SIGKILL): clients see their connection drop mid-command.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn ping(&self) -> bool {
        use std::io::{Read, Write};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else { return false };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        if s.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut buf = [0u8; 16];
        matches!(s.read(&mut buf), Ok(n) if buf[..n].starts_with(b"+PONG"))
    }

    /// `[store]` TOML for a gateway using this server.
    pub fn store_toml(&self, instance: &str) -> String {
        format!(
            "[store]\nbackend = \"redis\"\nurl = \"{}\"\ninstance_id = \"{instance}\"\ntimeout_ms = 500\n",
            self.url()
        )
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
