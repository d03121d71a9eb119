//! The daemon lock: one strata per state directory. An exclusive `flock` on a file, held for the
//! daemon's life and released by the kernel when it dies, so a crash never leaves a stale lock.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("opening lock file {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "another strata daemon (pid {pid}) is already running with lock file {path}; stop it first or give this one another state directory"
    )]
    Held { path: PathBuf, pid: String },
    #[error("locking {path}: {source}")]
    Lock { path: PathBuf, source: nix::Error },
}

impl crate::error::Classify for LockError {
    fn kind(&self) -> crate::error::ErrorKind {
        match self {
            LockError::Held { .. } => crate::error::ErrorKind::FailedPrecondition,
            _ => crate::error::ErrorKind::Internal,
        }
    }
}

/// Holds the lock until dropped.
pub struct DaemonLock {
    _lock: Flock<File>,
}

impl DaemonLock {
    pub fn acquire(path: &Path) -> Result<Self, LockError> {
        let open_err = |source| LockError::Open {
            path: path.to_owned(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(open_err)?;
        let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((mut file, nix::Error::EWOULDBLOCK)) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                return Err(LockError::Held {
                    path: path.to_owned(),
                    pid: pid.trim().to_owned(),
                });
            }
            Err((_, source)) => {
                return Err(LockError::Lock {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        // Record our pid for the message a second daemon prints.
        lock.set_len(0).map_err(open_err)?;
        lock.rewind().map_err(open_err)?;
        write!(lock, "{}", std::process::id()).map_err(open_err)?;
        Ok(Self { _lock: lock })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_with_pid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("strata.lock");
        let _first = DaemonLock::acquire(&path).unwrap();
        let err = DaemonLock::acquire(&path).err().unwrap();
        let msg = err.to_string();
        assert!(msg.contains(&std::process::id().to_string()), "{msg}");
        assert!(msg.contains("already running"), "{msg}");
    }
}
