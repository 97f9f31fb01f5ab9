//! The server under systemd without systemd (issue 19): socket activation (`LISTEN_FDS`/`LISTEN_PID`, a listener
//! the test holds, as systemd does, so connections queue across a full restart of the master) and the notify
//! socket (`NOTIFY_SOCKET`, `WATCHDOG_USEC`): which messages the master sends, and in what order; both across a
//! SIGUSR2 master upgrade too.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{BIN, Server, get_new_conn};

const LONG: Duration = Duration::from_secs(30);

/// Start the server as systemd would after socket activation: `listener` as
/// fd 3, `LISTEN_FDS=1`, and `LISTEN_PID` set to the server's own pid (known
/// only after fork, hence the `sh` that sets it and execs, keeping its pid).
fn start_activated(listener: &TcpListener, args: &[&str]) -> Server {
    let fd = listener.as_raw_fd();
    Server::start_program(
        Path::new("/bin/sh"),
        &["-c", r#"LISTEN_PID=$$ exec "$0" "$@""#, BIN],
        args,
        move |cmd: &mut Command| {
            cmd.env("LISTEN_FDS", "1");
            pass_as_fd3(cmd, fd);
        },
    )
}

/// Makes `fd` the child's fd 3, open across exec, as systemd passes a socket.
fn pass_as_fd3(cmd: &mut Command, fd: i32) {
    // SAFETY: dup2 and fcntl are async-signal-safe; nothing allocates.
    unsafe {
        cmd.pre_exec(move || {
            let ok = if fd == 3 {
                // dup2(3, 3) would keep close-on-exec: clear it.
                libc::fcntl(3, libc::F_SETFD, 0) == 0
            } else {
                libc::dup2(fd, 3) == 3
            };
            if ok { Ok(()) } else { Err(std::io::Error::last_os_error()) }
        });
    }
}

/// Send a request on a new connection and read the whole response (the
/// request says `Connection: close`).
fn request_on(mut stream: TcpStream) -> std::io::Result<String> {
    stream.set_read_timeout(Some(LONG))?;
    stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")?;
    let mut out = String::new();
    stream.read_to_string(&mut out)?;
    Ok(out)
}

#[test]
fn socket_activation_serves_the_passed_listener_and_queues_connections_across_a_master_restart() {
    // The test is systemd here: it owns the listening socket for good.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut first = start_activated(&listener, &["--workers", "2", "--on-sigterm", "stop"]);
    first.expect_log(
        0,
        "the activated address",
        |l| l.contains(&format!("listening on {addr} (socket activation)")),
        LONG,
    );
    first.wait_ready(2);
    assert_eq!(get_new_conn(addr, "/healthz").unwrap().status, 200);
    // Workers serve the passed socket and never see the activation variables.
    for (_, pid) in first.wait_ready(2) {
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        assert!(!environ.split(|&b| b == 0).any(|kv| kv.starts_with(b"LISTEN_")), "worker {pid} got LISTEN_*");
    }

    // A full stop of the master: the socket stays open in the test.
    first.signal("SIGTERM");
    assert_eq!(first.wait_exit(LONG).expect("no exit after SIGTERM").code(), Some(0));
    drop(first);
    // While no master runs, a client connects (the kernel queues it) and sends.
    let queued = TcpStream::connect(addr).expect("connection refused while the master was down");
    let reply = std::thread::spawn(move || request_on(queued));
    std::thread::sleep(Duration::from_millis(200));

    let second = start_activated(&listener, &["--workers", "1"]);
    second.wait_ready(1);
    let reply = reply.join().unwrap().expect("the queued connection got no response");
    assert!(reply.starts_with("HTTP/1.1 200"), "queued request answered with: {reply}");
}

#[test]
fn socket_activation_refuses_a_socket_that_is_not_a_tcp_listener() {
    // An unconnected, non-listening TCP socket as fd 3.
    let not_listening = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let fd = not_listening.as_raw_fd();
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", r#"LISTEN_PID=$$ exec "$0" "$@""#, BIN, "--workers", "1", "--admin", "127.0.0.1:0"])
        .env("LISTEN_FDS", "1")
        .stdin(std::process::Stdio::null());
    // Regression: dup2(3, 3) when the socket already was fd 3 kept it
    // close-on-exec, and the server saw no fd 3 at all (a test-order flake).
    pass_as_fd3(&mut cmd, fd);
    let out = cmd.output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("must be a listening TCP socket"), "{stderr}");
}

/// One notify datagram: when it came, what it said, who sent it.
struct Datagram {
    at: Instant,
    text: String,
    sender: Option<i32>,
}

/// Every datagram the server sends to the notify socket, with when it came
/// and the sender's pid (SO_PASSCRED, as systemd reads it to apply
/// `NotifyAccess=`).
struct NotifySink {
    got: Arc<Mutex<Vec<Datagram>>>,
    path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl NotifySink {
    fn new() -> Self {
        use nix::sys::socket::{
            ControlMessageOwned, MsgFlags, UnixAddr, UnixCredentials, recvmsg, setsockopt, sockopt,
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        setsockopt(&sock, sockopt::PassCred, &true).unwrap();
        let got: Arc<Mutex<Vec<Datagram>>> = Arc::default();
        let sink = Arc::clone(&got);
        // Ends when the test process does; the socket file goes with the dir.
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                let mut cmsg = nix::cmsg_space!(UnixCredentials);
                let mut iov = [std::io::IoSliceMut::new(&mut buf)];
                let Ok(msg) = recvmsg::<UnixAddr>(sock.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::empty())
                else {
                    continue;
                };
                let n = msg.bytes;
                let pid = msg.cmsgs().ok().and_then(|mut c| {
                    c.find_map(|c| match c {
                        ControlMessageOwned::ScmCredentials(cred) => Some(cred.pid()),
                        _ => None,
                    })
                });
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                sink.lock().unwrap().push(Datagram { at: Instant::now(), text, sender: pid });
            }
        });
        Self { got, path, _dir: dir }
    }

    /// Each datagram with its sender's pid.
    fn from(&self) -> Vec<(String, Option<i32>)> {
        self.got.lock().unwrap().iter().map(|d| (d.text.clone(), d.sender)).collect()
    }

    fn messages(&self) -> Vec<String> {
        self.got.lock().unwrap().iter().map(|d| d.text.clone()).collect()
    }

    /// The state changes, in order, without the watchdog and status lines.
    fn states(&self) -> Vec<String> {
        self.messages()
            .iter()
            .flat_map(|m| m.lines().map(str::to_string).collect::<Vec<_>>())
            .filter(|l| matches!(l.as_str(), "READY=1" | "RELOADING=1" | "STOPPING=1"))
            .collect()
    }

    fn wait_for(&self, what: &str, n: usize) {
        let until = Instant::now() + LONG;
        while self.states().iter().filter(|s| *s == what).count() < n {
            assert!(Instant::now() < until, "no {what} (#{n}); got: {:?}", self.messages());
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

#[test]
fn sd_notify_ready_reloading_stopping_status_and_watchdog_in_order() {
    let sink = NotifySink::new();
    let path = sink.path.clone();
    let mut server = Server::start_with(Path::new(BIN), &["--workers", "2", "--on-sigterm", "stop"], move |cmd| {
        cmd.env("NOTIFY_SOCKET", &path).env("WATCHDOG_USEC", "200000");
    });
    sink.wait_for("READY=1", 1);
    let ready = sink.messages().into_iter().find(|m| m.contains("READY=1")).unwrap();
    assert!(ready.contains("STATUS=2 of 2 workers ready"), "READY=1 before every worker was ready: {ready}");
    for (_, pid) in server.wait_ready(2) {
        let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
        assert!(!environ.split(|&b| b == 0).any(|kv| kv.starts_with(b"NOTIFY_SOCKET=")), "worker {pid} may notify");
    }

    // WATCHDOG_USEC=200ms: the loop pings every 100 ms while nothing happens.
    let until = Instant::now() + LONG;
    while sink.messages().iter().filter(|m| m.contains("WATCHDOG=1")).count() < 5 {
        assert!(Instant::now() < until, "the watchdog pings stopped: {:?}", sink.messages());
        std::thread::sleep(Duration::from_millis(20));
    }

    let mark = server.mark();
    server.signal("SIGHUP");
    sink.wait_for("READY=1", 2);
    // The second READY=1 comes with the end of the rolling restart.
    server.expect_log(mark, "the rolling restart's end", |l| l.contains("rolling restart end"), LONG);
    assert!(
        sink.messages().iter().any(|m| m.contains("STATUS=") && m.contains("rolling restart")),
        "no STATUS during the rolling restart: {:?}",
        sink.messages()
    );

    server.signal("SIGTERM");
    assert_eq!(server.wait_exit(LONG).expect("no exit after SIGTERM").code(), Some(0));
    assert_eq!(sink.states(), ["READY=1", "RELOADING=1", "READY=1", "STOPPING=1"], "{:?}", sink.messages());
    let reloading = sink.messages().into_iter().find(|m| m.contains("RELOADING=1")).unwrap();
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    let pings: Vec<Instant> =
        sink.got.lock().unwrap().iter().filter(|d| d.text.contains("WATCHDOG=1")).map(|d| d.at).collect();
    let longest = pings.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    // Half the interval is the schedule; the full interval is what systemd
    // would kill at. Generous for a busy machine, still far from "never".
    assert!(longest < Duration::from_secs(2), "a watchdog gap of {longest:?}");
}

#[test]
fn sd_notify_across_a_master_upgrade_the_old_master_names_the_new_main_pid_and_never_says_stopping() {
    let sink = NotifySink::new();
    let path = sink.path.clone();
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("master.pid");
    let args = ["--workers", "2", "--on-sigterm", "stop", "--pid-file", pid_file.to_str().unwrap()];
    let mut server = Server::start_with(Path::new(BIN), &args, move |cmd| {
        cmd.env("NOTIFY_SOCKET", &path).env("WATCHDOG_USEC", "200000");
    });
    sink.wait_for("READY=1", 1);
    let old = server.pid();
    server.signal("SIGUSR2");
    assert_eq!(server.wait_exit(LONG).expect("the old master never exited after SIGUSR2").code(), Some(0));
    // The new master writes the pid file after the hand-over, which may be a
    // moment after the old one exited: wait for it (a flake seen in CI-like runs).
    let until = Instant::now() + LONG;
    let new: i32 = loop {
        let named = std::fs::read_to_string(&pid_file).ok().and_then(|t| t.trim().parse::<i32>().ok());
        match named {
            Some(pid) if pid != old => break pid,
            _ if Instant::now() < until => std::thread::sleep(Duration::from_millis(20)),
            _ => panic!("the pid file never named the new master: {named:?}"),
        }
    };
    sink.wait_for("READY=1", 2);

    let from = sink.from();
    let mainpid = format!("MAINPID={new}");
    // The main pid (still the old master) says who the main pid is now:
    // what NotifyAccess=main accepts. Only then does the new master speak.
    let handed = from.iter().position(|(m, _)| m.contains(&mainpid)).expect("no MAINPID= for the new master");
    assert_eq!(from[handed].1, Some(old), "MAINPID= not sent by the old master: {from:?}");
    let first_new = from.iter().position(|(_, pid)| *pid == Some(new)).unwrap();
    assert!(handed < first_new, "the new master spoke before it was the main pid: {from:?}");
    assert!(from[first_new].0.contains("READY=1") && from[first_new].0.contains(&mainpid), "{from:?}");
    // The leaving master never says STOPPING=1 (the service is not stopping).
    assert!(!sink.states().contains(&"STOPPING=1".to_string()), "{from:?}");
    assert!(
        from[handed + 1..].iter().all(|(_, pid)| *pid != Some(old)),
        "the old master spoke after handing over: {from:?}"
    );
    // The watchdog is fed by the new master now.
    let until = Instant::now() + LONG;
    while sink.from().iter().filter(|(m, pid)| *pid == Some(new) && m.contains("WATCHDOG=1")).count() < 3 {
        assert!(Instant::now() < until, "the new master does not ping the watchdog: {:?}", sink.from());
        std::thread::sleep(Duration::from_millis(20));
    }

    // The new master, not our child, stops like any main pid.
    common::signal(new, "SIGTERM");
    sink.wait_for("STOPPING=1", 1);
    let until = Instant::now() + LONG;
    while common::alive(new) || !server.leftovers().is_empty() {
        assert!(Instant::now() < until, "the new master or its workers outlived SIGTERM; log:\n{}", server.dump());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_master_upgrade_under_socket_activation_hands_fd_3_over_and_serves_on() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pid_file = dir.path().join("master.pid");
    let mut server = start_activated(&listener, &["--workers", "1", "--pid-file", pid_file.to_str().unwrap()]);
    server.wait_ready(1);
    // Unlike systemd, the test lets its copy go: only the server holds the
    // socket now, so the upgrade has to pass it on.
    drop(listener);
    let mark = server.mark();
    server.signal("SIGUSR2");
    assert_eq!(server.wait_exit(LONG).expect("the old master never exited after SIGUSR2").code(), Some(0));
    let inherited = server.expect_log(mark, "the new master's listener", |l| l.contains("listening on "), LONG);
    assert!(inherited.text.contains(&format!("listening on {addr} (inherited from master pid")), "{}", inherited.text);
    let new: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    // The new master never sees the activation variables (they named the old one).
    let environ = std::fs::read(format!("/proc/{new}/environ")).unwrap();
    assert!(!environ.split(|&b| b == 0).any(|kv| kv.starts_with(b"LISTEN_")), "the new master got LISTEN_*");
    server.wait_ready(1);
    assert_eq!(get_new_conn(addr, "/healthz").unwrap().status, 200);
    common::signal(new, "SIGINT");
    let until = Instant::now() + LONG;
    while common::alive(new) || !server.leftovers().is_empty() {
        assert!(Instant::now() < until, "the new master or its workers outlived SIGINT; log:\n{}", server.dump());
        std::thread::sleep(Duration::from_millis(20));
    }
}
