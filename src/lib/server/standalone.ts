// `proxymap serve` on its own: listen where Postfix's clients look
// ($queue_directory/private/$proxymap_service_name and .../$proxywrite_service_name),
// as master(8) would have made those sockets, then run unprivileged.

import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import {AccessPolicy} from '../access/index.js'
import {serviceSocketPath} from '../client/service-client.js'
import {approvalRulesFor, type ApprovalRules, type MainConfig} from '../config/index.js'
import type {Logger} from '../log/logger.js'
import {TableRegistry, defaultRegistry} from '../tables/registry.js'
import {serveConnection} from './connection.js'
import {InputBudget} from './input-budget.js'
import {MemoryReleaser} from './memory.js'
import {dropPrivileges} from './privileges.js'
import {ProxymapService, ServiceKind} from './proxymap-service.js'
import {ServiceGroup} from './shutdown.js'
import {createStatsServer, statsSnapshot, statsSocketPath, type ServedService} from './stats-socket.js'
import type {PrometheusExporter} from './prometheus.js'

export interface StandaloneOptions {
  config: MainConfig
  log: Logger
  services: ServiceKind[]
  registry?: TableRegistry
  /** The approval rules of the configuration's Postfix release (default: 3.7's). */
  rules?: ApprovalRules
  /** Serve Prometheus metrics on this loopback HOST:PORT (see prometheus.ts). */
  prometheusListen?: string
}

export interface RunningServer {
  sockets: {kind: ServiceKind; path: string}[]
  /** Where `proxymap stats` reads this server's counters. */
  statsSocket: string
  /** HOST:PORT of the Prometheus endpoint, when there is one. */
  prometheus?: string
  /** The account the server runs as after start-up, when it started as root. */
  runsAs?: string
  /** Stop accepting, answer or fail (RETRY) the requests in progress, close every table, remove the sockets. */
  close(): Promise<void>
  /** While closing: what has not finished closing yet. */
  stillOpen(): string[]
  /**
   * SIGHUP: serve by `config` and `rules` from the next request on, keeping the sockets, the
   * connections and the open tables still approved. Throws, changing nothing, when the new
   * configuration cannot be used.
   */
  reload(config: MainConfig, rules: ApprovalRules): void
}

/** Postfix time values: a number with an optional unit (s default, m, h, d, w). */
export function parseTimeMs(value: string, defaultUnit = 's'): number {
  const m = /^(\d+)([smhdw]?)$/.exec(value.trim())
  if (!m) throw new Error(`bad time value "${value}": expected a number with an optional s, m, h, d or w unit`)
  const unit = m[2] || defaultUnit
  const seconds = {s: 1, m: 60, h: 3600, d: 86400, w: 604800}[unit]!
  return Number(m[1]) * seconds * 1000
}

async function socketInUse(socketPath: string): Promise<boolean> {
  return new Promise(resolve => {
    const probe = net.createConnection({path: socketPath})
    probe.once('connect', () => { probe.destroy(); resolve(true) })
    probe.once('error', () => resolve(false))
  })
}

/** Returns true when it had to create the socket directory. */
async function prepareSocketPath(socketPath: string): Promise<boolean> {
  const created = fs.mkdirSync(path.dirname(socketPath), {recursive: true}) !== undefined
  let stat: fs.Stats
  try {
    stat = fs.lstatSync(socketPath)
  } catch {
    return created
  }
  if (!stat.isSocket())
    throw new Error(`${socketPath} exists and is not a socket: remove it or choose another queue_directory/service name`)
  if (await socketInUse(socketPath))
    throw new Error(`a server is already listening on ${socketPath}: stop it first (postfix stop, or the other proxymap serve)`)
  fs.unlinkSync(socketPath) // stale, left by a server that was killed
  return created
}

export interface ServiceServerOptions {
  kind: ServiceKind
  config: MainConfig
  log: Logger
  registry: TableRegistry
  /** What the service approves; see approvalPolicy(). */
  policy: AccessPolicy
  /** Shared by all connections of all services of the process. */
  budget: InputBudget
  memory: MemoryReleaser
}

/**
 * What a service process approves, computed as Postfix's proxymap does at start-up (3.7:
 * after the privilege drop, 3.11: before it; either way before the first request), with the
 * warnings it logs about its list then (syntax errors, and in 3.11 unreadable /file/name
 * elements). Throws a MacroExpansionError where Postfix stops with a fatal error.
 */
export function approvalPolicy(config: MainConfig, kind: ServiceKind, rules: ApprovalRules, log: Logger): AccessPolicy {
  const policy = AccessPolicy.fromConfig(config, rules)
  for (const warning of policy.listWarnings(kind)) log.warning(warning)
  return policy
}

/** Postfix's daemon_timeout, the per-request limit (default 18000s). */
export function daemonTimeoutMs(config: MainConfig): number {
  return parseTimeMs(config.get('daemon_timeout') || '18000s')
}

/** Postfix's max_idle: how long an unused table instance stays open here. */
export function idleReleaseMs(config: MainConfig): number {
  return parseTimeMs(config.get('max_idle') || '100s')
}

/** A listening-socket server for one service (proxymap or proxywrite); not yet listening. */
export function createServiceServer(options: ServiceServerOptions, group: ServiceGroup,
  hooks: {onConnect?: () => void; onClose?: () => void} = {}): net.Server {
  const {kind, config, log, registry, policy, budget, memory} = options
  const service = new ProxymapService({kind, policy, registry, config, log, idleReleaseMs: idleReleaseMs(config)})
  group.services.push(service)
  // Half-open: a client may send its requests, shut down its side, and read the answers.
  return net.createServer({allowHalfOpen: true}, socket => {
    hooks.onConnect?.()
    service.beforeAccept()
    // Read per connection: a reload changes them for the clients that come after it.
    const ipcTimeoutMs = parseTimeMs(service.config.get('ipc_timeout'))
    const requestLimitMs = daemonTimeoutMs(service.config)
    const served = serveConnection(socket, service, {log, ipcTimeoutMs, daemonTimeoutMs: requestLimitMs, budget, onClose: () => {
      group.connections.delete(socket)
      memory.connectionClosed()
      hooks.onClose?.()
    }})
    if (!socket.destroyed) group.connections.set(socket, served)
  })
}

export async function startStandalone(options: StandaloneOptions): Promise<RunningServer> {
  const {config, log} = options
  const registry = options.registry ?? defaultRegistry
  const servers: net.Server[] = []
  const sockets: RunningServer['sockets'] = []
  const group = new ServiceGroup()
  const budget = new InputBudget()
  const memory = new MemoryReleaser()
  const createdDirs = new Set<string>()
  const served: ServedService[] = []
  const startedAt = Date.now()
  const snapshot = () => statsSnapshot(served, startedAt)
  const statsPath = statsSocketPath(config, options.services)
  let statsListening = false
  let prometheus: PrometheusExporter | undefined

  const closeAll = async (): Promise<void> => {
    memory.stop()
    const stopped = group.shutdown(servers)
    // No new client finds a socket that no longer answers.
    for (const {path: p} of sockets) {
      try { fs.unlinkSync(p) } catch { /* already gone, or the directory is not ours */ }
    }
    if (statsListening) {
      try { fs.unlinkSync(statsPath) } catch { /* already gone */ }
    }
    await Promise.all([stopped, prometheus?.close()])
  }

  const listen = async (server: net.Server, socketPath: string): Promise<void> => {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen({path: socketPath}, () => { server.off('error', reject); resolve() })
    })
    servers.push(server)
    // master(8) makes private sockets 0666; the private/ directory is the access control.
    fs.chmodSync(socketPath, 0o666)
  }

  try {
    for (const kind of options.services) {
      const socketPath = serviceSocketPath(config, kind)
      if (await prepareSocketPath(socketPath)) createdDirs.add(path.dirname(socketPath))
      const policy = approvalPolicy(config, kind, options.rules ?? approvalRulesFor('3.7'), log)
      const server = createServiceServer({kind, config, log, registry, policy, budget, memory}, group)
      await listen(server, socketPath)
      server.on('error', err => log.warning(`${socketPath}: ${err.message}`))
      sockets.push({kind, path: socketPath})
      served.push({service: group.services[group.services.length - 1], socket: socketPath})
    }
    if (await prepareSocketPath(statsPath)) createdDirs.add(path.dirname(statsPath))
    await listen(createStatsServer(snapshot, log), statsPath)
    statsListening = true
    if (options.prometheusListen) {
      // Only now: a server without the endpoint never loads prom-client.
      const {startPrometheusExporter} = await import('./prometheus.js')
      prometheus = await startPrometheusExporter(options.prometheusListen, snapshot, log)
    }
    const account = dropPrivileges(config.get('mail_owner'), account => {
      // Like Postfix's private/ directory: owned by mail_owner, so that the unprivileged
      // server can still remove its sockets when it stops.
      for (const dir of createdDirs) fs.chownSync(dir, account.uid, account.gid)
    })
    const reload = (next: MainConfig, rules: ApprovalRules): void => {
      // Every policy first (one may throw), then all of them at once.
      const policies = group.services.map(service => approvalPolicy(next, service.kind, rules, log))
      group.services.forEach((service, i) => service.reconfigure(policies[i], next, idleReleaseMs(next)))
      for (const {kind, path: current} of sockets) {
        const wanted = serviceSocketPath(next, kind)
        if (wanted !== current) log.warning(`${wanted}: the ${kind === 'read' ? 'proxymap' : 'proxywrite'} service stays on ${current} until it is restarted`)
      }
    }
    return {sockets, statsSocket: statsPath, prometheus: prometheus?.address, runsAs: account?.name, close: closeAll, stillOpen: () => group.stillOpen(), reload}
  } catch (err) {
    await closeAll()
    throw err
  }
}
