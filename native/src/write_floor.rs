//! Floor measurements for benchmarks: raw pwrite+fdatasync latency and sequential write bandwidth,
//! timed entirely in Rust on the calling (worker) thread. It must never run on the JS thread, and it
//! removes its scratch file when done.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::time::Instant;

use crate::aligned_buffer::{AlignedBuffer, IO_ALIGN_BYTES};
use crate::durable_fs::{fdatasync, write_zeros};
use crate::io_errors::{SkError, SkResult};

/// fdatasync every this many bytes in the sequential measurement.
const SYNC_EVERY_BYTES: u64 = 16 << 20;

/// A zero-filled (written, not fallocated), fdatasync'd scratch file of `size_bytes`, reopened per `direct`.
fn zero_filled_scratch(path: &Path, size_bytes: u64, direct: bool) -> SkResult<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| SkError::os("create", path, e))?;
    write_zeros(&file, path, size_bytes)?;
    fdatasync(&file, path)?;
    if !direct {
        return Ok(file);
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .map_err(|e| SkError::os("open with O_DIRECT", path, e))
}

fn check_sizes(what: &str, block: u64, direct: bool) -> SkResult<()> {
    if block == 0 || (direct && !block.is_multiple_of(IO_ALIGN_BYTES as u64)) {
        return Err(SkError::invalid_argument(format!(
            "{what} must be positive{}, got {block}",
            if direct { " and a multiple of 4096 for O_DIRECT" } else { "" }
        )));
    }
    Ok(())
}

fn patterned(len: usize) -> AlignedBuffer {
    let mut buf = AlignedBuffer::new(len);
    for (i, b) in buf.iter_mut().enumerate() {
        *b = (i * 31 + 7) as u8;
    }
    buf
}

/// `count` times: pwrite `block_size_bytes` at the next offset, then fdatasync. Returns each op's latency
/// in nanoseconds.
pub fn measure_write_sync_floor(path: &Path, block_size_bytes: u64, count: u64, direct: bool) -> SkResult<Vec<f64>> {
    check_sizes("blockSizeBytes", block_size_bytes, direct)?;
    let file = zero_filled_scratch(path, block_size_bytes * count.max(1), direct)?;
    let data = patterned(block_size_bytes as usize);
    let data = &data[..block_size_bytes as usize];
    let mut latencies = Vec::with_capacity(count as usize);
    let result = (|| {
        for i in 0..count {
            let started = Instant::now();
            file.write_all_at(data, i * block_size_bytes).map_err(|e| SkError::os("pwrite", path, e))?;
            fdatasync(&file, path)?;
            latencies.push(started.elapsed().as_nanos() as f64);
        }
        Ok(())
    })();
    drop(file);
    let _ = fs::remove_file(path);
    result.map(|()| latencies)
}

/// Sequential writes of `chunk_bytes` into a zero-filled file of `total_bytes`, fdatasync every 16 MiB and
/// at the end. Returns bytes per second.
pub fn measure_sequential_write_floor(path: &Path, total_bytes: u64, chunk_bytes: u64, direct: bool) -> SkResult<f64> {
    check_sizes("chunkBytes", chunk_bytes, direct)?;
    if total_bytes == 0 || !total_bytes.is_multiple_of(chunk_bytes) {
        return Err(SkError::invalid_argument(format!(
            "totalBytes must be a positive multiple of chunkBytes ({chunk_bytes}), got {total_bytes}"
        )));
    }
    let file = zero_filled_scratch(path, total_bytes, direct)?;
    let data = patterned(chunk_bytes as usize);
    let data = &data[..chunk_bytes as usize];
    let result = (|| {
        let started = Instant::now();
        let mut since_sync = 0u64;
        let mut at = 0u64;
        while at < total_bytes {
            file.write_all_at(data, at).map_err(|e| SkError::os("pwrite", path, e))?;
            at += chunk_bytes;
            since_sync += chunk_bytes;
            if since_sync >= SYNC_EVERY_BYTES {
                fdatasync(&file, path)?;
                since_sync = 0;
            }
        }
        fdatasync(&file, path)?;
        Ok(total_bytes as f64 / started.elapsed().as_secs_f64())
    })();
    drop(file);
    let _ = fs::remove_file(path);
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io_errors::ErrorCode;

    #[test]
    fn measures_and_cleans_up() {
        let path = std::env::temp_dir().join(format!("sk-floor-{}", std::process::id()));
        let lat = measure_write_sync_floor(&path, 8192, 5, true).unwrap();
        assert_eq!(lat.len(), 5);
        assert!(lat.iter().all(|&ns| ns > 0.0));
        assert!(!path.exists());
        let bps = measure_sequential_write_floor(&path, 4 << 20, 1 << 20, true).unwrap();
        assert!(bps > 0.0);
        assert!(!path.exists());
        assert_eq!(measure_write_sync_floor(&path, 100, 1, true).unwrap_err().code, ErrorCode::InvalidArgument);
    }
}
