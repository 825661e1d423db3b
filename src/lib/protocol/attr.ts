// Postfix's attr_print0/attr_scan0 framing: `name NUL value NUL` pairs, one more NUL ends a
// message. Pure: bytes in, attribute lists out; no sockets, no tables.
//
// Values are carried as "binary strings" (latin1: one char per byte) so that every byte
// a Postfix peer sends comes back unchanged; table code decodes UTF-8 where it must.

export type Attr = readonly [name: string, value: string]
export type AttrList = Attr[]

export interface AttrLimits {
  /** Longest single name or value, in bytes. */
  maxStringBytes: number
  /** Largest whole message, in bytes. */
  maxMessageBytes: number
  /** Most attributes in one message. */
  maxAttributes: number
}

// Postfix itself has no limit here; these bounds are far above anything a real client
// sends (keys and values are mail addresses and short results) and keep a hostile peer
// from making the server buffer without bound.
export const DEFAULT_ATTR_LIMITS: AttrLimits = {
  maxStringBytes: 1 << 20,
  maxMessageBytes: 4 << 20,
  maxAttributes: 64,
}

export class AttrFramingError extends Error {
  /** The messages the same push() completed before the abuse: still to be answered. */
  completed: AttrList[] = []

  constructor(message: string) {
    super(message)
    this.name = 'AttrFramingError'
  }
}

/** A value that cannot go on the wire as Postfix would write it: the message is not sent. */
export class AttrValueError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'AttrValueError'
  }
}

export const UINT32_MAX = 0xffffffff

/**
 * An integer as Postfix's attr_print0 writes one (an unsigned int, "%u"). Anything that is
 * not an integer in 0..2^32-1 is refused, never wrapped or truncated.
 */
export function formatPostfixUnsigned(n: number): string {
  if (!Number.isInteger(n) || n < 0 || n > UINT32_MAX)
    throw new AttrValueError(`integer attribute value out of range: ${n}`)
  return String(n)
}

// A byte string (one char per byte) without NUL: what attr_print0 can frame.
const NOT_A_BYTE_STRING = /[\0\u0100-\uffff]/

function checkByteString(what: string, s: string): string {
  if (NOT_A_BYTE_STRING.test(s)) throw new AttrValueError(`attribute ${what} is not a NUL-free byte string`)
  return s
}

/**
 * Encode one attribute list (a request or a reply) with its terminating NUL. The message is
 * built whole, from checked strings, or not at all (AttrValueError).
 */
export function encodeAttrs(attrs: ReadonlyArray<readonly [string, string | number]>): Buffer {
  let text = ''
  for (const [name, value] of attrs) {
    if (name.length === 0) throw new AttrValueError('empty attribute name')
    text += checkByteString('name', name) + '\0'
    text += (typeof value === 'number' ? formatPostfixUnsigned(value) : checkByteString(`${name} value`, value)) + '\0'
  }
  return Buffer.from(text + '\0', 'latin1')
}

/**
 * Streaming decoder: feed it whatever the socket delivers (half a message, three messages);
 * it returns each complete attribute list once its terminating NUL has arrived.
 */
export class AttrDecoder {
  // The unfinished string, in one buffer that doubles as needed: a peer that sends one
  // byte per write costs its bytes, not a Buffer object per byte.
  private partial: Buffer = Buffer.alloc(0)
  private partialBytes = 0
  private current: Attr[] = []
  private name: string | null = null
  private messageBytes = 0

  constructor(private readonly limits: AttrLimits = DEFAULT_ATTR_LIMITS) {}

  /** True when part of a message has been received but not its end. */
  get midMessage(): boolean {
    return this.partialBytes > 0 || this.current.length > 0 || this.name !== null
  }

  /** Bytes of the unfinished message held here (for the server's memory accounting). */
  get bufferedBytes(): number {
    return this.messageBytes + this.partialBytes
  }

  /** Decode as many complete messages as `chunk` finishes. Throws AttrFramingError on abuse. */
  push(chunk: Buffer): AttrList[] {
    const messages: AttrList[] = []
    try {
      this.decode(chunk, messages)
    } catch (err) {
      if (err instanceof AttrFramingError) err.completed = messages
      throw err
    }
    return messages
  }

  private decode(chunk: Buffer, messages: AttrList[]): void {
    // The strings a chunk completes are cut from one conversion of it (up to its last NUL),
    // not searched for and converted by a native call each.
    const last = chunk.lastIndexOf(0)
    const text = last > 0 ? chunk.toString('latin1', 0, last) : ''
    let start = 0
    while (start <= last) {
      const next = text.indexOf('\0', start)
      const nul = next < 0 ? last : next
      const piece = this.takeString(text, start, nul)
      start = nul + 1
      this.messageBytes += piece.length + 1
      this.checkMessageSize()
      if (this.name === null) {
        if (piece.length === 0) {
          messages.push(this.current)
          this.current = []
          this.messageBytes = 0
          continue
        }
        if (this.current.length >= this.limits.maxAttributes)
          throw new AttrFramingError(`more than ${this.limits.maxAttributes} attributes in one message`)
        this.name = piece
      } else {
        this.current.push([this.name, piece])
        this.name = null
      }
    }
    if (start < chunk.length) {
      const restBytes = chunk.length - start
      if (this.partialBytes + restBytes > this.limits.maxStringBytes)
        throw new AttrFramingError(`attribute longer than ${this.limits.maxStringBytes} bytes`)
      if (this.messageBytes + this.partialBytes + restBytes > this.limits.maxMessageBytes)
        throw new AttrFramingError(`message longer than ${this.limits.maxMessageBytes} bytes`)
      this.keepPartial(chunk, start, chunk.length)
    }
  }

  private keepPartial(chunk: Buffer, start: number, end: number): void {
    const needed = this.partialBytes + (end - start)
    if (needed > this.partial.length) {
      const grown = Buffer.allocUnsafe(Math.min(Math.max(needed, this.partial.length * 2, 256), this.limits.maxStringBytes))
      this.partial.copy(grown, 0, 0, this.partialBytes)
      this.partial = grown
    }
    chunk.copy(this.partial, this.partialBytes, start, end)
    this.partialBytes = needed
  }

  /** The string of bytes start..end of the chunk `text` was converted from, after what is kept of it. */
  private takeString(text: string, start: number, end: number): string {
    if (this.partialBytes === 0) {
      if (end - start > this.limits.maxStringBytes)
        throw new AttrFramingError(`attribute longer than ${this.limits.maxStringBytes} bytes`)
      return text.slice(start, end)
    }
    if (this.partialBytes + (end - start) > this.limits.maxStringBytes)
      throw new AttrFramingError(`attribute longer than ${this.limits.maxStringBytes} bytes`)
    const joined = this.partial.toString('latin1', 0, this.partialBytes) + text.slice(start, end)
    this.partialBytes = 0
    // A long string's buffer is not kept for the rest of the connection.
    if (this.partial.length > 4096) this.partial = Buffer.alloc(0)
    return joined
  }

  private checkMessageSize(): void {
    if (this.messageBytes > this.limits.maxMessageBytes)
      throw new AttrFramingError(`message longer than ${this.limits.maxMessageBytes} bytes`)
  }
}

/** Convert between Postfix's byte strings and JavaScript text. */
export const binary = {
  fromText: (text: string): string => Buffer.from(text, 'utf8').toString('latin1'),
  toText: (bytes: string): string => Buffer.from(bytes, 'latin1').toString('utf8'),
  isAscii: (s: string): boolean => {
    for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7f) return false
    return true
  },
}
