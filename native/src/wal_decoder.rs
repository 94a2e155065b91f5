//! Streaming PostgreSQL WAL decoder and validator: page headers, record headers, CRC-32C, prev links.
//! Pure, synchronous Rust with no N-API types. It must never buffer a whole record: its state stays a
//! few dozen bytes plus one record header, so `feed_atomic` can snapshot it by copying.

use std::fmt::Write as _;

/// WAL page size (XLOG_BLCKSZ). Only 8 KiB pages are supported.
pub const WAL_PAGE_SIZE_BYTES: u64 = 8192;
pub const SIZE_OF_SHORT_PAGE_HEADER: usize = 24;
pub const SIZE_OF_LONG_PAGE_HEADER: usize = 40;
pub const SIZE_OF_RECORD_HEADER: usize = 24;
/// XLogRecordMaxSize: PostgreSQL never writes a longer record.
pub const MAX_RECORD_LENGTH_BYTES: u32 = 1020 * 1024 * 1024;

const XLP_FIRST_IS_CONTRECORD: u16 = 0x0001;
const XLP_LONG_HEADER: u16 = 0x0002;
/// XLP_FIRST_IS_CONTRECORD | XLP_LONG_HEADER | XLP_BKP_REMOVABLE | XLP_FIRST_IS_OVERWRITE_CONTRECORD.
const XLP_ALL_FLAGS: u16 = 0x000F;
/// XLOG_PAGE_MAGIC of PostgreSQL 13, 14, 15, 16 and 17 (0xD110 checked against real PG15 WAL).
pub const ACCEPTED_PAGE_MAGICS: [u16; 5] = [0xD106, 0xD10D, 0xD110, 0xD113, 0xD116];
const RM_XLOG_ID: u8 = 0;
const XLOG_SWITCH: u8 = 0x40;

/// Formats an LSN the way PostgreSQL prints it: `X/XXXXXXXX`.
pub fn format_lsn(lsn: u64) -> String {
    LsnText(lsn).to_string()
}

/// An LSN that formats as `X/XXXXXXXX` only when displayed, so the happy path never allocates a message.
#[derive(Clone, Copy)]
struct LsnText(u64);

impl std::fmt::Display for LsnText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:X}/{:08X}", self.0 >> 32, self.0 as u32)
    }
}

fn max_align(value: u64) -> u64 {
    (value + 7) & !7
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopKind {
    /// Clean end of WAL: zeros where a record or page header was expected.
    End,
    /// The bytes are not valid WAL.
    Error,
}

impl StopKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StopKind::End => "end",
            StopKind::Error => "error",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopCode {
    ZeroRecord,
    ZeroPage,
    BadPageMagic,
    BadPageAddress,
    BadPageFlags,
    BadRemLen,
    BadRecordLength,
    BadCrc,
    BadPrevLink,
    BadLongHeader,
}

impl StopCode {
    pub fn as_str(self) -> &'static str {
        match self {
            StopCode::ZeroRecord => "ZERO_RECORD",
            StopCode::ZeroPage => "ZERO_PAGE",
            StopCode::BadPageMagic => "BAD_PAGE_MAGIC",
            StopCode::BadPageAddress => "BAD_PAGE_ADDRESS",
            StopCode::BadPageFlags => "BAD_PAGE_FLAGS",
            StopCode::BadRemLen => "BAD_REM_LEN",
            StopCode::BadRecordLength => "BAD_RECORD_LENGTH",
            StopCode::BadCrc => "BAD_CRC",
            StopCode::BadPrevLink => "BAD_PREV_LINK",
            StopCode::BadLongHeader => "BAD_LONG_HEADER",
        }
    }

    pub fn kind(self) -> StopKind {
        match self {
            StopCode::ZeroRecord | StopCode::ZeroPage => StopKind::End,
            _ => StopKind::Error,
        }
    }
}

/// Why decoding stopped, at which LSN (the offending record start or page header).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stop {
    pub code: StopCode,
    pub lsn: u64,
    pub message: String,
}

impl Stop {
    fn new(code: StopCode, lsn: u64, message: String) -> Stop {
        Stop { code, lsn, message }
    }

    pub fn kind(&self) -> StopKind {
        self.code.kind()
    }
}

/// One complete, validated record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordInfo {
    pub start_lsn: u64,
    pub prev_lsn: u64,
    pub total_length: u32,
    pub rmid: u8,
    pub info: u8,
}

#[derive(Clone, Copy, Debug)]
pub struct DecoderOptions {
    /// A record start, or a page start (8 KiB boundary).
    pub start_lsn: u64,
    pub segment_size_bytes: u64,
    /// Checked against the first record's xl_prev when given.
    pub prev_lsn: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedOutcome {
    /// Records completed (and kept) by this call.
    pub record_count: u64,
    pub stop: Option<Stop>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Collecting a record header (`rec_have` bytes so far); first skips MAXALIGN padding.
    RecordHeader,
    /// Streaming `left` body bytes of the current record through the CRC.
    RecordBody,
    /// Skipping `left` bytes of a record that began before `start_lsn`.
    SkipContinuation,
    /// After XLOG_SWITCH: the rest of the segment is padding.
    SwitchPadding,
}

/// What the next page header must say about a record continuing onto its page.
enum Continuation {
    None,
    Bytes(u32),
    /// The start page: whatever it says decides whether a continued record is skipped.
    Unknown,
}

#[derive(Clone, Debug)]
pub struct WalDecoder {
    segment_size_bytes: u64,
    /// LSN of the next input byte.
    pos: u64,
    end_lsn: u64,
    last_record_start: u64,
    /// xl_prev the next record must carry; None = not checked (start at a page boundary).
    expected_prev: Option<u64>,
    page_magic: Option<u16>,
    system_id: Option<u64>,
    phase: Phase,
    on_start_page: bool,
    page_hdr: [u8; SIZE_OF_LONG_PAGE_HEADER],
    rec_hdr: [u8; SIZE_OF_RECORD_HEADER],
    rec_have: u8,
    rec_start: u64,
    rec_total: u32,
    left: u32,
    crc: u32,
    stop: Option<Stop>,
    last_stop: Option<Stop>,
    /// Counts feed and feed_atomic calls, so a caller can tell whether anyone fed it in between.
    generation: u64,
}

impl WalDecoder {
    pub fn new(opts: DecoderOptions) -> Result<WalDecoder, String> {
        let seg = opts.segment_size_bytes;
        if !seg.is_power_of_two() || !(1 << 20..=1 << 30).contains(&seg) {
            return Err(format!("segmentSizeBytes must be a power of two from 1 MiB to 1 GiB, got {seg}"));
        }
        let start = opts.start_lsn;
        let in_page = start % WAL_PAGE_SIZE_BYTES;
        let page_start = start - in_page;
        let header_len = if page_start.is_multiple_of(seg) { SIZE_OF_LONG_PAGE_HEADER } else { SIZE_OF_SHORT_PAGE_HEADER };
        if in_page != 0 && (!start.is_multiple_of(8) || in_page < header_len as u64) {
            return Err(format!(
                "startLsn {} is neither a page start nor a MAXALIGN'd position after the page header",
                format_lsn(start)
            ));
        }
        Ok(WalDecoder {
            segment_size_bytes: seg,
            pos: start,
            end_lsn: start,
            last_record_start: opts.prev_lsn.unwrap_or(0),
            expected_prev: opts.prev_lsn,
            page_magic: None,
            system_id: None,
            phase: Phase::RecordHeader,
            on_start_page: in_page == 0,
            page_hdr: [0; SIZE_OF_LONG_PAGE_HEADER],
            rec_hdr: [0; SIZE_OF_RECORD_HEADER],
            rec_have: 0,
            rec_start: start,
            rec_total: 0,
            left: 0,
            crc: 0,
            stop: None,
            last_stop: None,
            generation: 0,
        })
    }

    /// MAXALIGN'd end of the last complete valid record (segment end after XLOG_SWITCH).
    pub fn end_lsn(&self) -> u64 {
        self.end_lsn
    }

    /// LSN of the next byte the decoder expects; after a stop, the LSN of the stop.
    pub fn position(&self) -> u64 {
        self.pos
    }

    pub fn last_record_start(&self) -> u64 {
        self.last_record_start
    }

    pub fn segment_size_bytes(&self) -> u64 {
        self.segment_size_bytes
    }

    /// The stop this decoder is stuck at (only `feed` stops it).
    pub fn stop(&self) -> Option<&Stop> {
        self.stop.as_ref()
    }

    /// The stop hit by the most recent feed or feed_atomic call, rolled back or not.
    pub fn last_stop(&self) -> Option<&Stop> {
        self.last_stop.as_ref()
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Decodes as far as the bytes are valid. Records completed are appended to `records`.
    pub fn feed(&mut self, chunk: &[u8], records: Option<&mut Vec<RecordInfo>>) -> FeedOutcome {
        self.generation += 1;
        let mut records = records;
        let outcome = self.feed_inner(chunk, &mut records);
        self.last_stop = outcome.stop.clone();
        outcome
    }

    /// All or nothing over the concatenation of `chunks`: on any stop (end or error) the decoder is
    /// restored to its state before the call, stays usable, and nothing is appended to `records`.
    pub fn feed_atomic(&mut self, chunks: &[&[u8]], records: Option<&mut Vec<RecordInfo>>) -> FeedOutcome {
        self.generation += 1;
        let mut records = records;
        if let Some(stop) = &self.stop {
            let stop = stop.clone();
            self.last_stop = Some(stop.clone());
            return FeedOutcome { record_count: 0, stop: Some(stop) };
        }
        self.last_stop = None;
        let saved = self.clone();
        let mark = records.as_ref().map_or(0, |r| r.len());
        let mut record_count = 0;
        for chunk in chunks {
            let outcome = self.feed_inner(chunk, &mut records);
            record_count += outcome.record_count;
            if let Some(stop) = outcome.stop {
                let generation = self.generation;
                *self = saved;
                self.generation = generation;
                if let Some(r) = records.as_mut() {
                    r.truncate(mark);
                }
                self.last_stop = Some(stop.clone());
                return FeedOutcome { record_count: 0, stop: Some(stop) };
            }
        }
        FeedOutcome { record_count, stop: None }
    }

    fn feed_inner(&mut self, chunk: &[u8], records: &mut Option<&mut Vec<RecordInfo>>) -> FeedOutcome {
        if let Some(stop) = &self.stop {
            return FeedOutcome { record_count: 0, stop: Some(stop.clone()) };
        }
        let mut input = chunk;
        let mut record_count = 0u64;
        while !input.is_empty() {
            match self.step(input, &mut record_count, records) {
                Ok(n) => input = &input[n..],
                Err(stop) => {
                    self.pos = stop.lsn;
                    self.stop = Some(stop.clone());
                    return FeedOutcome { record_count, stop: Some(stop) };
                }
            }
        }
        FeedOutcome { record_count, stop: None }
    }

    /// Consumes a prefix of `input` (never across a page boundary) and returns its length.
    #[inline]
    fn step(
        &mut self,
        input: &[u8],
        record_count: &mut u64,
        records: &mut Option<&mut Vec<RecordInfo>>,
    ) -> Result<usize, Stop> {
        if self.phase == Phase::SwitchPadding {
            let in_segment = self.pos & (self.segment_size_bytes - 1);
            if in_segment != 0 {
                let n = (self.segment_size_bytes - in_segment).min(input.len() as u64) as usize;
                self.pos += n as u64;
                return Ok(n);
            }
            self.phase = Phase::RecordHeader;
            self.rec_have = 0;
        }
        let in_page = (self.pos % WAL_PAGE_SIZE_BYTES) as usize;
        let page_start = self.pos - in_page as u64;
        let header_len = self.page_header_len(page_start);
        if in_page < header_len {
            return self.step_page_header(input, page_start, in_page, header_len);
        }
        let page_left = WAL_PAGE_SIZE_BYTES as usize - in_page;
        match self.phase {
            Phase::RecordHeader => self.step_record_header(input, page_left, record_count, records),
            Phase::RecordBody => {
                let n = input.len().min(page_left).min(self.left as usize);
                self.crc = crc32c::crc32c_append(self.crc, &input[..n]);
                self.left -= n as u32;
                self.pos += n as u64;
                if self.left == 0 {
                    self.finish_record(record_count, records)?;
                }
                Ok(n)
            }
            Phase::SkipContinuation => {
                let n = input.len().min(page_left).min(self.left as usize);
                self.left -= n as u32;
                self.pos += n as u64;
                if self.left == 0 {
                    self.phase = Phase::RecordHeader;
                    self.rec_have = 0;
                }
                Ok(n)
            }
            Phase::SwitchPadding => unreachable!("switch padding handled above"),
        }
    }

    fn page_header_len(&self, page_start: u64) -> usize {
        // The segment size is a power of two (checked in new): a mask, not a 64-bit division per step.
        if page_start & (self.segment_size_bytes - 1) == 0 {
            SIZE_OF_LONG_PAGE_HEADER
        } else {
            SIZE_OF_SHORT_PAGE_HEADER
        }
    }

    fn step_page_header(&mut self, input: &[u8], page_start: u64, in_page: usize, header_len: usize) -> Result<usize, Stop> {
        if in_page == 0 && input.len() >= header_len {
            self.page_hdr[..header_len].copy_from_slice(&input[..header_len]);
            self.pos += header_len as u64;
            self.validate_page_header(page_start, header_len)?;
            return Ok(header_len);
        }
        let n = (header_len - in_page).min(input.len());
        self.page_hdr[in_page..in_page + n].copy_from_slice(&input[..n]);
        self.pos += n as u64;
        if in_page + n == header_len {
            self.validate_page_header(page_start, header_len)?;
        }
        Ok(n)
    }

    fn validate_page_header(&mut self, page_lsn: u64, header_len: usize) -> Result<(), Stop> {
        let header = self.page_hdr;
        let h = &header[..header_len];
        let at = LsnText(page_lsn);
        if h.iter().all(|&b| b == 0) {
            return Err(Stop::new(StopCode::ZeroPage, page_lsn, format!("zero page header at {at}: end of WAL")));
        }
        let magic = u16::from_le_bytes([h[0], h[1]]);
        let info = u16::from_le_bytes([h[2], h[3]]);
        let page_addr = u64::from_le_bytes(h[8..16].try_into().unwrap());
        let rem_len = u32::from_le_bytes(h[16..20].try_into().unwrap());
        match self.page_magic {
            Some(expected) if magic != expected => {
                return Err(Stop::new(
                    StopCode::BadPageMagic,
                    page_lsn,
                    format!("invalid magic number {magic:04X} in WAL page at {at}: expected {expected:04X} as on earlier pages"),
                ));
            }
            None if !ACCEPTED_PAGE_MAGICS.contains(&magic) => {
                return Err(Stop::new(
                    StopCode::BadPageMagic,
                    page_lsn,
                    format!("invalid magic number {magic:04X} in WAL page at {at}: expected one of D106, D10D, D110, D113, D116 (PostgreSQL 13..17)"),
                ));
            }
            _ => {}
        }
        if info & !XLP_ALL_FLAGS != 0 {
            return Err(Stop::new(
                StopCode::BadPageFlags,
                page_lsn,
                format!("invalid info bits {info:04X} in WAL page at {at}: expected only bits of {XLP_ALL_FLAGS:04X}"),
            ));
        }
        let segment_start = header_len == SIZE_OF_LONG_PAGE_HEADER;
        if segment_start && info & XLP_LONG_HEADER == 0 {
            return Err(Stop::new(
                StopCode::BadLongHeader,
                page_lsn,
                format!("WAL page at {at} starts a segment but has no long header: got info {info:04X}, expected the {XLP_LONG_HEADER:04X} bit set"),
            ));
        }
        if !segment_start && info & XLP_LONG_HEADER != 0 {
            return Err(Stop::new(
                StopCode::BadPageFlags,
                page_lsn,
                format!("WAL page at {at} is not a segment start but has the long-header bit: got info {info:04X}"),
            ));
        }
        if page_addr != page_lsn {
            return Err(Stop::new(
                StopCode::BadPageAddress,
                page_lsn,
                format!("unexpected pageaddr {} in WAL page at {at}: expected {at}", format_lsn(page_addr)),
            ));
        }
        if segment_start {
            let system_id = u64::from_le_bytes(h[24..32].try_into().unwrap());
            let seg_size = u32::from_le_bytes(h[32..36].try_into().unwrap());
            let blcksz = u32::from_le_bytes(h[36..40].try_into().unwrap());
            if u64::from(seg_size) != self.segment_size_bytes {
                return Err(Stop::new(
                    StopCode::BadLongHeader,
                    page_lsn,
                    format!("WAL segment at {at} has xlp_seg_size {seg_size}: expected {}", self.segment_size_bytes),
                ));
            }
            if u64::from(blcksz) != WAL_PAGE_SIZE_BYTES {
                return Err(Stop::new(
                    StopCode::BadLongHeader,
                    page_lsn,
                    format!("WAL segment at {at} has xlp_xlog_blcksz {blcksz}: expected {WAL_PAGE_SIZE_BYTES}"),
                ));
            }
            match self.system_id {
                Some(expected) if expected != system_id => {
                    return Err(Stop::new(
                        StopCode::BadLongHeader,
                        page_lsn,
                        format!("WAL segment at {at} has system identifier {system_id}: expected {expected} as earlier segments"),
                    ));
                }
                _ => {}
            }
        }
        let continued = info & XLP_FIRST_IS_CONTRECORD != 0;
        match self.expected_continuation() {
            Continuation::None => {
                if continued {
                    return Err(Stop::new(
                        StopCode::BadPageFlags,
                        page_lsn,
                        format!("WAL page at {at} has the contrecord flag but no record continues onto it"),
                    ));
                }
                if rem_len != 0 {
                    return Err(Stop::new(
                        StopCode::BadRemLen,
                        page_lsn,
                        format!("invalid contrecord length {rem_len} in WAL page at {at}: expected 0"),
                    ));
                }
            }
            Continuation::Bytes(expected) => {
                if !continued {
                    return Err(Stop::new(
                        StopCode::BadPageFlags,
                        page_lsn,
                        format!("there is no contrecord flag in WAL page at {at}: expected one, {expected} bytes of the record at {} remain", format_lsn(self.rec_start)),
                    ));
                }
                if rem_len != expected {
                    return Err(Stop::new(
                        StopCode::BadRemLen,
                        page_lsn,
                        format!("invalid contrecord length {rem_len} in WAL page at {at}: expected {expected}"),
                    ));
                }
            }
            Continuation::Unknown => {
                if continued && rem_len == 0 {
                    return Err(Stop::new(
                        StopCode::BadRemLen,
                        page_lsn,
                        format!("invalid contrecord length 0 in WAL page at {at}: expected at least 1 with the contrecord flag"),
                    ));
                }
                if !continued && rem_len != 0 {
                    return Err(Stop::new(
                        StopCode::BadRemLen,
                        page_lsn,
                        format!("invalid contrecord length {rem_len} in WAL page at {at}: expected 0 without the contrecord flag"),
                    ));
                }
                if continued {
                    self.phase = Phase::SkipContinuation;
                    self.left = rem_len;
                }
            }
        }
        self.on_start_page = false;
        self.page_magic = Some(magic);
        if segment_start {
            self.system_id = Some(u64::from_le_bytes(h[24..32].try_into().unwrap()));
        }
        Ok(())
    }

    fn expected_continuation(&self) -> Continuation {
        if self.on_start_page {
            return Continuation::Unknown;
        }
        match self.phase {
            Phase::RecordHeader if self.rec_have == 0 => Continuation::None,
            // Records start MAXALIGN'd and pages end 8-aligned, so xl_tot_len is always known here.
            Phase::RecordHeader => Continuation::Bytes(self.rec_total - u32::from(self.rec_have)),
            Phase::RecordBody | Phase::SkipContinuation => Continuation::Bytes(self.left),
            Phase::SwitchPadding => Continuation::None,
        }
    }

    fn step_record_header(
        &mut self,
        input: &[u8],
        page_left: usize,
        record_count: &mut u64,
        records: &mut Option<&mut Vec<RecordInfo>>,
    ) -> Result<usize, Stop> {
        let have = self.rec_have as usize;
        if have == 0 {
            let padding = (max_align(self.pos) - self.pos) as usize;
            if padding > 0 {
                let n = padding.min(input.len());
                self.pos += n as u64;
                return Ok(n);
            }
            self.rec_start = self.pos;
        }
        let n = (SIZE_OF_RECORD_HEADER - have).min(page_left).min(input.len());
        self.rec_hdr[have..have + n].copy_from_slice(&input[..n]);
        self.rec_have += n as u8;
        self.pos += n as u64;
        if have < 4 && have + n >= 4 {
            self.check_total_length()?;
        }
        if usize::from(self.rec_have) == SIZE_OF_RECORD_HEADER {
            self.check_prev_link()?;
            self.left = self.rec_total - SIZE_OF_RECORD_HEADER as u32;
            self.crc = 0;
            self.phase = Phase::RecordBody;
            if self.left == 0 {
                self.finish_record(record_count, records)?;
            }
        }
        Ok(n)
    }

    fn check_total_length(&mut self) -> Result<(), Stop> {
        let total = u32::from_le_bytes(self.rec_hdr[0..4].try_into().unwrap());
        let at = LsnText(self.rec_start);
        if total == 0 {
            return Err(Stop::new(StopCode::ZeroRecord, self.rec_start, format!("record length 0 at {at}: end of WAL")));
        }
        if total < SIZE_OF_RECORD_HEADER as u32 || total > MAX_RECORD_LENGTH_BYTES {
            return Err(Stop::new(
                StopCode::BadRecordLength,
                self.rec_start,
                format!("invalid record length at {at}: got {total}, expected {SIZE_OF_RECORD_HEADER}..{MAX_RECORD_LENGTH_BYTES}"),
            ));
        }
        self.rec_total = total;
        Ok(())
    }

    fn check_prev_link(&self) -> Result<(), Stop> {
        let prev = u64::from_le_bytes(self.rec_hdr[8..16].try_into().unwrap());
        match self.expected_prev {
            Some(expected) if expected != prev => Err(Stop::new(
                StopCode::BadPrevLink,
                self.rec_start,
                format!(
                    "record with incorrect prev-link at {}: got {}, expected {}",
                    format_lsn(self.rec_start),
                    format_lsn(prev),
                    format_lsn(expected)
                ),
            )),
            _ => Ok(()),
        }
    }

    fn finish_record(&mut self, record_count: &mut u64, records: &mut Option<&mut Vec<RecordInfo>>) -> Result<(), Stop> {
        let h = &self.rec_hdr;
        let computed = crc32c::crc32c_append(self.crc, &h[..20]);
        let stored = u32::from_le_bytes(h[20..24].try_into().unwrap());
        if computed != stored {
            let mut message = String::new();
            let _ = write!(
                message,
                "incorrect resource manager data checksum in record at {}: got {computed:08X}, expected {stored:08X} (stored in the header)",
                format_lsn(self.rec_start)
            );
            return Err(Stop::new(StopCode::BadCrc, self.rec_start, message));
        }
        let info = h[16];
        let rmid = h[17];
        if let Some(records) = records.as_mut() {
            records.push(RecordInfo {
                start_lsn: self.rec_start,
                prev_lsn: u64::from_le_bytes(h[8..16].try_into().unwrap()),
                total_length: self.rec_total,
                rmid,
                info,
            });
        }
        *record_count += 1;
        self.expected_prev = Some(self.rec_start);
        self.last_record_start = self.rec_start;
        self.rec_have = 0;
        if rmid == RM_XLOG_ID && info & 0xF0 == XLOG_SWITCH {
            let seg = self.segment_size_bytes;
            self.end_lsn = self.pos.div_ceil(seg) * seg;
            self.phase = Phase::SwitchPadding;
        } else {
            self.end_lsn = max_align(self.pos);
            self.phase = Phase::RecordHeader;
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "wal_decoder_tests.rs"]
mod tests;
