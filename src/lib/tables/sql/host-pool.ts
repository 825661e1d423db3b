// The connection handling shared by mysql and pgsql: Postfix's host list semantics
// (dict_mysql.c / dict_pgsql.c "plmysql"/"plpgsql") on top of a small driver pool per host.
//
// Postfix keeps at most one connection per host and uses one host at a time: an active
// host (UNIX-domain ones first, then inet, random among equals), else an untried host or one
// whose failure is older than 60 s. A connect or query failure marks the host down for 60 s
// and the lookup moves on to the next host; when none is left the lookup is a RETRY. A
// connection idle for 60 s is closed.
//
// We do the same per table, but let concurrent lookups share the active host through a
// driver pool, which opens connections on demand and closes them when idle for 60 s.
// UPPER BOUND: a table holds at most `maxConnections` (main.cf
// proxymap_backend_connection_limit, default 20: backend-pool.ts) connections to its active
// host, and a host that is abandoned (marked down or idle) has its pool ended, so one open
// mysql/pgsql table never holds more than that many server connections (plus, for a moment,
// the ones of a pool that is being ended). Since the proxymap service shares one open table per name and flags,
// that bounds what a whole server holds per table.

import type {MainConfig} from '../../config/index.js'
import {backendConnectionLimit, DEFAULT_BACKEND_CONNECTION_LIMIT} from '../backend-pool.js'
import {TableError, TableLog, type PoolStats} from '../table.js'

/** Postfix RETRY_CONN_INTV: how long a failed host is left alone. */
export const SQL_HOST_RETRY_INTERVAL_MS = 60_000
/** Postfix IDLE_CONN_INTV: an unused connection is closed after this long. */
export const SQL_IDLE_INTERVAL_MS = 60_000
/** Our per-lookup time limit (Postfix has none and blocks): past it the lookup is a RETRY. */
export const SQL_LOOKUP_TIMEOUT_MS = 30_000
export const SQL_CONNECT_TIMEOUT_MS = 10_000

export interface SqlPoolLimits {
  maxConnections: number
  retryIntervalMs: number
  idleIntervalMs: number
  lookupTimeoutMs: number
  connectTimeoutMs: number
}

/** The limits of a table opened with `config`; `limits` (tests) override them. */
export function sqlPoolLimits(config: MainConfig, log: TableLog, limits: Partial<SqlPoolLimits>): SqlPoolLimits {
  return {...DEFAULT_SQL_POOL_LIMITS, maxConnections: backendConnectionLimit(config, log), ...limits}
}

export const DEFAULT_SQL_POOL_LIMITS: SqlPoolLimits = {
  maxConnections: DEFAULT_BACKEND_CONNECTION_LIMIT,
  retryIntervalMs: SQL_HOST_RETRY_INTERVAL_MS,
  idleIntervalMs: SQL_IDLE_INTERVAL_MS,
  lookupTimeoutMs: SQL_LOOKUP_TIMEOUT_MS,
  connectTimeoutMs: SQL_CONNECT_TIMEOUT_MS,
}

/** One row: the values to expand with result_format (null: SQL NULL, skipped). */
export type SqlRow = readonly (string | null)[]

/** A driver pool connected to one host. Error messages must never contain the password. */
export interface HostConnection {
  query(sql: string, timeoutMs: number): Promise<readonly SqlRow[]>
  /** Close once the queries in progress are done. */
  end(): Promise<void>
  /** Close now: the queries in progress fail (the table is closing). */
  destroy(): Promise<void>
  /** Counted around our own driver calls: see PoolStats. */
  stats(): PoolStats
}

export interface HostSpec {
  /** As written in `hosts` (for messages). */
  readonly spec: string
  readonly unix: boolean
}

interface HostState<H extends HostSpec> {
  host: H
  status: 'untried' | 'fail' | 'active'
  retryAt: number
  connection?: HostConnection
  connecting?: Promise<HostConnection>
  idleTimer?: NodeJS.Timeout
}

/** A query error: the host is marked down (as Postfix does) and the next host is tried. */
export class HostQueryError extends Error {}

export class HostPool<H extends HostSpec> {
  private readonly states: HostState<H>[]
  private closed = false
  /** Queries waiting for a host's driver pool to log in. */
  private waitingForHost = 0

  constructor(
    hosts: readonly H[],
    private readonly connect: (host: H) => Promise<HostConnection>,
    /** "connect to mysql server HOST: ..." */
    private readonly connectFailure: (host: H, err: unknown) => string,
    private readonly log: TableLog,
    readonly limits: SqlPoolLimits,
  ) {
    this.states = hosts.map((host) => ({host, status: 'untried', retryAt: 0}))
  }

  /** Run one query on the active host, failing over as Postfix does; RETRY when no host answers. */
  async query(sql: string): Promise<readonly SqlRow[]> {
    for (let attempts = 0; attempts < 100 && !this.closed; attempts++) {
      const state = this.pick()
      if (!state) break
      let connection: HostConnection
      this.waitingForHost++
      try {
        connection = await this.connection(state)
      } catch (err) {
        this.log.warning(this.connectFailure(state.host, err))
        this.down(state)
        continue
      } finally {
        this.waitingForHost--
      }
      try {
        const rows = await connection.query(sql, this.limits.lookupTimeoutMs)
        this.touch(state)
        return rows
      } catch (err) {
        if (err instanceof TableError) throw err
        if (this.closed) break // the table closed under the query: no host is at fault
        this.log.warning(err instanceof Error ? err.message : String(err))
        this.down(state)
      }
    }
    throw new TableError('retry', 'no database server is available')
  }

  /**
   * The connections of the host in use, plus the one that a host being tried is opening
   * (its driver pool logs in once before any query runs); queries waiting for that are queued.
   */
  poolStats(): PoolStats {
    const total: PoolStats = {connections: 0, busy: 0, queued: this.waitingForHost}
    for (const state of this.states) {
      if (state.connecting) total.connections++
      const c = state.connection?.stats()
      if (!c) continue
      total.connections += c.connections
      total.busy += c.busy
      total.queued += c.queued
    }
    return total
  }

  private pick(): HostState<H> | undefined {
    const now = Date.now()
    const choose = (ok: (s: HostState<H>) => boolean): HostState<H> | undefined => {
      for (const unix of [true, false]) {
        const candidates = this.states.filter((s) => s.host.unix === unix && ok(s))
        if (candidates.length > 0) return candidates[Math.floor(Math.random() * candidates.length)]
      }
      return undefined
    }
    return choose((s) => s.status === 'active')
      ?? choose((s) => s.status === 'untried' || (s.status === 'fail' && s.retryAt <= now))
  }

  private connection(state: HostState<H>): Promise<HostConnection> {
    if (state.connection) return Promise.resolve(state.connection)
    state.connecting ??= this.connect(state.host).then((c) => {
      state.connecting = undefined
      if (this.closed) {
        void c.end().catch(() => {})
        throw new TableError('retry', 'table closed')
      }
      state.connection = c
      state.status = 'active'
      return c
    }, (err: unknown) => {
      state.connecting = undefined
      throw err
    })
    return state.connecting
  }

  private touch(state: HostState<H>): void {
    if (state.idleTimer) state.idleTimer.refresh()
    else {
      state.idleTimer = setTimeout(() => this.release(state, 'untried'), this.limits.idleIntervalMs)
      state.idleTimer.unref()
    }
  }

  private down(state: HostState<H>): void {
    this.release(state, 'fail')
    state.retryAt = Date.now() + this.limits.retryIntervalMs
  }

  private release(state: HostState<H>, status: 'untried' | 'fail'): void {
    if (state.idleTimer) clearTimeout(state.idleTimer)
    state.idleTimer = undefined
    const c = state.connection
    state.connection = undefined
    state.status = status
    if (c) void c.end().catch(() => {})
  }

  /** The table closes: no request uses it any more, or the process is stopping. */
  async close(): Promise<void> {
    this.closed = true
    const ends = this.states.map((s) => {
      const c = s.connection
      if (s.idleTimer) clearTimeout(s.idleTimer)
      s.connection = undefined
      return c?.destroy().catch(() => {})
    })
    await Promise.all(ends)
  }
}

/** Reject with a RETRY TableError when `promise` takes longer than `ms`. */
export function withTimeLimit<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const limit = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TableError('retry', `${what}: time limit exceeded`)), ms)
    // only a lookup in progress waits on it, and that lookup holds its own socket
    timer.unref()
  })
  return Promise.race([promise, limit]).finally(() => clearTimeout(timer))
}

/**
 * Prove that a fresh driver pool can connect and log in (take one connection and give it
 * back); a pool that cannot is ended and the error rethrown, so the host is marked down.
 */
export async function checkedPool<P extends {end(): Promise<void>}>(pool: P, take: (pool: P) => Promise<{release(): void}>): Promise<P> {
  try {
    ;(await take(pool)).release()
    return pool
  } catch (err) {
    await pool.end().catch(() => {})
    throw err
  }
}
