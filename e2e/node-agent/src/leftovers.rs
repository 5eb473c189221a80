//! Process groups this node started, recorded on disk so that an agent restarted under the same node
//! name can end the ones its killed predecessor left behind (they would still hold their pod IPs).
//!
//! One file per running process group, `<state dir>/pids/<pid>`, holding the process's start time from
//! `/proc/<pid>/stat`: a PID the kernel has since given to another process has a different start time
//! and is left alone. Only `process` writes here, and only `kill_all` at startup signals.

use std::path::{Path, PathBuf};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tracing::{info, warn};

/// Records the group led by `pid`; returns the record to remove when the process has ended.
pub fn record(dir: &Path, pid: u32) -> Option<PathBuf> {
    let start = start_time(pid)?;
    let path = dir.join(pid.to_string());
    let written = std::fs::create_dir_all(dir).and_then(|()| std::fs::write(&path, start));
    match written {
        Ok(()) => Some(path),
        Err(error) => {
            warn!(pid, %error, "cannot record the process group; a crashed agent would leave it running");
            None
        }
    }
}

/// SIGKILLs every recorded group whose leader is still the recorded process; returns how many.
pub fn kill_all(dir: &Path) -> usize {
    let mut killed = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let pid = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse::<u32>().ok());
        let recorded = std::fs::read_to_string(&path).ok();
        if let Some(pid) = pid
            && recorded.is_some()
            && start_time(pid) == recorded
            && let Ok(raw) = i32::try_from(pid)
            && killpg(Pid::from_raw(raw), Signal::SIGKILL).is_ok()
        {
            info!(pid, "killed a process group left by an earlier agent");
            killed += 1;
        }
        let _ = std::fs::remove_file(&path);
    }
    killed
}

/// Field 22 of `/proc/<pid>/stat` (start time in clock ticks since boot), `None` for a gone process.
fn start_time(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may contain spaces: count from the last ')'.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_time_of_this_process_is_stable_and_gone_pids_have_none() {
        let me = std::process::id();
        assert!(start_time(me).is_some());
        assert_eq!(start_time(me), start_time(me));
        assert_eq!(start_time(u32::MAX), None);
    }

    #[test]
    fn a_record_whose_pid_was_reused_is_dropped_without_a_signal() {
        let dir = std::env::temp_dir().join(format!("ordersystem-leftovers-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        // Our own PID with a start time it never had: must not be signalled (this test would die).
        std::fs::write(dir.join(std::process::id().to_string()), "1").expect("record");
        assert_eq!(kill_all(&dir), 0);
        assert!(
            std::fs::read_dir(&dir).expect("dir").next().is_none(),
            "record removed"
        );
    }
}
