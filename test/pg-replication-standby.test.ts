// A real PostgreSQL 15 hot standby fed only by a safekeeper's PostgreSQL-protocol port: a primary's WAL
// (real records: table creation, inserts, checkpoints) goes through the Proposer to three safekeepers,
// the primary is stopped, and a standby built from a base backup taken without WAL (-X none) streams
// everything it needs from one safekeeper. Its data must equal the primary's.
import t from 'tap';
import { execFile, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdtempSync, openSync, readSync, closeSync, rmSync, writeFileSync, appendFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { lsn, parseLsn, segmentFileName, type Lsn } from '../src/lsn.js';
import { Proposer } from '../src/proposer/proposer_client.js';
import { freePort, startCluster, type SafekeeperProcess } from './helpers/safekeeper_process.js';

const PG_BIN = process.env.PG_BIN ?? '/usr/lib/postgresql/15/bin';
const BINS = ['initdb', 'pg_ctl', 'postgres', 'pg_basebackup', 'pg_waldump', 'pg_controldata', 'psql'].map((b) => join(PG_BIN, b));
const missing = BINS.filter((p) => !existsSync(p));
const SEG = 16 * 1024 * 1024;
const TENANT = 'pgtenant';
const TIMELINE = 'pgmain';
const isRoot = process.getuid?.() === 0;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a PostgreSQL binary; as root, as user postgres (initdb and postgres refuse root). */
function pg(bin: string, args: string[], timeoutMs = 120_000): Promise<Run> {
  const [cmd, argv] = isRoot ? ['runuser', ['-u', 'postgres', '--', join(PG_BIN, bin), ...args]] : [join(PG_BIN, bin), args];
  return new Promise((resolve) => {
    execFile(cmd, argv, { timeout: timeoutMs, maxBuffer: 256 * 1024 * 1024, env: { ...process.env, PGCONNECT_TIMEOUT: '10', LC_ALL: 'C' } }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : null) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}


const postgresUserOk = !isRoot || spawnSync('id', ['-u', 'postgres']).status === 0;

if (missing.length > 0 || !postgresUserOk) {
  // A developer machine without PostgreSQL skips these; CI (.ci/run installs postgresql-15) must run them.
  const why = `PostgreSQL 15 server binaries not found (${missing.join(', ') || 'no postgres user'}): install postgresql-15 or set PG_BIN`;
  if (process.env.CI) t.fail(why);
  else t.skip(why);
} else {
  const base = mkdtempSync(join(tmpdir(), 'pgsb-'));
  chmodSync(base, 0o755);
  if (isRoot) {
    const uid = Number(spawnSync('id', ['-u', 'postgres']).stdout.toString());
    const gid = Number(spawnSync('id', ['-g', 'postgres']).stdout.toString());
    chownSync(base, uid, gid);
  }
  const primaryDir = join(base, 'primary');
  const standbyDir = join(base, 'standby');
  let nodes: SafekeeperProcess[] = [];
  let proposer: Proposer | null = null;
  const running: string[] = [];

  const sql = (port: number, query: string) => pg('psql', ['-X', '-A', '-t', '-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-d', 'postgres', '-c', query]);

  t.teardown(async () => {
    for (const d of running) await pg('pg_ctl', ['-D', d, '-m', 'immediate', 'stop']);
    await proposer?.close().catch(() => undefined);
    for (const n of nodes) await n.kill();
    rmSync(base, { recursive: true, force: true });
  });

  t.test('a hot standby streams a real primary\'s WAL from a safekeeper and ends with equal data', { timeout: 240_000 }, async (t) => {
    const primaryPort = await freePort();
    const standbyPort = await freePort();
    let r = await pg('initdb', ['-D', primaryDir, '-U', 'postgres', '-A', 'trust', '--no-sync']);
    t.equal(r.code, 0, `initdb ${r.stderr}`);
    appendFileSync(join(primaryDir, 'postgresql.conf'), [
      `listen_addresses = '127.0.0.1'`, `port = ${primaryPort}`, `unix_socket_directories = '${base}'`,
      'wal_level = replica', 'max_wal_senders = 4', "wal_keep_size = '1GB'", 'fsync = off', 'full_page_writes = on', '',
    ].join('\n'));
    r = await pg('pg_ctl', ['-D', primaryDir, '-l', join(base, 'primary.log'), '-w', 'start']);
    t.equal(r.code, 0, `primary starts ${r.stderr}`);
    running.push(primaryDir);
    r = await sql(primaryPort, 'CREATE TABLE t (id int primary key, v text); INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 1000) g;');
    t.equal(r.code, 0, r.stderr);
    // A base backup without WAL: the standby must get every WAL byte from the safekeeper.
    r = await pg('pg_basebackup', ['-h', '127.0.0.1', '-p', String(primaryPort), '-U', 'postgres', '-D', standbyDir, '-X', 'none', '-c', 'fast']);
    t.equal(r.code, 0, `pg_basebackup ${r.stderr}`);
    const afterBackup = parseLsn((await sql(primaryPort, 'SELECT pg_current_wal_insert_lsn()')).stdout.trim());
    r = await sql(primaryPort, 'INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1001, 50000) g; UPDATE t SET v = v || \'x\' WHERE id % 7 = 0; CHECKPOINT;');
    t.equal(r.code, 0, r.stderr);
    const want = (await sql(primaryPort, "SELECT count(*) || ':' || md5(string_agg(id || v, ',' ORDER BY id)) FROM t")).stdout.trim();
    r = await pg('pg_ctl', ['-D', primaryDir, '-m', 'fast', '-w', 'stop']);
    t.equal(r.code, 0, 'primary stops cleanly');
    running.splice(running.indexOf(primaryDir), 1);

    // The primary's WAL from 0/1000000 to its end, cut at record boundaries (pg_waldump's record LSNs).
    const cd = (await pg('pg_controldata', ['-D', primaryDir])).stdout;
    const systemId = BigInt(/Database system identifier:\s+(\d+)/.exec(cd)![1]!);
    const dump = await pg('pg_waldump', ['-p', join(primaryDir, 'pg_wal'), '-s', '0/1000028']);
    const starts = [...dump.stdout.matchAll(/lsn: ([0-9A-F]+\/[0-9A-F]+)/g)].map((m) => parseLsn(m[1]!));
    const endMatch = /invalid record length at ([0-9A-F]+\/[0-9A-F]+)/.exec(dump.stderr);
    t.ok(endMatch, `end of WAL found: ${dump.stderr.trim()}`);
    const walEnd = parseLsn(endMatch![1]!);
    t.ok(starts.length > 100 && walEnd > SEG, `${starts.length} records up to ${endMatch![1]}`);
    const readWal = (from: number, to: number): Buffer => {
      const out = Buffer.alloc(to - from);
      let pos = from;
      while (pos < to) {
        const segNo = Math.floor(pos / SEG);
        const n = Math.min(to, (segNo + 1) * SEG) - pos;
        const fd = openSync(join(primaryDir, 'pg_wal', segmentFileName(segNo, SEG)), 'r');
        readSync(fd, out, pos - from, n, pos % SEG);
        closeSync(fd);
        pos += n;
      }
      return out;
    };

    nodes = await startCluster(3, ['--pg-listen', '127.0.0.1:0']);
    for (const n of nodes) {
      const c = await n.api('POST', `/v1/tenant/${TENANT}/timeline/${TIMELINE}`, {});
      t.equal(c.status, 201);
    }
    proposer = new Proposer({
      safekeepers: nodes.map((n) => n.wsUrl),
      tenantId: TENANT, timelineId: TIMELINE, systemId, pgVersion: 150020, segmentSizeBytes: SEG,
      reconnectMinMs: 20, reconnectMaxMs: 200,
    });
    proposer.on('error', () => undefined);
    proposer.start();
    const elected = await proposer.waitElected();
    t.equal(elected.termStartLsn, SEG, 'the term starts at 0/1000000, where the primary\'s WAL starts');
    // Appends end where a record starts, but not right after a page header: there the previous record
    // (e.g. an XLOG_SWITCH and its padding) is only known complete once the next one arrives.
    const cuts = [...starts.filter((s) => s > SEG && s % 8192 !== 24 && s % SEG !== 40), walEnd];
    let from: number = SEG;
    /** Pushes the primary's WAL up to the first record boundary at or past `upTo`, in ~512 KiB appends. */
    const push = async (upTo: number): Promise<Lsn> => {
      let acked: Lsn = lsn(0);
      const inflight: Promise<Lsn>[] = [];
      for (let i = cuts.findIndex((c) => c > from); i >= 0 && i < cuts.length; i++) {
        const to = cuts[i]!;
        const next = cuts[i + 1];
        if (to < upTo && next !== undefined && next - from <= 512 * 1024) continue;
        inflight.push(proposer!.append(readWal(from, to)));
        from = to;
        if (inflight.length >= 8) acked = lsn(Math.max(acked, await inflight.shift()!));
        if (to >= upTo) break;
      }
      for (const p of inflight) acked = lsn(Math.max(acked, await p));
      return acked;
    };
    // First only the WAL up to just after the base backup: the standby starts from that, then follows the
    // rest live as it commits.
    const firstAcked = await push(afterBackup);
    t.ok(firstAcked >= afterBackup && firstAcked < walEnd, `WAL up to ${firstAcked} (past the backup's end) committed`);

    const sk = nodes[0]!;
    const deadline = Date.now() + 20_000;
    while (Date.now() < deadline) {
      const st = await sk.api('GET', `/v1/tenant/${TENANT}/timeline/${TIMELINE}`);
      if (parseLsn(String(st.body.commitLsn)) >= firstAcked) break;
      await new Promise((res) => setTimeout(res, 20));
    }

    // The standby: the base backup, no WAL, primary_conninfo pointing at the safekeeper.
    writeFileSync(join(standbyDir, 'standby.signal'), '');
    appendFileSync(join(standbyDir, 'postgresql.conf'), [
      `port = ${standbyPort}`, `unix_socket_directories = '${base}'`, 'hot_standby = on', 'hot_standby_feedback = on',
      `primary_conninfo = 'host=127.0.0.1 port=${sk.pgPort} user=postgres application_name=standby1 options=''-c tenant_id=${TENANT} -c timeline_id=${TIMELINE}'''`,
      'wal_receiver_status_interval = 1s', '',
    ].join('\n'));
    r = await pg('pg_ctl', ['-D', standbyDir, '-l', join(base, 'standby.log'), '-w', '-t', '60', 'start']);
    running.push(standbyDir);
    t.equal(r.code, 0, `standby starts ${r.stderr}`);
    const early = (await sql(standbyPort, 'SELECT count(*) FROM t')).stdout.trim();
    t.equal(early, '1000', 'the standby is consistent with the backup before the rest of the WAL exists');
    const acked = await push(walEnd);
    t.equal(acked, walEnd, 'the primary\'s whole WAL is committed on the safekeepers');
    let got = '';
    let replay = '';
    const until = Date.now() + 60_000;
    while (Date.now() < until) {
      replay = (await sql(standbyPort, 'SELECT pg_last_wal_replay_lsn()')).stdout.trim();
      if (replay && parseLsn(replay) >= walEnd - 200) {
        got = (await sql(standbyPort, "SELECT count(*) || ':' || md5(string_agg(id || v, ',' ORDER BY id)) FROM t")).stdout.trim();
        if (got === want) break;
      }
      await new Promise((res) => setTimeout(res, 200));
    }
    t.equal(got, want, `the standby's table equals the primary's (replayed to ${replay})`);
    const recv = (await sql(standbyPort, 'SELECT status, sender_port FROM pg_stat_wal_receiver')).stdout.trim();
    t.equal(recv, `streaming|${sk.pgPort}`, 'its walreceiver streams from the safekeeper');
  });
}
