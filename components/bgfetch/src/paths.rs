//! Where bgfetch keeps things: the store, its private data directory, the delivery journals,
//! and the control socket (in a private runtime directory, keyed by the store).

use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The longest path a Unix socket address takes (`sun_path` is 108 bytes on Linux, 104 on
/// macOS, with the terminating NUL).
pub const SOCKET_PATH_MAX: usize = if cfg!(target_os = "linux") { 107 } else { 103 };

/// The store path: `--store`, else `$BGFETCH_STORE`, else the platform's data directory.
pub fn store_path(arg: Option<PathBuf>) -> Result<PathBuf, String> {
    if let Some(p) = arg {
        return Ok(p);
    }
    if let Some(p) = std::env::var_os("BGFETCH_STORE").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let data = if cfg!(target_os = "macos") {
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join("Library/Application Support"))
    } else {
        std::env::var_os("XDG_DATA_HOME")
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
    };
    data.map(|d| d.join("bgfetch").join("store.redb"))
        .ok_or_else(|| {
            "no --store, no $BGFETCH_STORE and no home directory: say where the store is".to_owned()
        })
}

/// Creates `dir` and its missing parents, each one bgfetch creates readable only by its owner
/// (0700) whatever the umask. Existing directories are left as they are.
pub fn create_private_dir_all(dir: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// The directory of delivery journals beside the store (`<store>.deliveries`): which record went
/// to which file, so that a delivery repeated after a crash finds what is already in place.
pub fn deliveries_dir(store: &Path) -> PathBuf {
    let mut s = store.as_os_str().to_owned();
    s.push(".deliveries");
    PathBuf::from(s)
}

/// The current user's id.
pub fn uid() -> u32 {
    rustix::process::getuid().as_raw()
}

/// Makes sure `dir` is a directory (not a symlink) owned by this user and reachable by no one
/// else, creating it (0700) if it is missing and tightening its mode if it is ours.
pub fn ensure_private_dir(dir: &Path) -> Result<(), String> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(format!("cannot create {}: {e}", dir.display())),
    }
    let meta = std::fs::symlink_metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if !meta.is_dir() {
        return Err(format!("{} is not a directory", dir.display()));
    }
    if meta.uid() != uid() {
        return Err(format!(
            "{} belongs to another user (uid {}), so it cannot hold this user's control socket",
            dir.display(),
            meta.uid()
        ));
    }
    if meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("cannot make {} private: {e}", dir.display()))?;
    }
    Ok(())
}

/// The private runtime directory for control sockets: `$XDG_RUNTIME_DIR/bgfetch`, else
/// `bgfetch-UID` in the temporary directory (`/tmp` if `$TMPDIR` is too long for a socket).
pub fn runtime_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|d| d.is_absolute() && d.is_dir())
    {
        return d.join("bgfetch");
    }
    let name = format!("bgfetch-{}", uid());
    let tmp = std::env::temp_dir().join(&name);
    // Room for the socket's own name (40 bytes) after it.
    if tmp.as_os_str().len() + 41 <= SOCKET_PATH_MAX {
        tmp
    } else {
        Path::new("/tmp").join(name)
    }
}

/// The store's absolute path with its directory's symlinks resolved, so that every way of
/// naming one store finds one socket.
fn canonical_store(store: &Path) -> io::Result<PathBuf> {
    let store = std::path::absolute(store)?;
    let (Some(parent), Some(name)) = (store.parent(), store.file_name()) else {
        return Ok(store);
    };
    Ok(std::fs::canonicalize(parent)?.join(name))
}

/// The control socket of the process running fetches on `store`: a short name (a digest of the
/// store's canonical path) in the private runtime directory, so that a long store path still has
/// a socket and no other user can reach it. The directory is not created here.
pub fn socket_path(store: &Path) -> io::Result<PathBuf> {
    socket_path_in(&runtime_dir(), store)
}

/// The control socket of `store` in the runtime directory `runtime`.
pub fn socket_path_in(runtime: &Path, store: &Path) -> io::Result<PathBuf> {
    let canonical = canonical_store(store)?;
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        canonical.as_os_str().as_encoded_bytes(),
    );
    let name: String = digest.as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(runtime.join(format!("{name}.sock")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_store_path_gets_a_short_socket_path() {
        let dir = tempfile::tempdir().unwrap();
        let long = dir.path().join("d".repeat(200));
        std::fs::create_dir(&long).unwrap();
        let store = long.join("store.redb");
        let sock = socket_path(&store).unwrap();
        assert!(
            sock.as_os_str().len() <= SOCKET_PATH_MAX,
            "{}",
            sock.display()
        );
        // Another name for the same store finds the same socket.
        let again = socket_path(&long.join(".").join("store.redb")).unwrap();
        assert_eq!(sock, again);
        assert_ne!(sock, socket_path(&long.join("other.redb")).unwrap());
    }

    #[test]
    fn a_runtime_directory_is_made_private() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("run");
        std::fs::create_dir(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).unwrap();
        ensure_private_dir(&d).unwrap();
        assert_eq!(std::fs::metadata(&d).unwrap().mode() & 0o777, 0o700);
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&d, &link).unwrap();
        assert!(ensure_private_dir(&link).is_err(), "a symlink is refused");
    }
}
