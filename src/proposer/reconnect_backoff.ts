// Reconnect delays for the proposer's safekeeper connections: exponential backoff with jitter.
// Pure arithmetic (the random draw is passed in); it must never return a delay outside [min/2, max].

export interface BackoffOptions {
  readonly minMs: number;
  readonly maxMs: number;
}

/**
 * Delay before reconnect attempt `attempt` (0 = first retry after a break): min * 2^attempt capped at
 * max, then scaled by a jitter factor in [0.5, 1) so that proposers restarted together do not retry in
 * lockstep. `random` is a draw from [0, 1).
 */
export function reconnectDelayMs(attempt: number, opts: BackoffOptions, random: number): number {
  const base = Math.min(opts.maxMs, opts.minMs * 2 ** Math.min(attempt, 30));
  return Math.max(1, Math.round(base * (0.5 + random / 2)));
}
