//! cgroup v1: separate `memory`, `cpu`, `cpuacct` and `pids` hierarchies. A session's group is a
//! directory of the same relative path in each; memory is required, the others are used when
//! mounted.

use std::{fs, path::PathBuf};

use super::{
    io_err, make_dir, read_key, read_number, under, write_file, Backend, CgroupError, Group,
    Limits, Mount, Usage,
};

/// The v1 hierarchies found in mountinfo.
#[derive(Debug, Clone)]
pub struct V1 {
    memory: PathBuf,
    cpu: Option<PathBuf>,
    cpuacct: Option<PathBuf>,
    pids: Option<PathBuf>,
}

impl V1 {
    pub fn from_mounts(mounts: &[Mount]) -> Option<V1> {
        let find = |controller: &str| {
            mounts
                .iter()
                .find(|m| m.fstype == "cgroup" && m.options.iter().any(|o| o == controller))
                .map(|m| m.point.clone())
        };
        Some(V1 {
            memory: find("memory")?,
            cpu: find("cpu"),
            cpuacct: find("cpuacct"),
            pids: find("pids"),
        })
    }

    /// Each mounted hierarchy once (cpu and cpuacct are often mounted together).
    fn hierarchies(&self) -> Vec<PathBuf> {
        let mut all = vec![self.memory.clone()];
        for h in [&self.cpu, &self.cpuacct, &self.pids].into_iter().flatten() {
            if !all.contains(h) {
                all.push(h.clone());
            }
        }
        all
    }

    fn group_at(&self, relative: &str) -> Group {
        let dirs = self
            .hierarchies()
            .iter()
            .map(|h| under(h, relative))
            .collect();
        Group {
            dirs,
            memory: Some(under(&self.memory, relative)),
            cpu_time: self.cpuacct.as_ref().map(|h| under(h, relative)),
        }
    }
}

impl Backend for V1 {
    fn version(&self) -> &'static str {
        "v1"
    }

    fn create(&self, parent: &str, name: &str, limits: &Limits) -> Result<Group, CgroupError> {
        let relative = format!("{}/{name}", parent.trim_matches('/'));
        let group = self.group_at(&relative);
        for dir in &group.dirs {
            make_dir(dir)?;
        }
        let memory = under(&self.memory, &relative);
        if let Some(bytes) = limits.memory_max_bytes() {
            write_file(&memory.join("memory.limit_in_bytes"), &bytes.to_string())?;
            // RAM + swap, so a session over its limit cannot page out instead of dying. Only
            // there when the kernel accounts swap.
            let memsw = memory.join("memory.memsw.limit_in_bytes");
            if memsw.exists() {
                write_file(&memsw, &bytes.to_string())?;
            }
        }
        if let Some(cpu) = &self.cpu {
            let shares = (limits.weight() * 1024 / 100).max(2);
            write_file(
                &under(cpu, &relative).join("cpu.shares"),
                &shares.to_string(),
            )?;
        }
        if let Some(pids) = &self.pids {
            let max = match limits.tasks_max {
                0 => "max".to_string(),
                n => n.to_string(),
            };
            write_file(&under(pids, &relative).join("pids.max"), &max)?;
        }
        Ok(group)
    }

    fn group_of(&self, pid: u32) -> Result<Group, CgroupError> {
        let path = PathBuf::from(format!("/proc/{pid}/cgroup"));
        let text = fs::read_to_string(&path).map_err(io_err(&path))?;
        // "4:memory:/wayray/00000000000000ab"
        let relative = text
            .lines()
            .find_map(|line| {
                let mut parts = line.splitn(3, ':');
                let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
                controllers
                    .split(',')
                    .any(|c| c == "memory")
                    .then(|| path.to_string())
            })
            .ok_or_else(|| CgroupError::NotInSession {
                pid,
                detail: "no memory line in /proc/PID/cgroup".into(),
            })?;
        if relative == "/" {
            return Err(CgroupError::NotInSession {
                pid,
                detail: "in the root memory cgroup".into(),
            });
        }
        Ok(self.group_at(&relative))
    }

    fn oom_kills(&self, group: &Group) -> u64 {
        group
            .memory
            .as_ref()
            .and_then(|dir| read_key(&dir.join("memory.oom_control"), "oom_kill"))
            .unwrap_or(0)
    }

    fn usage(&self, group: &Group) -> Usage {
        let memory = group.memory.as_ref();
        let file = |name: &str| memory.and_then(|dir| read_number(&dir.join(name)));
        Usage {
            cpu_usec: group
                .cpu_time
                .as_ref()
                .and_then(|dir| read_number(&dir.join("cpuacct.usage")))
                .map(|ns| ns / 1000),
            memory_current: file("memory.usage_in_bytes"),
            memory_peak: file("memory.max_usage_in_bytes"),
            memory_max: file("memory.limit_in_bytes"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The backend writes the limits a real hierarchy would get (here into plain directories).
    #[test]
    fn limits_and_usage_files() {
        let base = std::env::temp_dir().join(format!("wr-cg-v1-{}", std::process::id()));
        let _ = fs::remove_dir_all(&base);
        let v1 = V1 {
            memory: base.join("memory"),
            cpu: Some(base.join("cpu")),
            cpuacct: Some(base.join("cpu")),
            pids: Some(base.join("pids")),
        };
        let session = base.join("memory/wayray/ab");
        fs::create_dir_all(&session).unwrap();
        fs::write(session.join("memory.memsw.limit_in_bytes"), "").unwrap();
        let limits = Limits {
            memory_max_mib: 64,
            cpu_weight: 50,
            tasks_max: 0,
        };
        let group = v1.create("wayray", "ab", &limits).unwrap();
        assert_eq!(group.dirs.len(), 3, "cpu and cpuacct share a hierarchy");
        assert_eq!(group.name(), Some("ab"));
        let read = |p: &str| fs::read_to_string(base.join(p)).unwrap();
        assert_eq!(read("memory/wayray/ab/memory.limit_in_bytes"), "67108864");
        assert_eq!(
            read("memory/wayray/ab/memory.memsw.limit_in_bytes"),
            "67108864"
        );
        assert_eq!(read("cpu/wayray/ab/cpu.shares"), "512");
        assert_eq!(read("pids/wayray/ab/pids.max"), "max");

        fs::write(
            session.join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        )
        .unwrap();
        fs::write(session.join("memory.usage_in_bytes"), "1048576\n").unwrap();
        fs::write(session.join("memory.max_usage_in_bytes"), "2097152\n").unwrap();
        fs::write(base.join("cpu/wayray/ab/cpuacct.usage"), "5000000\n").unwrap();
        assert_eq!(v1.oom_kills(&group), 2);
        assert_eq!(
            v1.usage(&group),
            Usage {
                cpu_usec: Some(5000),
                memory_current: Some(1 << 20),
                memory_peak: Some(2 << 20),
                memory_max: Some(64 << 20),
            }
        );
        fs::remove_dir_all(&base).unwrap();
    }
}
