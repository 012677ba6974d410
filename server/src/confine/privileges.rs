//! The daemon needs root only to start: to bind its UDP port (below 1024 in some sites), to
//! create /run/wayray and its state directory. After that it relays frames, keeps its SQLite
//! store and answers on sockets it already holds, so it continues as its own system user
//! (config `user`, default `wayray`, made by `scripts/lib.sh`'s set-up with `useradd --system`).
//! The one exception is USB forwarding's node keeper thread, which keeps `CAP_CHOWN` and
//! `CAP_FOWNER` over the switch (`usb::nodes::Keeper`).

use std::{ffi::CString, path::Path};

/// Who the daemon became.
#[derive(Debug, PartialEq, Eq)]
pub enum Dropped {
    /// It was not root: nothing to drop.
    NotRoot,
    /// It runs as this user now.
    User { name: String, uid: u32, gid: u32 },
}

#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum DropError {
    #[error(
        "the daemon's user {0:?} does not exist: create it (scripts/lib.sh set-up does: \
         useradd --system --no-create-home --shell /usr/sbin/nologin {0}) or set user = \"\" \
         to keep running as root"
    )]
    NoSuchUser(String),
    #[error("cannot hand {path} to the daemon's user: {source}")]
    Chown {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot switch to user {user}: {what}: {source}")]
    Switch {
        user: String,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// Switches the whole process (every thread: glibc's setuid applies to all) to `user`, after
/// giving it `owned` (the state directory and the files in it the daemon keeps writing). An
/// empty `user` keeps root (logged).
pub fn drop_to(user: &str, owned: &[&Path]) -> Result<Dropped, DropError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(Dropped::NotRoot);
    }
    if user.is_empty() {
        tracing::warn!("user = \"\": the daemon keeps running as root");
        return Ok(Dropped::NotRoot);
    }
    let (uid, gid) = lookup(user).ok_or_else(|| DropError::NoSuchUser(user.to_owned()))?;
    for path in owned {
        chown_tree(path, uid, gid).map_err(|source| DropError::Chown {
            path: path.display().to_string(),
            source,
        })?;
    }
    let fail = |what, source| DropError::Switch {
        user: user.to_owned(),
        what,
        source,
    };
    // SAFETY: plain system calls on our own process; the order (groups, gid, uid) is the one
    // that leaves no privilege behind.
    unsafe {
        if libc::setgroups(0, std::ptr::null()) != 0 {
            return Err(fail("setgroups", std::io::Error::last_os_error()));
        }
        if libc::setresgid(gid, gid, gid) != 0 {
            return Err(fail("setresgid", std::io::Error::last_os_error()));
        }
        if libc::setresuid(uid, uid, uid) != 0 {
            return Err(fail("setresuid", std::io::Error::last_os_error()));
        }
        if libc::setuid(0) == 0 {
            return Err(fail(
                "check",
                std::io::Error::other("root could be regained after the switch"),
            ));
        }
    }
    Ok(Dropped::User {
        name: user.to_owned(),
        uid,
        gid,
    })
}

fn lookup(user: &str) -> Option<(u32, u32)> {
    let name = CString::new(user).ok()?;
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer points at live memory of the given size.
    let rc = unsafe {
        libc::getpwnam_r(
            name.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    (rc == 0 && !result.is_null()).then_some((pwd.pw_uid, pwd.pw_gid))
}

/// `path` and, for a directory, the files directly in it (the state directory is flat).
fn chown_tree(path: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))?;
    if path.is_dir() {
        for entry in std::fs::read_dir(path)? {
            let entry = entry?;
            std::os::unix::fs::lchown(entry.path(), Some(uid), Some(gid))?;
        }
    }
    Ok(())
}
