//! The spool's directory, made safe to hold billing data: created `0700`, refused when another
//! user owns it or others may write to it (anyone who can write there can add a record that is
//! then sent as usage, or read customer ids), its files opened `0600` without following a
//! symbolic link, and locked for one process at a time (two instances appending to one spool
//! would overwrite each other's records).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
#[cfg(unix)]
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// The lock file, holding the pid of the process that has the spool.
const LOCK: &str = "lock";

/// A spool directory this process holds: the lock is released when it is dropped (or when the
/// process dies, however it dies).
#[derive(Debug)]
pub(crate) struct SpoolDir {
    _lock: File,
}

impl SpoolDir {
    /// Creates (`0700`) or checks `dir` and takes its lock. With `shared`, a directory another
    /// user owns or others may write to is used anyway (the operator said so).
    pub(crate) fn claim(dir: &Path, shared: bool) -> io::Result<Self> {
        create(dir)?;
        if !shared {
            check_private(dir)?;
        }
        let mut lock = open_private(&dir.join(LOCK), false)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(dir.join(LOCK)).unwrap_or_default();
                return Err(io::Error::new(
                    io::ErrorKind::ResourceBusy,
                    format!(
                        "the event spool {} is in use by another process (pid {}): give each instance a spool directory of its own",
                        dir.display(),
                        holder.trim()
                    ),
                ));
            }
            Err(std::fs::TryLockError::Error(err)) => return Err(err),
        }
        lock.set_len(0)?;
        writeln!(lock, "{}", std::process::id())?;
        Ok(Self { _lock: lock })
    }
}

fn create(dir: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    builder.mode(0o700);
    builder.create(dir)
}

/// Refuses a directory others could write to or that another user owns.
#[cfg(unix)]
fn check_private(dir: &Path) -> io::Result<()> {
    let meta = std::fs::metadata(dir)?;
    if meta.mode() & 0o022 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "the event spool {} is writable by other users (mode {:o}): anyone who can write there can bill usage; `chmod 700` it (or allow a shared spool directory explicitly)",
                dir.display(),
                meta.mode() & 0o777
            ),
        ));
    }
    // Who we are, without a system call: the owner of a file we create there.
    let probe = dir.join(format!(".owner-{}", std::process::id()));
    let mine = open_private(&probe, true)?.metadata()?.uid();
    std::fs::remove_file(&probe)?;
    if meta.uid() != mine {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "the event spool {} belongs to another user (uid {}, this process is {mine}): use a directory of this user's (or allow a shared spool directory explicitly)",
                dir.display(),
                meta.uid()
            ),
        ));
    }
    // Ours, and only readable by others (made before, under a looser umask): made private.
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_dir: &Path) -> io::Result<()> {
    Ok(())
}

/// Opens (creating) a file of the spool for reading and writing: `0600`, never through a
/// symbolic link (`O_NOFOLLOW`), and made `0600` if it was not. `fresh` refuses a file that
/// is already there.
pub(crate) fn open_private(path: &Path, fresh: bool) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true).write(true);
    if fresh {
        options.create_new(true);
    } else {
        options.create(true).truncate(false);
    }
    #[cfg(unix)]
    options.mode(0o600).custom_flags(libc::O_NOFOLLOW);
    let file = options.open(path).map_err(|err| {
        #[cfg(unix)]
        let through_a_link = err.raw_os_error() == Some(libc::ELOOP);
        #[cfg(not(unix))]
        let through_a_link = false;
        if through_a_link {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{} is a symbolic link: the event spool follows none",
                    path.display()
                ),
            )
        } else {
            err
        }
    })?;
    #[cfg(unix)]
    if file.metadata()?.mode() & 0o077 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(file)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    fn dir(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("atlas-spool-dir-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_new_spool_is_private_and_one_process_holds_it() {
        let dir = dir("private");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let held = SpoolDir::claim(&dir, false).unwrap();
        assert_eq!(
            std::fs::metadata(&dir).unwrap().mode() & 0o777,
            0o700,
            "made private"
        );
        let file = open_private(&dir.join("events.0.log"), false).unwrap();
        assert_eq!(file.metadata().unwrap().mode() & 0o777, 0o600);
        let second = SpoolDir::claim(&dir, false).unwrap_err();
        assert_eq!(second.kind(), io::ErrorKind::ResourceBusy);
        assert!(
            second.to_string().contains("in use by another process"),
            "{second}"
        );
        drop(held);
        SpoolDir::claim(&dir, false).expect("free again once released");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_directory_others_can_write_is_refused_unless_allowed() {
        let dir = dir("shared");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let refused = SpoolDir::claim(&dir, false).unwrap_err();
        assert!(
            refused.to_string().contains("writable by other users"),
            "{refused}"
        );
        SpoolDir::claim(&dir, true).expect("allowed explicitly");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn symbolic_links_are_not_followed_and_loose_modes_are_tightened() {
        let dir = dir("links");
        std::fs::create_dir_all(&dir).unwrap();
        let target = dir.join("elsewhere");
        std::fs::write(&target, b"precious").unwrap();
        std::os::unix::fs::symlink(&target, dir.join("events.0.log")).unwrap();
        let refused = open_private(&dir.join("events.0.log"), false).unwrap_err();
        assert!(refused.to_string().contains("symbolic link"), "{refused}");
        assert_eq!(std::fs::read(&target).unwrap(), b"precious");
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).unwrap();
        let file = open_private(&target, false).unwrap();
        assert_eq!(file.metadata().unwrap().mode() & 0o777, 0o600);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
