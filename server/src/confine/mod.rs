//! Confinement of wrsrvd's own processes (README.md, "Confinement"):
//!
//! - [`seccomp`]: a system-call allow-list per process: [`seccomp::DAEMON`] for the daemon,
//!   [`seccomp::SESSION`] for a session compositor. A call outside it kills the process
//!   (`seccomp = true`, the default) or is allowed and logged by the kernel (`seccomp = "log"`),
//!   so a missing call is found with `dmesg | grep type=1326`.
//! - [`spawner`]: seccomp filters are inherited, so programs a confined process starts later
//!   (a session's clients, the daemon's shared session) are started by a small helper process
//!   forked before the filter went on.
//! - [`privileges`]: the daemon leaves root for its own system user once its sockets are open.

pub mod privileges;
#[cfg(target_os = "linux")]
pub mod seccomp;
pub mod spawner;

use serde::{Deserialize, Deserializer};

/// Config `seccomp` / flag `--seccomp`: whether a process installs its system-call filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SeccompMode {
    /// Enforce: a call outside the allow-list kills the process with SIGSYS (logged by the
    /// kernel as `audit: type=1326 … syscall=N`).
    #[default]
    Enforce,
    /// Allow every call but have the kernel log each one outside the list: for finding what a
    /// new code path or library needs.
    Log,
    /// No filter (debugging).
    Off,
}

impl std::str::FromStr for SeccompMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "true" | "on" | "enforce" => Ok(Self::Enforce),
            "log" => Ok(Self::Log),
            "false" | "off" => Ok(Self::Off),
            _ => Err(format!("expected true, false or log, got {s:?}")),
        }
    }
}

impl std::fmt::Display for SeccompMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Enforce => "true",
            Self::Log => "log",
            Self::Off => "false",
        })
    }
}

impl<'de> Deserialize<'de> for SeccompMode {
    /// `true`, `false` or `"log"` in TOML.
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bool(bool),
            Text(String),
        }
        match Raw::deserialize(de)? {
            Raw::Bool(true) => Ok(Self::Enforce),
            Raw::Bool(false) => Ok(Self::Off),
            Raw::Text(s) if s == "log" => Ok(Self::Log),
            Raw::Text(s) => Err(serde::de::Error::custom(format!(
                "seccomp: expected true, false or \"log\", got {s:?}"
            ))),
        }
    }
}

/// Installs `list`'s filter on every thread of this process (no-op for [`SeccompMode::Off`] and
/// on other systems than Linux).
pub fn install(process: &str, mode: SeccompMode, list: &[i64]) -> Result<(), String> {
    if mode == SeccompMode::Off {
        tracing::warn!(
            process,
            "seccomp is off (seccomp = false): no system-call filter"
        );
        return Ok(());
    }
    #[cfg(target_os = "linux")]
    {
        seccomp::install(mode, list)?;
        tracing::info!(process, %mode, calls = list.len(), "seccomp filter installed");
    }
    #[cfg(not(target_os = "linux"))]
    let _ = list;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_reads_bools_and_log() {
        #[derive(Deserialize)]
        struct C {
            seccomp: SeccompMode,
        }
        let read = |s: &str| toml::from_str::<C>(s).map(|c| c.seccomp);
        assert_eq!(read("seccomp = true").unwrap(), SeccompMode::Enforce);
        assert_eq!(read("seccomp = false").unwrap(), SeccompMode::Off);
        assert_eq!(read("seccomp = \"log\"").unwrap(), SeccompMode::Log);
        assert!(read("seccomp = \"maybe\"").is_err());
        assert_eq!("log".parse::<SeccompMode>().unwrap(), SeccompMode::Log);
    }
}
