//! N-API surface of the safekeeper addon. This file only exports: the pure modules below hold the logic
//! (each with its own `cargo test`), the js_* modules are thin #[napi] wrappers over them.
use napi::bindgen_prelude::Buffer;
use napi_derive::napi;

pub mod aligned_buffer;
pub mod durable_fs;
pub mod io_errors;
pub mod segment_file;
pub mod serial_worker;
pub mod wal_decoder;
pub mod write_floor;

#[cfg_attr(test, allow(dead_code))]
mod js_args;
#[cfg_attr(test, allow(dead_code))]
mod js_blocking_task;
#[cfg_attr(test, allow(dead_code))]
mod js_completion;
#[cfg_attr(test, allow(dead_code))]
mod js_errors;
#[cfg_attr(test, allow(dead_code))]
mod js_fs_functions;
#[cfg_attr(test, allow(dead_code))]
mod js_segment_file;
#[cfg_attr(test, allow(dead_code))]
mod js_stop;
#[cfg_attr(test, allow(dead_code))]
mod js_wal_decoder;

/// CRC-32C (Castagnoli); `seed` continues a previous result. crc32c(Buffer.from('123456789')) = 0xe3069283.
#[napi(js_name = "crc32c")]
pub fn crc32c(buf: Buffer, seed: Option<u32>) -> u32 {
    crc32c::crc32c_append(seed.unwrap_or(0), &buf)
}
