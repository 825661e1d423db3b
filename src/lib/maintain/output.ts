// Streaming output for `proxymap dump` and the batch summaries of update/delete:
// buffered writes with back-pressure (constant memory whatever the table size), a quiet
// stop when the reader goes away (`proxymap dump | head`), and the three formats.

import {renderTable} from '../cli/render.js'
import {binary} from '../protocol/index.js'

/** Chunks of about this size reach the stream (one write(2) per line would be slow). */
const CHUNK = 64 * 1024

/**
 * Writes to a stream in chunks, waiting for it to drain; stops when the reader has gone.
 * Text is encoded straight into the chunk being filled: no intermediate strings.
 */
export class StreamWriter {
  /** Filled chunks not yet handed to the stream. */
  private full: Buffer[] = []
  private chunk = Buffer.allocUnsafe(CHUNK)
  private used = 0
  private failure: NodeJS.ErrnoException | undefined

  constructor(private readonly stream: NodeJS.WritableStream, private readonly encoding: 'latin1' | 'utf8') {
    stream.on('error', (err: NodeJS.ErrnoException) => { this.failure ??= err })
  }

  /** The reader closed the pipe (EPIPE): stop producing, exit quietly. */
  get readerGone(): boolean {
    return this.failure?.code === 'EPIPE'
  }

  get error(): NodeJS.ErrnoException | undefined {
    return this.failure
  }

  async write(text: string): Promise<void> {
    this.add(text)
    await this.flushWhenFull()
  }

  /** Buffer `text` only; flushWhenFull() or flush() sends it. */
  add(text: string): void {
    // The most bytes `text` can take: one per char in latin1, three per UTF-16 unit in UTF-8.
    const most = this.encoding === 'latin1' ? text.length : 3 * text.length
    if (this.used + most > this.chunk.length) {
      if (this.used > 0) this.full.push(this.chunk.subarray(0, this.used))
      this.chunk = Buffer.allocUnsafe(Math.max(CHUNK, most))
      this.used = 0
    }
    this.used += this.chunk.write(text, this.used, this.encoding)
  }

  async flushWhenFull(): Promise<void> {
    if (this.full.length > 0) await this.flush()
  }

  async flush(): Promise<void> {
    if (this.used > 0) {
      this.full.push(this.chunk.subarray(0, this.used))
      // The stream may keep the chunk until it is written: the next text goes to a new one.
      this.chunk = Buffer.allocUnsafe(CHUNK)
      this.used = 0
    }
    const chunks = this.full
    this.full = []
    if (this.failure) return
    for (const chunk of chunks) if (!this.stream.write(chunk)) await drained(this.stream)
  }
}

function drained(stream: NodeJS.WritableStream): Promise<void> {
  return new Promise(resolve => {
    const done = (): void => {
      stream.off('drain', done)
      stream.off('error', done)
      stream.off('close', done)
      resolve()
    }
    stream.on('drain', done)
    stream.on('error', done)
    stream.on('close', done)
  })
}

/** One dump format: entries in (Postfix byte strings), text out. */
export interface DumpRenderer {
  /** Before the first entry (only once the table has been opened successfully). */
  begin(): Promise<void>
  /** Buffered; the caller flushes (StreamWriter.flushWhenFull) between batches. */
  entry(key: string, value: string): void
  /** After the last entry; `failure` when the listing stopped early. */
  end(count: number, failure?: {message: string; exitCode: number}): Promise<void>
}

/** `key<TAB>value` lines, the bytes as the table holds them, as `postmap -s` prints. */
export class PlainDump implements DumpRenderer {
  constructor(private readonly out: StreamWriter) {}
  async begin(): Promise<void> {}
  entry(key: string, value: string): void {
    this.out.add(`${key}\t${value}\n`)
  }

  async end(): Promise<void> {
    await this.out.flush()
  }
}

/**
 * One JSON document, streamed entry by entry (so it is constant memory and still a single
 * `JSON.parse`-able value, like every other --json output):
 *   {"table":"…","entries":[{"key":"…","value":"…"},…],"count":N}
 * and, when the listing stopped early, `"error":{"message","exitCode"}` after `count`.
 * Keys and values are decoded as UTF-8.
 */
export class JsonDump implements DumpRenderer {
  private first = true
  constructor(private readonly out: StreamWriter, private readonly table: string) {}

  begin(): Promise<void> {
    return this.out.write(`{"table":${JSON.stringify(this.table)},"entries":[`)
  }

  entry(key: string, value: string): void {
    this.out.add(`${this.first ? '\n' : ',\n'}{"key":${JSON.stringify(binary.toText(key))},"value":${JSON.stringify(binary.toText(value))}}`)
    this.first = false
  }

  async end(count: number, failure?: {message: string; exitCode: number}): Promise<void> {
    await this.out.write(`${this.first ? '' : '\n'}],"count":${count}${failure ? `,"error":${JSON.stringify(failure)}` : ''}}\n`)
    await this.out.flush()
  }
}

/**
 * A table for people (cli-table3). Column widths need every row, so only the first
 * `maxRows` entries are shown; the rest are counted (still constant memory).
 */
export class TableDump implements DumpRenderer {
  private readonly rows: [string, string][] = []
  constructor(private readonly out: StreamWriter, private readonly maxRows: number, private readonly color: boolean) {}
  async begin(): Promise<void> {}

  entry(key: string, value: string): void {
    if (this.rows.length < this.maxRows) this.rows.push([binary.toText(key), binary.toText(value)])
  }

  async end(count: number, failure?: {message: string}): Promise<void> {
    let text = `${renderTable(this.rows, {head: ['key', 'value'], color: this.color})}\n`
    if (count > this.rows.length) text += `… ${count - this.rows.length} more not shown (${count} entries; the default output lists them all)\n`
    else text += `${count} ${count === 1 ? 'entry' : 'entries'}\n`
    if (failure) text += `(listing stopped early: ${failure.message})\n`
    await this.out.write(text)
    await this.out.flush()
  }
}
