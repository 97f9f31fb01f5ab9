//! The harness over https against a third-party TLS server: nginx (Debian
//! nginx-light, installed by `make deps`) started by the test on a free
//! loopback port with a generated certificate, its own prefix and config.
//! Missing nginx fails the test, unless HARNESS_ALLOW_SKIP_NGINX=1 says a
//! skip is acceptable on this machine.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod chaos_support;
mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use harness::outcome::Handshake;
use support::tls::{Kind, TestPki, target_json};

/// nginx's binary: on PATH, or Debian's /usr/sbin (not on a user's PATH).
fn nginx_binary() -> Option<PathBuf> {
    let on_path =
        std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).map(|d| d.join("nginx")).find(|b| b.is_file()));
    on_path.or_else(|| Some(PathBuf::from("/usr/sbin/nginx")).filter(|b| b.is_file()))
}

/// An nginx master (foreground, one worker) killed when dropped.
struct Nginx {
    child: Child,
    port: u16,
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: fast shutdown of master and worker; then reap.
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::SIGTERM);
        for _ in 0..100 {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_nginx(bin: &Path, dir: &Path, cert: &support::tls::Issued) -> Nginx {
    let port = chaos_support::free_port();
    for sub in ["logs", "tmp"] {
        std::fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let d = dir.display();
    let conf = format!(
        "daemon off;\nworker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/logs/error.log warn;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/tmp/body;\n  proxy_temp_path {d}/tmp/proxy;\n\
         \x20 fastcgi_temp_path {d}/tmp/fastcgi;\n  uwsgi_temp_path {d}/tmp/uwsgi;\n  scgi_temp_path {d}/tmp/scgi;\n\
         \x20 server {{\n    listen 127.0.0.1:{port} ssl;\n    ssl_certificate {};\n    ssl_certificate_key {};\n\
         \x20   keepalive_requests 100000;\n    location / {{ default_type text/plain; return 200 \"ok\\n\"; }}\n  }}\n}}\n",
        cert.cert.display(),
        cert.key.display()
    );
    let conf_path = dir.join("nginx.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let child = Command::new(bin)
        .args(["-p", &d.to_string(), "-c", conf_path.to_str().unwrap(), "-e", &format!("{d}/logs/error.log")])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let mut nginx = Nginx { child, port };
    for _ in 0..250 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return nginx;
        }
        if let Ok(Some(status)) = nginx.child.try_wait() {
            let log = std::fs::read_to_string(dir.join("logs/error.log")).unwrap_or_default();
            panic!("nginx exited with {status} before listening:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("nginx did not listen on 127.0.0.1:{port} within 5 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_harness_passes_against_nginx_over_https() {
    let Some(bin) = nginx_binary() else {
        if std::env::var("HARNESS_ALLOW_SKIP_NGINX").as_deref() == Ok("1") {
            eprintln!("SKIPPED: nginx is not installed (HARNESS_ALLOW_SKIP_NGINX=1); `make deps` installs nginx-light");
            return;
        }
        panic!("nginx is not installed: run `make deps` (Debian nginx-light), or set HARNESS_ALLOW_SKIP_NGINX=1");
    };
    let pki = TestPki::new();
    let cert = pki.issue("nginx", Kind::Good);
    let dir = tempfile::tempdir().unwrap();
    let nginx = start_nginx(&bin, dir.path(), &cert);
    let url = format!("https://127.0.0.1:{}", nginx.port);
    // Shoppers on their own connections, which go idle (100 ms) before the
    // second step (300 ms later), so each shopper connects twice and the
    // second resumes its own session from nginx's ticket; and a keep-alive
    // pool.
    let per_shopper =
        r#"{"model": "per_shopper", "idle_timeout": "100ms"}, "think": {"kind": "constant", "duration": "300ms"}"#;
    for (connections, shoppers) in [(per_shopper, 40), (r#"{"model": "pool", "size": 4}"#, 200)] {
        let json = format!(
            r#"{{"name": "nginx-tls", "seed": 5, "target": {}, "shoppers": {shoppers},
                 "arrival": [{{"duration": "1s", "rate": {shoppers}}}], "arrival_process": "uniform",
                 "connections": {connections},
                 "journeys": [{{"name": "j", "steps": [{{"name": "get", "path": "/", "timeout": "3s"}},
                                                        {{"name": "again", "path": "/x", "timeout": "3s"}}]}}],
                 "gates": {{"max_dropped": 0}}}}"#,
            target_json(&url, &pki.ca_file)
        );
        let run_dir = dir.path().join(format!("run-{shoppers}"));
        let (s, records) = support::run(&json, &run_dir).await;
        assert_eq!(s.exit_code, 0, "{connections}: {:?} {:?}", support::failures(&s), s.gates);
        assert_eq!(s.totals.ok, 2 * shoppers, "{connections}: {:?}", support::failures(&s));
        let tls = s.tls.as_ref().unwrap();
        assert!(tls.handshakes_full >= 1, "{tls:?}");
        if connections.contains("per_shopper") {
            // A shopper is a browser: a full handshake first (no other
            // shopper's session), then its own session resumed.
            for r in &records {
                let want = if r.step == "again" { Handshake::Resumed } else { Handshake::Full };
                assert_eq!(r.handshake, want, "shopper {} step {}: {tls:?}", r.shopper, r.step);
            }
        } else {
            // The pool's connections are kept alive: most requests reuse one.
            assert!(records.iter().filter(|r| r.reused).all(|r| r.handshake == Handshake::None));
            assert!(records.iter().filter(|r| r.reused).count() > 100, "{tls:?}");
        }
    }
    drop(nginx);
}
