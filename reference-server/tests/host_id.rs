//! `--host-id` (issue 16, the fleet): every worker id a client sees carries the host's prefix, in the cluster and in single-process mode, and a bad id is refused at start-up.
// Tests may unwrap: a panic is the failure report.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::process::{Command, Stdio};

use common::{Server, get_new_conn};

#[test]
fn every_worker_id_carries_the_host_prefix() {
    let server = Server::start(&["--workers", "2", "--host-id", "b"]);
    let ready = server.wait_ready(2);
    // The admin's /workers (per host already) keeps the bare numbers.
    let numbers: BTreeSet<String> = ready.iter().map(|(id, _)| format!("b-{id}")).collect();
    let mut seen = BTreeSet::new();
    // New connections until both workers answered (the kernel picks the
    // acceptor, so a bounded number of tries rather than exactly two).
    for _ in 0..200 {
        let resp = get_new_conn(server.public, "/version").unwrap();
        let header = resp.header("x-worker-id").unwrap().to_string();
        assert_eq!(resp.json()["worker_id"], header.as_str(), "/version and the header agree");
        seen.insert(header);
        if seen.len() == numbers.len() {
            break;
        }
    }
    assert!(seen.is_subset(&numbers), "ids {seen:?} are not the workers' {numbers:?} with prefix b-");
}

#[test]
fn single_process_is_host_single() {
    let server = Server::start(&["--single", "--host-id", "a"]);
    let resp = get_new_conn(server.public, "/healthz").unwrap();
    assert_eq!(resp.header("x-worker-id"), Some("a-single"));
}

#[test]
fn a_host_id_that_cannot_be_a_header_is_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_reference-server"))
        .args(["--host-id", "a:b", "--listen", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a host id"));
}
