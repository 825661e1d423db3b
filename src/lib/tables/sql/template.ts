// The query and result templates shared by the SQL (and LDAP, memcache) tables, as
// Postfix's db_common.c does them: %s %u %d %S %U %D %1..%9 and %%, the `domain` filter,
// `result_format`, and the legacy select_field/table/where_field form.
//
// Strings are Postfix byte strings (latin1 "binary" strings). Quoting of expanded values is
// the backend's business (a callback); result templates are never quoted.

import {DICT_FLAG} from '../../protocol/constants.js'
import {splitOutsideBraces, CHARS_COMMA_SP} from '../../util/postfix-strings.js'
import {readBinaryFile} from '../source-file.js'
import {casefoldUtf8, lowercaseAscii, smtputf8Enabled} from '../fold.js'
import {OpenOptions, Table, TableError} from '../table.js'
import type {CfParser} from './cf-parser.js'

const KEY_DOMAIN = 1 << 0
const KEY_USER = 1 << 1
const VALUE_DOMAIN = 1 << 2
const VALUE_USER = 1 << 3
const KEY_PARTIAL = 1 << 4

export type QuoteFunction = (raw: string) => string

/**
 * The state that db_common_parse() builds from a table's query and result templates: one
 * set of flags for both (a %D in result_format also makes the query skip domain-less keys),
 * the highest %1..%9, and the optional `domain` list.
 */
export class TemplateContext {
  private flags = 0
  private nparts = 0
  domain?: DomainList

  /** `type:name` for messages. */
  constructor(private readonly type: string, private readonly name: string) {}

  /** db_common_parse(): remember what `format` needs; true when it expands anything. */
  parse(format: string, isQuery: boolean): boolean {
    let dynamic = false
    for (let i = 0; i < format.length; i++) {
      if (format[i] !== '%') continue
      const c = format[++i]
      switch (c) {
        case '%':
          break
        case 'u':
          this.flags |= isQuery ? KEY_USER | KEY_PARTIAL : VALUE_USER
          dynamic = true
          break
        case 'd':
          this.flags |= isQuery ? KEY_DOMAIN | KEY_PARTIAL : VALUE_DOMAIN
          dynamic = true
          break
        case 's': case 'S':
          dynamic = true
          break
        case 'U':
          this.flags |= KEY_PARTIAL | KEY_USER
          dynamic = true
          break
        case '1': case '2': case '3': case '4': case '5': case '6': case '7': case '8': case '9':
          this.nparts = Math.max(this.nparts, c.charCodeAt(0) - 0x30)
          this.flags |= KEY_PARTIAL | KEY_DOMAIN
          dynamic = true
          break
        case 'D':
          this.flags |= KEY_PARTIAL | KEY_DOMAIN
          dynamic = true
          break
        default:
          throw new TableError('config',
            `db_common_parse: ${this.name}: Invalid ${isQuery ? 'query' : 'result'} template: ${format}`)
      }
    }
    return dynamic
  }

  /**
   * db_common_expand(). For a query template `value` is the lookup key and `key` is
   * undefined; for a result template `value` is one result (null: SQL NULL) and `key` the
   * lookup key. Appends to `out.text` (with a comma when it is not empty) and returns true,
   * or returns false when the value is skipped.
   */
  expand(format: string, value: string | null, key: string | undefined, out: {text: string},
    warn: (message: string) => void, quote?: QuoteFunction): boolean {
    if (value === null) return false
    if (value.length === 0) {
      warn(key !== undefined
        ? `table "${this.type}:${this.name}": empty lookup result for: "${key}" -- ignored`
        : `table "${this.type}:${this.name}": empty query string -- ignored`)
      return false
    }
    const flags = this.flags
    const domainOf = (s: string): number | undefined => {
      const at = s.lastIndexOf('@')
      return at < 0 ? undefined : at + 1
    }
    // Offsets of the text after the last '@' (undefined: no '@').
    let vdomain: number | undefined
    let kdomain: number | undefined
    if (key !== undefined) {
      if (flags & (VALUE_DOMAIN | VALUE_USER)) vdomain = domainOf(value)
      if (((vdomain === undefined || vdomain === value.length) && (flags & VALUE_DOMAIN))
        || (vdomain === 1 && (flags & VALUE_USER))) return false
      if (flags & (KEY_DOMAIN | KEY_USER)) kdomain = domainOf(key)
      if (((kdomain === undefined || kdomain === key.length) && (flags & KEY_DOMAIN))
        || (kdomain === 1 && (flags & KEY_USER))) {
        warn(`db_common_expand: ${this.name}: lookup key '${value}' skipped after query`)
        return false
      }
    } else {
      if (flags & (KEY_DOMAIN | KEY_USER)) vdomain = domainOf(value)
      if (((vdomain === undefined || vdomain === value.length) && (flags & KEY_DOMAIN))
        || (vdomain === 1 && (flags & KEY_USER))) return false
    }

    let parts: string[] | undefined
    if (this.nparts > 0) {
      const domain = key !== undefined ? key.slice(kdomain ?? key.length) : value.slice(vdomain ?? value.length)
      // argv_split(): empty labels vanish, so "a..b" has two labels.
      parts = domain.split('.').filter((p) => p.length > 0)
      if (parts.length < this.nparts) return false
    }

    const q = (s: string): string => (quote ? quote(s) : s)
    const user = (s: string, at: number | undefined): string => (at === undefined ? s : s.slice(0, at - 1))
    const panic = (why: string): never => {
      throw new TableError('config', `db_common_expand: ${this.name}: ${format}: ${why}`)
    }
    let text = out.text.length > 0 ? ',' : ''
    for (let i = 0; i < format.length; i++) {
      const ch = format[i]
      if (ch !== '%') {
        text += ch
        continue
      }
      const c = format[++i]
      switch (c) {
        case '%':
          text += '%'
          break
        case 's':
          text += q(value)
          break
        case 'u':
          text += q(user(value, vdomain))
          break
        case 'd':
          if (!(flags & (key !== undefined ? VALUE_DOMAIN : KEY_DOMAIN)) || vdomain === undefined)
            panic('bad query/result template context')
          text += q(value.slice(vdomain))
          break
        case 'S':
          text += q(key ?? value)
          break
        case 'U':
          text += q(key !== undefined ? user(key, kdomain) : user(value, vdomain))
          break
        case 'D': {
          const at = key !== undefined ? kdomain : vdomain
          if (!(flags & KEY_DOMAIN) || at === undefined) panic('bad query/result template context')
          text += q((key ?? value).slice(at))
          break
        }
        case '1': case '2': case '3': case '4': case '5': case '6': case '7': case '8': case '9': {
          const n = c.charCodeAt(0) - 0x30
          if (!(flags & KEY_DOMAIN) || this.nparts < n || !parts) panic('bad query/result template context')
          text += q(parts![parts!.length - n])
          break
        }
        default:
          throw new TableError('config',
            `db_common_expand: ${this.name}: invalid ${key !== undefined ? 'result' : 'query'} template '${format}'`)
      }
    }
    out.text += text
    return true
  }

  /**
   * db_common_check_domain(): 'skip' when a `domain` list is configured and the key has
   * no domain, an empty local part, or a domain not in the list; 'retry' when a table in
   * the list failed.
   */
  async checkDomain(key: string): Promise<'ok' | 'skip' | 'retry'> {
    if (!this.domain) return 'ok'
    const at = key.lastIndexOf('@')
    if (at <= 0) return 'skip'
    return this.domain.match(key.slice(at + 1))
  }
}

/**
 * The `domain` parameter: a Postfix string_list (match_list.c with match_string()): names,
 * `!name`, `/file/name` (more patterns, one or more a line) and `type:table` (a lookup).
 * Names and the subject are casefolded; the first pattern that matches decides.
 */
export class DomainList {
  private constructor(
    private readonly patterns: readonly {negate: boolean; literal?: string; table?: Table}[],
    private readonly utf8: boolean,
  ) {}

  static async create(listName: string, value: string, options: OpenOptions): Promise<DomainList> {
    const utf8 = smtputf8Enabled(options.config)
    const fold = (s: string): string => (utf8 ? casefoldUtf8(s) : lowercaseAscii(s))
    const patterns: {negate: boolean; literal?: string; table?: Table}[] = []
    const parse = async (text: string, initial: boolean): Promise<void> => {
      for (const start of splitOutsideBraces(text, CHARS_COMMA_SP)) {
        if (start.startsWith('#')) {
          options.log.warning(`${listName}: comment at end of line is not supported: ${start}`)
          break
        }
        let negate = !initial
        let item = start
        while (item.startsWith('!')) {
          negate = !negate
          item = item.slice(1)
        }
        if (item.length === 0) throw new TableError('config', `${listName}: no pattern after '!'`)
        if (item.startsWith('/')) {
          const file = await readBinaryFile(item)
          if ('failed' in file) {
            // Postfix registers a surrogate table that fails every lookup.
            patterns.push({negate, table: failingTable(item)})
            continue
          }
          for (const line of file.content.split('\n')) if (!line.startsWith('#')) await parse(line, !negate)
        } else if (item.includes(':') && !item.startsWith('[')) {
          const table = await options.openNested(item, {...options, dictFlags: DICT_FLAG.LOCK | DICT_FLAG.UTF8_REQUEST})
          patterns.push({negate, table})
        } else {
          patterns.push({negate, literal: fold(item)})
        }
      }
    }
    await parse(value, true)
    return new DomainList(patterns, utf8)
  }

  async match(domain: string): Promise<'ok' | 'skip' | 'retry'> {
    const subject = this.utf8 ? casefoldUtf8(domain) : lowercaseAscii(domain)
    for (const p of this.patterns) {
      if (p.table) {
        try {
          if ((await p.table.lookup(subject)) !== undefined) return p.negate ? 'skip' : 'ok'
        } catch (err) {
          if (err instanceof TableError) return 'retry'
          throw err
        }
      } else if (p.literal === subject) {
        return p.negate ? 'skip' : 'ok'
      }
    }
    return 'skip'
  }
}

function failingTable(path: string): Table {
  return {
    type: 'nofile', name: path, flags: 0,
    lookup: () => { throw new TableError('retry', `open file ${path}: No such file or directory`) },
  }
}

/** db_common_sql_build_query(): the legacy "SELECT select_field FROM table WHERE where_field='%s' ..." form. */
export function buildLegacyQuery(parser: CfParser): string {
  const need = (param: string): string => {
    const v = parser.getStr(param, undefined, 1)
    if (v === undefined) throw new TableError('config', `db_common_sql_build_query: '${param}' parameter not defined`)
    return v
  }
  const table = need('table')
  const selectField = need('select_field')
  const whereField = need('where_field')
  const additional = parser.getStr('additional_conditions', '')
  return `SELECT ${selectField} FROM ${table} WHERE ${whereField}='%s' ${additional}`
}

/** The parameters every SQL table shares, parsed as dict_{mysql,pgsql,sqlite}.c parse them. */
export interface SqlTemplates {
  query: string
  resultFormat: string
  expansionLimit: number
  context: TemplateContext
}

export async function parseSqlTemplates(type: string, parser: CfParser, options: OpenOptions,
  legacyQuery: () => string = () => buildLegacyQuery(parser)): Promise<SqlTemplates> {
  const query = parser.getStr('query', undefined) ?? legacyQuery()
  const resultFormat = parser.getStr('result_format', '%s', 1)
  const expansionLimit = parser.getInt('expansion_limit', 0)
  const context = new TemplateContext(type, parser.name)
  context.parse(query, true)
  context.parse(resultFormat, false)
  const domain = parser.getStr('domain', '')
  if (domain.length > 0) context.domain = await DomainList.create(parser.name, domain, options)
  return {query, resultFormat, expansionLimit, context}
}
