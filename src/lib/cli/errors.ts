import {ServiceUnavailableError} from '../client/connection.js'
import {ProtocolError} from '../protocol/index.js'
import {PROXY_STAT} from '../protocol/constants.js'
import {ProxyStatusError} from '../tables/proxy.js'
import {TableError} from '../tables/table.js'
import {EXIT} from './exit-codes.js'

/** An error meant for the person at the terminal: what went wrong and what to do. */
export class CliError extends Error {
  constructor(message: string, readonly exitCode: number, readonly hint?: string) {
    super(message)
    this.name = 'CliError'
  }
}

/** Map any failure onto a message and one of the documented exit codes. */
export function toCliError(err: unknown): CliError {
  if (err instanceof CliError) return err
  if (err instanceof ProxyStatusError) {
    if (err.status === PROXY_STAT.DENY)
      return new CliError(err.message, EXIT.DENY, 'list the table in proxy_read_maps (lookups) or proxy_write_maps (updates) in main.cf, then run "postfix reload" (or restart proxymap serve)')
    return new CliError(err.message, err.status === PROXY_STAT.RETRY ? EXIT.RETRY : EXIT.BAD, err.hint)
  }
  if (err instanceof TableError) return new CliError(err.message, err.kind === 'retry' ? EXIT.RETRY : EXIT.BAD)
  if (err instanceof ServiceUnavailableError) return new CliError(err.message, EXIT.UNAVAILABLE)
  if (err instanceof ProtocolError)
    return new CliError(err.message, EXIT.UNAVAILABLE, 'check that a proxymap service (ours or Postfix\'s) is listening on that socket, and look at its log')
  const e = err as Error
  return new CliError(e?.message ?? String(err), EXIT.USAGE)
}
