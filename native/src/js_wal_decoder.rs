//! The WalDecoder class as JavaScript sees it: a thin wrapper over wal_decoder::WalDecoder, shared as
//! Arc<Mutex<..>> so SegmentFile.write can validate on a worker thread. It must never hold the lock
//! across anything but a feed.

use std::sync::{Arc, Mutex, MutexGuard};

use napi::bindgen_prelude::{BufferSlice, Either, Float64Array, Null, Uint32Array, Uint8Array};
use napi_derive::napi;

use crate::io_errors::SkError;
use crate::js_args::to_u64;
use crate::js_stop::JsStop;
use crate::js_errors::sync_error;
use crate::wal_decoder::{DecoderOptions, FeedOutcome, RecordInfo, Stop, WalDecoder as WalDecoderCore};

#[napi(object)]
pub struct WalDecoderOptions {
    /// A record start, or a page start (8 KiB boundary, e.g. a segment start).
    pub start_lsn: f64,
    pub segment_size_bytes: f64,
    /// Start of the record before `startLsn`; checked against the first record's xl_prev when given.
    pub prev_lsn: Option<f64>,
    /// Return each completed record's start, prev, length, rmid and info from feed().
    pub collect_records: Option<bool>,
}

/// Columns of the records completed by one feed, index-aligned.
#[napi(object)]
pub struct FeedRecords {
    pub start_lsn: Float64Array,
    pub prev_lsn: Float64Array,
    pub total_length: Uint32Array,
    pub rmid: Uint8Array,
    pub info: Uint8Array,
}

impl From<Vec<RecordInfo>> for FeedRecords {
    fn from(records: Vec<RecordInfo>) -> FeedRecords {
        FeedRecords {
            start_lsn: Float64Array::new(records.iter().map(|r| r.start_lsn as f64).collect()),
            prev_lsn: Float64Array::new(records.iter().map(|r| r.prev_lsn as f64).collect()),
            total_length: Uint32Array::new(records.iter().map(|r| r.total_length).collect()),
            rmid: Uint8Array::new(records.iter().map(|r| r.rmid).collect()),
            info: Uint8Array::new(records.iter().map(|r| r.info).collect()),
        }
    }
}

#[napi(object)]
pub struct FeedResult {
    pub end_lsn: f64,
    /// Records completed in this call.
    pub record_count: u32,
    #[napi(ts_type = "Stop | null")]
    pub stop: Either<JsStop, Null>,
    /// Only with collectRecords.
    pub records: Option<FeedRecords>,
}

fn js_stop_or_null(stop: Option<&Stop>) -> Either<JsStop, Null> {
    match stop {
        Some(stop) => Either::A(JsStop::from(stop)),
        None => Either::B(Null),
    }
}

/// Streaming validator of PostgreSQL WAL (page headers, record headers, CRC-32C, prev links).
#[napi]
pub struct WalDecoder {
    pub(crate) inner: Arc<Mutex<WalDecoderCore>>,
    collect_records: bool,
}

#[napi]
impl WalDecoder {
    #[napi(constructor)]
    pub fn new(opts: WalDecoderOptions) -> napi::Result<Self, String> {
        let parsed = (|| {
            Ok::<_, SkError>(DecoderOptions {
                start_lsn: to_u64(opts.start_lsn, "startLsn")?,
                segment_size_bytes: to_u64(opts.segment_size_bytes, "segmentSizeBytes")?,
                prev_lsn: opts.prev_lsn.map(|p| to_u64(p, "prevLsn")).transpose()?,
            })
        })()
        .map_err(sync_error)?;
        let decoder = WalDecoderCore::new(parsed).map_err(|m| sync_error(SkError::invalid_argument(m)))?;
        Ok(WalDecoder { inner: Arc::new(Mutex::new(decoder)), collect_records: opts.collect_records.unwrap_or(false) })
    }

    fn lock(&self) -> MutexGuard<'_, WalDecoderCore> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn result(&self, decoder: &WalDecoderCore, outcome: FeedOutcome, records: Option<Vec<RecordInfo>>) -> FeedResult {
        FeedResult {
            end_lsn: decoder.end_lsn() as f64,
            record_count: outcome.record_count as u32,
            stop: js_stop_or_null(outcome.stop.as_ref()),
            records: records.map(FeedRecords::from),
        }
    }

    /// Decodes as far as the bytes are valid; after a stop the decoder stays stopped.
    #[napi]
    pub fn feed(&self, chunk: BufferSlice) -> FeedResult {
        let mut records = self.collect_records.then(Vec::new);
        let mut decoder = self.lock();
        let outcome = decoder.feed(&chunk, records.as_mut());
        self.result(&decoder, outcome, records)
    }

    /// All or nothing: on any stop the decoder is restored to before the call (and is not stopped).
    #[napi(js_name = "feedAtomic")]
    pub fn feed_atomic(&self, chunk: BufferSlice) -> FeedResult {
        let mut records = self.collect_records.then(Vec::new);
        let mut decoder = self.lock();
        let outcome = decoder.feed_atomic(&[&chunk], records.as_mut());
        self.result(&decoder, outcome, records)
    }

    /// MAXALIGN'd end of the last complete valid record (segment end after XLOG_SWITCH).
    #[napi(getter, js_name = "endLsn")]
    pub fn end_lsn(&self) -> f64 {
        self.lock().end_lsn() as f64
    }

    /// LSN of the next byte expected; after a stop, the stop's LSN.
    #[napi(getter)]
    pub fn position(&self) -> f64 {
        self.lock().position() as f64
    }

    #[napi(getter, js_name = "lastRecordStart")]
    pub fn last_record_start(&self) -> f64 {
        self.lock().last_record_start() as f64
    }

    /// The stop this decoder is stuck at (feed only; feedAtomic rolls back instead).
    #[napi(getter, ts_return_type = "Stop | null")]
    pub fn stop(&self) -> Either<JsStop, Null> {
        js_stop_or_null(self.lock().stop())
    }

    /// The stop hit by the most recent feed, feedAtomic or validated SegmentFile.write (null if none).
    #[napi(getter, js_name = "lastError", ts_return_type = "Stop | null")]
    pub fn last_error(&self) -> Either<JsStop, Null> {
        js_stop_or_null(self.lock().last_stop())
    }
}
