// redis:/path.cf — a Redis table, which Postfix itself does not have; through proxy: every
// Postfix daemon can use it, so several MX hosts can share one postscreen cache, one
// address-verification cache and one set of lookup tables. Read-write: lookup (GET),
// update (SET, with an optional TTL), delete (DEL), first/next (SCAN + MGET).
//
// The .cf file is read as the SQL tables read theirs (sql/cf-parser.ts; or main.cf
// parameters NAME_hosts, ... for a name that is not a path). Parameters (docs in README):
//   hosts            host[:port], inet:host[:port], [ipv6]:port, unix:/path (default
//                    localhost:6379); several: failover in the order given (below)
//   sentinels        host[:port] ... of Redis Sentinels (default port 26379); with
//   sentinel_master  the master name they monitor (default mymaster); `hosts` is then unused
//   sentinel_password, user, password, dbnum (default 0)
//   tls (no), tls_CAfile, tls_cert_file, tls_key_file, tls_verify_cert (yes), tls_server_name
//   timeout          seconds for a connect and for each command (default 2)
//   key_format       %s (default) with the %-expansion of the SQL tables and `domain`
//   domain           only keys in these domains are looked up (as the SQL tables)
//   ttl              seconds an updated entry lives (default 0: for ever)
//   scan_count       keys per SCAN step of first/next (default 100)
//
// Keys and values are Postfix byte strings (binary-safe, sent as bytes). The key is folded
// as Postfix folds FIXED tables (lowercase, or the UTF-8 layer's casefold), then expanded
// with key_format. first/next walks the keys that key_format can produce, so it needs a
// key_format of the form PREFIX%sSUFFIX, and gives back the lookup key (without them):
// exactly what postscreen's and verify's cache cleanup needs (they delete what they walk).
// SCAN may report a key twice while Redis resizes its hash table; it never misses a key
// that exists for the whole walk. Memory per walk is one SCAN batch. A walk whose
// connection was replaced (reconnect, failover) starts again from the beginning, since a
// SCAN cursor means nothing to another server.
//
// Connections: one client per distinct server setting (hosts/sentinels, credentials,
// dbnum, TLS, timeout), shared by every table of the process that has that setting;
// ioredis pipelines concurrent commands on it. Nothing is queued while a server is down:
// a command then fails at once and the table answers RETRY, while the client reconnects in
// the background (every RECONNECT_MAX_MS at most), so service comes back without a restart.
// With several hosts the table keeps using the host that answered last; when it is down,
// or refuses a write because it is a replica (READONLY), the next host is tried: promote a
// replica and writes move to it. With Sentinel, ioredis asks the Sentinels for the master.

import type {Redis as RedisClient, RedisOptions} from 'ioredis'
import * as fsp from 'node:fs/promises'
import {DICT_FLAG} from '../protocol/constants.js'
import {activateUtf8, lowercaseAscii, needUtf8Activation} from './fold.js'
import {CfParser} from './sql/cf-parser.js'
import {DomainList, TemplateContext} from './sql/template.js'
import {pathBytes, strerror} from './source-file.js'
import {socketErrorText} from './socketmap.js'
import {OpenOptions, PoolStats, SequenceCursor, SequenceFunction, Table, TableError, TableLog, TableType} from './table.js'

export const REDIS_DEFAULTS = {
  hosts: 'localhost:6379',
  port: 6379,
  sentinelPort: 26379,
  sentinelMaster: 'mymaster',
  dbnum: 0,
  timeout: 2,
  keyFormat: '%s',
  ttl: 0,
  scanCount: 100,
} as const

/** The longest pause between two reconnection attempts to a server that is down. */
export const RECONNECT_MAX_MS = 1000

type Endpoint = {host: string; port: number} | {path: string}

/** `host`, `host:port`, `inet:host:port`, `[v6]:port`, `unix:/path`. */
export function parseRedisEndpoint(spec: string, defaultPort: number): Endpoint {
  if (spec.startsWith('unix:')) return {path: spec.slice(5)}
  const d = spec.startsWith('inet:') ? spec.slice(5) : spec
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(d)
  if (bracketed) return {host: bracketed[1], port: bracketed[2] ? Number(bracketed[2]) : defaultPort}
  const colon = d.lastIndexOf(':')
  if (colon > 0 && d.indexOf(':') === colon && /^\d+$/.test(d.slice(colon + 1)))
    return {host: d.slice(0, colon), port: Number(d.slice(colon + 1))}
  if (d.length === 0 || d.includes(':')) throw new TableError('config', `bad Redis server address: "${spec}"`)
  return {host: d, port: defaultPort}
}

const endpointText = (e: Endpoint): string => ('path' in e ? e.path : `${e.host}:${e.port}`)

const splitList = (value: string): string[] => value.split(/[ \t\r\n,]+/).filter((s) => s.length > 0)

/** What makes two tables share a connection: everything but the key handling. */
interface ServerSetting {
  hosts: Endpoint[]
  sentinels?: {host: string; port: number}[]
  sentinelMaster: string
  sentinelPassword?: string
  user?: string
  password?: string
  dbnum: number
  timeoutMs: number
  tls?: {ca?: string; cert?: string; key?: string; verify: boolean; servername?: string}
}

/** strerror() words for socket errors, as the other network tables log them. */
const errorText = (err: unknown): string => (err instanceof Error ? socketErrorText(err) : String(err))

/** Numbers the connections of every client, so that a walk can tell it has a new one. */
let connectionsMade = 0

/** One ioredis client and what we saw of its connection. */
class ServerClient {
  lastError = 'not connected yet'
  /** Which connection is up now (unique in the process). */
  session = 0

  private failedSinceReady = false

  constructor(readonly label: string, readonly client: RedisClient, private readonly timeoutMs: number) {
    client.on('error', (err: unknown) => {
      this.lastError = errorText(err)
      this.failedSinceReady = true
    })
    client.on('ready', () => {
      this.failedSinceReady = false
      this.session = ++connectionsMade
    })
    // a server that goes away cleanly (killed, restarted) closes without an error event
    client.on('close', () => {
      if (!this.failedSinceReady) this.lastError = 'lost connection'
      this.failedSinceReady = true
    })
  }

  /**
   * Resolves when commands can be sent now. A first connection in progress is waited for
   * (up to the timeout); a server already known to be down fails at once.
   */
  async ready(): Promise<void> {
    const c = this.client
    if (c.status === 'ready') return
    if (c.status === 'wait') void c.connect().catch(() => {})
    else if (c.status !== 'connecting' && c.status !== 'connect')
      throw new ServerDownError(`connect to ${this.label}: ${this.lastError}`)
    await new Promise<void>((resolve, reject) => {
      const fail = (): void => {
        cleanup()
        reject(new ServerDownError(`connect to ${this.label}: ${this.lastError}`))
      }
      const ok = (): void => {
        cleanup()
        resolve()
      }
      const timer = setTimeout(fail, this.timeoutMs)
      const cleanup = (): void => {
        clearTimeout(timer)
        c.off('ready', ok)
        c.off('close', fail)
        c.off('end', fail)
      }
      c.once('ready', ok)
      c.once('close', fail)
      c.once('end', fail)
    })
  }
}

/** The server cannot be used now: try the next host, else RETRY. */
class ServerDownError extends Error {}

/** Errors that say "this server, not this request": the next host may do better. */
function isServerFailure(err: unknown, write: boolean): boolean {
  if (err instanceof ServerDownError) return true
  const message = err instanceof Error ? err.message : ''
  if (write && /^READONLY\b/.test(message)) return true
  if (/^(LOADING|MASTERDOWN|CLUSTERDOWN)\b/.test(message)) return true
  return /Connection is closed|Stream isn't writeable|Command timed out|ECONNRESET|EPIPE/.test(message)
}

/** The clients for one server setting; shared, counted, ended with its last table. */
class ServerConnection {
  private active = 0
  users = 0
  /** Commands sent and not answered yet. */
  private busy = 0
  /** Requests waiting for a connection that is being opened. */
  private queued = 0

  constructor(readonly key: string, private readonly clients: ServerClient[]) {}

  /** Run `command` on the active host, moving on to the next when it is down. */
  async run<T>(command: (client: RedisClient, session: number) => Promise<T>, write: boolean): Promise<T> {
    let last: unknown
    for (let tried = 0; tried < this.clients.length; tried++) {
      const index = (this.active + tried) % this.clients.length
      const server = this.clients[index]
      try {
        this.queued++
        try {
          await server.ready()
        } finally {
          this.queued--
        }
        this.busy++
        let result: T
        try {
          result = await command(server.client, server.session)
        } finally {
          this.busy--
        }
        this.active = index
        return result
      } catch (err) {
        if (!isServerFailure(err, write)) throw err
        last = err
      }
    }
    throw new TableError('retry', (last as Error).message)
  }

  /** Every table with this server setting shares these figures. */
  stats(): PoolStats {
    const open = this.clients.filter((s) => OPEN_STATUSES.has(s.client.status)).length
    return {connections: open, busy: this.busy, queued: this.queued}
  }

  close(): void {
    for (const s of this.clients) s.client.disconnect()
  }
}

/** ioredis client states with a connection open or being opened ("reconnecting" waits to try again). */
const OPEN_STATUSES: ReadonlySet<string> = new Set(['connecting', 'connect', 'ready'])

const connections = new Map<string, ServerConnection>()

async function acquireConnection(setting: ServerSetting): Promise<ServerConnection> {
  const key = JSON.stringify(setting)
  let connection = connections.get(key)
  if (!connection) {
    // Loaded here, not at start-up: only a configuration with redis: tables pays for it.
    const {Redis} = await import('ioredis')
    connection = connections.get(key)
    if (!connection) {
      const tls = setting.tls && {
        ca: setting.tls.ca, cert: setting.tls.cert, key: setting.tls.key,
        rejectUnauthorized: setting.tls.verify, servername: setting.tls.servername,
      }
      const common: RedisOptions = {
        username: setting.user, password: setting.password, db: setting.dbnum,
        connectTimeout: setting.timeoutMs, commandTimeout: setting.timeoutMs,
        enableOfflineQueue: false, maxRetriesPerRequest: 0, lazyConnect: true,
        retryStrategy: (times) => Math.min(times * 100, RECONNECT_MAX_MS),
        tls,
      }
      const clients = setting.sentinels
        ? [new ServerClient(`sentinel master ${setting.sentinelMaster}`, new Redis({
          ...common, sentinels: setting.sentinels, name: setting.sentinelMaster,
          sentinelPassword: setting.sentinelPassword, sentinelMaxConnections: 1,
          sentinelRetryStrategy: (times) => Math.min(times * 100, RECONNECT_MAX_MS),
          enableTLSForSentinelMode: tls !== undefined, sentinelTLS: tls,
        }), setting.timeoutMs)]
        : setting.hosts.map((h) => new ServerClient(endpointText(h), new Redis({...common, ...h}), setting.timeoutMs))
      connection = new ServerConnection(key, clients)
      connections.set(key, connection)
      for (const c of clients) void c.ready().catch(() => {})
    }
  }
  connection.users++
  return connection
}

function releaseConnection(connection: ServerConnection): void {
  if (--connection.users > 0) return
  connections.delete(connection.key)
  connection.close()
}

/** A key_format that first/next can invert: PREFIX%sSUFFIX. */
interface KeyShape {prefix: string; suffix: string}

export function keyShape(keyFormat: string): KeyShape | undefined {
  const parts = keyFormat.split('%s')
  if (parts.length !== 2 || parts.some((p) => /%(?!%)/.test(p.replaceAll('%%', '')))) return undefined
  const [prefix, suffix] = parts.map((p) => p.replaceAll('%%', '%'))
  return {prefix, suffix}
}

const globEscape = (s: string): string => s.replace(/[*?[\]\\]/g, (c) => `\\${c}`)

interface SequenceState {
  cursor: string
  /** The connection the cursor came from: a SCAN cursor means nothing to another server. */
  session?: number
  batch: [string, string][]
  done: boolean
}

interface RedisSettings {
  keyFormat: string
  ttl: number
  scanCount: number
}

const bytes = (s: string): Buffer => Buffer.from(s, 'latin1')

class RedisTable implements Table {
  readonly type = 'redis'
  flags: number
  private readonly shape?: KeyShape

  constructor(
    readonly name: string,
    dictFlags: number,
    private readonly settings: RedisSettings,
    private readonly context: TemplateContext,
    private readonly connection: ServerConnection,
    private readonly log: TableLog,
    writable: boolean,
  ) {
    this.flags = dictFlags | DICT_FLAG.FIXED | DICT_FLAG.MULTI_WRITER
    this.shape = keyShape(settings.keyFormat)
    if (!writable) {
      this.update = undefined
      this.delete = undefined
    }
  }

  /** Read the fold flag now: the UTF-8 layer clears it only around the synchronous call. */
  private fold(name: string): string {
    return this.flags & DICT_FLAG.FOLD_FIX ? lowercaseAscii(name) : name
  }

  /** The Redis key for lookup key `name` (already folded), or undefined: skip it. */
  private async redisKey(name: string, original: string): Promise<string | undefined> {
    if (name.length === 0) return undefined
    const domain = await this.context.checkDomain(original)
    if (domain === 'skip') return undefined
    if (domain === 'retry') {
      const message = `redis:${this.name}: 'domain' pattern match failed for '${original}'`
      this.log.warning(message)
      throw new TableError('retry', message)
    }
    if (this.settings.keyFormat === '%s') return name
    const out = {text: ''}
    if (!this.context.expand(this.settings.keyFormat, name, undefined, out, (m) => this.log.warning(m))) return undefined
    return out.text.length > 0 ? out.text : undefined
  }

  private async run<T>(what: string, command: (client: RedisClient, session: number) => Promise<T>, write = false): Promise<T> {
    try {
      return await this.connection.run(command, write)
    } catch (err) {
      const reason = errorText(err)
      const message = `redis:${this.name}: ${what} failed: ${reason}`
      this.log.warning(message)
      // WRONGTYPE and the like: the data, not the server, is wrong
      throw new TableError(err instanceof TableError ? err.kind : 'config', message)
    }
  }

  lookup(name: string): Promise<string | undefined> {
    return this.lookupFolded(name, this.fold(name))
  }

  private async lookupFolded(name: string, folded: string): Promise<string | undefined> {
    const key = await this.redisKey(folded, name)
    if (key === undefined) return undefined
    const value = await this.run(`lookup "${name}"`, (c) => c.getBuffer(bytes(key)))
    return value === null ? undefined : value.toString('latin1')
  }

  update?(name: string, value: string): Promise<boolean> {
    return this.updateFolded(name, this.fold(name), value)
  }

  private async updateFolded(name: string, folded: string, value: string): Promise<boolean> {
    const key = await this.redisKey(folded, name)
    if (key === undefined) {
      this.log.warning(`redis:${this.name}: skipping update for name "${name}": key not in domain or empty`)
      return false
    }
    const {ttl} = this.settings
    const reply = await this.run(`update "${name}"`,
      (c) => (ttl > 0 ? c.set(bytes(key), bytes(value), 'EX', ttl) : c.set(bytes(key), bytes(value))), true)
    return reply === 'OK'
  }

  delete?(name: string): Promise<boolean> {
    return this.deleteFolded(name, this.fold(name))
  }

  private async deleteFolded(name: string, folded: string): Promise<boolean> {
    const key = await this.redisKey(folded, name)
    if (key === undefined) return false
    return (await this.run(`delete "${name}"`, (c) => c.del(bytes(key)), true)) > 0
  }

  async sequence(fn: SequenceFunction, cursor: SequenceCursor): Promise<readonly [string, string] | undefined> {
    const shape = this.shape
    if (!shape) {
      const message = `redis:${this.name}: first/next needs a key_format of the form PREFIX%sSUFFIX, not "${this.settings.keyFormat}"`
      this.log.warning(message)
      throw new TableError('config', message)
    }
    if (fn === 'first' || cursor.state === undefined) cursor.state = {cursor: '0', batch: [], done: false} satisfies SequenceState
    const state = cursor.state as SequenceState
    // bytes, not text: ioredis sends Buffer arguments as they are (its typings say string)
    const pattern = bytes(`${globEscape(shape.prefix)}*${globEscape(shape.suffix)}`) as unknown as string
    const minLength = shape.prefix.length + shape.suffix.length
    while (state.batch.length === 0 && !state.done) {
      const [next, keys] = await this.run('sequence', (c, session) => {
        if (state.cursor !== '0' && session !== state.session) {
          // failover or reconnect: the server may be another one; walking again only repeats keys
          this.log.warning(`redis:${this.name}: first/next: new server connection, walking again from the start`)
          state.cursor = '0'
        }
        state.session = session
        return c.scanBuffer(state.cursor, 'MATCH', pattern, 'COUNT', this.settings.scanCount)
      })
      state.cursor = next.toString('latin1')
      state.done = state.cursor === '0'
      const wanted = keys.filter((k) => k.length > minLength)
      if (wanted.length === 0) continue
      const values = await this.run('sequence', (c) => c.mgetBuffer(wanted))
      // in reverse, so that pop() keeps SCAN's order
      for (let i = wanted.length - 1; i >= 0; i--) {
        const value = values[i]
        if (value === null) continue // deleted meanwhile, or not a string
        const key = wanted[i].toString('latin1')
        state.batch.push([key.slice(shape.prefix.length, key.length - shape.suffix.length), value.toString('latin1')])
      }
    }
    return state.batch.pop()
  }

  /** The shared client of this server setting (every table with that setting shows the same). */
  poolStats(): PoolStats {
    return this.connection.stats()
  }

  get sharedPool(): object {
    return this.connection
  }

  close(): void {
    releaseConnection(this.connection)
  }
}

async function readPem(file: string | undefined): Promise<string | undefined> {
  if (file === undefined) return undefined
  try {
    return (await fsp.readFile(pathBytes(file))).toString('latin1')
  } catch (err) {
    throw new TableError('retry', `open ${file}: ${strerror(err as NodeJS.ErrnoException)}`)
  }
}

async function serverSetting(parser: CfParser): Promise<ServerSetting> {
  const D = REDIS_DEFAULTS
  const sentinelList = parser.getStr('sentinels', undefined)
  const tlsOn = parser.getBool('tls', false)
  const timeout = parser.getInt('timeout', D.timeout)
  return {
    hosts: splitList(parser.getStr('hosts', D.hosts)).map((h) => parseRedisEndpoint(h, D.port)),
    sentinels: sentinelList === undefined ? undefined : splitList(sentinelList).map((h) => {
      const e = parseRedisEndpoint(h, D.sentinelPort)
      if ('path' in e) throw new TableError('config', `${parser.name}: sentinels must be host:port, not "${h}"`)
      return e
    }),
    sentinelMaster: parser.getStr('sentinel_master', D.sentinelMaster),
    sentinelPassword: parser.getStr('sentinel_password', undefined),
    user: parser.getStr('user', undefined),
    password: parser.getStr('password', undefined),
    dbnum: parser.getInt('dbnum', D.dbnum),
    timeoutMs: (timeout > 0 ? timeout : D.timeout) * 1000,
    tls: tlsOn ? {
      ca: await readPem(parser.getStr('tls_CAfile', undefined)),
      cert: await readPem(parser.getStr('tls_cert_file', undefined)),
      key: await readPem(parser.getStr('tls_key_file', undefined)),
      verify: parser.getBool('tls_verify_cert', true),
      servername: parser.getStr('tls_server_name', undefined),
    } : undefined,
  }
}

export const redisType: TableType = {
  type: 'redis',
  async open(name: string, options: OpenOptions): Promise<Table> {
    const parser = await CfParser.open(name, options.config, options.log)
    const D = REDIS_DEFAULTS
    const settings: RedisSettings = {
      keyFormat: parser.getStr('key_format', D.keyFormat),
      ttl: parser.getInt('ttl', D.ttl),
      scanCount: parser.getInt('scan_count', D.scanCount, 1),
    }
    const context = new TemplateContext('redis', name)
    context.parse(settings.keyFormat, true)
    const domain = parser.getStr('domain', '')
    if (domain.length > 0) context.domain = await DomainList.create(name, domain, options)
    const connection = await acquireConnection(await serverSetting(parser))
    const table = new RedisTable(name, options.dictFlags, settings, context, connection, options.log, options.mode === 'write')
    return needUtf8Activation(options.config, options.dictFlags) ? activateUtf8(table, options.log) : table
  },
}
