// memcache:/path.cf — a memcached cache in front of an optional persistent table
// (Postfix dict_memcache.c; memcache_table(5)). Read-write: lookup, update, delete, and
// first/next through the backup table.
//
// Parameters (defaults as in Postfix 3.7): memcache (inet:localhost:11211; or unix:/path),
// key_format (%s; the shared %-expansion of sql/template.ts, with `domain`), ttl (3600),
// flags (0), timeout (2 s), max_try (2), retry_pause (1 s), line_size_limit (1024),
// data_size_limit (10240), backup (a nested table: a lookup that misses memcache falls back
// to it and a hit there is copied into memcache; updates and deletes go to memcache first,
// then to the backup, whose result and error count).
//
// Keys that are empty, fall outside `domain`, expand to nothing, or contain ASCII
// whitespace are skipped (lookup/delete: not found; update: a warning and "not stored").
// The client speaks memcached's text protocol (get/set/delete) over connections of the
// stream pool of socketmap.ts (opened on demand up to proxymap_backend_connection_limit per
// table, one request at a time each; identical lookups in flight at once are one lookup,
// and an update or delete is never joined with one: backend-pool.ts). An I/O error or an unexpected reply is tried again up to max_try times,
// retry_pause seconds apart; a server that cannot be reached is a RETRY at once. Without a
// backup a memcache error is a RETRY; with one, the backup's answer stands (as in Postfix).

import {DICT_FLAG} from '../protocol/constants.js'
import {activateUtf8, lowercaseAscii, needUtf8Activation} from './fold.js'
import {CfParser} from './sql/cf-parser.js'
import {DomainList, TemplateContext} from './sql/template.js'
import {
  ReplyParser, socketErrorText, StreamClientPool, StreamClosedError, StreamConnectError,
} from './socketmap.js'
import {backendConnectionLimit, InFlightLookups} from './backend-pool.js'
import {OpenOptions, PoolStats, SequenceCursor, SequenceFunction, Table, TableError, TableLog, TableType} from './table.js'

export const MEMCACHE_DEFAULTS = {
  memcache: 'inet:localhost:11211',
  keyFormat: '%s',
  ttl: 3600,
  timeout: 2,
  flags: 0,
  maxTry: 2,
  lineSizeLimit: 1024,
  dataSizeLimit: 10240,
  retryPause: 1,
} as const

/** A reply the table does not accept: retried, and logged from the second try on. */
class ReplyError extends Error {}

/**
 * One reply line (memcache_get()): at most `bound` bytes including the newline (a CR right
 * at the bound followed by LF is fine); CRLF or bare LF stripped. Undefined: need more.
 */
function readLine(buf: Buffer, offset: number, bound: number): {line: string; next: number} | undefined {
  const nl = buf.indexOf(0x0a, offset)
  if (nl < 0) {
    if (buf.length - offset > bound) throw new ReplyError('input too long')
    return undefined
  }
  const crlf = nl > offset && buf[nl - 1] === 0x0d
  if (nl - offset + 1 > bound && !(crlf && nl - offset <= bound)) throw new ReplyError('input too long')
  return {line: buf.subarray(offset, crlf ? nl - 1 : nl).toString('latin1'), next: nl + 1}
}

type GetReply = {found: false} | {found: true; value: string}

function getParser(name: string, lineBound: number, dataBound: number): ReplyParser<GetReply> {
  return (buf) => {
    const first = readLine(buf, 0, lineBound)
    if (!first) return undefined
    if (first.line === 'END') return {value: {found: false}, used: first.next}
    const m = /^[ \t\n\r\f\v]*VALUE[ \t\n\r\f\v]+\S+[ \t\n\r\f\v]+\S+[ \t\n\r\f\v]+([+-]?\d+)/.exec(first.line)
    const todo = m ? Number(m[1]) : NaN
    if (!Number.isSafeInteger(todo) || todo < 0 || todo > dataBound)
      throw new ReplyError(`${name}: unexpected memcache server reply: ${first.line.slice(0, 30)}`)
    const dataEnd = first.next + todo
    if (buf.length < dataEnd + 2) return undefined
    if (buf[dataEnd] !== 0x0d || buf[dataEnd + 1] !== 0x0a)
      throw new ReplyError(`${name}: EOF receiving memcache server reply`)
    const value = buf.subarray(first.next, dataEnd).toString('latin1')
    // The END line that follows: wait for it so that it is not taken as the next reply.
    let last: {line: string; next: number} | undefined
    try {
      last = readLine(buf, dataEnd + 2, lineBound)
    } catch {
      return {value: {found: true, value}, used: buf.length}
    }
    if (!last) return undefined
    return {value: {found: true, value}, used: last.next}
  }
}

function lineParser(lineBound: number): ReplyParser<string> {
  return (buf) => {
    const r = readLine(buf, 0, lineBound)
    return r && {value: r.line, used: r.next}
  }
}

interface MemcacheSettings {
  keyFormat: string
  ttl: number
  mcFlags: number
  maxTry: number
  retryPauseMs: number
  lineSizeLimit: number
  dataSizeLimit: number
}

class MemcacheTable implements Table {
  readonly type = 'memcache'
  flags: number
  private readonly inFlight = new InFlightLookups<string | undefined>()

  constructor(
    readonly name: string,
    dictFlags: number,
    private readonly settings: MemcacheSettings,
    private readonly context: TemplateContext,
    private readonly pool: StreamClientPool,
    private readonly backup: Table | undefined,
    private readonly log: TableLog,
    writable: boolean,
  ) {
    this.flags = dictFlags | DICT_FLAG.FIXED | DICT_FLAG.MULTI_WRITER
    if (!writable) {
      this.update = undefined
      this.delete = undefined
    }
  }

  /**
   * dict_memcache_valid_key(): the memcache key, or a skip reason. The fold flag is read
   * synchronously (the UTF-8 layer clears it only around the call).
   */
  private async memcacheKey(name: string, folded: string): Promise<{key: string} | {skip: string}> {
    if (name.length === 0) return {skip: 'empty lookup key'}
    const domain = await this.context.checkDomain(name)
    if (domain === 'skip') return {skip: 'domain mismatch'}
    if (domain === 'retry') throw new TableError('retry', `${this.type}:${this.name}: 'domain' pattern match failed for '${name}'`)
    let key = folded
    if (this.settings.keyFormat !== '%s') {
      const out = {text: ''}
      if (!this.context.expand(this.settings.keyFormat, folded, undefined, out, (m) => this.log.warning(m)))
        return {skip: 'empty lookup key expansion'}
      key = out.text
    }
    if (key.length === 0) return {skip: 'empty lookup key expansion'}
    if (/[ \t\n\v\f\r]/.test(key)) return {skip: 'name contains space'}
    return {key}
  }

  private fold(name: string): string {
    return this.flags & DICT_FLAG.FOLD_FIX ? lowercaseAscii(name) : name
  }

  /** The try loop every operation shares: RETRY after max_try failures or an unreachable server. */
  private async withTries<T>(what: string, request: () => Promise<T | ReplyError>): Promise<T> {
    let last = 'I/O error'
    for (let count = 0; count < this.settings.maxTry; count++) {
      if (count > 0) await this.pool.pause(this.settings.retryPauseMs)
      let result: T | ReplyError
      try {
        result = await request()
      } catch (err) {
        if (err instanceof StreamClosedError) throw new TableError('retry', `table memcache:${this.name}: ${what} failed: ${err.message}`)
        if (err instanceof StreamConnectError) {
          // as Postfix's auto_clnt words it: the endpoint without its inet:/unix: prefix, strerror text
          last = `connect to ${this.pool.endpoint.replace(/^(inet|unix):/, '')}: ${socketErrorText(err)}`
          this.log.warning(last)
          break
        }
        result = err instanceof ReplyError ? err : new ReplyError(`database memcache:${this.name}: I/O error: ${(err as Error).message}`)
      }
      if (!(result instanceof ReplyError)) return result
      last = result.message
      if (count > 0) this.log.warning(last)
    }
    throw new TableError('retry', `table memcache:${this.name}: ${what} failed: ${last}`)
  }

  private get(key: string): Promise<string | undefined> {
    const {lineSizeLimit, dataSizeLimit} = this.settings
    return this.withTries('lookup', async () => {
      const r = await this.pool.request(Buffer.from(`get ${key}\r\n`, 'latin1'), getParser(this.name, lineSizeLimit, dataSizeLimit))
      return r.found ? r.value : undefined
    })
  }

  /** true: stored; false: refused (too long); throws RETRY. */
  private async set(key: string, value: string): Promise<boolean> {
    if (value.length > this.settings.dataSizeLimit) {
      this.log.warning(`database memcache:${this.name}: data for key ${key} is too long (data_size_limit=${this.settings.dataSizeLimit}) -- not stored`)
      return false
    }
    const {mcFlags, ttl, lineSizeLimit} = this.settings
    const request = Buffer.from(`set ${key} ${mcFlags} ${ttl} ${value.length}\r\n${value}\r\n`, 'latin1')
    return this.withTries('update', async () => {
      const line = await this.pool.request(request, lineParser(lineSizeLimit))
      return line === 'STORED' ? true : new ReplyError(`database memcache:${this.name}: update failed: ${line.slice(0, 30)}`)
    })
  }

  private del(key: string): Promise<boolean> {
    return this.withTries('delete', async () => {
      const line = await this.pool.request(Buffer.from(`delete ${key}\r\n`, 'latin1'), lineParser(this.settings.lineSizeLimit))
      if (line === 'DELETED') return true
      if (line === 'NOT_FOUND') return false
      return new ReplyError(`database memcache:${this.name}: delete failed: ${line.slice(0, 30)}`)
    })
  }

  lookup(name: string): Promise<string | undefined> {
    const folded = this.fold(name)
    // a backup table gets the name as given, and folds it by its own flags
    return this.inFlight.run(this.backup ? `${folded}\0${name}` : folded, () => this.lookupFolded(name, folded))
  }

  private async lookupFolded(name: string, folded: string): Promise<string | undefined> {
    const k = await this.memcacheKey(name, folded)
    if ('skip' in k) return undefined
    let value: string | undefined
    let failure: unknown
    try {
      value = await this.get(k.key)
    } catch (err) {
      if (!(err instanceof TableError)) throw err
      failure = err
    }
    if (!this.backup) {
      if (failure) throw failure
      return value
    }
    if (value !== undefined) return value
    value = await this.backup.lookup(name)
    if (value !== undefined) {
      try {
        await this.set(k.key, value)
      } catch (err) {
        if (!(err instanceof TableError)) throw err
      }
    }
    return value
  }

  update?(name: string, value: string): Promise<boolean> {
    this.inFlight.forgetAll()
    return this.updateFolded(name, this.fold(name), value)
  }

  private async updateFolded(name: string, folded: string, value: string): Promise<boolean> {
    const k = await this.memcacheKey(name, folded)
    if ('skip' in k) {
      this.log.warning(`${this.name}: skipping update for name "${name}": ${k.skip}`)
      return false
    }
    let stored = false
    try {
      stored = await this.set(k.key, value)
    } catch (err) {
      if (!(err instanceof TableError) || !this.backup) throw err
    }
    if (this.backup) {
      if (!this.backup.update) throw new TableError('config', `table ${this.backup.type}:${this.backup.name}: update operation is not supported`)
      return this.backup.update(name, value)
    }
    return stored
  }

  delete?(name: string): Promise<boolean> {
    this.inFlight.forgetAll()
    return this.deleteFolded(name, this.fold(name))
  }

  private async deleteFolded(name: string, folded: string): Promise<boolean> {
    const k = await this.memcacheKey(name, folded)
    if ('skip' in k) return false
    let deleted = false
    try {
      deleted = await this.del(k.key)
    } catch (err) {
      if (!(err instanceof TableError) || !this.backup) throw err
    }
    if (this.backup) {
      if (!this.backup.delete) throw new TableError('config', `table ${this.backup.type}:${this.backup.name}: delete operation is not supported`)
      return this.backup.delete(name)
    }
    return deleted
  }

  async sequence(fn: SequenceFunction, cursor: SequenceCursor): Promise<readonly [string, string] | undefined> {
    if (!this.backup?.sequence) {
      this.log.warning(`database memcache:${this.name}: first/next support requires backup database`)
      return undefined
    }
    return this.backup.sequence(fn, cursor)
  }

  async close(): Promise<void> {
    this.pool.close()
    await this.backup?.close?.()
  }

  poolStats(): PoolStats {
    return this.pool.stats()
  }
}

export interface MemcacheLimits {
  /** Connections per table (Postfix: one per process); else main.cf proxymap_backend_connection_limit. */
  maxConnections: number
}

export function memcacheTypeWith(limits: Partial<MemcacheLimits> = {}): TableType {
  return {
    type: 'memcache',
    async open(name: string, options: OpenOptions): Promise<Table> {
      if (options.dictFlags & DICT_FLAG.NO_UNAUTH)
        throw new TableError('config', `memcache:${name} map is not allowed for security-sensitive data`)
      const parser = await CfParser.open(name, options.config, options.log)
      const D = MEMCACHE_DEFAULTS
      const settings: MemcacheSettings = {
        keyFormat: parser.getStr('key_format', D.keyFormat),
        ttl: 0, mcFlags: 0, maxTry: 0, retryPauseMs: 0, lineSizeLimit: 0, dataSizeLimit: 0,
      }
      const timeout = parser.getInt('timeout', D.timeout)
      settings.ttl = parser.getInt('ttl', D.ttl)
      settings.mcFlags = parser.getInt('flags', D.flags)
      settings.retryPauseMs = parser.getInt('retry_pause', D.retryPause, 1) * 1000
      settings.maxTry = parser.getInt('max_try', D.maxTry, 1)
      settings.lineSizeLimit = parser.getInt('line_size_limit', D.lineSizeLimit, 1)
      settings.dataSizeLimit = parser.getInt('data_size_limit', D.dataSizeLimit, 1)
      const endpoint = parser.getStr('memcache', D.memcache)
      const backupSpec = parser.getStr('backup', undefined)
      const backup = backupSpec !== undefined ? await options.openNested(backupSpec, options) : undefined
      try {
        const context = new TemplateContext('memcache', name)
        context.parse(settings.keyFormat, true)
        const domain = parser.getStr('domain', '')
        if (domain.length > 0) context.domain = await DomainList.create(name, domain, options)
        const timeoutMs = timeout > 0 ? timeout * 1000 : 2_147_483_647
        const max = limits.maxConnections ?? backendConnectionLimit(options.config, options.log)
        const pool = new StreamClientPool(endpoint, {max, maxIdleMs: 100_000, maxTtlMs: 1_000_000, timeoutMs})
        const table = new MemcacheTable(name, options.dictFlags, settings, context, pool, backup, options.log, options.mode === 'write')
        return needUtf8Activation(options.config, options.dictFlags) ? activateUtf8(table, options.log) : table
      } catch (err) {
        await backup?.close?.()
        throw err
      }
    },
  }
}

export const memcacheType: TableType = memcacheTypeWith()
