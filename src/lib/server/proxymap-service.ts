// The request handling of proxymap(8): check the request, check approval, find the shared
// open table, call it, and turn the outcome into a status. No sockets here.

import {statSync} from 'node:fs'

import type {AccessPolicy} from '../access/index.js'
import type {MainConfig} from '../config/index.js'
import type {Logger} from '../log/logger.js'
import {
  DICT_FLAG, DICT_FLAG_INST_MASK, Dialect, DICT_FLAG_RQST_MASK, PROXY_STAT, ProxyReply, ProxyRequest, ProxyStatus,
} from '../protocol/index.js'
import type {TableRegistry} from '../tables/registry.js'
import {stripProxyPrefixes} from '../util/postfix-strings.js'
import {detachedString} from '../util/chars.js'
import {SequenceCursor, Table, TableError} from '../tables/table.js'
import {SurrogateTable} from '../tables/surrogate.js'
import {type FileStamp, isOwnReplacement, pathBytes} from '../tables/source-file.js'
import {printable} from '../log/printable.js'
import {type ConnectionSnapshot, type PoolStats, type RequestCounters, ServiceCounters, type TableSnapshot, LISTED_CONNECTIONS} from './stats.js'

export type ServiceKind = 'read' | 'write'

export interface ProxymapServiceOptions {
  kind: ServiceKind
  policy: AccessPolicy
  registry: TableRegistry
  config: MainConfig
  log: Logger
  /**
   * An instance no request has used for this long is closed (the next request opens it
   * again), as Postfix's proxymap process exits after max_idle. Default: max_idle.
   */
  idleReleaseMs?: number
}

/** Per-connection state: each client has its own sequence cursors. */
export class ClientSession {
  readonly cursors = new Map<Table, SequenceCursor>()
  /** Instances this client has a cursor in: kept open until the client goes. */
  private readonly sequencing = new Set<OpenTable>()
  /** Requests this client has sent that reached the service (for stats). */
  requests = 0
  readonly openedAt = Date.now()

  /** `live`: the service's set of open sessions, which it leaves on close(). */
  constructor(private readonly live?: Set<ClientSession>) {
    live?.add(this)
  }

  /** @internal */
  holdForSequence(entry: OpenTable): void {
    if (this.sequencing.has(entry)) return
    this.sequencing.add(entry)
    entry.users++
  }

  /** The client is gone: its cursors no longer keep instances open. */
  close(): void {
    this.live?.delete(this)
    for (const entry of this.sequencing) releaseUse(entry)
    this.sequencing.clear()
    this.cursors.clear()
  }
}

/**
 * At most this many instances of one table name stay open (Postfix opens one per distinct
 * instance flags, without limit, and sheds them when the process retires); beyond it the
 * least recently used idle one is closed.
 */
export const MAX_INSTANCES_PER_NAME = 8

interface OpenTable {
  table: Table
  /** v2 servers hand every request the flags of the freshly opened instance. */
  initialFlags: number
  /** What it was opened as, to open it again when its file changes. */
  name: string
  openFlags: number
  dialect: Dialect
  /** Requests in progress and clients with a cursor: the table is not closed under them. */
  users: number
  lastUsed: number
  /** Replaced or released: closed as soon as no one uses it. */
  retired: boolean
  /** Its close() has been called (once only). */
  closed?: Promise<void>
  /** The table name's counters, shared by its instances. */
  counters: RequestCounters
  /**
   * The file as Postfix's proxymap would have it open (watchedFile() of the first instance;
   * instances reopened in place inherit it), to tell when Postfix's would restart.
   */
  postfixView?: {path: string; stamp: FileStamp; multiWriter: boolean}
}

function closeTable(table: Table): Promise<void> {
  try {
    return Promise.resolve(table.close?.()).catch(() => undefined)
  } catch {
    return Promise.resolve() // a table that cannot close cleanly is dropped all the same
  }
}

function closeEntry(entry: OpenTable): Promise<void> {
  entry.closed ??= closeTable(entry.table)
  return entry.closed
}

function releaseUse(entry: OpenTable): void {
  entry.users--
  if (entry.users === 0 && entry.retired) void closeEntry(entry)
}

function retire(entry: OpenTable): void {
  if (entry.retired) return
  entry.retired = true
  if (entry.users === 0) void closeEntry(entry)
}

/** The Postfix release whose table behaviour each dialect's clients expect. */
const RELEASE_OF_DIALECT: Record<Dialect, readonly [number, number]> = {legacy: [3, 7], v2: [3, 11]}

/** How often, at most, a busy connection makes the read-only service look for changed files. */
const CHANGE_CHECK_INTERVAL_MS = 200

type Outcome<T> = T | Promise<T>

function isPromise<T>(x: Outcome<T>): x is Promise<T> {
  return typeof (x as Promise<T>)?.then === 'function'
}

export class ProxymapService {
  private readonly open = new Map<string, OpenTable>()
  private readonly opening = new Map<string, Promise<ProxyStatus | OpenTable>>()
  private lastChangeCheck = 0
  private lastIdleSweep = Date.now()
  private idleReleaseMs: number
  private idleSweeper: NodeJS.Timeout | undefined
  /** Retired instances still in use, closed when their last user goes (or at shutdown). */
  private readonly lingering = new Set<OpenTable>()
  private shuttingDown = false
  /** Instances whose close() has not finished, while shutting down. */
  private readonly closing = new Set<string>()
  /** What this service has answered, for `proxymap stats` and Prometheus. */
  readonly stats = new ServiceCounters()
  private readonly sessions = new Set<ClientSession>()
  /** The instance that answered the synchronous request in progress (set and read within one handle() call). */
  private answeredBy: OpenTable | undefined

  constructor(private readonly options: ProxymapServiceOptions) {
    this.idleReleaseMs = options.idleReleaseMs ?? Infinity
  }

  /** How many instances are open (for tests and status). */
  get openInstances(): number {
    return this.open.size
  }

  /** A new client connection's state; counted among the open connections until it is closed. */
  openSession(): ClientSession {
    this.stats.connectionsAccepted++
    return new ClientSession(this.sessions)
  }

  /** The open connections, the busiest first (at most LISTED_CONNECTIONS), and how many there are. */
  connectionStats(now = Date.now()): {open: number; busiest: ConnectionSnapshot[]} {
    const busiest = [...this.sessions].sort((a, b) => b.requests - a.requests).slice(0, LISTED_CONNECTIONS)
    return {open: this.sessions.size, busiest: busiest.map(s => ({requests: s.requests, openSeconds: (now - s.openedAt) / 1000}))}
  }

  /** Per approved table that has been asked something: its counters, open instances and backend pool. */
  tableStats(): TableSnapshot[] {
    const instances = new Map<string, {open: number; pool: PoolStats | null; pools: Set<object>}>()
    for (const entry of this.open.values()) {
      const seen = instances.get(entry.name) ?? {open: 0, pool: null, pools: new Set()}
      seen.open++
      const owner = entry.table.sharedPool ?? entry.table
      const pool = seen.pools.has(owner) ? undefined : entry.table.poolStats?.()
      seen.pools.add(owner)
      if (pool) seen.pool = seen.pool ? {connections: seen.pool.connections + pool.connections, busy: seen.pool.busy + pool.busy, queued: seen.pool.queued + pool.queued} : {...pool}
      instances.set(entry.name, seen)
    }
    return this.stats.tables().map(([table, counters]) => ({
      table, ...counters.snapshot(), openInstances: instances.get(table)?.open ?? 0, pool: instances.get(table)?.pool ?? null,
    }))
  }

  get kind(): ServiceKind {
    return this.options.kind
  }

  /** The configuration requests are served with (replaced by reconfigure()). */
  get config(): MainConfig {
    return this.options.config
  }

  /**
   * A new configuration (SIGHUP): its approval lists and parameters apply from the next
   * request on. Open instances of tables it still approves stay open, with their clients
   * and cursors; the others are closed once no request uses them.
   */
  reconfigure(policy: AccessPolicy, config: MainConfig, idleReleaseMs: number): void {
    this.options.policy = policy
    this.options.config = config
    this.idleReleaseMs = idleReleaseMs
    for (const [cacheKey, entry] of this.open) {
      if (policy.isApproved(this.options.kind, entry.name)) continue
      this.open.delete(cacheKey)
      this.retire(entry)
    }
    this.stats.forgetTables(name => policy.isApproved(this.options.kind, name))
    clearInterval(this.idleSweeper)
    this.idleSweeper = undefined
    if (this.open.size > 0) this.sweepWhileOpen()
  }

  /** Every table opened so far (for change detection and shutdown). */
  tables(): Table[] {
    return [...this.open.values()].map(o => o.table)
  }

  /**
   * A new client connection. Postfix's proxymap exits before an accept when
   * dict_changed_name() names a table, and master's next process opens every table afresh:
   * its clients then see new instances (flags as opened, nothing learned by lookups). Ours
   * retires every instance at that point, so that the next requests open them afresh too;
   * other changes (texthash, regexp, ... files, which Postfix never notices, or a change
   * within the same second) are picked up in place, unseen by clients.
   */
  beforeAccept(): void {
    const changed = this.options.kind === 'read' ? this.changeSeenByPostfix() : undefined
    if (changed === undefined) {
      this.checkForChangedTables()
      return
    }
    this.options.log.info(`table ${printable(changed)} has changed -- reopening`)
    this.lastChangeCheck = Date.now()
    for (const [cacheKey, entry] of this.open) {
      this.open.delete(cacheKey)
      this.retire(entry)
    }
  }

  /**
   * dict_changed_name(): a table whose watched file now has another mtime second than when
   * it was opened (not for MULTI_WRITER tables), or whose file is gone or replaced (nlink 0)
   * by another program than our proxywrite (whose renames stand for Postfix's in-place writes).
   */
  private changeSeenByPostfix(): string | undefined {
    for (const entry of this.open.values()) {
      const view = entry.postfixView
      if (!view) continue
      let st
      try {
        st = statSync(pathBytes(view.path), {bigint: true})
      } catch {
        return entry.name
      }
      const replaced = st.dev !== view.stamp.dev || st.ino !== view.stamp.ino
      if (replaced && !isOwnReplacement(view.path, st.ino)) return entry.name
      if (!view.multiWriter && st.mtimeNs / 1_000_000_000n !== view.stamp.mtimeNs / 1_000_000_000n) return entry.name
    }
    return undefined
  }

  /**
   * The read-only service picks up changed table files. Postfix's proxymap exits before the
   * next accept and lets master start a fresh process; we open the table again in place,
   * and requests wait for the new instance, so no client sees a half-swapped table.
   */
  checkForChangedTables(now = Date.now()): void {
    this.lastChangeCheck = now
    for (const [cacheKey, entry] of this.open) {
      // Unavailable tables are retried when they are asked for (see find). proxywrite
      // changes its files itself: it reopens only a table whose file went bad under it.
      if (entry.table instanceof SurrogateTable) continue
      if (!(this.options.kind === 'read' ? entry.table.changed?.() : entry.table.broken?.())) continue
      this.options.log.info(`table ${printable(entry.name)} has changed -- reopening`)
      this.open.delete(cacheKey)
      this.startOpen(cacheKey, entry.name, entry.openFlags, entry.dialect, entry)
    }
  }

  /**
   * Shutdown: every instance is closed, in use or not (the connections have been answered
   * by then; a lookup still running fails as its table closes), the ones being opened as
   * soon as they are; later requests get RETRY. Resolves when every close() has finished.
   */
  async close(): Promise<void> {
    this.shuttingDown = true
    clearInterval(this.idleSweeper)
    this.idleSweeper = undefined
    const entries = [...this.open.values(), ...this.lingering]
    this.open.clear()
    this.lingering.clear()
    const opening = [...this.opening.values()]
    const closeTracked = (entry: OpenTable): Promise<void> => {
      const label = `${entry.table.type}:${entry.table.name}`
      this.closing.add(label)
      return closeEntry(entry).then(() => { this.closing.delete(label) })
    }
    await Promise.all([
      ...entries.map(closeTracked),
      // startOpen() closes what opens after shutdown began; wait for those too
      ...opening.map(p => p.then(() => undefined)),
    ])
  }

  /** While shutting down: the tables whose close() has not finished yet. */
  stillClosing(): string[] {
    return [...this.closing]
  }

  private retire(entry: OpenTable): void {
    retire(entry)
    if (!entry.closed) this.lingering.add(entry)
  }

  /** Close the instances no request has used for idleReleaseMs. */
  releaseIdleTables(now = Date.now()): void {
    this.lastIdleSweep = now
    for (const entry of this.lingering) if (entry.closed) this.lingering.delete(entry)
    for (const [cacheKey, entry] of this.open) {
      if (entry.users > 0 || now - entry.lastUsed < this.idleReleaseMs) continue
      this.open.delete(cacheKey)
      this.retire(entry)
    }
    if (this.open.size === 0) {
      clearInterval(this.idleSweeper)
      this.idleSweeper = undefined
    }
  }

  /** A quiet server sheds its idle instances too, not only one that is asked things. */
  private sweepWhileOpen(): void {
    if (this.idleSweeper || !Number.isFinite(this.idleReleaseMs)) return
    this.idleSweeper = setInterval(() => this.releaseIdleTables(), this.sweepIntervalMs())
    this.idleSweeper.unref()
  }

  private sweepIntervalMs(): number {
    return Math.max(Math.min(this.idleReleaseMs / 2, 10_000), 50)
  }

  /** Room for one more instance of `name`: the least recently used idle ones beyond the cap go. */
  private makeRoomFor(name: string): void {
    const same = [...this.open].filter(([, e]) => e.name === name)
    if (same.length < MAX_INSTANCES_PER_NAME) return
    const idle = same.filter(([, e]) => e.users === 0).sort((a, b) => a[1].lastUsed - b[1].lastUsed)
    for (const [cacheKey, entry] of idle.slice(0, same.length - MAX_INSTANCES_PER_NAME + 1)) {
      this.open.delete(cacheKey)
      this.retire(entry)
    }
  }

  /** Answer one parsed request. Synchronous when the table answers synchronously. */
  handle(req: ProxyRequest, session: ClientSession): Outcome<ProxyReply> {
    const started = performance.now()
    session.requests++
    this.answeredBy = undefined
    const reply = this.answer(req, session, started)
    if (!isPromise(reply)) {
      // One clock reading for both counters: the lookup path pays for two, not four.
      const elapsedMs = performance.now() - started
      this.stats.all.record(req.request, reply.status, elapsedMs)
      this.takeAnsweredBy()?.counters.record(req.request, reply.status, elapsedMs)
      return reply
    }
    return reply.then(r => {
      this.stats.all.record(req.request, r.status, performance.now() - started)
      return r
    })
  }

  private answer(req: ProxyRequest, session: ClientSession, started: number): Outcome<ProxyReply> {
    const {log, kind} = this.options
    if (this.shuttingDown) return {status: PROXY_STAT.RETRY}
    const now = Date.now()
    if (now - this.lastChangeCheck >= CHANGE_CHECK_INTERVAL_MS) this.checkForChangedTables(now)
    if (now - this.lastIdleSweep >= this.sweepIntervalMs()) this.releaseIdleTables(now)
    if ((req.request === 'update' || req.request === 'delete') && kind === 'read') {
      log.warning(`refusing ${printable(req.table)} ${req.request} request on non-proxywrite service`)
      return {status: PROXY_STAT.DENY}
    }
    const found = this.find(req)
    if (typeof found === 'number') return {status: found}
    if (isPromise(found)) {
      return found.then(f => {
        if (typeof f === 'number') return {status: f}
        const reply = this.applyInUse(req, f, session, started, Date.now())
        if (isPromise(reply)) return reply
        // handle() has returned long ago: count it here.
        this.takeAnsweredBy()
        f.counters.record(req.request, reply.status, performance.now() - started)
        return reply
      })
    }
    return this.applyInUse(req, found, session, started, now)
  }

  private takeAnsweredBy(): OpenTable | undefined {
    const entry = this.answeredBy
    this.answeredBy = undefined
    return entry
  }

  /**
   * apply(), with the instance marked in use until the outcome is known. An outcome that
   * comes later is counted here; a synchronous one by the caller, through answeredBy.
   */
  private applyInUse(req: ProxyRequest, entry: OpenTable, session: ClientSession, started: number, now: number): Outcome<ProxyReply> {
    entry.users++
    entry.lastUsed = now
    let outcome: Outcome<ProxyReply>
    try {
      outcome = this.apply(req, entry, session)
    } catch (err) {
      releaseUse(entry)
      throw err
    }
    if (!isPromise(outcome)) {
      releaseUse(entry)
      this.answeredBy = entry
      return outcome
    }
    return outcome.then(reply => {
      releaseUse(entry)
      entry.counters.record(req.request, reply.status, performance.now() - started)
      return reply
    }, err => {
      releaseUse(entry)
      throw err
    })
  }

  /** Postfix's proxy_map_find: canonical name, approval, one shared instance per name and instance flags. */
  private find(req: ProxyRequest): ProxyStatus | OpenTable | Promise<ProxyStatus | OpenTable> {
    const name = stripProxyPrefixes(req.table)
    if (!name.includes(':')) return PROXY_STAT.BAD
    const {policy, log, kind} = this.options
    if (!policy.isApproved(kind, name)) {
      for (const line of policy.denialLog(kind, name)) log.warning(printable(line))
      return PROXY_STAT.DENY
    }
    // Legacy servers open with the whole flags word of whichever request came first and
    // share per (flags & INST_MASK); v2 servers open and share per instance_flags.
    const openFlags = req.dialect === 'v2' ? req.instanceFlags
      : req.request === 'open' ? req.instanceFlags : req.requestFlags
    const cacheKey = `${req.dialect === 'v2' ? 'v2' : 'l'}:${(openFlags & (req.dialect === 'v2' ? ~0 : DICT_FLAG_INST_MASK)) >>> 0}:${name}`
    const ready = this.open.get(cacheKey)
    if (ready?.table instanceof SurrogateTable && ready.table.changed()) {
      // The file may have appeared or been repaired since: try the real table again.
      this.open.delete(cacheKey)
      return this.startOpen(cacheKey, name, openFlags >>> 0, req.dialect, ready)
    }
    if (ready) {
      if (req.dialect === 'v2') ready.table.flags = ready.initialFlags
      return ready
    }
    const opening = this.opening.get(cacheKey)
    if (opening) return opening
    // Postfix's dict_open() panics here, so its client sees the connection end without a
    // reply; we end only this connection (see connection.ts).
    if ((openFlags & DICT_FLAG.LOCK) && (openFlags & DICT_FLAG.OPEN_LOCK))
      throw new Error(`dict_open: attempt to open ${name} with both "open" lock and "access" lock`)
    this.makeRoomFor(name)
    return this.startOpen(cacheKey, name, openFlags >>> 0, req.dialect)
  }

  /** `previous`: the instance this one replaces (a changed table, or an unavailable one tried again). */
  private startOpen(cacheKey: string, name: string, openFlags: number, dialect: Dialect, previous?: OpenTable): Promise<ProxyStatus | OpenTable> {
    cacheKey = detachedString(cacheKey)
    name = detachedString(name)
    const replacing = previous?.table
    const {registry, config, kind} = this.options
    const log = this.options.log
    // Postfix logs why a table is unavailable once, when it opens it; a retry that fails
    // for the same reason stays quiet (each request still logs "is unavailable").
    const openLog = replacing instanceof SurrogateTable
      ? {info: (m: string) => log.info(m), warning: (m: string) => log.warning(m), error: (m: string) => { if (m !== replacing.reason) log.error(m) }}
      : log
    const pending = registry.open(name, {mode: kind, dictFlags: openFlags, config, log: openLog, postfixRelease: RELEASE_OF_DIALECT[dialect]}).then((table): ProxyStatus | OpenTable | Promise<ProxyStatus> => {
      // 3.11's dict_surrogate() adds DICT_FLAG_SURROGATE, which its dict.h defines as
      // (1<22): 1, the DUP_WARN bit. 3.7's adds nothing but PATTERN.
      if (dialect === 'v2' && table instanceof SurrogateTable) table.flags = (table.flags | DICT_FLAG.DUP_WARN) >>> 0
      if (this.shuttingDown) {
        this.opening.delete(cacheKey)
        // the instance this one was to replace is in neither map: close it here too
        return Promise.all([closeTable(table), previous && closeEntry(previous)]).then((): ProxyStatus => PROXY_STAT.RETRY)
      }
      const watched = table.watchedFile?.()
      const entry: OpenTable = {
        table, initialFlags: table.flags, name, openFlags, dialect, users: 0, lastUsed: Date.now(), retired: false, counters: this.stats.table(name),
        postfixView: watched && {...watched, multiWriter: (table.flags & DICT_FLAG.MULTI_WRITER) !== 0},
      }
      if (previous && !(replacing instanceof SurrogateTable)) {
        // Reopened in place where Postfix keeps one instance for its life: the instance's
        // flags (what lookups taught it, the last request's) carry over, so that clients
        // cannot tell.
        entry.initialFlags = previous.initialFlags
        entry.postfixView = previous.postfixView
        table.flags = dialect === 'v2' ? entry.initialFlags : previous.table.flags
      }
      this.open.set(cacheKey, entry)
      this.opening.delete(cacheKey)
      this.sweepWhileOpen()
      if (previous) this.retire(previous)
      return entry
    }, (err: Error): ProxyStatus => {
      this.opening.delete(cacheKey)
      log.warning(`${printable(name)}: open error: ${err.message}`)
      return PROXY_STAT.RETRY
    })
    this.opening.set(cacheKey, pending)
    return pending
  }

  private apply(req: ProxyRequest, entry: OpenTable, session: ClientSession): Outcome<ProxyReply> {
    const {table} = entry
    if (req.request === 'open') return {status: PROXY_STAT.OK, flags: table.flags}
    let extra = 0
    if (req.request === 'update') extra = DICT_FLAG.SYNC_UPDATE | DICT_FLAG.DUP_REPLACE
    else if (req.request === 'delete') extra = DICT_FLAG.SYNC_UPDATE
    // Bitwise results are signed in JavaScript; dict->flags is Postfix's unsigned int.
    table.flags = (req.dialect === 'v2' ? req.requestFlags | extra
      : ((table.flags & ~DICT_FLAG_RQST_MASK) | (req.requestFlags & DICT_FLAG_RQST_MASK) | extra)) >>> 0
    try {
      switch (req.request) {
        case 'lookup': {
          const value = table.lookup(req.key ?? '')
          return isPromise(value) ? value.then(v => this.lookupReply(table, v), e => this.errorReply(table, 'lookup', e)) : this.lookupReply(table, value)
        }
        case 'update': {
          if (!table.update) return this.unsupported(table, 'update')
          const done = table.update(req.key ?? '', req.value ?? '')
          return isPromise(done) ? done.then(ok => this.statusReply(table, ok), e => this.errorReply(table, 'update', e)) : this.statusReply(table, done)
        }
        case 'delete': {
          if (!table.delete) return this.unsupported(table, 'delete')
          const done = table.delete(req.key ?? '')
          return isPromise(done) ? done.then(ok => this.statusReply(table, ok), e => this.errorReply(table, 'delete', e)) : this.statusReply(table, done)
        }
        case 'sequence': {
          if (!table.sequence) return this.unsupported(table, 'sequence')
          let cursor = session.cursors.get(table)
          if (!cursor) session.cursors.set(table, cursor = {})
          session.holdForSequence(entry)
          const item = table.sequence(req.func === 0 ? 'first' : 'next', cursor)
          return isPromise(item) ? item.then(i => this.sequenceReply(table, i), e => this.errorReply(table, 'sequence', e)) : this.sequenceReply(table, item)
        }
      }
    } catch (err) {
      return this.errorReply(table, req.request, err)
    }
  }

  private lookupReply(table: Table, value: string | undefined): ProxyReply {
    return value === undefined ? {status: PROXY_STAT.NOKEY, flags: table.flags} : {status: PROXY_STAT.OK, flags: table.flags, value}
  }

  private statusReply(table: Table, ok: boolean): ProxyReply {
    return {status: ok ? PROXY_STAT.OK : PROXY_STAT.NOKEY, flags: table.flags}
  }

  private sequenceReply(table: Table, item: readonly [string, string] | undefined): ProxyReply {
    return item ? {status: PROXY_STAT.OK, flags: table.flags, key: item[0], value: item[1]} : {status: PROXY_STAT.NOKEY, flags: table.flags}
  }

  private errorReply(table: Table, operation: string, err: unknown): ProxyReply {
    if (err instanceof TableError) return {status: err.kind === 'retry' ? PROXY_STAT.RETRY : PROXY_STAT.CONFIG, flags: table.flags}
    // A defect or an unexpected backend failure: keep serving, tell the client to retry.
    this.options.log.warning(`${printable(`${table.type}:${table.name}`)}: ${operation} error: ${(err as Error)?.message ?? String(err)}`)
    return {status: PROXY_STAT.RETRY, flags: table.flags}
  }

  /** Postfix's proxymap dies here ("operation is not supported"); we log it and answer CONFIG. */
  private unsupported(table: Table, operation: string): ProxyReply {
    this.options.log.error(`table ${printable(`${table.type}:${table.name}`)}: ${operation} operation is not supported`)
    return {status: PROXY_STAT.CONFIG, flags: table.flags}
  }
}
