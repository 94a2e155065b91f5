// Binary encoding of safekeeper.control (format in docs/ON_DISK.md): magic, version, length, body, CRC-32C.
// Pure functions over bytes. Decoding never guesses: anything that does not check out is SK_CONTROL_FILE_CORRUPT.

import { ErrorCodes, SafekeeperError } from '../errors.js';
import { lsn } from '../lsn.js';
import { crc32c } from '../native.js';
import { term, type TermSwitch, type TimelinePersistentState } from './timeline_state.js';

export const CONTROL_FILE_MAGIC = 0x534b4346;
export const CONTROL_FILE_VERSION = 1;
const HEADER_BYTES = 12;
const MAX_BODY_BYTES = 1 << 20;

export function encodeControlFile(state: TimelinePersistentState): Buffer {
  const tenant = Buffer.from(state.tenantId, 'utf8');
  const timeline = Buffer.from(state.timelineId, 'utf8');
  const bodyBytes = 8 * 9 + 4 + 8 + 4 + 2 + tenant.length + 2 + timeline.length + 4 + 16 * state.termHistory.length;
  if (bodyBytes > MAX_BODY_BYTES) {
    throw new SafekeeperError(ErrorCodes.INVALID_ARGUMENT, `control file body too large: ${bodyBytes} bytes`);
  }
  const buf = Buffer.alloc(HEADER_BYTES + bodyBytes + 4);
  let at = 0;
  const u32 = (v: number) => { at = buf.writeUInt32LE(v, at); };
  const u16 = (v: number) => { at = buf.writeUInt16LE(v, at); };
  const u64 = (v: number | bigint) => { at = buf.writeBigUInt64LE(BigInt(v), at); };
  u32(CONTROL_FILE_MAGIC);
  u32(CONTROL_FILE_VERSION);
  u32(bodyBytes);
  u64(state.term);
  u64(state.votedFor);
  u64(state.minTerm);
  u64(state.flushLsn);
  u64(state.commitLsn);
  u64(state.backupLsn);
  u64(state.peerHorizonLsn);
  u64(state.timelineStartLsn);
  u64(state.localStartLsn);
  u32(state.pgVersion);
  u64(state.systemId);
  u32(state.segmentSizeBytes);
  u16(tenant.length);
  at += tenant.copy(buf, at);
  u16(timeline.length);
  at += timeline.copy(buf, at);
  u32(state.termHistory.length);
  for (const entry of state.termHistory) {
    u64(entry.term);
    u64(entry.lsn);
  }
  buf.writeUInt32LE(crc32c(buf.subarray(0, at)), at);
  return buf;
}

/** Decodes and validates; `path` only names the file in errors. */
export function decodeControlFile(buf: Buffer, path: string): TimelinePersistentState {
  const corrupt = (why: string, details: Record<string, unknown> = {}): never => {
    throw new SafekeeperError(ErrorCodes.CONTROL_FILE_CORRUPT, `control file ${path} is corrupt: ${why}`, {
      path,
      ...details,
    });
  };
  if (buf.length < HEADER_BYTES + 4) corrupt(`only ${buf.length} bytes`);
  const magic = buf.readUInt32LE(0);
  if (magic !== CONTROL_FILE_MAGIC) {
    corrupt(`bad magic 0x${magic.toString(16)}, expected 0x${CONTROL_FILE_MAGIC.toString(16)}`, { got: magic });
  }
  const version = buf.readUInt32LE(4);
  if (version > CONTROL_FILE_VERSION) {
    throw new SafekeeperError(
      ErrorCodes.CONTROL_FILE_VERSION,
      `control file ${path} has format version ${version}; this build reads up to ${CONTROL_FILE_VERSION}`,
      { path, got: version, expected: CONTROL_FILE_VERSION },
    );
  }
  if (version < 1) corrupt(`format version ${version}`);
  const bodyBytes = buf.readUInt32LE(8);
  if (bodyBytes > MAX_BODY_BYTES || HEADER_BYTES + bodyBytes + 4 !== buf.length) {
    corrupt(`length field ${bodyBytes} does not match file size ${buf.length}`);
  }
  const end = HEADER_BYTES + bodyBytes;
  const stored = buf.readUInt32LE(end);
  const computed = crc32c(buf.subarray(0, end));
  if (stored !== computed) {
    corrupt(`CRC-32C mismatch: stored 0x${stored.toString(16)}, computed 0x${computed.toString(16)}`);
  }
  let at = HEADER_BYTES;
  const need = (n: number) => { if (at + n > end) corrupt(`body truncated at byte ${at}`); };
  const u32 = () => { need(4); const v = buf.readUInt32LE(at); at += 4; return v; };
  const u16 = () => { need(2); const v = buf.readUInt16LE(at); at += 2; return v; };
  const big = () => { need(8); const v = buf.readBigUInt64LE(at); at += 8; return v; };
  const num = () => { const v = big(); if (v > BigInt(Number.MAX_SAFE_INTEGER)) corrupt(`value ${v} out of range at byte ${at - 8}`); return Number(v); };
  const str = () => { const n = u16(); need(n); const s = buf.toString('utf8', at, at + n); at += n; return s; };
  const t = term(num());
  const votedFor = num();
  const minTerm = term(num());
  const flushLsn = lsn(num());
  const commitLsn = lsn(num());
  const backupLsn = lsn(num());
  const peerHorizonLsn = lsn(num());
  const timelineStartLsn = lsn(num());
  const localStartLsn = lsn(num());
  const pgVersion = u32();
  const systemId = big();
  const segmentSizeBytes = u32();
  const tenantId = str();
  const timelineId = str();
  const historyLength = u32();
  const termHistory: TermSwitch[] = [];
  for (let i = 0; i < historyLength; i++) termHistory.push({ term: term(num()), lsn: lsn(num()) });
  if (at !== end) corrupt(`${end - at} unexpected trailing body bytes`);
  return {
    tenantId, timelineId, term: t, votedFor, minTerm, termHistory, flushLsn, commitLsn, backupLsn,
    peerHorizonLsn, timelineStartLsn, localStartLsn, pgVersion, systemId, segmentSizeBytes,
  };
}
