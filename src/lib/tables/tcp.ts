// tcp:host:port — the tcp_table(5) client (Postfix dict_tcp.c). Request "get SP key LF"
// with the key %XX-encoded (%, whitespace, non-printable and non-ASCII bytes); reply one
// line "200 value" (found, %XX-decoded), "500 text" (not found), "4xx text" (RETRY); any
// other or malformed reply is a RETRY. Postfix tries up to 10 times, 1 s apart, when the
// server cannot be reached or closes the connection; replies are at most 4096 bytes; the
// time limit is 100 s (`tcpTypeWith({timeoutMs})`). Connections: see socketmap.ts.

import {DICT_FLAG} from '../protocol/constants.js'
import {activateUtf8, lowercaseAscii, needUtf8Activation} from './fold.js'
import {OpenOptions, PoolStats, Table, TableError, TableLog, TableType} from './table.js'
import {
  cString, printableUtf8, ReplyParser, SharedStreamPools, socketErrorText, StreamClientPool,
  StreamClosedError, StreamTableLimits,
} from './socketmap.js'
import {backendConnectionLimit, InFlightLookups} from './backend-pool.js'

export const TCP_TIMEOUT_MS = 100_000
export const TCP_MAX_LENGTH = 4096
export const TCP_MAX_TRIES = 10

/** Postfix hex_quote(). */
export function hexQuote(raw: string): string {
  let out = ''
  for (let i = 0; i < raw.length; i++) {
    const c = raw.charCodeAt(i)
    out += c !== 0x25 && c > 0x20 && c < 0x7f ? raw[i] : `%${c.toString(16).toUpperCase().padStart(2, '0')}`
  }
  return out
}

/** Postfix hex_unquote(); undefined for a malformed %XX. */
export function hexUnquote(hex: string): string | undefined {
  let out = ''
  for (let i = 0; i < hex.length; i++) {
    if (hex[i] !== '%') {
      out += hex[i]
      continue
    }
    const pair = hex.slice(i + 1, i + 3)
    if (!/^[0-9a-fA-F]{2}$/.test(pair)) return undefined
    out += String.fromCharCode(parseInt(pair, 16))
    i += 2
  }
  return out
}

class LineTooLongError extends Error {}

// Postfix reads at most TCP_MAX_LENGTH bytes including the newline (vstring_get_nonl_bound)
const lineParser: ReplyParser<string> = (buf) => {
  const nl = buf.indexOf(0x0a)
  if (nl >= TCP_MAX_LENGTH || (nl < 0 && buf.length >= TCP_MAX_LENGTH)) throw new LineTooLongError(`text longer than ${TCP_MAX_LENGTH}`)
  if (nl < 0) return undefined
  return {value: cString(buf.subarray(0, nl).toString('latin1')), used: nl + 1}
}

class TcpTable implements Table {
  readonly type = 'tcp'
  flags: number
  private readonly inFlight = new InFlightLookups<string | undefined>()

  constructor(readonly name: string, dictFlags: number, private readonly pool: StreamClientPool,
    private readonly log: TableLog, private readonly retryDelayMs: number, private readonly releasePool: () => void) {
    this.flags = dictFlags | DICT_FLAG.PATTERN
  }

  close(): void {
    this.releasePool()
  }

  poolStats(): PoolStats {
    return this.pool.stats()
  }

  lookup(key: string): Promise<string | undefined> {
    const k = this.flags & DICT_FLAG.FOLD_MUL ? lowercaseAscii(key) : key
    return this.inFlight.run(k, () => this.query(k))
  }

  private async query(k: string): Promise<string | undefined> {
    const request = Buffer.from(`get ${hexQuote(k)}\n`, 'latin1')
    let line: string | undefined
    for (let tries = 0; line === undefined; ) {
      try {
        // no silent retry on a hang-up: Postfix warns and counts every attempt
        line = await this.pool.request(request, lineParser, 'never')
      } catch (err) {
        if (err instanceof StreamClosedError) throw new TableError('retry', `table tcp:${this.name}: ${err.message}`)
        const e = err as NodeJS.ErrnoException
        // (Postfix's "unexpected EOF (%m)" shows whatever errno was left over; ours names the cause)
        this.log.warning(e.code || /time limit/.test(e.message)
          ? `connect to TCP map ${this.name}: ${socketErrorText(e)}`
          : `read TCP map reply from ${this.name}: ${err instanceof LineTooLongError ? e.message : `unexpected EOF (${socketErrorText(e)})`}`)
        if (++tries >= TCP_MAX_TRIES) throw new TableError('retry', `table tcp:${this.name}: lookup failed`)
        await this.pool.pause(this.retryDelayMs)
      }
    }
    const unquoted = /^\d\d\d[ \t\n\r\f\v]/.test(line) ? hexUnquote(line.slice(4)) : undefined
    // a %00 ends the value: Postfix returns it as a C string
    const raw = unquoted === undefined ? undefined : cString(unquoted)
    if (raw === undefined) {
      const message = `read TCP map reply from ${this.name}: malformed reply: ${printableUtf8(line, '_').slice(0, 100)}`
      this.log.warning(message)
      throw new TableError('retry', message)
    }
    switch (line[0]) {
      case '2': return raw
      case '5': return undefined
      case '4': throw new TableError('retry', `table tcp:${this.name}: soft error: ${line}`)
      default: {
        const message = `read TCP map reply from ${this.name}: bad status code: ${printableUtf8(line, '_').slice(0, 100)}`
        this.log.warning(message)
        throw new TableError('retry', message)
      }
    }
  }
}

const pools = new SharedStreamPools()

export function tcpTypeWith(limits: Partial<StreamTableLimits & {retryDelayMs: number}> = {}): TableType {
  const timeoutMs = limits.timeoutMs ?? TCP_TIMEOUT_MS
  return {
    type: 'tcp',
    open(name: string, options: OpenOptions): Table {
      if (options.dictFlags & DICT_FLAG.NO_UNAUTH)
        throw new TableError('config', `tcp:${name} map is not allowed for security sensitive data`)
      if (options.mode !== 'read') throw new TableError('config', `tcp:${name} map requires O_RDONLY access mode`)
      const max = limits.maxConnections ?? backendConnectionLimit(options.config, options.log)
      const maxIdleMs = limits.maxIdleMs ?? timeoutMs
      const key = `${name}\0${timeoutMs}\0${max}\0${maxIdleMs}`
      // Postfix keeps its connection open; the idle limit here only tidies up.
      const {pool, release} = pools.acquire(key, () =>
        new StreamClientPool(`inet:${name}`, {max, maxIdleMs, maxTtlMs: Infinity, timeoutMs}))
      const table = new TcpTable(name, options.dictFlags, pool, options.log, limits.retryDelayMs ?? 1000, release)
      return needUtf8Activation(options.config, options.dictFlags) ? activateUtf8(table, options.log) : table
    },
  }
}

export const tcpType: TableType = tcpTypeWith()
