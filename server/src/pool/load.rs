//! This machine's CPU and memory, for the load a server registers in the pool.

/// CPU busy since the previous sample, from `/proc/stat`'s first line (all cores).
#[derive(Debug, Default)]
pub struct CpuSampler {
    last: Option<(u64, u64)>,
}

impl CpuSampler {
    /// Busy share in thousandths since the last call (0 on the first call, or where
    /// `/proc/stat` is unreadable).
    pub fn sample(&mut self) -> u32 {
        let Some((busy, total)) = read_proc_stat() else {
            return 0;
        };
        let permille = match self.last {
            Some((b0, t0)) if total > t0 => {
                (busy.saturating_sub(b0) * 1000 / (total - t0)).min(1000) as u32
            }
            _ => 0,
        };
        self.last = Some((busy, total));
        permille
    }
}

fn read_proc_stat() -> Option<(u64, u64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    parse_cpu_line(text.lines().next()?)
}

/// (busy, total) jiffies of a `cpu  user nice system idle iowait irq softirq steal …` line.
fn parse_cpu_line(line: &str) -> Option<(u64, u64)> {
    let mut fields = line.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    let values: Vec<u64> = fields
        .take(8)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    if values.len() < 4 {
        return None;
    }
    let total: u64 = values.iter().sum();
    let idle = values[3] + values.get(4).copied().unwrap_or(0);
    Some((total - idle, total))
}

/// (used, total) memory in bytes from `/proc/meminfo` (used = total − available); zeros where
/// it cannot be read.
pub fn memory() -> (u64, u64) {
    let Ok(text) = std::fs::read_to_string("/proc/meminfo") else {
        return (0, 0);
    };
    parse_meminfo(&text)
}

fn parse_meminfo(text: &str) -> (u64, u64) {
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse::<u64>().ok())
            .map(|kb| kb * 1024)
    };
    match (field("MemTotal:"), field("MemAvailable:")) {
        (Some(total), Some(available)) => (total.saturating_sub(available), total),
        _ => (0, 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_parse() {
        assert_eq!(
            parse_cpu_line("cpu  100 0 50 800 50 0 0 0 0 0"),
            Some((150, 1000))
        );
        assert_eq!(parse_cpu_line("cpu0 1 2 3 4"), None);
        assert_eq!(parse_cpu_line("cpu  x"), None);
        let meminfo = "MemTotal:       1000 kB\nMemFree:  10 kB\nMemAvailable:    250 kB\n";
        assert_eq!(parse_meminfo(meminfo), (750 * 1024, 1000 * 1024));
        assert_eq!(parse_meminfo("nothing"), (0, 0));
    }
}
