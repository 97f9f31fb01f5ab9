//! `--balance sticky`: clients (spread over 127.0.0.0/8 source addresses) keep
//! their worker with no faults, only a SIGKILLed worker's clients move (and
//! come back to its replacement), and a rolling restart ends live SSE streams
//! with a reconnect event inside the drain timeout, dropping no request.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{Conn, IO_TIMEOUT, Server, Traffic, connect_from};

fn client_ip(i: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10 + i))
}

/// One request on a fresh connection from `ip`; the serving worker id.
fn worker_for(addr: SocketAddr, ip: IpAddr) -> String {
    let mut c = Conn::open_from(addr, Some(ip)).unwrap();
    let r = c.get("/healthz").unwrap();
    assert_eq!(r.status, 200);
    r.header("x-worker-id").unwrap().to_string()
}

/// worker id -> slot, from the admin `/workers` table.
fn slots(server: &Server) -> BTreeMap<String, u64> {
    server.workers()["workers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| (w["id"].as_u64().unwrap().to_string(), w["slot"].as_u64().unwrap()))
        .collect()
}

/// A Server-Sent Events client for `/live/stock`, reading the chunked body.
struct Sse {
    reader: BufReader<TcpStream>,
    text: String,
    ended: bool,
}

#[derive(Debug, Clone)]
struct Event {
    name: String,
    id: Option<String>,
    data: serde_json::Value,
}

impl Sse {
    fn open(addr: SocketAddr, ip: IpAddr, last_id: Option<&str>) -> Sse {
        let mut stream = connect_from(addr, Some(ip)).unwrap();
        stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let extra = last_id.map(|id| format!("Last-Event-ID: {id}\r\n")).unwrap_or_default();
        write!(stream, "GET /live/stock?skus=door-1,door-2 HTTP/1.1\r\nHost: t\r\n{extra}\r\n").unwrap();
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert!(line.starts_with("HTTP/1.1 200"), "{line}");
        loop {
            line.clear();
            reader.read_line(&mut line).unwrap();
            if line.trim().is_empty() {
                break;
            }
        }
        Sse { reader, text: String::new(), ended: false }
    }

    /// The next event, or None when the body ended cleanly (last chunk).
    /// Comments (pings) and the `retry:` field are skipped.
    fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(i) = self.text.find("\n\n") {
                let block: String = self.text.drain(..i + 2).collect();
                let (mut name, mut id, mut data) = (None, None, None);
                for l in block.lines() {
                    if let Some(v) = l.strip_prefix("event: ") {
                        name = Some(v.to_string());
                    } else if let Some(v) = l.strip_prefix("id: ") {
                        id = Some(v.to_string());
                    } else if let Some(v) = l.strip_prefix("data: ") {
                        data = Some(serde_json::from_str(v).unwrap());
                    }
                }
                if let (Some(name), Some(data)) = (name, data) {
                    return Some(Event { name, id, data });
                }
                continue;
            }
            if self.ended {
                assert!(self.text.trim().is_empty(), "body ended inside an event: {:?}", self.text);
                return None;
            }
            let mut line = String::new();
            self.reader.read_line(&mut line).unwrap();
            let size = usize::from_str_radix(line.trim(), 16).unwrap_or_else(|_| panic!("bad chunk size {line:?}"));
            let mut chunk = vec![0; size + 2];
            self.reader.read_exact(&mut chunk).unwrap();
            if size == 0 {
                self.ended = true;
            } else {
                self.text.push_str(std::str::from_utf8(&chunk[..size]).unwrap());
            }
        }
    }

    fn expect(&mut self, name: &str) -> Event {
        loop {
            let e = self.next().unwrap_or_else(|| panic!("stream ended before a {name} event"));
            if e.name == name {
                return e;
            }
        }
    }
}

#[test]
fn every_client_keeps_its_worker_with_no_faults_and_resumes_its_stream() {
    let server = Server::start(&["--workers", "3", "--balance", "sticky", "--live-interval", "50ms"]);
    server.wait_ready(3);
    let addr = server.public;
    let until = Instant::now() + Duration::from_secs(4);
    let threads: Vec<_> = (0..24u8)
        .map(|i| {
            std::thread::spawn(move || {
                let ip = client_ip(i);
                let mut seen = BTreeSet::new();
                let mut requests = 0;
                // Keep-alive bursts and reconnects, like a shopper's session.
                while Instant::now() < until {
                    let mut c = Conn::open_from(addr, Some(ip)).unwrap();
                    for path in ["/healthz", "/products/sku-0001", "/version"] {
                        let r = c.get(path).unwrap();
                        assert_eq!(r.status, 200, "{path} from {ip}");
                        seen.insert(r.header("x-worker-id").unwrap().to_string());
                        requests += 1;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                (ip, seen, requests)
            })
        })
        .collect();
    let mut all = BTreeSet::new();
    let mut total = 0;
    for t in threads {
        let (ip, seen, requests) = t.join().unwrap();
        assert_eq!(seen.len(), 1, "client {ip} changed worker with no fault: {seen:?}");
        all.extend(seen);
        total += requests;
    }
    assert!(total >= 24 * 3, "only {total} requests");
    // 24 addresses over 3 slots: the hash spreads them over every worker.
    assert_eq!(all.len(), 3, "clients landed on {all:?}");
    // Every connection went through the master to its home slot.
    assert!(server.metric_sum("reference_sticky_handoffs_total") >= 24.0);
    assert_eq!(server.metric("reference_sticky_fallbacks_total"), 0.0);

    // Affinity is what makes the per-worker stream state usable: the same
    // client comes back to the same worker and resumes where it left off.
    for i in 0..4u8 {
        let mut sse = Sse::open(addr, client_ip(i), None);
        let hello = sse.expect("hello");
        assert_eq!(hello.data["resumed"], false);
        let snap = sse.expect("snapshot");
        drop(sse);
        let mut again = Sse::open(addr, client_ip(i), snap.id.as_deref());
        let hello2 = again.expect("hello");
        assert_eq!(hello2.data["worker_id"], hello.data["worker_id"]);
        assert_eq!(hello2.data["resumed"], true, "{hello2:?}");
    }
}

#[test]
fn sigkill_moves_only_the_dead_workers_clients_and_they_come_back_to_its_slot() {
    // A long --min-uptime makes the kill an early crash, so the slot stays
    // empty for the crash backoff: a window in which to see the fallback.
    let server =
        Server::start(&["--workers", "3", "--balance", "sticky", "--min-uptime", "120s", "--crash-backoff", "4s"]);
    server.wait_ready(3);
    let addr = server.public;
    let ips: Vec<IpAddr> = (0..24u8).map(client_ip).collect();
    let home: Vec<String> = ips.iter().map(|&ip| worker_for(addr, ip)).collect();
    for (ip, h) in ips.iter().zip(&home) {
        assert_eq!(&worker_for(addr, *ip), h, "{ip} moved with no fault");
    }
    let slot_of = slots(&server);
    let mut count: BTreeMap<&String, usize> = BTreeMap::new();
    for h in &home {
        *count.entry(h).or_default() += 1;
    }
    let victim = count.iter().max_by_key(|(_, n)| **n).map(|(w, _)| (*w).clone()).unwrap();
    let victim_slot = slot_of[&victim];
    let pid = server.workers()["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["id"].as_u64().unwrap().to_string() == victim)
        .unwrap()["pid"]
        .as_i64()
        .unwrap() as i32;

    let mark = server.mark();
    common::signal(pid, "SIGKILL");
    server.expect_log(
        mark,
        "the slot's respawn delayed",
        |l| l.contains(&format!("slot {victim_slot}: early crash 1")),
        Duration::from_secs(20),
    );
    // The slot is empty now: its clients are served by other slots, everyone
    // else stays where they were.
    let during: Vec<String> = ips.iter().map(|&ip| worker_for(addr, ip)).collect();
    let refilled = server.wait_log(
        mark,
        |l| l.contains(&format!("slot {victim_slot} ")) && l.contains(" ready in "),
        Duration::ZERO,
    );
    assert!(refilled.is_none(), "slot refilled before the check; raise --crash-backoff\n{}", server.dump());
    for ((ip, h), d) in ips.iter().zip(&home).zip(&during) {
        if *h == victim {
            assert_ne!(slot_of.get(d), Some(&victim_slot), "{ip}: served by the dead slot");
            assert!(slot_of.contains_key(d), "{ip}: served by unknown worker {d}");
        } else {
            assert_eq!(d, h, "{ip} moved although its worker is alive");
        }
    }
    let fallbacks = server.metric("reference_sticky_fallbacks_total");
    assert!(fallbacks >= 1.0, "the dead slot's clients were not counted as fallbacks");

    // The replacement takes the slot back, and its clients with it.
    server.expect_log(
        mark,
        "the replacement ready",
        |l| l.contains(&format!("slot {victim_slot} ")) && l.contains(" ready in "),
        Duration::from_secs(30),
    );
    server.wait_ready(3);
    let slot_of = slots(&server);
    let after: Vec<String> = ips.iter().map(|&ip| worker_for(addr, ip)).collect();
    let moved = home.iter().filter(|h| **h == victim).count();
    assert!(moved > 0);
    for ((ip, h), a) in ips.iter().zip(&home).zip(&after) {
        if *h == victim {
            assert_ne!(a, h, "{ip}: the dead worker answered");
            assert_eq!(slot_of[a], victim_slot, "{ip}: not back on its slot's replacement");
        } else {
            assert_eq!(a, h, "{ip} moved although its worker is alive");
        }
    }
}

#[test]
fn rolling_restart_ends_live_streams_inside_the_drain_timeout_and_drops_nothing() {
    let drain_timeout = Duration::from_secs(15);
    let server =
        Server::start(&["--workers", "3", "--balance", "sticky", "--live-interval", "50ms", "--drain-timeout", "15s"]);
    server.wait_ready(3);
    let addr = server.public;
    let before = slots(&server);

    // Streams open on every worker, each read on its own thread.
    let mut streams = Vec::new();
    for i in 0..12u8 {
        let ip = client_ip(i);
        let mut sse = Sse::open(addr, ip, None);
        let hello = sse.expect("hello");
        let snap = sse.expect("snapshot");
        streams.push((ip, sse, hello.data["worker_id"].as_str().unwrap().to_string(), snap.id.unwrap()));
    }
    let on: BTreeSet<&String> = streams.iter().map(|s| &s.2).collect();
    assert_eq!(on.len(), 3, "streams should cover every worker: {on:?}");
    let traffic = Traffic::start(addr, 2, 1, &["/healthz", "/products/sku-0001"]);
    std::thread::sleep(Duration::from_millis(300));

    let mark = server.mark();
    let hup_at = Instant::now();
    server.signal("SIGHUP");
    let readers: Vec<_> = streams
        .into_iter()
        .map(|(ip, mut sse, worker, mut last_id)| {
            std::thread::spawn(move || {
                // Read until the worker says reconnect; the body then ends.
                let reason = loop {
                    let e = sse.next().unwrap_or_else(|| panic!("{ip}: stream ended without a reconnect event"));
                    if let Some(id) = e.id {
                        last_id = id;
                    }
                    if e.name == "reconnect" {
                        break e.data["reason"].as_str().unwrap().to_string();
                    }
                };
                assert!(sse.next().is_none(), "{ip}: events after reconnect");
                let ended = hup_at.elapsed();
                // Reconnect as EventSource would, with the last id.
                let mut again = Sse::open(addr, ip, Some(&last_id));
                let hello = again.expect("hello");
                (ip, worker, reason, ended, hello.data["worker_id"].as_str().unwrap().to_string())
            })
        })
        .collect();
    server.expect_log(mark, "rolling restart end", |l| l.contains("rolling restart end"), Duration::from_secs(90));
    let results: Vec<_> = readers.into_iter().map(|r| r.join().unwrap()).collect();
    let tally = traffic.stop();

    let after = slots(&server);
    for (ip, old, reason, ended, new) in &results {
        assert_eq!(reason, "draining", "{ip}");
        assert!(*ended < drain_timeout, "{ip}: stream held {ended:?}");
        assert_ne!(new, old, "{ip}: reconnected to the drained worker");
        assert_eq!(after[new], before[old], "{ip}: reconnect left its slot");
    }
    let lines = server.lines();
    let drained: Vec<u64> = lines[mark..]
        .iter()
        .filter_map(|l| l.text.split("drained in ").nth(1)?.split(' ').next()?.parse().ok())
        .collect();
    assert_eq!(drained.len(), 3, "{}", server.dump());
    assert!(drained.iter().all(|&ms| ms < drain_timeout.as_millis() as u64), "{drained:?}");
    assert!(
        !lines[mark..].iter().any(|l| l.text.contains("SIGKILL")),
        "a drain was cut by SIGKILL:\n{}",
        server.dump()
    );
    assert!(tally.failures.is_empty(), "dropped requests: {:#?}", tally.failures);
    assert!(tally.ok > 0);
}
