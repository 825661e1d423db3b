import fs from 'node:fs'
import path from 'node:path'
import {ServiceUnavailableError} from '../client/connection.js'
import {ProtocolError} from '../protocol/index.js'
import {PROXY_STAT} from '../protocol/constants.js'
import {ProxyStatusError} from '../tables/proxy.js'
import {TableError} from '../tables/table.js'
import {UnknownTableTypeError} from '../tables/unknown-type.js'
import {defaultRegistry} from '../tables/registry.js'
import {stripProxyPrefixes} from '../util/postfix-strings.js'
import {didYouMean} from '../util/suggest.js'
import {EXIT} from './exit-codes.js'

/** An error meant for the person at the terminal: what went wrong and what to do. */
export class CliError extends Error {
  constructor(message: string, readonly exitCode: number, readonly hint?: string) {
    super(message)
    this.name = 'CliError'
  }
}

/** What the command was doing, so that a hint can name the exact table, list and command. */
export interface TableOperation {
  /** The table as given on the command line. */
  table: string
  /** read: lookups and listings (proxymap); write: updates and deletes (proxywrite). */
  access: 'read' | 'write'
  /** -c as given (undefined: the default configuration). */
  configDir?: string
}

/** Map any failure onto a message and one of the documented exit codes. */
export function toCliError(err: unknown, operation?: TableOperation): CliError {
  if (err instanceof CliError) return err
  if (err instanceof ProxyStatusError) {
    if (err.status === PROXY_STAT.DENY) return new CliError(err.message, EXIT.DENY, denyHint(operation))
    return new CliError(err.message, err.status === PROXY_STAT.RETRY ? EXIT.RETRY : EXIT.BAD, err.hint)
  }
  if (err instanceof UnknownTableTypeError) return unknownType(err)
  if (err instanceof TableError) {
    const readOnly = /^(.+) map requires O_RDONLY access mode$/.exec(err.message)
    if (readOnly) {
      const table = readOnly[1]
      return new CliError(`${table} cannot be changed: ${table.slice(0, table.indexOf(':'))} tables are read-only (Postfix: "map requires O_RDONLY access mode")`, EXIT.BAD,
        'edit the table\'s source (file, database or directory) instead; update and delete change tables of types such as lmdb, hash, btree and cdb')
    }
    // Postfix's dict_open() words for a name without "type:" (only "-" can get here: a bare name takes default_database_type).
    if (err.message.startsWith('open dictionary: expecting "type:name" form')) return new CliError(err.message, EXIT.USAGE, 'write the table as type:name, e.g. lmdb:/etc/postfix/virtual')
    return new CliError(err.message, err.kind === 'retry' ? EXIT.RETRY : EXIT.BAD)
  }
  if (err instanceof ServiceUnavailableError) return new CliError(err.message, EXIT.UNAVAILABLE)
  if (err instanceof ProtocolError)
    return new CliError(err.message, EXIT.UNAVAILABLE, 'check that a proxymap service (ours or Postfix\'s) is listening on that socket, and look at its log')
  const e = err as Error
  return new CliError(e?.message ?? String(err), EXIT.USAGE)
}

/**
 * As the service's own log line says: the exact entry (with proxy:) and the list of the
 * operation, and check-access for the near misses and the fix.
 */
function denyHint(operation: TableOperation | undefined): string {
  if (operation === undefined)
    return 'list the table, with its proxy: prefix, in proxy_read_maps (lookups) or proxy_write_maps (updates) in main.cf, then run "postfix reload"; "proxymap check-access" explains and offers the fix'
  const table = stripProxyPrefixes(operation.table)
  const list = operation.access === 'write' ? 'proxy_write_maps' : 'proxy_read_maps'
  const check = (entry: string): string => ['proxymap check-access', ...(operation.configDir === undefined ? [] : ['-c', shellWord(operation.configDir)]),
    ...(operation.access === 'write' ? ['--write'] : []), shellWord(entry)].join(' ')
  const absolute = absoluteFileTable(table)
  if (absolute !== undefined) {
    return `"${table}" is a relative file name, and the service compares names byte for byte, as main.cf writes them (absolute): `
      + `use proxy:${absolute}, listed in main.cf:${list}; "${check(`proxy:${absolute}`)}" says whether it is approved`
  }
  const entry = `proxy:${table}`
  return `list ${entry} in main.cf:${list}, then run "postfix reload" (or restart proxymap serve); "${check(entry)}" explains why it is denied and offers the change`
}

/** type:/absolute/path for type:relative/path when that names a file here (with or without a table suffix), else undefined. */
function absoluteFileTable(table: string): string | undefined {
  const colon = table.indexOf(':')
  const name = table.slice(colon + 1)
  if (colon <= 0 || name === '' || name.startsWith('/') || name.startsWith('{')) return undefined
  const file = path.resolve(name)
  return ['', '.db', '.lmdb', '.cdb'].some(suffix => fs.existsSync(file + suffix)) ? `${table.slice(0, colon)}:${file}` : undefined
}

function unknownType(err: UnknownTableTypeError): CliError {
  const known = defaultRegistry.typeNames()
  return new CliError(`${err.message}: no table type is called "${err.typeName}"`, EXIT.USAGE,
    `${didYouMean(err.typeName, known)}the table types are: ${known.join(', ')}`)
}

/** A word as a POSIX shell reads it back: quoted only when it has to be. */
export function shellWord(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, `'\\''`)}'`
}
