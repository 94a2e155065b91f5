//! A heap buffer aligned to 4096 bytes, owned on the Rust side, for O_DIRECT reads and writes.
//! It must never be handed to JavaScript or borrowed across threads: callers copy into and out of it.

use std::alloc::{self, Layout};
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

/// Alignment of offsets, lengths and memory for O_DIRECT I/O here (the common logical block size).
pub const IO_ALIGN_BYTES: usize = 4096;

pub struct AlignedBuffer {
    ptr: NonNull<u8>,
    len: usize,
}

// The buffer exclusively owns its allocation, like a Vec<u8>.
unsafe impl Send for AlignedBuffer {}
unsafe impl Sync for AlignedBuffer {}

pub fn align_down(value: u64) -> u64 {
    value & !(IO_ALIGN_BYTES as u64 - 1)
}

pub fn align_up(value: u64) -> u64 {
    align_down(value + IO_ALIGN_BYTES as u64 - 1)
}

impl AlignedBuffer {
    /// A zeroed buffer of `len` bytes rounded up to a multiple of 4096 (at least 4096).
    pub fn new(len: usize) -> AlignedBuffer {
        let len = (align_up(len.max(1) as u64)) as usize;
        let layout = Layout::from_size_align(len, IO_ALIGN_BYTES).expect("aligned layout");
        // SAFETY: the layout has a non-zero size.
        let ptr = unsafe { alloc::alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(ptr) else { alloc::handle_alloc_error(layout) };
        AlignedBuffer { ptr, len }
    }

    /// Makes the buffer at least `len` bytes long. Contents are not preserved when it grows.
    pub fn ensure_len(&mut self, len: usize) {
        if len > self.len {
            *self = AlignedBuffer::new(len);
        }
    }
}

impl Deref for AlignedBuffer {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: ptr points to `len` initialised (zeroed at allocation) bytes owned by self.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl DerefMut for AlignedBuffer {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in deref, and &mut self guarantees exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AlignedBuffer {
    fn drop(&mut self) {
        let layout = Layout::from_size_align(self.len, IO_ALIGN_BYTES).expect("aligned layout");
        // SAFETY: allocated in `new` with this exact layout.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), layout) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_aligned_zeroed_and_rounded_up() {
        let mut b = AlignedBuffer::new(100);
        assert_eq!(b.len(), 4096);
        assert_eq!(b.as_ptr() as usize % IO_ALIGN_BYTES, 0);
        assert!(b.iter().all(|&x| x == 0));
        b[4095] = 7;
        b.ensure_len(10_000);
        assert_eq!(b.len(), 12_288);
        assert_eq!(b.as_ptr() as usize % IO_ALIGN_BYTES, 0);
        assert_eq!((align_down(4097), align_up(4097), align_up(4096), align_up(0)), (4096, 8192, 4096, 0));
    }
}
