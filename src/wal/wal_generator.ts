// Generates valid PostgreSQL WAL (XLOG_NOOP records with page headers, CRC-32C and prev links) for tests,
// the demo writer and benchmarks, so the safekeeper's decoder accepts it byte for byte.
// It must never emit a byte PostgreSQL's own reader (pg_waldump) would reject; it never touches disk or network.

import { invariant } from '../errors.js';
import { crc32c } from '../native.js';
import {
  SIZE_OF_LONG_PAGE_HEADER,
  SIZE_OF_SHORT_PAGE_HEADER,
  WAL_PAGE_SIZE_BYTES,
  formatLsn,
  isValidSegmentSize,
  maxAlign,
  type Lsn,
} from '../lsn.js';

/** XLOG_PAGE_MAGIC of PostgreSQL 15. */
export const PG15_PAGE_MAGIC = 0xd110;
export const SIZE_OF_RECORD_HEADER = 24;
/** xl_crc is the last header field; the CRC covers the header bytes before it. */
const RECORD_HEADER_CRC_OFFSET = 20;
const XLP_FIRST_IS_CONTRECORD = 0x0001;
const XLP_LONG_HEADER = 0x0002;
/** RM_XLOG_ID and XLOG_NOOP: a record every PostgreSQL reader accepts and redo ignores. */
export const RM_XLOG_ID = 0;
export const XLOG_NOOP = 0x20;
/** Block ids of the main data block (PostgreSQL's xlogrecord.h). */
const XLR_BLOCK_ID_DATA_SHORT = 255;
const XLR_BLOCK_ID_DATA_LONG = 254;
/** PostgreSQL's XLogRecordMaxSize is 1020 MiB; we stay far below it. */
const MAX_PAYLOAD_BYTES = 64 * 1024 * 1024;

export interface WalGeneratorOptions {
  /** Where the stream starts: a page start (e.g. a segment start) or a record boundary written earlier. */
  readonly startLsn: Lsn;
  readonly segmentSizeBytes: number;
  readonly systemId: bigint;
  /** xlp_magic; PostgreSQL 15's 0xD110 by default. */
  readonly pageMagic?: number;
  /** xlp_tli; 1 by default. */
  readonly timeline?: number;
  /** Start of the record before startLsn (the first record's xl_prev); 0 at the beginning of the WAL. */
  readonly prevLsn?: Lsn;
  /** Seeds the payload bytes and chunk() record sizes; any value gives valid WAL. */
  readonly seed?: number;
}

/** Where a generator stopped: enough to continue the same stream later with `WalGenerator.resume`. */
export interface WalPosition {
  readonly lsn: Lsn;
  readonly prevLsn: Lsn;
}

/** One generated record, for tests that compare against a decoder. */
export interface GeneratedRecord {
  readonly startLsn: Lsn;
  readonly prevLsn: Lsn;
  readonly totalLength: number;
}

const PATTERN_BYTES = 256 * 1024;

/** xl_tot_len of a record with `payloadBytes` of main data: header, block header (2 or 5 bytes), data. */
function recordBytesFor(payloadBytes: number): number {
  return SIZE_OF_RECORD_HEADER + (payloadBytes === 0 ? 0 : payloadBytes <= 255 ? 2 : 5) + payloadBytes;
}

function checkPayload(payloadBytes: number): void {
  invariant(Number.isInteger(payloadBytes) && payloadBytes >= 0 && payloadBytes <= MAX_PAYLOAD_BYTES, `payloadBytes ${payloadBytes} out of range`);
}

export class WalGenerator {
  readonly segmentSizeBytes: number;
  readonly systemId: bigint;
  readonly pageMagic: number;
  readonly timeline: number;
  private pos: number;
  private prev: number;
  private count = 0;
  private rng: number;
  /** Payload bytes are slices of this pseudo-random pattern: cheap to produce, not all zeros. */
  private readonly pattern: Buffer;
  private last: GeneratedRecord | null = null;
  /** Reused for records that cross pages, and for assembling chunk()s. */
  private recordScratch = Buffer.allocUnsafe(64 * 1024);
  private chunkScratch = Buffer.allocUnsafe(256 * 1024);

  constructor(opts: WalGeneratorOptions) {
    invariant(isValidSegmentSize(opts.segmentSizeBytes), `segmentSizeBytes ${opts.segmentSizeBytes} is not a power of two from 1 MiB to 1 GiB`);
    const start = opts.startLsn;
    const inPage = start % WAL_PAGE_SIZE_BYTES;
    const headerBytes = (start - inPage) % opts.segmentSizeBytes === 0 ? SIZE_OF_LONG_PAGE_HEADER : SIZE_OF_SHORT_PAGE_HEADER;
    invariant(
      inPage === 0 || (start % 8 === 0 && inPage >= headerBytes),
      `startLsn ${formatLsn(start)} is neither a page start nor a MAXALIGN'd position after the page header`,
    );
    invariant(opts.systemId >= 0n && opts.systemId < 1n << 64n, 'systemId must be a u64');
    this.segmentSizeBytes = opts.segmentSizeBytes;
    this.systemId = opts.systemId;
    this.pageMagic = opts.pageMagic ?? PG15_PAGE_MAGIC;
    this.timeline = opts.timeline ?? 1;
    this.pos = start;
    this.prev = opts.prevLsn ?? 0;
    invariant(this.prev < start || (this.prev === 0 && start === 0), `prevLsn ${formatLsn(this.prev)} is not below startLsn ${formatLsn(start)}`);
    this.rng = (opts.seed ?? 0x5eed) >>> 0 || 1;
    this.pattern = Buffer.allocUnsafe(PATTERN_BYTES);
    for (let i = 0; i < PATTERN_BYTES; i += 4) this.pattern.writeUInt32LE(this.random(), i);
  }

  /** Continues a stream another generator (or a safekeeper's WAL) ended at `lsn`, after the record at `prevLsn`. */
  static resume(opts: Omit<WalGeneratorOptions, 'startLsn' | 'prevLsn'> & WalPosition): WalGenerator {
    return new WalGenerator({ ...opts, startLsn: opts.lsn, prevLsn: opts.prevLsn });
  }

  /** The next write position: the end of the last record, MAXALIGN'd (a page start when it ended there). */
  get lsn(): Lsn {
    return this.pos as Lsn;
  }

  /** Start of the last record generated (the next record's xl_prev). */
  get prevLsn(): Lsn {
    return this.prev as Lsn;
  }

  get position(): WalPosition {
    return { lsn: this.pos as Lsn, prevLsn: this.prev as Lsn };
  }

  get recordCount(): number {
    return this.count;
  }

  /** The record the last next() produced. */
  get lastRecord(): GeneratedRecord | null {
    return this.last;
  }

  /**
   * One XLOG_NOOP record with `payloadBytes` of main data (none for 0), with the page headers it
   * crosses and the zero padding to the next MAXALIGN'd position.
   */
  next(payloadBytes: number): Buffer {
    checkPayload(payloadBytes);
    const out = Buffer.allocUnsafe(this.streamBytes(recordBytesFor(payloadBytes)));
    const at = this.emit(payloadBytes, out, 0);
    invariant(at === out.length, `generated ${at} bytes, sized ${out.length}`);
    return out;
  }

  /**
   * Records of varied sizes (1 to `maxPayloadBytes` of data each, 1 KiB by default) until at least
   * `totalBytes` of WAL; the last record is sized to land within a few dozen bytes of the target.
   */
  chunk(totalBytes: number, opts: { maxPayloadBytes?: number } = {}): Buffer {
    invariant(Number.isInteger(totalBytes) && totalBytes > 0, `totalBytes ${totalBytes} must be a positive integer`);
    const maxPayload = opts.maxPayloadBytes ?? 1024;
    checkPayload(maxPayload);
    invariant(maxPayload >= 1, 'maxPayloadBytes must be at least 1');
    let at = 0;
    while (at < totalBytes) {
      const left = totalBytes - at;
      // Record overhead: 24-byte header, 2 or 5 bytes of block header, up to 7 of padding.
      let payload = 1 + (this.random() % maxPayload);
      if (left <= maxPayload + SIZE_OF_RECORD_HEADER + 5) payload = Math.max(1, left - SIZE_OF_RECORD_HEADER - (left - SIZE_OF_RECORD_HEADER - 2 > 255 ? 5 : 2));
      const need = at + this.streamBytes(recordBytesFor(payload));
      if (need > this.chunkScratch.length) {
        const bigger = Buffer.allocUnsafe(Math.max(need, this.chunkScratch.length * 2));
        this.chunkScratch.copy(bigger, 0, 0, at);
        this.chunkScratch = bigger;
      }
      at = this.emit(payload, this.chunkScratch, at);
    }
    const out = Buffer.allocUnsafe(at);
    this.chunkScratch.copy(out, 0, 0, at);
    return out;
  }

  /** Writes the next record (page headers and padding included) into `out` at `at`; returns the end. */
  private emit(payloadBytes: number, out: Buffer, at: number): number {
    const recordBytes = recordBytesFor(payloadBytes);
    let pos = this.pos;
    if (pos % WAL_PAGE_SIZE_BYTES === 0) {
      // The previous record ended at a page end: this one starts after a header without contrecord.
      const h = this.writePageHeader(out, at, pos, 0);
      at += h;
      pos += h;
    }
    const startLsn = pos;
    if ((pos % WAL_PAGE_SIZE_BYTES) + recordBytes <= WAL_PAGE_SIZE_BYTES) {
      // Fits in this page: built in place.
      this.writeRecord(out, at, payloadBytes, recordBytes);
      at += recordBytes;
      pos += recordBytes;
    } else {
      // Crosses pages: built contiguously first (the CRC covers it whole), then split by page headers.
      if (this.recordScratch.length < recordBytes) this.recordScratch = Buffer.allocUnsafe(Math.max(recordBytes, this.recordScratch.length * 2));
      const record = this.recordScratch;
      this.writeRecord(record, 0, payloadBytes, recordBytes);
      let copied = 0;
      while (copied < recordBytes) {
        const inPage = pos % WAL_PAGE_SIZE_BYTES;
        if (inPage === 0) {
          const h = this.writePageHeader(out, at, pos, recordBytes - copied);
          at += h;
          pos += h;
          continue;
        }
        const n = Math.min(WAL_PAGE_SIZE_BYTES - inPage, recordBytes - copied);
        record.copy(out, at, copied, copied + n);
        at += n;
        pos += n;
        copied += n;
      }
    }
    const padding = maxAlign(pos) - pos;
    out.fill(0, at, at + padding);
    at += padding;
    pos += padding;
    this.last = { startLsn: startLsn as Lsn, prevLsn: this.prev as Lsn, totalLength: recordBytes };
    this.prev = startLsn;
    this.pos = pos;
    this.count++;
    return at;
  }

  /** XLogRecord header + main data block at `at`, xl_prev = this.prev, with its CRC. */
  private writeRecord(r: Buffer, at: number, payloadBytes: number, recordBytes: number): void {
    const end = at + recordBytes;
    let p = at + SIZE_OF_RECORD_HEADER;
    if (payloadBytes > 0 && payloadBytes <= 255) {
      r[p++] = XLR_BLOCK_ID_DATA_SHORT;
      r[p++] = payloadBytes;
    } else if (payloadBytes > 255) {
      r[p++] = XLR_BLOCK_ID_DATA_LONG;
      r.writeUInt32LE(payloadBytes, p);
      p += 4;
    }
    let offset = this.random() % PATTERN_BYTES;
    while (p < end) {
      const n = Math.min(end - p, PATTERN_BYTES - offset);
      this.pattern.copy(r, p, offset, offset + n);
      p += n;
      offset = 0;
    }
    r.writeUInt32LE(recordBytes, at); // xl_tot_len
    r.writeUInt32LE(0, at + 4); // xl_xid
    r.writeUInt32LE(this.prev % 0x1_0000_0000, at + 8); // xl_prev, low half
    r.writeUInt32LE(Math.floor(this.prev / 0x1_0000_0000), at + 12); // xl_prev, high half
    r[at + 16] = XLOG_NOOP; // xl_info
    r[at + 17] = RM_XLOG_ID; // xl_rmid
    r.writeUInt16LE(0, at + 18); // padding
    // PostgreSQL's order: the body first, then the header up to xl_crc.
    const crc = crc32c(r.subarray(at, at + RECORD_HEADER_CRC_OFFSET), crc32c(r.subarray(at + SIZE_OF_RECORD_HEADER, end)));
    r.writeUInt32LE(crc, at + RECORD_HEADER_CRC_OFFSET);
  }

  /** Bytes next() returns for a record of `recordBytes` starting at the current position. */
  private streamBytes(recordBytes: number): number {
    let pos = this.pos;
    let left = recordBytes;
    let bytes = 0;
    const header = (p: number) => (p % this.segmentSizeBytes === 0 ? SIZE_OF_LONG_PAGE_HEADER : SIZE_OF_SHORT_PAGE_HEADER);
    if (pos % WAL_PAGE_SIZE_BYTES === 0) {
      bytes += header(pos);
      pos += header(pos);
    }
    while (left > 0) {
      if (pos % WAL_PAGE_SIZE_BYTES === 0) {
        bytes += header(pos);
        pos += header(pos);
      }
      const n = Math.min(WAL_PAGE_SIZE_BYTES - (pos % WAL_PAGE_SIZE_BYTES), left);
      bytes += n;
      pos += n;
      left -= n;
    }
    return bytes + maxAlign(pos) - pos;
  }

  /** XLogPageHeaderData (24 bytes) or XLogLongPageHeaderData (40) at a page start; returns its length. */
  private writePageHeader(out: Buffer, at: number, pageLsn: number, remainingRecordBytes: number): number {
    const long = pageLsn % this.segmentSizeBytes === 0;
    let info = long ? XLP_LONG_HEADER : 0;
    if (remainingRecordBytes > 0) info |= XLP_FIRST_IS_CONTRECORD;
    out.writeUInt16LE(this.pageMagic, at); // xlp_magic
    out.writeUInt16LE(info, at + 2); // xlp_info
    out.writeUInt32LE(this.timeline, at + 4); // xlp_tli
    out.writeBigUInt64LE(BigInt(pageLsn), at + 8); // xlp_pageaddr
    out.writeUInt32LE(remainingRecordBytes, at + 16); // xlp_rem_len
    out.writeUInt32LE(0, at + 20); // alignment padding
    if (!long) return SIZE_OF_SHORT_PAGE_HEADER;
    out.writeBigUInt64LE(this.systemId, at + 24); // xlp_sysid
    out.writeUInt32LE(this.segmentSizeBytes, at + 32); // xlp_seg_size
    out.writeUInt32LE(WAL_PAGE_SIZE_BYTES, at + 36); // xlp_xlog_blcksz
    return SIZE_OF_LONG_PAGE_HEADER;
  }

  /** xorshift32: deterministic per seed. */
  private random(): number {
    let x = this.rng;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.rng = x >>> 0;
    return this.rng;
  }
}
