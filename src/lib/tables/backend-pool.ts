// Backend concurrency shared by the connection-oriented tables (socketmap, tcp, memcache,
// mysql, pgsql, ldap).
//
// Postfix runs one proxymap process per client, each with its own backend connection, so a
// slow backend is queried by as many connections as there are busy clients. One process of
// ours serves every client, so it needs the same on demand: connections are opened when a
// request finds none free, up to `proxymap_backend_connection_limit` per table (per server
// for the stream tables), and closed after they have been idle for the table's idle time;
// requests beyond the limit wait in arrival order (a freed connection goes to the longest
// waiter, never to a newcomer). Identical lookups of one table that are in flight at once
// are answered by one backend query (its answer, or its error, goes to each of them, as
// separate queries would have answered), so the connections in use never outnumber the
// distinct lookups in progress.

import type {MainConfig} from '../config/index.js'
import type {TableLog} from './table.js'

export const BACKEND_CONNECTION_LIMIT_PARAMETER = 'proxymap_backend_connection_limit'
/** As many as the clients of a busy proxymap(8) under master(8), with some room. */
export const DEFAULT_BACKEND_CONNECTION_LIMIT = 20

/** main.cf proxymap_backend_connection_limit; a value that is not a positive integer is warned about and the default used. */
export function backendConnectionLimit(config: MainConfig, log?: TableLog): number {
  const raw = config.get(BACKEND_CONNECTION_LIMIT_PARAMETER).trim()
  if (raw === '') return DEFAULT_BACKEND_CONNECTION_LIMIT
  const n = /^\d{1,6}$/.test(raw) ? Number(raw) : 0
  if (n >= 1) return n
  log?.warning(`bad numerical configuration: ${BACKEND_CONNECTION_LIMIT_PARAMETER} = ${raw}; using ${DEFAULT_BACKEND_CONNECTION_LIMIT}`)
  return DEFAULT_BACKEND_CONNECTION_LIMIT
}

/** Thrown to the waiters of FairSlots.acquire() when the slots are closed. */
export class SlotsClosedError extends Error {}

/**
 * At most `limit` holders at once; the others wait in a FIFO queue and a released slot is
 * handed straight to the first of them.
 */
export class FairSlots {
  private held = 0
  private readonly queue: {grant: () => void; refuse: (err: Error) => void}[] = []
  private closed = false

  constructor(readonly limit: number) {}

  get inUse(): number {
    return this.held
  }

  get waiting(): number {
    return this.queue.length
  }

  acquire(): Promise<void> {
    if (this.closed) return Promise.reject(new SlotsClosedError('closed'))
    if (this.held < this.limit) {
      this.held++
      return Promise.resolve()
    }
    return new Promise((grant, refuse) => this.queue.push({grant, refuse}))
  }

  release(): void {
    const next = this.queue.shift()
    if (next) next.grant()
    else this.held--
  }

  /** Refuse every waiter and every later acquire(); the holders release as usual. */
  close(): void {
    this.closed = true
    for (const w of this.queue.splice(0)) w.refuse(new SlotsClosedError('closed'))
  }
}

/**
 * Idle connections, the most recently used taken first (so that the others reach their
 * idle time and are closed when demand falls), each closed once idle for `idleMs` or older
 * than `ttlMs`.
 */
export class IdleConnections<C extends {readonly born: number; lastUsed: number}> {
  private readonly idle: C[] = []
  private timer?: NodeJS.Timeout

  constructor(
    private readonly limits: {idleMs: number; ttlMs: number},
    private readonly usable: (c: C) => boolean,
    private readonly closeConnection: (c: C) => void,
  ) {}

  get size(): number {
    return this.idle.length
  }

  private fresh(c: C, now: number): boolean {
    return this.usable(c) && now - c.lastUsed < this.limits.idleMs && now - c.born < this.limits.ttlMs
  }

  take(): C | undefined {
    const now = Date.now()
    for (let c = this.idle.pop(); c; c = this.idle.pop()) {
      if (this.fresh(c, now)) return c
      this.closeConnection(c)
    }
    return undefined
  }

  put(c: C): void {
    c.lastUsed = Date.now()
    this.idle.push(c)
    if (this.timer) return
    this.timer = setInterval(() => this.sweep(), Math.max(100, Math.min(this.limits.idleMs, 1000)))
    this.timer.unref()
  }

  private sweep(): void {
    const now = Date.now()
    for (let i = this.idle.length - 1; i >= 0; i--) {
      const c = this.idle[i]!
      if (!this.fresh(c, now)) {
        this.closeConnection(c)
        this.idle.splice(i, 1)
      }
    }
    if (this.idle.length === 0) this.stop()
  }

  private stop(): void {
    if (this.timer) clearInterval(this.timer)
    this.timer = undefined
  }

  close(): void {
    this.stop()
    for (const c of this.idle.splice(0)) this.closeConnection(c)
  }
}

/**
 * Lookups in flight by key: a lookup of a key that is being looked up already gets that
 * lookup's promise. Only for lookups of one table; an update or delete calls forgetAll(),
 * so that lookups after it query the backend afresh.
 */
export class InFlightLookups<T> {
  private readonly running = new Map<string, Promise<T>>()

  get size(): number {
    return this.running.size
  }

  run(key: string, lookup: () => Promise<T>): Promise<T> {
    const existing = this.running.get(key)
    if (existing) return existing
    const started = (async () => lookup())().finally(() => {
      if (this.running.get(key) === started) this.running.delete(key)
    })
    this.running.set(key, started)
    return started
  }

  forgetAll(): void {
    this.running.clear()
  }
}
