//! One preallocated WAL segment file: writes at any offset (O_DIRECT as aligned 4 KiB blocks, or
//! buffered), zeroing, reads and fdatasync. Blocking: call it from a worker thread. It must never write a
//! partial O_DIRECT block without knowing that block's other bytes, nor write again after an fsync failed.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::aligned_buffer::{align_down, align_up, AlignedBuffer, IO_ALIGN_BYTES};
use crate::durable_fs::{create_zero_filled, fdatasync, open_read_write, read_full_at, DirectMode};
use crate::io_errors::{ErrorCode, SkError, SkResult};
use crate::wal_decoder::WalDecoder;

const BLOCK: u64 = IO_ALIGN_BYTES as u64;
const BLOCK_USIZE: usize = IO_ALIGN_BYTES;
/// Largest single pwrite/pread; longer requests go through the aligned buffer in windows of this size.
const WINDOW_BYTES: u64 = 1 << 20;

/// The image of one 4 KiB block exactly as it is on disk, so the next unaligned write needs no read.
struct CachedBlock {
    offset: u64,
    bytes: Box<[u8]>,
}

/// Where a write's bytes come from.
enum Source<'a> {
    Chunks { chunks: &'a [&'a [u8]], index: usize, offset: usize },
    Zeros,
}

impl Source<'_> {
    fn fill(&mut self, mut dst: &mut [u8]) {
        match self {
            Source::Zeros => dst.fill(0),
            Source::Chunks { chunks, index, offset } => {
                while !dst.is_empty() {
                    let rest = &chunks[*index][*offset..];
                    let n = rest.len().min(dst.len());
                    dst[..n].copy_from_slice(&rest[..n]);
                    dst = &mut dst[n..];
                    *offset += n;
                    if *offset == chunks[*index].len() {
                        *index += 1;
                        *offset = 0;
                    }
                }
            }
        }
    }
}

pub struct SegmentFile {
    path: PathBuf,
    file: Option<File>,
    size_bytes: u64,
    direct: bool,
    buffer: AlignedBuffer,
    cached_block: Option<CachedBlock>,
    /// Every byte at or after this offset is known to be zero on disk (file size when unknown).
    known_zero_from: u64,
    fsync_failed: bool,
}

impl SegmentFile {
    /// Opens `path`, which must be `size_bytes` long; with `create`, creates it zero-filled (exclusively,
    /// fdatasync'd, directory fsync'd) first.
    pub fn open(path: &Path, size_bytes: u64, create: bool, mode: DirectMode) -> SkResult<SegmentFile> {
        if size_bytes == 0 || !size_bytes.is_multiple_of(BLOCK) {
            return Err(SkError::invalid_argument(format!(
                "segment size must be a positive multiple of {BLOCK}, got {size_bytes} for {}",
                path.display()
            )));
        }
        let (file, direct, known_zero_from) = if create {
            let (file, direct) = create_zero_filled(path, size_bytes, mode)?;
            (file, direct, 0)
        } else {
            let (file, direct) = open_read_write(path, mode)?;
            let actual = file.metadata().map_err(|e| SkError::os("fstat", path, e))?.len();
            if actual != size_bytes {
                return Err(SkError::new(
                    ErrorCode::Io,
                    format!("segment {} has the wrong size: got {actual} bytes, expected {size_bytes}", path.display()),
                ));
            }
            (file, direct, size_bytes)
        };
        Ok(SegmentFile {
            path: path.to_path_buf(),
            file: Some(file),
            size_bytes,
            direct,
            buffer: AlignedBuffer::new(64 << 10),
            cached_block: None,
            known_zero_from,
            fsync_failed: false,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn is_direct(&self) -> bool {
        self.direct
    }

    pub fn size_bytes(&self) -> u64 {
        self.size_bytes
    }

    fn check_range(&self, op: &str, offset: u64, len: u64) -> SkResult<()> {
        if offset.checked_add(len).is_none_or(|end| end > self.size_bytes) {
            return Err(SkError::invalid_argument(format!(
                "{op} of {len} bytes at offset {offset} is outside {} ({} bytes)",
                self.path.display(),
                self.size_bytes
            )));
        }
        Ok(())
    }

    fn check_open(&self) -> SkResult<&File> {
        self.file
            .as_ref()
            .ok_or_else(|| SkError::new(ErrorCode::Io, format!("segment file {} is closed", self.path.display())))
    }

    fn check_writable(&self) -> SkResult<()> {
        self.check_open()?;
        if self.fsync_failed {
            return Err(SkError::new(
                ErrorCode::FsyncFailed,
                format!("an earlier fdatasync of {} failed: its contents are unknown, refusing to write", self.path.display()),
            ));
        }
        Ok(())
    }

    /// Writes the concatenation of `chunks` at `offset`; fdatasyncs afterwards when `sync`.
    pub fn write(&mut self, offset: u64, chunks: &[&[u8]], sync: bool) -> SkResult<()> {
        self.write_validated(offset, chunks, sync, None).map(|_| ())
    }

    /// Like `write`, but first feeds the bytes through `decoder` atomically: if it stops (end or error),
    /// nothing is written and the error is SK_WAL_INVALID. If the write itself fails, the decoder is
    /// rolled back too. Returns the decoder's end LSN.
    pub fn write_validated(
        &mut self,
        offset: u64,
        chunks: &[&[u8]],
        sync: bool,
        decoder: Option<&Mutex<WalDecoder>>,
    ) -> SkResult<Option<u64>> {
        self.check_writable()?;
        let total: u64 = chunks.iter().map(|c| c.len() as u64).sum();
        self.check_range("write", offset, total)?;
        let Some(decoder) = decoder else {
            self.write_range(offset, total, Source::Chunks { chunks, index: 0, offset: 0 })?;
            if sync {
                self.sync()?;
            }
            return Ok(None);
        };
        // The decoder lock is not held across the I/O: the JS thread may read its getters meanwhile.
        let (before, generation, end_lsn) = {
            let mut dec = decoder.lock().unwrap_or_else(|p| p.into_inner());
            let before = dec.clone();
            if let Some(stop) = dec.feed_atomic(chunks, None).stop {
                return Err(SkError::wal_invalid(stop, &self.path));
            }
            (before, dec.generation(), dec.end_lsn())
        };
        let written = self.write_range(offset, total, Source::Chunks { chunks, index: 0, offset: 0 });
        if let Err(err) = written.and_then(|()| if sync { self.sync() } else { Ok(()) }) {
            // Un-accept the bytes so the same write can be retried (e.g. after SK_DISK_FULL), unless
            // someone fed the decoder since.
            let mut dec = decoder.lock().unwrap_or_else(|p| p.into_inner());
            if dec.generation() == generation {
                *dec = before;
            }
            return Err(err);
        }
        Ok(Some(end_lsn))
    }

    /// Writes zeros over [from, to): truncates a divergent tail.
    pub fn zero(&mut self, from: u64, to: u64, sync: bool) -> SkResult<()> {
        self.check_writable()?;
        if to < from {
            return Err(SkError::invalid_argument(format!("zero range {from}..{to} of {} is reversed", self.path.display())));
        }
        self.check_range("zero", from, to - from)?;
        self.write_range(from, to - from, Source::Zeros)?;
        if sync {
            self.sync()?;
        }
        Ok(())
    }

    pub fn sync(&mut self) -> SkResult<()> {
        let file = self.check_open()?;
        if self.fsync_failed {
            return Err(SkError::new(ErrorCode::FsyncFailed, format!("an earlier fdatasync of {} failed", self.path.display())));
        }
        let result = fdatasync(file, &self.path);
        if result.is_err() {
            self.fsync_failed = true;
        }
        result
    }

    /// Reads up to `length` bytes at `offset` (fewer at the end of the file).
    pub fn read(&mut self, offset: u64, length: u64) -> SkResult<Vec<u8>> {
        self.check_open()?;
        if offset > self.size_bytes {
            return Err(SkError::invalid_argument(format!(
                "read at offset {offset} is past the end of {} ({} bytes)",
                self.path.display(),
                self.size_bytes
            )));
        }
        let length = length.min(self.size_bytes - offset);
        let mut out = vec![0u8; length as usize];
        let file = self.file.as_ref().expect("checked open");
        if !self.direct {
            let n = read_full_at(file, &mut out, offset).map_err(|e| SkError::os("pread", &self.path, e))?;
            out.truncate(n);
            return Ok(out);
        }
        let end = offset + length;
        let mut w = align_down(offset);
        let last = align_up(end);
        while w < last {
            let w_end = last.min(w + WINDOW_BYTES);
            let len = (w_end - w) as usize;
            self.buffer.ensure_len(len);
            let n = read_full_at(file, &mut self.buffer[..len], w).map_err(|e| SkError::os("pread", &self.path, e))?;
            let from = offset.max(w);
            let to = end.min(w_end).min(w + n as u64);
            if to > from {
                out[(from - offset) as usize..(to - offset) as usize]
                    .copy_from_slice(&self.buffer[(from - w) as usize..(to - w) as usize]);
            }
            if n < len {
                out.truncate(to.max(from).saturating_sub(offset) as usize);
                break;
            }
            w = w_end;
        }
        Ok(out)
    }

    pub fn is_closed(&self) -> bool {
        self.file.is_none()
    }

    pub fn close(&mut self) {
        self.file = None;
        self.cached_block = None;
    }

    fn write_range(&mut self, offset: u64, len: u64, source: Source<'_>) -> SkResult<()> {
        if len == 0 {
            return Ok(());
        }
        let zeros = matches!(source, Source::Zeros);
        let end = offset + len;
        let result = if self.direct { self.write_direct(offset, end, source) } else { self.write_buffered(offset, end, source) };
        if result.is_err() {
            // Part of the range may be on disk: forget what we believed about the file's contents.
            self.cached_block = None;
            self.known_zero_from = self.size_bytes;
            return result;
        }
        if zeros {
            if end >= self.known_zero_from {
                self.known_zero_from = self.known_zero_from.min(offset);
            }
        } else {
            self.known_zero_from = self.known_zero_from.max(end);
        }
        Ok(())
    }

    fn write_buffered(&mut self, offset: u64, end: u64, source: Source<'_>) -> SkResult<()> {
        let file = self.file.as_ref().expect("checked open");
        match source {
            Source::Chunks { chunks, .. } => {
                let mut at = offset;
                for chunk in chunks {
                    file.write_all_at(chunk, at).map_err(|e| SkError::os("pwrite", &self.path, e))?;
                    at += chunk.len() as u64;
                }
            }
            Source::Zeros => {
                let n = (end - offset).min(WINDOW_BYTES) as usize;
                self.buffer.ensure_len(n);
                self.buffer[..n].fill(0);
                let mut at = offset;
                while at < end {
                    let k = (end - at).min(n as u64) as usize;
                    file.write_all_at(&self.buffer[..k], at).map_err(|e| SkError::os("pwrite", &self.path, e))?;
                    at += k as u64;
                }
            }
        }
        Ok(())
    }

    /// Issues [offset, end) as whole aligned blocks from the aligned buffer: the head of the first block and
    /// the tail of the last come from the cached block, from known zeros, or from an aligned pread.
    fn write_direct(&mut self, offset: u64, end: u64, mut source: Source<'_>) -> SkResult<()> {
        let first = align_down(offset);
        let last = align_up(end);
        let cache_head = end.is_multiple_of(BLOCK) && !offset.is_multiple_of(BLOCK);
        let mut new_cache: Option<CachedBlock> = None;
        let mut w = first;
        while w < last {
            let w_end = last.min(w + WINDOW_BYTES);
            let len = (w_end - w) as usize;
            self.buffer.ensure_len(len);
            let data_from = offset.max(w);
            let data_to = end.min(w_end);
            let head_loaded = data_from > w;
            if head_loaded {
                self.load_block(w, w, 0)?;
            }
            if data_to < w_end {
                let tail = w_end - BLOCK;
                if !(head_loaded && tail == w) {
                    self.load_block(tail, data_to, len - BLOCK_USIZE)?;
                }
            }
            source.fill(&mut self.buffer[(data_from - w) as usize..(data_to - w) as usize]);
            let file = self.file.as_ref().expect("checked open");
            file.write_all_at(&self.buffer[..len], w).map_err(|e| SkError::os("pwrite", &self.path, e))?;
            if cache_head && w == first {
                new_cache = Some(CachedBlock { offset: first, bytes: self.buffer[..BLOCK_USIZE].into() });
            }
            if !end.is_multiple_of(BLOCK) && w_end == last {
                new_cache = Some(CachedBlock { offset: last - BLOCK, bytes: self.buffer[len - BLOCK_USIZE..len].into() });
            }
            w = w_end;
        }
        match new_cache {
            Some(block) => self.cached_block = Some(block),
            None => {
                if self.cached_block.as_ref().is_some_and(|c| c.offset >= first && c.offset < last) {
                    self.cached_block = None;
                }
            }
        }
        Ok(())
    }

    /// Puts the on-disk image of the block at `block` into buffer[at..at+4096]. Only the bytes from
    /// `needed_from` on are kept in the write, so if they are all past `known_zero_from`, zeros will do.
    fn load_block(&mut self, block: u64, needed_from: u64, at: usize) -> SkResult<()> {
        let dst = &mut self.buffer[at..at + BLOCK_USIZE];
        if let Some(cached) = self.cached_block.as_ref().filter(|c| c.offset == block) {
            dst.copy_from_slice(&cached.bytes);
        } else if needed_from >= self.known_zero_from {
            dst.fill(0);
        } else {
            let file = self.file.as_ref().expect("checked open");
            let n = read_full_at(file, dst, block).map_err(|e| SkError::os("pread", &self.path, e))?;
            dst[n..].fill(0);
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "segment_file_tests.rs"]
mod tests;
