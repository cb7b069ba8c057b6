//! Named network namespaces, compatible with `ip netns`: a namespace named `n` is kept alive by a
//! bind mount at `/run/netns/n`.

use std::{
    fs::File,
    io,
    os::fd::AsFd,
    path::{Path, PathBuf},
};

use nix::{
    mount::{MntFlags, MsFlags, mount, umount2},
    sched::{CloneFlags, setns, unshare},
};

/// Where named namespaces live, as `ip netns` expects.
pub const NETNS_DIR: &str = "/run/netns";

/// Errors of namespace handling.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("network namespace name `{name}` is invalid (use letters, digits, `-`, `_`, `.`)")]
    InvalidName { name: String },
    #[error("cannot {action} network namespace `{name}`")]
    Io {
        action: &'static str,
        name: String,
        #[source]
        source: io::Error,
    },
}

/// What is at a namespace's mount point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NamespaceState {
    /// A namespace is mounted there.
    Mounted,
    /// The mount point exists but holds no namespace: what a crash between creating the file and
    /// mounting the namespace on it leaves. Such a name is repaired by creating it again.
    Empty,
}

/// An open handle on a network namespace.
#[derive(Debug)]
pub struct Netns {
    name: String,
    file: File,
}

impl Netns {
    /// Opens the named namespace.
    pub fn open(name: &str) -> Result<Self, NetnsError> {
        let file = File::open(path_of(name)?).map_err(|source| NetnsError::Io {
            action: "open",
            name: name.to_owned(),
            source,
        })?;
        Ok(Self {
            name: name.to_owned(),
            file,
        })
    }

    /// Opens the namespace mounted (or linked, as `/proc/<pid>/ns/net`) at `path`.
    pub fn open_path(path: &Path) -> Result<Self, NetnsError> {
        let name = path.display().to_string();
        let file = File::open(path).map_err(|source| NetnsError::Io {
            action: "open",
            name: name.clone(),
            source,
        })?;
        Ok(Self { name, file })
    }

    /// The namespace of the calling thread.
    pub fn current() -> io::Result<Self> {
        Ok(Self {
            name: String::from("<current>"),
            file: File::open("/proc/thread-self/ns/net")?,
        })
    }

    /// Creates the named namespace (fails if it exists).
    pub fn create(name: &str) -> Result<Self, NetnsError> {
        let path = path_of(name)?;
        let err = |action| {
            move |source| NetnsError::Io {
                action,
                name: name.to_owned(),
                source,
            }
        };
        std::fs::create_dir_all(NETNS_DIR).map_err(err("create the directory of"))?;
        File::options()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(err("create the mount point of"))?;
        // A fresh thread, so unsharing does not move any thread that runs other work.
        let target = path.clone();
        let made = std::thread::spawn(move || -> io::Result<()> {
            unshare(CloneFlags::CLONE_NEWNET)?;
            mount(
                Some(Path::new("/proc/thread-self/ns/net")),
                &target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )?;
            Ok(())
        })
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("namespace thread panicked")));
        if let Err(source) = made {
            let _ = std::fs::remove_file(&path);
            return Err(NetnsError::Io {
                action: "create",
                name: name.to_owned(),
                source,
            });
        }
        Self::open(name)
    }

    /// Removes the named namespace; the kernel frees it (and its interfaces) once nothing else
    /// holds it. Missing namespaces are fine.
    pub fn delete(name: &str) -> Result<(), NetnsError> {
        let path = path_of(name)?;
        if !path.exists() {
            return Ok(());
        }
        let _ = umount2(&path, MntFlags::MNT_DETACH);
        std::fs::remove_file(&path).map_err(|source| NetnsError::Io {
            action: "delete",
            name: name.to_owned(),
            source,
        })
    }

    /// What is at the mount point of each namespace whose name starts with `prefix`. Opens
    /// nothing: the filesystem type of each path tells.
    pub fn states(prefix: &str) -> io::Result<Vec<(String, NamespaceState)>> {
        let mut states = Vec::new();
        for name in Self::list(prefix)? {
            let path = Path::new(NETNS_DIR).join(&name);
            let mounted = nix::sys::statfs::statfs(&path)
                .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC);
            let state = if mounted {
                NamespaceState::Mounted
            } else {
                NamespaceState::Empty
            };
            states.push((name, state));
        }
        Ok(states)
    }

    /// Replaces an empty mount point (see [`NamespaceState::Empty`]) by a new namespace.
    pub fn repair(name: &str) -> Result<Self, NetnsError> {
        let path = path_of(name)?;
        let _ = umount2(&path, MntFlags::MNT_DETACH);
        std::fs::remove_file(&path).map_err(|source| NetnsError::Io {
            action: "remove the empty mount point of",
            name: name.to_owned(),
            source,
        })?;
        Self::create(name)
    }

    /// The names of the existing namespaces that start with `prefix`.
    pub fn list(prefix: &str) -> io::Result<Vec<String>> {
        let entries = match std::fs::read_dir(NETNS_DIR) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut names = Vec::new();
        for entry in entries {
            if let Some(name) = entry?.file_name().to_str()
                && name.starts_with(prefix)
            {
                names.push(name.to_owned());
            }
        }
        names.sort();
        Ok(names)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    /// Runs `f` on the calling thread inside this namespace, then moves the thread back.
    ///
    /// Sockets created by `f` stay in this namespace for their whole life, which is how the
    /// agent talks netlink to containers. `f` must not block or yield to other work.
    pub fn enter<T>(&self, f: impl FnOnce() -> T) -> io::Result<T> {
        let home = File::open("/proc/thread-self/ns/net")?;
        setns(self.file.as_fd(), CloneFlags::CLONE_NEWNET)?;
        let result = f();
        if let Err(e) = setns(home.as_fd(), CloneFlags::CLONE_NEWNET) {
            // A thread stranded in another namespace would do the rest of its work there.
            panic!("cannot return to the agent's network namespace: {e}");
        }
        Ok(result)
    }
}

/// Longest namespace name: far beyond any gridnet makes, short of any path limit.
const MAX_NAME: usize = 200;

/// Whether `name` is 1 to `max` letters, digits, `-`, `_` and `.`, and not `.` or `..`: safe as
/// a file name in any directory, and readable in a log.
pub fn is_plain_name(name: &str, max: usize) -> bool {
    !name.is_empty()
        && name.len() <= max
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

fn path_of(name: &str) -> Result<PathBuf, NetnsError> {
    if !is_plain_name(name, MAX_NAME) {
        return Err(NetnsError::InvalidName {
            name: name.to_owned(),
        });
    }
    Ok(Path::new(NETNS_DIR).join(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_escape_the_directory_are_refused() {
        for bad in ["", ".", "..", "a/b", "../etc", "a b", "ü"] {
            assert!(path_of(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            path_of("gn-a1.x_y").expect("valid"),
            Path::new("/run/netns/gn-a1.x_y")
        );
    }
}
