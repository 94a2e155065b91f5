// The WAL generator against the native PostgreSQL WAL decoder and, when installed, PostgreSQL 15's own
// pg_waldump: long multi-segment streams, page- and segment-crossing records, split record headers,
// records ending exactly at page ends, chunk(), resume(). It must never pass on WAL a real reader rejects.
import t, { type Test } from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { WalDecoder, type FeedResult } from '../src/native.js';
import { formatLsn, lsn, segmentFileName, type Lsn } from '../src/lsn.js';
import { RM_XLOG_ID, WalGenerator, XLOG_NOOP, type GeneratedRecord } from '../src/wal/wal_generator.js';

const PAGE = 8192;
const SYSTEM_ID = 7710768150544533954n;
const PG_WALDUMP = '/usr/lib/postgresql/15/bin/pg_waldump';

interface Stream {
  gen: WalGenerator;
  startLsn: Lsn;
  parts: Buffer[];
  records: GeneratedRecord[];
  /** The generator's lsn after each record. */
  ends: Lsn[];
}

function emit(s: Stream, payloadBytes: number): void {
  s.parts.push(s.gen.next(payloadBytes));
  s.records.push(s.gen.lastRecord!);
  s.ends.push(s.gen.lsn);
}

/** Payload that makes a record of exactly `recordBytes` (header 24 + block header 2 or 5 + data). */
function payloadFor(recordBytes: number): number {
  const p = recordBytes - 24 - 2;
  return p <= 255 ? p : recordBytes - 24 - 5;
}

/** Emits records so the write position lands `leave` bytes before the end of a page. */
function landBeforePageEnd(s: Stream, leave: number): void {
  for (;;) {
    const inPage = s.gen.lsn % PAGE;
    // Both are multiples of 8, so `left` never falls in 282..284 (no block header size reaches those).
    const left = PAGE - inPage - leave;
    if (inPage !== 0 && left >= 32) {
      emit(s, payloadFor(left));
      break;
    }
    emit(s, 300);
  }
  if ((PAGE - (s.gen.lsn % PAGE)) % PAGE !== leave) throw new Error(`did not land ${leave} bytes before a page end: at ${formatLsn(s.gen.lsn)}`);
}

/** A stream over `segments`+ segments exercising every placement a record can have. */
function buildStream(segmentSizeBytes: number, segments: number, seed: number): Stream {
  const startLsn = lsn(segmentSizeBytes);
  const s: Stream = { gen: new WalGenerator({ startLsn, segmentSizeBytes, systemId: SYSTEM_ID, seed }), startLsn, parts: [], records: [], ends: [] };
  const sizes = [0, 1, 2, 100, 253, 254, 255, 256, 1000, 8000, 8168, 8200, 16384, 50_000, 100_000];
  let n = 0;
  let rng = seed;
  const end = startLsn + segments * segmentSizeBytes + 5000;
  while (s.gen.lsn < end) {
    switch (n++ % 6) {
      case 0:
        landBeforePageEnd(s, 0); // ends exactly at a page end: next record brings its own page header
        break;
      case 1:
        landBeforePageEnd(s, 8); // the next record header is split 8 + 16 across the page boundary
        emit(s, 40);
        break;
      case 2:
        landBeforePageEnd(s, 16);
        emit(s, 5000);
        break;
      default:
        rng = (rng * 1103515245 + 12345) >>> 0;
        emit(s, sizes[rng % sizes.length]!);
    }
    // Now and then, go to the segment end: end exactly there, split a header across it, or cross it
    // with a 100 KB record.
    if (n % 50 === 0) {
      const segEnd = Math.ceil(s.gen.lsn / segmentSizeBytes) * segmentSizeBytes;
      const mode = (n / 50) % 3;
      const stopAt = mode === 2 ? 50_000 : PAGE;
      while (segEnd - s.gen.lsn > 100_000 + stopAt) emit(s, 100_000);
      while (segEnd - s.gen.lsn > stopAt) emit(s, 4000);
      if (mode === 2) emit(s, 100_000);
      else landBeforePageEnd(s, mode === 0 ? 0 : 8);
    }
  }
  return s;
}

function checkRecords(t: Test, r: FeedResult, expected: GeneratedRecord[]): void {
  const got = r.records!;
  t.equal(r.recordCount, expected.length, 'record count');
  let bad = 0;
  for (let i = 0; i < expected.length && bad < 5; i++) {
    const e = expected[i]!;
    if (got.startLsn[i] !== e.startLsn || got.prevLsn[i] !== e.prevLsn || got.totalLength[i] !== e.totalLength || got.rmid[i] !== RM_XLOG_ID || got.info[i] !== XLOG_NOOP) {
      bad++;
      t.fail(`record ${i}: decoder ${formatLsn(got.startLsn[i]!)} prev ${formatLsn(got.prevLsn[i]!)} len ${got.totalLength[i]}, generator ${formatLsn(e.startLsn)} prev ${formatLsn(e.prevLsn)} len ${e.totalLength}`);
    }
  }
  if (bad === 0) t.pass('every record matches the generator (start, prev, length, rmid, info)');
}

for (const [label, segmentSizeBytes, segments] of [
  ['16 MiB segments', 16 << 20, 3],
  ['1 MiB segments', 1 << 20, 6],
] as const) {
  t.test(`a long stream with ${label} decodes with zero stops`, async (t) => {
    const s = buildStream(segmentSizeBytes, segments, 42);
    const wal = Buffer.concat(s.parts);
    t.equal(wal.length, s.gen.lsn - s.startLsn, 'stream length equals the LSN range');
    t.ok(s.gen.lsn >= s.startLsn + segments * segmentSizeBytes, `spans ${segments} segments`);

    const whole = new WalDecoder({ startLsn: s.startLsn, segmentSizeBytes, collectRecords: true });
    const r = whole.feed(wal);
    t.equal(r.stop, null, 'no stop');
    t.equal(whole.endLsn, s.gen.lsn, 'decoder end = generator lsn');
    checkRecords(t, r, s.records);

    // Record by record, with the decoder's end after each equal to where the generator stood.
    const step = new WalDecoder({ startLsn: s.startLsn, segmentSizeBytes, prevLsn: 0 });
    let bad = 0;
    for (let i = 0; i < s.parts.length && bad < 3; i++) {
      const fr = step.feed(s.parts[i]!);
      if (fr.stop !== null || fr.recordCount !== 1 || step.endLsn !== s.ends[i]) {
        bad++;
        t.fail(`record ${i}: stop ${JSON.stringify(fr.stop)}, ${fr.recordCount} records, end ${formatLsn(step.endLsn)}, generator at ${formatLsn(s.ends[i]!)}`);
      }
    }
    if (bad === 0) t.pass('fed record by record: one record per next(), no stop');

    // Coverage of the placements the stream is meant to have.
    const seg = (lsnValue: number) => Math.floor(lsnValue / segmentSizeBytes);
    const crossesPage = s.records.filter((x) => Math.floor(x.startLsn / PAGE) !== Math.floor((physicalEnd(x, segmentSizeBytes) - 1) / PAGE)).length;
    const crossesSegment = s.records.filter((x) => seg(x.startLsn) !== seg(physicalEnd(x, segmentSizeBytes) - 1)).length;
    const endsAtSegment = s.records.filter((x) => physicalEnd(x, segmentSizeBytes) % segmentSizeBytes === 0).length;
    const splitHeader = s.records.filter((x) => PAGE - (x.startLsn % PAGE) < 24).length;
    const endsAtPage = s.records.filter((x) => physicalEnd(x, segmentSizeBytes) % PAGE === 0).length;
    t.ok(crossesPage > 100, `${crossesPage} records cross a page`);
    t.ok(crossesSegment >= 2, `${crossesSegment} records cross a segment boundary`);
    t.ok(endsAtSegment >= 1, `${endsAtSegment} records end exactly at a segment end`);
    t.ok(crossesSegment + endsAtSegment >= segments, 'every segment boundary is crossed or ended at');
    t.ok(splitHeader > 10, `${splitHeader} record headers are split across pages`);
    t.ok(endsAtPage > 10, `${endsAtPage} records end exactly at a page end`);
    const biggest = Math.max(...s.records.map((x) => x.totalLength));
    const smallest = Math.min(...s.records.map((x) => x.totalLength));
    t.ok(biggest >= 100_000 && smallest <= 24 + 2 + 1, `record sizes ${smallest}..${biggest} bytes`);
  });
}

t.test('the long header goes at segment starts, the contrecord flag and rem_len on continued pages', async (t) => {
  const seg = 1 << 20;
  const gen = new WalGenerator({ startLsn: lsn(seg), segmentSizeBytes: seg, systemId: SYSTEM_ID });
  const first = gen.next(20_000);
  t.equal(first.readUInt16LE(0), 0xd110, 'xlp_magic');
  t.equal(first.readUInt16LE(2), 0x0002, 'long header, no contrecord');
  t.equal(first.readUInt32LE(4), 1, 'timeline 1');
  t.equal(Number(first.readBigUInt64LE(8)), seg, 'xlp_pageaddr');
  t.equal(first.readBigUInt64LE(24), SYSTEM_ID, 'xlp_sysid');
  t.equal(first.readUInt32LE(32), seg, 'xlp_seg_size');
  t.equal(first.readUInt32LE(36), PAGE, 'xlp_xlog_blcksz');
  t.equal(first.readUInt32LE(40), 24 + 5 + 20_000, 'xl_tot_len');
  t.equal(first[40 + 24], 254, 'XLR_BLOCK_ID_DATA_LONG');
  t.equal(first.readUInt32LE(40 + 25), 20_000, 'data length');
  const second = PAGE; // the record started at offset 40 of the first page
  t.equal(first.readUInt16LE(second + 2), 0x0001, 'second page: short header with the contrecord flag');
  t.equal(first.readUInt32LE(second + 16), 24 + 5 + 20_000 - (PAGE - 40), 'xlp_rem_len = rest of the record');
  t.equal(first.readUInt32LE(2 * PAGE + 16), 24 + 5 + 20_000 - (PAGE - 40) - (PAGE - 24), 'third page rem_len');
  const small = gen.next(10);
  t.equal(small.readUInt32LE(0), 24 + 2 + 10, 'small record: xl_tot_len');
  t.equal(small[24], 255, 'XLR_BLOCK_ID_DATA_SHORT');
  t.equal(small[25], 10, 'u8 length');
  t.equal(small.length, 40, 'MAXALIGN padding to 40');
  t.same([...small.subarray(36)], [0, 0, 0, 0], 'padding is zeros');
});

t.test('concatenated chunk() output is one valid stream ending at record boundaries', async (t) => {
  const seg = 1 << 20;
  const gen = new WalGenerator({ startLsn: lsn(seg), segmentSizeBytes: seg, systemId: SYSTEM_ID, seed: 7 });
  const decoder = new WalDecoder({ startLsn: seg, segmentSizeBytes: seg, prevLsn: 0 });
  const chunks: Buffer[] = [];
  let records = 0;
  let bad = 0;
  for (let i = 0; i < 600; i++) {
    const target = i % 3 === 0 ? 8192 : i % 3 === 1 ? 300 : 64 * 1024;
    const before = gen.recordCount;
    const c = gen.chunk(target, { maxPayloadBytes: i % 3 === 2 ? 16_000 : 1024 });
    chunks.push(c);
    const r = decoder.feed(c);
    records += r.recordCount;
    const ok = r.stop === null && c.length >= target && c.length < target + 80 && r.recordCount === gen.recordCount - before;
    const atBoundary = decoder.endLsn === gen.lsn;
    if ((!ok || !atBoundary) && bad++ < 3) t.fail(`chunk ${i}: ${c.length} bytes for ${target}, stop ${JSON.stringify(r.stop)}, end ${formatLsn(decoder.endLsn)} vs ${formatLsn(gen.lsn)}`);
  }
  t.equal(bad, 0, 'every chunk decodes, is >= its target and within 80 bytes of it, and ends at a record boundary');
  t.equal(records, gen.recordCount, 'decoder saw every record');
  const all = Buffer.concat(chunks);
  const whole = new WalDecoder({ startLsn: seg, segmentSizeBytes: seg });
  const r = whole.feed(all);
  t.equal(r.stop, null, 'the concatenation decodes with no stop');
  t.equal(whole.endLsn, gen.lsn, 'and ends at the generator lsn');
  t.ok(gen.lsn > 4 * seg, 'crossed several segments');
});

t.test('resume() continues a stream: the prev link is checked across generators', async (t) => {
  const seg = 1 << 20;
  for (const leave of [0, 8, 16, 200]) {
    const a: Stream = { gen: new WalGenerator({ startLsn: lsn(seg), segmentSizeBytes: seg, systemId: SYSTEM_ID }), startLsn: lsn(seg), parts: [], records: [], ends: [] };
    for (let i = 0; i < 20; i++) emit(a, 3000);
    landBeforePageEnd(a, leave);
    const pos = a.gen.position;
    const b = WalGenerator.resume({ ...pos, segmentSizeBytes: seg, systemId: SYSTEM_ID, seed: 99 });
    const partsB = [b.next(100), b.next(20_000), b.chunk(10_000)];
    // A decoder that starts where b started checks b's first xl_prev against a's last record.
    const d = new WalDecoder({ startLsn: pos.lsn, segmentSizeBytes: seg, prevLsn: pos.prevLsn });
    const r = d.feed(Buffer.concat(partsB));
    t.equal(r.stop, null, `resumed ${leave} bytes before a page end: decodes with the prev link checked`);
    t.equal(d.endLsn, b.lsn);
    const whole = new WalDecoder({ startLsn: seg, segmentSizeBytes: seg });
    t.equal(whole.feed(Buffer.concat([...a.parts, ...partsB])).stop, null, 'a + b is one valid stream');
  }
  const wrong = new WalGenerator({ startLsn: lsn(seg), segmentSizeBytes: seg, systemId: SYSTEM_ID });
  wrong.next(10);
  const p = wrong.position;
  const c = WalGenerator.resume({ lsn: p.lsn, prevLsn: lsn(p.prevLsn + 8), segmentSizeBytes: seg, systemId: SYSTEM_ID });
  const d = new WalDecoder({ startLsn: p.lsn, segmentSizeBytes: seg, prevLsn: p.prevLsn });
  t.equal(d.feed(c.next(10)).stop?.code, 'BAD_PREV_LINK', 'a wrong prevLsn is caught by the decoder (the check is real)');
});

t.test('bad options are refused', async (t) => {
  const seg = 1 << 20;
  t.throws(() => new WalGenerator({ startLsn: lsn(seg + 4), segmentSizeBytes: seg, systemId: SYSTEM_ID }), /neither a page start/);
  t.throws(() => new WalGenerator({ startLsn: lsn(seg + 24), segmentSizeBytes: seg, systemId: SYSTEM_ID }), /neither a page start/, 'inside the long header');
  t.throws(() => new WalGenerator({ startLsn: lsn(seg), segmentSizeBytes: 3000, systemId: SYSTEM_ID }), /segmentSizeBytes/);
  t.throws(() => new WalGenerator({ startLsn: lsn(seg), segmentSizeBytes: seg, systemId: SYSTEM_ID }).next(-1), /payloadBytes/);
});

t.test('pg_waldump (PostgreSQL 15) reads every generated record', { skip: existsSync(PG_WALDUMP) ? false : `${PG_WALDUMP} not installed` }, async (t) => {
  for (const segmentSizeBytes of [1 << 20, 16 << 20]) {
    const s = buildStream(segmentSizeBytes, 3, 1234);
    // Both end-of-WAL shapes: the stream as built ends at a page end; one more record ends mid-page.
    if (segmentSizeBytes === 16 << 20) emit(s, 100);
    const wal = Buffer.concat(s.parts);
    const dir = mkdtempSync(join(tmpdir(), 'sk-walgen-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const firstSeg = s.startLsn / segmentSizeBytes;
    const lastSeg = Math.floor((s.gen.lsn - 1) / segmentSizeBytes);
    for (let seg = firstSeg; seg <= lastSeg; seg++) {
      const file = Buffer.alloc(segmentSizeBytes);
      const from = seg * segmentSizeBytes - s.startLsn;
      wal.copy(file, 0, from, Math.min(wal.length, from + segmentSizeBytes));
      writeFileSync(join(dir, segmentFileName(seg, segmentSizeBytes)), file);
    }
    const name = (seg: number) => segmentFileName(seg, segmentSizeBytes);
    const dump = (endSeg: number) => spawnSync(PG_WALDUMP, ['-p', dir, name(firstSeg), name(endSeg)], { encoding: 'utf8', maxBuffer: 256 << 20 });
    const listed = (stdout: string) => stdout.split('\n').filter((l) => l.startsWith('rmgr: XLOG') && l.includes('desc: NOOP'));

    // Up to the last complete segment: pg_waldump stops cleanly (exit 0) at the segment end.
    const limit = lastSeg * segmentSizeBytes;
    const r1 = dump(lastSeg - 1);
    t.equal(r1.status, 0, `${segmentSizeBytes >> 20} MiB segments: pg_waldump exit 0 up to ${name(lastSeg - 1)} (${r1.stderr.trim()})`);
    const within = s.records.filter((x) => physicalEnd(x, segmentSizeBytes) <= limit);
    const lines1 = listed(r1.stdout);
    t.equal(lines1.length, within.length, `lists all ${within.length} records ending before ${formatLsn(limit)}`);
    t.ok(lines1.every((l, i) => l.includes(`lsn: ${formatLsn(within[i]!.startLsn)}, prev ${formatLsn(within[i]!.prevLsn)}`)), 'with our start and prev LSNs');

    // All segments: every record, then the end of WAL (zeros) exactly at the generator's position.
    const r2 = dump(lastSeg);
    const lines2 = listed(r2.stdout);
    t.equal(lines2.length, s.records.length, `lists all ${s.records.length} records`);
    // A stream ending at a page end stops at the next (zero) page header instead of a zero record.
    const endOfWal = s.gen.lsn % PAGE === 0
      ? `invalid magic number 0000 in log segment ${name(Math.floor(s.gen.lsn / segmentSizeBytes))}, offset ${s.gen.lsn % segmentSizeBytes}`
      : `invalid record length at ${formatLsn(s.gen.lsn).replace(/\/0+(?=.)/, '/')}: wanted 24, got 0`; // %X/%X, unpadded
    t.ok(r2.stderr.includes(endOfWal), `and stops only at the zeros after the last record (${r2.stderr.trim()})`);
  }
});

/** Position right after a record's last byte, counting the page headers it crosses. */
function physicalEnd(r: GeneratedRecord, segmentSizeBytes: number): number {
  let pos: number = r.startLsn;
  let left = r.totalLength;
  while (left > 0) {
    if (pos % PAGE === 0) pos += pos % segmentSizeBytes === 0 ? 40 : 24;
    const n = Math.min(PAGE - (pos % PAGE), left);
    pos += n;
    left -= n;
  }
  return pos;
}
