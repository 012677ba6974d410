//! wrclient's system-call filter (README.md, "Confinement"): once the runtime, the input
//! devices and the card reader are set up, the appliance only talks QUIC, draws through DRM/KMS,
//! reads evdev devices through libinput (and udev's netlink socket for hotplug) and the card
//! through pcscd's Unix socket, and plays and records sound through ALSA. Anything else a compromised wrclient might try (ptrace, mount,
//! module loading, exec, …) kills it with SIGSYS (`seccomp = true`, the default); `"log"` has
//! the kernel log such calls instead (`dmesg | grep type=1326`); `false` installs no filter.

use serde::{Deserialize, Deserializer};

/// Config `seccomp` / flag `--seccomp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SeccompMode {
    /// A call outside the list kills wrclient with SIGSYS (the kernel logs which).
    #[default]
    Enforce,
    /// Calls outside the list are allowed and logged by the kernel.
    Log,
    /// No filter.
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
                "expected true, false or \"log\", got {s:?}"
            ))),
        }
    }
}

/// Installs wrclient's filter on all its threads (nothing for [`SeccompMode::Off`] or off Linux).
pub fn install(mode: SeccompMode) -> Result<(), String> {
    if mode == SeccompMode::Off {
        tracing::warn!("seccomp = false: wrclient runs without a system-call filter");
        return Ok(());
    }
    #[cfg(target_os = "linux")]
    {
        let list = filter::wrclient();
        filter::install(mode, &list)?;
        tracing::info!(?mode, calls = list.len(), "seccomp filter installed");
    }
    Ok(())
}

#[cfg(target_os = "linux")]
mod filter {
    use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};

    use super::SeccompMode;

    macro_rules! calls {
        ($($name:ident),* $(,)?) => { &[$(libc::$name),*] };
    }

    /// wrclient's allow-list, from running it under `strace -f` in the end-to-end tests
    /// (headless display, scripted input, the virtual card through pcscd) and in the QEMU
    /// appliance image (DRM/KMS, libinput), plus the close relatives a library may pick.
    const WRCLIENT: &[i64] = calls![
        // memory
        SYS_brk,
        SYS_mmap,
        SYS_munmap,
        SYS_mprotect,
        SYS_mremap,
        SYS_madvise,
        // threads (pcsc and libinput threads, tokio's blocking pool)
        SYS_clone,
        SYS_clone3,
        SYS_futex,
        SYS_set_robust_list,
        SYS_set_tid_address,
        SYS_rseq,
        SYS_exit,
        SYS_exit_group,
        SYS_gettid,
        SYS_sched_getaffinity,
        SYS_sched_yield,
        SYS_prctl,
        SYS_sigaltstack,
        // signals (SIGTERM/SIGINT handling)
        SYS_rt_sigaction,
        SYS_rt_sigprocmask,
        SYS_rt_sigreturn,
        SYS_restart_syscall,
        SYS_tgkill,
        SYS_signalfd4,
        // time
        SYS_clock_gettime,
        SYS_clock_getres,
        SYS_gettimeofday,
        SYS_nanosleep,
        SYS_clock_nanosleep,
        SYS_getrandom,
        // event loop
        SYS_epoll_create1,
        SYS_epoll_ctl,
        SYS_epoll_pwait,
        SYS_epoll_pwait2,
        SYS_ppoll,
        SYS_pselect6,
        SYS_eventfd2,
        SYS_timerfd_create,
        SYS_timerfd_settime,
        SYS_timerfd_gettime,
        // files: state directory (known servers), screenshots and logs, /dev/dri, /dev/input,
        // /sys (udev), keymaps
        SYS_openat,
        SYS_close,
        SYS_read,
        SYS_write,
        SYS_readv,
        SYS_writev,
        SYS_pread64,
        SYS_pwrite64,
        SYS_lseek,
        SYS_fstat,
        SYS_newfstatat,
        SYS_statx,
        SYS_fcntl,
        SYS_dup,
        SYS_dup3,
        SYS_pipe2,
        SYS_readlinkat,
        SYS_faccessat,
        SYS_faccessat2,
        SYS_getdents64,
        SYS_getcwd,
        SYS_unlinkat,
        SYS_mkdirat,
        SYS_renameat,
        SYS_renameat2,
        SYS_fsync,
        SYS_fdatasync,
        SYS_ftruncate,
        SYS_fchmod,
        SYS_umask,
        SYS_statfs,
        SYS_fstatfs,
        SYS_inotify_init1,
        SYS_inotify_add_watch,
        SYS_inotify_rm_watch,
        SYS_memfd_create,
        // DRM/KMS (mode setting, dumb buffers, page flips) and evdev (EVIOCGRAB, EVIOCG*)
        SYS_ioctl,
        // identity and limits
        SYS_getpid,
        SYS_getppid,
        SYS_getuid,
        SYS_geteuid,
        SYS_getgid,
        SYS_getegid,
        SYS_getresuid,
        SYS_getresgid,
        SYS_uname,
        SYS_prlimit64,
        SYS_sysinfo,
        // sockets: QUIC over UDP, pcscd's Unix socket, udev's netlink socket, libseat
        SYS_socket,
        SYS_socketpair,
        SYS_bind,
        SYS_listen,
        SYS_connect,
        SYS_getsockname,
        SYS_getpeername,
        SYS_getsockopt,
        SYS_setsockopt,
        SYS_sendto,
        SYS_recvfrom,
        SYS_sendmsg,
        SYS_recvmsg,
        SYS_sendmmsg,
        SYS_recvmmsg,
        SYS_shutdown,
        // sound (audio/): ALSA's hw devices are ioctl/mmap/poll (above); its dmix and dsnoop
        // plugins, which `default` is on most cards, share the device through System V
        // shared memory and semaphores (alsa-lib pcm_direct.c; without its optional server).
        SYS_shmget,
        SYS_shmat,
        SYS_shmdt,
        SYS_shmctl,
        SYS_semget,
        SYS_semop,
        SYS_semtimedop,
        SYS_semctl,
    ];

    /// The same calls' older x86-64 forms.
    #[cfg(target_arch = "x86_64")]
    const WRCLIENT_X86_64: &[i64] = calls![
        SYS_epoll_wait,
        SYS_epoll_create,
        SYS_poll,
        SYS_select,
        SYS_pipe,
        SYS_dup2,
        SYS_open,
        SYS_stat,
        SYS_lstat,
        SYS_access,
        SYS_readlink,
        SYS_unlink,
        SYS_rename,
        SYS_mkdir,
        SYS_arch_prctl,
        SYS_time,
    ];
    #[cfg(not(target_arch = "x86_64"))]
    const WRCLIENT_X86_64: &[i64] = &[];

    pub fn wrclient() -> Vec<i64> {
        [WRCLIENT, WRCLIENT_X86_64].concat()
    }

    pub fn install(mode: SeccompMode, list: &[i64]) -> Result<(), String> {
        let unlisted = match mode {
            SeccompMode::Enforce => SeccompAction::KillProcess,
            SeccompMode::Log => SeccompAction::Log,
            SeccompMode::Off => return Ok(()),
        };
        let arch = TargetArch::try_from(std::env::consts::ARCH)
            .map_err(|e| format!("seccomp: unsupported architecture: {e}"))?;
        let rules = list.iter().map(|&nr| (nr, Vec::new())).collect();
        let filter = SeccompFilter::new(rules, unlisted, SeccompAction::Allow, arch)
            .map_err(|e| format!("seccomp: cannot build the filter: {e}"))?;
        let program: BpfProgram = filter
            .try_into()
            .map_err(|e| format!("seccomp: cannot compile the filter: {e}"))?;
        seccompiler::apply_filter_all_threads(&program)
            .map_err(|e| format!("seccomp: cannot install the filter: {e}"))
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn list_compiles_and_leaves_out_exec_and_ptrace() {
            let list = super::wrclient();
            for nr in [libc::SYS_execve, libc::SYS_ptrace, libc::SYS_mount] {
                assert!(!list.contains(&nr));
            }
            let arch = seccompiler::TargetArch::try_from(std::env::consts::ARCH).unwrap();
            let rules = list.iter().map(|&nr| (nr, Vec::new())).collect();
            let filter = seccompiler::SeccompFilter::new(
                rules,
                seccompiler::SeccompAction::KillProcess,
                seccompiler::SeccompAction::Allow,
                arch,
            )
            .unwrap();
            let _: seccompiler::BpfProgram = filter.try_into().unwrap();
        }
    }
}
