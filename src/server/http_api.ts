// HTTP management API on the same port as the WebSocket endpoint: health, status, timeline create /
// get / delete, and fencing (raise minTerm). Validates every input and answers errors as JSON with a code.

import type { HttpRequest, HttpResponse, TemplatedApp } from './uws.js';
import { ErrorCodes, SafekeeperError } from '../errors.js';
import { formatLsn, parseLsn } from '../lsn.js';
import { term } from '../storage/timeline_state.js';
import type { Timeline, TimelineRegistry } from './timeline_registry.js';
import type { PeerBroker } from './peer_broker.js';
import { decodePeerReadCall, encodePeerInfo, encodePeerReadReply } from '../protocol/peer_codec.js';

export interface StatusSource {
  nodeId: number;
  startedAt: Date;
  connectionCount(): number;
}

const MAX_BODY_BYTES = 64 * 1024;

export function timelineStatus(tl: Timeline): Record<string, unknown> {
  const core = tl.driver.core;
  const p = core.persistent;
  return {
    tenantId: tl.tenantId,
    timelineId: tl.timelineId,
    term: p.term,
    minTerm: p.minTerm,
    votedFor: p.votedFor,
    lastLogTerm: tl.driver.ownPeerInfo.lastLogTerm,
    termHistory: p.termHistory.map((e) => ({ term: e.term, lsn: formatLsn(e.lsn) })),
    flushLsn: formatLsn(core.flushLsn),
    lastRecordLsn: tl.store.lastRecordLsn !== null && tl.store.flushLsn === core.flushLsn ? formatLsn(tl.store.lastRecordLsn) : null,
    writeLsn: formatLsn(core.writeLsn),
    commitLsn: formatLsn(core.commitLsn),
    backupLsn: formatLsn(p.backupLsn),
    peerHorizonLsn: formatLsn(core.peerHorizonLsn),
    timelineStartLsn: formatLsn(p.timelineStartLsn),
    localStartLsn: formatLsn(tl.store.localStartLsn),
    segmentSizeBytes: p.segmentSizeBytes,
    pgVersion: p.pgVersion,
    systemId: p.systemId.toString(),
    connections: core.connections.size,
    stopped: tl.driver.isStopped,
  };
}

class HttpError extends Error {
  constructor(
    readonly status: string,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

function json(res: HttpResponse, status: string, body: unknown): void {
  res.cork(() => {
    res.writeStatus(status).writeHeader('content-type', 'application/json').end(JSON.stringify(body));
  });
}

function readBody(res: HttpResponse): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let size = 0;
    res.onData((chunk, isLast) => {
      size += chunk.byteLength;
      if (size > MAX_BODY_BYTES) {
        reject(new HttpError('413 Payload Too Large', ErrorCodes.INVALID_ARGUMENT, `body over ${MAX_BODY_BYTES} bytes`));
        return;
      }
      parts.push(Buffer.from(chunk.slice(0)));
      if (isLast) resolve(Buffer.concat(parts));
    });
  });
}

async function readJson(res: HttpResponse): Promise<Record<string, unknown>> {
  const body = await readBody(res);
  if (body.length === 0) return {};
  try {
    const v = JSON.parse(body.toString('utf8')) as unknown;
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not an object');
    return v as Record<string, unknown>;
  } catch (err) {
    throw new HttpError('400 Bad Request', ErrorCodes.INVALID_ARGUMENT, `body is not a JSON object: ${(err as Error).message}`);
  }
}

/** Runs an async handler with abort tracking and uniform error answers. */
function handle(fn: (res: HttpResponse, req: HttpRequest) => Promise<[string, unknown]>) {
  return (res: HttpResponse, req: HttpRequest) => {
    let aborted = false;
    res.onAborted(() => {
      aborted = true;
    });
    fn(res, req).then(
      ([status, body]) => {
        if (!aborted) json(res, status, body);
      },
      (err: unknown) => {
        if (aborted) return;
        if (err instanceof HttpError) json(res, err.status, { code: err.code, message: err.message });
        else if (err instanceof SafekeeperError) {
          const status = err.code === ErrorCodes.INVALID_ARGUMENT || err.code === ErrorCodes.CONFIG_INVALID ? '400 Bad Request' : '500 Internal Server Error';
          json(res, status, { code: err.code, message: err.message });
        } else json(res, '500 Internal Server Error', { code: ErrorCodes.IO, message: (err as Error).message });
      },
    );
  };
}

function intField(body: Record<string, unknown>, name: string, min: number, max: number): number | undefined {
  const v = body[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min || v > max) {
    throw new HttpError('400 Bad Request', ErrorCodes.INVALID_ARGUMENT, `${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(v)}`);
  }
  return v;
}

export function attachHttpApi(app: TemplatedApp, registry: TimelineRegistry, status: StatusSource, broker: PeerBroker | null = null): void {
  const timelineOf = (req: HttpRequest): Timeline => {
    const tl = registry.get(req.getParameter(0) ?? '', req.getParameter(1) ?? '');
    if (!tl) throw new HttpError('404 Not Found', 'SK_TIMELINE_NOT_FOUND', `timeline ${req.getParameter(0)}/${req.getParameter(1)} not found`);
    return tl;
  };

  app.get('/v1/health', (res) => json(res, '200 OK', { status: 'ok' }));
  app.get('/v1/ready', (res) => json(res, '200 OK', { status: 'ready', timelines: registry.list().length }));

  app.get('/v1/status', handle(async () => [
    '200 OK',
    {
      nodeId: status.nodeId,
      startedAt: status.startedAt.toISOString(),
      connections: status.connectionCount(),
      timelines: registry.list().map(timelineStatus),
      broken: Object.fromEntries(registry.broken),
    },
  ]));

  app.post('/v1/tenant/:tenantId/timeline/:timelineId', handle(async (res, req) => {
    const tenantId = req.getParameter(0) ?? '';
    const timelineId = req.getParameter(1) ?? '';
    const body = await readJson(res);
    let startLsn;
    if (body.startLsn !== undefined) {
      try {
        startLsn = parseLsn(String(body.startLsn));
      } catch (err) {
        throw new HttpError('400 Bad Request', ErrorCodes.INVALID_ARGUMENT, (err as Error).message);
      }
    }
    const segmentSizeMiB = intField(body, 'segmentSizeMiB', 1, 1024);
    const pgVersion = intField(body, 'pgVersion', 0, 2 ** 31);
    const tl = await registry.create(tenantId, timelineId, {
      ...(startLsn !== undefined ? { startLsn } : {}),
      ...(segmentSizeMiB !== undefined ? { segmentSizeBytes: segmentSizeMiB * 1024 * 1024 } : {}),
      ...(pgVersion !== undefined ? { pgVersion } : {}),
    });
    return ['201 Created', timelineStatus(tl)];
  }));

  app.get('/v1/tenant/:tenantId/timeline/:timelineId', handle(async (_res, req) => ['200 OK', timelineStatus(timelineOf(req))]));

  app.del('/v1/tenant/:tenantId/timeline/:timelineId', handle(async (_res, req) => {
    const tl = timelineOf(req);
    await registry.delete(tl.tenantId, tl.timelineId);
    return ['200 OK', { deleted: true }];
  }));

  app.post('/v1/tenant/:tenantId/timeline/:timelineId/fence', handle(async (res, req) => {
    const tl = timelineOf(req);
    const body = await readJson(res);
    const minTerm = intField(body, 'minTerm', 1, Number.MAX_SAFE_INTEGER);
    if (minTerm === undefined) throw new HttpError('400 Bad Request', ErrorCodes.INVALID_ARGUMENT, 'minTerm is required');
    tl.driver.input({ kind: 'fence', minTerm: term(minTerm) });
    // Answer only once the raised minTerm is durable.
    await tl.driver.whenIdle();
    return ['200 OK', timelineStatus(tl)];
  }));

  // Peer broker: what this node publishes to its peers, for every timeline.
  app.get('/v1/peer-info', handle(async () => [
    '200 OK',
    {
      nodeId: status.nodeId,
      timelines: Object.fromEntries(registry.list().filter((tl) => !tl.driver.isStopped).map((tl) => [`${tl.tenantId}/${tl.timelineId}`, encodePeerInfo(tl.driver.ownPeerInfo)])),
    },
  ]));

  // Peer recovery, serving side: another safekeeper reads our durable WAL of one term.
  app.post('/v1/tenant/:tenantId/timeline/:timelineId/peer-read', (res, req) => {
    let aborted = false;
    res.onAborted(() => {
      aborted = true;
    });
    const tenantId = req.getParameter(0) ?? '';
    const timelineId = req.getParameter(1) ?? '';
    const tl = registry.get(tenantId, timelineId);
    readJson(res)
      .then(async (body) => {
        if (!tl || !broker) throw new HttpError('404 Not Found', 'SK_TIMELINE_NOT_FOUND', `timeline ${tenantId}/${timelineId} not served here`);
        let call;
        try {
          call = decodePeerReadCall(body);
        } catch (err) {
          throw new HttpError('400 Bad Request', ErrorCodes.INVALID_ARGUMENT, (err as Error).message);
        }
        const answer = broker.awaitServe(tenantId, timelineId, call.requester, call.requestId);
        tl.driver.input({ kind: 'peerReadRequest', requester: call.requester, requestId: call.requestId, request: call.request });
        return encodePeerReadReply(await answer);
      })
      .then(
        (bytes) => {
          if (!aborted) res.cork(() => res.writeStatus('200 OK').writeHeader('content-type', 'application/octet-stream').end(bytes));
        },
        (err: unknown) => {
          if (aborted) return;
          if (err instanceof HttpError) json(res, err.status, { code: err.code, message: err.message });
          else json(res, '500 Internal Server Error', { code: ErrorCodes.IO, message: (err as Error).message });
        },
      );
  });

  app.any('/*', (res, req) => {
    json(res, '404 Not Found', { code: 'SK_NOT_FOUND', message: `no route ${req.getMethod().toUpperCase()} ${req.getUrl()}` });
  });
}
