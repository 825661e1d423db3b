// The lookup that dict_mysql.c, dict_pgsql.c and dict_sqlite.c share: fold the key,
// apply the `domain` filter, expand the query with the backend's quoting, run it, expand
// every value with result_format, join with commas, enforce expansion_limit. Identical
// lookups in flight at once are one query (backend-pool.ts).

import {DICT_FLAG} from '../../protocol/constants.js'
import {activateUtf8, isValidUtf8, lowercaseAscii, needUtf8Activation} from '../fold.js'
import {OpenOptions, PoolStats, Table, TableError, TableLog} from '../table.js'
import {CfParser} from './cf-parser.js'
import {InFlightLookups} from '../backend-pool.js'
import {withTimeLimit, type SqlRow} from './host-pool.js'
import {parseSqlTemplates, type QuoteFunction, type SqlTemplates} from './template.js'

export interface SqlBackend {
  /** The backend's escaping of an expanded value (inside '...'). */
  quote: QuoteFunction
  /** Run a query; rows hold the values to expand. Throws TableError('retry') on failure. */
  run(sql: string): Promise<readonly SqlRow[]>
  close(): Promise<void>
  /** The backend's connections (mysql, pgsql; sqlite has none). */
  poolStats?(): PoolStats
  /** How long one lookup may take before it becomes a RETRY. */
  lookupTimeoutMs: number
}

export interface SqlTableOptions {
  /** dict_sqlite.c skips keys that are not UTF-8 (when the UTF-8 layer is not active). */
  skipNonUtf8Keys?: boolean
  /** The name in "Expansion limit exceeded" warnings: Postfix's function name. */
  lookupFunction: string
}

export class SqlTable implements Table {
  flags: number
  private readonly inFlight = new InFlightLookups<string | undefined>()
  readonly poolStats?: () => PoolStats

  constructor(
    readonly type: string,
    readonly name: string,
    dictFlags: number,
    private readonly templates: SqlTemplates,
    private readonly backend: SqlBackend,
    private readonly log: TableLog,
    private readonly options: SqlTableOptions,
  ) {
    // db_common_dict_partial() always answers "no" in Postfix 3.7: these tables are FIXED.
    this.flags = dictFlags | DICT_FLAG.FIXED
    if (backend.poolStats) this.poolStats = () => backend.poolStats!()
  }

  lookup(key: string): Promise<string | undefined> {
    // Read the flags now: the UTF-8 layer clears the fold flags only around this call.
    if (this.options.skipNonUtf8Keys && !(this.flags & DICT_FLAG.UTF8_ACTIVE) && !isValidUtf8(key))
      return Promise.resolve(undefined)
    const name = this.flags & DICT_FLAG.FOLD_FIX ? lowercaseAscii(key) : key
    return withTimeLimit(this.inFlight.run(name, () => this.lookupFolded(name)), this.backend.lookupTimeoutMs, `table ${this.type}:${this.name}: lookup "${name}"`)
  }

  private async lookupFolded(name: string): Promise<string | undefined> {
    const {context, query, resultFormat, expansionLimit} = this.templates
    const warn = (m: string): void => this.log.warning(m)
    const domain = await context.checkDomain(name)
    if (domain === 'skip') return undefined
    if (domain === 'retry') {
      this.log.warning(`${this.type}:${this.name} 'domain' pattern match failed for '${name}'`)
      throw new TableError('retry', `${this.type}:${this.name}: 'domain' pattern match failed for '${name}'`)
    }
    const sql = {text: ''}
    if (!context.expand(query, name, undefined, sql, warn, this.backend.quote)) return undefined
    const rows = await this.backend.run(sql.text)
    const result = {text: ''}
    let expansions = 0
    for (const row of rows) {
      for (const value of row) {
        if (context.expand(resultFormat, value, name, result, warn) && expansionLimit > 0 && ++expansions > expansionLimit) {
          const message = `${this.options.lookupFunction}: ${this.name}: Expansion limit exceeded for key${this.type === 'sqlite' ? '' : ':'} '${name}'`
          this.log.warning(message)
          throw new TableError('retry', message)
        }
      }
    }
    return result.text.length > 0 ? result.text : undefined
  }

  close(): Promise<void> {
    return this.backend.close()
  }
}

/**
 * The open sequence of the SQL types: O_RDONLY only, the .cf parser (a file that cannot be
 * read makes the table unavailable), the backend's own parameters, then the shared ones,
 * and the UTF-8 layer where the flags and smtputf8_enable ask for it.
 */
export async function openSqlTable(
  type: string, name: string, options: OpenOptions, tableOptions: SqlTableOptions,
  makeBackend: (parser: CfParser) => SqlBackend | Promise<SqlBackend>,
  legacyQuery?: (parser: CfParser) => string,
): Promise<Table> {
  if (options.mode !== 'read') throw new TableError('config', `${type}:${name} map requires O_RDONLY access mode`)
  const parser = await CfParser.open(name, options.config, options.log)
  const templates = await parseSqlTemplates(type, parser, options, legacyQuery && (() => legacyQuery(parser)))
  const backend = await makeBackend(parser)
  const table = new SqlTable(type, name, options.dictFlags, templates, backend, options.log, tableOptions)
  return needUtf8Activation(options.config, options.dictFlags) ? activateUtf8(table, options.log) : table
}

/** Binary (one char per byte) to JS text and back, for drivers that speak UTF-8. */
export const utf8Text = {
  fromBinary: (bin: string): string => Buffer.from(bin, 'latin1').toString('utf8'),
  toBinary: (text: string): string => Buffer.from(text, 'utf8').toString('latin1'),
}
