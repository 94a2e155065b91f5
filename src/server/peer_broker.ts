// Static-peers broker for peer recovery: polls every peer's /v1/peer-info once a second and feeds the
// infos (and a tick) to each timeline's driver, and carries peer-recovery reads between safekeepers over
// HTTP. Moves messages only; the decisions are the pure recovery step's.

import type { Logger } from 'pino';
import type { PeerInfo } from '../core/acceptor.js';
import type { PeerReadReply, PeerReadRequest } from '../core/protocol_messages.js';
import type { PeerLink } from '../driver/timeline_driver.js';
import { decodePeerInfo, decodePeerReadReply, encodePeerReadCall } from '../protocol/peer_codec.js';
import { TimelineRegistry } from './timeline_registry.js';

export const PEER_POLL_INTERVAL_MS = 1000;
const PEER_READ_TIMEOUT_MS = 10_000;

interface PendingServe {
  resolve: (reply: PeerReadReply) => void;
  timer: NodeJS.Timeout;
}

export class PeerBroker {
  private timer: NodeJS.Timeout | null = null;
  private readonly serving = new Map<string, PendingServe>();
  registry: TimelineRegistry | null = null;

  constructor(
    readonly nodeId: number,
    /** Peer node id -> its HTTP base URL (ourselves excluded). */
    readonly peers: ReadonlyMap<number, string>,
    private readonly log: Logger,
  ) {}

  start(): void {
    if (this.peers.size === 0 || this.timer) return;
    this.timer = setInterval(() => void this.poll(), PEER_POLL_INTERVAL_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    for (const p of this.serving.values()) clearTimeout(p.timer);
    this.serving.clear();
  }

  /** The PeerLink a timeline's driver uses. */
  link(tenantId: string, timelineId: string): PeerLink {
    const key = TimelineRegistry.key(tenantId, timelineId);
    return {
      read: (peerNodeId, requestId, request) => this.read(peerNodeId, tenantId, timelineId, requestId, request),
      reply: (requester, requestId, reply) => {
        const k = `${key}/${requester}/${requestId}`;
        const pending = this.serving.get(k);
        if (!pending) return;
        this.serving.delete(k);
        clearTimeout(pending.timer);
        pending.resolve(reply);
      },
      event: (event, detail) => this.log.info({ timeline: key, ...detail }, `peer recovery: ${event}`),
    };
  }

  /** Serving side: waits for our driver's answer to another safekeeper's read. */
  awaitServe(tenantId: string, timelineId: string, requester: number, requestId: number): Promise<PeerReadReply> {
    const k = `${TimelineRegistry.key(tenantId, timelineId)}/${requester}/${requestId}`;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.serving.delete(k);
        reject(new Error(`peer read ${k} not answered in ${PEER_READ_TIMEOUT_MS} ms`));
      }, PEER_READ_TIMEOUT_MS);
      this.serving.set(k, { resolve, timer });
    });
  }

  private async read(peerNodeId: number, tenantId: string, timelineId: string, requestId: number, request: PeerReadRequest): Promise<PeerReadReply> {
    const url = this.peers.get(peerNodeId);
    if (!url) throw new Error(`no address for peer ${peerNodeId}`);
    const res = await fetch(`${url}/v1/tenant/${tenantId}/timeline/${timelineId}/peer-read`, {
      method: 'POST',
      body: encodePeerReadCall({ requester: this.nodeId, requestId, request }),
      signal: AbortSignal.timeout(PEER_READ_TIMEOUT_MS),
    });
    if (!res.ok) throw new Error(`peer ${peerNodeId} answered ${res.status}: ${await res.text()}`);
    return decodePeerReadReply(Buffer.from(await res.arrayBuffer()));
  }

  private async poll(): Promise<void> {
    const registry = this.registry;
    if (!registry) return;
    await Promise.all(
      [...this.peers].map(async ([peerId, url]) => {
        try {
          const res = await fetch(`${url}/v1/peer-info`, { signal: AbortSignal.timeout(PEER_POLL_INTERVAL_MS) });
          if (!res.ok) return;
          const body = (await res.json()) as { timelines: Record<string, Record<string, unknown>> };
          for (const [key, raw] of Object.entries(body.timelines)) {
            const [tenantId, timelineId] = key.split('/');
            const tl = registry.get(tenantId ?? '', timelineId ?? '');
            if (!tl) continue;
            let info: PeerInfo;
            try {
              info = decodePeerInfo(raw);
            } catch (err) {
              this.log.warn({ peer: peerId, err: (err as Error).message }, 'malformed peer info');
              continue;
            }
            if (info.nodeId !== peerId) continue;
            tl.driver.peerInfo(info);
          }
        } catch (err) {
          // A peer that is down is simply not heard from; recovery uses the peers that answer.
          this.log.debug({ peer: peerId, err: (err as Error).message }, 'peer info poll failed');
        }
      }),
    );
    for (const tl of registry.list()) tl.driver.tick();
  }
}
