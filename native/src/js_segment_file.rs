//! The SegmentFile class as JavaScript sees it: every operation is a Promise, run in call order on the
//! file's own worker thread (serial_worker), and settled on the JS thread through a threadsafe function
//! (js_completion). It must never touch the file on the JS thread nor copy JS bytes there, and it drops
//! the JS Buffers an operation used only back on the JS thread.

use std::cell::OnceCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::Arc;

use napi::bindgen_prelude::{AsyncTask, Buffer, ClassInstance, ToNapiValue, Unknown};
use napi::Env;
use napi_derive::napi;

use crate::durable_fs::DirectMode;
use crate::io_errors::{ErrorCode, SkError, SkResult};
use crate::js_args::to_u64;
use crate::js_blocking_task::Blocking;
use crate::js_completion::{reject, resolve, Completer};
use crate::js_wal_decoder::WalDecoder;
use crate::segment_file::SegmentFile as SegmentFileCore;
use crate::serial_worker::SerialWorker;

#[napi(object)]
pub struct SegmentOpenOptions {
    /// Create the file exclusively, zero-filled by writing, fdatasync'd, directory fsync'd.
    pub create: bool,
    /// O_DIRECT: 'auto' (default; buffered if the file system refuses), 'on' (fail if refused), 'off'.
    #[napi(ts_type = "'auto' | 'on' | 'off'")]
    pub direct: Option<String>,
}

#[napi(object)]
pub struct SegmentWriteOptions<'env> {
    /// fdatasync after writing, in the same task.
    pub sync: bool,
    /// Validate the bytes first (feedAtomic); on any stop nothing is written.
    pub decoder: Option<ClassInstance<'env, WalDecoder>>,
}

#[napi(object)]
pub struct SegmentWriteResult {
    /// The decoder's endLsn after the write, or -1 without a decoder.
    pub end_lsn: f64,
}

/// A preallocated WAL segment file with O_DIRECT aligned writes and fdatasync.
#[napi]
pub struct SegmentFile {
    worker: SerialWorker<SegmentFileCore>,
    /// Created on the first operation (it needs the JS environment).
    completer: OnceCell<Arc<Completer>>,
    path: String,
    direct: bool,
}

fn panic_error() -> SkError {
    SkError::new(ErrorCode::Io, "internal error: the segment file operation panicked")
}

#[napi]
impl SegmentFile {
    #[napi(ts_return_type = "Promise<SegmentFile>")]
    pub fn open(path: String, size_bytes: f64, opts: SegmentOpenOptions) -> AsyncTask<Blocking<SegmentFile>> {
        Blocking::run(move || {
            let size_bytes = to_u64(size_bytes, "sizeBytes")?;
            let mode = DirectMode::parse(opts.direct.as_deref())?;
            let file = SegmentFileCore::open(&PathBuf::from(&path), size_bytes, opts.create, mode)?;
            let direct = file.is_direct();
            let worker = SerialWorker::new(file, SegmentFileCore::is_closed, "sk-segment-file".to_string());
            // Spawn now, off the JS thread; if it fails, the first operation tries again (and reports it).
            let _ = worker.start();
            Ok(SegmentFile { worker, completer: OnceCell::new(), direct, path })
        })
    }

    #[napi(getter, js_name = "isDirect")]
    pub fn is_direct(&self) -> bool {
        self.direct
    }

    #[napi(getter)]
    pub fn path(&self) -> String {
        self.path.clone()
    }

    /// Runs `op` on the file's worker after every operation issued before it; returns its promise.
    fn queue<'env, T, F>(&self, env: &'env Env, buffers: Vec<Buffer>, op: F) -> napi::Result<Unknown<'env>>
    where
        T: ToNapiValue + Send + 'static,
        F: FnOnce(&mut SegmentFileCore, &[Buffer]) -> SkResult<T> + Send + 'static,
    {
        let completer = match self.completer.get() {
            Some(c) => Arc::clone(c),
            None => {
                let c = Completer::new(env, "sk-segment-file")?;
                Arc::clone(self.completer.get_or_init(|| c))
            }
        };
        let (deferred, promise) = completer.begin(env)?;
        let for_job = Arc::clone(&completer);
        self.worker.submit(move |file| {
            let result = match file {
                Ok(file) => catch_unwind(AssertUnwindSafe(|| op(file, &buffers))).unwrap_or_else(|_| Err(panic_error())),
                Err(err) => Err(SkError::new(ErrorCode::Io, format!("cannot start the segment file's worker thread: {err}"))),
            };
            for_job.complete(Box::new(move |env| {
                // The Buffers' references are released here, on the JS thread.
                drop(buffers);
                match result {
                    Ok(value) => resolve(&env, deferred, value),
                    Err(err) => reject(&env, deferred, err),
                }
            }));
        });
        Ok(promise)
    }

    /// Writes the concatenation of `chunks` at `offset` (validated by `decoder` first, fdatasync'd if `sync`).
    #[napi(ts_return_type = "Promise<SegmentWriteResult>")]
    pub fn write<'env>(&self, env: &'env Env, offset: f64, chunks: Vec<Buffer>, opts: SegmentWriteOptions) -> napi::Result<Unknown<'env>> {
        let decoder = opts.decoder.map(|d| Arc::clone(&d.inner));
        let sync = opts.sync;
        self.queue(env, chunks, move |file, chunks| {
            let offset = to_u64(offset, "offset")?;
            let end = match chunks {
                [one] => file.write_validated(offset, &[&one[..]], sync, decoder.as_deref())?,
                _ => {
                    let slices: Vec<&[u8]> = chunks.iter().map(|b| &b[..]).collect();
                    file.write_validated(offset, &slices, sync, decoder.as_deref())?
                }
            };
            Ok(SegmentWriteResult { end_lsn: end.map_or(-1.0, |e| e as f64) })
        })
    }

    #[napi(ts_return_type = "Promise<void>")]
    pub fn sync<'env>(&self, env: &'env Env) -> napi::Result<Unknown<'env>> {
        self.queue(env, Vec::new(), |file, _| file.sync())
    }

    /// Writes zeros over [from, to); fdatasync'd if `sync`.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn zero<'env>(&self, env: &'env Env, from: f64, to: f64, sync: bool) -> napi::Result<Unknown<'env>> {
        self.queue(env, Vec::new(), move |file, _| file.zero(to_u64(from, "from")?, to_u64(to, "to")?, sync))
    }

    /// A fresh Buffer of up to `length` bytes at `offset` (shorter at the end of the file).
    #[napi(ts_return_type = "Promise<Buffer>")]
    pub fn read<'env>(&self, env: &'env Env, offset: f64, length: f64) -> napi::Result<Unknown<'env>> {
        self.queue(env, Vec::new(), move |file, _| {
            Ok(Buffer::from(file.read(to_u64(offset, "offset")?, to_u64(length, "length")?)?))
        })
    }

    #[napi(ts_return_type = "Promise<void>")]
    pub fn close<'env>(&self, env: &'env Env) -> napi::Result<Unknown<'env>> {
        self.queue(env, Vec::new(), |file, _| {
            file.close();
            Ok(())
        })
    }
}
