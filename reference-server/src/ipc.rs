//! Master <-> worker messages: one JSON object per line over a socketpair.
//! The worker's end is inherited across exec; losing it means the master
//! died, which the worker treats as an order to drain.

use serde::{Deserialize, Serialize};

/// Counters a worker reports. Cumulative for the life of that process; the
/// master turns them into cluster totals that never go down.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub requests: u64,
    pub in_flight: u64,
    pub connections: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WorkerMsg {
    /// Accepting connections.
    Ready {
        pid: u32,
        version: String,
        build_id: String,
    },
    Heartbeat {
        counters: Counters,
    },
    /// Draining without the master's order (a SIGTERM sent to the worker
    /// itself, e.g. by `kill -TERM -<pgid>`): the master replaces it at once
    /// and counts a drain, not a crash.
    Draining {
        reason: String,
    },
    /// Could not start (e.g. the TLS certificate on disk does not load);
    /// the worker exits next. The master keeps the reason for its crash-loop
    /// and rolling-restart lines.
    Failed {
        error: String,
    },
    /// Drain finished: every connection closed; the worker exits next.
    Drained {
        counters: Counters,
        drain_ms: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum MasterMsg {
    /// Stop accepting, finish in-flight requests, then exit.
    Shutdown,
}

/// Encode one message as a JSON line.
pub fn encode<T: Serialize>(msg: &T) -> Vec<u8> {
    // Serialising these plain enums cannot fail.
    let mut line = serde_json::to_vec(msg).unwrap_or_default();
    line.push(b'\n');
    line
}

/// Split complete lines off the front of `buf`, leaving a partial line.
pub fn take_lines(buf: &mut Vec<u8>) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    while let Some(i) = buf.iter().position(|&b| b == b'\n') {
        let rest = buf.split_off(i + 1);
        let mut line = std::mem::replace(buf, rest);
        line.pop();
        out.push(line);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_framing() {
        let msg = WorkerMsg::Heartbeat { counters: Counters { requests: 3, in_flight: 1, connections: 2 } };
        let mut buf = encode(&msg);
        buf.extend_from_slice(&encode(&WorkerMsg::Ready { pid: 7, version: "0.1.0".into(), build_id: "abc".into() }));
        buf.extend_from_slice(b"{\"type\":\"drai");
        let lines = take_lines(&mut buf);
        assert_eq!(lines.len(), 2);
        let first: WorkerMsg = serde_json::from_slice(&lines[0]).unwrap();
        assert_eq!(first, msg);
        assert_eq!(buf, b"{\"type\":\"drai");
        let sd: MasterMsg = serde_json::from_slice(b"{\"type\":\"shutdown\"}").unwrap();
        assert_eq!(sd, MasterMsg::Shutdown);
    }
}
