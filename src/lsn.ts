// Log sequence numbers: one type for every WAL position in the code base, parsed and printed the way
// PostgreSQL does (`X/XXXXXXXX`). Must never silently lose precision: values above 2^53 are refused.

/** A byte position in the WAL stream. A branded safe integer: cheap to compare and add, unlike bigint. */
export type Lsn = number & { readonly __brand: 'Lsn' };

export const INVALID_LSN = 0 as Lsn;
export const MAX_LSN = Number.MAX_SAFE_INTEGER as Lsn;

/** Brands a number as an Lsn after checking it is a non-negative safe integer. */
export function lsn(value: number | bigint): Lsn {
  const n = typeof value === 'bigint' ? Number(value) : value;
  if (!Number.isSafeInteger(n) || n < 0 || (typeof value === 'bigint' && BigInt(n) !== value)) {
    throw new RangeError(`LSN out of range: ${value}`);
  }
  return n as Lsn;
}

/** Formats as PostgreSQL does: upper 32 bits / lower 32 bits, hex, lower half zero-padded to 8. */
export function formatLsn(value: Lsn | number): string {
  const hi = Math.floor(value / 0x1_0000_0000);
  const lo = value % 0x1_0000_0000;
  return `${hi.toString(16).toUpperCase()}/${lo.toString(16).toUpperCase().padStart(8, '0')}`;
}

/** Parses `X/X` (either half 1 to 8 hex digits). Throws RangeError on anything else. */
export function parseLsn(text: string): Lsn {
  const m = /^([0-9A-Fa-f]{1,8})\/([0-9A-Fa-f]{1,8})$/.exec(text.trim());
  if (!m) throw new RangeError(`not an LSN (expected X/XXXXXXXX): ${JSON.stringify(text)}`);
  return lsn(parseInt(m[1]!, 16) * 0x1_0000_0000 + parseInt(m[2]!, 16));
}

/** WAL pages are always 8 KiB here (XLOG_BLCKSZ); records are 8-byte aligned (MAXALIGN). */
export const WAL_PAGE_SIZE_BYTES = 8192;
export const SIZE_OF_SHORT_PAGE_HEADER = 24;
export const SIZE_OF_LONG_PAGE_HEADER = 40;

export function maxAlign(value: number): number {
  return Math.ceil(value / 8) * 8;
}

export function segmentNoOf(position: Lsn, segmentSizeBytes: number): number {
  return Math.floor(position / segmentSizeBytes);
}

export function segmentStart(segmentNo: number, segmentSizeBytes: number): Lsn {
  return lsn(segmentNo * segmentSizeBytes);
}

export function segmentOffset(position: Lsn, segmentSizeBytes: number): number {
  return position % segmentSizeBytes;
}

/** PostgreSQL's segment file name: timeline, then segment number split by segments-per-4-GiB. */
export function segmentFileName(segmentNo: number, segmentSizeBytes: number, timeline = 1): string {
  const perXLogId = 0x1_0000_0000 / segmentSizeBytes;
  const hex = (n: number) => Math.floor(n).toString(16).toUpperCase().padStart(8, '0');
  return hex(timeline) + hex(segmentNo / perXLogId) + hex(segmentNo % perXLogId);
}

/** Inverse of segmentFileName; returns null for names that are not WAL segments. */
export function parseSegmentFileName(
  name: string,
  segmentSizeBytes: number,
): { timeline: number; segmentNo: number } | null {
  const m = /^([0-9A-F]{8})([0-9A-F]{8})([0-9A-F]{8})$/.exec(name);
  if (!m) return null;
  const perXLogId = 0x1_0000_0000 / segmentSizeBytes;
  const low = parseInt(m[3]!, 16);
  if (low >= perXLogId) return null;
  return { timeline: parseInt(m[1]!, 16), segmentNo: parseInt(m[2]!, 16) * perXLogId + low };
}

/** Segment sizes PostgreSQL accepts: a power of two from 1 MiB to 1 GiB. */
export function isValidSegmentSize(bytes: number): boolean {
  return Number.isInteger(bytes) && bytes >= 1 << 20 && bytes <= 1 << 30 && (bytes & (bytes - 1)) === 0;
}
