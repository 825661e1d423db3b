// The one registry from map type name to implementation, used by the server and the CLI
// alike (Postfix: dict_open.c). A new map type is one file and one line in BUILTIN_TYPES.

import {OpenOptions, Table, TableError, TableType} from './table.js'
import {SurrogateTable} from './surrogate.js'
import {UnknownTableTypeError} from './unknown-type.js'
import {activateUtf8, needUtf8Activation} from './fold.js'

/**
 * A map type known by name, whose module (and the driver it needs: mysql2, pg, ldapts,
 * better-sqlite3, the native addon) is imported only when a table of that type is first
 * opened: a lookup in a texthash table must not pay for loading every database client.
 */
export interface LazyTableType {
  readonly type: string
  load(): Promise<TableType>
}

function lazy(type: string, load: () => Promise<TableType>): LazyTableType {
  return {type, load}
}

const BUILTIN_TYPES: readonly LazyTableType[] = [
  lazy('texthash', async () => (await import('./texthash.js')).texthashType),
  lazy('inline', async () => (await import('./inline.js')).inlineType),
  lazy('static', async () => (await import('./static.js')).staticType),
  lazy('fail', async () => (await import('./fail.js')).failType),
  lazy('proxy', async () => (await import('./proxy.js')).proxyType),
  lazy('regexp', async () => (await import('./regexp.js')).regexpType),
  lazy('cidr', async () => (await import('./cidr.js')).cidrType),
  lazy('cdb', async () => (await import('./cdb.js')).cdbType),
  lazy('lmdb', async () => (await import('./lmdb.js')).lmdbType),
  lazy('pcre', async () => (await import('./pcre.js')).pcreType),
  lazy('hash', async () => (await import('./berkeley-db.js')).hashType),
  lazy('btree', async () => (await import('./berkeley-db.js')).btreeType),
  lazy('unix', async () => (await import('./unix.js')).unixType),
  lazy('environ', async () => (await import('./environ.js')).environType),
  lazy('unionmap', async () => (await import('./unionmap.js')).unionmapType),
  lazy('pipemap', async () => (await import('./pipemap.js')).pipemapType),
  lazy('randmap', async () => (await import('./randmap.js')).randmapType),
  lazy('sqlite', async () => (await import('./sqlite.js')).sqliteType),
  lazy('mysql', async () => (await import('./mysql.js')).mysqlType),
  lazy('pgsql', async () => (await import('./pgsql.js')).pgsqlType),
  lazy('socketmap', async () => (await import('./socketmap.js')).socketmapType),
  lazy('tcp', async () => (await import('./tcp.js')).tcpType),
  lazy('memcache', async () => (await import('./memcache.js')).memcacheType),
  lazy('ldap', async () => (await import('./ldap.js')).ldapType),
  lazy('redis', async () => (await import('./redis.js')).redisType),
]

export class TableRegistry {
  private readonly types = new Map<string, TableType | LazyTableType>()

  constructor(types: readonly (TableType | LazyTableType)[] = BUILTIN_TYPES) {
    for (const t of types) this.types.set(t.type, t)
  }

  register(type: TableType | LazyTableType): void {
    this.types.set(type.type, type)
  }

  has(type: string): boolean {
    return this.types.has(type)
  }

  typeNames(): string[] {
    return [...this.types.keys()].sort()
  }

  /**
   * Import every type's module now. A chrooted daemon calls this before entering the jail,
   * where the project's files (and the drivers') can no longer be reached.
   */
  async loadAll(): Promise<void> {
    for (const name of this.types.keys()) {
      // A type whose module cannot load stays unloaded: its tables answer RETRY when opened.
      try { await this.typeNamed(name) } catch { /* reported when a table of the type is opened */ }
    }
  }

  /** The type's implementation, its module imported on first use (a failed import is tried again next time). */
  private async typeNamed(name: string): Promise<TableType | undefined> {
    const entry = this.types.get(name)
    if (entry === undefined || !('load' in entry)) return entry
    let type: TableType
    try {
      type = await entry.load()
    } catch (err) {
      // A driver that cannot be loaded (being reinstalled, say) is a table that cannot be opened now.
      throw new TableError('retry', `unsupported dictionary type: ${name}: ${(err as Error).message}`)
    }
    if (this.types.get(name) === entry) this.types.set(name, type)
    return type
  }

  /**
   * Open `type:name` as Postfix's dict_open() does: a malformed name or an unknown type
   * throws a config TableError; a table that fails to open is replaced by a surrogate
   * that answers RETRY, after logging the reason as an error.
   */
  open(spec: string, options: Omit<OpenOptions, 'openNested'>): Promise<Table> {
    return this.openWith(spec, options, false)
  }

  /**
   * Open without surrogates, nested tables included: errors are thrown to the caller (the
   * CLI reports them), as postmap stops at the first table that cannot be opened.
   */
  async openStrict(spec: string, options: Omit<OpenOptions, 'openNested'>): Promise<Table> {
    return this.openWith(spec, options, true)
  }

  private async openWith(spec: string, options: Omit<OpenOptions, 'openNested'>, strict: boolean): Promise<Table> {
    const colon = spec.indexOf(':')
    if (colon <= 0) throw new TableError('config', `open dictionary: expecting "type:name" form instead of "${spec}"`)
    const typeName = spec.slice(0, colon)
    const name = spec.slice(colon + 1)
    const full: OpenOptions = {...options, openNested: (nested, o) => this.openWith(nested, o, strict)}
    let type: TableType | undefined
    try {
      type = await this.typeNamed(typeName)
    } catch (err) {
      if (strict) throw err
      return this.surrogate(typeName, name, (err as Error).message, full, false)
    }
    if (!type) {
      const reason = `unsupported dictionary type: ${typeName}`
      if (strict) throw new UnknownTableTypeError(typeName)
      return this.surrogate(typeName, name, reason, full, false)
    }
    try {
      return await type.open(name, full)
    } catch (err) {
      if (err instanceof TableError && !strict) return this.surrogate(typeName, name, err.message, full, true)
      throw err
    }
  }

  /**
   * Postfix's map types return their own surrogate when they fail to open, and dict_open()
   * puts the UTF-8 layer in front of it like in front of any table (its flags then say
   * UTF8_ACTIVE, which a 3.11 client reads); an unknown type's surrogate gets no such layer.
   */
  private surrogate(type: string, name: string, reason: string, options: OpenOptions, byType: boolean): Table {
    options.log.error(reason)
    const table = new SurrogateTable(type, name, reason, options, options.log)
    return byType && needUtf8Activation(options.config, options.dictFlags) ? activateUtf8(table, options.log) : table
  }
}

export const defaultRegistry = new TableRegistry()
