//! Per-session cgroups: each session (its compositor and every client it starts) runs in a
//! cgroup of its own with memory, CPU-weight and process-count limits, so one runaway session
//! is the only thing the kernel's OOM killer touches and the only thing that slows down.
//!
//! Two backends behind [`Backend`]: [`v2`] (the unified hierarchy, used when it is mounted with
//! the memory controller available) and [`v1`] (separate `memory`, `cpu`, `cpuacct` and `pids`
//! hierarchies). [`detect`] picks one. `wrsessd` creates, fills and removes the groups; the
//! daemon only reads a session's usage for `wradm show` ([`usage_of_pid`]), which needs nothing
//! but world-readable files.

pub mod v1;
pub mod v2;

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

/// Limits applied to one session's cgroup. Zero means "no limit" for the memory and process
/// count; the CPU weight is relative to other sessions (100 = the same share as a default one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Memory the session may use (RAM and swap), in MiB; over it, the OOM killer acts inside
    /// the session and the launcher ends the session.
    pub memory_max_mib: u64,
    /// CPU weight, 1–10000 (cgroup v2 `cpu.weight`; v1 `cpu.shares` = weight × 1024 / 100).
    pub cpu_weight: u32,
    /// Processes and threads the session may have at once.
    pub tasks_max: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_max_mib: 4096,
            cpu_weight: 100,
            tasks_max: 4096,
        }
    }
}

impl Limits {
    /// Greeters are a compositor and a login form: much less is plenty.
    pub fn greeter_default() -> Self {
        Limits {
            memory_max_mib: 512,
            cpu_weight: 100,
            tasks_max: 256,
        }
    }

    /// The weight clamped to what cgroup v2 accepts.
    pub fn weight(&self) -> u64 {
        u64::from(self.cpu_weight.clamp(1, 10_000))
    }

    pub fn memory_max_bytes(&self) -> Option<u64> {
        (self.memory_max_mib > 0).then(|| self.memory_max_mib.saturating_mul(1024 * 1024))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error(
        "no usable cgroup hierarchy: no cgroup2 mount with the memory controller and no cgroup v1 \
         memory hierarchy in /proc/self/mountinfo"
    )]
    NoHierarchy,
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("process {pid} is not in a session cgroup ({detail})")]
    NotInSession { pid: u32, detail: String },
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> CgroupError + '_ {
    move |source| CgroupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What a session used, read from its cgroup. `None`: the controller is not there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub cpu_usec: Option<u64>,
    pub memory_current: Option<u64>,
    pub memory_peak: Option<u64>,
    pub memory_max: Option<u64>,
}

/// One session's cgroup: a directory per mounted hierarchy (one for v2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    /// Every directory of the group; processes join each of them.
    pub dirs: Vec<PathBuf>,
    /// Where the memory files are (and the OOM counters).
    pub memory: Option<PathBuf>,
    /// Where the CPU time is counted.
    pub cpu_time: Option<PathBuf>,
}

impl Group {
    /// The group's `cgroup.procs` files, opened for writing (close-on-exec). A child writes
    /// "0" to each between fork and exec (see [`join_current`]), so it is in the group before
    /// it runs a single instruction of the session and nothing it starts escapes.
    pub fn join_files(&self) -> Result<Vec<fs::File>, CgroupError> {
        self.dirs
            .iter()
            .map(|dir| {
                let path = dir.join("cgroup.procs");
                fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .map_err(io_err(&path))
            })
            .collect()
    }

    /// The processes in the group now.
    pub fn pids(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = self
            .dirs
            .iter()
            .filter_map(|dir| fs::read_to_string(dir.join("cgroup.procs")).ok())
            .flat_map(|text| {
                text.lines()
                    .filter_map(|l| l.trim().parse().ok())
                    .collect::<Vec<u32>>()
            })
            .collect();
        pids.sort_unstable();
        pids.dedup();
        pids
    }

    /// Sends `signal` to every process in the group.
    pub fn signal_all(&self, signal: i32) {
        for pid in self.pids() {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe {
                libc::kill(pid as libc::pid_t, signal);
            }
        }
    }

    /// Kills what is left in the group and removes its directories. Waits up to `wait` for the
    /// killed processes to leave (the kernel removes them as they are reaped).
    pub fn remove(&self, wait: std::time::Duration) -> Result<(), CgroupError> {
        let deadline = std::time::Instant::now() + wait;
        loop {
            let left = self.pids();
            if left.is_empty() || std::time::Instant::now() >= deadline {
                break;
            }
            self.signal_all(libc::SIGKILL);
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let mut first_err = None;
        for dir in &self.dirs {
            match fs::remove_dir(dir) {
                Ok(()) => {}
                Err(err) if err.kind() == io::ErrorKind::NotFound => {}
                Err(err) => {
                    first_err.get_or_insert(CgroupError::Io {
                        path: dir.clone(),
                        source: err,
                    });
                }
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// The last path component: the session's id.
    pub fn name(&self) -> Option<&str> {
        self.dirs.first()?.file_name()?.to_str()
    }
}

/// Writes "0" to every file: moves the calling process into the group. Only system calls, so
/// it may run between fork and exec.
pub fn join_current(files: &[std::os::fd::RawFd]) -> io::Result<()> {
    for fd in files {
        // SAFETY: write on a file descriptor we own, from a static buffer.
        let n = unsafe { libc::write(*fd, b"0".as_ptr().cast(), 1) };
        if n != 1 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// A cgroup implementation: how groups are made, limited and read.
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// "v1" or "v2", for logs.
    fn version(&self) -> &'static str;
    /// Creates the group `parent/name` (removing a stale one of that name first) and applies
    /// `limits` to it.
    fn create(&self, parent: &str, name: &str, limits: &Limits) -> Result<Group, CgroupError>;
    /// The group process `pid` is in, from `/proc/PID/cgroup`.
    fn group_of(&self, pid: u32) -> Result<Group, CgroupError>;
    /// How many times the OOM killer killed a process in the group so far.
    fn oom_kills(&self, group: &Group) -> u64;
    /// What the group used.
    fn usage(&self, group: &Group) -> Usage;
}

/// The backend this machine supports: v2 when a cgroup2 mount offers the memory controller,
/// else v1 when a memory hierarchy is mounted.
pub fn detect() -> Result<Box<dyn Backend>, CgroupError> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")
        .map_err(io_err(Path::new("/proc/self/mountinfo")))?;
    let mounts = parse_mountinfo(&mountinfo);
    if let Some(v2) = v2::V2::from_mounts(&mounts) {
        return Ok(Box::new(v2));
    }
    if let Some(v1) = v1::V1::from_mounts(&mounts) {
        return Ok(Box::new(v1));
    }
    Err(CgroupError::NoHierarchy)
}

/// A cgroup filesystem mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub point: PathBuf,
    /// `cgroup` or `cgroup2`.
    pub fstype: String,
    /// Super options: for v1, the controllers of the hierarchy among them.
    pub options: Vec<String>,
}

/// The cgroup mounts in a `/proc/self/mountinfo` text.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let point = left.split_whitespace().nth(4)?;
            let mut right = right.split_whitespace();
            let fstype = right.next()?;
            let _source = right.next();
            let options = right.next().unwrap_or_default();
            (fstype == "cgroup" || fstype == "cgroup2").then(|| Mount {
                point: PathBuf::from(unescape_mount(point)),
                fstype: fstype.to_string(),
                options: options.split(',').map(str::to_string).collect(),
            })
        })
        .collect()
}

/// mountinfo writes space, tab, newline and backslash as octal escapes.
fn unescape_mount(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            if let Some(v) = s
                .get(i + 1..i + 4)
                .and_then(|o| u8::from_str_radix(o, 8).ok())
            {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A cgroup path from `/proc/PID/cgroup` joined under a mount point.
pub(crate) fn under(mount: &Path, cgroup_path: &str) -> PathBuf {
    mount.join(cgroup_path.trim_start_matches('/'))
}

/// Reads a file holding one number ("max" or an absurd v1 "unlimited" value reads as `None`).
pub(crate) fn read_number(path: &Path) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    let value: u64 = text.trim().parse().ok()?;
    // v1 says "unlimited" with PAGE_COUNTER_MAX pages in bytes, just under i64::MAX.
    (value < (1 << 62)).then_some(value)
}

/// `key value` lines (memory.events, cpu.stat, memory.oom_control): the value of `key`.
pub(crate) fn read_key(path: &Path, key: &str) -> Option<u64> {
    let text = fs::read_to_string(path).ok()?;
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

pub(crate) fn write_file(path: &Path, value: &str) -> Result<(), CgroupError> {
    fs::write(path, value).map_err(io_err(path))
}

/// Creates `dir`, first removing an empty stale one (a session of that name whose launcher died
/// before cleaning up).
pub(crate) fn make_dir(dir: &Path) -> Result<(), CgroupError> {
    if dir.exists() {
        let _ = fs::remove_dir(dir);
    }
    match fs::create_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(err) => Err(CgroupError::Io {
            path: dir.to_path_buf(),
            source: err,
        }),
    }
}

/// The usage of session `session`'s cgroup, found from its process: `None` when there is no
/// hierarchy or the process is not in a group named after the session.
#[allow(dead_code)] // The daemon's part; the launcher reads usage through its backend.
pub fn usage_of_pid(pid: u32, session: &str) -> Option<Usage> {
    let backend = detect().ok()?;
    let group = backend.group_of(pid).ok()?;
    (group.name() == Some(session)).then(|| backend.usage(&group))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
25 30 0:22 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw,nsdelegate
27 25 0:24 / /sys/fs/cgroup/memory rw,nosuid - cgroup cgroup rw,memory
28 25 0:25 / /sys/fs/cgroup/cpu rw,nosuid - cgroup cgroup rw,cpu
29 25 0:26 / /sys/fs/cgroup/cpu\\040acct rw,nosuid - cgroup cgroup rw,cpuacct
30 25 0:27 / /sys/fs/cgroup/pids rw,nosuid - cgroup cgroup rw,pids
";

    #[test]
    fn mountinfo_lists_cgroup_mounts_only() {
        let mounts = parse_mountinfo(MOUNTINFO);
        assert_eq!(mounts.len(), 5);
        assert_eq!(mounts[0].fstype, "cgroup2");
        assert_eq!(mounts[0].point, Path::new("/sys/fs/cgroup/unified"));
        assert_eq!(mounts[1].options, ["rw", "memory"]);
        assert_eq!(mounts[3].point, Path::new("/sys/fs/cgroup/cpu acct"));
    }

    #[test]
    fn limits_convert() {
        let limits = Limits {
            memory_max_mib: 64,
            cpu_weight: 0,
            tasks_max: 0,
        };
        assert_eq!(limits.memory_max_bytes(), Some(64 << 20));
        assert_eq!(limits.weight(), 1);
        assert_eq!(
            Limits {
                memory_max_mib: 0,
                ..limits
            }
            .memory_max_bytes(),
            None
        );
    }
}
