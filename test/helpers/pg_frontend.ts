// Frontend (client-side) PostgreSQL protocol messages for tests that talk to the safekeeper's pg port
// by hand: a startup packet and a simple query. Byte layouts per the PostgreSQL protocol v3.

/** StartupMessage, protocol 3.0, with the given parameters. */
export function startupPacket(params: Record<string, string>): Buffer {
  const body = Buffer.concat([
    Buffer.from([0, 3, 0, 0]),
    ...Object.entries(params).map(([k, v]) => Buffer.from(`${k}\0${v}\0`)),
    Buffer.from([0]),
  ]);
  const len = Buffer.alloc(4);
  len.writeInt32BE(body.length + 4);
  return Buffer.concat([len, body]);
}

/** Query ('Q') with one NUL-terminated statement. */
export function query(text: string): Buffer {
  const body = Buffer.from(`${text}\0`);
  const h = Buffer.alloc(5);
  h[0] = 0x51;
  h.writeInt32BE(body.length + 4, 1);
  return Buffer.concat([h, body]);
}
