// The PostgreSQL wire helpers of the replication port: framing of what clients send (split and
// coalesced chunks, startup packets then typed messages, bad lengths) and the messages it builds.
import t from 'tap';
import {
  FrameError,
  FrameReader,
  SSL_REQUEST_CODE,
  dataRow,
  errorResponse,
  formatPgLsn,
  parseStandbyMessage,
  parseStartupParams,
  primaryKeepalive,
  xlogDataHeader,
} from '../src/replication/pg_wire.js';
import { query, startupPacket } from './helpers/pg_frontend.js';

function isFrameError(fn: () => unknown): boolean {
  try {
    fn();
    return false;
  } catch (err) {
    return err instanceof FrameError;
  }
}


function sslRequest(): Buffer {
  const b = Buffer.alloc(8);
  b.writeInt32BE(8, 0);
  b.writeInt32BE(SSL_REQUEST_CODE, 4);
  return b;
}


t.test('formatPgLsn prints like PostgreSQL (%X/%X, no padding)', async (t) => {
  t.equal(formatPgLsn(0x1000000), '0/1000000');
  t.equal(formatPgLsn(0x3800e90), '0/3800E90');
  t.equal(formatPgLsn(0x1_0000_0000 * 0x10), '10/0');
});

t.test('frames survive any chunking; startup packets are handed over one at a time', async (t) => {
  const stream = Buffer.concat([sslRequest(), startupPacket({ user: 'u', replication: 'true', options: '-c tenant_id=a -c timeline_id=b' }), query('IDENTIFY_SYSTEM'), query('SHOW wal_segment_size')]);
  for (const size of [1, 3, 7, 64, stream.length]) {
    const r = new FrameReader();
    const frames: { type: string | null; body: Buffer }[] = [];
    // As the server does: after a startup packet other than SSLRequest, typed messages follow.
    const take = (got: { type: string | null; body: Buffer }[]) => {
      for (const f of got) {
        frames.push(f);
        if (f.type === null && f.body.readInt32BE(0) !== SSL_REQUEST_CODE) r.startupDone = true;
      }
      return got.length > 0 && got[got.length - 1]!.type === null;
    };
    for (let i = 0; i < stream.length; i += size) {
      let again = take(r.push(stream.subarray(i, i + size)));
      while (again) again = take(r.drain());
    }
    t.same(frames.map((f) => f.type), [null, null, 'Q', 'Q'], `chunks of ${size}`);
    const params = parseStartupParams(frames[1]!.body);
    t.equal(params.get('replication'), 'true');
    t.equal(params.get('options'), '-c tenant_id=a -c timeline_id=b');
    t.equal(frames[3]!.body.toString('utf8', 0, frames[3]!.body.length - 1), 'SHOW wal_segment_size');
  }
});

t.test('bad lengths are protocol violations', async (t) => {
  const bad = Buffer.alloc(8);
  bad.writeInt32BE(3, 0);
  t.ok(isFrameError(() => new FrameReader().push(bad)), 'startup length below 8');
  const huge = Buffer.alloc(8);
  huge.writeInt32BE(20_000, 0);
  t.ok(isFrameError(() => new FrameReader().push(huge)), 'startup packet over 10000 bytes');
  const r = new FrameReader();
  r.startupDone = true;
  t.ok(isFrameError(() => r.push(Buffer.from([0x51, 0x7f, 0xff, 0xff, 0xff]))), 'message over 1 MiB');
  const r2 = new FrameReader();
  r2.startupDone = true;
  t.ok(isFrameError(() => r2.push(Buffer.from([0x51, 0, 0, 0, 2]))), 'length below 4');
});

t.test('standby messages parse; junk is refused', async (t) => {
  const r = Buffer.alloc(34);
  r[0] = 0x72;
  r.writeBigUInt64BE(0x3000000n, 1);
  r.writeBigUInt64BE(0x2000000n, 9);
  r.writeBigUInt64BE(0x1000000n, 17);
  r.writeBigInt64BE(123n, 25);
  r[33] = 1;
  t.same(parseStandbyMessage(r), { kind: 'status', writeLsn: 0x3000000, flushLsn: 0x2000000, applyLsn: 0x1000000, sendTime: 123n, replyRequested: true });
  const h = Buffer.alloc(25);
  h[0] = 0x68;
  h.writeUInt32BE(777, 9);
  t.match(parseStandbyMessage(h), { kind: 'hotStandby', xmin: 777 });
  t.ok(isFrameError(() => parseStandbyMessage(Buffer.from('r'))), 'short status update');
  t.ok(isFrameError(() => parseStandbyMessage(Buffer.from('zzz'))), 'unknown type');
  t.ok(isFrameError(() => parseStandbyMessage(Buffer.alloc(0))), 'empty');
});

t.test('backend messages have PostgreSQL layouts', async (t) => {
  const k = primaryKeepalive(0x1000000, 5n, true);
  t.equal(k.length, 23);
  t.equal(k.toString('latin1', 0, 1), 'd');
  t.equal(k.readInt32BE(1), 22);
  t.equal(k.toString('latin1', 5, 6), 'k');
  t.equal(k.readBigUInt64BE(6), 0x1000000n);
  t.equal(k[22], 1);
  const w = xlogDataHeader(0x1000000, 0x2000000, 9n, 100);
  t.equal(w.length, 30);
  t.equal(w.readInt32BE(1), 4 + 25 + 100);
  t.equal(w.toString('latin1', 5, 6), 'w');
  t.equal(w.readBigUInt64BE(14), 0x2000000n);
  const e = errorResponse({ severity: 'ERROR', code: '58P01', message: 'gone' });
  t.equal(e.toString('latin1', 0, 1), 'E');
  t.match(e.toString('latin1'), /SERROR\0VERROR\0C58P01\0Mgone\0\0$/);
  const d = dataRow(['a', null]);
  t.equal(d.readInt16BE(5), 2);
  t.equal(d.readInt32BE(7), 1);
  t.equal(d.readInt32BE(12), -1);
});
