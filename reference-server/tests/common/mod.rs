//! Helpers for the cluster tests: start the real binary on loopback port 0
//! (kill on drop), read its lifecycle log, and a tiny blocking HTTP/1.1
//! client for keep-alive and new-connection request loops, over plain TCP
//! or TLS (rustls; certificates from `tls::TestPki`).
#![allow(dead_code, clippy::unwrap_used)]

pub mod stores;
pub mod tls;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_reference-server");
const TAG_VAR: &str = "RS_CLUSTER_TEST_TAG";

/// One stderr line and when the test saw it.
#[derive(Debug, Clone)]
pub struct Line {
    pub at: Instant,
    pub text: String,
}

impl Line {
    /// The master's own timestamp, `[master +1.234s]`, in ms.
    pub fn master_ms(&self) -> Option<f64> {
        let rest = self.text.strip_prefix("[master +")?;
        let secs: f64 = rest.split('s').next()?.parse().ok()?;
        Some(secs * 1000.0)
    }

    /// `pid N` in a worker line.
    pub fn pid(&self) -> Option<i32> {
        let mut words = self.text.split_whitespace();
        words.by_ref().find(|w| *w == "pid")?;
        words.next()?.parse().ok()
    }
}

type Log = Arc<Mutex<Vec<Line>>>;

/// A running `reference-server`, killed (with its workers) on drop.
pub struct Server {
    child: Child,
    /// In the environment of the master and (inherited) of every worker, so
    /// "is this pid one of ours?" survives pid reuse on a busy box.
    tag: String,
    pub public: SocketAddr,
    pub admin: SocketAddr,
    log: Log,
    _dir: tempfile::TempDir,
}

impl Server {
    /// Start the test binary with `args` plus loopback port-0 addresses.
    pub fn start(args: &[&str]) -> Server {
        Self::start_exe(Path::new(BIN), args)
    }

    /// Start `exe` (e.g. a copy of the binary) with `args`.
    pub fn start_exe(exe: &Path, args: &[&str]) -> Server {
        Self::start_with(exe, args, |_| {})
    }

    /// Like `start_exe`, with `setup` applied to the command before it
    /// starts (a session of its own, more environment, inherited fds).
    pub fn start_with(exe: &Path, args: &[&str], setup: impl FnOnce(&mut Command)) -> Server {
        Self::start_program(exe, &[], args, setup)
    }

    /// Like `start_with`, through `program` with `pre_args` before the
    /// server's flags (e.g. `sh -c '... exec "$0" "$@"' BIN`).
    pub fn start_program(program: &Path, pre_args: &[&str], args: &[&str], setup: impl FnOnce(&mut Command)) -> Server {
        // The shop's store defaults to a file in the working directory: a
        // temp dir keeps every test's store apart.
        let dir = tempfile::tempdir().unwrap();
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let tag = format!("{}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::SeqCst));
        let mut cmd = Command::new(program);
        cmd.args(pre_args)
            .env(TAG_VAR, &tag)
            .args(["--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0", "--heartbeat-interval", "100ms"])
            .args(args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        setup(&mut cmd);
        let mut child = cmd.spawn().unwrap();
        let log: Log = Arc::default();
        let stderr = child.stderr.take().unwrap();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            for text in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("  | {text}");
                sink.lock().unwrap().push(Line { at: Instant::now(), text });
            }
        });
        let mut server = Server {
            child,
            tag,
            public: "0.0.0.0:0".parse().unwrap(),
            admin: "0.0.0.0:0".parse().unwrap(),
            log,
            _dir: dir,
        };
        let line = server
            .wait_log(0, |l| l.contains("listening on "), Duration::from_secs(30))
            .unwrap_or_else(|| panic!("server never said where it listens; log:\n{}", server.dump()));
        let addr_after = |key: &str| -> SocketAddr {
            let rest = &line.text[line.text.find(key).unwrap() + key.len()..];
            rest.split([',', ' ']).next().unwrap().parse().unwrap()
        };
        server.public = addr_after("listening on ");
        server.admin = addr_after("admin on ");
        server
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn signal(&self, sig: &str) {
        signal(self.pid(), sig);
    }

    pub fn lines(&self) -> Vec<Line> {
        self.log.lock().unwrap().clone()
    }

    pub fn dump(&self) -> String {
        self.lines().iter().map(|l| l.text.as_str()).collect::<Vec<_>>().join("\n")
    }

    /// First line at index >= `from` matching `pred`, waiting up to `timeout`.
    pub fn wait_log(&self, from: usize, pred: impl Fn(&str) -> bool, timeout: Duration) -> Option<Line> {
        let until = Instant::now() + timeout;
        loop {
            if let Some(l) = self.lines().into_iter().skip(from).find(|l| pred(&l.text)) {
                return Some(l);
            }
            if Instant::now() > until {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Like `wait_log` but panics with the log on timeout.
    pub fn expect_log(&self, from: usize, what: &str, pred: impl Fn(&str) -> bool, timeout: Duration) -> Line {
        self.wait_log(from, pred, timeout)
            .unwrap_or_else(|| panic!("no log line for: {what} within {timeout:?}; log:\n{}", self.dump()))
    }

    pub fn mark(&self) -> usize {
        self.log.lock().unwrap().len()
    }

    /// GET an admin path; the body as JSON or text.
    pub fn admin_get(&self, path: &str) -> Resp {
        get_new_conn(self.admin, path).unwrap_or_else(|e| panic!("admin {path}: {e}"))
    }

    pub fn workers(&self) -> serde_json::Value {
        serde_json::from_slice(&self.admin_get("/workers").body).unwrap()
    }

    /// Wait until `n` workers are ready and no rolling restart runs.
    /// Returns their (id, pid).
    pub fn wait_ready(&self, n: usize) -> Vec<(u64, i32)> {
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            let w = self.workers();
            let ready: Vec<(u64, i32)> = w["workers"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|w| w["state"] == "ready")
                .map(|w| (w["id"].as_u64().unwrap(), w["pid"].as_i64().unwrap() as i32))
                .collect();
            if ready.len() == n && w["workers"].as_array().unwrap().len() == n && w["rolling_restart"] == false {
                return ready;
            }
            assert!(Instant::now() < until, "never saw {n} ready workers; last /workers: {w}\nlog:\n{}", self.dump());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A metric's value from the admin /metrics page (exact series name).
    pub fn metric(&self, series: &str) -> f64 {
        let text = String::from_utf8(self.admin_get("/metrics").body).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
            .trim()
            .parse()
            .unwrap()
    }

    /// Sum of every series of a metric family, e.g. `reference_requests_total`.
    pub fn metric_sum(&self, family: &str) -> f64 {
        let text = String::from_utf8(self.admin_get("/metrics").body).unwrap();
        let prefix = format!("{family}{{");
        text.lines()
            .filter(|l| l.starts_with(&prefix) || l.starts_with(&format!("{family} ")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// The master's exit status if it has exited (no waiting).
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let until = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_exit() {
                return Some(s);
            }
            if Instant::now() > until {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `pid` is a live (not zombie) process started by this server.
    pub fn owns_live(&self, pid: i32) -> bool {
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
        let needle = format!("{TAG_VAR}={}", self.tag);
        alive(pid) && environ.split(|&b| b == 0).any(|kv| kv == needle.as_bytes())
    }

    /// Processes of this server still alive, from every pid it logged.
    pub fn leftovers(&self) -> Vec<i32> {
        self.worker_pids().into_iter().filter(|&p| self.owns_live(p)).collect()
    }

    /// Every worker pid the master ever logged.
    pub fn worker_pids(&self) -> BTreeSet<i32> {
        self.lines().iter().filter(|l| l.text.contains(" started")).filter_map(Line::pid).collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in self.worker_pids() {
            if self.owns_live(pid) {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
            }
        }
    }
}

/// Start the command in a session (and process group) of its own, as
/// `setsid(1)` does, so a test can signal the whole group like systemd's
/// `KillMode=control-group`, `timeout(1)` or a terminal.
pub fn setsid(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: setsid(2) is async-signal-safe and allocates nothing.
    unsafe {
        cmd.pre_exec(|| if libc::setsid() < 0 { Err(std::io::Error::last_os_error()) } else { Ok(()) });
    }
}

/// Send `sig` to every process in the group `pgid`.
pub fn signal_group(pgid: i32, sig: &str) {
    let sig: nix::sys::signal::Signal = sig.parse().unwrap_or_else(|_| panic!("unknown signal {sig}"));
    nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), sig)
        .unwrap_or_else(|e| panic!("kill {sig} -{pgid}: {e}"));
}

/// CPU time (user + system) `pid` has used so far, from /proc/PID/stat.
pub fn cpu_time(pid: i32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which may hold spaces): state is 3,
    // utime 14 and stime 15 counting from pid = 1.
    let after = stat.rsplit(')').next().unwrap();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_micros(ticks * 1_000_000 / hz)
}

/// The share of one core `pid` used over `window` (CPU time / wall time).
/// Measure while nothing happens: CPU time is the process's own, so other
/// load on the machine does not inflate it.
pub fn cpu_share(pid: i32, window: Duration) -> f64 {
    let (c0, t0) = (cpu_time(pid), Instant::now());
    std::thread::sleep(window);
    let (c1, t1) = (cpu_time(pid), Instant::now());
    (c1 - c0).as_secs_f64() / (t1 - t0).as_secs_f64()
}

/// Send `sig` (e.g. "SIGKILL") to `pid`.
pub fn signal(pid: i32, sig: &str) {
    let sig: nix::sys::signal::Signal = sig.parse().unwrap_or_else(|_| panic!("unknown signal {sig}"));
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig).unwrap_or_else(|e| panic!("kill {sig} {pid}: {e}"));
}

pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat.rsplit(')').next().unwrap_or("").split_whitespace().next() != Some("Z"),
        Err(_) => false,
    }
}

// ---------------------------------------------------------------- client

#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn closes(&self) -> bool {
        self.header("connection").is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }
}

/// The bytes of one connection: plain TCP, or rustls over it (boxed: a
/// rustls connection is large, and tests do not care about the indirection).
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
}

impl Stream {
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => &s.sock,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Stream::Plain(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

/// One HTTP/1.1 connection.
pub struct Conn {
    /// Requests are written through `get_mut`: HTTP/1.1 without pipelining
    /// never writes while a response is half read.
    reader: BufReader<Stream>,
    pub requests: u64,
    pub opened: Instant,
    pub worker: Option<String>,
}

pub const IO_TIMEOUT: Duration = Duration::from_secs(20);

impl Conn {
    pub fn open(addr: SocketAddr) -> std::io::Result<Conn> {
        Self::open_from(addr, None)
    }

    /// Open from source address `local` (e.g. 127.0.0.7: on loopback every
    /// address in 127.0.0.0/8 is ours, which is how sticky tests get clients
    /// with different IPs).
    pub fn open_from(addr: SocketAddr, local: Option<std::net::IpAddr>) -> std::io::Result<Conn> {
        Self::connect(addr, local, None)
    }

    /// A TLS connection to `addr` with `tls` (e.g. `TestPki::client`),
    /// handshake done, the server's name being `addr`'s IP.
    pub fn open_tls(addr: SocketAddr, tls: &Arc<rustls::ClientConfig>) -> std::io::Result<Conn> {
        Self::connect(addr, None, Some(tls))
    }

    /// Plain or (with `tls`) TLS, from source address `local` if given.
    pub fn connect(
        addr: SocketAddr,
        local: Option<std::net::IpAddr>,
        tls: Option<&Arc<rustls::ClientConfig>>,
    ) -> std::io::Result<Conn> {
        let mut stream = connect_from(addr, local)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream.set_nodelay(true)?;
        let stream = match tls {
            None => Stream::Plain(stream),
            Some(config) => {
                let name = rustls::pki_types::ServerName::from(addr.ip());
                let mut conn = rustls::ClientConnection::new(Arc::clone(config), name)
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
                while conn.is_handshaking() {
                    conn.complete_io(&mut stream)?;
                }
                Stream::Tls(Box::new(rustls::StreamOwned::new(conn, stream)))
            }
        };
        Ok(Conn { reader: BufReader::new(stream), requests: 0, opened: Instant::now(), worker: None })
    }

    /// The TLS session, if this is a TLS connection (peer certificate, ALPN).
    pub fn tls(&self) -> Option<&rustls::ClientConnection> {
        match self.reader.get_ref() {
            Stream::Plain(_) => None,
            Stream::Tls(s) => Some(&s.conn),
        }
    }

    /// The server's leaf certificate (DER), on a TLS connection.
    pub fn peer_cert(&self) -> Option<Vec<u8>> {
        Some(self.tls()?.peer_certificates()?.first()?.to_vec())
    }

    /// Whether the server closes (EOF or reset) this idle connection within
    /// `wait`, reading nothing from it (over TLS: no application data).
    pub fn closed_by_server_within(&mut self, wait: Duration) -> bool {
        let tcp = self.reader.get_ref().tcp().try_clone().unwrap();
        tcp.set_read_timeout(Some(wait)).unwrap();
        let seen = match self.reader.get_ref() {
            Stream::Plain(s) => s.peek(&mut [0u8; 1]),
            // A close_notify is bytes on the wire: ask rustls, which
            // buffers anything that is application data.
            Stream::Tls(_) => self.reader.fill_buf().map(<[u8]>::len),
        };
        tcp.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        match seen {
            Ok(n) => n == 0,
            Err(e) => matches!(e.kind(), std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::UnexpectedEof),
        }
    }

    /// After a `Connection: close` response: the server's end of the
    /// stream, which over TLS must be a close_notify (rustls reports a bare
    /// TCP close as `UnexpectedEof`). Ok when the stream ended cleanly
    /// with no further byte.
    pub fn expect_clean_end(&mut self) -> std::io::Result<()> {
        let mut rest = Vec::new();
        self.reader.read_to_end(&mut rest)?;
        if rest.is_empty() {
            Ok(())
        } else {
            Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{} bytes after the response", rest.len()),
            ))
        }
    }

    /// Send a GET and read the whole response. Any short read is an error.
    pub fn get(&mut self, path: &str) -> std::io::Result<Resp> {
        self.request("GET", path, &[], None)
    }

    /// POST a JSON body with extra `headers`, and read the whole response.
    pub fn post_json(&mut self, path: &str, headers: &[(&str, &str)], body: &str) -> std::io::Result<Resp> {
        self.request("POST", path, headers, Some(body))
    }

    /// Send one request and read the whole response. Any short read is an error.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> std::io::Result<Resp> {
        use std::io::{Error, ErrorKind};
        self.requests += 1;
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nUser-Agent: cluster-test\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if let Some(body) = body {
            head.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        head.push_str(body.unwrap_or(""));
        let out = self.reader.get_mut();
        out.write_all(head.as_bytes())?;
        out.flush()?;
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(Error::new(ErrorKind::UnexpectedEof, "connection closed before a response"));
        }
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| Error::new(ErrorKind::InvalidData, format!("bad status line {line:?}")))?;
        let mut headers = Vec::new();
        loop {
            line.clear();
            if self.reader.read_line(&mut line)? == 0 {
                return Err(Error::new(ErrorKind::UnexpectedEof, "closed inside the response head"));
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (k, v) = l.split_once(':').ok_or_else(|| Error::new(ErrorKind::InvalidData, "bad header"))?;
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
        let mut resp = Resp { status, headers, body: Vec::new() };
        if let Some(len) = resp.header("content-length") {
            let len: usize = len.parse().map_err(|_| Error::new(ErrorKind::InvalidData, "bad content-length"))?;
            resp.body = vec![0; len];
            self.reader.read_exact(&mut resp.body)?;
        } else if resp.header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            loop {
                line.clear();
                self.reader.read_line(&mut line)?;
                let size = usize::from_str_radix(line.trim(), 16)
                    .map_err(|_| Error::new(ErrorKind::InvalidData, format!("bad chunk size {line:?}")))?;
                let mut chunk = vec![0; size + 2];
                self.reader.read_exact(&mut chunk)?;
                if size == 0 {
                    break;
                }
                resp.body.extend_from_slice(&chunk[..size]);
            }
        } else {
            self.reader.read_to_end(&mut resp.body)?;
        }
        if let Some(w) = resp.header("x-worker-id") {
            self.worker = Some(w.to_string());
        }
        Ok(resp)
    }
}

/// A TCP connection to `addr`, from source address `local` if given.
pub fn connect_from(addr: SocketAddr, local: Option<std::net::IpAddr>) -> std::io::Result<TcpStream> {
    let Some(ip) = local else {
        return TcpStream::connect_timeout(&addr, IO_TIMEOUT);
    };
    let sock = socket2::Socket::new(socket2::Domain::for_address(addr), socket2::Type::STREAM, None)?;
    sock.bind(&SocketAddr::new(ip, 0).into())?;
    sock.connect_timeout(&addr.into(), IO_TIMEOUT)?;
    Ok(sock.into())
}

pub fn get_new_conn(addr: SocketAddr, path: &str) -> std::io::Result<Resp> {
    Conn::open(addr)?.get(path)
}

// ---------------------------------------------------------------- load loops

/// One failed request.
#[derive(Debug, Clone)]
pub struct Failure {
    pub error: String,
    /// The worker the connection had been talking to (None: fresh connection).
    pub worker: Option<String>,
    pub conn_opened: Instant,
    pub at: Instant,
}

#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub ok: u64,
    pub failures: Vec<Failure>,
    pub workers: BTreeSet<String>,
    /// (time, worker) of every success.
    pub oks: Vec<(Instant, String)>,
}

impl Tally {
    /// Fails the test, naming `what` and a few of the failures, if any request failed.
    pub fn assert_no_failures(&self, what: &str) {
        assert!(
            self.failures.is_empty(),
            "{what}: {} of {} requests failed, e.g. {:#?}",
            self.failures.len(),
            self.ok + self.failures.len() as u64,
            &self.failures[..self.failures.len().min(5)]
        );
    }

    fn merge(&mut self, o: Tally) {
        self.ok += o.ok;
        self.failures.extend(o.failures);
        self.workers.extend(o.workers);
        self.oks.extend(o.oks);
    }
}

/// Request loops on threads until stopped.
pub struct Traffic {
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<Tally>>,
}

impl Traffic {
    /// `keepalive` threads reuse a connection until the server says close;
    /// `fresh` threads open a new connection per request. Each cycles `paths`.
    pub fn start(addr: SocketAddr, keepalive: usize, fresh: usize, paths: &[&str]) -> Traffic {
        Self::start_tls(addr, None, keepalive, fresh, paths)
    }

    /// `start`, over TLS with `tls` when given.
    pub fn start_tls(
        addr: SocketAddr,
        tls: Option<Arc<rustls::ClientConfig>>,
        keepalive: usize,
        fresh: usize,
        paths: &[&str],
    ) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let paths: Vec<String> = paths.iter().map(|p| p.to_string()).collect();
        let mut handles = Vec::new();
        for i in 0..keepalive + fresh {
            let stop = Arc::clone(&stop);
            let paths = paths.clone();
            let reuse = i < keepalive;
            let tls = tls.clone();
            handles.push(std::thread::spawn(move || request_loop(addr, tls.as_ref(), reuse, &paths, i, &stop)));
        }
        Traffic { stop, handles }
    }

    pub fn stop(self) -> Tally {
        self.stop.store(true, Ordering::SeqCst);
        let mut all = Tally::default();
        for h in self.handles {
            all.merge(h.join().unwrap());
        }
        all
    }
}

fn request_loop(
    addr: SocketAddr,
    tls: Option<&Arc<rustls::ClientConfig>>,
    reuse: bool,
    paths: &[String],
    seed: usize,
    stop: &AtomicBool,
) -> Tally {
    let mut tally = Tally::default();
    let mut conn: Option<Conn> = None;
    let mut n = seed;
    while !stop.load(Ordering::SeqCst) {
        let path = &paths[n % paths.len()];
        n += 1;
        let c = match conn.take() {
            Some(c) => c,
            None => match Conn::connect(addr, None, tls) {
                Ok(c) => c,
                Err(e) => {
                    let now = Instant::now();
                    tally.failures.push(Failure {
                        error: format!("connect: {e}"),
                        worker: None,
                        conn_opened: now,
                        at: now,
                    });
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
            },
        };
        let mut c = c;
        let worker_before = c.worker.clone();
        match c.get(path) {
            Ok(r) if worker_before.is_some() && r.header("x-worker-id") != worker_before.as_deref() => {
                // One connection is served by one process, whose id is stable.
                tally.failures.push(Failure {
                    error: format!(
                        "X-Worker-Id changed on one connection: {worker_before:?} -> {:?}",
                        r.header("x-worker-id")
                    ),
                    worker: worker_before,
                    conn_opened: c.opened,
                    at: Instant::now(),
                });
            }
            Ok(r) if (200..300).contains(&r.status) => {
                tally.ok += 1;
                let w = r.header("x-worker-id").unwrap_or("?").to_string();
                tally.workers.insert(w.clone());
                tally.oks.push((Instant::now(), w));
                if reuse && !r.closes() {
                    conn = Some(c);
                } else if r.closes() && c.tls().is_some() {
                    // Over TLS a drain's `Connection: close` must be followed
                    // by close_notify, not a bare TCP close.
                    if let Err(e) = c.expect_clean_end() {
                        tally.failures.push(Failure {
                            error: format!("no clean TLS end after Connection: close: {e}"),
                            worker: worker_before,
                            conn_opened: c.opened,
                            at: Instant::now(),
                        });
                    }
                }
            }
            Ok(r) => tally.failures.push(Failure {
                error: format!("status {} on request {} of the connection", r.status, c.requests),
                worker: worker_before,
                conn_opened: c.opened,
                at: Instant::now(),
            }),
            Err(e) => tally.failures.push(Failure {
                error: format!("{e} on request {} of the connection", c.requests),
                worker: worker_before,
                conn_opened: c.opened,
                at: Instant::now(),
            }),
        }
        // A little air, so the loops do not starve a 2-core box.
        std::thread::sleep(Duration::from_millis(2));
    }
    tally
}

/// Copy the binary into `dir`, executable.
pub fn copy_binary(dir: &Path) -> PathBuf {
    let dest = dir.join("reference-server");
    std::fs::copy(BIN, &dest).unwrap();
    dest
}

/// Replace the 16 hex digits after `RSBUILDID=` with `new_id`; returns the
/// old id.
pub fn patch_build_id(bytes: &mut [u8], new_id: &str) -> String {
    let marker = b"RSBUILDID=";
    let at = bytes
        .windows(marker.len() + 17)
        .position(|w| {
            w.starts_with(marker)
                && w[marker.len()..marker.len() + 16].iter().all(u8::is_ascii_hexdigit)
                && w[marker.len() + 16] == b';'
        })
        .expect("no build id marker in the binary")
        + marker.len();
    let old = String::from_utf8_lossy(&bytes[at..at + 16]).into_owned();
    bytes[at..at + 16].copy_from_slice(new_id.as_bytes());
    old
}

/// Deploy `bytes` as the executable `exe` the way a deploy should: write a
/// staged file next to it, then rename it over (the running file's inode
/// stays intact for the processes that have it open).
pub fn deploy(exe: &Path, bytes: &[u8]) {
    use std::os::unix::fs::PermissionsExt;
    let staged = exe.with_extension("new");
    std::fs::write(&staged, bytes).unwrap();
    std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::rename(&staged, exe).unwrap();
}

/// The parent pid of `pid`, from /proc/PID/stat (None once it is gone).
pub fn ppid(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')').next()?.split_whitespace().nth(1)?.parse().ok()
}
