//! Free functions exported to JavaScript: durable file-system steps and the benchmark floor helpers.
//! Each returns a Promise and runs on the libuv pool; none may block the JS thread.

use std::path::PathBuf;

use napi::bindgen_prelude::{AsyncTask, Buffer, Float64Array};
use napi_derive::napi;

use crate::durable_fs::{self, DirectMode};
use crate::js_args::to_u64;
use crate::js_blocking_task::Blocking;
use crate::write_floor;

/// fsync a directory (after creating, renaming or removing entries in it).
#[napi(js_name = "fsyncDir", ts_return_type = "Promise<void>")]
pub fn fsync_dir(path: String) -> AsyncTask<Blocking<()>> {
    Blocking::run(move || durable_fs::fsync_dir(&PathBuf::from(path)))
}

/// rename, then fsync the destination's directory and the source's if different. The caller has made
/// the file's data durable already.
#[napi(js_name = "renameDurable", ts_return_type = "Promise<void>")]
pub fn rename_durable(from: String, to: String) -> AsyncTask<Blocking<()>> {
    Blocking::run(move || durable_fs::rename_durable(&PathBuf::from(from), &PathBuf::from(to)))
}

/// Atomic durable replacement: write `path.tmp`, fsync, rename over `path`, fsync the directory.
#[napi(js_name = "writeFileDurable", ts_return_type = "Promise<void>")]
pub fn write_file_durable(path: String, data: Buffer) -> AsyncTask<Blocking<()>> {
    Blocking::with_buffers(vec![data], move |data| durable_fs::write_file_durable(&PathBuf::from(path), &data[0]))
}

/// Creates a zero-filled file (written, fdatasync'd, directory fsync'd); fails if `path` exists.
#[napi(js_name = "prepareSegmentFile", ts_return_type = "Promise<void>")]
pub fn prepare_segment_file(path: String, size_bytes: f64) -> AsyncTask<Blocking<()>> {
    Blocking::run(move || {
        let size_bytes = to_u64(size_bytes, "sizeBytes")?;
        durable_fs::create_zero_filled(&PathBuf::from(path), size_bytes, DirectMode::Auto).map(drop)
    })
}

/// Benchmark floor: `count` times pwrite(blockSizeBytes) + fdatasync into a zero-filled scratch file at
/// `path` (removed afterwards). Each op's latency in nanoseconds, timed in Rust.
#[napi(js_name = "measureWriteSyncFloor", ts_return_type = "Promise<Float64Array>")]
pub fn measure_write_sync_floor(path: String, block_size_bytes: f64, count: f64, direct: bool) -> AsyncTask<Blocking<Float64Array>> {
    Blocking::run(move || {
        let block = to_u64(block_size_bytes, "blockSizeBytes")?;
        let count = to_u64(count, "count")?;
        write_floor::measure_write_sync_floor(&PathBuf::from(path), block, count, direct).map(Float64Array::new)
    })
}

/// Benchmark floor: bytes/second of sequential writes into a zero-filled scratch file at `path` (removed
/// afterwards), fdatasync every 16 MiB and at the end.
#[napi(js_name = "measureSequentialWriteFloor", ts_return_type = "Promise<number>")]
pub fn measure_sequential_write_floor(path: String, total_bytes: f64, chunk_bytes: f64, direct: bool) -> AsyncTask<Blocking<f64>> {
    Blocking::run(move || {
        let total = to_u64(total_bytes, "totalBytes")?;
        let chunk = to_u64(chunk_bytes, "chunkBytes")?;
        write_floor::measure_sequential_write_floor(&PathBuf::from(path), total, chunk, direct)
    })
}
