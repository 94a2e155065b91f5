//! The SegmentFile class as JavaScript sees it: every operation is a Promise run on the libuv pool, in
//! the order it was issued. It must never touch the file on the JS thread nor copy JS bytes there.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};

use napi::bindgen_prelude::{AsyncTask, Buffer, ClassInstance};
use napi_derive::napi;

use crate::durable_fs::DirectMode;
use crate::io_errors::SkResult;
use crate::js_args::to_u64;
use crate::js_blocking_task::Blocking;
use crate::js_wal_decoder::WalDecoder;
use crate::op_sequencer::OpSequencer;
use crate::segment_file::SegmentFile as SegmentFileCore;

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
    file: Arc<Mutex<SegmentFileCore>>,
    sequencer: Arc<OpSequencer>,
    path: String,
    direct: bool,
}

fn locked(file: &Mutex<SegmentFileCore>) -> MutexGuard<'_, SegmentFileCore> {
    file.lock().unwrap_or_else(|p| p.into_inner())
}

#[napi]
impl SegmentFile {
    #[napi(ts_return_type = "Promise<SegmentFile>")]
    pub fn open(path: String, size_bytes: f64, opts: SegmentOpenOptions) -> AsyncTask<Blocking<SegmentFile>> {
        Blocking::run(move || {
            let size_bytes = to_u64(size_bytes, "sizeBytes")?;
            let mode = DirectMode::parse(opts.direct.as_deref())?;
            let file = SegmentFileCore::open(&PathBuf::from(&path), size_bytes, opts.create, mode)?;
            Ok(SegmentFile {
                direct: file.is_direct(),
                file: Arc::new(Mutex::new(file)),
                sequencer: Arc::default(),
                path,
            })
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

    /// Runs `op` on the file on the libuv pool, after every operation issued before it.
    fn queue<T, F>(&self, buffers: Vec<Buffer>, op: F) -> AsyncTask<Blocking<T>>
    where
        T: napi::bindgen_prelude::ToNapiValue + napi::bindgen_prelude::TypeName + Send + 'static,
        F: FnOnce(&mut SegmentFileCore, &[Buffer]) -> SkResult<T> + Send + 'static,
    {
        let ticket = self.sequencer.ticket();
        let file = Arc::clone(&self.file);
        Blocking::with_buffers(buffers, move |buffers| ticket.run(|| op(&mut locked(&file), buffers)))
    }

    /// Writes the concatenation of `chunks` at `offset` (validated by `decoder` first, fdatasync'd if `sync`).
    #[napi(ts_return_type = "Promise<SegmentWriteResult>")]
    pub fn write(&self, offset: f64, chunks: Vec<Buffer>, opts: SegmentWriteOptions) -> AsyncTask<Blocking<SegmentWriteResult>> {
        let decoder = opts.decoder.map(|d| Arc::clone(&d.inner));
        let sync = opts.sync;
        self.queue(chunks, move |file, chunks| {
            let offset = to_u64(offset, "offset")?;
            let slices: Vec<&[u8]> = chunks.iter().map(|b| &b[..]).collect();
            let end = file.write_validated(offset, &slices, sync, decoder.as_deref())?;
            Ok(SegmentWriteResult { end_lsn: end.map_or(-1.0, |e| e as f64) })
        })
    }

    #[napi(ts_return_type = "Promise<void>")]
    pub fn sync(&self) -> AsyncTask<Blocking<()>> {
        self.queue(Vec::new(), |file, _| file.sync())
    }

    /// Writes zeros over [from, to); fdatasync'd if `sync`.
    #[napi(ts_return_type = "Promise<void>")]
    pub fn zero(&self, from: f64, to: f64, sync: bool) -> AsyncTask<Blocking<()>> {
        self.queue(Vec::new(), move |file, _| file.zero(to_u64(from, "from")?, to_u64(to, "to")?, sync))
    }

    /// A fresh Buffer of up to `length` bytes at `offset` (shorter at the end of the file).
    #[napi(ts_return_type = "Promise<Buffer>")]
    pub fn read(&self, offset: f64, length: f64) -> AsyncTask<Blocking<Buffer>> {
        self.queue(Vec::new(), move |file, _| {
            Ok(Buffer::from(file.read(to_u64(offset, "offset")?, to_u64(length, "length")?)?))
        })
    }

    #[napi(ts_return_type = "Promise<void>")]
    pub fn close(&self) -> AsyncTask<Blocking<()>> {
        self.queue(Vec::new(), |file, _| {
            file.close();
            Ok(())
        })
    }
}
