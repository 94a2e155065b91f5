// Spawns real safekeeper processes (the compiled CLI) on loopback with ephemeral ports and temp data
// directories, for tests that kill -9, restart and talk to them over the network.

import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const CLI = resolve(dirname(fileURLToPath(import.meta.url)), '../../dist/src/cli/main.js');

export class SafekeeperProcess {
  proc: ChildProcess | null = null;
  url = '';
  port = 0;
  /** The PostgreSQL replication port, when started with --pg-listen (from the READY line's ` pg=`). */
  pgPort = 0;
  stderr = '';

  constructor(
    readonly id: number,
    readonly dataDir: string = mkdtempSync(join(tmpdir(), `sk${id}-`)),
    readonly extraArgs: string[] = [],
  ) {}

  get wsUrl(): string {
    return `${this.url.replace('http', 'ws')}/v1/wal`;
  }

  /** Starts (or restarts on the same port and data directory) and waits until it serves. */
  async start(): Promise<void> {
    const listen = `127.0.0.1:${this.port}`;
    const proc = spawn(process.execPath, [CLI, 'start', '--id', String(this.id), '--listen', listen, '--data-dir', this.dataDir, ...this.extraArgs], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...process.env, SK_EXIT_WITH_PARENT: '1', SK_LOG_LEVEL: process.env.SK_LOG_LEVEL ?? 'warn' },
    });
    this.proc = proc;
    proc.stderr!.on('data', (d: Buffer) => {
      this.stderr += d.toString();
    });
    await new Promise<void>((resolveStart, reject) => {
      let out = '';
      const onData = (d: Buffer) => {
        out += d.toString();
        const m = /READY (http:\/\/[^\s]+)(?: pg=[^\s]*:(\d+))?\r?\n/.exec(out);
        if (m) {
          this.url = m[1]!;
          this.port = Number(new URL(this.url).port);
          if (m[2]) this.pgPort = Number(m[2]);
          proc.stdout!.off('data', onData);
          resolveStart();
        }
      };
      proc.stdout!.on('data', onData);
      proc.on('exit', (code, signal) => reject(new Error(`safekeeper ${this.id} exited (${code ?? signal}) before serving: ${this.stderr}`)));
    });
    proc.removeAllListeners('exit');
  }

  /** kill -9: no shutdown path runs. */
  async kill(): Promise<void> {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((r) => proc.on('exit', r));
    proc.kill('SIGKILL');
    await exited;
    this.proc = null;
  }

  async stop(): Promise<void> {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((r) => proc.on('exit', r));
    proc.kill('SIGTERM');
    await exited;
    this.proc = null;
  }

  async api(method: string, path: string, body?: unknown): Promise<{ status: number; body: Record<string, unknown> }> {
    const res = await fetch(`${this.url}${path}`, { method, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  }
}

export async function startCluster(n: number, extraArgs: string[] = [], opts: { peers?: boolean } = {}): Promise<SafekeeperProcess[]> {
  const nodes = Array.from({ length: n }, (_, i) => new SafekeeperProcess(i + 1, undefined, extraArgs));
  if (opts.peers) {
    // Peers need each other's addresses before they start: reserve the ports first.
    for (const node of nodes) node.port = await freePort();
    const list = nodes.map((node) => `${node.id}=http://127.0.0.1:${node.port}`).join(',');
    for (const node of nodes) node.extraArgs.push('--peers', list);
  }
  await Promise.all(nodes.map((s) => s.start()));
  return nodes;
}

/** A port that was free a moment ago on 127.0.0.1 (for processes that must know each other's ports up front). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const a = srv.address();
      srv.close(() => resolve(typeof a === 'object' && a ? a.port : 0));
    });
  });
}
