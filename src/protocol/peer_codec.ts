// Encoding of peer-recovery reads between safekeepers over HTTP (docs/PROTOCOL.md, "Peer recovery"):
// a JSON header (LSNs as X/X strings) followed by the raw WAL bytes. Decoding validates every field.

import { formatLsn, parseLsn } from '../lsn.js';
import type { ProtocolErrorCode } from '../core/protocol_errors.js';
import type { PeerReadReply, PeerReadRequest } from '../core/protocol_messages.js';
import type { PeerInfo } from '../core/acceptor.js';
import { term } from '../storage/timeline_state.js';

export interface PeerReadCall {
  requester: number;
  requestId: number;
  request: PeerReadRequest;
}

export function encodePeerReadCall(c: PeerReadCall): string {
  return JSON.stringify({
    requester: c.requester,
    requestId: c.requestId,
    term: c.request.term,
    beginLsn: formatLsn(c.request.beginLsn),
    endLsn: formatLsn(c.request.endLsn),
  });
}

const int = (v: unknown, name: string): number => {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw new RangeError(`${name} must be a non-negative integer`);
  return v;
};

export function decodePeerReadCall(body: Record<string, unknown>): PeerReadCall {
  return {
    requester: int(body.requester, 'requester'),
    requestId: int(body.requestId, 'requestId'),
    request: { term: term(int(body.term, 'term')), beginLsn: parseLsn(String(body.beginLsn)), endLsn: parseLsn(String(body.endLsn)) },
  };
}

/** Reply as one buffer: u32 header length, the JSON header, then the WAL. */
export function encodePeerReadReply(r: PeerReadReply): Buffer {
  const header =
    r.kind === 'PeerWal'
      ? { kind: r.kind, term: r.term, flushLsn: formatLsn(r.flushLsn), commitLsn: formatLsn(r.commitLsn), beginLsn: formatLsn(r.beginLsn),
          termHistory: r.termHistory.map((e) => [e.term, formatLsn(e.lsn)]) }
      : { kind: r.kind, code: r.code, term: r.term, message: r.message };
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const wal = r.kind === 'PeerWal' ? r.wal : new Uint8Array(0);
  const out = Buffer.allocUnsafe(4 + json.length + wal.length);
  out.writeUInt32BE(json.length, 0);
  json.copy(out, 4);
  out.set(wal, 4 + json.length);
  return out;
}

export function decodePeerReadReply(buf: Buffer): PeerReadReply {
  if (buf.length < 4) throw new RangeError('peer reply too short');
  const n = buf.readUInt32BE(0);
  if (4 + n > buf.length) throw new RangeError('peer reply header truncated');
  const h = JSON.parse(buf.toString('utf8', 4, 4 + n)) as Record<string, unknown>;
  if (h.kind === 'PeerRefused') {
    return { kind: 'PeerRefused', code: String(h.code) as ProtocolErrorCode, term: term(int(h.term, 'term')), message: String(h.message) };
  }
  if (h.kind !== 'PeerWal' || !Array.isArray(h.termHistory)) throw new RangeError('peer reply of unknown kind');
  return {
    kind: 'PeerWal',
    term: term(int(h.term, 'term')),
    flushLsn: parseLsn(String(h.flushLsn)),
    commitLsn: parseLsn(String(h.commitLsn)),
    beginLsn: parseLsn(String(h.beginLsn)),
    termHistory: (h.termHistory as [number, string][]).map(([t, l]) => ({ term: term(int(t, 'history term')), lsn: parseLsn(String(l)) })),
    wal: buf.subarray(4 + n),
  };
}

export function encodePeerInfo(i: PeerInfo): Record<string, unknown> {
  return { nodeId: i.nodeId, term: i.term, lastLogTerm: i.lastLogTerm, flushLsn: formatLsn(i.flushLsn), commitLsn: formatLsn(i.commitLsn) };
}

export function decodePeerInfo(v: Record<string, unknown>): PeerInfo {
  return {
    nodeId: int(v.nodeId, 'nodeId'),
    term: term(int(v.term, 'term')),
    lastLogTerm: term(int(v.lastLogTerm, 'lastLogTerm')),
    flushLsn: parseLsn(String(v.flushLsn)),
    commitLsn: parseLsn(String(v.commitLsn)),
  };
}
