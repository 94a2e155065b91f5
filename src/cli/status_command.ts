// `safekeeper status`: a table of a running node's timelines and LSNs, from its HTTP API.

interface TimelineRow {
  tenantId: string;
  timelineId: string;
  term: number;
  flushLsn: string;
  commitLsn: string;
  backupLsn: string;
  connections: number;
}

export async function runStatus(opts: { url: string; json?: boolean }): Promise<void> {
  const res = await fetch(`${opts.url.replace(/\/$/, '')}/v1/status`);
  if (!res.ok) throw new Error(`${opts.url} answered ${res.status}: ${await res.text()}`);
  const status = (await res.json()) as { nodeId: number; timelines: TimelineRow[]; broken: Record<string, string> };
  if (opts.json) {
    process.stdout.write(`${JSON.stringify(status, null, 2)}\n`);
    return;
  }
  const rows = [['TENANT/TIMELINE', 'TERM', 'FLUSH LSN', 'COMMIT LSN', 'BACKUP LSN', 'CONNS']];
  for (const t of status.timelines) {
    rows.push([`${t.tenantId}/${t.timelineId}`, String(t.term), t.flushLsn, t.commitLsn, t.backupLsn, String(t.connections)]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  process.stdout.write(`safekeeper ${status.nodeId} at ${opts.url}\n`);
  for (const r of rows) process.stdout.write(`${r.map((c, i) => c.padEnd(widths[i]!)).join('  ')}\n`);
  for (const [key, why] of Object.entries(status.broken)) process.stdout.write(`BROKEN ${key}: ${why}\n`);
}
