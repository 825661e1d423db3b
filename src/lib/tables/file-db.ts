// What Postfix's indexed-file tables (hash/btree in dict_db.c, lmdb in dict_lmdb.c, cdb in
// dict_cdb.c) do alike: the trailing-NUL conventions of keys and values (TRY1NULL,
// TRY0NULL), the duplicate-key rules of an update (DUP_*), locks taken without blocking
// the event loop, per-caller cursors, and the "older than source file" warning. It is
// kept in one place here so that the file types cannot drift apart where Postfix's agree.

import {BigIntStats, constants as fsConstants, fstatSync, promises as fsp} from 'node:fs'
import {DICT_FLAG} from '../protocol/constants.js'
import {flock, isNativeError, loadNative, LockOperation, PostfixNative} from '../native/index.js'
import {cString, FileStamp, pathBytes, stampOf, strerror} from './source-file.js'
import {SequenceCursor, TableError, TableLog} from './table.js'

/** Keys and values are bytes; our strings hold one byte per char (latin1). */
export const bytes = (s: string): Buffer => Buffer.from(s, 'latin1')

/** Postfix returns keys and values as C strings: up to the first NUL. */
export const text = (b: Buffer): string => cString(b.toString('latin1'))

/** The text Postfix's %m (or mdb_strerror()) prints for an addon or Node error. */
export function reasonOf(err: unknown): string {
  return isNativeError(err) ? err.reason : strerror(err)
}

/** The native addon; a missing or broken build is a configuration error (logged once, tried again later). */
export function loadAddon(log: TableLog): PostfixNative {
  try {
    return loadNative(message => log.warning(message))
  } catch (err) {
    throw new TableError('config', (err as Error).message)
  }
}

// ---------------------------------------------------------------------------- NUL conventions

/** dict_*_open(): when the caller chose neither convention, a table tries both. */
export function withNulDefaults(dictFlags: number): number {
  if ((dictFlags & (DICT_FLAG.TRY0NULL | DICT_FLAG.TRY1NULL)) === 0) return dictFlags | DICT_FLAG.TRY0NULL | DICT_FLAG.TRY1NULL
  return dictFlags
}

/**
 * A lookup or delete as Postfix does it: `attempt` the key with a trailing NUL, then
 * without, as the table's flags allow; the convention that first finds the key is the
 * only one tried from then on (the table's flags lose the other). The result is the
 * last attempt's (undefined when none was allowed). `isFound` tells a result that found the
 * key: by default any truthy one; a lookup that answers text passes one that takes an
 * empty value for found.
 */
export function tryNulConventions<T>(table: {flags: number}, key: string, attempt: (k: string) => T,
  isFound: (result: T | undefined) => boolean = Boolean): T | undefined {
  let found: T | undefined
  if (table.flags & DICT_FLAG.TRY1NULL) {
    found = attempt(key + '\0')
    if (isFound(found)) table.flags &= ~DICT_FLAG.TRY0NULL
  }
  if (!isFound(found) && (table.flags & DICT_FLAG.TRY0NULL)) {
    found = attempt(key)
    if (isFound(found)) table.flags &= ~DICT_FLAG.TRY1NULL
  }
  return found
}

/**
 * The suffix of an updated key and value: a table that has not decided yet picks Linux's
 * default convention, with NUL, and keeps it.
 */
export function nulForUpdate(table: {flags: number}): string {
  if ((table.flags & DICT_FLAG.TRY1NULL) && (table.flags & DICT_FLAG.TRY0NULL)) table.flags &= ~DICT_FLAG.TRY0NULL
  return table.flags & DICT_FLAG.TRY1NULL ? '\0' : ''
}

// ---------------------------------------------------------------------------- duplicates

/** An update overwrites an existing key only with DUP_REPLACE. */
export const noOverwrite = (flags: number): boolean => (flags & DICT_FLAG.DUP_REPLACE) === 0

/**
 * The outcome of an update that may have found the key already there (`stored` false):
 * false (kept) with DUP_IGNORE, a warning and false with DUP_WARN, else a config error
 * "LABEL: duplicate entry". `stored` may still be waiting for a lock.
 */
export function settleDuplicate(
  stored: boolean | Promise<boolean>, table: {flags: number}, label: string, key: string, log: TableLog,
): boolean | Promise<boolean> {
  const decide = (ok: boolean): boolean => {
    if (ok) return true
    if (table.flags & DICT_FLAG.DUP_IGNORE) return false
    const message = `${label}: duplicate entry: "${key}"`
    if (table.flags & DICT_FLAG.DUP_WARN) {
      log.warning(message)
      return false
    }
    throw new TableError('config', message)
  }
  return stored instanceof Promise ? stored.then(decide) : decide(stored)
}

// ---------------------------------------------------------------------------- locks

/** How long to wait between attempts when another process holds a conflicting lock. */
const LOCK_POLL_MS = [1, 2, 5, 10, 20, 50]

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))

/** Wait before the next attempt to take a lock (a short back-off, capped). */
export const waitBeforeLockAttempt = (attempt: number): Promise<void> =>
  sleep(LOCK_POLL_MS[Math.min(attempt, LOCK_POLL_MS.length - 1)])

/** flock() or fcntlLock(): take (without waiting, or waiting) or release a lock on `fd`. */
export type LockFunction = (fd: number, operation: LockOperation, wait: boolean) => boolean

/** Take or release a table's lock; a failure is a retry error in Postfix's words. */
export function setTableLock(lock: LockFunction, fd: number, name: string, operation: LockOperation, wait: boolean): boolean {
  try {
    return lock(fd, operation, wait)
  } catch (err) {
    throw new TableError('retry', `${name}: ${operation === 'none' ? 'unlock' : 'lock'} dictionary: ${reasonOf(err)}`)
  }
}

/** How a table takes its lock, for runLocked(). */
export interface LockSite {
  /** The table has DICT_FLAG_LOCK. */
  enabled: boolean
  isClosed(): boolean
  /** How the table names itself in "table is closed". */
  label: string
  /** Take (`wait` false: only if free) or release ('none') the lock. */
  setLock(operation: LockOperation, wait: boolean): boolean
}

/**
 * Run `body` under a shared or exclusive lock when the table locks. A lock is never held
 * across an await: when it is free at once, all is synchronous; otherwise a promise polls
 * for it (without blocking the event loop) and then runs `body` synchronously.
 */
export function runLocked<T>(site: LockSite, operation: 'shared' | 'exclusive', body: () => T): T | Promise<T> {
  if (site.isClosed()) throw new TableError('retry', `${site.label}: table is closed`)
  if (!site.enabled) return body()
  const thenUnlock = (): T => {
    try {
      return body()
    } finally {
      site.setLock('none', true)
    }
  }
  if (site.setLock(operation, false)) return thenUnlock()
  return (async () => {
    for (let attempt = 0; ; attempt++) {
      await waitBeforeLockAttempt(attempt)
      if (site.isClosed()) throw new TableError('retry', `${site.label}: table is closed`)
      if (site.setLock(operation, false)) return thenUnlock()
    }
  })()
}

// ---------------------------------------------------------------------------- files and cursors

/** The stamp of an open file now, or `previous` when fstat() fails (changed() then says so). */
export function stampOfFd(fd: number, previous: FileStamp): FileStamp {
  try {
    return stampOf(fstatSync(fd, {bigint: true}))
  } catch {
    return previous
  }
}

/** A caller's sequence state, if it belongs to this table (a cursor may move between tables). */
export function ownSequenceState<S extends {table: unknown}>(cursor: SequenceCursor, table: unknown): S | undefined {
  const state = cursor.state as S | undefined
  return state?.table === table ? state : undefined
}

/**
 * Warn as Postfix does when the source file is newer than the indexed file, unless the
 * source changed in the last 100 seconds (it may be being edited before a postmap run).
 */
export async function warnIfOlderThanSource(dbPath: string, dbMtimeNs: bigint, sourcePath: string, log: TableLog): Promise<void> {
  try {
    const source = await fsp.stat(pathBytes(sourcePath), {bigint: true})
    const sourceMtime = source.mtimeNs / 1_000_000_000n
    const dbMtime = dbMtimeNs / 1_000_000_000n
    if (sourceMtime > dbMtime && sourceMtime < BigInt(Math.floor(Date.now() / 1000) - 100))
      log.warning(`database ${dbPath} is older than source file ${sourcePath}`)
  } catch {
    // no source file: nothing to compare
  }
}

// ---------------------------------------------------------------------------- replacing files

/**
 * Open `path` and take an exclusive flock() on it, waiting without blocking the event loop,
 * as Postfix's dict_cdbm_open() does for its .tmp file: the lock is only good if, once
 * granted, `path` still names the file that was locked (a writer that renames a new file
 * over `path` holds this lock until the rename is done), so otherwise start again.
 * `create`: O_CREAT when the file is missing. Resolves with the locked handle; closing it
 * releases the lock.
 */
export async function lockFileUnderPath(path: string, create: boolean, isClosed: () => boolean, label: string): Promise<fsp.FileHandle> {
  for (let attempt = 0; ; attempt++) {
    if (isClosed()) throw new TableError('retry', `${label}: table is closed`)
    let handle: fsp.FileHandle
    try {
      handle = await fsp.open(pathBytes(path), create ? fsConstants.O_RDWR | fsConstants.O_CREAT : fsConstants.O_RDWR, 0o644)
    } catch (err) {
      throw new TableError('retry', `open database ${path}: ${strerror(err)}`)
    }
    let same = false
    try {
      for (let wait = 0; !flock(handle.fd, 'exclusive', false); wait++) {
        if (isClosed()) throw new TableError('retry', `${label}: table is closed`)
        await waitBeforeLockAttempt(wait)
      }
      const locked = await handle.stat({bigint: true})
      const named = await fsp.stat(pathBytes(path), {bigint: true}).catch(() => undefined)
      same = named !== undefined && named.dev === locked.dev && named.ino === locked.ino && locked.nlink > 0n
    } catch (err) {
      await handle.close().catch(() => undefined)
      if (err instanceof TableError) throw err
      throw new TableError('retry', `lock ${path}: ${reasonOf(err)}`)
    }
    if (same) return handle
    await handle.close().catch(() => undefined)
    await waitBeforeLockAttempt(attempt)
  }
}

/** fsync() a directory, so that a rename in it survives a system crash too. */
export async function syncDirectory(dir: string): Promise<void> {
  const handle = await fsp.open(pathBytes(dir), fsConstants.O_RDONLY)
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}

/** Give a replacement file the owner and permissions of the file it replaces (best effort for the owner). */
export async function copyOwnership(target: fsp.FileHandle, from: BigIntStats): Promise<void> {
  await target.chmod(Number(from.mode & 0o7777n))
  const [uid, gid] = [Number(from.uid), Number(from.gid)]
  const now = await target.stat()
  if (now.uid !== uid || now.gid !== gid) await target.chown(uid, gid).catch(() => undefined)
}

/** One write waiting for a group commit; `apply` runs during the commit, its result is the reply. */
export interface PendingWrite<S> {
  apply(store: S): boolean
  resolve(stored: boolean): void
  reject(err: unknown): void
}

/**
 * Group commit: writes are queued; one commit at a time applies every write queued so far
 * (in arrival order) to a new copy of the table, makes it durable and puts it in place,
 * and only then answers each of them. Writes arriving while a commit runs wait for the
 * next one, so N concurrent clients share the cost of one fsync()/rename().
 * `commit` applies the writes itself (so that each one's own failure stays its own) and
 * throws when the group as a whole could not be made durable.
 */
export class GroupCommit<S> {
  private queue: PendingWrite<S>[] = []
  private running = false

  constructor(private readonly commit: (group: PendingWrite<S>[]) => Promise<void>) {}

  submit(apply: (store: S) => boolean): Promise<boolean> {
    return new Promise<boolean>((resolve, reject) => {
      this.queue.push({apply, resolve, reject})
      if (!this.running) {
        this.running = true
        // Let the requests already read from other connections join this group.
        setImmediate(() => void this.drain())
      }
    })
  }

  private async drain(): Promise<void> {
    try {
      while (this.queue.length > 0) {
        const group = this.queue
        this.queue = []
        try {
          await this.commit(group)
        } catch (err) {
          for (const w of group) w.reject(err)
        }
      }
    } finally {
      this.running = false
    }
  }
}
