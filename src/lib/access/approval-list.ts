// Which tables proxy_read_maps / proxy_write_maps approve, parsed the way Postfix 3.7's
// proxymap does it (authorize_proxied_maps() in src/proxymap/proxymap.c, with mystrtokq() and
// extpar() from src/util). Names are kept byte for byte: proxymap later compares the requested
// table name with them exactly, so "inline:{a=b, c=d}" and "inline:{a=b,c=d}" differ.

// Postfix's brace helpers live with the inline: table, which parses names the same way.
import { balancedLength, splitOutsideBraces, stripProxyPrefixes } from '../util/postfix-strings.js'

export type ApprovalParameter = 'proxy_read_maps' | 'proxy_write_maps'

const PROXY_PREFIX = 'proxy:'
const OPEN_BRACE = '{'
// Table types whose {...} argument names other tables (get_nested_dict_name()).
const NESTING_TABLE_PREFIXES = ['unionmap:', 'pipemap:']

export interface ApprovedTables {
  /** Approved table names without the proxy: prefix, in list order. */
  tables: Set<string>
  /** Postfix's warnings for syntax errors in the list ("bad proxy_read_maps parameter value: ..."). */
  warnings: string[]
}

/**
 * The tables an expanded proxy_read_maps or proxy_write_maps value approves: its entries that
 * start with proxy:, looking inside "{ table attr=value ... }" groups (first word only) and
 * into unionmap:{...} and pipemap:{...}. `parameterName` only appears in warnings.
 */
export function approvedTables(listValue: string, parameterName: ApprovalParameter = 'proxy_read_maps'): ApprovedTables {
  const result: ApprovedTables = { tables: new Set(), warnings: [] }
  collectApprovedTables(listValue, parameterName, result)
  return result
}

function collectApprovedTables(list: string, parameterName: ApprovalParameter, result: ApprovedTables): void {
  for (let entry of splitOutsideBraces(list)) {
    if (entry.startsWith(OPEN_BRACE)) {
      // Postfix does not second-guess a "{ ... }" group: it takes the group's first word.
      // (Words are split like mystrtokq(): on commas and whitespace, never inside {}.)
      const group = extractBracedText(entry)
      if (group.error !== undefined) {
        result.warnings.push(`bad ${parameterName} parameter value: ${group.error}`)
        continue
      }
      const firstWord = splitOutsideBraces(group.text)[0]
      if (firstWord === undefined) continue
      entry = firstWord
    }
    const nestingPrefix = NESTING_TABLE_PREFIXES.find((prefix) => entry.startsWith(prefix))
    if (nestingPrefix !== undefined) {
      const nested = entry.slice(nestingPrefix.length)
      if (!nested.startsWith(OPEN_BRACE)) continue
      const inner = extractBracedText(nested)
      if (inner.error !== undefined) {
        result.warnings.push(`bad ${parameterName} parameter value: ${inner.error}`)
        continue
      }
      collectApprovedTables(inner.text, parameterName, result)
      continue
    }
    if (!entry.startsWith(PROXY_PREFIX)) continue
    const tableName = stripProxyPrefixes(entry)
    if (tableName.includes(':')) result.tables.add(tableName)
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
