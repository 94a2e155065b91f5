// The pure consensus core's public surface, for drivers (the simulator's and the real per-timeline loop).
// Re-exports only; must never grow logic or import node:*.

export * from './acceptor.js';
export * from './commit_lsn.js';
export * from './donor_choice.js';
export * from './peer_recovery.js';
export * from './proposer.js';
export * from './proposer_wal_buffer.js';
export * from './protocol_errors.js';
export * from './protocol_messages.js';
export * from './term_history.js';
