// Real safekeeper processes (the compiled CLI) on loopback for the quorum benchmark: ephemeral ports,
// data directories under one bench root. Adapted from test/helpers/safekeeper_process.ts (benchmarks must
// not import test code). Every child is SIGKILLed when this process exits, however it exits.

import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const CLI = resolve(dirname(fileURLToPath(import.meta.url)), '../src/cli/main.js');

/** Children still running, killed synchronously on 'exit' (also after an uncaught exception). */
const live = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const p of live) {
      try {
        p.kill('SIGKILL');
      } catch {
        // already gone
      }
    }
  });
}

/** Keeps the last `max` characters of a child's stderr (its warnings and errors are evidence). */
const STDERR_KEEP = 256 * 1024;

export class BenchSafekeeper {
  proc: ChildProcess | null = null;
  url = '';
  port = 0;
  stderr = '';
  /** Exits not requested by us (a crash of the product). */
  unexpectedExits: string[] = [];
  private stopping = false;

  constructor(
    readonly id: number,
    readonly dataDir: string,
  ) {}

  get wsUrl(): string {
    return `${this.url.replace('http', 'ws')}/v1/wal`;
  }

  /** Starts (or restarts on the same port and data directory) and waits until it serves. */
  async start(timeoutMs = 15_000): Promise<void> {
    installExitHook();
    mkdirSync(this.dataDir, { recursive: true });
    const listen = `127.0.0.1:${this.port}`;
    const proc = spawn(process.execPath, [CLI, 'start', '--id', String(this.id), '--listen', listen, '--data-dir', this.dataDir], {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...process.env, SK_EXIT_WITH_PARENT: '1', SK_LOG_LEVEL: process.env.SK_LOG_LEVEL ?? 'warn' },
    });
    this.proc = proc;
    this.stopping = false;
    live.add(proc);
    proc.stderr!.on('data', (d: Buffer) => {
      this.stderr += d.toString();
      if (this.stderr.length > STDERR_KEEP * 2) this.stderr = this.stderr.slice(-STDERR_KEEP);
    });
    proc.on('exit', (code, signal) => {
      live.delete(proc);
      if (!this.stopping) this.unexpectedExits.push(`sk${this.id} exited (${code ?? signal})`);
    });
    await new Promise<void>((resolveStart, reject) => {
      let out = '';
      const timer = setTimeout(() => {
        proc.kill('SIGKILL');
        reject(new Error(`safekeeper ${this.id} did not print READY within ${timeoutMs} ms: ${this.stderr}`));
      }, timeoutMs);
      const onData = (d: Buffer) => {
        out += d.toString();
        const m = /READY (http:\/\/[^\s]+)/.exec(out);
        if (m) {
          clearTimeout(timer);
          this.url = m[1]!;
          this.port = Number(new URL(this.url).port);
          proc.stdout!.off('data', onData);
          proc.stdout!.resume(); // keep draining whatever else it prints
          proc.off('exit', onExit);
          resolveStart();
        }
      };
      const onExit = (code: number | null, signal: NodeJS.Signals | null) => {
        clearTimeout(timer);
        reject(new Error(`safekeeper ${this.id} exited (${code ?? signal}) before serving: ${this.stderr}`));
      };
      proc.stdout!.on('data', onData);
      proc.once('exit', onExit);
    });
  }

  /** SIGTERM, then SIGKILL if it has not exited within `graceMs`. */
  async stop(graceMs = 5000): Promise<void> {
    const proc = this.proc;
    this.proc = null;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    this.stopping = true;
    const exited = new Promise((r) => proc.once('exit', r));
    proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
  }

  async api(method: string, path: string, body?: unknown, timeoutMs = 10_000): Promise<{ status: number; body: Record<string, unknown> }> {
    const res = await fetch(`${this.url}${path}`, {
      method,
      signal: AbortSignal.timeout(timeoutMs),
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  }
}

export async function startBenchCluster(root: string, n: number): Promise<BenchSafekeeper[]> {
  const nodes = Array.from({ length: n }, (_, i) => new BenchSafekeeper(i + 1, join(root, `sk${i + 1}`)));
  await Promise.all(nodes.map((s) => s.start()));
  return nodes;
}
