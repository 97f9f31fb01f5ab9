//! The target's process tree, read from /proc: which processes are its
//! workers, when each started (for the `oldest` pick), how much CPU each has
//! used (for the `busiest` pick), and whether a pid is still alive.
//!
//! Works for any pre-fork server (nginx master + workers, gunicorn, a node
//! cluster, the reference server), because it only looks at parent/child
//! links. Linux only. Not for sending signals (chaos/faults.rs does that) nor for
//! starting processes (target.rs).
//!
//! Parsing /proc/<pid>/stat is a dozen lines; the `procfs` crate would bring
//! a much larger dependency for the four fields used here.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io;
use std::path::PathBuf;

/// A process id as the kernel gives it.
pub type Pid = i32;

#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    #[error("cannot read {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("cannot parse {path}: {why}")]
    Parse { path: PathBuf, why: String },
}

/// The fields of /proc/<pid>/stat the harness uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcInfo {
    pub pid: Pid,
    pub ppid: Pid,
    /// Process name (truncated by the kernel to 15 bytes).
    pub comm: String,
    /// R, S, D, T (stopped), Z (zombie), X (dead), ...
    pub state: char,
    /// Start time in clock ticks after boot: smaller is older.
    pub start_ticks: u64,
    /// User + system CPU time in clock ticks.
    pub cpu_ticks: u64,
}

impl ProcInfo {
    /// A zombie (exited, not yet reaped by its parent) or dead process does
    /// not serve anything: it is not a live worker.
    pub fn is_live(&self) -> bool {
        !matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// Parse the text of /proc/<pid>/stat. The name in parentheses may itself
/// contain spaces and parentheses, so the fields are split after the LAST ')'.
pub fn parse_stat(text: &str) -> Result<ProcInfo, String> {
    let open = text.find('(').ok_or("no '(' before the process name")?;
    let close = text.rfind(')').ok_or("no ')' after the process name")?;
    if close < open {
        return Err("')' before '('".into());
    }
    let pid: Pid = text[..open].trim().parse().map_err(|e| format!("pid: {e}"))?;
    let comm = text[open + 1..close].to_string();
    // Fields from 3 (state) on; field N of proc(5) is rest[N - 3].
    let rest: Vec<&str> = text[close + 1..].split_whitespace().collect();
    let field = |n: usize, name: &str| -> Result<&str, String> {
        rest.get(n - 3).copied().ok_or_else(|| format!("missing field {n} ({name})"))
    };
    let num = |n: usize, name: &str| -> Result<u64, String> {
        field(n, name)?.parse::<u64>().map_err(|e| format!("field {n} ({name}): {e}"))
    };
    let state = field(3, "state")?.chars().next().ok_or("empty state field")?;
    let ppid: Pid = field(4, "ppid")?.parse().map_err(|e| format!("field 4 (ppid): {e}"))?;
    let cpu_ticks = num(14, "utime")? + num(15, "stime")?;
    let start_ticks = num(22, "starttime")?;
    Ok(ProcInfo { pid, ppid, comm, state, start_ticks, cpu_ticks })
}

/// Read one process's stat. `Ok(None)` if the process does not exist (any
/// more): processes come and go while the harness looks.
pub fn read(pid: Pid) -> Result<Option<ProcInfo>, ProcError> {
    let path = PathBuf::from(format!("/proc/{pid}/stat"));
    match fs::read_to_string(&path) {
        Ok(text) => parse_stat(&text).map(Some).map_err(|why| ProcError::Parse { path, why }),
        // ESRCH: the process exited between open and read.
        Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(nix::errno::Errno::ESRCH as i32) => {
            Ok(None)
        }
        Err(source) => Err(ProcError::Io { path, source }),
    }
}

/// Whether `pid` exists and is not a zombie.
pub fn is_alive(pid: Pid) -> bool {
    matches!(read(pid), Ok(Some(p)) if p.is_live())
}

/// Every process on the machine, keyed by pid.
pub fn snapshot() -> Result<BTreeMap<Pid, ProcInfo>, ProcError> {
    let dir = fs::read_dir("/proc").map_err(|source| ProcError::Io { path: "/proc".into(), source })?;
    let mut all = BTreeMap::new();
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<Pid>().ok()) else {
            continue;
        };
        if let Some(info) = read(pid)? {
            all.insert(pid, info);
        }
    }
    Ok(all)
}

/// Live direct children of `pid` in a snapshot, sorted by pid.
pub fn children_in(all: &BTreeMap<Pid, ProcInfo>, pid: Pid) -> Vec<ProcInfo> {
    all.values().filter(|p| p.ppid == pid && p.is_live()).cloned().collect()
}

/// Live descendants of `root` (children, grandchildren, ...) in a snapshot,
/// sorted by pid; `root` itself is not included.
pub fn descendants_in(all: &BTreeMap<Pid, ProcInfo>, root: Pid) -> Vec<ProcInfo> {
    let mut seen: HashSet<Pid> = HashSet::from([root]);
    let mut frontier = vec![root];
    let mut out = Vec::new();
    while let Some(parent) = frontier.pop() {
        for child in children_in(all, parent) {
            if seen.insert(child.pid) {
                frontier.push(child.pid);
                out.push(child);
            }
        }
    }
    out.sort_by_key(|p| p.pid);
    out
}

/// The target's master and its workers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerTree {
    /// The process whose children are the workers. Usually the target's own
    /// pid; deeper when the target is a wrapper (see [`worker_tree_in`]).
    pub master: Pid,
    /// Live workers sorted by pid.
    pub workers: Vec<ProcInfo>,
}

impl WorkerTree {
    pub fn pids(&self) -> Vec<Pid> {
        self.workers.iter().map(|w| w.pid).collect()
    }
}

/// Find the workers of the target whose top process is `root`. Workers are the
/// live direct children of the master. A wrapper (`sh -c`, `npm start`, a
/// supervisor script) sits above the real master with exactly one child that
/// itself has children; such single-child links are followed down to the
/// first process with several children or with children that have none.
/// A single-process target has no workers.
pub fn worker_tree_in(all: &BTreeMap<Pid, ProcInfo>, root: Pid) -> WorkerTree {
    let mut master = root;
    // Bounded: a chain cannot be longer than the process table.
    for _ in 0..all.len() {
        let kids = children_in(all, master);
        match kids.as_slice() {
            [only] if !children_in(all, only.pid).is_empty() => master = only.pid,
            _ => return WorkerTree { master, workers: kids },
        }
    }
    WorkerTree { master, workers: children_in(all, master) }
}

/// [`worker_tree_in`] on a fresh snapshot.
pub fn worker_tree(root: Pid) -> Result<WorkerTree, ProcError> {
    Ok(worker_tree_in(&snapshot()?, root))
}

/// The worker that started first; ties (same tick) go to the lower pid.
pub fn oldest(workers: &[ProcInfo]) -> Option<Pid> {
    workers.iter().min_by_key(|p| (p.start_ticks, p.pid)).map(|p| p.pid)
}

/// The worker that used the most CPU between two samples of the same
/// workers. Only processes present in both samples count (a pid that is new
/// in `after` may be a replacement with a reused pid). Ties go to the lower pid.
pub fn busiest(before: &[ProcInfo], after: &[ProcInfo]) -> Option<Pid> {
    after
        .iter()
        .filter_map(|a| {
            before
                .iter()
                .find(|b| b.pid == a.pid && b.start_ticks == a.start_ticks)
                .map(|b| (a.cpu_ticks.saturating_sub(b.cpu_ticks), a.pid))
        })
        // Highest delta first, then lowest pid.
        .max_by(|x, y| x.0.cmp(&y.0).then(y.1.cmp(&x.1)))
        .map(|(_, pid)| pid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pid: Pid, ppid: Pid, state: char, start: u64, cpu: u64) -> ProcInfo {
        ProcInfo { pid, ppid, comm: format!("p{pid}"), state, start_ticks: start, cpu_ticks: cpu }
    }

    fn table(ps: &[ProcInfo]) -> BTreeMap<Pid, ProcInfo> {
        ps.iter().map(|p| (p.pid, p.clone())).collect()
    }

    #[test]
    fn parses_stat_with_spaces_and_parens_in_name() {
        let text = "4242 (my (odd) name) S 17 4242 17 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 2 0 98765 1000 10 \
                    18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n";
        let info = parse_stat(text).unwrap();
        assert_eq!(info.pid, 4242);
        assert_eq!(info.ppid, 17);
        assert_eq!(info.comm, "my (odd) name");
        assert_eq!(info.state, 'S');
        assert_eq!(info.cpu_ticks, 10);
        assert_eq!(info.start_ticks, 98765);
    }

    #[test]
    fn rejects_truncated_stat() {
        let err = parse_stat("12 (x) S 1 12").unwrap_err();
        assert!(err.contains("utime"), "{err}");
        assert!(parse_stat("garbage").is_err());
    }

    #[test]
    fn reads_own_process() {
        let me = read(std::process::id() as Pid).unwrap().unwrap();
        assert_eq!(me.pid, std::process::id() as Pid);
        assert!(me.is_live());
        assert!(is_alive(me.pid));
        assert!(!is_alive(-5));
    }

    #[test]
    fn workers_are_live_children_and_wrappers_are_skipped() {
        // 1 (init) -> 10 (sh wrapper) -> 11 (master) -> 12, 13 (workers), 14 zombie
        let all = table(&[
            p(1, 0, 'S', 0, 0),
            p(10, 1, 'S', 5, 0),
            p(11, 10, 'S', 6, 0),
            p(12, 11, 'S', 7, 0),
            p(13, 11, 'R', 8, 0),
            p(14, 11, 'Z', 9, 0),
        ]);
        let tree = worker_tree_in(&all, 10);
        assert_eq!(tree.master, 11);
        assert_eq!(tree.pids(), vec![12, 13]);
        // Asked about the master itself: same answer.
        assert_eq!(worker_tree_in(&all, 11).pids(), vec![12, 13]);
        // A single worker under a master is still a worker (it has no children).
        let one = table(&[p(20, 1, 'S', 1, 0), p(21, 20, 'S', 2, 0)]);
        assert_eq!(worker_tree_in(&one, 20), WorkerTree { master: 20, workers: vec![p(21, 20, 'S', 2, 0)] });
        // A single-process target has none.
        assert!(worker_tree_in(&all, 13).workers.is_empty());
        assert_eq!(descendants_in(&all, 10).iter().map(|p| p.pid).collect::<Vec<_>>(), vec![11, 12, 13]);
    }

    #[test]
    fn oldest_and_busiest() {
        let before = vec![p(5, 1, 'S', 300, 10), p(6, 1, 'S', 100, 50), p(7, 1, 'S', 100, 0)];
        assert_eq!(oldest(&before), Some(6));
        let after = vec![p(5, 1, 'S', 300, 40), p(6, 1, 'S', 100, 55), p(8, 1, 'S', 400, 999)];
        // 8 is new (not in `before`), 7 is gone: 5 used 30 ticks, 6 used 5.
        assert_eq!(busiest(&before, &after), Some(5));
        // A reused pid with a different start time is a different process.
        let reused = vec![p(5, 1, 'S', 500, 400), p(6, 1, 'S', 100, 51)];
        assert_eq!(busiest(&before, &reused), Some(6));
        // Ties: lower pid.
        let tied = vec![p(5, 1, 'S', 300, 10), p(6, 1, 'S', 100, 50)];
        assert_eq!(busiest(&before, &tied), Some(5));
        assert_eq!(oldest(&[]), None);
        assert_eq!(busiest(&[], &after), None);
    }
}
