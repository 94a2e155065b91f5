// WebSocket endpoint for proposers: decodes frames, routes a connection to its timeline on the greeting,
// and forwards messages to that timeline's driver. Frames and forwards only; never touches storage.

import type { WebSocket, TemplatedApp } from './uws.js';
import { uWS } from './uws.js';
import type { ConnectionId } from '../core/acceptor.js';
import type { AcceptorMessage, ErrorMessage, ProposerGreeting } from '../core/protocol_messages.js';
import type { ConnectionSink } from '../driver/timeline_driver.js';
import { decodeProposerMessage, encodeAcceptorMessage, MAX_FRAME_BYTES, WireDecodeError } from '../protocol/wire_codec.js';
import type { Term } from '../storage/timeline_state.js';
import type { Timeline, TimelineRegistry } from './timeline_registry.js';
import type { Logger } from 'pino';

interface ConnectionData {
  connId: ConnectionId;
  timeline: Timeline | null;
  closed: boolean;
}

export const PROPOSER_PATH = '/v1/wal';

export class ProposerSockets implements ConnectionSink {
  private nextConnId = 1;
  private readonly sockets = new Map<ConnectionId, WebSocket<ConnectionData>>();
  registry: TimelineRegistry | null = null;

  constructor(
    private readonly log: Logger,
    private readonly implicitTimelineCreation: boolean,
  ) {}

  get connectionCount(): number {
    return this.sockets.size;
  }

  attach(app: TemplatedApp): void {
    app.ws<ConnectionData>(PROPOSER_PATH, {
      compression: uWS.DISABLED,
      maxPayloadLength: MAX_FRAME_BYTES,
      maxBackpressure: 64 * 1024 * 1024,
      idleTimeout: 120,
      sendPingsAutomatically: true,
      upgrade: (res, req, context) => {
        res.upgrade<ConnectionData>(
          { connId: this.nextConnId++, timeline: null, closed: false },
          req.getHeader('sec-websocket-key'),
          req.getHeader('sec-websocket-protocol'),
          req.getHeader('sec-websocket-extensions'),
          context,
        );
      },
      open: (ws) => {
        this.sockets.set(ws.getUserData().connId, ws);
      },
      message: (ws, message, isBinary) => {
        // uWS frees `message` when this callback returns: copy once, here.
        const frame = Buffer.from(message.slice(0));
        this.onFrame(ws, frame, isBinary);
      },
      close: (ws) => {
        const data = ws.getUserData();
        data.closed = true;
        this.sockets.delete(data.connId);
        data.timeline?.driver.input({ kind: 'connectionClosed', connId: data.connId });
      },
    });
  }

  send(connId: ConnectionId, message: AcceptorMessage): void {
    const ws = this.sockets.get(connId);
    if (!ws || ws.getUserData().closed) return;
    ws.send(encodeAcceptorMessage(message), true);
  }

  close(connId: ConnectionId, error: ErrorMessage | null): void {
    const ws = this.sockets.get(connId);
    if (!ws || ws.getUserData().closed) return;
    if (error) ws.send(encodeAcceptorMessage(error), true);
    ws.getUserData().closed = true;
    ws.end(1000, error?.code ?? 'closed');
  }

  closeAll(): void {
    for (const ws of this.sockets.values()) {
      if (!ws.getUserData().closed) ws.end(1001, 'shutting down');
    }
  }

  private reject(ws: WebSocket<ConnectionData>, code: string, message: string, got = '', expected = ''): void {
    const data = ws.getUserData();
    this.log.warn({ connId: data.connId, code, got, expected }, message);
    const err: ErrorMessage = { kind: 'Error', code: code as ErrorMessage['code'], term: (data.timeline?.driver.term ?? 0) as Term, got, expected, message };
    ws.send(encodeAcceptorMessage(err), true);
    data.closed = true;
    ws.end(1002, code);
  }

  private onFrame(ws: WebSocket<ConnectionData>, frame: Buffer, isBinary: boolean): void {
    const data = ws.getUserData();
    if (data.closed) return;
    if (!isBinary) {
      this.reject(ws, 'SK_PROTO_MALFORMED', 'text frame on the binary WAL protocol', 'text', 'binary');
      return;
    }
    let msg;
    try {
      msg = decodeProposerMessage(frame);
    } catch (err) {
      if (err instanceof WireDecodeError) {
        this.reject(ws, err.code, err.message, err.got, err.expected);
        return;
      }
      throw err;
    }
    if (data.timeline === null) {
      if (msg.kind !== 'ProposerGreeting') {
        this.reject(ws, 'SK_PROTO_UNEXPECTED', `${msg.kind} before ProposerGreeting`, msg.kind, 'ProposerGreeting');
        return;
      }
      this.route(ws, msg);
      return;
    }
    data.timeline.driver.input({ kind: 'message', connId: data.connId, message: msg });
  }

  private route(ws: WebSocket<ConnectionData>, greeting: ProposerGreeting): void {
    const data = ws.getUserData();
    const registry = this.registry!;
    const existing = registry.get(greeting.tenantId, greeting.timelineId);
    const attach = (tl: Timeline) => {
      if (data.closed) return;
      data.timeline = tl;
      tl.driver.input({ kind: 'connectionOpened', connId: data.connId });
      tl.driver.input({ kind: 'message', connId: data.connId, message: greeting });
    };
    if (existing) {
      attach(existing);
      return;
    }
    if (!this.implicitTimelineCreation) {
      this.reject(ws, 'SK_PROTO_UNKNOWN_TIMELINE', `timeline ${greeting.tenantId}/${greeting.timelineId} does not exist here`, `${greeting.tenantId}/${greeting.timelineId}`, 'a created timeline');
      return;
    }
    registry
      .create(greeting.tenantId, greeting.timelineId, { segmentSizeBytes: greeting.segmentSizeBytes })
      .then(attach, (err: Error) => {
        if (!data.closed) this.reject(ws, 'SK_PROTO_UNKNOWN_TIMELINE', `cannot create timeline: ${err.message}`);
      });
  }
}
