// `proxymap update`, `delete` and `dump`: change or list any table the registry can open.
// proxy:type:name goes through the proxywrite (update, delete) or proxymap (dump) service,
// ours or Postfix's; every other name is opened here, on the file. Same code either way.

import type {MainConfig} from '../config/index.js'
import {DialectChoice, ServiceClientPool, configRelease, dialectOfRelease, releaseNumbers} from '../client/service-client.js'
import {CliError} from '../cli/errors.js'
import {EXIT} from '../cli/exit-codes.js'
import {DICT_FLAG, Dialect, binary} from '../protocol/index.js'
import {postmapQueryFlags} from '../query/query.js'
import {TableRegistry, defaultRegistry} from '../tables/registry.js'
import {OpenMode, SequenceCursor, SequenceFunction, Table, TableLog, UnsupportedOperationError} from '../tables/table.js'
import type {InputEntry} from './postmap-input.js'

export interface MaintainOptions {
  config: MainConfig
  /** type:name, or proxy:type:name to go through the service. */
  table: string
  /** postmap -f: do not fold keys to lower case. */
  fold: boolean
  dialect: DialectChoice
  registry?: TableRegistry
  log: TableLog
}

/**
 * The dict flags postmap uses. -i -r (incremental, replace duplicates): DUP_REPLACE, FOLD_FIX
 * and UTF8_REQUEST (3.11's postmap -i -r sends exactly these through proxy:, and adds
 * DUP_WARN once the table is open). A table opened here, not through the service, also
 * gets LOCK: postmap locks the file it updates. -d and -s: DUP_WARN|FOLD_FIX|UTF8_REQUEST|LOCK,
 * the same flags as -q. -f drops FOLD_FIX.
 */
export function postmapUpdateFlags(fold: boolean, throughProxy: boolean): number {
  return (throughProxy ? 0 : DICT_FLAG.LOCK) | DICT_FLAG.DUP_REPLACE | DICT_FLAG.UTF8_REQUEST | (fold ? DICT_FLAG.FOLD_FIX : 0)
}
export const postmapDeleteFlags = postmapQueryFlags
export const postmapSequenceFlags = postmapQueryFlags

/** How a batch stopped: how much was done before, and the key (and input line) that failed. */
export class BatchFailure extends Error {
  constructor(
    readonly operation: 'update' | 'delete',
    readonly table: string,
    /** Entries updated, or keys deleted, before the failure. */
    readonly applied: number,
    readonly key: string | undefined,
    readonly line: number | undefined,
    readonly reason: unknown,
  ) {
    super(`${operation} of ${table} stopped${key === undefined ? '' : ` at key "${key}"`}${line === undefined ? '' : ` (stdin line ${line})`} ` +
      `after ${applied} ${operation === 'update' ? 'updated' : 'deleted'}: ${(reason as Error)?.message ?? String(reason)}`)
    this.name = 'BatchFailure'
  }
}

/** `options.table` opened for one command; closing it also closes its proxy: connections. */
interface OpenedTable {
  table: Table
  close(): Promise<void>
}

async function openTable(options: MaintainOptions, mode: OpenMode, dictFlags: number): Promise<OpenedTable> {
  const registry = options.registry ?? defaultRegistry
  const release = configRelease(options.config)
  const proxyClients = new ServiceClientPool(options.dialect, {timeoutMs: 60_000, expectedDialect: dialectOfRelease(release)})
  // postmap -i (mkmap_open) adds DUP_WARN to a table's flags once it is open.
  const flagsAfterOpen = mode === 'write' && (dictFlags & DICT_FLAG.DUP_REPLACE) ? DICT_FLAG.DUP_WARN : 0
  try {
    // Table names are Postfix byte strings, like keys: UTF-8 from the command line.
    const table = await registry.openStrict(binary.fromText(options.table), {postfixRelease: releaseNumbers(release), mode, dictFlags, flagsAfterOpen, config: options.config, log: options.log, proxyClients})
    return {
      table,
      async close() {
        try {
          await table.close?.()
        } finally {
          proxyClients.closeAll()
        }
      },
    }
  } catch (err) {
    proxyClients.closeAll()
    throw err
  }
}

async function withTable<T>(options: MaintainOptions, mode: OpenMode, dictFlags: number, use: (table: Table) => Promise<T>): Promise<T> {
  const opened = await openTable(options, mode, dictFlags)
  try {
    return await use(opened.table)
  } finally {
    await opened.close()
  }
}

export interface UpdateSummary {
  table: string
  updated: number
}

/**
 * Store each entry in order, as `postmap -i -r` (through proxywrite: as Postfix's
 * dict_proxy_update). Stops at the first entry that fails, or at the first malformed
 * input line, with a BatchFailure that says how many were stored before.
 */
export async function updateEntries(options: MaintainOptions, entries: AsyncIterable<InputEntry> | Iterable<InputEntry>): Promise<UpdateSummary> {
  return withTable(options, 'write', postmapUpdateFlags(options.fold, options.table.startsWith('proxy:')), async table => {
    if (!table.update) throw new UnsupportedOperationError(table, 'update')
    let updated = 0
    const iterator = (Symbol.asyncIterator in entries ? entries[Symbol.asyncIterator]() : entries[Symbol.iterator]()) as AsyncIterator<InputEntry> | Iterator<InputEntry>
    for (;;) {
      let entry: InputEntry
      try {
        const next = await iterator.next()
        if (next.done) break
        entry = next.value
      } catch (err) {
        // A malformed input line: nothing of it was applied.
        throw new BatchFailure('update', options.table, updated, undefined, (err as {line?: number}).line, err)
      }
      let stored: boolean
      try {
        stored = await table.update(binary.fromText(entry.key), binary.fromText(entry.value))
      } catch (err) {
        throw new BatchFailure('update', options.table, updated, entry.key, entry.line, err)
      }
      if (!stored) {
        throw new BatchFailure('update', options.table, updated, entry.key, entry.line,
          new CliError(`the table refused to store key "${entry.key}"`, EXIT.BAD))
      }
      updated++
    }
    return {table: options.table, updated}
  })
}

export interface DeleteSummary {
  table: string
  deleted: number
  missing: number
}

/**
 * Delete each key in order, as `postmap -d KEY` / `postmap -d -` (keys are whole lines).
 * A key that is not there is an answer, not a failure (`onMissing` hears of it); any other
 * failure stops the batch with a BatchFailure.
 */
export async function deleteKeys(options: MaintainOptions, keys: AsyncIterable<string> | Iterable<string>,
  onMissing: (key: string) => void = () => undefined): Promise<DeleteSummary> {
  return withTable(options, 'write', postmapDeleteFlags(options.fold), async table => {
    if (!table.delete) throw new UnsupportedOperationError(table, 'delete')
    let deleted = 0
    let missing = 0
    // Keys from standard input have line numbers; keys from the command line do not.
    const fromStdin = !Array.isArray(keys)
    let line = 0
    for await (const key of keys) {
      line++
      let removed: boolean
      try {
        removed = await table.delete(binary.fromText(key))
      } catch (err) {
        throw new BatchFailure('delete', options.table, deleted, key, fromStdin ? line : undefined, err)
      }
      if (removed) deleted++
      else {
        missing++
        onMissing(key)
      }
    }
    return {table: options.table, deleted, missing}
  })
}

/** Entries per step of a listing: big enough that the per-step costs disappear. */
const DUMP_BATCH = 1024

/**
 * Every entry of the table, as `postmap -s` lists them (through the proxymap service for
 * proxy: tables, which Postfix 3.7's postmap refuses), in batches of at most DUMP_BATCH
 * entries: constant memory. Keys and values are Postfix byte strings (latin1 "binary"
 * strings).
 */
export async function* dumpBatches(options: MaintainOptions): AsyncGenerator<readonly (readonly [key: string, value: string])[]> {
  const {table, close} = await openTable(options, 'read', postmapSequenceFlags(options.fold))
  try {
    if (!table.sequence) throw new UnsupportedOperationError(table, 'sequence')
    // Our own cursor: a directly opened table may be shared (lmdb environments are).
    const cursor = {}
    const step = nextBatch(table, cursor)
    for (let batch = await step('first'); batch.entries.length > 0; batch = batch.last ? {entries: []} : await step('next')) {
      for (const [key, value] of batch.entries) {
        // postmap -s warns about these and still prints them.
        if (key === '') options.log.warning(`table ${options.table}: empty lookup key value is not allowed`)
        else if (value === '') options.log.warning(`table ${options.table}: key ${binary.toText(key)}: empty string result is not allowed`)
      }
      yield batch.entries
    }
  } finally {
    await close()
  }
}

interface DumpBatch {
  entries: readonly (readonly [string, string])[]
  /** The table said it has no more: it is not asked again (a sequence may start over). */
  last?: boolean
}

/** The table's own batches when it has them, else entries gathered one sequence() at a time. */
function nextBatch(table: Table, cursor: SequenceCursor): (fn: SequenceFunction) => Promise<DumpBatch> {
  if (table.sequenceBatch) return async fn => ({entries: await table.sequenceBatch!(fn, cursor, DUMP_BATCH)})
  return async fn => {
    const entries: (readonly [string, string])[] = []
    for (let item = await table.sequence!(fn, cursor); ; item = await table.sequence!('next', cursor)) {
      if (!item) return {entries, last: true}
      entries.push(item)
      if (entries.length === DUMP_BATCH) return {entries}
    }
  }
}

/** What to tell the user about a failed batch, in text and as JSON, and the exit code. */
export function describeBatchFailure(failure: BatchFailure, exitCode: number, hint?: string): {text: string; json: Record<string, unknown>} {
  const counted = failure.operation === 'update' ? 'updated' : 'deleted'
  return {
    text: failure.message,
    json: {
      table: failure.table,
      [counted]: failure.applied,
      failed: {
        ...(failure.key === undefined ? {} : {key: failure.key}),
        ...(failure.line === undefined ? {} : {line: failure.line}),
        message: (failure.reason as Error)?.message ?? String(failure.reason),
        ...(hint ? {hint} : {}),
        exitCode,
      },
    },
  }
}
