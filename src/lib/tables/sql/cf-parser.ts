// The parameters of a mysql/pgsql/sqlite (and memcache, ldap) table, read as Postfix's
// cfg_parser.c reads them. A table name that starts with `/` or `.` is a file of
// `name = value` lines (dict_load_file_xt(): readllines() rules for comments and
// continuation lines, split_nameval(), later entries override earlier ones with a warning;
// no $name expansion). Any other name is a prefix for main.cf parameters: `hosts` of table
// `mysqlfoo` is main.cf's `mysqlfoo_hosts`.

import type {MainConfig} from '../../config/index.js'
import {isSpaceChar} from '../../util/chars.js'
import {cString, logicalLines, readBinaryFile, strerror} from '../source-file.js'
import {TableError, TableLog} from '../table.js'

/** Postfix split_nameval(): the name ends at whitespace or `=`; the value is trimmed. */
function splitNameval(line: string): {name: string; value: string} | {error: string} {
  let i = 0
  while (i < line.length && isSpaceChar(line[i])) i++
  if (i >= line.length || line[i] === '=') return {error: 'missing attribute name'}
  const start = i
  while (i < line.length && !isSpaceChar(line[i]) && line[i] !== '=') i++
  const name = line.slice(start, i)
  while (i < line.length && isSpaceChar(line[i])) i++
  if (line[i] !== '=') return {error: "missing '=' after attribute name"}
  i++
  while (i < line.length && isSpaceChar(line[i])) i++
  let end = line.length
  while (end > i && isSpaceChar(line[end - 1])) end--
  return {name, value: line.slice(i, end)}
}

export class CfParser {
  private constructor(
    /** The table name: a path, or a main.cf parameter prefix. */
    readonly name: string,
    private readonly lookupRaw: (param: string) => string | undefined,
  ) {}

  /**
   * cfg_parser_alloc(). A file that cannot be opened is a retry error ("open NAME: %m",
   * Postfix makes the table a surrogate); a malformed line is a config error (fatal in Postfix).
   */
  static async open(name: string, config: MainConfig, log: TableLog): Promise<CfParser> {
    if (name.startsWith('/') || name.startsWith('.')) {
      const file = await readBinaryFile(name)
      if ('failed' in file) throw new TableError('retry', `open ${name}: ${strerror(file.error)}`)
      const values = new Map<string, string>()
      for (const {text, lineno} of logicalLines(file.content, name, (m) => log.warning(m))) {
        const line = cString(text)
        const parsed = splitNameval(line)
        if ('error' in parsed) throw new TableError('config', `${name}, line ${lineno}: ${parsed.error}: "${line}"`)
        const old = values.get(parsed.name)
        if (old !== undefined && old !== parsed.value)
          log.warning(`${name}, line ${lineno}: overriding earlier entry: ${parsed.name}=${old}`)
        values.set(parsed.name, parsed.value)
      }
      return new CfParser(name, (param) => values.get(param))
    }
    return new CfParser(name, (param) => {
      const full = `${name}_${param}`
      return config.isSet(full) ? config.get(full) : undefined
    })
  }

  /** An in-memory parser (tests, nested definitions). */
  static fromEntries(name: string, entries: Record<string, string>): CfParser {
    return new CfParser(name, (param) => entries[param])
  }

  /**
   * cfg_get_str(): the value or `defval`; with `defval` undefined an empty result is
   * undefined (Postfix: NULL). `min`/`max` bound the length (0: no bound).
   */
  getStr(param: string, defval: string, min?: number, max?: number): string
  getStr(param: string, defval: undefined, min?: number, max?: number): string | undefined
  getStr(param: string, defval: string | undefined, min = 0, max = 0): string | undefined {
    const value = this.lookupRaw(param) ?? defval ?? ''
    if (min && value.length < min)
      throw new TableError('config', `${this.name}: bad string length ${value.length} < ${min}: ${param} = ${value}`)
    if (max && value.length > max)
      throw new TableError('config', `${this.name}: bad string length ${value.length} > ${max}: ${param} = ${value}`)
    return defval === undefined && value === '' ? undefined : value
  }

  /** cfg_get_int(): strtol() of the whole value, within [min, max] where those are non-zero. */
  getInt(param: string, defval: number, min = 0, max = 0): number {
    const raw = this.lookupRaw(param)
    let value = defval
    if (raw !== undefined) {
      const m = /^[ \t\n\r\f\v]*([+-]?\d+)$/.exec(raw)
      value = m ? Number(m[1]) : NaN
      if (!Number.isSafeInteger(value) || value > 2147483647 || value < -2147483648)
        throw new TableError('config', `${this.name}: bad numerical configuration: ${param} = ${raw}`)
    }
    if (min && value < min) throw new TableError('config', `${this.name}: invalid ${param} parameter value ${value} < ${min}`)
    if (max && value > max) throw new TableError('config', `${this.name}: invalid ${param} parameter value ${value} > ${max}`)
    return value
  }

  /** cfg_get_bool(): yes/no, case-insensitive. */
  getBool<D extends boolean | undefined>(param: string, defval: D): boolean | D {
    const raw = this.lookupRaw(param)
    if (raw === undefined) return defval
    if (/^yes$/i.test(raw)) return true
    if (/^no$/i.test(raw)) return false
    throw new TableError('config', `${this.name}: bad boolean configuration: ${param} = ${raw}`)
  }
}
