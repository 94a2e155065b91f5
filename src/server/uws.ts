// Loads uWebSockets.js (the @trufflesuite build) and refuses to run on its silent pure-JS fallback,
// which that package switches to when its native binary does not match this Node.

import { createRequire } from 'node:module';
import type * as UwsTypes from '@trufflesuite/uws-js-unofficial';

const require = createRequire(import.meta.url);
const uws = require('@trufflesuite/uws-js-unofficial') as typeof UwsTypes;

if (typeof (uws as { SSLApp?: unknown }).SSLApp !== 'function') {
  throw new Error(
    `uWebSockets.js native binary did not load for Node ${process.version} (ABI ${process.versions.modules}); refusing the JS fallback`,
  );
}

export const uWS = uws;
export type { HttpRequest, HttpResponse, TemplatedApp, WebSocket, us_listen_socket } from '@trufflesuite/uws-js-unofficial';
