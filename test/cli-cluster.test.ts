// The newcomer's path from the README: `safekeeper cluster` (what `npm start` runs) brings up three nodes,
// `demo-writer` commits WAL through them (twice: the second run continues the history in a new term),
// and `safekeeper status` shows the LSNs.
import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI } from './helpers/safekeeper_process.js';

async function freeBasePort(): Promise<number> {
  for (;;) {
    const base = 20000 + Math.floor(Math.random() * 30000);
    const ok = await Promise.all([0, 1, 2].map((i) => new Promise<boolean>((r) => {
      const s = createServer().once('error', () => r(false)).listen(base + i, '127.0.0.1', () => s.close(() => r(true)));
    })));
    if (ok.every(Boolean)) return base;
  }
}

t.test('cluster, demo-writer, status', { timeout: 120_000 }, async (t) => {
  const dataDir = mkdtempSync(join(tmpdir(), 'sk-cluster-'));
  const base = await freeBasePort();
  const cluster = spawn(process.execPath, [CLI, 'cluster', '--data-dir', dataDir, '--base-port', String(base)], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.teardown(() => { cluster.kill('SIGTERM'); });
  const banner = await new Promise<string>((resolve, reject) => {
    let out = '';
    cluster.stdout.on('data', (d: Buffer) => { out += d.toString(); if (out.includes('Ctrl-C')) resolve(out); });
    cluster.on('exit', (code) => reject(new Error(`cluster exited ${code}: ${out}`)));
  });
  t.match(banner, /3 nodes/);
  t.match(banner, new RegExp(`sk1  http://127.0.0.1:${base}/v1/status`));
  const urls = [0, 1, 2].map((i) => `ws://127.0.0.1:${base + i}/v1/wal`).join(',');
  const demo = (seconds: number) => spawnSync(process.execPath, [CLI, 'demo-writer', '--safekeepers', urls, '--seconds', String(seconds)], { encoding: 'utf8', timeout: 60_000 });
  const first = demo(2);
  t.equal(first.status, 0, first.stderr);
  t.match(first.stdout, /elected: term 1, writing from 0\/01000000/);
  t.match(first.stdout, /done: commitLsn 0\/[0-9A-F]{8}, [\d.]+ MB committed on a majority/);
  const second = demo(1);
  t.equal(second.status, 0, second.stderr);
  t.match(second.stdout, /elected: term 2/);
  const status = spawnSync(process.execPath, [CLI, 'status', '--url', `http://127.0.0.1:${base + 1}`, '--json'], { encoding: 'utf8' });
  t.equal(status.status, 0, status.stderr);
  const s = JSON.parse(status.stdout) as { timelines: { term: number; commitLsn: string; flushLsn: string }[] };
  t.equal(s.timelines[0]!.term, 2);
  const committed = /done: commitLsn (\S+),/.exec(second.stdout)![1]!;
  const toNum = (l: string) => { const [hi, lo] = l.split('/'); return parseInt(hi!, 16) * 2 ** 32 + parseInt(lo!, 16); };
  let holders = 0;
  for (let i = 0; i < 3; i++) {
    const res = await fetch(`http://127.0.0.1:${base + i}/v1/tenant/demo/timeline/main`);
    const tl = (await res.json()) as { flushLsn: string };
    if (toNum(tl.flushLsn) >= toNum(committed)) holders++;
  }
  t.ok(holders >= 2, `what the writer saw committed is on ${holders} of 3 nodes`);
  const table = spawnSync(process.execPath, [CLI, 'status', '--url', `http://127.0.0.1:${base + 1}`], { encoding: 'utf8' });
  t.match(table.stdout, /demo\/main\s+2\s+/);
});
