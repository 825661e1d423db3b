// Stopping a server process (SIGTERM/SIGINT, master gone, max_idle, max_use): stop
// accepting, let the requests in progress finish for a moment and answer RETRY to the rest,
// end the connections, close every table (and with them their pools, sockets and timers).
// Postfix's proxymap simply dies on SIGTERM, and its clients, seeing the connection end,
// retry until a server is back; a RETRY answer lets them give up at once instead.

import type net from 'node:net'
import type {Logger} from '../log/logger.js'
import type {ServedConnection} from './connection.js'
import type {ProxymapService} from './proxymap-service.js'

/** How long requests in progress get to finish before they are answered RETRY. */
export const IN_FLIGHT_GRACE_MS = 1000
/** How long a client gets to read its last answers and hang up before its connection is dropped. */
export const HANG_UP_GRACE_MS = 100
/** Past this, counted from the stop, the process exits whatever still holds it. */
export const EXIT_DEADLINE_MS = 1500

function delay(ms: number): Promise<void> {
  return new Promise(resolve => setTimeout(resolve, ms).unref())
}

/** The services of one process and the connections they serve. */
export class ServiceGroup {
  readonly connections = new Map<net.Socket, ServedConnection>()
  readonly services: ProxymapService[] = []
  private stopping?: Promise<void>

  get connectionCount(): number {
    return this.connections.size
  }

  /** Stop `servers` and everything they serve; resolves once every table has closed. Idempotent. */
  shutdown(servers: readonly net.Server[]): Promise<void> {
    this.stopping ??= this.stop(servers)
    return this.stopping
  }

  private async stop(servers: readonly net.Server[]): Promise<void> {
    for (const server of servers) server.close()
    const served = [...this.connections]
    for (const [, connection] of served) connection.stop()
    await Promise.race([Promise.all(served.map(([, c]) => c.settled)), delay(IN_FLIGHT_GRACE_MS)])
    for (const [, connection] of served) connection.abandon()
    await Promise.race([Promise.all(served.map(([, c]) => c.closed)), delay(HANG_UP_GRACE_MS)])
    for (const [socket] of served) socket.destroy()
    await Promise.all(this.services.map(s => s.close()))
  }

  /** What has not finished closing (for the deadline's warning). */
  stillOpen(): string[] {
    const tables = [...new Set(this.services.flatMap(s => s.stillClosing()))].map(t => `table ${t}`)
    const clients = this.connections.size > 0 ? [`${this.connections.size} client connection(s)`] : []
    return [...tables, ...clients]
  }
}

/**
 * The hard deadline of a stop: if the process is still there EXIT_DEADLINE_MS after it,
 * something holds the event loop; say what, and exit anyway. The timer does not itself
 * keep the process alive.
 */
export function exitDeadline(log: Logger, group: () => string[], exit: () => void, ms = EXIT_DEADLINE_MS): NodeJS.Timeout {
  const timer = setTimeout(() => {
    const handles = new Map<string, number>()
    for (const r of process.getActiveResourcesInfo()) handles.set(r, (handles.get(r) ?? 0) + 1)
    const what = [...group(), ...[...handles].map(([r, n]) => (n > 1 ? `${r} x${n}` : r))]
    log.warning(`still open ${ms / 1000}s after the stop: ${what.join(', ') || 'unknown'} -- exiting anyway`)
    exit()
  }, ms)
  timer.unref()
  return timer
}
