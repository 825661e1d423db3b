// The stats socket of a standalone `proxymap serve`: next to the service sockets in
// $queue_directory/private/, so the private/ directory decides who may read it, as it
// decides who may use the services. The protocol is the smallest that can work: connect,
// read one JSON document (a StatsSnapshot) until the server closes. Nothing is read from
// the client; whatever it sends is discarded.

import net from 'node:net'
import {serviceSocketPath} from '../client/service-client.js'
import type {MainConfig} from '../config/index.js'
import type {Logger} from '../log/logger.js'
import type {ProxymapService, ServiceKind} from './proxymap-service.js'
import type {StatsSnapshot} from './stats.js'

/** How the stats socket is named: after the first service the server runs. */
export const STATS_SOCKET_SUFFIX = '.stats'

/** Where a standalone server running `kinds` listens for stats. */
export function statsSocketPath(config: MainConfig, kinds: readonly ServiceKind[]): string {
  return `${serviceSocketPath(config, kinds[0] ?? 'read')}${STATS_SOCKET_SUFFIX}`
}

/** Where to look for a server's stats socket: that of a server with both services (or only proxymap), then one with only proxywrite. */
export function statsSocketCandidates(config: MainConfig): string[] {
  return [statsSocketPath(config, ['read']), statsSocketPath(config, ['write'])]
}

/** At most this many stats clients at once; more are closed at once (the server's memory stays bounded). */
export const MAX_STATS_CLIENTS = 16
/** A stats client that does not take its document within this time is dropped. */
export const STATS_CLIENT_TIMEOUT_MS = 10_000

export interface ServedService {
  service: ProxymapService
  socket: string
}

export function statsSnapshot(services: readonly ServedService[], startedAt: number, now = Date.now()): StatsSnapshot {
  return {
    pid: process.pid,
    startedAt: new Date(startedAt).toISOString(),
    uptimeSeconds: (now - startedAt) / 1000,
    services: services.map(({service, socket}) => {
      const {stats} = service
      return {
        service: service.kind === 'read' ? 'proxymap' : 'proxywrite',
        socket,
        ...stats.all.snapshot(),
        badRequests: stats.badRequests,
        unrecognizedRequests: stats.unrecognizedRequests,
        malformedInput: stats.malformedInput,
        openInstances: service.openInstances,
        connections: {accepted: stats.connectionsAccepted, ...service.connectionStats(now)},
        tables: service.tableStats(),
      }
    }),
  }
}

/** A stats server for `snapshot`; not yet listening. It never reads what clients send. */
export function createStatsServer(snapshot: () => StatsSnapshot, log: Logger): net.Server {
  let clients = 0
  const server = net.createServer(socket => {
    socket.on('error', () => socket.destroy())
    if (clients >= MAX_STATS_CLIENTS) {
      socket.destroy()
      return
    }
    clients++
    socket.once('close', () => { clients-- })
    socket.setTimeout(STATS_CLIENT_TIMEOUT_MS, () => socket.destroy())
    socket.resume() // discard input, so that a client that writes cannot fill our buffers
    let document: string
    try {
      document = `${JSON.stringify(snapshot())}\n`
    } catch (err) {
      log.warning(`stats: ${(err as Error).message}`)
      socket.destroy()
      return
    }
    socket.end(document)
  })
  server.on('error', err => log.warning(`stats socket: ${err.message}`))
  return server
}
