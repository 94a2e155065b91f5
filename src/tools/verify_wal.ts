// `safekeeper verify-wal`: checks PostgreSQL WAL segment files (plain or .gz) with the native decoder and
// reports, per segment, records, first/last record LSN and the end of valid WAL. Read-only: never
// modifies the files it is given.

import { readFile, readdir, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { formatLsn, isValidSegmentSize, lsn, parseSegmentFileName, segmentStart, type Lsn } from '../lsn.js';
import { WalDecoder } from '../native.js';

export interface SegmentReport {
  file: string;
  segmentNo: number;
  records: number;
  firstRecordLsn: string | null;
  lastRecordLsn: string | null;
  endLsn: string;
  status: 'ok' | 'end' | 'error';
  error?: { code: string; lsn: string; message: string };
}

interface SegmentInput {
  path: string;
  segmentNo: number;
  segmentSizeBytes: number;
}

const SEGMENT_NAME = /^([0-9A-F]{24})(\.partial)?(\.gz)?$/;

/** Expands files and directories into segment files sorted by segment number. */
export async function collectSegments(paths: readonly string[], segmentSizeHint?: number): Promise<SegmentInput[]> {
  const files: string[] = [];
  for (const p of paths) {
    if ((await stat(p)).isDirectory()) {
      for (const name of (await readdir(p)).sort()) if (SEGMENT_NAME.test(name)) files.push(join(p, name));
    } else {
      files.push(p);
    }
  }
  const out: SegmentInput[] = [];
  for (const path of files) {
    const m = SEGMENT_NAME.exec(basename(path));
    if (!m) throw new Error(`${path}: not a WAL segment file name (expected 24 hex digits, optional .partial/.gz)`);
    const bytes = await loadSegment(path);
    const segmentSizeBytes = segmentSizeHint ?? segmentSizeFromHeader(bytes) ?? bytes.length;
    if (!isValidSegmentSize(segmentSizeBytes)) {
      throw new Error(`${path}: cannot tell the segment size (pass --segment-size)`);
    }
    const parsed = parseSegmentFileName(m[1]!, segmentSizeBytes)!;
    out.push({ path, segmentNo: parsed.segmentNo, segmentSizeBytes });
  }
  return out.sort((a, b) => a.segmentNo - b.segmentNo);
}

async function loadSegment(path: string): Promise<Buffer> {
  const raw = await readFile(path);
  return path.endsWith('.gz') ? gunzipSync(raw) : raw;
}

/** xlp_seg_size from the long page header at the start of a segment, when the header is there. */
function segmentSizeFromHeader(bytes: Buffer): number | null {
  if (bytes.length < 40 || (bytes.readUInt16LE(2) & 0x0002) === 0) return null;
  return bytes.readUInt32LE(32);
}

/**
 * Decodes consecutive segments as one stream (records span segments); a gap in segment numbers, or a
 * clean end of WAL, starts a fresh stream at the next segment.
 */
export async function verifyWal(paths: readonly string[], segmentSizeHint?: number): Promise<SegmentReport[]> {
  const segments = await collectSegments(paths, segmentSizeHint);
  const reports: SegmentReport[] = [];
  // Records are reported by the feed in which they complete; attribute them to the segment they start in.
  const startsBySegment = new Map<number, number[]>();
  const bucket = (starts: Float64Array | undefined, segmentSizeBytes: number) => {
    for (const start of starts ?? []) {
      const no = Math.floor(start / segmentSizeBytes);
      let list = startsBySegment.get(no);
      if (!list) startsBySegment.set(no, (list = []));
      list.push(start);
    }
  };
  let decoder: WalDecoder | null = null;
  let expectedNext = -1;
  for (const seg of segments) {
    const start = segmentStart(seg.segmentNo, seg.segmentSizeBytes);
    if (decoder === null || seg.segmentNo !== expectedNext || decoder.stop !== null) {
      decoder = new WalDecoder({ startLsn: start, segmentSizeBytes: seg.segmentSizeBytes, collectRecords: true });
    }
    const bytes = await loadSegment(seg.path);
    const result = decoder.feed(bytes.length > seg.segmentSizeBytes ? bytes.subarray(0, seg.segmentSizeBytes) : bytes);
    bucket(result.records?.startLsn, seg.segmentSizeBytes);
    const report: SegmentReport = {
      file: seg.path,
      segmentNo: seg.segmentNo,
      records: 0,
      firstRecordLsn: null,
      lastRecordLsn: null,
      endLsn: formatLsn(decoder.endLsn as Lsn),
      status: result.stop === null ? 'ok' : result.stop.kind === 'end' ? 'end' : 'error',
    };
    if (result.stop && result.stop.kind === 'error') {
      report.error = { code: result.stop.code, lsn: formatLsn(lsn(result.stop.lsn)), message: result.stop.message };
    }
    reports.push(report);
    expectedNext = seg.segmentNo + 1;
  }
  for (const r of reports) {
    const starts = startsBySegment.get(r.segmentNo) ?? [];
    r.records = starts.length;
    r.firstRecordLsn = starts.length > 0 ? formatLsn(lsn(starts[0]!)) : null;
    r.lastRecordLsn = starts.length > 0 ? formatLsn(lsn(starts[starts.length - 1]!)) : null;
  }
  return reports;
}

export function formatReportLine(r: SegmentReport): string {
  const base = `${basename(r.file)}  records ${String(r.records).padStart(7)}  first ${r.firstRecordLsn ?? '-'}  last ${r.lastRecordLsn ?? '-'}  end ${r.endLsn}`;
  if (r.status === 'error') return `${base}  ERROR ${r.error!.code} at ${r.error!.lsn}: ${r.error!.message}`;
  return `${base}  ${r.status === 'end' ? 'ok (end of WAL)' : 'ok'}`;
}
