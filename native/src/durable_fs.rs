//! Durable file-system steps: fsync of directories, rename + directory fsync, atomic file replacement,
//! and zero-filled segment creation. Blocking calls: run them off the JS thread. They must never
//! preallocate with fallocate/ftruncate (unwritten extents double every later fdatasync) nor retry fsync.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::aligned_buffer::{AlignedBuffer, IO_ALIGN_BYTES};
use crate::io_errors::{SkError, SkResult};

/// How a file is opened: O_DIRECT if the file system takes it ('auto'), always ('on'), or never ('off').
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DirectMode {
    Auto,
    On,
    Off,
}

impl DirectMode {
    pub fn parse(text: Option<&str>) -> SkResult<DirectMode> {
        match text {
            None | Some("auto") => Ok(DirectMode::Auto),
            Some("on") => Ok(DirectMode::On),
            Some("off") => Ok(DirectMode::Off),
            Some(other) => Err(SkError::invalid_argument(format!("direct must be 'auto', 'on' or 'off', got '{other}'"))),
        }
    }
}

/// Zero-fill is written in pieces of this size.
const ZERO_FILL_CHUNK_BYTES: usize = 1 << 20;

pub fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

pub fn fsync_dir(dir: &Path) -> SkResult<()> {
    let file = File::open(dir).map_err(|e| SkError::os("open directory", dir, e))?;
    file.sync_all().map_err(|e| SkError::fsync("fsync directory", dir, e))
}

pub fn fdatasync(file: &File, path: &Path) -> SkResult<()> {
    file.sync_data().map_err(|e| SkError::fsync("fdatasync", path, e))
}

/// Renames, then fsyncs the destination's directory (and the source's, if different). The caller has
/// already made the file's data durable.
pub fn rename_durable(from: &Path, to: &Path) -> SkResult<()> {
    fs::rename(from, to).map_err(|e| {
        let mut err = SkError::os("rename", from, e);
        err.message = format!("{} -> {}", err.message, to.display());
        err
    })?;
    let to_dir = parent_dir(to);
    let from_dir = parent_dir(from);
    fsync_dir(&to_dir)?;
    if !same_dir(&from_dir, &to_dir) {
        fsync_dir(&from_dir)?;
    }
    Ok(())
}

fn same_dir(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (fs::metadata(a), fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => a == b,
    }
}

/// Replaces `path` atomically and durably: write `path.tmp`, fsync it, rename over `path`, fsync the
/// directory. A crash leaves either the old or the new contents at `path`.
pub fn write_file_durable(path: &Path, data: &[u8]) -> SkResult<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| SkError::os("open", &tmp, e))?;
    file.write_all_at(data, 0).map_err(|e| SkError::os("write", &tmp, e))?;
    file.sync_all().map_err(|e| SkError::fsync("fsync", &tmp, e))?;
    drop(file);
    rename_durable(&tmp, path)
}

/// Opens an existing file read-write, with O_DIRECT per `mode`. Returns the file and whether it is direct.
pub fn open_read_write(path: &Path, mode: DirectMode) -> SkResult<(File, bool)> {
    open_read_write_with(path, mode, |direct| {
        let mut options = OpenOptions::new();
        options.read(true).write(true);
        if direct {
            options.custom_flags(libc::O_DIRECT);
        }
        options.open(path)
    })
}

/// `open_read_write` with the open(2) call passed in, so tests can play a file system that refuses O_DIRECT.
fn open_read_write_with(path: &Path, mode: DirectMode, open: impl Fn(bool) -> io::Result<File>) -> SkResult<(File, bool)> {
    if mode == DirectMode::Off {
        return open(false).map(|f| (f, false)).map_err(|e| SkError::os("open", path, e));
    }
    match open(true) {
        Ok(f) => Ok((f, true)),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) && mode == DirectMode::Auto => {
            open(false).map(|f| (f, false)).map_err(|e| SkError::os("open", path, e))
        }
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
            Err(SkError::os("open with O_DIRECT (the file system refuses it; use direct 'auto' or 'off')", path, e))
        }
        Err(e) => Err(SkError::os("open", path, e)),
    }
}

/// Writes `size_bytes` of zeros from offset 0 through `file` (aligned pieces, so O_DIRECT works).
pub fn write_zeros(file: &File, path: &Path, size_bytes: u64) -> SkResult<()> {
    let zeros = AlignedBuffer::new(ZERO_FILL_CHUNK_BYTES.min(size_bytes.max(1) as usize));
    let mut offset = 0u64;
    while offset < size_bytes {
        let n = (zeros.len() as u64).min(size_bytes - offset) as usize;
        file.write_all_at(&zeros[..n], offset).map_err(|e| SkError::os("write zeros to", path, e))?;
        offset += n as u64;
    }
    Ok(())
}

/// Creates `path` exclusively, fills it with zeros by writing, fdatasyncs it and fsyncs its directory.
/// On failure the partial file is removed. Returns the open file and whether it is O_DIRECT.
pub fn create_zero_filled(path: &Path, size_bytes: u64, mode: DirectMode) -> SkResult<(File, bool)> {
    if size_bytes == 0 || !size_bytes.is_multiple_of(IO_ALIGN_BYTES as u64) {
        return Err(SkError::invalid_argument(format!(
            "file size must be a positive multiple of {IO_ALIGN_BYTES}, got {size_bytes} for {}",
            path.display()
        )));
    }
    let created = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| SkError::os("create", path, e))?;
    let fill = || -> SkResult<(File, bool)> {
        let (file, direct) = if mode == DirectMode::Off { (created, false) } else { open_read_write(path, mode)? };
        write_zeros(&file, path, size_bytes)?;
        fdatasync(&file, path)?;
        fsync_dir(&parent_dir(path))?;
        Ok((file, direct))
    };
    fill().inspect_err(|_| {
        // A half-filled segment must not be mistaken for a prepared one; best effort.
        let _ = fs::remove_file(path);
    })
}

/// Reads until `buf` is full or end of file; returns the bytes read.
pub fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io_errors::ErrorCode;

    pub fn scratch_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sk-native-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn create_zero_filled_is_exclusive_and_zero() {
        let dir = scratch_dir("create");
        let path = dir.join("seg");
        let (file, _direct) = create_zero_filled(&path, 1 << 20, DirectMode::Auto).unwrap();
        drop(file);
        let bytes = fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 1 << 20);
        assert!(bytes.iter().all(|&b| b == 0));
        let err = create_zero_filled(&path, 1 << 20, DirectMode::Auto).unwrap_err();
        assert_eq!(err.code, ErrorCode::Io);
        assert!(err.message.contains("seg"), "{}", err.message);
        assert_eq!(create_zero_filled(&dir.join("odd"), 1000, DirectMode::Off).unwrap_err().code, ErrorCode::InvalidArgument);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn direct_auto_falls_back_when_o_direct_is_refused() {
        let dir = scratch_dir("fallback");
        let path = dir.join("seg");
        fs::write(&path, [0u8; 4096]).unwrap();
        let refuse_direct = |direct: bool| {
            if direct {
                Err(io::Error::from_raw_os_error(libc::EINVAL))
            } else {
                File::options().read(true).write(true).open(&path)
            }
        };
        let (_, direct) = open_read_write_with(&path, DirectMode::Auto, refuse_direct).unwrap();
        assert!(!direct);
        let err = open_read_write_with(&path, DirectMode::On, refuse_direct).unwrap_err();
        assert_eq!(err.code, ErrorCode::Io);
        assert!(err.message.contains("O_DIRECT") && err.message.contains("Invalid argument"), "{}", err.message);
        let (_, direct) = open_read_write_with(&path, DirectMode::Off, refuse_direct).unwrap();
        assert!(!direct);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn write_file_durable_replaces() {
        let dir = scratch_dir("durable");
        let path = dir.join("safekeeper.control");
        write_file_durable(&path, b"one").unwrap();
        write_file_durable(&path, b"two!").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two!");
        assert!(!dir.join("safekeeper.control.tmp").exists());
        rename_durable(&path, &dir.join("moved")).unwrap();
        assert_eq!(fs::read(dir.join("moved")).unwrap(), b"two!");
        assert_eq!(rename_durable(&path, &dir.join("x")).unwrap_err().code, ErrorCode::Io);
        fsync_dir(&dir).unwrap();
        assert_eq!(DirectMode::parse(Some("sometimes")).unwrap_err().code, ErrorCode::InvalidArgument);
        fs::remove_dir_all(&dir).unwrap();
    }
}
