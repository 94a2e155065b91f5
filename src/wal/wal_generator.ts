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
    invariant(Number.isInteger(payloadBytes) && payloadBytes >= 0 && payloadBytes <= MAX_PAYLOAD_BYTES, `payloadBytes ${payloadBytes} out of range`);
    const record = this.buildRecord(payloadBytes);
    const out = Buffer.alloc(this.streamBytes(record.length));
    let at = 0;
    let pos = this.pos;
    let copied = 0;
    if (pos % WAL_PAGE_SIZE_BYTES === 0) {
      // The previous record ended at a page end: this one starts after a header without contrecord.
      const h = this.writePageHeader(out, at, pos, 0);
      at += h;
      pos += h;
    }
    const startLsn = pos;
    while (copied < record.length) {
      const inPage = pos % WAL_PAGE_SIZE_BYTES;
      if (inPage === 0) {
        const h = this.writePageHeader(out, at, pos, record.length - copied);
        at += h;
        pos += h;
        continue;
      }
      const n = Math.min(WAL_PAGE_SIZE_BYTES - inPage, record.length - copied);
      record.copy(out, at, copied, copied + n);
      at += n;
      pos += n;
      copied += n;
    }
    const padding = maxAlign(pos) - pos;
    at += padding;
    pos += padding;
    invariant(at === out.length, `generated ${at} bytes, sized ${out.length}`);
    // The header's xl_prev was taken from this.prev when the record was built.
    this.last = { startLsn: startLsn as Lsn, prevLsn: this.prev as Lsn, totalLength: record.length };
    this.prev = startLsn;
    this.pos = pos;
    this.count++;
    return out;
  }

  /**
   * Records of varied sizes (1 to `maxPayloadBytes` of data each, 1 KiB by default) until at least
   * `totalBytes` of WAL; the last record is sized to land within a few dozen bytes of the target.
   */
  chunk(totalBytes: number, opts: { maxPayloadBytes?: number } = {}): Buffer {
    invariant(Number.isInteger(totalBytes) && totalBytes > 0, `totalBytes ${totalBytes} must be a positive integer`);
    const maxPayload = opts.maxPayloadBytes ?? 1024;
    invariant(maxPayload >= 1, 'maxPayloadBytes must be at least 1');
    const parts: Buffer[] = [];
    let total = 0;
    while (total < totalBytes) {
      const left = totalBytes - total;
      // Record overhead: 24-byte header, 2 or 5 bytes of block header, up to 7 of padding.
      let payload = 1 + (this.random() % maxPayload);
      if (left <= maxPayload + SIZE_OF_RECORD_HEADER + 5) payload = Math.max(1, left - SIZE_OF_RECORD_HEADER - (left - SIZE_OF_RECORD_HEADER - 2 > 255 ? 5 : 2));
      const b = this.next(payload);
      parts.push(b);
      total += b.length;
    }
    return parts.length === 1 ? parts[0]! : Buffer.concat(parts, total);
  }

  /** The record (header + body) as it is CRC'd, before page headers are interleaved. */
  private buildRecord(payloadBytes: number): Buffer {
    const blockHeader = payloadBytes === 0 ? 0 : payloadBytes <= 255 ? 2 : 5;
    const total = SIZE_OF_RECORD_HEADER + blockHeader + payloadBytes;
    const r = Buffer.allocUnsafe(total);
    let at = SIZE_OF_RECORD_HEADER;
    if (payloadBytes > 0 && payloadBytes <= 255) {
      r[at++] = XLR_BLOCK_ID_DATA_SHORT;
      r[at++] = payloadBytes;
    } else if (payloadBytes > 255) {
      r[at++] = XLR_BLOCK_ID_DATA_LONG;
      r.writeUInt32LE(payloadBytes, at);
      at += 4;
    }
    let offset = this.random() % PATTERN_BYTES;
    while (at < total) {
      const n = Math.min(total - at, PATTERN_BYTES - offset);
      this.pattern.copy(r, at, offset, offset + n);
      at += n;
      offset = 0;
    }
    r.writeUInt32LE(total, 0); // xl_tot_len
    r.writeUInt32LE(0, 4); // xl_xid
    r.writeBigUInt64LE(BigInt(this.prev), 8); // xl_prev
    r[16] = XLOG_NOOP; // xl_info
    r[17] = RM_XLOG_ID; // xl_rmid
    r.writeUInt16LE(0, 18); // padding
    // PostgreSQL's order: the body first, then the header up to xl_crc.
    const crc = crc32c(r.subarray(0, RECORD_HEADER_CRC_OFFSET), crc32c(r.subarray(SIZE_OF_RECORD_HEADER)));
    r.writeUInt32LE(crc, RECORD_HEADER_CRC_OFFSET);
    return r;
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
