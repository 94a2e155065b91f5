// Binary encoding of the proposer <-> safekeeper messages (docs/PROTOCOL.md section 6): one message per
// WebSocket frame, version byte, tag byte, big-endian fields, WAL as the frame's tail. Decoding never
// trusts a length: every malformed, truncated or oversized frame becomes a typed WireDecodeError.

import { lsn, type Lsn } from '../lsn.js';
import type { ProtocolErrorCode } from '../core/protocol_errors.js';
import {
  MAX_APPEND_BYTES,
  PROTOCOL_VERSION,
  type AcceptorMessage,
  type ProposerMessage,
} from '../core/protocol_messages.js';
import { term, type Term, type TermHistory, type TermSwitch } from '../storage/timeline_state.js';

/** Upper bound of any frame: the largest WAL payload plus generous room for headers and histories. */
export const MAX_FRAME_BYTES = MAX_APPEND_BYTES + 64 * 1024;
const MAX_HISTORY_ENTRIES = 3500;
const MAX_STRING_BYTES = 1024;

export const WireErrorCodes = {
  MALFORMED: 'SK_PROTO_MALFORMED',
  VERSION: 'SK_PROTO_VERSION',
  TOO_LARGE: 'SK_PROTO_TOO_LARGE',
} as const;
export type WireErrorCode = (typeof WireErrorCodes)[keyof typeof WireErrorCodes];

export class WireDecodeError extends Error {
  constructor(
    readonly code: WireErrorCode,
    message: string,
    readonly got: string = '',
    readonly expected: string = '',
  ) {
    super(message);
    this.name = 'WireDecodeError';
  }
}

const TAG = {
  ProposerGreeting: 0x67, // g
  VoteRequest: 0x76, // v
  ProposerElected: 0x65, // e
  AppendRequest: 0x61, // a
  ReadRequest: 0x72, // r
  AcceptorGreeting: 0x47, // G
  VoteResponse: 0x56, // V
  AppendResponse: 0x41, // A
  ReadResponse: 0x52, // R
  Error: 0x45, // E
} as const;

// ---- writer -------------------------------------------------------------------------------------------

class FrameWriter {
  private at = 0;
  constructor(readonly buf: Buffer) {}
  u8(v: number): this { this.at = this.buf.writeUInt8(v, this.at); return this; }
  u16(v: number): this { this.at = this.buf.writeUInt16BE(v, this.at); return this; }
  u32(v: number): this { this.at = this.buf.writeUInt32BE(v, this.at); return this; }
  u64(v: number | bigint): this { this.at = this.buf.writeBigUInt64BE(BigInt(v), this.at); return this; }
  str(s: string): this {
    const n = this.buf.write(s, this.at + 2, 'utf8');
    this.buf.writeUInt16BE(n, this.at);
    this.at += 2 + n;
    return this;
  }
  history(h: TermHistory): this {
    this.u32(h.length);
    for (const e of h) this.u64(e.term).u64(e.lsn);
    return this;
  }
  bytes(b: Uint8Array): this { this.buf.set(b, this.at); this.at += b.length; return this; }
  done(): Buffer { return this.at === this.buf.length ? this.buf : this.buf.subarray(0, this.at); }
}

const historyBytes = (h: TermHistory) => 4 + 16 * h.length;
const strBytes = (s: string) => 2 + Buffer.byteLength(s, 'utf8');

function frame(tag: number, bodyBytes: number): FrameWriter {
  return new FrameWriter(Buffer.allocUnsafe(2 + bodyBytes)).u8(PROTOCOL_VERSION).u8(tag);
}

export function encodeProposerMessage(m: ProposerMessage): Buffer {
  switch (m.kind) {
    case 'ProposerGreeting':
      return frame(TAG.ProposerGreeting, 1 + 8 + strBytes(m.tenantId) + strBytes(m.timelineId) + 8 + 4 + 4)
        .u8(m.protocolVersion).u64(m.proposerId).str(m.tenantId).str(m.timelineId).u64(m.systemId)
        .u32(m.pgVersion).u32(m.segmentSizeBytes).done();
    case 'VoteRequest':
      return frame(TAG.VoteRequest, 8).u64(m.term).done();
    case 'ProposerElected':
      return frame(TAG.ProposerElected, 16 + historyBytes(m.termHistory)).u64(m.term).u64(m.startLsn).history(m.termHistory).done();
    case 'AppendRequest':
      return frame(TAG.AppendRequest, 40 + m.wal.length)
        .u64(m.term).u64(m.beginLsn).u64(m.endLsn).u64(m.commitLsn).u64(m.truncateLsn).bytes(m.wal).done();
    case 'ReadRequest':
      return frame(TAG.ReadRequest, 24).u64(m.term).u64(m.beginLsn).u64(m.endLsn).done();
  }
}

export function encodeAcceptorMessage(m: AcceptorMessage): Buffer {
  switch (m.kind) {
    case 'AcceptorGreeting':
      return frame(TAG.AcceptorGreeting, 24).u64(m.nodeId).u64(m.term).u64(m.minTerm).done();
    case 'VoteResponse':
      return frame(TAG.VoteResponse, 8 + 1 + 8 + 8 + 8 + historyBytes(m.termHistory))
        .u64(m.term).u8(m.granted ? 1 : 0).u64(m.flushLsn).u64(m.truncateLsn).u64(m.lastLogTerm).history(m.termHistory).done();
    case 'AppendResponse':
      return frame(TAG.AppendResponse, 32).u64(m.term).u64(m.flushLsn).u64(m.durableLsn).u64(m.commitLsn).done();
    case 'ReadResponse':
      return frame(TAG.ReadResponse, 16 + m.wal.length).u64(m.term).u64(m.beginLsn).bytes(m.wal).done();
    case 'Error': {
      const code = truncateUtf8(m.code), got = truncateUtf8(m.got), expected = truncateUtf8(m.expected), message = truncateUtf8(m.message);
      return frame(TAG.Error, strBytes(code) + 8 + strBytes(got) + strBytes(expected) + strBytes(message))
        .str(code).u64(m.term).str(got).str(expected).str(message).done();
    }
  }
}

function truncateUtf8(s: string): string {
  return Buffer.byteLength(s, 'utf8') <= MAX_STRING_BYTES ? s : Buffer.from(s, 'utf8').subarray(0, MAX_STRING_BYTES).toString('utf8');
}

// ---- reader -------------------------------------------------------------------------------------------

class FrameReader {
  at = 2;
  constructor(readonly buf: Buffer, readonly what: string) {}
  private need(n: number): void {
    if (this.at + n > this.buf.length) {
      throw new WireDecodeError(WireErrorCodes.MALFORMED, `${this.what} truncated at byte ${this.at} (needs ${n} more, frame is ${this.buf.length})`, String(this.buf.length), String(this.at + n));
    }
  }
  u8(): number { this.need(1); return this.buf.readUInt8(this.at++); }
  u16(): number { this.need(2); const v = this.buf.readUInt16BE(this.at); this.at += 2; return v; }
  u32(): number { this.need(4); const v = this.buf.readUInt32BE(this.at); this.at += 4; return v; }
  big(): bigint { this.need(8); const v = this.buf.readBigUInt64BE(this.at); this.at += 8; return v; }
  num(field: string): number {
    const v = this.big();
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new WireDecodeError(WireErrorCodes.MALFORMED, `${this.what}.${field} out of range: ${v}`, String(v), `<= 2^53`);
    return Number(v);
  }
  lsn(field: string): Lsn { return lsn(this.num(field)); }
  term(field: string): Term { return term(this.num(field)); }
  str(field: string): string {
    const n = this.u16();
    if (n > MAX_STRING_BYTES) throw new WireDecodeError(WireErrorCodes.MALFORMED, `${this.what}.${field} is ${n} bytes`, String(n), `<= ${MAX_STRING_BYTES}`);
    this.need(n);
    const s = this.buf.toString('utf8', this.at, this.at + n);
    this.at += n;
    return s;
  }
  history(): TermHistory {
    const n = this.u32();
    if (n > MAX_HISTORY_ENTRIES) throw new WireDecodeError(WireErrorCodes.MALFORMED, `${this.what} term history has ${n} entries`, String(n), `<= ${MAX_HISTORY_ENTRIES}`);
    const out: TermSwitch[] = [];
    for (let i = 0; i < n; i++) out.push({ term: this.term('termHistory.term'), lsn: this.lsn('termHistory.lsn') });
    return out;
  }
  rest(): Buffer { const b = this.buf.subarray(this.at); this.at = this.buf.length; return b; }
  end(): void {
    if (this.at !== this.buf.length) {
      throw new WireDecodeError(WireErrorCodes.MALFORMED, `${this.what} has ${this.buf.length - this.at} trailing bytes`, String(this.buf.length), String(this.at));
    }
  }
}

function open(buf: Buffer): { tag: number } {
  if (buf.length > MAX_FRAME_BYTES) {
    throw new WireDecodeError(WireErrorCodes.TOO_LARGE, `frame of ${buf.length} bytes exceeds ${MAX_FRAME_BYTES}`, String(buf.length), `<= ${MAX_FRAME_BYTES}`);
  }
  if (buf.length < 2) throw new WireDecodeError(WireErrorCodes.MALFORMED, `frame of ${buf.length} bytes has no header`, String(buf.length), '>= 2');
  if (buf[0] !== PROTOCOL_VERSION) {
    throw new WireDecodeError(WireErrorCodes.VERSION, `frame version ${buf[0]} is not ${PROTOCOL_VERSION}`, String(buf[0]), String(PROTOCOL_VERSION));
  }
  return { tag: buf[1]! };
}

function walRange(r: FrameReader, beginLsn: Lsn, endLsn: Lsn, wal: Buffer): void {
  if (endLsn < beginLsn || endLsn - beginLsn !== wal.length) {
    throw new WireDecodeError(WireErrorCodes.MALFORMED, `${r.what} endLsn - beginLsn = ${endLsn - beginLsn} but carries ${wal.length} bytes`, String(wal.length), String(endLsn - beginLsn));
  }
  if (wal.length > MAX_APPEND_BYTES) {
    throw new WireDecodeError(WireErrorCodes.TOO_LARGE, `${r.what} carries ${wal.length} bytes of WAL`, String(wal.length), `<= ${MAX_APPEND_BYTES}`);
  }
}

/** Decodes a frame from a proposer. The WAL of an AppendRequest is a view into `buf` (no copy). */
export function decodeProposerMessage(buf: Buffer): ProposerMessage {
  const { tag } = open(buf);
  let m: ProposerMessage;
  switch (tag) {
    case TAG.ProposerGreeting: {
      const r = new FrameReader(buf, 'ProposerGreeting');
      m = { kind: 'ProposerGreeting', protocolVersion: r.u8(), proposerId: r.num('proposerId'), tenantId: r.str('tenantId'),
        timelineId: r.str('timelineId'), systemId: r.big(), pgVersion: r.u32(), segmentSizeBytes: r.u32() };
      r.end();
      return m;
    }
    case TAG.VoteRequest: {
      const r = new FrameReader(buf, 'VoteRequest');
      m = { kind: 'VoteRequest', term: r.term('term') };
      r.end();
      return m;
    }
    case TAG.ProposerElected: {
      const r = new FrameReader(buf, 'ProposerElected');
      m = { kind: 'ProposerElected', term: r.term('term'), startLsn: r.lsn('startLsn'), termHistory: r.history() };
      r.end();
      return m;
    }
    case TAG.AppendRequest: {
      const r = new FrameReader(buf, 'AppendRequest');
      const t = r.term('term'), beginLsn = r.lsn('beginLsn'), endLsn = r.lsn('endLsn'), commitLsn = r.lsn('commitLsn'), truncateLsn = r.lsn('truncateLsn');
      const wal = r.rest();
      walRange(r, beginLsn, endLsn, wal);
      return { kind: 'AppendRequest', term: t, beginLsn, endLsn, commitLsn, truncateLsn, wal };
    }
    case TAG.ReadRequest: {
      const r = new FrameReader(buf, 'ReadRequest');
      m = { kind: 'ReadRequest', term: r.term('term'), beginLsn: r.lsn('beginLsn'), endLsn: r.lsn('endLsn') };
      r.end();
      if (m.endLsn < m.beginLsn || m.endLsn - m.beginLsn > MAX_APPEND_BYTES) {
        throw new WireDecodeError(WireErrorCodes.TOO_LARGE, `ReadRequest for ${m.endLsn - m.beginLsn} bytes`, String(m.endLsn - m.beginLsn), `0..${MAX_APPEND_BYTES}`);
      }
      return m;
    }
    default:
      throw new WireDecodeError(WireErrorCodes.MALFORMED, `unknown proposer message tag 0x${tag.toString(16)}`, `0x${tag.toString(16)}`, 'g v e a r');
  }
}

/** Decodes a frame from a safekeeper. */
export function decodeAcceptorMessage(buf: Buffer): AcceptorMessage {
  const { tag } = open(buf);
  let m: AcceptorMessage;
  switch (tag) {
    case TAG.AcceptorGreeting: {
      const r = new FrameReader(buf, 'AcceptorGreeting');
      m = { kind: 'AcceptorGreeting', nodeId: r.num('nodeId'), term: r.term('term'), minTerm: r.term('minTerm') };
      r.end();
      return m;
    }
    case TAG.VoteResponse: {
      const r = new FrameReader(buf, 'VoteResponse');
      m = { kind: 'VoteResponse', term: r.term('term'), granted: r.u8() !== 0, flushLsn: r.lsn('flushLsn'),
        truncateLsn: r.lsn('truncateLsn'), lastLogTerm: r.term('lastLogTerm'), termHistory: r.history() };
      r.end();
      return m;
    }
    case TAG.AppendResponse: {
      const r = new FrameReader(buf, 'AppendResponse');
      m = { kind: 'AppendResponse', term: r.term('term'), flushLsn: r.lsn('flushLsn'), durableLsn: r.lsn('durableLsn'), commitLsn: r.lsn('commitLsn') };
      r.end();
      return m;
    }
    case TAG.ReadResponse: {
      const r = new FrameReader(buf, 'ReadResponse');
      const t = r.term('term'), beginLsn = r.lsn('beginLsn');
      const wal = r.rest();
      if (wal.length > MAX_APPEND_BYTES) throw new WireDecodeError(WireErrorCodes.TOO_LARGE, `ReadResponse carries ${wal.length} bytes`, String(wal.length), `<= ${MAX_APPEND_BYTES}`);
      return { kind: 'ReadResponse', term: t, beginLsn, wal };
    }
    case TAG.Error: {
      const r = new FrameReader(buf, 'Error');
      m = { kind: 'Error', code: r.str('code') as ProtocolErrorCode, term: r.term('term'), got: r.str('got'), expected: r.str('expected'), message: r.str('message') };
      r.end();
      return m;
    }
    default:
      throw new WireDecodeError(WireErrorCodes.MALFORMED, `unknown safekeeper message tag 0x${tag.toString(16)}`, `0x${tag.toString(16)}`, 'G V A R E');
  }
}
