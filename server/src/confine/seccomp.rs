//! The system calls each wrsrvd process may make once its filter is installed, and the filter
//! itself (seccompiler: a BPF allow-list checked by the kernel on every call).
//!
//! The lists come from running the end-to-end tests under `strace -f` (foot, firefox-esr,
//! xterm through Xwayland, the desktop, hot-desking with wrsessd, video, clipboard) and keeping
//! what each process called after the point its filter goes on, plus close relatives a library
//! may pick instead (`epoll_pwait` for `epoll_wait`, `dup3` for `dup2`, …). A call missing
//! here kills the process with SIGSYS; README.md ("Confinement") says how to find it.
//!
//! Arguments are not filtered (ioctl, socket families): the aim is to take away the calls a
//! compromised process would reach for (ptrace, mount, module loading, bpf, keyctl, namespaces,
//! process_vm_*, reboot, …), not to model every argument.

use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};

use super::SeccompMode;

macro_rules! calls {
    ($($name:ident),* $(,)?) => { &[$(libc::$name),*] };
}

/// Every Rust process of ours: memory, threads, signals, time, the tokio/calloop event loops.
const RUNTIME: &[i64] = calls![
    // memory
    SYS_brk,
    SYS_mmap,
    SYS_munmap,
    SYS_mprotect,
    SYS_mremap,
    SYS_madvise,
    // threads (std, tokio's blocking pool, the encoder's workers) and their exit
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
    // signals
    SYS_rt_sigaction,
    SYS_rt_sigprocmask,
    SYS_rt_sigreturn,
    SYS_restart_syscall,
    SYS_tgkill,
    // time (the vDSO covers most; these are its fallbacks) and sleeping
    SYS_clock_gettime,
    SYS_clock_getres,
    SYS_gettimeofday,
    SYS_nanosleep,
    SYS_clock_nanosleep,
    SYS_getrandom,
    // event loops
    SYS_epoll_create1,
    SYS_epoll_ctl,
    SYS_epoll_pwait,
    SYS_epoll_pwait2,
    SYS_ppoll,
    SYS_eventfd2,
    SYS_timerfd_create,
    SYS_timerfd_settime,
    SYS_timerfd_gettime,
    // descriptors and files
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
    SYS_ioctl,
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
    SYS_fallocate,
    SYS_flock,
    SYS_fchown,
    SYS_fchmod,
    SYS_statfs,
    SYS_fstatfs,
    SYS_umask,
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
    // sockets: QUIC over UDP (quinn uses sendmsg/recvmsg with GSO/GRO), the Unix sockets
    SYS_socket,
    SYS_socketpair,
    SYS_bind,
    SYS_listen,
    SYS_accept4,
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
];

/// The same calls' older x86-64 forms, which glibc and libraries still use there.
#[cfg(target_arch = "x86_64")]
const RUNTIME_X86_64: &[i64] = calls![
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
    SYS_alarm,
    SYS_time,
];
#[cfg(not(target_arch = "x86_64"))]
const RUNTIME_X86_64: &[i64] = &[];

/// The daemon (`wrsrvd`), after its sockets are open and it has left root: QUIC, the Unix
/// sockets, the SQLite store, `kill(pid, 0)` to see whether a session process still lives. It
/// starts nothing itself (the shared session goes through its spawner). USB forwarding hands
/// forwarded devices' `/dev` nodes to the session's user (`fchownat`, `fchmodat`); each
/// session's PC/SC socket is opened up (chmod 0666) once bound; see `crate::pcsc`.
const DAEMON: &[i64] = calls![
    SYS_kill,
    SYS_wait4,
    SYS_waitid,
    SYS_pidfd_open,
    SYS_fchownat,
    SYS_fchmodat
];

/// A session compositor (`wrsrvd session`), after its first clients are up: Wayland clients
/// (shared-memory buffers come as file descriptors over the socket; `memfd_create` for keymaps
/// and clipboard pipes), its daemon link, clients' exit, and restarting the Xwayland waiter
/// when an X server exits (Smithay forks it itself, so that one, and the Xwayland it becomes,
/// runs under this filter: see [`XWAYLAND`]).
const SESSION: &[i64] = calls![
    SYS_memfd_create,
    SYS_kill,
    SYS_wait4,
    SYS_waitid,
    SYS_pidfd_open,
    SYS_signalfd4,
    SYS_symlinkat,
    SYS_fchmodat,
    SYS_inotify_init1,
    SYS_inotify_add_watch,
    SYS_inotify_rm_watch,
    // starting the Xwayland waiter: fork, exec
    SYS_vfork,
    SYS_execve,
    SYS_execveat,
    SYS_setpgid,
    SYS_setsid,
    SYS_chdir,
    SYS_close_range,
];

#[cfg(target_arch = "x86_64")]
const SESSION_X86_64: &[i64] = calls![SYS_symlink, SYS_chmod, SYS_fork, SYS_getpgrp];
#[cfg(not(target_arch = "x86_64"))]
const SESSION_X86_64: &[i64] = &[];

/// What a restarted Xwayland needs beyond [`SESSION`] (it inherits the compositor's filter when
/// it is started after the filter went on).
const XWAYLAND: &[i64] = calls![
    SYS_setitimer,
    SYS_getitimer,
    SYS_setuid,
    SYS_setgid,
    SYS_sched_setaffinity,
    SYS_accept,
    SYS_getpgid,
    SYS_shmget,
    SYS_shmat,
    SYS_shmdt,
    SYS_shmctl,
];

/// The daemon's allow-list.
/// The session's audio thread (libpipewire): it locks the buffers it shares with the
/// session's PipeWire into memory.
const AUDIO: &[i64] = calls![SYS_mlock, SYS_munlock];

pub fn daemon() -> Vec<i64> {
    [RUNTIME, RUNTIME_X86_64, DAEMON].concat()
}

/// A session compositor's allow-list.
pub fn session() -> Vec<i64> {
    [
        RUNTIME,
        RUNTIME_X86_64,
        SESSION,
        SESSION_X86_64,
        XWAYLAND,
        AUDIO,
    ]
    .concat()
}

/// Builds the filter for `list` and installs it on every thread of this process (seccompiler
/// sets `no_new_privs` first, as the kernel requires of an unprivileged process).
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
    use super::*;

    #[test]
    fn lists_compile_to_filters() {
        let arch = TargetArch::try_from(std::env::consts::ARCH).unwrap();
        for list in [daemon(), session()] {
            let rules = list.iter().map(|&nr| (nr, Vec::new())).collect();
            let filter = SeccompFilter::new(
                rules,
                SeccompAction::KillProcess,
                SeccompAction::Allow,
                arch,
            )
            .unwrap();
            let _: BpfProgram = filter.try_into().unwrap();
        }
    }

    #[test]
    fn dangerous_calls_are_not_listed() {
        for list in [daemon(), session()] {
            for nr in [
                libc::SYS_ptrace,
                libc::SYS_mount,
                libc::SYS_bpf,
                libc::SYS_init_module,
            ] {
                assert!(!list.contains(&nr), "{nr} is allowed");
            }
        }
    }
}
