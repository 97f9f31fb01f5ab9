//! `--pid-file`: where a supervisor or the harness finds the current master
//! (docs/CHAOS.md: an attached target is followed through its pid file).
//! Written atomically (a temporary file in the same directory, renamed over
//! the old one), so a reader never sees a half-written pid, by whichever
//! master is current: at start-up, and by a new master once a binary upgrade
//! (SIGUSR2) has handed over to it. Not for: locking or refusing a second
//! server (that is what the bound port does).

use std::path::Path;

use anyhow::{Context, Result};

/// Write `pid` and a newline to `path`, replacing it atomically.
pub fn write(path: &Path, pid: u32) -> Result<()> {
    let name = path.file_name().with_context(|| format!("--pid-file {}: not a file path", path.display()))?;
    let mut tmp_name = name.to_os_string();
    tmp_name.push(format!(".tmp.{pid}"));
    let tmp = path.with_file_name(tmp_name);
    std::fs::write(&tmp, format!("{pid}\n"))
        .with_context(|| format!("cannot write the pid file {} (is its directory writable?)", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| {
        let _ = std::fs::remove_file(&tmp);
        format!("cannot rename {} to the pid file {}", tmp.display(), path.display())
    })
}

/// Remove `path` if it still holds `pid`: after an upgrade it names the new
/// master, whose file the old one must leave alone. Best effort.
pub fn remove_if_ours(path: &Path, pid: u32) {
    let ours = std::fs::read_to_string(path).is_ok_and(|text| text.trim().parse::<u32>().ok() == Some(pid));
    if ours {
        let _ = std::fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_atomically_and_removed_only_by_its_owner() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.pid");
        write(&path, 41).unwrap();
        write(&path, 42).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "42\n");
        // Nothing but the pid file is left in the directory.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        remove_if_ours(&path, 41);
        assert!(path.exists(), "a master removed a pid file that names another");
        remove_if_ours(&path, 42);
        assert!(!path.exists());
    }
}
