// Which tables proxy_read_maps / proxy_write_maps approve, parsed the way the proxymap of the
// configuration's Postfix release does it (authorize_proxied_maps() in src/proxymap/proxymap.c,
// with mystrtokq() and extpar() from src/util; 3.11 adds authorize_file_content()). Names are
// kept byte for byte: proxymap later compares the requested table name with them exactly, so
// "inline:{a=b, c=d}" and "inline:{a=b,c=d}" differ.

import fs from 'node:fs'
import {approvalRulesFor, type ApprovalRules} from '../config/postfix-version.js'
// Postfix's brace helpers live with the inline: table, which parses names the same way.
import {balancedLength, splitOutsideBraces, stripProxyPrefixes} from '../util/postfix-strings.js'
import {cString, logicalLines, pathBytes, strerror} from '../util/source-text.js'

export type ApprovalParameter = 'proxy_read_maps' | 'proxy_write_maps'

/** What Postfix 3.11 names as the origin of tables approved through restriction classes. */
export const RESTRICTION_CLASSES = 'smtpd_restriction_classes'

const PROXY_PREFIX = 'proxy:'
const OPEN_BRACE = '{'
// Table types whose {...} argument names other tables (get_nested_dict_name()).
const NESTING_TABLE_PREFIXES = ['unionmap:', 'pipemap:']
// What a 3.11 proxymap eventually says about a file that includes itself: it opens it again
// and again until it runs out of descriptors.
const TOO_MANY_OPEN_FILES = 'Too many open files'

export interface ApprovedTables {
  /** Approved table names without the proxy: prefix, in the order they were found. */
  tables: Set<string>
  /**
   * Where each table was first found, as Postfix 3.11 records it: the list's parameter,
   * smtpd_restriction_classes, or the /file/name whose content names it.
   */
  origins: Map<string, string>
  /** Postfix's warnings about the list, in the order Postfix logs them. */
  warnings: string[]
}

/** Reads a /file/name element's bytes (latin1), or returns Postfix's warning. */
export type IncludeReader = (file: string) => {text: string} | {warning: string}

/** Postfix 3.11's authorize_file_content(): open (warning "open FILE: ..."), then read ("read FILE: ..."). */
export const readIncludeFile: IncludeReader = (file) => {
  let fd: number
  try {
    fd = fs.openSync(pathBytes(file), 'r')
  } catch (err) {
    return {warning: `open ${file}: ${strerror(err)}`}
  }
  try {
    return {text: fs.readFileSync(fd).toString('latin1')}
  } catch (err) {
    return {warning: `read ${file}: ${strerror(err)}`}
  } finally {
    fs.closeSync(fd)
  }
}

/**
 * The tables an expanded proxy_read_maps or proxy_write_maps value approves under `rules`
 * (default: Postfix 3.7's): its entries that start with proxy:, looking inside
 * "{ table attr=value ... }" groups (first word only) and into unionmap:{...} and
 * pipemap:{...}; with 3.11's rules also into /file/name elements. `parameterName` is the
 * origin that warnings name.
 */
export function approvedTables(listValue: string, parameterName: ApprovalParameter = 'proxy_read_maps',
  rules: ApprovalRules = approvalRulesFor('3.7'), readFile: IncludeReader = readIncludeFile): ApprovedTables {
  const walk = new ApprovalWalk(rules, readFile)
  walk.add(listValue, parameterName)
  return walk.result
}

/** One authorization table being filled, as one proxymap process fills it at start-up. */
export class ApprovalWalk {
  readonly result: ApprovedTables = {tables: new Set(), origins: new Map(), warnings: []}
  private readonly openFiles: string[] = []

  constructor(private readonly rules: ApprovalRules, private readonly readFile: IncludeReader = readIncludeFile) {}

  /** Walks one (expanded) list; `origin` is its parameter, or smtpd_restriction_classes. */
  add(list: string, origin: string): void {
    const since311 = this.rules.listWalk === '3.11'
    for (let entry of splitOutsideBraces(list)) {
      if (entry.startsWith(OPEN_BRACE)) {
        const head = this.groupHead(entry, origin)
        if (head === undefined) continue
        entry = head
      }
      // 3.11: /file/name elements, and non-table words skipped before anything else. (The
      // letter-or-digit test changes nothing here: what it skips could not start with proxy:,
      // unionmap: or pipemap: either; it matters for 3.11's export-all mode.)
      if (since311 && entry.startsWith('/')) {
        this.addFile(entry)
        continue
      }
      if (since311 && (!/^[A-Za-z0-9]/.test(entry) || !entry.includes(':'))) continue
      const nested = this.nestedList(entry, origin)
      if (nested !== undefined) {
        if (nested !== '') this.add(nested, origin)
        continue
      }
      if (!entry.startsWith(PROXY_PREFIX)) continue
      const tableName = stripProxyPrefixes(entry)
      // 3.7 wants a ':' once the proxy: prefixes are gone; 3.11 tested the whole word above,
      // so "proxy:x" approves "x" (which no request can name: a name without ':' is BAD)
      // and "proxy:" approves "".
      if (since311 || tableName.includes(':')) this.approve(tableName, origin)
    }
  }

  private warnSyntax(origin: string, error: string): void {
    this.result.warnings.push(this.rules.listWalk === '3.7'
      ? `bad ${origin} parameter value: ${error}`
      : `bad syntax in ${origin} content: ${error}`)
  }

  private approve(table: string, origin: string): void {
    if (this.result.tables.has(table)) return
    this.result.tables.add(table)
    this.result.origins.set(table, origin)
  }

  /** The first word of a "{ ... }" group (Postfix does not second-guess a group), or undefined. */
  private groupHead(entry: string, origin: string): string | undefined {
    const group = extractBracedText(entry)
    if (group.error !== undefined) {
      this.warnSyntax(origin, group.error)
      return undefined
    }
    // (Words are split like mystrtokq(): on commas and whitespace, never inside {}.)
    return splitOutsideBraces(group.text)[0]
  }

  /** unionmap:{...} / pipemap:{...}: the inner list, or undefined (not nested, or a syntax error). */
  private nestedList(entry: string, origin: string): string | undefined {
    const prefix = NESTING_TABLE_PREFIXES.find((p) => entry.startsWith(p))
    if (prefix === undefined) return undefined
    const nested = entry.slice(prefix.length)
    if (!nested.startsWith(OPEN_BRACE)) return ''
    const inner = extractBracedText(nested)
    if (inner.error !== undefined) {
      this.warnSyntax(origin, inner.error)
      return ''
    }
    return inner.text
  }

  /** A /file/name element: each logical line of the file is a list whose origin is the file. */
  private addFile(file: string): void {
    if (this.openFiles.includes(file)) {
      // Postfix recurses until open() fails; the tables of the file are already approved.
      this.result.warnings.push(`open ${file}: ${TOO_MANY_OPEN_FILES}`)
      return
    }
    const content = this.readFile(file)
    if ('warning' in content) {
      this.result.warnings.push(content.warning)
      return
    }
    this.openFiles.push(file)
    try {
      const warn = (message: string): void => { this.result.warnings.push(message) }
      for (const line of logicalLines(content.text, file, warn, {nullByteWarnings: 'per-read'})) this.add(cString(line.text), file)
    } finally {
      this.openFiles.pop()
    }
  }
}

// extpar() without EXTPAR_FLAG_STRIP: the text between a leading '{' and its matching '}',
// which must end the word; otherwise Postfix's error text.
function extractBracedText(word: string): { text: string; error?: undefined } | { text?: undefined; error: string } {
  const length = balancedLength(word)
  if (length === 0) return { error: `missing '}' in "${word}"` }
  if (length !== word.length) return { error: `syntax error after '}' in "${word}"` }
  return { text: word.slice(1, -1) }
}
