// socketmap:inet:host:port:name and socketmap:unix:/path:name — Sendmail socketmap client
// (Postfix dict_sockmap.c; socketmap_table(5)). Request: netstring "name SP key"; reply:
// netstring "OK value", "NOTFOUND ", or "TEMP|TIMEOUT|PERM reason" (TEMP, TIMEOUT and
// unknown replies are RETRY, PERM a config error). Keys are lowercased when FOLD_MUL is set.
//
// Connections: Postfix keeps one connection per server (closed after 10 s idle or 100 s of
// life) in each proxymap process, and sends one request at a time on it. We do the same per
// connection, and open connections on demand up to proxymap_backend_connection_limit per
// server (backend-pool.ts), shared by every table that names it; further requests wait in
// order; identical lookups of one table in flight at once are one request. A request that
// takes longer than the time limit (Postfix: 100 s; `socketmapTypeWith({timeoutMs})`) is a
// RETRY and its connection is dropped. A server that hangs up before it answers gets the request
// once more on a new connection, as Postfix does. Replies are C strings to Postfix: a NUL
// byte ends them.

import * as net from 'node:net'
import {DICT_FLAG} from '../protocol/constants.js'
import {activateUtf8, lowercaseAscii, needUtf8Activation} from './fold.js'
import {ObservablePool, OpenOptions, PoolStats, Table, TableError, TableLog, TableType} from './table.js'
import {strerror} from './source-file.js'
import {backendConnectionLimit, FairSlots, IdleConnections, InFlightLookups} from './backend-pool.js'

export const SOCKETMAP_TIMEOUT_MS = 100_000
export const SOCKETMAP_MAX_REPLY = 100_000
export const SOCKETMAP_MAX_IDLE_MS = 10_000
export const SOCKETMAP_MAX_TTL_MS = 100_000

/** A reply parser: the reply and how many bytes it used, undefined when more is needed. Throws on garbage. */
export type ReplyParser<T> = (buf: Buffer) => {value: T; used: number} | undefined

/** Thrown when the server closed the connection before a complete reply. */
export class StreamEofError extends Error {}

/** Thrown by a pool that has been closed (the tables using it are closing): the lookup is a RETRY. */
export class StreamClosedError extends Error {
  constructor(endpoint: string) {
    super(`connection to ${endpoint} closed: the table is closing`)
  }
}

/** Thrown when the server cannot be reached; `code` is the errno name (ETIMEDOUT for our time limit). */
export class StreamConnectError extends Error {
  constructor(message: string, readonly code: string | undefined) {
    super(message)
  }
}

class StreamConnection {
  private buffer: Buffer = Buffer.alloc(0)
  private waiter?: () => void
  private failure?: Error
  readonly born = Date.now()
  lastUsed = Date.now()

  constructor(readonly socket: net.Socket) {
    socket.on('data', (d: Buffer) => {
      this.buffer = this.buffer.length === 0 ? d : Buffer.concat([this.buffer, d])
      this.waiter?.()
    })
    const fail = (err: Error): void => {
      this.failure ??= err
      this.waiter?.()
    }
    socket.on('error', fail)
    socket.on('close', () => fail(new StreamEofError(NETSTRING_ERROR.eof)))
  }

  get usable(): boolean {
    return this.failure === undefined && !this.socket.destroyed
  }

  async request<T>(data: Buffer, parse: ReplyParser<T>, timeoutMs: number): Promise<T> {
    this.buffer = Buffer.alloc(0)
    this.socket.write(data)
    let timer: NodeJS.Timeout | undefined
    try {
      return await new Promise<T>((resolve, reject) => {
        timer = setTimeout(() => reject(new Error(NETSTRING_ERROR.time)), timeoutMs)
        const check = (): void => {
          try {
            const r = parse(this.buffer)
            if (r) {
              this.buffer = this.buffer.subarray(r.used)
              this.waiter = undefined
              resolve(r.value)
            } else if (this.failure) {
              reject(this.failure)
            }
          } catch (err) {
            reject(err as Error)
          }
        }
        this.waiter = check
        check()
      })
    } finally {
      clearTimeout(timer)
      this.waiter = undefined
      this.lastUsed = Date.now()
    }
  }

  close(): void {
    this.socket.destroy()
  }
}

/** `inet:host:port`, `unix:/path`, `host:port` (inet) or a bare path (unix). */
export function connectOptions(endpoint: string): net.NetConnectOpts {
  let e = endpoint
  if (e.startsWith('unix:')) return {path: e.slice(5)}
  if (e.startsWith('inet:')) e = e.slice(5)
  else if (e.startsWith('/')) return {path: e}
  const colon = e.lastIndexOf(':')
  let host = colon >= 0 ? e.slice(0, colon) : e
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1)
  return {host: host || 'localhost', port: Number(e.slice(colon + 1))}
}

/**
 * Connections to one server, opened on demand up to `max` (backend-pool.ts); requests
 * beyond that wait in order. Idle connections are closed after `maxIdleMs`, and none is
 * reused after `maxTtlMs`.
 */
export class StreamClientPool implements ObservablePool {
  private readonly idle: IdleConnections<StreamConnection>
  private readonly slots: FairSlots
  /** Every open or opening socket, busy ones included: close() ends them all. */
  private readonly sockets = new Set<net.Socket>()
  private closed = false
  /** Pauses between tries (pause()), cut short by close(). */
  private readonly pauses = new Set<() => void>()

  constructor(
    readonly endpoint: string,
    private readonly limits: {max: number; maxIdleMs: number; maxTtlMs: number; timeoutMs: number},
  ) {
    this.slots = new FairSlots(limits.max)
    this.idle = new IdleConnections({idleMs: limits.maxIdleMs, ttlMs: limits.maxTtlMs}, (c) => c.usable, (c) => c.close())
  }

  /**
   * Send one request and parse its reply. `retryEof` says when a server that hangs up
   * without answering gets the request once more on a new connection: 'stale' only when the
   * connection was an idle one, 'always' as dict_sockmap.c does (a fresh connection too: the
   * peer receives the request twice), 'never' when the caller counts its own tries.
   */
  async request<T>(data: Buffer, parse: ReplyParser<T>, retryEof: 'stale' | 'always' | 'never' = 'stale'): Promise<T> {
    try {
      await this.slots.acquire()
    } catch {
      throw new StreamClosedError(this.endpoint)
    }
    try {
      for (let attempt = 0; ; attempt++) {
        if (this.closed) throw new StreamClosedError(this.endpoint)
        const reused = this.idle.take()
        const conn = reused ?? await this.connect()
        try {
          const value = await conn.request(data, parse, this.limits.timeoutMs)
          if (conn.usable && !this.closed) this.idle.put(conn)
          else conn.close()
          return value
        } catch (err) {
          conn.close()
          if (this.closed) throw new StreamClosedError(this.endpoint)
          const retry = retryEof === 'always' || (retryEof === 'stale' && reused !== undefined)
          if (retry && attempt === 0 && err instanceof StreamEofError) continue
          throw err
        }
      }
    } finally {
      this.slots.release()
    }
  }

  stats(): PoolStats {
    return {connections: this.sockets.size, busy: this.slots.inUse, queued: this.slots.waiting}
  }

  private connect(): Promise<StreamConnection> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(connectOptions(this.endpoint))
      this.sockets.add(socket)
      socket.once('close', () => this.sockets.delete(socket))
      const timer = setTimeout(() => {
        socket.destroy()
        reject(new StreamConnectError(NETSTRING_ERROR.time, 'ETIMEDOUT'))
      }, this.limits.timeoutMs)
      socket.once('connect', () => {
        clearTimeout(timer)
        socket.removeAllListeners('error')
        resolve(new StreamConnection(socket))
      })
      socket.once('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(timer)
        reject(new StreamConnectError(err.message, err.code))
      })
    })
  }

  /** Wait `ms` between tries; close() ends the wait at once. */
  pause(ms: number): Promise<void> {
    if (this.closed) return Promise.resolve()
    return new Promise((resolve) => {
      const done = (): void => {
        clearTimeout(timer)
        this.pauses.delete(done)
        resolve()
      }
      const timer = setTimeout(done, ms)
      this.pauses.add(done)
    })
  }

  /**
   * End every connection, idle or busy (a request in progress fails with StreamClosedError),
   * and refuse further requests: nothing of the pool is left to hold the process.
   */
  close(): void {
    this.closed = true
    this.idle.close()
    for (const socket of this.sockets) socket.destroy()
    this.slots.close()
    for (const done of [...this.pauses]) done()
  }
}

/**
 * Pools shared by every table that names the same server (Postfix: one connection per
 * server for the process); a pool is closed when the last table using it closes.
 */
export class SharedStreamPools {
  private readonly pools = new Map<string, {pool: StreamClientPool; users: number}>()

  acquire(key: string, create: () => StreamClientPool): {pool: StreamClientPool; release: () => void} {
    let entry = this.pools.get(key)
    if (!entry) {
      entry = {pool: create(), users: 0}
      this.pools.set(key, entry)
    }
    entry.users++
    const held = entry
    let released = false
    return {
      pool: held.pool,
      release: () => {
        if (released) return
        released = true
        if (--held.users > 0) return
        held.pool.close()
        if (this.pools.get(key) === held) this.pools.delete(key)
      },
    }
  }
}

/** netstring "LEN:DATA," */
export function encodeNetstring(payload: string): Buffer {
  const body = Buffer.from(payload, 'latin1')
  return Buffer.concat([Buffer.from(`${body.length}:`), body, Buffer.from(',')])
}

/** Postfix netstring_strerror() texts, which its warnings print. */
export const NETSTRING_ERROR = {
  eof: 'unexpected disconnect',
  time: 'time limit exceeded',
  format: 'input format error',
  size: 'input exceeds size limit',
}

/** Largest length netstring_get_length() accepts before it reports an overflow (SSIZE_T_MAX). */
const SSIZE_MAX = 9_223_372_036_854_775_807n

export function netstringParser(maxLength: number): ReplyParser<string> {
  return (buf) => {
    const colon = buf.indexOf(0x3a)
    const digits = buf.subarray(0, colon < 0 ? buf.length : colon).toString('latin1')
    if (!/^\d*$/.test(digits)) throw new Error(NETSTRING_ERROR.format)
    // Postfix stops with a size error as soon as the digits overflow, colon or not
    const stripped = digits.replace(/^0+/, '')
    if (stripped.length > 19 || (stripped.length === 19 && BigInt(stripped) > SSIZE_MAX)) throw new Error(NETSTRING_ERROR.size)
    if (colon < 0) return undefined
    // an empty length is 0 to Postfix, not an error
    const len = stripped.length > 15 ? Infinity : Number(stripped || '0')
    if (len > maxLength) throw new Error(NETSTRING_ERROR.size)
    if (buf.length < colon + 1 + len + 1) return undefined
    if (buf[colon + 1 + len] !== 0x2c) throw new Error(NETSTRING_ERROR.format)
    return {value: buf.subarray(colon + 1, colon + 1 + len).toString('latin1'), used: colon + 2 + len}
  }
}

/** Postfix reads replies into C strings: whatever follows a NUL byte is lost. */
export const cString = (s: string): string => {
  const nul = s.indexOf('\0')
  return nul < 0 ? s : s.slice(0, nul)
}

/**
 * Postfix printable() with UTF-8 enabled (util_utf8_enable, the 3.x default): valid UTF-8
 * sequences and printable ASCII stay, every other byte becomes `replacement`.
 */
export function printableUtf8(s: string, replacement: string): string {
  let out = ''
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c >= 0x20 && c < 0x7f) {
      out += s[i]
      continue
    }
    const need = c >= 0xc2 && c <= 0xdf ? 1 : c >= 0xe0 && c <= 0xef ? 2 : c >= 0xf0 && c <= 0xf4 ? 3 : -1
    let ok = need > 0 && i + need < s.length
    for (let j = 1; ok && j <= need; j++) ok = (s.charCodeAt(i + j) & 0xc0) === 0x80
    if (ok) {
      out += s.slice(i, i + need + 1)
      i += need
    } else {
      out += replacement
    }
  }
  return out
}

const CONNECT_ERRORS: Record<string, string> = {
  ECONNREFUSED: 'Connection refused',
  ECONNRESET: 'Connection reset by peer',
  ETIMEDOUT: 'Connection timed out',
  EHOSTUNREACH: 'No route to host',
  ENETUNREACH: 'Network is unreachable',
  EPIPE: 'Broken pipe',
  EADDRNOTAVAIL: 'Cannot assign requested address',
}

/** What Postfix's %m prints for a socket error (or the netstring text for our own errors). */
export function socketErrorText(err: Error): string {
  if (err instanceof StreamEofError) return NETSTRING_ERROR.eof
  const code = (err as NodeJS.ErrnoException).code
  if (code) return CONNECT_ERRORS[code] ?? strerror(err)
  return err.message
}

/** Server connections shared by every socketmap table of the process (Postfix: one per server). */
const pools = new SharedStreamPools()

class SocketmapTable implements Table {
  readonly type = 'socketmap'
  flags: number
  private readonly inFlight = new InFlightLookups<string | undefined>()

  constructor(readonly name: string, dictFlags: number, private readonly pool: StreamClientPool,
    private readonly mapName: string, private readonly log: TableLog, private readonly maxReply: number,
    private readonly releasePool: () => void) {
    this.flags = dictFlags | DICT_FLAG.PATTERN
  }

  close(): void {
    this.releasePool()
  }

  poolStats(): PoolStats {
    return this.pool.stats()
  }

  lookup(key: string): Promise<string | undefined> {
    const k = this.flags & DICT_FLAG.FOLD_MUL ? lowercaseAscii(key) : key
    return this.inFlight.run(k, () => this.query(k))
  }

  private async query(k: string): Promise<string | undefined> {
    let reply: string
    try {
      reply = await this.pool.request(encodeNetstring(`${this.mapName} ${k}`), netstringParser(this.maxReply), 'always')
    } catch (err) {
      if (err instanceof StreamClosedError) throw new TableError('retry', `table socketmap:${this.name}: ${err.message}`)
      // Postfix's auto_clnt says first which endpoint it could not reach
      if (err instanceof StreamConnectError) this.log.warning(`connect to ${this.pool.endpoint.replace(/^[^:]*:/, '')}: ${socketErrorText(err)}`)
      const message = `table socketmap:${this.name} lookup error: ${socketErrorText(err as Error)}`
      this.log.warning(message)
      throw new TableError('retry', message)
    }
    reply = cString(reply)
    const sp = reply.indexOf(' ')
    const status = sp < 0 ? reply : reply.slice(0, sp)
    const payload = sp < 0 ? undefined : reply.slice(sp + 1)
    if (status === 'OK') return payload
    if (status === 'NOTFOUND') return undefined
    const errorClass = {TEMP: 'temporary', TIMEOUT: 'timeout', PERM: 'permanent'}[status] ?? 'unknown'
    const text = (payload ?? '').replace(/^[ \t\n\r\f\v]+/, '')
    const message = `socketmap:${this.name} socketmap server ${errorClass} error${text ? `: ${printableUtf8(text, '?').slice(0, 200)}` : ''}`
    this.log.warning(message)
    throw new TableError(status === 'PERM' ? 'config' : 'retry', message)
  }
}

export interface StreamTableLimits {
  timeoutMs: number
  /** Connections per server; else main.cf proxymap_backend_connection_limit. */
  maxConnections: number
  /** How long an unused connection stays open. */
  maxIdleMs: number
}

export function socketmapTypeWith(limits: Partial<StreamTableLimits> = {}): TableType {
  const timeoutMs = limits.timeoutMs ?? SOCKETMAP_TIMEOUT_MS
  const maxIdleMs = limits.maxIdleMs ?? SOCKETMAP_MAX_IDLE_MS
  return {
    type: 'socketmap',
    open(name: string, options: OpenOptions): Table {
      if (options.mode !== 'read') throw new TableError('config', `socketmap:${name} map requires O_RDONLY access mode`)
      if (options.dictFlags & DICT_FLAG.NO_UNAUTH)
        throw new TableError('config', `socketmap:${name} map is not allowed for security-sensitive data`)
      const colon = name.lastIndexOf(':')
      if (colon < 0) throw new TableError('config', 'socketmap requires server:socketmap argument')
      const endpoint = name.slice(0, colon)
      const max = limits.maxConnections ?? backendConnectionLimit(options.config, options.log)
      const poolKey = `${endpoint}\0${timeoutMs}\0${max}\0${maxIdleMs}`
      const {pool, release} = pools.acquire(poolKey, () =>
        new StreamClientPool(endpoint, {max, maxIdleMs, maxTtlMs: SOCKETMAP_MAX_TTL_MS, timeoutMs}))
      const table = new SocketmapTable(name, options.dictFlags, pool, name.slice(colon + 1), options.log, SOCKETMAP_MAX_REPLY, release)
      return needUtf8Activation(options.config, options.dictFlags) ? activateUtf8(table, options.log) : table
    },
  }
}

export const socketmapType: TableType = socketmapTypeWith()
