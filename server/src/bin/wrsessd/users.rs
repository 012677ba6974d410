//! Accounts: looking users up, their runtime directories, and reading their files with their
//! rights rather than root's.

use std::{
    ffi::CString,
    fs,
    io::{self, Read},
    os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt},
    path::{Path, PathBuf},
};

use nix::unistd::{chown, getgrouplist, Gid, Uid, User};

/// A user as a session needs them: who, which groups, where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub uid: Uid,
    pub gid: Gid,
    /// Every group the user is in (primary included), as `initgroups` would set them.
    pub groups: Vec<Gid>,
    pub home: PathBuf,
    pub shell: PathBuf,
}

/// Looks `name` up in the passwd and group databases (NSS, so LDAP users work too).
pub fn lookup(name: &str) -> Result<Option<Account>, String> {
    let user = User::from_name(name).map_err(|e| format!("looking up user {name:?}: {e}"))?;
    let Some(user) = user else { return Ok(None) };
    let c_name = CString::new(name).map_err(|_| format!("user name {name:?} contains NUL"))?;
    let groups = getgrouplist(&c_name, user.gid)
        .map_err(|e| format!("looking up the groups of {name:?}: {e}"))?;
    Ok(Some(Account {
        name: user.name,
        uid: user.uid,
        gid: user.gid,
        groups,
        home: user.dir,
        shell: user.shell,
    }))
}

/// Makes `dir` a directory only `account` can use (0700, owned by them), creating it (and its
/// parent, 0755) when missing. An existing one must already be theirs: a runtime directory
/// someone else owns, or a symlink, is refused rather than adopted.
pub fn ensure_private_dir(dir: &Path, account: &Account) -> io::Result<()> {
    if let Some(parent) = dir.parent() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)?;
    }
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {
            chown(dir, Some(account.uid), Some(account.gid)).map_err(io::Error::from)?;
            // The umask may have taken bits off; 0700 is what we want, not less.
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        }
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
            let meta = fs::symlink_metadata(dir)?;
            if !meta.file_type().is_dir() {
                return Err(io::Error::other(format!(
                    "{} exists and is not a directory",
                    dir.display()
                )));
            }
            if meta.uid() != account.uid.as_raw() {
                return Err(io::Error::other(format!(
                    "{} belongs to uid {}, not to {} ({})",
                    dir.display(),
                    meta.uid(),
                    account.name,
                    account.uid
                )));
            }
            if meta.mode() & 0o077 != 0 {
                fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
            }
            Ok(())
        }
        Err(err) => Err(err),
    }
}

/// Reads up to `max_len` bytes of `path` as `account` would: on a short-lived thread whose
/// filesystem uid, gid and groups are the user's (Linux keeps these per thread; the process
/// stays root), so a symlink to a file the user may not read fails as it would for them.
/// `Ok(None)` when the file does not exist.
pub fn read_as(account: &Account, path: &Path, max_len: u64) -> io::Result<Option<String>> {
    let account = account.clone();
    let path = path.to_path_buf();
    let reader = std::thread::Builder::new()
        .name("read-as-user".into())
        .spawn(move || -> io::Result<Option<String>> {
            become_for_files(&account)?;
            let file = match fs::File::open(&path) {
                Ok(file) => file,
                Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(err) => return Err(err),
            };
            let mut text = String::new();
            file.take(max_len).read_to_string(&mut text)?;
            Ok(Some(text))
        })?;
    reader
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("reading thread panicked")))
}

/// Gives the calling thread (only) the user's filesystem identity. The raw syscalls matter:
/// glibc's `setgroups` would change every thread of the process.
fn become_for_files(account: &Account) -> io::Result<()> {
    let groups: Vec<libc::gid_t> = account.groups.iter().map(|g| g.as_raw()).collect();
    // SAFETY: the pointer and length describe `groups`, which outlives the call.
    let rc = unsafe { libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // setfsuid/setfsgid return the previous value whatever happens; calling again tells
    // whether the change took.
    nix::unistd::setfsgid(account.gid);
    nix::unistd::setfsuid(account.uid);
    if nix::unistd::setfsgid(account.gid) != account.gid
        || nix::unistd::setfsuid(account.uid) != account.uid
    {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("cannot take the file rights of {}", account.name),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_found_with_its_groups() {
        let root = lookup("root")
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("root must exist"));
        assert_eq!(root.uid, Uid::from_raw(0));
        assert!(root.groups.contains(&Gid::from_raw(0)));
    }

    #[test]
    fn files_are_read_with_the_users_rights_only() {
        if !Uid::effective().is_root() {
            eprintln!("skipped: needs root");
            return;
        }
        let nobody = lookup("nobody")
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("nobody must exist"));
        let root = lookup("root")
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("root"));
        let dir = std::env::temp_dir().join(format!("wrsessd-read-as-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("{e}"));
        let secret = dir.join("secret");
        fs::write(&secret, "root only").unwrap_or_else(|e| panic!("{e}"));
        fs::set_permissions(&secret, fs::Permissions::from_mode(0o600))
            .unwrap_or_else(|e| panic!("{e}"));
        let link = dir.join("session.toml");
        std::os::unix::fs::symlink(&secret, &link).unwrap_or_else(|e| panic!("{e}"));

        let err = read_as(&nobody, &link, 1024).err().map(|e| e.kind());
        assert_eq!(err, Some(io::ErrorKind::PermissionDenied));
        assert_eq!(
            read_as(&root, &link, 1024).ok().flatten().as_deref(),
            Some("root only")
        );
        assert_eq!(
            read_as(&nobody, &dir.join("missing"), 1024).ok(),
            Some(None)
        );
        // Only the reading thread changed identity.
        assert!(fs::read_to_string(&secret).is_ok());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn unknown_user_is_none() {
        assert_eq!(lookup("no-such-user-wrsessd"), Ok(None));
    }
}
