// The proxymap requests and replies on top of the attribute framing, in both dialects:
// 'legacy' (Postfix <= 3.10, what Debian 12's 3.7 speaks) and 'v2' (Postfix >= 3.11, which
// adds instance_flags to every request and flags to every reply). Pure, like attr.ts.

import {AttrList, AttrValueError, encodeAttrs} from './attr.js'
import {MAIL_ATTR, PROXY_REQ, PROXY_STAT, PROXY_STAT_NAME, ProxyRequestName, ProxyStatus} from './constants.js'

export type Dialect = 'legacy' | 'v2'

export interface ProxyRequest {
  request: ProxyRequestName
  dialect: Dialect
  /** As sent, possibly still carrying `proxy:` prefixes. */
  table: string
  /** Open-time flags: the `flags` of a legacy open, `instance_flags` in v2. */
  instanceFlags: number
  /** Per-request flags (legacy lookup/update/delete/sequence flags; v2 `flags`). */
  requestFlags: number
  key?: string
  value?: string
  func?: number
}

type FieldKind = 'str' | 'int'
type Field = readonly [name: string, kind: FieldKind, into: keyof ProxyRequest]

const T: Field = [MAIL_ATTR.TABLE, 'str', 'table']
const IF: Field = [MAIL_ATTR.INST_FLAGS, 'int', 'instanceFlags']
const RF: Field = [MAIL_ATTR.FLAGS, 'int', 'requestFlags']
const OF: Field = [MAIL_ATTR.FLAGS, 'int', 'instanceFlags']
const K: Field = [MAIL_ATTR.KEY, 'str', 'key']
const V: Field = [MAIL_ATTR.VALUE, 'str', 'value']
const F: Field = [MAIL_ATTR.FUNC, 'int', 'func']

const REQUEST_FIELDS: Record<Dialect, Record<ProxyRequestName, readonly Field[]>> = {
  legacy: {
    open: [T, OF],
    lookup: [T, RF, K],
    update: [T, RF, K, V],
    delete: [T, RF, K],
    sequence: [T, RF, F],
  },
  v2: {
    open: [T, IF],
    lookup: [T, IF, RF, K],
    update: [T, IF, RF, K, V],
    delete: [T, IF, RF, K],
    sequence: [T, IF, RF, F],
  },
}

const KNOWN_REQUESTS = new Set<string>(Object.values(PROXY_REQ))

/** What the server makes of one received attribute list. */
export type ParsedRequest =
  | {kind: 'ok'; request: ProxyRequest; unexpected?: string}
  | {kind: 'bad'; request: ProxyRequestName; dialect: Dialect; reason: string}
  | {kind: 'unrecognized'; name: string}
  | {kind: 'garbage'; reason: string}

const ULONG_MAX = (1n << 64n) - 1n

/**
 * Postfix reads integers with sscanf("%u%c"): optional space and sign, digits, nothing
 * after. glibc converts with the 64-bit strtoul (a magnitude beyond 2^64-1 saturates to
 * ULONG_MAX, a '-' negates modulo 2^64) and stores the low 32 bits: "-1" and
 * "99999999999999999999" are 4294967295, "4294967296" is 0 (measured on 3.7 and 3.11).
 */
export function parsePostfixUnsigned(text: string): number | undefined {
  // What every real client sends: up to 9 plain digits, which cannot wrap.
  if (text.length > 0 && text.length <= 9) {
    let n = 0
    for (let i = 0; i < text.length; i++) {
      const digit = text.charCodeAt(i) - 48
      if (digit < 0 || digit > 9) return parseWrapping(text)
      n = n * 10 + digit
    }
    return n
  }
  return parseWrapping(text)
}

function parseWrapping(text: string): number | undefined {
  const m = /^[ \t\n\v\f\r]*([+-]?)([0-9]+)$/.exec(text)
  if (!m) return undefined
  const magnitude = BigInt(m[2])
  const ulong = magnitude > ULONG_MAX ? ULONG_MAX : m[1] === '-' ? BigInt.asUintN(64, -magnitude) : magnitude
  return Number(BigInt.asUintN(32, ulong))
}

/**
 * Parse a request as proxymap(8) scans it: `request` first, then the attributes of that
 * request in order (ATTR_FLAG_STRICT). A missing, reordered or non-numeric attribute is
 * BAD; an extra attribute after the last expected one is reported but the request stands.
 * The dialect is recognised by `instance_flags` in second place, as a 3.11 server would
 * accept it and a 3.7 server would not.
 */
export function parseRequest(attrs: AttrList): ParsedRequest {
  if (attrs.length === 0 || attrs[0][0] !== MAIL_ATTR.REQ)
    return {kind: 'garbage', reason: attrs.length === 0
      ? 'empty request' : `unexpected attribute ${attrs[0][0]} (expecting: ${MAIL_ATTR.REQ})`}
  const name = attrs[0][1]
  if (!KNOWN_REQUESTS.has(name)) return {kind: 'unrecognized', name}
  const request = name as ProxyRequestName
  const dialect: Dialect = attrs.length > 2 && attrs[2][0] === MAIL_ATTR.INST_FLAGS ? 'v2' : 'legacy'
  const fields = REQUEST_FIELDS[dialect][request]
  const parsed: ProxyRequest = {request, dialect, table: '', instanceFlags: 0, requestFlags: 0}
  for (let i = 0; i < fields.length; i++) {
    const [want, kind, into] = fields[i]
    const got = attrs[i + 1]
    if (got === undefined) return {kind: 'bad', request, dialect, reason: `missing attribute ${want}`}
    if (got[0] !== want)
      return {kind: 'bad', request, dialect, reason: `unexpected attribute ${got[0]} (expecting: ${want})`}
    if (kind === 'int') {
      const n = parsePostfixUnsigned(got[1])
      if (n === undefined) return {kind: 'bad', request, dialect, reason: `malformed numerical data: ${got[1].slice(0, 100)}`}
      ;(parsed as unknown as Record<string, number>)[into] = n
    } else {
      ;(parsed as unknown as Record<string, string>)[into] = got[1]
    }
  }
  if (request === PROXY_REQ.SEQUENCE && parsed.func !== 0 && parsed.func !== 1)
    return {kind: 'bad', request, dialect, reason: `bad sequence function ${parsed.func}`}
  const extra = attrs[fields.length + 1]
  return extra ? {kind: 'ok', request: parsed, unexpected: extra[0]} : {kind: 'ok', request: parsed}
}

export interface ProxyReply {
  status: ProxyStatus
  /** open: the table's flags; v2: the table's flags after the request. */
  flags?: number
  key?: string
  value?: string
}

/**
 * A dict flags word as Postfix's unsigned int: JavaScript's bitwise operators give the same
 * 32 bits as a signed number, which is taken for those bits; anything that is not 32 bits
 * in either reading is refused.
 */
export function dictFlagsWord(flags: number): number {
  if (!Number.isInteger(flags) || flags < -0x80000000 || flags > 0xffffffff)
    throw new AttrValueError(`dict flags out of range: ${flags}`)
  return flags >>> 0
}

/** Encode a reply to `request` in `dialect`, with the attributes Postfix sends, in its order. */
export function encodeReply(request: ProxyRequestName, dialect: Dialect, reply: ProxyReply): Buffer {
  const status = reply.status
  if (!(status in PROXY_STAT_NAME)) throw new AttrValueError(`reply status out of range: ${status}`)
  const flags = dictFlagsWord(reply.flags ?? 0)
  const v2 = dialect === 'v2'
  switch (request) {
    case 'open':
      return encodeAttrs([[MAIL_ATTR.STATUS, status], [MAIL_ATTR.FLAGS, flags]])
    case 'lookup':
      return encodeAttrs(v2
        ? [[MAIL_ATTR.STATUS, status], [MAIL_ATTR.FLAGS, flags], [MAIL_ATTR.VALUE, reply.value ?? '']]
        : [[MAIL_ATTR.STATUS, status], [MAIL_ATTR.VALUE, reply.value ?? '']])
    case 'update':
    case 'delete':
      return encodeAttrs(v2 ? [[MAIL_ATTR.STATUS, status], [MAIL_ATTR.FLAGS, flags]] : [[MAIL_ATTR.STATUS, status]])
    case 'sequence': {
      const kv: [string, string][] = [[MAIL_ATTR.KEY, reply.key ?? ''], [MAIL_ATTR.VALUE, reply.value ?? '']]
      return encodeAttrs(v2 ? [[MAIL_ATTR.STATUS, status], [MAIL_ATTR.FLAGS, flags], ...kv] : [[MAIL_ATTR.STATUS, status], ...kv])
    }
  }
}

/** The reply to a request name the server does not know: status BAD alone, in either dialect. */
export const UNRECOGNIZED_REPLY = encodeAttrs([[MAIL_ATTR.STATUS, PROXY_STAT.BAD]])

/** The announcement a server sends first on every connection. */
export const PROTOCOL_ANNOUNCEMENT = encodeAttrs([[MAIL_ATTR.PROTO, 'proxymap_protocol']])

/** Encode a request as a client in `dialect` sends it. */
export function encodeRequest(req: ProxyRequest): Buffer {
  const fields = REQUEST_FIELDS[req.dialect][req.request]
  const attrs: [string, string | number][] = [[MAIL_ATTR.REQ, req.request]]
  for (const [name, kind, from] of fields) {
    const value = req[from] as string | number
    attrs.push([name, kind === 'int' && from !== 'func' ? dictFlagsWord(value as number) : value])
  }
  return encodeAttrs(attrs)
}

export class ProtocolError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'ProtocolError'
  }
}

const REPLY_FIELDS: Record<Dialect, Record<ProxyRequestName, readonly (readonly [string, FieldKind])[]>> = {
  legacy: {
    open: [[MAIL_ATTR.STATUS, 'int'], [MAIL_ATTR.FLAGS, 'int']],
    lookup: [[MAIL_ATTR.STATUS, 'int'], [MAIL_ATTR.VALUE, 'str']],
    update: [[MAIL_ATTR.STATUS, 'int']],
    delete: [[MAIL_ATTR.STATUS, 'int']],
    sequence: [[MAIL_ATTR.STATUS, 'int'], [MAIL_ATTR.KEY, 'str'], [MAIL_ATTR.VALUE, 'str']],
  },
  v2: {
    open: [[MAIL_ATTR.STATUS, 'int'], [MAIL_ATTR.FLAGS, 'int']],
    lookup: [[MAIL_ATTR.STATUS, 'int'], [MAIL_ATTR.FLAGS, 'int'], [MAIL_ATTR.VALUE, 'str']],
    update: [[MAIL_ATTR.STATUS, 'int'], [MAIL_ATTR.FLAGS, 'int']],
    delete: [[MAIL_ATTR.STATUS, 'int'], [MAIL_ATTR.FLAGS, 'int']],
    sequence: [[MAIL_ATTR.STATUS, 'int'], [MAIL_ATTR.FLAGS, 'int'], [MAIL_ATTR.KEY, 'str'], [MAIL_ATTR.VALUE, 'str']],
  },
}

/**
 * Parse a reply strictly, as Postfix's client does: every expected attribute, in order,
 * nothing else. A lone `status` is also accepted, because that is how any server answers a
 * request it does not understand (a 3.7 server given a v2 request answers BAD that way
 * when the request name itself is unknown).
 */
export function parseReply(request: ProxyRequestName, dialect: Dialect, attrs: AttrList): ProxyReply {
  const fields = REPLY_FIELDS[dialect][request]
  if (attrs.length === 1 && attrs[0][0] === MAIL_ATTR.STATUS && fields.length > 1) {
    const status = parsePostfixUnsigned(attrs[0][1])
    if (status === PROXY_STAT.BAD) return {status}
  }
  if (attrs.length !== fields.length)
    throw new ProtocolError(`malformed ${request} reply: expected ${fields.map(f => f[0]).join(', ')}; got ${attrs.map(a => a[0]).join(', ') || 'nothing'}`)
  const reply: Record<string, string | number> = {}
  for (let i = 0; i < fields.length; i++) {
    const [want, kind] = fields[i]
    if (attrs[i][0] !== want) throw new ProtocolError(`malformed ${request} reply: expected attribute ${want}, got ${attrs[i][0]}`)
    if (kind === 'int') {
      const n = parsePostfixUnsigned(attrs[i][1])
      if (n === undefined) throw new ProtocolError(`malformed ${request} reply: non-numeric ${want}: ${attrs[i][1].slice(0, 100)}`)
      reply[want] = n
    } else reply[want] = attrs[i][1]
  }
  if (!(Number(reply.status) in {0: 1, 1: 1, 2: 1, 3: 1, 4: 1, 5: 1}))
    throw new ProtocolError(`malformed ${request} reply: unknown status ${reply.status}`)
  return reply as unknown as ProxyReply
}
