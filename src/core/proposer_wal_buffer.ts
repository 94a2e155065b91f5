// The proposer's in-memory WAL: a contiguous run [startLsn, endLsn) of chunks, appended at the end by
// the application, prepended by recovery reads, trimmed from the front at truncateLsn. Plain data plus
// pure helpers; must never hold a gap or hand out bytes it does not hold.

import { invariant } from '../errors.js';
import type { Lsn } from '../lsn.js';

export interface WalChunk {
  readonly lsn: Lsn;
  readonly bytes: Uint8Array;
}

export interface WalBuffer {
  startLsn: Lsn;
  endLsn: Lsn;
  /** Chunks from index `head` on are live; earlier ones were trimmed (compacted now and then). */
  chunks: WalChunk[];
  head: number;
  /**
   * The last multi-chunk read: safekeepers in step ask for the same range one after another, and one
   * concatenated copy then serves them all (the wire encoder reuses the frame too).
   */
  lastRead?: { from: Lsn; to: Lsn; bytes: Uint8Array };
}

export function walBufferCreate(at: Lsn): WalBuffer {
  return { startLsn: at, endLsn: at, chunks: [], head: 0 };
}

/** Appends bytes at endLsn and returns where they went. */
export function walBufferAppend(buf: WalBuffer, bytes: Uint8Array): { beginLsn: Lsn; endLsn: Lsn } {
  const beginLsn = buf.endLsn;
  if (bytes.length === 0) return { beginLsn, endLsn: beginLsn };
  buf.chunks.push({ lsn: beginLsn, bytes });
  buf.endLsn = (beginLsn + bytes.length) as Lsn;
  return { beginLsn, endLsn: buf.endLsn };
}

/** Puts `chunks` (contiguous, ending exactly at startLsn) in front of the buffer. */
export function walBufferPrepend(buf: WalBuffer, chunks: readonly WalChunk[]): void {
  if (chunks.length === 0) return;
  const last = chunks[chunks.length - 1]!;
  if (last.lsn + last.bytes.length !== buf.startLsn) invariant(false, `prepended WAL ends at ${last.lsn + last.bytes.length}, buffer starts at ${buf.startLsn}`);
  for (let i = 1; i < chunks.length; i++) {
    const prev = chunks[i - 1]!;
    invariant(prev.lsn + prev.bytes.length === chunks[i]!.lsn, 'prepended WAL has a gap');
  }
  buf.chunks = [...chunks, ...buf.chunks.slice(buf.head)];
  buf.head = 0;
  buf.startLsn = chunks[0]!.lsn;
}

/** Drops whole chunks that end at or below `lsn` (a chunk straddling it is kept whole). */
export function walBufferTrim(buf: WalBuffer, lsn: Lsn): void {
  while (buf.head < buf.chunks.length) {
    const c = buf.chunks[buf.head]!;
    if (c.lsn + c.bytes.length > lsn) break;
    buf.head++;
    buf.startLsn = (c.lsn + c.bytes.length) as Lsn;
  }
  if (buf.head > 64 && buf.head * 2 > buf.chunks.length) {
    buf.chunks = buf.chunks.slice(buf.head);
    buf.head = 0;
  }
}

function chunkIndexAt(buf: WalBuffer, lsn: Lsn): number {
  let lo = buf.head;
  let hi = buf.chunks.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (buf.chunks[mid]!.lsn <= lsn) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/** Bytes [from, to); the range must lie inside the buffer. */
export function walBufferRead(buf: WalBuffer, from: Lsn, to: Lsn): Uint8Array {
  if (from < buf.startLsn || to > buf.endLsn || from > to) invariant(false, `read ${from}..${to} outside buffer ${buf.startLsn}..${buf.endLsn}`);
  if (from === to) return new Uint8Array(0);
  let i = chunkIndexAt(buf, from);
  const first = buf.chunks[i]!;
  if (to <= first.lsn + first.bytes.length) return first.bytes.subarray(from - first.lsn, to - first.lsn);
  const memo = buf.lastRead;
  if (memo && memo.from === from && memo.to === to) return memo.bytes;
  const out = new Uint8Array(to - from);
  let pos = from;
  while (pos < to) {
    const c = buf.chunks[i++]!;
    const a = pos - c.lsn;
    const b = Math.min(c.bytes.length, to - c.lsn);
    out.set(c.bytes.subarray(a, b), pos - from);
    pos = (pos + (b - a)) as Lsn;
  }
  buf.lastRead = { from, to, bytes: out };
  return out;
}
