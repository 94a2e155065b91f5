// SIGKILL a writer process at random moments and at failpoints (between write and fdatasync, around the
// segment rename), 72 times, and check recovery: a CRC-valid end at or past the last acknowledged
// flushLsn, every acknowledged byte intact. Also kills a control-file writer: the last version persists.
import t from 'tap';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { lsn } from '../src/lsn.js';
import { ControlFile } from '../src/storage/control_file.js';
import { WalStore } from '../src/storage/wal_store.js';
import { FIXTURE_END_LSN, FIXTURE_START_LSN, SEGMENT_SIZE, fixtureSlice, fixtureWalFile } from './helpers/fixtures.js';

const child = resolve(dirname(fileURLToPath(import.meta.url)), '../dist/test/children/crash_writer.js');

interface ChildRun {
  lines: string[];
  signal: NodeJS.Signals | null;
  code: number | null;
}

function runChild(args: string[], killAfterMs: number | null): Promise<ChildRun> {
  return new Promise((resolveRun, reject) => {
    const proc = spawn(process.execPath, [child, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    proc.stdout.on('data', (d: Buffer) => { out += d.toString(); });
    proc.stderr.on('data', (d: Buffer) => { err += d.toString(); });
    let timer: NodeJS.Timeout | undefined;
    if (killAfterMs !== null) {
      // Start the clock once the child has recovered and begun writing (its first line).
      const started = () => {
        if (out.includes('\n')) {
          proc.stdout.off('data', started);
          timer = setTimeout(() => proc.kill('SIGKILL'), killAfterMs);
        }
      };
      proc.stdout.on('data', started);
    }
    proc.on('error', reject);
    proc.on('close', (code, signal) => {
      if (timer) clearTimeout(timer);
      if (code === 3) reject(new Error(`child failed: ${err}`));
      // Only complete lines count: a line cut by the kill was never fully reported.
      const lines = out.split('\n').slice(0, -1);
      resolveRun({ lines, signal, code });
    });
  });
}

t.test('kill -9 during WAL writes: recovery never loses an acknowledged byte', { timeout: 600_000 }, async (t) => {
  t.ok(existsSync(child), 'child compiled (npm test builds it first)');
  const walFile = fixtureWalFile();
  let dir = await mkdtemp(join(tmpdir(), 'sk-crash-'));
  let seed = 42;
  const rand = (n: number) => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return seed % n;
  };
  const kinds = { random: 0, 'before-fdatasync': 0, 'before-segment-rename': 0, 'after-segment-rename': 0 };
  let kills = 0;
  let failures = 0;
  for (let i = 0; i < 72; i++) {
    const pick = i % 6;
    const crashAt = pick < 3 ? 'none' : pick === 3 ? 'before-fdatasync' : pick === 4 ? 'before-segment-rename' : 'after-segment-rename';
    const crashAfter = crashAt === 'before-fdatasync' ? rand(40) : 0;

    const run = await runChild(['wal', dir, walFile, crashAt, String(crashAfter), String(i + 1)], crashAt === 'none' ? 5 + rand(150) : null);
    const acked = run.lines.filter((l) => l.startsWith('F ')).map((l) => Number(l.split(' ')[1]));
    const lastAck = acked.length > 0 ? acked[acked.length - 1]! : FIXTURE_START_LSN;
    const finished = run.lines.includes('DONE');
    if (run.signal === 'SIGKILL') {
      kills++;
      kinds[crashAt === 'none' ? 'random' : (crashAt as keyof typeof kinds)]++;
    }
    const store = await WalStore.open({ dir, segmentSizeBytes: SEGMENT_SIZE, timelineStartLsn: lsn(FIXTURE_START_LSN) });
    const ok = store.flushLsn >= lastAck;
    const bytes = await store.read(lsn(FIXTURE_START_LSN), store.flushLsn);
    const intact = bytes.equals(fixtureSlice(FIXTURE_START_LSN, store.flushLsn));
    if (!ok || !intact) {
      failures++;
      t.fail(`iteration ${i}: recovered ${store.flushLsn} acked ${lastAck} intact=${intact}`);
    }
    await store.close();
    if (finished || store.flushLsn >= FIXTURE_END_LSN) dir = await mkdtemp(join(tmpdir(), 'sk-crash-'));
  }
  t.equal(failures, 0, 'every recovery kept every acknowledged byte');
  t.ok(kills >= 50, `${kills} SIGKILLs (${JSON.stringify(kinds)})`);
  t.ok(kinds['before-fdatasync'] >= 5 && kinds['before-segment-rename'] >= 5 && kinds['after-segment-rename'] >= 5, 'every failpoint was hit');
});

t.test('kill -9 during control file replacement: the last persisted version loads', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'sk-crash-cf-'));
  for (let i = 0; i < 15; i++) {
    const run = await runChild(['control', dir, '-', 'none', '0', String(i)], 5 + ((i * 37) % 120));
    const acked = run.lines.filter((l) => l.startsWith('P ')).map((l) => Number(l.split(' ')[1]));
    const last = acked.length > 0 ? acked[acked.length - 1]! : 0;
    const cf = await ControlFile.open(dir);
    const got = cf.state?.term ?? 0;
    t.ok(got === last || got === last + 1, `iteration ${i}: loaded term ${got}, last acknowledged ${last}`);
  }
});
