// The proposer's typed errors come from the one catalogue (src/errors.ts); this module only names the
// subset the proposer raises, so its callers can match `code` without reaching into the catalogue.

import { ErrorCodes, SafekeeperError } from '../errors.js';

export const ProposerErrorCodes = {
  STEPPED_DOWN: ErrorCodes.PROPOSER_STEPPED_DOWN,
  CLOSED: ErrorCodes.PROPOSER_CLOSED,
  INVALID_ARGUMENT: ErrorCodes.INVALID_ARGUMENT,
} as const;

/** Errors the proposer hands to its application: a SafekeeperError with one of ProposerErrorCodes. */
export { SafekeeperError as ProposerError };
