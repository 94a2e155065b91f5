// PostgreSQL frontend/backend protocol v3, the parts a walsender needs: framing of what clients send and
// builders for what the server answers (startup, simple query results, errors, CopyBoth streaming).
// Pure: no sockets, no timelines. See docs/REPLICATION.md.

export const PROTOCOL_3_0 = 196608;
export const SSL_REQUEST_CODE = 80877103;
export const GSSENC_REQUEST_CODE = 80877104;
export const CANCEL_REQUEST_CODE = 80877102;

/** PostgreSQL's MAX_STARTUP_PACKET_LENGTH. */
export const MAX_STARTUP_PACKET_BYTES = 10_000;
/** Larger frames than this from a client are a protocol violation (queries and feedback are small). */
export const MAX_FRONTEND_MESSAGE_BYTES = 1 << 20;

/** Microseconds between the Unix epoch and PostgreSQL's epoch (2000-01-01 00:00 UTC). */
const PG_EPOCH_MS = 946_684_800_000;

/** PostgreSQL's TimestampTz for now: microseconds since 2000-01-01. */
export function pgNow(): bigint {
  return BigInt(Date.now() - PG_EPOCH_MS) * 1000n;
}

/** `%X/%X` as PostgreSQL prints LSNs in messages and IDENTIFY_SYSTEM (no zero padding). */
export function formatPgLsn(value: number): string {
  const hi = Math.floor(value / 0x1_0000_0000);
  const lo = value % 0x1_0000_0000;
  return `${hi.toString(16).toUpperCase()}/${lo.toString(16).toUpperCase()}`;
}

/** A frame from the client: a startup-phase packet (type null) or a typed message. */
export interface FrontendFrame {
  type: string | null;
  body: Buffer;
}

export class FrameError extends Error {}

/** Splits the client's byte stream into frames; startup packets until `startupDone` is set. */
export class FrameReader {
  private buf: Buffer = Buffer.alloc(0);
  startupDone = false;

  push(chunk: Buffer): FrontendFrame[] {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    const out: FrontendFrame[] = [];
    for (;;) {
      const f = this.next();
      if (!f) break;
      out.push(f);
      // Each startup packet changes what follows (SSLRequest is answered and another startup comes):
      // the caller flips startupDone between frames, so hand startup packets over one at a time.
      if (f.type === null) break;
    }
    return out;
  }

  /** Frames already buffered (call again after changing `startupDone`). */
  drain(): FrontendFrame[] {
    return this.push(Buffer.alloc(0));
  }

  private next(): FrontendFrame | null {
    if (!this.startupDone) {
      if (this.buf.length < 4) return null;
      const len = this.buf.readInt32BE(0);
      if (len < 8 || len > MAX_STARTUP_PACKET_BYTES) throw new FrameError('invalid length of startup packet');
      if (this.buf.length < len) return null;
      const body = this.buf.subarray(4, len);
      this.buf = this.buf.subarray(len);
      return { type: null, body };
    }
    if (this.buf.length < 5) return null;
    const type = String.fromCharCode(this.buf[0]!);
    const len = this.buf.readInt32BE(1);
    if (len < 4 || len > MAX_FRONTEND_MESSAGE_BYTES) throw new FrameError(`invalid message length ${len} for message type "${type}"`);
    if (this.buf.length < 1 + len) return null;
    const body = this.buf.subarray(5, 1 + len);
    this.buf = this.buf.subarray(1 + len);
    return { type, body };
  }
}

/** The startup packet's parameters (name -> value), after the protocol version. */
export function parseStartupParams(body: Buffer): Map<string, string> {
  const params = new Map<string, string>();
  let pos = 4;
  while (pos < body.length) {
    const end = body.indexOf(0, pos);
    if (end < 0) throw new FrameError('invalid startup packet layout: expected terminator as last byte');
    if (end === pos) break;
    const name = body.toString('utf8', pos, end);
    const vend = body.indexOf(0, end + 1);
    if (vend < 0) throw new FrameError('invalid startup packet layout: expected terminator as last byte');
    params.set(name, body.toString('utf8', end + 1, vend));
    pos = vend + 1;
  }
  return params;
}

// ---- backend messages -------------------------------------------------------------------------------

export function message(type: string, body: Buffer = Buffer.alloc(0)): Buffer {
  const out = Buffer.allocUnsafe(5 + body.length);
  out[0] = type.charCodeAt(0);
  out.writeInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
}

function cstr(s: string): Buffer {
  return Buffer.from(`${s}\0`, 'utf8');
}

function int32(n: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeInt32BE(n, 0);
  return b;
}

export const authenticationOk = (): Buffer => message('R', int32(0));

export const parameterStatus = (name: string, value: string): Buffer => message('S', Buffer.concat([cstr(name), cstr(value)]));

export function backendKeyData(pid: number, secret: number): Buffer {
  const b = Buffer.allocUnsafe(8);
  b.writeInt32BE(pid, 0);
  b.writeInt32BE(secret, 4);
  return message('K', b);
}

export const readyForQuery = (status: 'I' | 'T' | 'E' = 'I'): Buffer => message('Z', Buffer.from(status, 'latin1'));

export const commandComplete = (tag: string): Buffer => message('C', cstr(tag));

export const emptyQueryResponse = (): Buffer => message('I');

export function negotiateProtocolVersion(newestMinor: number, unrecognized: string[]): Buffer {
  return message('v', Buffer.concat([int32(newestMinor), int32(unrecognized.length), ...unrecognized.map(cstr)]));
}

export const PG_TYPE = {
  text: { oid: 25, len: -1 },
  int4: { oid: 23, len: 4 },
  int8: { oid: 20, len: 8 },
} as const;

export interface Column {
  name: string;
  type: keyof typeof PG_TYPE;
}

export function rowDescription(columns: readonly Column[]): Buffer {
  const parts: Buffer[] = [];
  const n = Buffer.allocUnsafe(2);
  n.writeInt16BE(columns.length, 0);
  parts.push(n);
  for (const c of columns) {
    const t = PG_TYPE[c.type];
    const f = Buffer.alloc(18);
    f.writeInt32BE(0, 0); // table oid
    f.writeInt16BE(0, 4); // attnum
    f.writeInt32BE(t.oid, 6);
    f.writeInt16BE(t.len, 10);
    f.writeInt32BE(-1, 12); // typmod
    f.writeInt16BE(0, 16); // text format
    parts.push(cstr(c.name), f);
  }
  return message('T', Buffer.concat(parts));
}

export function dataRow(values: readonly (string | null)[]): Buffer {
  const parts: Buffer[] = [];
  const n = Buffer.allocUnsafe(2);
  n.writeInt16BE(values.length, 0);
  parts.push(n);
  for (const v of values) {
    if (v === null) {
      parts.push(int32(-1));
    } else {
      const b = Buffer.from(v, 'utf8');
      parts.push(int32(b.length), b);
    }
  }
  return message('D', Buffer.concat(parts));
}

/** A complete simple-query result: RowDescription, the rows, CommandComplete. */
export function resultSet(columns: readonly Column[], rows: readonly (readonly (string | null)[])[], tag: string): Buffer {
  return Buffer.concat([rowDescription(columns), ...rows.map(dataRow), commandComplete(tag)]);
}

export interface PgErrorFields {
  severity: 'ERROR' | 'FATAL';
  /** Five-character SQLSTATE. */
  code: string;
  message: string;
  detail?: string;
  hint?: string;
}

/** An error as a PostgreSQL backend raises it, also usable as a thrown value inside the server. */
export class PgError extends Error {
  constructor(readonly fields: PgErrorFields) {
    super(fields.message);
    this.name = 'PgError';
  }
}

export function errorResponse(e: PgErrorFields): Buffer {
  const parts: Buffer[] = [];
  const field = (code: string, value: string) => parts.push(Buffer.from(code, 'latin1'), cstr(value));
  field('S', e.severity);
  field('V', e.severity);
  field('C', e.code);
  field('M', e.message);
  if (e.detail !== undefined) field('D', e.detail);
  if (e.hint !== undefined) field('H', e.hint);
  parts.push(Buffer.from([0]));
  return message('E', Buffer.concat(parts));
}

/** CopyBothResponse: text format, no columns (what a walsender sends for START_REPLICATION). */
export function copyBothResponse(): Buffer {
  const b = Buffer.alloc(3);
  return message('W', b);
}

export const copyDone = (): Buffer => message('c');

/** Header of a CopyData carrying XLogData ('w'); the WAL bytes follow it on the wire. */
export function xlogDataHeader(dataStart: number, walEnd: number, sendTime: bigint, dataLength: number): Buffer {
  const h = Buffer.allocUnsafe(5 + 1 + 24);
  h[0] = 0x64; // 'd'
  h.writeInt32BE(4 + 1 + 24 + dataLength, 1);
  h[5] = 0x77; // 'w'
  h.writeBigUInt64BE(BigInt(dataStart), 6);
  h.writeBigUInt64BE(BigInt(walEnd), 14);
  h.writeBigInt64BE(sendTime, 22);
  return h;
}

/** CopyData carrying a primary keepalive ('k'). */
export function primaryKeepalive(walEnd: number, sendTime: bigint, replyRequested: boolean): Buffer {
  const b = Buffer.allocUnsafe(5 + 1 + 8 + 8 + 1);
  b[0] = 0x64; // 'd'
  b.writeInt32BE(4 + 1 + 8 + 8 + 1, 1);
  b[5] = 0x6b; // 'k'
  b.writeBigUInt64BE(BigInt(walEnd), 6);
  b.writeBigInt64BE(sendTime, 14);
  b[22] = replyRequested ? 1 : 0;
  return b;
}

export interface StandbyStatusUpdate {
  kind: 'status';
  writeLsn: number;
  flushLsn: number;
  applyLsn: number;
  sendTime: bigint;
  replyRequested: boolean;
}

export interface HotStandbyFeedback {
  kind: 'hotStandby';
  sendTime: bigint;
  xmin: number;
  xminEpoch: number;
  catalogXmin: number;
  catalogXminEpoch: number;
}

/** Parses the payload of a CopyData the client sent while streaming; throws FrameError on junk. */
export function parseStandbyMessage(payload: Buffer): StandbyStatusUpdate | HotStandbyFeedback {
  const kind = payload.length > 0 ? String.fromCharCode(payload[0]!) : '';
  const lsnAt = (off: number) => Number(payload.readBigUInt64BE(off));
  if (kind === 'r') {
    if (payload.length !== 34) throw new FrameError(`invalid standby status update of ${payload.length} bytes`);
    return { kind: 'status', writeLsn: lsnAt(1), flushLsn: lsnAt(9), applyLsn: lsnAt(17), sendTime: payload.readBigInt64BE(25), replyRequested: payload[33] !== 0 };
  }
  if (kind === 'h') {
    if (payload.length !== 25) throw new FrameError(`invalid hot standby feedback of ${payload.length} bytes`);
    return {
      kind: 'hotStandby',
      sendTime: payload.readBigInt64BE(1),
      xmin: payload.readUInt32BE(9),
      xminEpoch: payload.readUInt32BE(13),
      catalogXmin: payload.readUInt32BE(17),
      catalogXminEpoch: payload.readUInt32BE(21),
    };
  }
  throw new FrameError(`unexpected message type "${kind}" in the replication stream`);
}
