// What a proxymap server must send back for a stream of (possibly broken) request bytes:
// the stream is framed and parsed as proxymap(8) frames and parses it (our codec, which
// test/interop/hostile-requests.test.ts holds to real 3.7 and 3.11 byte for byte), and each
// message gives the exact attribute layout of its reply, or the point where the server
// ends the connection. Pure.

import {
  AttrDecoder, AttrFramingError, AttrList, DEFAULT_ATTR_LIMITS, DICT_FLAG, parseRequest,
} from '../../src/lib/protocol/index.js'
import type {Dialect} from '../../src/lib/protocol/index.js'
import type {RequestName} from './mutator.js'

/** The attributes of each reply, in order (docs/protocol.md section 4). */
const REPLY_LAYOUT: Record<Dialect, Record<RequestName, readonly string[]>> = {
  legacy: {
    open: ['status', 'flags'],
    lookup: ['status', 'value'],
    update: ['status'],
    delete: ['status'],
    sequence: ['status', 'key', 'value'],
  },
  v2: {
    open: ['status', 'flags'],
    lookup: ['status', 'flags', 'value'],
    update: ['status', 'flags'],
    delete: ['status', 'flags'],
    sequence: ['status', 'flags', 'key', 'value'],
  },
}
const INTEGER_ATTRIBUTES = new Set(['status', 'flags'])
const STATUS_BAD = 3

export interface ExpectedReply {
  layout: readonly string[]
  /** The only status allowed (BAD for a malformed request). */
  status?: number
  /** A real client's request: anything but BAD. */
  notBad?: boolean
  /** The reply, byte for byte, when it is known. */
  exact?: string
  /**
   * The server may end the connection instead of answering (Postfix's dict_open() panics
   * on a first open with both LOCK and OPEN_LOCK).
   */
  mayCloseInstead?: boolean
}

/** Why the server ends the connection after the replies expected so far. */
export type PredictedClose = 'none' | 'malformed request' | 'framing limit'

export class ConnectionOracle {
  readonly expected: ExpectedReply[] = []
  closes: PredictedClose = 'none'
  private readonly decoder = new AttrDecoder(DEFAULT_ATTR_LIMITS)

  /** True while part of a message has been sent but not its end. */
  get midMessage(): boolean {
    return this.decoder.midMessage
  }

  /** Feeds one input's bytes; `exact`/`notBad` apply when they form exactly one message. */
  push(bytes: Buffer, known: {exact?: string; notBad?: boolean} = {}): void {
    if (this.closes !== 'none') return
    const before = this.expected.length
    // Message by message, as the server's decoder stops at the same byte whatever the reads.
    let start = 0
    while (start < bytes.length && this.closes === 'none') {
      const nul = bytes.indexOf(0, start)
      const end = nul < 0 ? bytes.length : nul + 1
      let messages: AttrList[]
      try {
        messages = this.decoder.push(bytes.subarray(start, end))
      } catch (err) {
        if (!(err instanceof AttrFramingError)) throw err
        this.closes = 'framing limit'
        return
      }
      for (const m of messages) this.expect(m)
      start = end
    }
    if (this.expected.length === before + 1 && this.closes === 'none') Object.assign(this.expected[before]!, known)
  }

  private expect(message: AttrList): void {
    if (this.closes !== 'none') return
    const parsed = parseRequest(message)
    switch (parsed.kind) {
      case 'garbage':
        this.closes = 'malformed request'
        return
      case 'unrecognized':
        this.expected.push({layout: ['status'], status: STATUS_BAD})
        return
      case 'bad':
        this.expected.push({layout: REPLY_LAYOUT[parsed.dialect][parsed.request], status: STATUS_BAD})
        return
      case 'ok': {
        const req = parsed.request
        const openFlags = req.dialect === 'v2' || req.request === 'open' ? req.instanceFlags : req.requestFlags
        const panics = (openFlags & DICT_FLAG.LOCK) !== 0 && (openFlags & DICT_FLAG.OPEN_LOCK) !== 0
        this.expected.push({layout: REPLY_LAYOUT[req.dialect][req.request], ...(panics ? {mayCloseInstead: true} : {})})
      }
    }
  }
}

const CANONICAL_UNSIGNED = /^(0|[1-9][0-9]{0,9})$/

/** Why `reply` is not the reply `want` describes, or undefined when it is. */
export function replyDefect(reply: AttrList, want: ExpectedReply): string | undefined {
  const names = reply.map(a => a[0])
  if (names.join('\0') !== want.layout.join('\0'))
    return `attributes ${JSON.stringify(names)}, expected ${JSON.stringify(want.layout)}`
  for (const [name, value] of reply) {
    if (INTEGER_ATTRIBUTES.has(name) && (!CANONICAL_UNSIGNED.test(value) || Number(value) > 0xffffffff))
      return `${name} ${JSON.stringify(value)} is not an unsigned 32-bit decimal`
  }
  const status = Number(reply[0]![1])
  if (status > 5) return `unknown status ${status}`
  if (want.status !== undefined && status !== want.status) return `status ${status}, expected ${want.status}`
  if (want.notBad && status === STATUS_BAD) return 'status BAD for a real client\'s request'
  if (want.exact !== undefined) {
    const got = reply.map(([n, v]) => `${n}\0${v}\0`).join('') + '\0'
    if (got !== want.exact) return `${JSON.stringify(got)}, expected ${JSON.stringify(want.exact)}`
  }
  return undefined
}
