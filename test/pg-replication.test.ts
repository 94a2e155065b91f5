// Replication out over the PostgreSQL protocol, checked with the real PostgreSQL 15 client binaries:
// three safekeeper processes with --pg-listen, ~40 MiB of WAL through the Proposer, then pg_receivewal
// streams it from one safekeeper (segments byte-identical to what was written, live tail included),
// psql runs IDENTIFY_SYSTEM, and bad requests get the PostgreSQL-style errors real clients print.
import t from 'tap';
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { lsn, parseLsn, type Lsn } from '../src/lsn.js';
import { Proposer } from '../src/proposer/proposer_client.js';
import { startCluster, type SafekeeperProcess } from './helpers/safekeeper_process.js';
import { SEGMENT_SIZE, SYSTEM_ID, TestWalStream } from './helpers/wal_stream.js';
import { query, startupPacket } from './helpers/pg_frontend.js';

const PG_BIN = process.env.PG_BIN ?? '/usr/lib/postgresql/15/bin';
const PG_RECEIVEWAL = join(PG_BIN, 'pg_receivewal');
const PSQL = join(PG_BIN, 'psql');
const missing = [PG_RECEIVEWAL, PSQL].filter((p) => !existsSync(p));

const TENANT = 'tenant1';
const TIMELINE = 'tl1';
const OPTIONS = `options='-c tenant_id=${TENANT} -c timeline_id=${TIMELINE}'`;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(cmd: string, args: string[], timeoutMs = 60_000): Promise<Run> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: timeoutMs, env: { ...process.env, PGCONNECT_TIMEOUT: '10' } }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : null) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

if (missing.length > 0) {
  // A developer machine without PostgreSQL skips these; CI (.ci/run installs postgresql-15) must run them.
  const why = `PostgreSQL 15 client binaries not found (${missing.join(', ')}): install postgresql-15 or set PG_BIN`;
  if (process.env.CI) t.fail(why);
  else t.skip(why);
} else {
  let nodes: SafekeeperProcess[] = [];
  let proposer: Proposer | null = null;
  let wal: TestWalStream;
  const dirs: string[] = [];
  const tmp = (prefix: string) => {
    const d = mkdtempSync(join(tmpdir(), prefix));
    dirs.push(d);
    return d;
  };
  const conninfo = (node: SafekeeperProcess, extra = '') => `host=127.0.0.1 port=${node.pgPort} replication=true ${OPTIONS} ${extra}`.trim();

  async function commitLsnOf(node: SafekeeperProcess): Promise<Lsn> {
    const r = await node.api('GET', `/v1/tenant/${TENANT}/timeline/${TIMELINE}`);
    return parseLsn(String(r.body.commitLsn));
  }

  /** Waits until the safekeeper has learned a commitLsn at or past `target` (it follows the proposer's). */
  async function waitCommit(node: SafekeeperProcess, target: number, ms = 20_000): Promise<Lsn> {
    const deadline = Date.now() + ms;
    for (;;) {
      const c = await commitLsnOf(node);
      if (c >= target || Date.now() > deadline) return c;
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  async function writeWal(bytes: number): Promise<Lsn> {
    let acked = lsn(0);
    const inflight: Promise<Lsn>[] = [];
    for (let written = 0; written < bytes; written += 256 * 1024) {
      inflight.push(proposer!.append(wal.append(256 * 1024)));
      if (inflight.length >= 8) acked = lsn(Math.max(acked, await inflight.shift()!));
    }
    for (const p of inflight) acked = lsn(Math.max(acked, await p));
    return acked;
  }

  t.before(async () => {
    nodes = await startCluster(3, ['--pg-listen', '127.0.0.1:0']);
    for (const n of nodes) {
      if (!n.pgPort) throw new Error(`sk${n.id} did not print its pg port`);
      const r = await n.api('POST', `/v1/tenant/${TENANT}/timeline/${TIMELINE}`, {});
      if (r.status !== 201) throw new Error(JSON.stringify(r));
    }
    proposer = new Proposer({
      safekeepers: nodes.map((n) => n.wsUrl),
      tenantId: TENANT, timelineId: TIMELINE, systemId: SYSTEM_ID, pgVersion: 150020, segmentSizeBytes: SEGMENT_SIZE,
      reconnectMinMs: 20, reconnectMaxMs: 200,
    });
    proposer.on('error', () => undefined);
    proposer.start();
    const elected = await proposer.waitElected();
    wal = new TestWalStream(elected.termStartLsn);
  });
  t.teardown(async () => {
    await proposer?.close().catch(() => undefined);
    for (const n of nodes) await n.kill();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  t.test('pg_receivewal streams committed WAL, byte-identical, across segment boundaries', { timeout: 180_000 }, async (t) => {
    t.equal(wal.startLsn, SEGMENT_SIZE, 'the timeline starts at 0/01000000, a segment start');
    const acked = await writeWal(40 * 1024 * 1024);
    t.ok(acked > 3 * SEGMENT_SIZE, `40 MiB committed (up to ${acked}), crossing two segment boundaries`);
    const node = nodes[0]!;
    const endpos = await waitCommit(node, acked);
    t.ok(endpos > 3 * SEGMENT_SIZE, `sk1 knows commitLsn ${endpos}`);

    const id = await run(PSQL, ['-X', '-A', '-t', '-c', 'IDENTIFY_SYSTEM', conninfo(node)]);
    t.equal(id.code, 0, `psql IDENTIFY_SYSTEM exits 0 ${id.stderr}`);
    const [systemId, tli, xlogpos, dbname] = id.stdout.trim().split('|');
    t.equal(systemId, SYSTEM_ID.toString(), 'prints the system id');
    t.equal(tli, '1', 'timeline 1');
    t.ok(parseLsn(xlogpos!) >= endpos, `xlogpos ${xlogpos} is the commitLsn`);
    t.equal(dbname, '', 'dbname is null');

    const dir = tmp('pgrecv-');
    // With a slot (virtual here), PostgreSQL 15's pg_receivewal asks READ_REPLICATION_SLOT where to start:
    // the oldest WAL held, 0/01000000.
    // pg_receivewal stops once it has received WAL *past* --endpos (endpos < position), so it asks for one
    // byte less than commitLsn: it then stops having received exactly up to commitLsn.
    const r = await run(PG_RECEIVEWAL, ['-h', '127.0.0.1', '-p', String(node.pgPort), '-D', dir, '-S', 'archiver', '--no-loop', '-w', `--endpos=${formatLsnPlain(endpos - 1)}`, '-v', '-d', OPTIONS], 120_000);
    t.equal(r.code, 0, `pg_receivewal exits 0\n${r.stderr}`);
    t.match(r.stderr, /starting log streaming at 0\/1000000 \(timeline 1\)/, 'starts at the first segment');
    t.match(r.stderr, /finished segment at 0\/2000000/, 'finishes segment 1');
    t.match(r.stderr, /finished segment at 0\/3000000/, 'finishes segment 2');
    t.match(r.stderr, new RegExp(`stopped log streaming at ${formatLsnPlain(endpos)} `), 'stops at commitLsn');

    const files = readdirSync(dir).sort();
    t.ok(files.includes('000000010000000000000001') && files.includes('000000010000000000000002'), `complete segments written: ${files.join(', ')}`);
    for (const seg of [1, 2]) {
      const name = `00000001000000000000000${seg}`;
      const got = readFileSync(join(dir, name));
      const want = wal.slice(seg * SEGMENT_SIZE, (seg + 1) * SEGMENT_SIZE);
      t.equal(got.length, SEGMENT_SIZE);
      t.ok(got.equals(want), `${name} is byte-identical to the WAL written`);
    }
    const partialName = files.find((f) => f.endsWith('.partial'));
    t.ok(partialName, 'the segment holding endpos stays .partial');
    if (partialName) {
      const got = readFileSync(join(dir, partialName));
      const base = 3 * SEGMENT_SIZE;
      t.ok(got.subarray(0, endpos - base).equals(wal.slice(base, endpos)), 'the partial segment holds the WAL up to endpos');
      t.ok(got.subarray(endpos - base).every((b) => b === 0), 'and nothing past commitLsn');
    }

    // Live tail: resume in the same directory (from the .partial segment), write more WAL while it
    // streams, stop it once it has everything committed.
    const tail = spawn(PG_RECEIVEWAL, ['-h', '127.0.0.1', '-p', String(node.pgPort), '-D', dir, '--no-loop', '-w', '-v', '-d', OPTIONS], { stdio: ['ignore', 'ignore', 'pipe'] });
    let tailErr = '';
    tail.stderr!.on('data', (d: Buffer) => (tailErr += d.toString()));
    const tailExit = new Promise<number | null>((r) => tail.on('exit', (code) => r(code)));
    await new Promise((r) => setTimeout(r, 300));
    const acked2 = await writeWal(6 * 1024 * 1024);
    const end2 = await waitCommit(node, acked2);
    const partial3 = join(dir, '000000010000000000000003.partial');
    const deadline = Date.now() + 20_000;
    let ok = false;
    while (Date.now() < deadline) {
      if (existsSync(partial3) && statSync(partial3).size === SEGMENT_SIZE) {
        const got = readFileSync(partial3);
        if (got.subarray(0, end2 - 3 * SEGMENT_SIZE).equals(wal.slice(3 * SEGMENT_SIZE, end2))) {
          ok = true;
          break;
        }
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    t.ok(ok, `the live stream follows commitLsn to ${end2}\n${tailErr}`);
    tail.kill('SIGINT');
    t.equal(await tailExit, 0, `pg_receivewal stops cleanly on SIGINT\n${tailErr}`);
  });

  t.test('bad requests get PostgreSQL-style errors; nothing else is disturbed', { timeout: 120_000 }, async (t) => {
    const node = nodes[1]!;
    const commit = await commitLsnOf(node);

    const ahead = await run(PSQL, ['-X', '-c', 'START_REPLICATION PHYSICAL 10/0', conninfo(node)]);
    t.not(ahead.code, 0);
    t.match(ahead.stderr, new RegExp(`ERROR:  requested starting point 10/0 is ahead of the WAL flush position of this server ${formatLsnPlain(commit).replace('/', '\\/')}`), ahead.stderr);

    const old = await run(PSQL, ['-X', '-c', 'START_REPLICATION SLOT s PHYSICAL 0/800000 TIMELINE 1', conninfo(node)]);
    t.match(old.stderr, /ERROR:  requested WAL segment 000000010000000000000000 has already been removed/, old.stderr);

    // pg_receivewal resuming (from its .partial segment 1) on a timeline whose WAL starts at 0/3000000.
    const late = await node.api('POST', `/v1/tenant/${TENANT}/timeline/late`, { startLsn: '0/3000000' });
    t.equal(late.status, 201, JSON.stringify(late.body));
    const dir = tmp('pgrecv-old-');
    writeFileSync(join(dir, '000000010000000000000001.partial'), Buffer.alloc(SEGMENT_SIZE));
    const recv = await run(PG_RECEIVEWAL, ['-h', '127.0.0.1', '-p', String(node.pgPort), '-D', dir, '--no-loop', '-w', '-d', `options='-c tenant_id=${TENANT} -c timeline_id=late'`]);
    t.equal(recv.code, 1, 'pg_receivewal fails');
    t.match(recv.stderr, /requested WAL segment 000000010000000000000001 has already been removed/, recv.stderr);

    const tl2 = await run(PSQL, ['-X', '-c', 'START_REPLICATION 0/1000000 TIMELINE 2', conninfo(node)]);
    t.match(tl2.stderr, /ERROR:  requested timeline 2 is not in this server's history/, tl2.stderr);

    const unknown = await run(PSQL, ['-X', '-c', 'IDENTIFY_SYSTEM', `host=127.0.0.1 port=${node.pgPort} replication=true options='-c tenant_id=nope -c timeline_id=tl1'`]);
    t.not(unknown.code, 0);
    t.match(unknown.stderr, /FATAL:  timeline nope\/tl1 does not exist on this safekeeper/, unknown.stderr);

    const sql = await run(PSQL, ['-X', '-c', 'SELECT 1', conninfo(node)]);
    t.match(sql.stderr, /ERROR:  cannot execute SQL commands in WAL sender for physical replication/, sql.stderr);

    // A protocol violation: a valid startup, then a message of an unknown type. Error, then close.
    const answer = await rawSession(node.pgPort, Buffer.from([0x7a, 0, 0, 0, 4]));
    t.match(answer.errors.join('\n'), /08P01.*invalid frontend message type 122/, `protocol violation reported: ${answer.errors.join(' ')}`);
    t.ok(answer.closed, 'the connection is closed');

    // A stream in progress on another connection and new connections still work.
    const id = await run(PSQL, ['-X', '-A', '-t', '-c', 'IDENTIFY_SYSTEM', conninfo(node)]);
    t.equal(id.stdout.trim().split('|')[0], SYSTEM_ID.toString(), 'IDENTIFY_SYSTEM still answers');
    const show = await run(PSQL, ['-X', '-A', '-t', '-c', 'SHOW wal_segment_size', conninfo(node)]);
    t.equal(show.stdout.trim(), '16MB');
  });

  t.test('keepalives when idle, reply-requested answered, CopyDone ends streaming cleanly', { timeout: 60_000 }, async (t) => {
    const node = nodes[2]!;
    const commit = await commitLsnOf(node);
    const s = await rawStream(node.pgPort, commit);
    t.ok(s.keepalives >= 1, `idle keepalive received (${s.keepalives})`);
    t.ok(s.replyAnswered, 'a status update asking for a reply is answered with a keepalive');
    t.ok(s.copyDoneAnswered, 'CopyDone is answered with CopyDone, CommandComplete and ReadyForQuery');
    t.equal(s.identifyAfter, SYSTEM_ID.toString(), 'the connection serves commands again afterwards');
  });
}

/** 0/3800000 style, as PostgreSQL prints LSNs. */
function formatLsnPlain(value: number): string {
  return `${Math.floor(value / 0x1_0000_0000).toString(16).toUpperCase()}/${(value % 0x1_0000_0000).toString(16).toUpperCase()}`;
}



const STARTUP = { user: 'test', replication: 'true', options: `-c tenant_id=${TENANT} -c timeline_id=${TIMELINE}` };

/** Parses backend messages as they arrive. */
function backendReader(onMessage: (type: string, body: Buffer) => void): (chunk: Buffer) => void {
  let buf = Buffer.alloc(0);
  return (chunk) => {
    buf = Buffer.concat([buf, chunk]);
    while (buf.length >= 5) {
      const len = buf.readInt32BE(1);
      if (buf.length < 1 + len) break;
      onMessage(String.fromCharCode(buf[0]!), buf.subarray(5, 1 + len));
      buf = buf.subarray(1 + len);
    }
  };
}

function errorText(body: Buffer): string {
  const parts: string[] = [];
  let pos = 0;
  while (pos < body.length && body[pos] !== 0) {
    const end = body.indexOf(0, pos + 1);
    parts.push(`${String.fromCharCode(body[pos]!)}=${body.toString('utf8', pos + 1, end)}`);
    pos = end + 1;
  }
  return parts.join(' ');
}

function rawSession(port: number, after: Buffer): Promise<{ errors: string[]; closed: boolean }> {
  return new Promise((resolve) => {
    const errors: string[] = [];
    const sock = connect(port, '127.0.0.1');
    const timer = setTimeout(() => {
      sock.destroy();
      resolve({ errors, closed: false });
    }, 5000);
    sock.on('data', backendReader((type, body) => {
      if (type === 'Z') sock.write(after);
      if (type === 'E') errors.push(errorText(body));
    }));
    sock.on('error', () => undefined);
    sock.on('close', () => {
      clearTimeout(timer);
      resolve({ errors, closed: true });
    });
    sock.write(startupPacket(STARTUP));
  });
}

function rawStream(port: number, start: number): Promise<{ keepalives: number; replyAnswered: boolean; copyDoneAnswered: boolean; identifyAfter: string }> {
  return new Promise((resolve, reject) => {
    const out = { keepalives: 0, replyAnswered: false, copyDoneAnswered: false, identifyAfter: '' };
    let phase: 'startup' | 'streaming' | 'reply' | 'done' | 'identify' = 'startup';
    let sawCopyDone = false;
    const sock = connect(port, '127.0.0.1');
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`raw stream stuck in ${phase}: ${JSON.stringify(out)}`));
    }, 20_000);
    const copyData = (payload: Buffer) => {
      const h = Buffer.alloc(5);
      h[0] = 0x64;
      h.writeInt32BE(payload.length + 4, 1);
      return Buffer.concat([h, payload]);
    };
    sock.on('data', backendReader((type, body) => {
      if (type === 'E') {
        clearTimeout(timer);
        sock.destroy();
        reject(new Error(errorText(body)));
        return;
      }
      if (phase === 'startup' && type === 'Z') {
        phase = 'streaming';
        sock.write(query(`START_REPLICATION PHYSICAL ${formatLsnPlain(start)}`));
      } else if (type === 'd' && body[0] === 0x6b) {
        if (phase === 'streaming') {
          out.keepalives++;
          // A standby status update asking for a reply, then (answered) CopyDone.
          const r = Buffer.alloc(34);
          r[0] = 0x72;
          r.writeBigUInt64BE(BigInt(start), 1);
          r.writeBigUInt64BE(BigInt(start), 9);
          r.writeBigUInt64BE(BigInt(start), 17);
          r[33] = 1;
          const h = Buffer.alloc(25);
          h[0] = 0x68;
          sock.write(Buffer.concat([copyData(r), copyData(h)]));
          phase = 'reply';
        } else if (phase === 'reply') {
          out.replyAnswered = true;
          phase = 'done';
          sock.write(Buffer.from([0x63, 0, 0, 0, 4]));
        }
      } else if (type === 'c' && phase === 'done') {
        sawCopyDone = true;
      } else if (type === 'Z' && phase === 'done') {
        out.copyDoneAnswered = sawCopyDone;
        phase = 'identify';
        sock.write(query('IDENTIFY_SYSTEM'));
      } else if (type === 'D' && phase === 'identify') {
        const len = body.readInt32BE(2);
        out.identifyAfter = body.toString('utf8', 6, 6 + len);
      } else if (type === 'Z' && phase === 'identify') {
        clearTimeout(timer);
        sock.end(Buffer.from([0x58, 0, 0, 0, 4]));
        resolve(out);
      }
    }));
    sock.on('error', (err) => reject(err));
    sock.write(startupPacket(STARTUP));
  });
}
