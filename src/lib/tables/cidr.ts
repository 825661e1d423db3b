// cidr:/path — an ordered list of IPv4/IPv6 networks, first match wins
// (Postfix dict_cidr.c on cidr_match.c; format: cidr_table(5)).

import {DICT_FLAG} from '../protocol/constants.js'
import {isSpaceChar, trimSpace} from '../util/chars.js'
import {cString, filesToBase64} from './source-file.js'
import {isEndifStatement, isIfStatement, loadRules, openPatternTable, PatternTable, searchRules, skipNegations} from './pattern-rules.js'
import {OpenOptions, Table, TableType} from './table.js'

type CidrOp = 'match' | 'if' | 'endif'

interface CidrRule {
  op: CidrOp
  lineno: number
  /** 4 or 6 (Postfix decides by the presence of ':'). */
  family?: 4 | 6
  net?: Uint8Array
  mask?: Uint8Array
  /** false for `!pattern`: the rule applies to every same-family address outside the net. */
  match?: boolean
  value?: string
  /** For `if`: the index of its `endif`, or -1 when the file has none. */
  end?: number
}

/** glibc inet_pton(AF_INET): exactly four decimal octets, no leading zeros, each <= 255. */
export function parseIPv4(s: string): Uint8Array | undefined {
  const parts = s.split('.')
  if (parts.length !== 4) return undefined
  const out = new Uint8Array(4)
  for (let i = 0; i < 4; i++) {
    const p = parts[i]
    if (!/^[0-9]{1,3}$/.test(p) || (p.length > 1 && p[0] === '0')) return undefined
    const n = Number(p)
    if (n > 255) return undefined
    out[i] = n
  }
  return out
}

/**
 * glibc inet_pton(AF_INET6): up to eight groups of 1-4 hex digits, at most one `::`, an
 * optional dotted IPv4 address as the last 32 bits. No zone ids, no brackets.
 */
export function parseIPv6(s: string): Uint8Array | undefined {
  const out = new Uint8Array(16)
  if (s.length === 0) return undefined
  let head = s
  let tail: string | undefined
  const dbl = s.indexOf('::')
  if (dbl >= 0) {
    head = s.slice(0, dbl)
    tail = s.slice(dbl + 2)
    if (tail.includes('::')) return undefined
  }
  const groups = (text: string, allowV4: boolean): number[] | undefined => {
    if (text === '') return []
    const items = text.split(':')
    const words: number[] = []
    for (let i = 0; i < items.length; i++) {
      const item = items[i]
      if (allowV4 && i === items.length - 1 && item.includes('.')) {
        const v4 = parseIPv4(item)
        if (!v4) return undefined
        words.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3])
      } else if (/^[0-9a-fA-F]{1,4}$/.test(item)) {
        words.push(Number.parseInt(item, 16))
      } else {
        return undefined
      }
    }
    return words
  }
  const a = groups(head, tail === undefined)
  const b = tail === undefined ? [] : groups(tail, true)
  if (!a || !b) return undefined
  if (tail === undefined ? a.length !== 8 : a.length + b.length > 7) return undefined
  const words = [...a, ...new Array<number>(8 - a.length - b.length).fill(0), ...b]
  words.forEach((w, i) => {
    out[2 * i] = w >> 8
    out[2 * i + 1] = w & 0xff
  })
  return out
}

function parseAddress(family: 4 | 6, s: string): Uint8Array | undefined {
  return family === 6 ? parseIPv6(s) : parseIPv4(s)
}

/** glibc inet_ntop(): dotted quad, or RFC 5952 text with an IPv4 tail for ::ffff:0:0/96 and ::/96. */
export function formatAddress(family: 4 | 6, bytes: Uint8Array): string {
  if (family === 4) return Array.from(bytes).join('.')
  const words: number[] = []
  for (let i = 0; i < 16; i += 2) words.push((bytes[i] << 8) | bytes[i + 1])
  // Longest run of (at least two) zero words, first one on ties.
  let best = -1
  let bestLen = 0
  for (let i = 0; i < 8;) {
    if (words[i] !== 0) {
      i++
      continue
    }
    let j = i
    while (j < 8 && words[j] === 0) j++
    if (j - i > bestLen) {
      best = i
      bestLen = j - i
    }
    i = j
  }
  if (bestLen < 2) best = -1
  let out = ''
  for (let i = 0; i < 8; i++) {
    if (best >= 0 && i >= best && i < best + bestLen) {
      if (i === best) out += '::'
      continue
    }
    // glibc: an embedded IPv4 tail for ::a.b.c.d (not ::1 / ::) and ::ffff:a.b.c.d.
    if (i === 6 && best === 0 && (bestLen === 6 || (bestLen === 5 && words[5] === 0xffff))) {
      if (out.length > 0 && !out.endsWith(':')) out += ':'
      out += `${bytes[12]}.${bytes[13]}.${bytes[14]}.${bytes[15]}`
      break
    }
    if (out.length > 0 && !out.endsWith(':')) out += ':'
    out += words[i].toString(16)
  }
  return out
}

/** Postfix mask_addr(): keep the first `bits` bits. */
function maskBytes(bytes: Uint8Array, bits: number): Uint8Array {
  const out = new Uint8Array(bytes.length)
  for (let i = 0; i < bytes.length; i++) {
    const keep = Math.max(0, Math.min(8, bits - 8 * i))
    out[i] = bytes[i] & ((0xff << (8 - keep)) & 0xff)
  }
  return out
}

const familyOf = (s: string): 4 | 6 => (s.includes(':') ? 6 : 4)

/** Postfix cidr_match_parse(): the pattern as a network, or the reason it is not one. */
function parseCidrPattern(pattern: string): {family: 4 | 6; net: Uint8Array; mask: Uint8Array} | {error: string} {
  let address = pattern
  let maskSearch: string
  let maskInAddress = true
  if (address[0] === '[') {
    address = address.slice(1)
    const close = address.indexOf(']')
    if (close < 0) return {error: `missing ']' character after "[${address}"`}
    const after = address.slice(close + 1)
    address = address.slice(0, close)
    if (after[0] !== '/') {
      if (after.length > 0) return {error: `garbage after "[${address}]"`}
      maskSearch = address
    } else {
      maskSearch = after
      maskInAddress = false
    }
  } else {
    maskSearch = address
  }
  const slash = maskSearch.indexOf('/')
  const family = familyOf(address.slice(0, maskInAddress && slash >= 0 ? slash : undefined))
  const bitCount = family === 6 ? 128 : 32
  if (slash >= 0) {
    const maskText = maskSearch.slice(slash + 1)
    if (maskInAddress) address = address.slice(0, slash)
    let error: string | undefined
    let shift = 0
    let net: Uint8Array | undefined
    if (!/^[0-9]+$/.test(maskText)) error = 'bad mask value'
    else if ((shift = Number(maskText)) > bitCount) error = 'bad mask length'
    else if (!(net = parseAddress(family, address))) error = 'bad network value'
    if (error !== undefined || !net) return {error: `${error} in "${address}/${maskText}"`}
    const mask = maskBytes(new Uint8Array(bitCount / 8).fill(0xff), shift)
    if (net.some((byte, i) => (byte & ~mask[i]) !== 0)) {
      const fixed = formatAddress(family, maskBytes(net, shift))
      return {error: `non-null host address bits in "${address}/${maskText}", perhaps you should use "${fixed}/${shift}" instead`}
    }
    return {family, net, mask}
  }
  const net = parseAddress(family, address)
  if (!net) return {error: `bad address pattern: "${address}"`}
  return {family, net, mask: new Uint8Array(bitCount / 8).fill(0xff)}
}

function ruleMatches(rule: CidrRule, family: 4 | 6, addr: Uint8Array): boolean {
  if (rule.family !== family) return false
  const net = rule.net as Uint8Array
  const mask = rule.mask as Uint8Array
  for (let i = 0; i < addr.length; i++) if ((addr[i] & mask[i]) !== net[i]) return !rule.match
  return rule.match === true
}

export class CidrTable extends PatternTable {
  readonly type = 'cidr'

  constructor(name: string, private readonly rules: CidrRule[], dictFlags: number) {
    super(name, dictFlags)
  }

  lookup(key: string): string | undefined {
    const family = familyOf(key)
    const addr = parseAddress(family, key)
    if (!addr) return undefined
    // A failed IF skips to its ENDIF; an IF without ENDIF ends the search.
    return searchRules(this.rules, (rule) => (ruleMatches(rule, family, addr) ? rule.value : undefined),
      (rule) => rule.family === family && ruleMatches(rule, family, addr))
  }
}

/** Postfix dict_cidr_parse_rule(): one rule, or the reason for skipping the line. */
async function parseRule(line: string, nesting: number, dictFlags: number): Promise<CidrRule | {error: string}> {
  let p = line
  let match = true
  let rule: CidrRule
  const negations = (): void => {
    const skipped = skipNegations(p, 0)
    match = skipped.match
    p = p.slice(skipped.pos)
  }
  if (isIfStatement(p)) {
    p = p.slice(2)
    negations()
    if (p.length === 0) return {error: 'no address pattern'}
    const parsed = parseCidrPattern(trimSpace(p))
    if ('error' in parsed) return parsed
    rule = {op: 'if', lineno: 0, ...parsed, match, value: '', end: -1}
  } else if (isEndifStatement(p)) {
    if (trimSpace(p.slice(5)).length > 0) return {error: 'garbage after ENDIF'}
    if (nesting === 0) return {error: 'ENDIF without IF'}
    return {op: 'endif', lineno: 0}
  } else {
    negations()
    let end = 0
    while (end < p.length && !isSpaceChar(p[end])) end++
    const pattern = p.slice(0, end)
    const value = trimSpace(p.slice(end))
    if (pattern.length === 0) return {error: 'no address pattern'}
    const parsed = parseCidrPattern(pattern)
    if ('error' in parsed) return parsed
    if (value.length === 0) return {error: 'no lookup result'}
    rule = {op: 'match', lineno: 0, ...parsed, match, value}
  }
  if (dictFlags & DICT_FLAG.SRC_RHS_IS_FILE) {
    const encoded = await filesToBase64(rule.value as string)
    if ('error' in encoded) return {error: encoded.error}
    rule.value = encoded.value
  }
  return rule
}

/**
 * Open as dict_cidr_open() does: the file (or an inline `{ {rule}, ... }` list) is read
 * once; a bad rule is skipped with Postfix's warning; an IF without ENDIF is warned about
 * and ends every lookup that fails it. Only O_RDONLY.
 */
export const cidrType: TableType = {
  type: 'cidr',
  async open(name: string, options: OpenOptions): Promise<Table> {
    return openPatternTable('cidr', name, options, async (content) => {
      const warn = (message: string): void => options.log.warning(message)
      const rules = await loadRules('cidr', name, content, warn, async (text, lineno, nesting) => {
        const parsed = await parseRule(cString(text), nesting, options.dictFlags)
        if (!('error' in parsed)) return parsed
        warn(`cidr map ${name}, line ${lineno}: ${parsed.error}: skipping this rule`)
        return undefined
      })
      return new CidrTable(name, rules, options.dictFlags)
    })
  },
}
