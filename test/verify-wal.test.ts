// `safekeeper verify-wal` as an operator runs it: over the real fixtures (.gz), in text and JSON, and on
// damaged copies, where it must exit non-zero and name the LSN of the damage.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync } from 'node:zlib';
import { FIXTURE_DIR, oracleRecords } from './helpers/fixtures.js';

const cli = resolve(dirname(fileURLToPath(import.meta.url)), '../dist/src/cli/main.js');
const run = (...args: string[]) => spawnSync(process.execPath, [cli, 'verify-wal', ...args], { encoding: 'utf8' });

t.test('fixtures verify clean, agreeing with pg_waldump', async (t) => {
  const res = run('--json', FIXTURE_DIR);
  t.equal(res.status, 0, res.stderr);
  const report = JSON.parse(res.stdout) as { ok: boolean; segments: { records: number; firstRecordLsn: string; lastRecordLsn: string; endLsn: string; status: string }[] };
  t.equal(report.ok, true);
  t.equal(report.segments.length, 5);
  const oracle = oracleRecords();
  // Records attributed to the segment they start in; segment 5 holds one record past the oracle's range.
  const counts = [1, 2, 3, 4].map((s) => oracle.filter((r) => Math.floor(r.start / 0x100_0000) === s).length);
  t.same(report.segments.slice(0, 4).map((s) => s.records), counts);
  t.equal(report.segments[0]!.firstRecordLsn, '0/01000028');
  t.equal(report.segments[4]!.endLsn, '0/05C685C0', 'end of valid WAL in segment 5');
  t.equal(report.segments[4]!.status, 'end', 'the zero tail of segment 5 is a clean end');
  const text = run(FIXTURE_DIR);
  t.equal(text.status, 0);
  t.match(text.stdout, /000000010000000000000001(\.gz)? .*first 0\/01000028/);
  t.match(text.stdout, /5 segment\(s\) ok/);
});

t.test('damage is reported with its LSN and a non-zero exit', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'sk-verify-'));
  const seg2 = gunzipSync(readFileSync(join(FIXTURE_DIR, '000000010000000000000002.gz')));
  copyFileSync(join(FIXTURE_DIR, '000000010000000000000001.gz'), join(dir, '000000010000000000000001.gz'));
  const rec = oracleRecords().find((r) => r.start > 0x0200_4000 && r.totalLength > 100)!;
  const bad = Buffer.from(seg2);
  bad[rec.start - 0x0200_0000 + 60] = bad[rec.start - 0x0200_0000 + 60]! ^ 0x01;
  writeFileSync(join(dir, '000000010000000000000002'), bad);
  const res = run(dir);
  t.equal(res.status, 1);
  const hex = rec.start.toString(16).toUpperCase().padStart(8, '0');
  t.match(res.stdout, new RegExp(`ERROR BAD_CRC at 0/${hex}`));
  const json = JSON.parse(run('--json', dir).stdout) as { ok: boolean; segments: { error?: { code: string; lsn: string } }[] };
  t.equal(json.ok, false);
  t.equal(json.segments[1]!.error?.code, 'BAD_CRC');
  t.equal(json.segments[1]!.error?.lsn, `0/${hex}`);

  const pageBad = Buffer.from(seg2);
  pageBad[8192 * 7] = 0x13; // the magic of page 7
  writeFileSync(join(dir, '000000010000000000000002'), pageBad);
  const res2 = run(dir);
  t.equal(res2.status, 1);
  t.match(res2.stdout, /BAD_PAGE_MAGIC at 0\/0200E000/);
});

t.test('bad arguments are refused clearly', async (t) => {
  const res = run('/nonexistent/path');
  t.equal(res.status, 2);
  t.match(res.stderr, /nonexistent/);
  const dir = mkdtempSync(join(tmpdir(), 'sk-verify-'));
  writeFileSync(join(dir, 'notasegment'), 'x');
  const res2 = run(join(dir, 'notasegment'));
  t.equal(res2.status, 2);
  t.match(res2.stderr, /not a WAL segment file name/);
});
