// The fuzzer's inputs: real proxymap requests of both dialects (legacy, Postfix <= 3.10; v2,
// >= 3.11), mutated at the attribute level (reordered, duplicated, dropped, renamed,
// oversized, integers out of range) and at the byte level (truncated, flipped, spliced).
// Pure and seeded: the same seed and connection number give the same bytes on any machine,
// whatever the scheduling, so a failure is reproduced from the two numbers it reports.

import type {Dialect} from '../../src/lib/protocol/index.js'

/** sfc32: small, fast, good enough to drive mutations, and the same in every engine. */
export class Rng {
  private a: number
  private b: number
  private c: number
  private d = 1

  constructor(seed: number, stream = 0) {
    this.a = seed >>> 0
    this.b = (stream * 0x9e3779b9) >>> 0
    this.c = 0x6a09e667 ^ stream
    for (let i = 0; i < 15; i++) this.next()
  }

  /** A uniform 32-bit unsigned integer. */
  next(): number {
    const t = (((this.a + this.b) | 0) + this.d) | 0
    this.d = (this.d + 1) | 0
    this.a = this.b ^ (this.b >>> 9)
    this.b = (this.c + (this.c << 3)) | 0
    this.c = (this.c << 21) | (this.c >>> 11)
    this.c = (this.c + t) | 0
    return t >>> 0
  }

  /** 0 <= n < bound. */
  below(bound: number): number {
    return Math.floor((this.next() / 0x100000000) * bound)
  }

  chance(p: number): boolean {
    return this.next() / 0x100000000 < p
  }

  pick<T>(items: readonly T[]): T {
    return items[this.below(items.length)]!
  }
}

export type RequestName = 'open' | 'lookup' | 'update' | 'delete' | 'sequence'
export const REQUEST_NAMES: readonly RequestName[] = ['open', 'lookup', 'update', 'delete', 'sequence']

/** name, value: binary strings (one char per byte), as the codec carries them. */
export type RawAttr = [string, string]

/** The tables the fuzzed server serves, and the one valid lookup whose answer is known. */
export interface FuzzTables {
  /** Approved for lookups (proxy_read_maps), without `proxy:`. */
  read: readonly string[]
  /** Approved for updates (proxy_write_maps), without `proxy:`. */
  write: readonly string[]
  /** Names no list approves, or that cannot be opened. */
  other: readonly string[]
}

export interface BaseRequest {
  request: RequestName
  dialect: Dialect
  attrs: RawAttr[]
}

/** Flags words real clients send (see docs/protocol.md section 5) and a few they do not. */
const REAL_FLAGS = ['0', '8', '524353', '540737', '64', '16', '524288', '1', '128', '256']
const KEYS = ['a', 'b', 'c', 'A', 'alice@example.com', '\xc3\xa9', '', 'k0', 'k1', 'k2']
const VALUES = ['1', 'x', '', 'value with spaces', '\xc3\xa9t\xc3\xa9']

/** Integers as no client sends them: Postfix reads each with sscanf("%u"). */
export const HOSTILE_INTEGERS = [
  '2147483648', '4294967295', '4294967296', '-1', '-4294967295', '99999999999999999999',
  '18446744073709551615', '18446744073709551616', '-0', '+7', ' 7', '\t\n 9', '7 ', '007', '0x10',
  '1e3', '', '-', '+', 'abc', '9'.repeat(400), '65600', '65536', '4294967295 ', '2', '3',
]

const HOSTILE_REQUEST_NAMES = ['close', '', 'LOOKUP', 'lookup ', 'look', 'sequence\xff', 'open\n', 'x'.repeat(300)]
const HOSTILE_TABLES = [
  'inline', ':', 'inline:', 'proxy:proxy:inline:{a=1,b=2}', 'nosuch:thing', 'proxy:', '',
  'texthash:/x\nwarning: forged\x01\x7f\xff', 'unionmap:{inline:{a=1}}', 'pipemap:{inline:{a=1}}',
  'inline:{a=1,b=2', 'inline:{ a=1,b=2 }', 'static:', 'texthash:/dev/zero', 'hash:/etc/passwd',
  'regexp:/nonexistent', 'lmdb:/nonexistent/x', 'cidr:/proc/self/status', '\xc3\xa9:\xc3\xa9',
]
const ATTRIBUTE_NAMES = ['request', 'table', 'flags', 'instance_flags', 'key', 'value', 'function', 'status', 'protocol', 'x', '\xff']

/** A request as a real client of `dialect` sends it, on one of the tables. */
export function baseRequest(rng: Rng, dialect: Dialect, request: RequestName, tables: FuzzTables): BaseRequest {
  const pool = request === 'update' || request === 'delete' || (request === 'sequence' && rng.chance(0.5))
    ? tables.write : rng.chance(0.85) ? tables.read : tables.other
  const table = rng.pick(pool.length > 0 ? pool : tables.read)
  const attrs: RawAttr[] = [['request', request], ['table', rng.chance(0.1) ? `proxy:${table}` : table]]
  if (dialect === 'v2') attrs.push(['instance_flags', rng.chance(0.7) ? '0' : rng.pick(REAL_FLAGS)])
  if (request === 'open') {
    if (dialect === 'legacy') attrs.push(['flags', rng.pick(REAL_FLAGS)])
  } else {
    attrs.push(['flags', rng.pick(REAL_FLAGS)])
    if (request === 'sequence') attrs.push(['function', rng.chance(0.5) ? '0' : '1'])
    else attrs.push(['key', rng.pick(KEYS)])
    if (request === 'update') attrs.push(['value', rng.pick(VALUES)])
  }
  return {request, dialect, attrs}
}

/** `name NUL value NUL ... NUL`, with no check at all: what a broken client may write. */
export function frameRaw(attrs: readonly RawAttr[]): Buffer {
  let text = ''
  for (const [name, value] of attrs) text += `${name}\0${value}\0`
  return Buffer.from(`${text}\0`, 'latin1')
}

/** Sizes of oversized strings, around the decoder's limits (1 MiB a string, 4 MiB a message). */
const OVERSIZED = [300, 4096, 65536, (1 << 20) - 1, (1 << 20) + 1]

/** Mostly a few KiB; rarely around the limits, which cost the server a MiB each. */
function oversized(rng: Rng, allowHuge: boolean): string {
  const r = rng.below(100)
  const size = allowHuge && r < 2 ? rng.pick(OVERSIZED.slice(3)) : r < 20 ? OVERSIZED[2]! : rng.pick(OVERSIZED.slice(0, 2))
  return String.fromCharCode(0x61 + rng.below(26)).repeat(size)
}

function randomBytes(rng: Rng, n: number): string {
  let s = ''
  for (let i = 0; i < n; i++) s += String.fromCharCode(rng.below(256))
  return s
}

/** One attribute-level mutation, in place; returns its label. */
function mutateAttrs(rng: Rng, attrs: RawAttr[], allowHuge: boolean): string {
  const i = rng.below(attrs.length)
  switch (rng.below(12)) {
    case 0: {
      attrs.splice(i, 1)
      return 'drop'
    }
    case 1: {
      attrs.splice(rng.chance(0.5) ? i + 1 : attrs.length, 0, [...attrs[i]!] as RawAttr)
      return 'duplicate'
    }
    case 2: {
      const j = rng.below(attrs.length)
      ;[attrs[i], attrs[j]] = [attrs[j]!, attrs[i]!]
      return 'swap'
    }
    case 3: {
      const ints = attrs.map((a, k) => [a, k] as const).filter(([a]) => /flags|function/.test(a[0]))
      const target = ints.length > 0 ? rng.pick(ints)[1] : i
      attrs[target] = [attrs[target]![0], rng.pick(HOSTILE_INTEGERS)]
      return 'integer'
    }
    case 4: {
      attrs[i] = [attrs[i]![0], oversized(rng, allowHuge)]
      return 'oversized value'
    }
    case 5: {
      const t = attrs.findIndex(a => a[0] === 'table')
      attrs[t >= 0 ? t : i] = ['table', rng.pick(HOSTILE_TABLES)]
      return 'table name'
    }
    case 6: {
      attrs[0] = ['request', rng.pick(HOSTILE_REQUEST_NAMES)]
      return 'request name'
    }
    case 7: {
      const inst = attrs.findIndex(a => a[0] === 'instance_flags')
      if (inst >= 0) attrs.splice(inst, 1)
      else attrs.splice(Math.min(2, attrs.length), 0, ['instance_flags', rng.pick(REAL_FLAGS)])
      return 'other dialect'
    }
    case 8: {
      attrs[i] = [rng.pick(ATTRIBUTE_NAMES), attrs[i]![1]]
      return 'rename'
    }
    case 9: {
      attrs.push([rng.chance(0.5) ? 'extra' : randomBytes(rng, 1 + rng.below(8)).replace(/\0/g, 'z'), 'v'])
      return 'extra attribute'
    }
    case 10: {
      const n = rng.chance(0.5) ? 64 - attrs.length + rng.below(3) : 1 + rng.below(20)
      for (let k = 0; k < n; k++) attrs.push([`a${k}`, `${k}`])
      return 'many attributes'
    }
    default: {
      attrs[i] = [attrs[i]![0], randomBytes(rng, rng.below(40)).replace(/\0/g, '\x01')]
      return 'random value'
    }
  }
}

/** One byte-level mutation of a framed message. */
function mutateBytes(rng: Rng, bytes: Buffer): [Buffer, string] {
  const at = rng.below(bytes.length)
  switch (rng.below(5)) {
    case 0:
      return [bytes.subarray(0, at), 'truncated']
    case 1: {
      const out = Buffer.from(bytes)
      out[at] = out[at]! ^ (1 << rng.below(8))
      return [out, 'bit flip']
    }
    case 2: {
      const out = Buffer.from(bytes)
      out[at] = rng.pick([0, 0xff, 0x0a, 0x3a, rng.below(256)])
      return [out, 'byte set']
    }
    case 3: {
      const insert = Buffer.from(randomBytes(rng, 1 + rng.below(8)), 'latin1')
      return [Buffer.concat([bytes.subarray(0, at), insert, bytes.subarray(at)]), 'insert']
    }
    default: {
      const end = Math.min(bytes.length, at + 1 + rng.below(8))
      return [Buffer.concat([bytes.subarray(0, at), bytes.subarray(end)]), 'delete']
    }
  }
}

export interface FuzzInput {
  bytes: Buffer
  /** What was done to the request, for reports. */
  label: string
  /** Unmutated: a real client's request. */
  pristine: boolean
}

export interface InputOptions {
  dialects: readonly Dialect[]
  tables: FuzzTables
  /** Allow strings at and above the decoder's 1 MiB limit. */
  allowHuge: boolean
}

/** One input: a real request, left alone or given one to three mutations. */
export function makeInput(rng: Rng, options: InputOptions): FuzzInput {
  const dialect = rng.pick(options.dialects)
  const request = rng.pick(REQUEST_NAMES)
  const base = baseRequest(rng, dialect, request, options.tables)
  const label = `${dialect} ${request}`
  if (rng.chance(0.15)) return {bytes: frameRaw(base.attrs), label, pristine: true}
  const done: string[] = []
  const rounds = 1 + (rng.chance(0.3) ? rng.below(3) : 0)
  const attrs = base.attrs
  let bytes: Buffer | undefined
  for (let r = 0; r < rounds; r++) {
    if (bytes === undefined && rng.chance(0.65)) done.push(mutateAttrs(rng, attrs, options.allowHuge))
    else {
      bytes ??= frameRaw(attrs)
      if (bytes.length === 0) break
      const [next, what] = mutateBytes(rng, bytes)
      bytes = next
      done.push(what)
    }
  }
  return {bytes: bytes ?? frameRaw(attrs), label: `${label}: ${done.join(', ')}`, pristine: false}
}
