//! A real etcd cluster on loopback for the pool tests: `etcd` from Debian's `etcd-server`, one
//! process per member with its own data directory, killed on drop.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use super::TempDir;

pub struct EtcdCluster {
    members: Vec<Option<Child>>,
    args: Vec<Vec<String>>,
    pub endpoints: Vec<String>,
    logs: Vec<PathBuf>,
}

impl EtcdCluster {
    /// Starts `n` members on free-looking loopback ports and waits until the cluster answers.
    pub fn start(dir: &TempDir, n: usize) -> Self {
        // Ports from the process id, so parallel test binaries do not collide.
        let base = 21000 + (std::process::id() % 400) * 20;
        let client = |i: usize| base + i as u32 * 2;
        let peer = |i: usize| base + i as u32 * 2 + 1;
        let cluster: Vec<String> = (0..n)
            .map(|i| format!("m{i}=http://127.0.0.1:{}", peer(i)))
            .collect();
        let mut this = Self {
            members: Vec::new(),
            args: Vec::new(),
            endpoints: (0..n)
                .map(|i| format!("http://127.0.0.1:{}", client(i)))
                .collect(),
            logs: Vec::new(),
        };
        for i in 0..n {
            let args = vec![
                "--name".to_string(),
                format!("m{i}"),
                "--data-dir".into(),
                dir.path(&format!("etcd-m{i}"))
                    .to_string_lossy()
                    .into_owned(),
                "--listen-client-urls".into(),
                format!("http://127.0.0.1:{}", client(i)),
                "--advertise-client-urls".into(),
                format!("http://127.0.0.1:{}", client(i)),
                "--listen-peer-urls".into(),
                format!("http://127.0.0.1:{}", peer(i)),
                "--initial-advertise-peer-urls".into(),
                format!("http://127.0.0.1:{}", peer(i)),
                "--initial-cluster".into(),
                cluster.join(","),
                "--initial-cluster-state".into(),
                "new".into(),
                "--initial-cluster-token".into(),
                format!("wayray-test-{}", std::process::id()),
            ];
            this.logs.push(dir.path(&format!("etcd-m{i}.log")));
            this.args.push(args);
            this.members.push(None);
            this.start_member(i);
        }
        this.wait_healthy(Duration::from_secs(30));
        this
    }

    /// Starts member `i` again (with its data: it rejoins the cluster).
    pub fn start_member(&mut self, i: usize) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.logs[i])
            .expect("etcd log");
        let child = Command::new("etcd")
            .args(&self.args[i])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start etcd (package etcd-server)");
        self.members[i] = Some(child);
    }

    /// Kills member `i` (SIGKILL).
    pub fn kill_member(&mut self, i: usize) {
        if let Some(mut child) = self.members[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn endpoint_list(&self) -> String {
        self.endpoints.join(",")
    }

    /// `etcdctl` against the live members.
    pub fn etcdctl(&self, args: &[&str]) -> std::process::Output {
        let live: Vec<&str> = self
            .endpoints
            .iter()
            .zip(&self.members)
            .filter(|(_, m)| m.is_some())
            .map(|(e, _)| e.as_str())
            .collect();
        Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", live.join(",")))
            .args(args)
            .output()
            .expect("run etcdctl (package etcd-client)")
    }

    /// Keys and values under `prefix`, as (key, value) pairs.
    pub fn get_prefix(&self, prefix: &str) -> Vec<(String, String)> {
        let out = self.etcdctl(&["get", "--prefix", prefix]);
        assert!(out.status.success(), "etcdctl get failed: {out:?}");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let lines: Vec<&str> = text.lines().collect();
        lines
            .chunks(2)
            .filter_map(|kv| Some((kv.first()?.to_string(), kv.get(1)?.to_string())))
            .collect()
    }

    pub fn wait_healthy(&self, timeout: Duration) {
        let start = Instant::now();
        loop {
            let out = self.etcdctl(&["endpoint", "health"]);
            if out.status.success() {
                return;
            }
            assert!(
                start.elapsed() < timeout,
                "etcd cluster not healthy: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                self.logs
                    .iter()
                    .map(|l| std::fs::read_to_string(l).unwrap_or_default())
                    .collect::<Vec<_>>()
                    .join("\n---\n")
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill_member(i);
        }
    }
}
