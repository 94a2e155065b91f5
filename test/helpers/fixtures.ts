// Loads the real PostgreSQL 15 WAL fixtures (../shared/fixtures/pg15-wal) once per process: the five
// segments as one contiguous buffer starting at 0/01000000, and pg_waldump's record list (the oracle).

import { readFileSync, existsSync, writeFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';

const here = dirname(fileURLToPath(import.meta.url));
export const FIXTURE_DIR = resolve(here, '../../../shared/fixtures/pg15-wal');
export const SEGMENT_SIZE = 16 * 1024 * 1024;
export const FIXTURE_START_LSN = 0x0100_0000;
/** End of valid WAL in the fixtures (pg_waldump), exclusive. */
export const FIXTURE_END_LSN = 0x05c6_8588;
export const FIXTURE_SYSTEM_ID = 7710768150544533954n;

let wal: Buffer | null = null;

/** All five segments concatenated: byte i is LSN FIXTURE_START_LSN + i. */
export function fixtureWal(): Buffer {
  if (!wal) {
    const parts: Buffer[] = [];
    for (let seg = 1; seg <= 5; seg++) {
      parts.push(gunzipSync(readFileSync(join(FIXTURE_DIR, `00000001000000000000000${seg}.gz`))));
    }
    wal = Buffer.concat(parts);
  }
  return wal;
}

/** The fixture bytes for [from, to) as LSNs. */
export function fixtureSlice(from: number, to: number): Buffer {
  return fixtureWal().subarray(from - FIXTURE_START_LSN, to - FIXTURE_START_LSN);
}

export interface OracleRecord {
  start: number;
  prev: number;
  totalLength: number;
  rmgr: string;
  kind: string;
}

const parseLsnText = (s: string): number => {
  const [hi, lo] = s.split('/');
  return parseInt(hi!, 16) * 0x1_0000_0000 + parseInt(lo!, 16);
};

let oracle: OracleRecord[] | null = null;

export function oracleRecords(): OracleRecord[] {
  if (!oracle) {
    const text = gunzipSync(readFileSync(join(FIXTURE_DIR, 'records.txt.gz'))).toString('utf8');
    oracle = text
      .split('\n')
      .filter((l) => l.length > 0)
      .map((line) => {
        const [start, prev, len, rmgr, kind] = line.split(' ');
        return { start: parseLsnText(start!), prev: parseLsnText(prev!), totalLength: Number(len), rmgr: rmgr!, kind: kind! };
      });
  }
  return oracle;
}

/** Writes the fixture WAL to a temp file once (for child processes that must not gunzip 80 MB each). */
export function fixtureWalFile(): string {
  const path = join(mkdtempSync(join(tmpdir(), 'sk-fixture-')), 'wal.bin');
  if (!existsSync(path)) writeFileSync(path, fixtureWal());
  return path;
}

/**
 * Aligned record ends from the oracle: every flushLsn a store may report. PostgreSQL starts the next
 * record right at the aligned end, except when that end is a page boundary: then it starts after the
 * page header (24 bytes, or 40 at a segment start), and the end is the boundary itself.
 */
export function recordEnds(): Set<number> {
  const ends = new Set<number>();
  const recs = oracleRecords();
  for (let i = 1; i < recs.length; i++) {
    const next = recs[i]!.start;
    const inPage = next % 8192;
    const atSegmentStart = next % SEGMENT_SIZE === 40;
    ends.add(atSegmentStart ? next - 40 : inPage === 24 ? next - 24 : next);
  }
  ends.add(FIXTURE_END_LSN);
  return ends;
}
