//! The shop's two stores for tests: which one ([`Backend`]), a private
//! redis-server on a free loopback port with its own temporary dir (killed
//! on drop), and [`for_each_store!`], which turns one test function into a
//! `sqlite::name` and a `redis::name` test, so both stores run one set of
//! tests rather than copies.
#![allow(dead_code, clippy::unwrap_used)]

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reference_server::shop::ShopArgs;

/// Which store a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Redis,
}

/// One test's store: a SQLite file in a temp dir, or a private Redis.
pub struct TestStore {
    pub backend: Backend,
    /// The database file's dir (SQLite); kept for the test's life.
    pub dir: tempfile::TempDir,
    pub redis: Option<RedisServer>,
}

impl TestStore {
    pub fn new(backend: Backend) -> TestStore {
        let dir = tempfile::tempdir().unwrap();
        let redis = (backend == Backend::Redis).then(RedisServer::start);
        TestStore { backend, dir, redis }
    }

    /// The command line's shop defaults, pointed at this store.
    pub fn args(&self) -> ShopArgs {
        match &self.redis {
            None => ShopArgs::with_db(self.dir.path().join("shop.db")),
            Some(r) => ShopArgs::with_redis(&r.url()).unwrap(),
        }
    }

    /// The same as flags for the reference-server binary.
    pub fn flags(&self) -> Vec<String> {
        match &self.redis {
            None => vec!["--db".into(), self.dir.path().join("shop.db").to_str().unwrap().into()],
            Some(r) => vec!["--store".into(), r.url()],
        }
    }
}

/// One test function, run once per store: `for_each_store!(tokio: a, b)`
/// for `async fn a(backend: Backend)`, `for_each_store!(sync: c)` for
/// `fn c(backend: Backend)`; the tests are `sqlite::a`, `redis::a`, ...
#[macro_export]
macro_rules! for_each_store {
    (tokio: $($name:ident),+ $(,)?) => {
        mod sqlite { $(
            #[tokio::test]
            async fn $name() { super::$name($crate::common::stores::Backend::Sqlite).await }
        )+ }
        mod redis { $(
            #[tokio::test]
            async fn $name() { super::$name($crate::common::stores::Backend::Redis).await }
        )+ }
    };
    (sync: $($name:ident),+ $(,)?) => {
        mod sqlite { $(
            #[test]
            fn $name() { super::$name($crate::common::stores::Backend::Sqlite) }
        )+ }
        mod redis { $(
            #[test]
            fn $name() { super::$name($crate::common::stores::Backend::Redis) }
        )+ }
    };
}

/// A redis-server of the test's own on 127.0.0.1 (never anywhere else),
/// persisting to an AOF in a temporary dir (`appendonly yes`, `appendfsync
/// always`, no RDB snapshots), so a SIGKILL and [`restart`](Self::restart)
/// is the outage the shop must survive. Killed on drop.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

const REDIS_BIN: &str = "redis-server";

impl RedisServer {
    pub fn start() -> RedisServer {
        let mut server = RedisServer { child: None, port: 0, dir: tempfile::tempdir().unwrap() };
        // A free port can be taken between our probe and redis's bind: try a few.
        for _ in 0..5 {
            server.port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            server.child = Some(spawn(server.port, server.dir.path()));
            if server.wait_ready(Duration::from_secs(20)) {
                return server;
            }
            server.kill();
        }
        panic!("redis-server never came up on a free loopback port; log:\n{}", log(server.dir.path()));
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    /// SIGKILL redis-server (no chance to flush anything) and reap it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start redis-server again on the same port and dir: it loads its AOF.
    pub fn restart(&mut self) {
        self.kill();
        self.child = Some(spawn(self.port, self.dir.path()));
        assert!(
            self.wait_ready(Duration::from_secs(30)),
            "redis-server did not restart; log:\n{}",
            log(self.dir.path())
        );
    }

    /// PING answers PONG (not LOADING) before `timeout`; false if it exited.
    fn wait_ready(&mut self, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        let client = ::redis::Client::open(self.url()).unwrap();
        while Instant::now() < until {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(Child::try_wait) {
                return false;
            }
            let pong = client
                .get_connection_with_timeout(Duration::from_secs(1))
                .and_then(|mut c| ::redis::cmd("PING").query::<String>(&mut c));
            if pong.is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// A direct connection, for tests that look at Redis itself.
    pub fn conn(&self) -> ::redis::Connection {
        ::redis::Client::open(self.url()).unwrap().get_connection_with_timeout(Duration::from_secs(5)).unwrap()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn(port: u16, dir: &Path) -> Child {
    let port = port.to_string();
    let logfile = dir.join("redis.log");
    Command::new(REDIS_BIN)
        .args(["--port", &port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes"])
        .args(["--appendfsync", "always", "--daemonize", "no", "--protected-mode", "yes"])
        .arg("--dir")
        .arg(dir)
        .arg("--logfile")
        .arg(&logfile)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("{REDIS_BIN}: {e}: the Redis store's tests need Debian's redis-server (make deps installs it)")
        })
}

fn log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("redis.log")).unwrap_or_default()
}
