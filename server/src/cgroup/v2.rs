//! cgroup v2, the unified hierarchy. Sessions live under `<mount>/<parent>/<id>`; the parent
//! (which holds no processes) delegates the memory, cpu and pids controllers to them.

use std::{fs, path::PathBuf};

use super::{
    io_err, make_dir, read_key, read_number, under, write_file, Backend, CgroupError, Group,
    Limits, Mount, Usage,
};

#[derive(Debug, Clone)]
pub struct V2 {
    mount: PathBuf,
}

/// The controllers we limit with; memory is the one that must be there.
const WANTED: [&str; 3] = ["memory", "cpu", "pids"];

impl V2 {
    /// A cgroup2 mount whose root offers the memory controller (an empty one, as next to v1
    /// hierarchies, is not usable).
    pub fn from_mounts(mounts: &[Mount]) -> Option<V2> {
        mounts
            .iter()
            .filter(|m| m.fstype == "cgroup2")
            .find(|m| {
                fs::read_to_string(m.point.join("cgroup.controllers"))
                    .is_ok_and(|c| c.split_whitespace().any(|c| c == "memory"))
            })
            .map(|m| V2 {
                mount: m.point.clone(),
            })
    }

    fn group_at(&self, relative: &str) -> Group {
        let dir = under(&self.mount, relative);
        Group {
            dirs: vec![dir.clone()],
            memory: Some(dir.clone()),
            cpu_time: Some(dir),
        }
    }

    /// Enables the controllers we use in `dir`'s children.
    fn delegate(&self, dir: &std::path::Path) -> Result<(), CgroupError> {
        let available = fs::read_to_string(dir.join("cgroup.controllers"))
            .map_err(io_err(&dir.join("cgroup.controllers")))?;
        let enable: Vec<String> = WANTED
            .iter()
            .filter(|c| available.split_whitespace().any(|a| a == **c))
            .map(|c| format!("+{c}"))
            .collect();
        write_file(&dir.join("cgroup.subtree_control"), &enable.join(" "))
    }
}

impl Backend for V2 {
    fn version(&self) -> &'static str {
        "v2"
    }

    fn create(&self, parent: &str, name: &str, limits: &Limits) -> Result<Group, CgroupError> {
        let parent = parent.trim_matches('/');
        let parent_dir = under(&self.mount, parent);
        make_dir(&parent_dir)?;
        self.delegate(&self.mount)?;
        self.delegate(&parent_dir)?;
        let group = self.group_at(&format!("{parent}/{name}"));
        let dir = &group.dirs[0];
        make_dir(dir)?;
        if let Some(bytes) = limits.memory_max_bytes() {
            write_file(&dir.join("memory.max"), &bytes.to_string())?;
            let swap = dir.join("memory.swap.max");
            if swap.exists() {
                write_file(&swap, "0")?;
            }
        }
        // The OOM killer takes the whole session at once instead of one process of it.
        let group_kill = dir.join("memory.oom.group");
        if group_kill.exists() {
            write_file(&group_kill, "1")?;
        }
        let weight = dir.join("cpu.weight");
        if weight.exists() {
            write_file(&weight, &limits.weight().to_string())?;
        }
        let pids = dir.join("pids.max");
        if pids.exists() {
            let max = match limits.tasks_max {
                0 => "max".to_string(),
                n => n.to_string(),
            };
            write_file(&pids, &max)?;
        }
        Ok(group)
    }

    fn group_of(&self, pid: u32) -> Result<Group, CgroupError> {
        let path = PathBuf::from(format!("/proc/{pid}/cgroup"));
        let text = fs::read_to_string(&path).map_err(io_err(&path))?;
        let relative = text
            .lines()
            .find_map(|line| line.strip_prefix("0::"))
            .filter(|p| *p != "/")
            .ok_or_else(|| CgroupError::NotInSession {
                pid,
                detail: "no cgroup v2 path in /proc/PID/cgroup".into(),
            })?;
        Ok(self.group_at(relative))
    }

    fn oom_kills(&self, group: &Group) -> u64 {
        group
            .memory
            .as_ref()
            .and_then(|dir| read_key(&dir.join("memory.events"), "oom_kill"))
            .unwrap_or(0)
    }

    fn usage(&self, group: &Group) -> Usage {
        let Some(dir) = group.dirs.first() else {
            return Usage::default();
        };
        Usage {
            cpu_usec: read_key(&dir.join("cpu.stat"), "usage_usec"),
            memory_current: read_number(&dir.join("memory.current")),
            memory_peak: read_number(&dir.join("memory.peak")),
            memory_max: read_number(&dir.join("memory.max")),
        }
    }
}
