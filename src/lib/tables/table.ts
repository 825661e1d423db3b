// One interface for every map type, shaped after Postfix's DICT (src/util/dict.h):
// lookup, update, delete, sequence, close, and the dict flags that the proxymap `open`
// reply carries. Keys and values are Postfix byte strings (latin1 "binary" strings).

import type {MainConfig} from '../config/index.js'
import type {ServiceClientPool} from '../client/service-client.js'
import type {FileStamp} from './source-file.js'

export type MaybePromise<T> = T | Promise<T>

export type OpenMode = 'read' | 'write'

export interface OpenOptions {
  /** O_RDONLY for the proxymap service and lookups, O_RDWR|O_CREAT for proxywrite and updates. */
  mode: OpenMode
  /** Postfix dict flags given at open (the instance flags of the proxymap protocol). */
  dictFlags: number
  /** The main.cf in effect, for types that need parameters (and for proxy: sockets). */
  config: MainConfig
  /** Opens nested tables (unionmap:{...}, pipemap:{...}) through the same registry. */
  openNested: (spec: string, options: OpenOptions) => Promise<Table>
  /** Where a table reports warnings, in Postfix's words. */
  log: TableLog
  /** Connections to the proxymap services, for proxy: tables (one per process). */
  proxyClients?: ServiceClientPool
  /**
   * Flags the opener adds to the table's flags right after opening, as postmap -i and
   * postalias -i do (mkmap_open: DUP_WARN). A Postfix >= 3.11 proxy client sends them.
   */
  flagsAfterOpen?: number
  /**
   * The Postfix release whose table behaviour to follow where releases differ (3.11's
   * texthash folds file keys differently): [major, minor]; 3.7's when absent. The server
   * passes that of the dialect each client speaks.
   */
  postfixRelease?: readonly [number, number]
}

/** Whether `options` follow Postfix `major.minor` or later. */
export function followsPostfix(options: Pick<OpenOptions, 'postfixRelease'>, major: number, minor: number): boolean {
  const [ma, mi] = options.postfixRelease ?? [3, 7]
  return ma > major || (ma === major && mi >= minor)
}

export interface TableLog {
  warning(message: string): void
  error(message: string): void
  info(message: string): void
}

export type SequenceFunction = 'first' | 'next'

/** A backend connection pool's state now, as `proxymap stats` shows it. */
export interface PoolStats {
  /** Backend connections open or being opened. */
  connections: number
  /** Requests being served by a backend connection now. */
  busy: number
  /** Requests waiting for a connection. */
  queued: number
}

/** What a backend connection pool implements to be shown by `proxymap stats`, whichever pool it is. */
export interface ObservablePool {
  stats(): PoolStats
}

export interface Table {
  readonly type: string
  readonly name: string
  /** Postfix dict->flags: FIXED/PATTERN/MULTI_WRITER plus the flags of the last request. */
  flags: number
  /** The value for `key`, or undefined when the table has none. Throws TableError. */
  lookup(key: string): MaybePromise<string | undefined>
  /** Store `value` under `key`. Resolves false when the table refused (Postfix: NOKEY). */
  update?(key: string, value: string): MaybePromise<boolean>
  /** Remove `key`. Resolves false when it was not there. */
  delete?(key: string): MaybePromise<boolean>
  /**
   * Iterate. `cursor` is owned by the caller (one per client connection), so that two
   * clients iterating one shared table do not disturb each other.
   */
  sequence?(fn: SequenceFunction, cursor: SequenceCursor): MaybePromise<readonly [string, string] | undefined>
  /**
   * The next steps of a sequence at once (`fn` as for sequence(), then 'next' from the
   * last entry returned): at most `max` entries, none only at the end. For listings of a
   * whole table (dump), where a file read and a lock per entry would cost most of the time.
   */
  sequenceBatch?(fn: SequenceFunction, cursor: SequenceCursor, max: number): MaybePromise<readonly (readonly [string, string])[]>
  /** True when the file(s) the table was read from changed since it was opened. */
  changed?(): boolean
  /**
   * The file that Postfix's proxymap watches for this table type (dict->stat_fd: cdb,
   * hash, btree, lmdb), and what it was when the table was opened.
   */
  watchedFile?(): {path: string; stamp: FileStamp}
  /**
   * True when the open file went bad under the table (truncated or overwritten in place):
   * the instance only answers "retry" now, and even proxywrite must open the file again.
   */
  broken?(): boolean
  close?(): MaybePromise<void>
  /** The backend pool this instance uses (tables with backend connections). */
  poolStats?(): PoolStats
  /** Set when instances share their pool (ldap, redis: one per server settings), so that it is counted once. */
  readonly sharedPool?: object
}

/** Per-client iteration state; a table keeps what it needs in `state`. */
export interface SequenceCursor {
  state?: unknown
}

export type TableErrorKind = 'retry' | 'config'

/**
 * A lookup failure that is not "not found": `retry` (backend down, timeout, table
 * unavailable) or `config` (the table itself is wrong). Postfix: DICT_ERR_RETRY/CONFIG.
 */
export class TableError extends Error {
  constructor(readonly kind: TableErrorKind, message: string) {
    super(message)
    this.name = 'TableError'
  }
}

/** An operation the map type does not implement (Postfix: "... operation is not supported"). */
export class UnsupportedOperationError extends TableError {
  constructor(table: {type: string; name: string}, operation: string) {
    super('config', `table ${table.type}:${table.name}: ${operation} operation is not supported`)
    this.name = 'UnsupportedOperationError'
  }
}

export interface TableType {
  /** The type name as written in main.cf (`texthash`, `lmdb`, ...). */
  readonly type: string
  /** Throws TableError when the table cannot be opened; the caller substitutes a surrogate. */
  open(name: string, options: OpenOptions): MaybePromise<Table>
}
