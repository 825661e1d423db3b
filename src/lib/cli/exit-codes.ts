// Documented exit codes, shared by every command (README: "Exit codes").
export const EXIT = {
  /** Found / done. */
  OK: 0,
  /** Not found (as postmap -q: no key of the request was found). */
  NOT_FOUND: 1,
  /** Usage or configuration error: bad flags, unreadable main.cf, malformed table name. */
  USAGE: 2,
  /** DENY: the service is not configured (approved) for the table. */
  DENY: 3,
  /** RETRY: temporary failure; the table or its backend is unavailable. */
  RETRY: 4,
  /** BAD or CONFIG: the request was invalid or the table itself is misconfigured. */
  BAD: 5,
  /** The service could not be reached or spoke something other than the proxymap protocol. */
  UNAVAILABLE: 6,
} as const
