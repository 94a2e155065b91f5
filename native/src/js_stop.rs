//! The JS shape of a decoder stop, shared by the decoder's getters and by SK_WAL_INVALID errors (their
//! `stop` property). Plain data; must never hold references into the decoder.

use napi_derive::napi;

use crate::wal_decoder::Stop;

/// Why decoding stopped: 'end' = clean end of WAL (zeros), 'error' = invalid WAL.
#[napi(object, js_name = "Stop")]
pub struct JsStop {
    #[napi(ts_type = "'end' | 'error'")]
    pub kind: String,
    #[napi(ts_type = "'ZERO_RECORD' | 'ZERO_PAGE' | 'BAD_PAGE_MAGIC' | 'BAD_PAGE_ADDRESS' | 'BAD_PAGE_FLAGS' | 'BAD_REM_LEN' | 'BAD_RECORD_LENGTH' | 'BAD_CRC' | 'BAD_PREV_LINK' | 'BAD_LONG_HEADER'")]
    pub code: String,
    /// The offending record start or page header.
    pub lsn: f64,
    pub message: String,
}

impl From<&Stop> for JsStop {
    fn from(stop: &Stop) -> JsStop {
        JsStop {
            kind: stop.kind().as_str().to_string(),
            code: stop.code.as_str().to_string(),
            lsn: stop.lsn as f64,
            message: stop.message.clone(),
        }
    }
}

