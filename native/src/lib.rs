//! N-API surface of the safekeeper addon. This file only exports; logic lives in the modules below.
use napi::bindgen_prelude::Buffer;
use napi_derive::napi;

pub mod aligned_buffer;
pub mod durable_fs;
pub mod io_errors;
pub mod op_sequencer;
pub mod segment_file;
pub mod wal_decoder;

#[napi(js_name = "crc32c")]
pub fn crc32c(buf: Buffer, seed: Option<u32>) -> u32 {
    crc32c::crc32c_append(seed.unwrap_or(0), &buf)
}
