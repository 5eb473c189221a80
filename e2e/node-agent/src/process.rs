//! One container run as one host process: spawn, signal, wait.
//!
//! The process leads its own process group, so signals reach whatever it forks. When the container has
//! volume mounts it starts through `unshare --mount --propagation private` and a tiny `sh` script that
//! bind-mounts each volume directory at its `mountPath` and then `exec`s the binary: the mounts exist
//! only in that process's mount namespace, so every pod sees its own
//! `/var/run/secrets/kubernetes.io/serviceaccount` while the host sees an empty mount point (created if
//! missing, which is logged). A container with `readOnlyRootFilesystem` gets the same wrapper, which
//! after the volume mounts remounts `/` read-only in that namespace: writes outside its writable volumes
//! fail with EROFS, as in a container runtime. `unshare` without `--fork` and `exec` keep the binary at
//! the spawned PID.
//! Needs root (or CAP_SYS_ADMIN). Output goes, appended across restarts, to the container's log file.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};
use tracing::{info, warn};

/// `$1` is `ro-root` or `rw-root`; then it bind-mounts `source` on `target` for each `source target ro|rw`
/// triple up to `--`, makes `/` read-only for `ro-root` (last: mount points are created on the host's
/// root first, and each volume is a mount of its own that stays writable), then execs the rest. A file
/// source gets a file mount point, a directory source a directory. The pod's PATH may not reach the
/// system tools, so the script uses its own and restores the pod's before `exec`.
const MOUNT_SCRIPT: &str = r#"
pod_path=$PATH
PATH=/usr/sbin:/usr/bin:/sbin:/bin
root=$1
shift
while [ "$1" != "--" ]; do
  if [ -d "$1" ]; then mkdir -p "$2"; else mkdir -p "$(dirname "$2")" && touch "$2"; fi || exit 121
  mount --bind "$1" "$2" || exit 121
  if [ "$3" = ro ]; then mount -o remount,bind,ro "$2" || exit 121; fi
  shift 3
done
shift
if [ "$root" = ro-root ]; then
  mount -o remount,bind,ro / || { echo "node agent: cannot make / read-only for readOnlyRootFilesystem" >&2; exit 121; }
fi
PATH=$pod_path
exec "$@"
"#;

/// util-linux `unshare`, which creates the container's mount namespace.
const UNSHARE: &str = "/usr/bin/unshare";

/// PATH for the process (and the `unshare`/`sh` wrapper) when the pod spec sets none: the environment
/// is cleared so the agent's own variables never leak into a pod.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("failed to open log file {path}")]
    OpenLog {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to spawn {program}")]
    Spawn {
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to wait for process {pid}")]
    Wait {
        pid: u32,
        #[source]
        source: std::io::Error,
    },
}

/// A volume directory (or file) seen by the container at `target`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub source: PathBuf,
    pub target: PathBuf,
    pub read_only: bool,
}

/// Everything needed to start the container's process.
#[derive(Debug, Clone)]
pub struct Launch {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
    pub working_dir: PathBuf,
    pub mounts: Vec<Mount>,
    /// The container's `securityContext.readOnlyRootFilesystem`.
    pub read_only_root: bool,
    pub log_path: PathBuf,
    /// Where the running process group is recorded (see `leftovers`).
    pub pid_dir: PathBuf,
}

/// A started process and the PID of its group.
#[derive(Debug)]
pub struct Running {
    child: Child,
    pid: u32,
    record: Option<PathBuf>,
}

/// How a process ended, in container terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    /// The exit code, or 128 + signal number like container runtimes report it.
    pub code: i32,
    pub signal: Option<i32>,
}

impl From<ExitStatus> for Exit {
    fn from(status: ExitStatus) -> Self {
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(code), _) => Exit { code, signal: None },
            (None, Some(signal)) => Exit {
                code: 128 + signal,
                signal: Some(signal),
            },
            (None, None) => Exit {
                code: -1,
                signal: None,
            },
        }
    }
}

/// Starts the process described by `launch`.
pub fn spawn(launch: &Launch) -> Result<Running, Error> {
    let log_err = |source| Error::OpenLog {
        path: launch.log_path.clone(),
        source,
    };
    if let Some(parent) = launch.log_path.parent() {
        std::fs::create_dir_all(parent).map_err(log_err)?;
    }
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&launch.log_path)
        .map_err(log_err)?;
    let stderr = log.try_clone().map_err(log_err)?;
    let mut command = wrapped(launch);
    command
        .env_clear()
        .envs(launch.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .current_dir(&launch.working_dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(stderr)
        .process_group(0)
        // If the agent itself dies unexpectedly, at least the leader does not outlive it.
        .kill_on_drop(true);
    if !launch.env.iter().any(|(k, _)| k == "PATH") {
        command.env("PATH", DEFAULT_PATH);
    }
    let child = command.spawn().map_err(|source| Error::Spawn {
        program: launch.program.clone(),
        source,
    })?;
    let pid = child.id().unwrap_or_default();
    let record = crate::leftovers::record(&launch.pid_dir, pid);
    Ok(Running { child, pid, record })
}

/// The command line: the binary itself, or the binary behind the mount-namespace wrapper.
fn wrapped(launch: &Launch) -> Command {
    if launch.mounts.is_empty() && !launch.read_only_root {
        let mut command = Command::new(&launch.program);
        command.args(&launch.args);
        return command;
    }
    // Absolute paths: the lookup would use the pod's PATH.
    let mut command = Command::new(UNSHARE);
    command.args([
        "--mount",
        "--propagation",
        "private",
        "--",
        "/bin/sh",
        "-c",
        MOUNT_SCRIPT,
        "sh",
        if launch.read_only_root {
            "ro-root"
        } else {
            "rw-root"
        },
    ]);
    for mount in &launch.mounts {
        if !mount.target.exists() {
            info!(target = %mount.target.display(), "override: creating a mount point on the host (empty outside the pod)");
        }
        command
            .arg(&mount.source)
            .arg(&mount.target)
            .arg(if mount.read_only { "ro" } else { "rw" });
    }
    command.arg("--").arg(&launch.program).args(&launch.args);
    command
}

impl Running {
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Waits for the process to end.
    pub async fn wait(&mut self) -> Result<Exit, Error> {
        let status = self.child.wait().await.map_err(|source| Error::Wait {
            pid: self.pid,
            source,
        })?;
        if let Some(record) = self.record.take() {
            let _ = std::fs::remove_file(record);
        }
        Ok(status.into())
    }

    /// Sends `signal` to the whole process group. A group that is already gone is not an error.
    pub fn signal(&self, signal: Signal) {
        let Ok(pid) = i32::try_from(self.pid) else { return };
        if let Err(errno) = killpg(Pid::from_raw(pid), signal)
            && errno != nix::errno::Errno::ESRCH
        {
            warn!(pid, %signal, %errno, "failed to signal process group");
        }
    }

    /// SIGTERM, up to `grace` for the process to exit, then SIGKILL; returns how it ended.
    pub async fn stop(&mut self, grace: Duration) -> Result<Exit, Error> {
        self.signal(Signal::SIGTERM);
        if let Ok(exit) = tokio::time::timeout(grace, self.wait()).await {
            // Children that ignored the leader's exit get no grace of their own.
            self.signal(Signal::SIGKILL);
            return exit;
        }
        warn!(
            pid = self.pid,
            grace_seconds = grace.as_secs(),
            "grace period over, sending SIGKILL"
        );
        self.signal(Signal::SIGKILL);
        self.wait().await
    }
}

/// `<state dir>/logs/<namespace>_<pod>_<container>.log`.
pub fn log_path(state_dir: &Path, namespace: &str, pod: &str, container: &str) -> PathBuf {
    state_dir
        .join("logs")
        .join(format!("{namespace}_{pod}_{container}.log"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch(dir: &Path, script: &str) -> Launch {
        Launch {
            program: PathBuf::from("/bin/sh"),
            args: vec!["-c".into(), script.into()],
            env: vec![("GREETING".into(), "hello".into())],
            working_dir: dir.to_path_buf(),
            mounts: vec![],
            read_only_root: false,
            log_path: dir.join("out.log"),
            pid_dir: dir.join("pids"),
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ordersystem-node-agent-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[tokio::test]
    async fn output_goes_to_the_log_and_env_is_only_the_pods() {
        let dir = temp_dir("log");
        let mut running = spawn(&launch(&dir, "echo $GREETING; echo home=$HOME; exit 3")).expect("spawn");
        assert_eq!(
            running.wait().await.expect("wait"),
            Exit {
                code: 3,
                signal: None
            }
        );
        let log = std::fs::read_to_string(dir.join("out.log")).expect("log");
        assert_eq!(log, "hello\nhome=\n");
    }

    #[tokio::test]
    async fn mounts_are_private_to_the_process_and_the_pods_path_is_kept() {
        let dir = temp_dir("mount");
        let volume = dir.join("volume");
        std::fs::create_dir_all(&volume).expect("volume dir");
        std::fs::write(volume.join("token"), "abc").expect("token");
        let target = dir.join("mnt/serviceaccount");
        // Builtins only: the pod's PATH reaches no tools, yet the wrapper must still mount.
        let script = format!("read t < {}/token; echo \"$t $PATH\"", target.display());
        let mut launch = launch(&dir, &script);
        launch.env = vec![("PATH".into(), "/nowhere".into())];
        launch.mounts = vec![Mount {
            source: volume,
            target: target.clone(),
            read_only: true,
        }];
        let mut running = spawn(&launch).expect("spawn");
        let exit = running.wait().await.expect("wait");
        let log = std::fs::read_to_string(dir.join("out.log")).expect("log");
        assert_eq!((exit.code, log.as_str()), (0, "abc /nowhere\n"));
        assert!(
            !target.join("token").exists(),
            "the host sees only the empty mount point"
        );
    }

    #[tokio::test]
    async fn a_read_only_root_refuses_writes_except_in_writable_volumes() {
        use std::os::unix::fs::MetadataExt;
        let dir = temp_dir("ro-root");
        let device = |path: &Path| std::fs::metadata(path).expect("stat").dev();
        // Only `/` itself is remounted: a scratch dir on another mount (a tmpfs /tmp) proves nothing.
        assert_eq!(
            device(&dir),
            device(Path::new("/")),
            "{} must be on the root filesystem for this test (set TMPDIR)",
            dir.display()
        );
        let volume = dir.join("scratch");
        std::fs::create_dir_all(&volume).expect("volume dir");
        let target = dir.join("mnt/scratch");
        let outside = dir.join("outside");
        let script = format!(
            "echo a > {inside}/file && echo inside-ok; echo b > {outside} || echo outside-refused",
            inside = target.display(),
            outside = outside.display()
        );
        let mut launch = launch(&dir, &script);
        launch.read_only_root = true;
        launch.mounts = vec![Mount {
            source: volume.clone(),
            target,
            read_only: false,
        }];
        let mut running = spawn(&launch).expect("spawn");
        running.wait().await.expect("wait");
        let log = std::fs::read_to_string(dir.join("out.log")).expect("log");
        assert!(
            log.contains("inside-ok"),
            "the writable volume takes writes:\n{log}"
        );
        assert!(
            log.contains("Read-only file system"),
            "the root refuses them:\n{log}"
        );
        assert!(log.contains("outside-refused"), "log:\n{log}");
        assert!(!outside.exists(), "nothing was written outside the volume");
        assert_eq!(
            std::fs::read_to_string(volume.join("file")).expect("volume file"),
            "a\n"
        );
        // The host's root stays writable: the remount lived only in the process's namespace.
        std::fs::write(&outside, "host").expect("host root still writable");
    }

    #[tokio::test]
    async fn stop_kills_a_process_that_ignores_sigterm_after_the_grace_period() {
        let dir = temp_dir("stop");
        let script = "trap '' TERM; echo trapped; while :; do sleep 1; done";
        let mut running = spawn(&launch(&dir, script)).expect("spawn");
        // SIGTERM before the trap is installed would end the shell early; wait until it says so.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(dir.join("out.log"))
            .unwrap_or_default()
            .contains("trapped")
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the script never installed its trap"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let exit = running.stop(Duration::from_millis(300)).await.expect("stop");
        assert_eq!(exit.signal, Some(Signal::SIGKILL as i32));
    }
}
