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

#[cfg(test)]
mod tests {
    use super::*;

    /// The backend delegates the controllers and writes the limits a real hierarchy would get
    /// (here into plain directories, with the files the kernel would offer created first).
    #[test]
    fn limits_and_usage_files() {
        let base = std::env::temp_dir().join(format!("wr-cg-v2-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let session = base.join("wayray/ab");
        fs::create_dir_all(&session).unwrap();
        for dir in [&base, &base.join("wayray")] {
            fs::write(
                dir.join("cgroup.controllers"),
                "cpuset cpu io memory pids\n",
            )
            .unwrap();
        }
        for file in [
            "memory.swap.max",
            "memory.oom.group",
            "cpu.weight",
            "pids.max",
        ] {
            fs::write(session.join(file), "").unwrap();
        }
        let v2 = V2 {
            mount: base.clone(),
        };
        let limits = Limits {
            memory_max_mib: 64,
            cpu_weight: 200,
            tasks_max: 99,
        };
        let group = v2.create("wayray", "ab", &limits).unwrap();
        let read = |p: &str| fs::read_to_string(base.join(p)).unwrap();
        assert_eq!(read("cgroup.subtree_control"), "+memory +cpu +pids");
        assert_eq!(read("wayray/cgroup.subtree_control"), "+memory +cpu +pids");
        assert_eq!(read("wayray/ab/memory.max"), "67108864");
        assert_eq!(read("wayray/ab/memory.swap.max"), "0");
        assert_eq!(read("wayray/ab/memory.oom.group"), "1");
        assert_eq!(read("wayray/ab/cpu.weight"), "200");
        assert_eq!(read("wayray/ab/pids.max"), "99");

        fs::write(
            session.join("memory.events"),
            "low 0\nhigh 0\nmax 5\noom 1\noom_kill 1\noom_group_kill 1\n",
        )
        .unwrap();
        fs::write(session.join("memory.current"), "1048576\n").unwrap();
        fs::write(session.join("memory.peak"), "2097152\n").unwrap();
        fs::write(
            session.join("cpu.stat"),
            "usage_usec 5000\nuser_usec 4000\n",
        )
        .unwrap();
        assert_eq!(v2.oom_kills(&group), 1);
        assert_eq!(
            v2.usage(&group),
            Usage {
                cpu_usec: Some(5000),
                memory_current: Some(1 << 20),
                memory_peak: Some(2 << 20),
                memory_max: Some(64 << 20),
            }
        );
        fs::write(session.join("memory.max"), "max\n").unwrap();
        assert_eq!(v2.usage(&group).memory_max, None);
        fs::remove_dir_all(&base).unwrap();
    }
}
