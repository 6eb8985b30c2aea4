//! A real `redis-server` for the fleet tests: started on a free loopback port with no
//! persistence, killed and restarted on the same port to test outages, stopped on drop.
//!
//! A free port is only free until someone binds it: two tests starting servers at once could be
//! given the same one, and the loser's `redis-server` exits while the winner answers its PING,
//! so two tests would share one database. So a server counts as started only when the one
//! answering reports this child's process id (`INFO server`); otherwise another port is tried.
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
        for _ in 0..5 {
            if r.try_start() {
                return r;
            }
            r.port = TcpListener::bind("127.0.0.1:0").expect("free port").local_addr().expect("addr").port();
        }
        panic!("redis-server could not start on a port of its own in 5 attempts");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Starts (again) on the same port; returns once it answers.
    pub fn restart(&mut self) {
        assert!(self.try_start(), "redis-server could not start again on port {}: another process holds it", self.port);
    }

    /// Starts a server on `self.port`; true once it answers as this child, false if the child
    /// exited (the port was taken) or another server answers there.
    fn try_start(&mut self) -> bool {
        let mut child = Command::new(binary())
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
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return false;
            }
            match self.answering_pid() {
                Some(pid) if pid == child.id() => {
                    self.child = Some(child);
                    return true;
                }
                Some(_) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return false;
                }
                None => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("redis-server on port {} did not answer within 10 s", self.port);
    }

    /// Kills the server at once (SIGKILL): clients see their connection drop mid-command.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The process id of the server answering on `self.port` (`INFO server`), if one answers.
    fn answering_pid(&self) -> Option<u32> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port)).ok()?;
        s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
        s.write_all(b"INFO server\r\n").ok()?;
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let text = String::from_utf8_lossy(&got);
            if let Some(rest) = text.split("process_id:").nth(1).filter(|r| r.contains('\n')) {
                return rest.lines().next()?.trim().parse().ok();
            }
            let n = s.read(&mut buf).ok().filter(|n| *n > 0)?;
            got.extend_from_slice(&buf[..n]);
        }
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
