// The one registry from map type name to implementation, used by the server and the CLI
// alike (Postfix: dict_open.c). A new map type is one file and one line in BUILTIN_TYPES.

import {OpenOptions, Table, TableError, TableType} from './table.js'
import {SurrogateTable} from './surrogate.js'
import {activateUtf8, needUtf8Activation} from './fold.js'
import {texthashType} from './texthash.js'
import {inlineType} from './inline.js'
import {staticType} from './static.js'
import {failType} from './fail.js'
import {proxyType} from './proxy.js'
import {regexpType} from './regexp.js'
import {cidrType} from './cidr.js'
import {cdbType} from './cdb.js'
import {lmdbType} from './lmdb.js'
import {pcreType} from './pcre.js'
import {btreeType, hashType} from './berkeley-db.js'
import {unixType} from './unix.js'
import {environType} from './environ.js'
import {unionmapType} from './unionmap.js'
import {pipemapType} from './pipemap.js'
import {randmapType} from './randmap.js'
import {sqliteType} from './sqlite.js'
import {mysqlType} from './mysql.js'
import {pgsqlType} from './pgsql.js'
import {socketmapType} from './socketmap.js'
import {tcpType} from './tcp.js'
import {memcacheType} from './memcache.js'
import {ldapType} from './ldap.js'

const BUILTIN_TYPES: readonly TableType[] = [
  texthashType,
  inlineType,
  staticType,
  failType,
  proxyType,
  regexpType,
  cidrType,
  cdbType,
  lmdbType,
  pcreType,
  hashType, btreeType,
  unixType, environType, unionmapType, pipemapType, randmapType,
  sqliteType, mysqlType, pgsqlType, socketmapType, tcpType, memcacheType, ldapType,
]

export class TableRegistry {
  private readonly types = new Map<string, TableType>()

  constructor(types: readonly TableType[] = BUILTIN_TYPES) {
    for (const t of types) this.types.set(t.type, t)
  }

  register(type: TableType): void {
    this.types.set(type.type, type)
  }

  has(type: string): boolean {
    return this.types.has(type)
  }

  typeNames(): string[] {
    return [...this.types.keys()].sort()
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
    const type = this.types.get(typeName)
    if (!type) {
      const reason = `unsupported dictionary type: ${typeName}`
      if (strict) throw new TableError('retry', reason)
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
