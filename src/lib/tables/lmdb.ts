// lmdb:/path — an OpenLDAP LMDB file `/path.lmdb` (Postfix dict_lmdb.c over slmdb.c),
// through the project's own binding of Debian's liblmdb (LMDB 0.9, the library that
// Postfix's postfix-lmdb links; src/lib/native, native/postfix_native.cc).
//
// What Postfix does and what we do:
// - open: mdb_env_open() of the single file (MDB_NOSUBDIR) with MDB_NOLOCK, so that no
//   lock file is created next to the table (a root-owned table directory is fine for a
//   reader running as postfix), plus MDB_RDONLY for O_RDONLY (proxymap, queries);
//   otherwise (proxywrite, updates) the file is created with mode 0644 when missing. A
//   failed open is a retry error "open database X.lmdb: reason" (the registry substitutes
//   a surrogate table), reason being mdb_strerror() text.
// - map size: lmdb_map_size (at least slmdb's 10240-byte allowance), or the file's size
//   plus that allowance when the file is larger. On MDB_MAP_FULL a write is retried once
//   with the map doubled (slmdb with dict_lmdb's factor 2 and retry limit); on
//   MDB_MAP_RESIZED (another process grew the file past our map) the operation is retried
//   once after adopting the file's map size.
// - flags: the open flags plus FIXED|MULTI_WRITER; TRY1NULL|TRY0NULL when the caller chose
//   neither. Postfix-made files store keys and values with a trailing NUL; lookups and
//   deletes try with, then without, one and keep the convention that first found a key;
//   an update of an undecided table picks Linux's default, with NUL. FOLD_FIX lowercases
//   keys (ASCII only; the UTF-8 layer folds beforehand when active).
// - keys: LMDB 0.9 takes keys of 1 to 511 bytes (mdb_env_get_maxkeysize()). A longer key
//   fails as in Postfix: "error reading/updating/deleting from lmdb:NAME: MDB_BAD_VALSIZE:
//   ..." (a retry error). An empty key is simply not there for lookups and deletes.
// - update: MDB_NOOVERWRITE unless DUP_REPLACE; an existing key is then ignored
//   (DUP_IGNORE), warned about (DUP_WARN) or an error. Each read is one LMDB transaction;
//   so is each write, committed (and so fsync()ed by LMDB) before update()/delete()
//   return. With SYNC_UPDATE (proxywrite), the writes that arrive while one commit runs
//   share the next transaction (group commit), each answered after that commit.
// - locking (DICT_FLAG_LOCK): whole-file fcntl() locks on the .lmdb file's own descriptor,
//   a read lock around each read and cursor step, a write lock around each write, as
//   dict_lmdb.c does (MYFLOCK_STYLE_FCNTL): with MDB_NOLOCK these locks are what keeps a
//   writer from reusing pages a reader is looking at. A lock is never held across an
//   await: when it is not free at once we poll for it asynchronously instead of blocking
//   the event loop, and the operation itself then runs synchronously. No transaction
//   outlives the locked section.
// - sequence: MDB_FIRST / MDB_NEXT in key (byte) order. Postfix keeps one cursor per
//   table and, since the caller may release the lock between steps, ends its transaction
//   after each step and re-seeks the saved key; each of our callers has its own position
//   (the last key it was given), from which `next` continues with MDB_SET_RANGE (then
//   MDB_NEXT past that key) in a fresh transaction, so updates in between are seen. Keys
//   and values are returned as C strings (up to the first NUL), as Postfix does. A step
//   reads a few entries ahead and answers the next steps from them while the file stays
//   exactly as it was (same size, mtime and last commit id in the meta pages: our own
//   writes change them too); a listing (sequenceBatch) reads 1,024 entries per lock and
//   transaction. Every few thousand steps the mapped pages go back to the kernel
//   (madvise), so that listing a large table does not grow the process by its file's size.
// - changed(): the file's identity, size or mtime differ from what we last saw (our own
//   writes update what we saw), or the environment went stale.
// - files changed in place: a read-only environment whose file's size or mtime moved since
//   it was opened (a writer committed, or `cp` or `truncate` rewrote the file), or whose
//   read of the map faulted (SIGBUS past the end of a truncated file), answers nothing
//   from that read (see native/postfix_native.cc): the file is opened again and the read
//   done once more there; a file shorter than its metadata says is not opened. When that
//   fails too, the read is a retry error and changed() tells the service to reopen the
//   table. Postfix's proxymap dies of SIGBUS there, and master starts another one.
// Each table has its own environment (mdb_env_open() per open, as each Postfix process
// has): with MDB_NOLOCK nothing is lost by opening one file twice in a process, and a
// table reopened after the file was replaced sees the new file.

import {fstatSync, statSync} from 'node:fs'
import {DICT_FLAG} from '../protocol/constants.js'
import {fcntlLock, isNativeError, isStaleFileError, NativeError, NativeLmdbEnv, NativeLmdbTxn, PostfixNative} from '../native/index.js'
import {activateUtf8, lowercaseAscii, needUtf8Activation} from './fold.js'
import {FileStamp, fileChanged, pathBytes, stampOf} from './source-file.js'
import {
  bytes, GroupCommit, loadAddon, PendingWrite, noOverwrite, nulForUpdate, ownSequenceState, reasonOf, runLocked, setTableLock, settleDuplicate,
  stampOfFd, tryNulConventions, warnIfOlderThanSource, withNulDefaults,
} from './file-db.js'
import {OpenOptions, SequenceCursor, SequenceFunction, Table, TableError, TableLog, TableType} from './table.js'

export const LMDB_SUFFIX = '.lmdb'
/** Postfix's default lmdb_map_size. */
const DEFAULT_MAP_SIZE = 16 * 1024 * 1024
/** slmdb's allowance over the file size when the file is larger than the map size. */
const SLMDB_FUDGE = 10240
/** dict_lmdb's DICT_LMDB_SIZE_INCR: the map grows by this factor on MDB_MAP_FULL. */
const MAP_SIZE_INCREMENT = 2
/** dict_lmdb's DICT_LMDB_SIZE_MAX (SSIZE_T_MAX), as far as a JS number is exact. */
const MAP_SIZE_MAX = Number.MAX_SAFE_INTEGER
/** Sequence steps between two releases of the mapped pages (see releaseMapEvery). */
const RELEASE_MAP_STEPS = 4096
/** Entries sequence() reads at once, and their bytes at most (one entry always fits). */
const READ_AHEAD = 64
const READ_AHEAD_BYTES = 16 * 1024
/** Keys and values packed per sequenceBatch() call, at most (one entry always fits). */
const BATCH_BYTES = 256 * 1024
/** dict_lmdb's DICT_LMDB_API_RETRY_LIMIT: recoveries per operation (slmdb: count < limit). */
const API_RETRY_LIMIT = 2

/** Carries a failure that must end the whole transaction of a group commit. */
class GroupAbort extends Error {
  constructor(override readonly cause: unknown) {
    super('group commit aborted')
  }
}

interface LmdbSequenceState {
  table: LmdbTable
  /** The raw key returned last; `next` continues after it. */
  last: Buffer
  /** Entries read with the last one and not answered yet (sequence()). */
  ahead?: ReadAhead
}

/** A seekBatch() result being answered one entry at a time. */
interface ReadAhead {
  packed: Buffer
  /** Where the next entry starts. */
  at: number
  /** The open file then. */
  file: FileStamp | undefined
  /** Its last commit then (lastTxnId()). */
  txnId: number
}

export class LmdbTable implements Table {
  readonly type = 'lmdb'
  flags: number
  private closed = false
  /** The file changed under the open environment: only reopening helps. */
  private stale = false
  /** Environments replaced by reopenEnvironment(), closed once the locked section is over. */
  private readonly replaced: NativeLmdbEnv[] = []
  private stepsSinceRelease = 0
  private readonly commits = new GroupCommit<NativeLmdbTxn>((group) => this.commitGroup(group))

  constructor(
    readonly name: string,
    private readonly mdbPath: string,
    private readonly addon: PostfixNative,
    private env: NativeLmdbEnv,
    private fd: number,
    private readonly readOnly: boolean,
    private mapLimit: number,
    private stamp: FileStamp,
    dictFlags: number,
    private readonly log: TableLog,
    /** lmdb_map_size, for opening the file again. */
    private readonly mapSizeSetting: string,
  ) {
    this.flags = withNulDefaults(dictFlags) | DICT_FLAG.FIXED | DICT_FLAG.MULTI_WRITER
  }

  private fold(key: string): string {
    return this.flags & DICT_FLAG.FOLD_FIX ? lowercaseAscii(key) : key
  }

  private fail(what: string, err: unknown): never {
    if (err instanceof TableError) throw err
    if (isStaleFileError(err) && !this.stale) {
      this.stale = true
      this.log.warning(`${what} ${this.type}:${this.name}: ${reasonOf(err)}`)
    }
    // Postfix: msg_fatal("error reading lmdb:NAME: %s", mdb_strerror()); a proxymap client retries.
    throw new TableError('retry', `${what} ${this.type}:${this.name}: ${reasonOf(err)}`)
  }

  // ------------------------------------------------------------------ locks

  /**
   * Run `body` under a shared (F_RDLCK) or exclusive (F_WRLCK) fcntl() lock when the table
   * has DICT_FLAG_LOCK.
   */
  private locked<T>(operation: 'shared' | 'exclusive', body: () => T): T | Promise<T> {
    let result: T | Promise<T>
    try {
      result = runLocked({
        enabled: (this.flags & DICT_FLAG.LOCK) !== 0,
        isClosed: () => this.closed,
        label: `${this.type}:${this.name}`,
        setLock: (lockOperation, wait) => setTableLock(fcntlLock, this.fd, this.name, lockOperation, wait),
      }, operation, body)
    } catch (err) {
      this.closeReplaced()
      throw err
    }
    if (result instanceof Promise) return result.finally(() => this.closeReplaced())
    this.closeReplaced()
    return result
  }

  /**
   * Closing a descriptor of the file drops every fcntl() lock this process has on it, so a
   * replaced environment is closed only after the section that held the lock.
   */
  private closeReplaced(): void {
    for (const env of this.replaced.splice(0)) env.close()
  }

  // ------------------------------------------------------------ transactions

  /**
   * One transaction around `body` (committed when writing, aborted when reading), retried
   * once after slmdb's recoveries: a larger map on MDB_MAP_FULL, the file's map size on
   * MDB_MAP_RESIZED. Other errors are thrown as they are.
   */
  private transaction<T>(write: boolean, body: (txn: NativeLmdbTxn) => T): T {
    return this.recovering(() => {
      let txn: NativeLmdbTxn | undefined
      try {
        txn = this.env.begin(!write)
        const result = body(txn)
        if (write) txn.commit()
        else txn.abort()
        return result
      } catch (err) {
        txn?.abort()
        throw err
      }
    })
  }

  /** Run `operation`, again after each of slmdb's recoveries (at most API_RETRY_LIMIT - 1). */
  private recovering<T>(operation: () => T): T {
    for (let recoveries = 0; ; ) {
      try {
        return operation()
      } catch (err) {
        if (++recoveries >= API_RETRY_LIMIT || !this.recover(err)) throw err
      }
    }
  }

  /** slmdb_recover(): true when the condition was cleared and the caller may retry. */
  private recover(err: unknown): boolean {
    if (!isNativeError(err)) return false
    const c = this.addon.constants
    if (err.errno === c.MDB_MAP_FULL && !this.readOnly) {
      let limit: number
      if (this.mapLimit < MAP_SIZE_MAX / MAP_SIZE_INCREMENT) limit = this.mapLimit * MAP_SIZE_INCREMENT
      else if (this.mapLimit < MAP_SIZE_MAX) limit = MAP_SIZE_MAX
      else return false
      try {
        this.env.setMapSize(limit)
      } catch {
        return false
      }
      this.mapLimit = limit
      return true
    }
    if (isStaleFileError(err) && this.readOnly) return this.reopenEnvironment(err)
    if (err.errno === c.MDB_MAP_RESIZED) {
      try {
        this.env.setMapSize(0)
        this.mapLimit = this.env.mapSize()
      } catch {
        return false
      }
      return true
    }
    return false
  }

  /**
   * The read-only environment's file was changed in place: open the file as it is now, so
   * that the operation is done again there. False when it cannot be opened (being
   * rewritten, truncated, garbage): the operation fails as a retry.
   */
  private reopenEnvironment(err: NativeError): boolean {
    const mapSize = mapSizeFor(this.mapSizeSetting, fileSizeOf(this.mdbPath))
    let env: NativeLmdbEnv
    try {
      env = this.addon.lmdbOpen(pathBytes(this.mdbPath), true, mapSize)
    } catch {
      return false
    }
    let fd: number
    let stamp: FileStamp
    try {
      fd = env.fd()
      stamp = stampOf(fstatSync(fd, {bigint: true}))
    } catch {
      env.close()
      return false
    }
    if (err.signal) this.log.warning(`${this.type}:${this.name}: ${err.reason} -- reopening`)
    else this.log.info(`table ${this.type}:${this.name} has changed -- reopening`)
    this.replaced.push(this.env)
    this.env = env
    this.fd = fd
    this.stamp = stamp
    this.mapLimit = mapSize
    return true
  }

  // -------------------------------------------------------------- operations

  lookup(key: string): string | undefined | Promise<string | undefined> {
    key = this.fold(key)
    return this.locked('shared', () => {
      const get = (k: string): string | undefined =>
        k.length === 0 ? undefined : this.recovering(() => this.env.lookup(k))
      try {
        return tryNulConventions(this, key, get, (value) => value !== undefined)
      } catch (err) {
        this.fail('error reading', err)
      }
    })
  }

  /**
   * dict_lmdb_update(): resolves true when stored; false when an existing key was kept
   * (DUP_IGNORE/DUP_WARN); a duplicate without either is a config error.
   */
  update(key: string, value: string): boolean | Promise<boolean> {
    key = this.fold(key)
    const nul = nulForUpdate(this)
    const k = bytes(key + nul)
    const v = bytes(value + nul)
    const keepExisting = noOverwrite(this.flags)
    const put = (txn: NativeLmdbTxn): boolean => txn.put(k, v, keepExisting)
    const stored = this.flags & DICT_FLAG.SYNC_UPDATE ? this.commits.submit(this.failingAs('error updating', put))
      : this.locked('exclusive', () => {
        let ok: boolean
        try {
          ok = this.transaction(true, put)
        } catch (err) {
          this.fail('error updating', err)
        }
        this.refreshStamp()
        return ok
      })
    return settleDuplicate(stored, this, `${this.type}:${this.name}`, key, this.log)
  }

  delete(key: string): boolean | Promise<boolean> {
    key = this.fold(key)
    const del = (txn: NativeLmdbTxn): boolean => tryNulConventions(this, key, (k) => k.length > 0 && txn.del(bytes(k))) === true
    if (this.flags & DICT_FLAG.SYNC_UPDATE) return this.commits.submit(this.failingAs('error deleting from', del))
    return this.locked('exclusive', () => {
      let removed = false
      try {
        removed = tryNulConventions(this, key, (k) => k.length > 0 && this.transaction(true, (txn) => txn.del(bytes(k)))) === true
      } catch (err) {
        this.fail('error deleting from', err)
      }
      if (removed) this.refreshStamp()
      return removed
    })
  }

  /**
   * A write of a group commit: a failure that leaves the transaction usable (a key LMDB
   * refuses, MDB_BAD_VALSIZE) is this write's own, in Postfix's words; any other one (such
   * as MDB_MAP_FULL) ends the transaction and goes to the commit, which recovers and
   * applies the whole group again.
   */
  private failingAs(what: string, write: (txn: NativeLmdbTxn) => boolean): (txn: NativeLmdbTxn) => boolean {
    return (txn) => {
      try {
        return write(txn)
      } catch (err) {
        if (isNativeError(err) && err.errno === this.addon.constants.MDB_BAD_VALSIZE) this.fail(what, err)
        throw new GroupAbort(err)
      }
    }
  }

  /**
   * SYNC_UPDATE (proxywrite forces it): the writes queued meanwhile are applied in arrival
   * order in one transaction, whose commit (LMDB fsync()s data, then the meta page) is done
   * before any of them is answered; a kill at any moment leaves the previous commit.
   */
  private async commitGroup(group: PendingWrite<NativeLmdbTxn>[]): Promise<void> {
    const results = await this.locked('exclusive', () => {
      try {
        const outcome = this.transaction(true, (txn) => group.map((w) => {
          try {
            return {ok: true as const, value: w.apply(txn)}
          } catch (error) {
            if (error instanceof GroupAbort) throw error.cause
            return {ok: false as const, error}
          }
        }))
        this.refreshStamp()
        return outcome
      } catch (err) {
        this.fail('error updating', err)
      }
    })
    results.forEach((r, i) => (r.ok ? group[i].resolve(r.value) : group[i].reject(r.error)))
  }

  /**
   * One step. The first step of a run reads a few entries ahead (one lock, transaction and
   * native call for READ_AHEAD of them); the next steps are answered from those while the
   * file stays as it was then (same size, mtime and last commit), which is what reading
   * them again would give. Any change: the next step seeks afresh after the last
   * key answered, as Postfix does at every step.
   */
  sequence(fn: SequenceFunction, cursor: SequenceCursor): readonly [string, string] | undefined | Promise<readonly [string, string] | undefined> {
    const state = ownSequenceState<LmdbSequenceState>(cursor, this)
    if (fn === 'next' && !state) return undefined
    if (fn === 'next' && state!.ahead && this.stillAsRead(state!.ahead)) return this.answerAhead(state!, state!.ahead)
    return this.locked('shared', () => {
      let packed: Buffer | undefined
      try {
        packed = this.recovering(() => this.env.seekBatch(fn === 'first' || !state ? undefined : state.last, READ_AHEAD, READ_AHEAD_BYTES))
      } catch (err) {
        this.fail('error seeking', err)
      }
      if (!packed) {
        if (cursor.state === state) cursor.state = undefined
        return undefined
      }
      const fresh: LmdbSequenceState = {table: this, last: packed, ahead: {packed, at: 0, file: this.openFileStamp(), txnId: this.env.lastTxnId()}}
      cursor.state = fresh
      return this.answerAhead(fresh, fresh.ahead!)
    })
  }

  /**
   * The open file's size and mtime (what the environment reads; a file renamed over it is
   * not read by this instance anyway).
   */
  private openFileStamp(): FileStamp | undefined {
    try {
      return stampOf(fstatSync(this.fd, {bigint: true}))
    } catch {
      return undefined
    }
  }

  private stillAsRead(ahead: ReadAhead): boolean {
    if (this.closed || !ahead.file) return false
    const now = this.openFileStamp()
    // mtime moves in coarse clock ticks; the commit id in the meta pages moves with every commit.
    return now !== undefined && now.size === ahead.file.size && now.mtimeNs === ahead.file.mtimeNs &&
      ahead.txnId !== -1 && this.env.lastTxnId() === ahead.txnId
  }

  /** The entry at `ahead.at`, which becomes the cursor's last key. */
  private answerAhead(state: LmdbSequenceState, ahead: ReadAhead): readonly [string, string] {
    const {packed} = ahead
    const keyStart = ahead.at + 4
    const keyEnd = keyStart + packed.readUInt32LE(ahead.at)
    const valueStart = keyEnd + 4
    const valueEnd = valueStart + packed.readUInt32LE(keyEnd)
    state.last = packed.subarray(keyStart, keyEnd)
    ahead.at = valueEnd
    if (ahead.at >= packed.length) state.ahead = undefined
    this.releaseMapEvery()
    return [cStringAt(packed, keyStart, keyEnd), cStringAt(packed, valueStart, valueEnd)] as const
  }

  /**
   * sequence() for many steps: one lock, one transaction and one native call per batch of
   * entries (at most `max`, and about BATCH_BYTES of keys and values), in the same order
   * and with the same C-string texts.
   */
  sequenceBatch(fn: SequenceFunction, cursor: SequenceCursor, max: number): readonly (readonly [string, string])[] | Promise<readonly (readonly [string, string])[]> {
    const state = ownSequenceState<LmdbSequenceState>(cursor, this)
    if (fn === 'next' && !state) return []
    return this.locked('shared', () => {
      let packed: Buffer | undefined
      try {
        packed = this.recovering(() => this.env.seekBatch(fn === 'first' || !state ? undefined : state.last, max, BATCH_BYTES))
      } catch (err) {
        this.fail('error seeking', err)
      }
      if (!packed) {
        if (cursor.state === state) cursor.state = undefined
        return []
      }
      const entries: (readonly [string, string])[] = []
      let lastKey = 0
      let lastKeyEnd = 0
      for (let at = 0; at < packed.length;) {
        const keyStart = at + 4
        const keyEnd = keyStart + packed.readUInt32LE(at)
        const valueStart = keyEnd + 4
        const valueEnd = valueStart + packed.readUInt32LE(keyEnd)
        entries.push([cStringAt(packed, keyStart, keyEnd), cStringAt(packed, valueStart, valueEnd)])
        lastKey = keyStart
        lastKeyEnd = keyEnd
        at = valueEnd
      }
      this.releaseMapAfter(entries.length)
      cursor.state = {table: this, last: Buffer.from(packed.subarray(lastKey, lastKeyEnd))} satisfies LmdbSequenceState
      return entries
    })
  }

  /**
   * A listing touches every page of the file, and mapped pages count in the resident set
   * of the process (a 1,000,000-entry table would add its whole size): every so many
   * steps, let the kernel take them back from us (they stay cached by the kernel).
   */
  private releaseMapEvery(): void {
    this.releaseMapAfter(1)
  }

  private releaseMapAfter(steps: number): void {
    this.stepsSinceRelease += steps
    if (this.stepsSinceRelease < RELEASE_MAP_STEPS) return
    this.stepsSinceRelease = 0
    try {
      this.env.releaseMap()
    } catch {
      // only a matter of memory
    }
  }

  private refreshStamp(): void {
    // Our own writes do not make the table "changed" for the process that made them.
    this.stamp = stampOfFd(this.fd, this.stamp)
  }

  broken(): boolean {
    return this.stale
  }

  changed(): boolean {
    return this.stale || fileChanged(this.mdbPath, this.stamp)
  }

  watchedFile(): {path: string; stamp: FileStamp} {
    return {path: this.mdbPath, stamp: this.stamp}
  }

  close(): void {
    if (this.closed) return
    this.closed = true
    this.closeReplaced()
    this.env.close()
  }
}

/** The map size Postfix would use: lmdb_map_size, or a little over the file's size. */
function mapSizeFor(configured: string, fileSize: number): number {
  let size = Number.parseInt(configured, 10)
  if (!Number.isFinite(size) || size <= 0) size = DEFAULT_MAP_SIZE
  if (size < SLMDB_FUDGE) size = SLMDB_FUDGE
  return fileSize > size - SLMDB_FUDGE ? fileSize + SLMDB_FUDGE : size
}

function fileSizeOf(mdbPath: string): number {
  try {
    return Number(statSync(pathBytes(mdbPath), {bigint: true}).size)
  } catch {
    return 0 // slmdb: a failing stat() leaves the configured size
  }
}

/**
 * Open as dict_lmdb_open() does: read mode needs an existing file; write mode
 * (proxywrite, update, delete) creates it. A failed open is a retry error with Postfix's
 * "open database X.lmdb: reason" text (the registry substitutes a surrogate table).
 */
export const lmdbType: TableType = {
  type: 'lmdb',
  async open(path: string, options: OpenOptions): Promise<Table> {
    const addon = loadAddon(options.log)
    const mdbPath = path + LMDB_SUFFIX
    const readOnly = options.mode === 'read'
    const mapSize = mapSizeFor(options.config.get('lmdb_map_size'), fileSizeOf(mdbPath))
    let env: NativeLmdbEnv
    try {
      env = addon.lmdbOpen(pathBytes(mdbPath), readOnly, mapSize)
    } catch (err) {
      throw new TableError('retry', `open database ${mdbPath}: ${reasonOf(err)}`)
    }
    let fd: number
    let stamp: FileStamp
    try {
      fd = env.fd()
      stamp = stampOf(fstatSync(fd, {bigint: true}))
    } catch (err) {
      env.close()
      // Postfix: msg_fatal("dict_lmdb_open: fstat: %m")
      throw new TableError('retry', `open database ${mdbPath}: ${reasonOf(err)}`)
    }
    const table = new LmdbTable(path, mdbPath, addon, env, fd, readOnly, mapSize, stamp, options.dictFlags, options.log,
      options.config.get('lmdb_map_size'))
    if (options.dictFlags & DICT_FLAG.LOCK) await warnIfOlderThanSource(mdbPath, stamp.mtimeNs, path, options.log)
    if (needUtf8Activation(options.config, options.dictFlags)) activateUtf8(table, options.log)
    return table
  },
}

/** The bytes from `start` to `end` as Postfix returns them: a C string, up to the first NUL. */
function cStringAt(packed: Buffer, start: number, end: number): string {
  const nul = packed.indexOf(0, start)
  // Buffer's own latin1Slice (what toString('latin1') ends in): a listing makes millions.
  return (packed as unknown as Latin1Slicing).latin1Slice(start, nul !== -1 && nul < end ? nul : end)
}

interface Latin1Slicing {
  latin1Slice(start: number, end: number): string
}
