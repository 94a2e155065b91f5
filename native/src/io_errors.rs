//! The error catalogue of the native I/O layer: each failure carries one stable `SK_*` code (docs/ERRORS.md)
//! and a message naming the operation, the path and the OS error. It must never hide an fsync failure
//! behind a retryable code: callers crash on SK_FSYNC_FAILED.

use std::fmt;
use std::io;
use std::path::Path;

use crate::wal_decoder::{format_lsn, Stop};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    DiskFull,
    FsyncFailed,
    WalInvalid,
    InvalidArgument,
    Io,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::DiskFull => "SK_DISK_FULL",
            ErrorCode::FsyncFailed => "SK_FSYNC_FAILED",
            ErrorCode::WalInvalid => "SK_WAL_INVALID",
            ErrorCode::InvalidArgument => "SK_INVALID_ARGUMENT",
            ErrorCode::Io => "SK_IO",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SkError {
    pub code: ErrorCode,
    pub message: String,
    /// For SK_WAL_INVALID: where and why the decoder stopped.
    pub wal_stop: Option<Stop>,
}

pub type SkResult<T> = Result<T, SkError>;

impl SkError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> SkError {
        SkError { code, message: message.into(), wal_stop: None }
    }

    pub fn invalid_argument(message: impl Into<String>) -> SkError {
        SkError::new(ErrorCode::InvalidArgument, message)
    }

    /// An OS error from `op` on `path`: ENOSPC/EDQUOT become SK_DISK_FULL, the rest SK_IO.
    pub fn os(op: &str, path: &Path, err: io::Error) -> SkError {
        let code = match err.raw_os_error() {
            Some(libc::ENOSPC) | Some(libc::EDQUOT) => ErrorCode::DiskFull,
            _ => ErrorCode::Io,
        };
        SkError::new(code, format!("{op} {}: {err}", path.display()))
    }

    /// The decoder refused the bytes of a write; nothing was written.
    pub fn wal_invalid(stop: Stop, path: &Path) -> SkError {
        SkError {
            code: ErrorCode::WalInvalid,
            message: format!(
                "WAL rejected at {} ({}): {}; nothing written to {}",
                format_lsn(stop.lsn),
                stop.code.as_str(),
                stop.message,
                path.display()
            ),
            wal_stop: Some(stop),
        }
    }

    /// Any fsync/fdatasync failure. The page cache may have dropped the dirty pages: never retry.
    pub fn fsync(op: &str, path: &Path, err: io::Error) -> SkError {
        SkError::new(ErrorCode::FsyncFailed, format!("{op} {}: {err}", path.display()))
    }
}

impl fmt::Display for SkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for SkError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_disk_full_and_keeps_path_and_os_error() {
        let e = SkError::os("pwrite", Path::new("/x/seg"), io::Error::from_raw_os_error(libc::ENOSPC));
        assert_eq!(e.code, ErrorCode::DiskFull);
        assert!(e.message.contains("/x/seg") && e.message.contains("No space left"), "{}", e.message);
        let e = SkError::os("pwrite", Path::new("/x/seg"), io::Error::from_raw_os_error(libc::EDQUOT));
        assert_eq!(e.code.as_str(), "SK_DISK_FULL");
        let e = SkError::os("open", Path::new("/x/seg"), io::Error::from_raw_os_error(libc::ENOENT));
        assert_eq!(e.code.as_str(), "SK_IO");
        let e = SkError::fsync("fdatasync", Path::new("/x/seg"), io::Error::from_raw_os_error(libc::ENOSPC));
        assert_eq!(e.code.as_str(), "SK_FSYNC_FAILED");
    }
}
