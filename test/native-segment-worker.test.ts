// SegmentFile's per-file worker thread and promise delivery, through the JS API: an idle open file lets the
// process exit while a pending operation keeps it alive, operations settle in call order around close(),
// closed or collected files give their thread back, and a worker_threads environment torn down with
// operations in flight does not take the process with it. Timing belongs in bench/, never here.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SegmentFile } from '../native/index.js';

const SIZE = 1 << 20;
const NATIVE = fileURLToPath(new URL('../native/index.js', import.meta.url));

async function scratch(t: { teardown: (fn: () => Promise<void>) => void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'sk-native-worker-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** Runs an ES module script in a fresh node (with --expose-gc); `native` is the addon and `dir` is `dir` there. */
function runScript(script: string, dir: string): { status: number | null; stdout: string; stderr: string; signal: string | null } {
  const src = `import * as native from ${JSON.stringify(NATIVE)};\nconst dir = ${JSON.stringify(dir)};\n${script}`;
  const r = spawnSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', src], { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr, signal: r.signal };
}

function threadCount(): number {
  return readdirSync('/proc/self/task').length;
}

async function until(cond: () => boolean, ms = 5000): Promise<boolean> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 10));
  }
  return true;
}

t.test('an idle open file lets the process exit; a pending operation keeps it alive until it settles', async (t) => {
  const dir = await scratch(t);
  const r = runScript(
    `
    const f = await native.SegmentFile.open(dir + '/a', ${SIZE}, { create: true });
    // Top-level await with nothing else keeping the loop alive: exits with 13 if the write does not hold it.
    const res = await f.write(0, [Buffer.from('hello')], { sync: true });
    console.log('awaited', res.endLsn);
    // Not awaited at all: the process must still stay until it settles.
    f.write(5, [Buffer.from(' world')], { sync: true }).then(() => console.log('settled'));
    // The file is never closed: once idle it must not keep the process alive.
    `,
    dir,
  );
  t.equal(r.signal, null, 'not killed by the timeout: the idle file did not keep the process alive');
  t.equal(r.status, 0, r.stderr);
  t.equal(r.stdout, 'awaited -1\nsettled\n');
});

t.test('operations settle in call order around close(), and later ones are rejected', async (t) => {
  const dir = await scratch(t);
  const f = await SegmentFile.open(join(dir, 'seg'), SIZE, { create: true });
  const order: string[] = [];
  const track = (name: string, p: Promise<unknown>): Promise<void> =>
    p.then(
      () => void order.push(`${name} ok`),
      (e: { code: string }) => void order.push(`${name} ${e.code}`),
    );
  const ops = [
    track('write', f.write(0, [Buffer.alloc(10_000, 1)], { sync: false })),
    track('zero', f.zero(100, 200, true)),
    track('read', f.read(0, 10)),
    track('close', f.close()),
    track('write2', f.write(0, [Buffer.from('x')], { sync: true })),
    track('sync', f.sync()),
    track('read2', f.read(0, 1)),
    track('close2', f.close()),
  ];
  await Promise.all(ops);
  t.same(order, ['write ok', 'zero ok', 'read ok', 'close ok', 'write2 SK_IO', 'sync SK_IO', 'read2 SK_IO', 'close2 ok']);
  await t.rejects(f.write(0, [Buffer.from('x')], { sync: false }), { code: 'SK_IO', message: /closed/ }, 'still refused later');
});

t.test('closed files give their worker thread back', { skip: process.platform !== 'linux' && 'needs /proc' }, async (t) => {
  const dir = await scratch(t);
  // Warm up: the libuv pool that open() runs on starts its threads once.
  const warm = await SegmentFile.open(join(dir, 'warm'), SIZE, { create: true });
  await warm.close();
  await new Promise((r) => setTimeout(r, 100));
  const before = threadCount();
  const files = [];
  for (let i = 0; i < 16; i++) files.push(await SegmentFile.open(join(dir, `f${i}`), SIZE, { create: true }));
  await Promise.all(files.map((f, i) => f.write(0, [Buffer.from(`file ${i}`)], { sync: true })));
  t.ok(threadCount() >= before + 16, 'one thread per open file');
  await Promise.all(files.map((f) => f.close()));
  t.ok(await until(() => threadCount() <= before), `threads back to ${before} after close (now ${threadCount()})`);
});

t.test('a file dropped without close(), even with a write in flight, is collected and its write settles', async (t) => {
  const dir = await scratch(t);
  const r = runScript(
    `
    const { readdirSync } = await import('node:fs');
    let files = [];
    for (let i = 0; i < 8; i++) files.push(await native.SegmentFile.open(dir + '/f' + i, ${SIZE}, { create: true }));
    const before = readdirSync('/proc/self/task').length;
    const pending = files.map((f, i) => f.write(0, [Buffer.alloc(100_000, i)], { sync: true }));
    files = null;
    for (let i = 0; i < 5; i++) { globalThis.gc(); await new Promise((r) => setImmediate(r)); }
    const results = await Promise.all(pending);
    console.log('settled', results.length, results.every((r) => r.endLsn === -1));
    for (let i = 0; i < 50; i++) { globalThis.gc(); await new Promise((r) => setTimeout(r, 20)); }
    const after = readdirSync('/proc/self/task').length;
    console.log('threads released', after <= before - 8);
    `,
    dir,
  );
  t.equal(r.status, 0, r.stderr);
  t.match(r.stdout, /^settled 8 true\n/);
  t.match(r.stdout, /threads released true/, r.stdout);
});

t.test('a worker_threads environment torn down with writes in flight does not crash the process', async (t) => {
  const dir = await scratch(t);
  const r = runScript(
    `
    const { Worker } = await import('node:worker_threads');
    const body = \`
      import { parentPort, workerData } from 'node:worker_threads';
      const native = await import(workerData.native);
      const f = await native.SegmentFile.open(workerData.dir + '/w', ${SIZE}, { create: true });
      parentPort.postMessage('open');
      for (let i = 0; ; i++) {
        const p = f.write((i * 4096) % ${SIZE}, [Buffer.alloc(4096, i)], { sync: i % 4 === 0 });
        if (i % 8 === 7) await p;
      }
    \`;
    for (let round = 0; round < 3; round++) {
      const w = new Worker(body, { eval: true, workerData: { native: ${JSON.stringify(NATIVE)}, dir: dir + '/' } });
      await new Promise((r) => w.once('message', r));
      await new Promise((r) => setTimeout(r, 50));
      await w.terminate();
      (await import('node:fs')).rmSync(dir + '/w', { force: true });
    }
    const f = await native.SegmentFile.open(dir + '/main', ${SIZE}, { create: true });
    await f.write(0, [Buffer.from('still fine')], { sync: true });
    await f.close();
    console.log('ok');
    `,
    dir,
  );
  t.equal(r.signal, null, r.stderr);
  t.equal(r.status, 0, r.stderr);
  t.equal(r.stdout, 'ok\n');
});
