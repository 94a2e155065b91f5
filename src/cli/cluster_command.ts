// `safekeeper cluster` (what `npm start` runs): three safekeeper processes on loopback with local data
// directories, a default timeline created on each, and their URLs printed. Stops them all on Ctrl-C.

import { spawn, type ChildProcess } from 'node:child_process';
import { openSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const DEMO_TENANT = 'demo';
export const DEMO_TIMELINE = 'main';

export async function runCluster(opts: { dataDir: string; basePort: number; nodes: number }): Promise<void> {
  if (!Number.isInteger(opts.nodes) || opts.nodes < 1 || opts.nodes > 7 || opts.nodes % 2 === 0) {
    throw new Error('--nodes must be odd, 1 to 7');
  }
  const main = fileURLToPath(new URL('./main.js', import.meta.url));
  const children: ChildProcess[] = [];
  const urls: string[] = [];
  for (let i = 1; i <= opts.nodes; i++) {
    const dir = resolve(opts.dataDir, `sk${i}`);
    await mkdir(dir, { recursive: true });
    const logFd = openSync(join(dir, 'safekeeper.log'), 'a');
    const port = opts.basePort + i - 1;
    const peers = Array.from({ length: opts.nodes }, (_, k) => `${k + 1}=http://127.0.0.1:${opts.basePort + k}`).join(',');
    const child = spawn(process.execPath, [main, 'start', '--id', String(i), '--listen', `127.0.0.1:${port}`, '--data-dir', dir, '--peers', peers], {
      stdio: ['pipe', 'pipe', logFd],
      // The nodes stop with this command even if it is killed without a chance to signal them.
      env: { ...process.env, SK_EXIT_WITH_PARENT: '1' },
    });
    children.push(child);
    const url = await new Promise<string>((resolveUrl, reject) => {
      let out = '';
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        const m = /READY (\S+)/.exec(out);
        if (m) resolveUrl(m[1]!);
      });
      child.on('exit', (code) => reject(new Error(`safekeeper ${i} exited with ${code}; see ${join(dir, 'safekeeper.log')}`)));
    });
    urls.push(url);
  }
  for (const url of urls) {
    const res = await fetch(`${url}/v1/tenant/${DEMO_TENANT}/timeline/${DEMO_TIMELINE}`, { method: 'POST', body: '{}' });
    if (!res.ok) throw new Error(`creating the demo timeline on ${url}: ${res.status} ${await res.text()}`);
  }
  process.stdout.write(`local safekeeper cluster: ${opts.nodes} nodes, data in ${resolve(opts.dataDir)}\n`);
  urls.forEach((u, i) => {
    process.stdout.write(`  sk${i + 1}  ${u}/v1/status   proposers: ${u.replace('http', 'ws')}/v1/wal\n`);
  });
  process.stdout.write(`timeline ${DEMO_TENANT}/${DEMO_TIMELINE} created on every node. Ctrl-C stops the cluster.\n`);
  const stopAll = () => {
    for (const c of children) c.kill('SIGTERM');
  };
  process.on('SIGINT', stopAll);
  process.on('SIGTERM', stopAll);
  await Promise.all(children.map((c) => new Promise((r) => c.on('exit', r))));
}
