// hash:/path and btree:/path — Berkeley DB files `/path.db` (Postfix dict_db.c), through
// the project's own libdb 5.3 binding (src/lib/native, native/postfix_native.cc).
//
// What Postfix does and what we do:
// - open: DB->open() of `path.db` in a private environment (DB_INIT_MPOOL|DB_CREATE|
//   DB_PRIVATE) whose home is the file's directory, with DB_FCNTL_LOCKING, DB_RDONLY for
//   O_RDONLY (proxymap, queries) or DB_CREATE for O_RDWR|O_CREAT (proxywrite, updates);
//   hash files get an element-count hint of 4096; the cache is at least
//   berkeley_db_read_buffer_size bytes. With DICT_FLAG_LOCK, an existing file is opened
//   first (without O_CREAT) and shared-locked while DB->open() reads it, so that a postmap
//   rebuilding it is waited for.
// - flags: the open flags plus FIXED; TRY1NULL|TRY0NULL when the caller chose neither.
//   Postfix-made files store keys and values with a trailing NUL. A lookup or delete tries
//   with one, then without, and keeps the convention that first found a key; an update of
//   an undecided table picks Linux's default, with NUL.
// - FOLD_FIX lowercases keys (ASCII only; the UTF-8 layer folds beforehand when active).
// - update: DB_NOOVERWRITE unless DUP_REPLACE; an existing key is then ignored
//   (DUP_IGNORE), warned about (DUP_WARN) or an error. SYNC_UPDATE syncs after each
//   update and delete (proxywrite sets it).
// - locking (DICT_FLAG_LOCK): flock() on the database file's own descriptor — shared
//   around each read and cursor step, exclusive around each write and its sync — as
//   Postfix does on Linux (myflock() with INTERNAL_LOCK = flock). A lock is never held
//   across an await: when it is not free at once we poll for it asynchronously instead
//   of blocking the event loop, and the operation itself then runs synchronously.
// - sequence: each caller has its own libdb cursor (Postfix keeps one per table), stepped
//   with DB_FIRST/DB_NEXT; hash files come back in hash order, btree in key order. Keys
//   and values are returned as C strings (up to the first NUL), as Postfix does.
// - changed(): the file's identity, size or mtime differ from what we last saw (our own
//   writes update what we saw). Like Postfix, each table has a private page cache, so a
//   table opened before another process rewrote the file must be reopened.

import {closeSync, fstatSync, openSync} from 'node:fs'
import * as pathModule from 'node:path'
import {DICT_FLAG} from '../protocol/constants.js'
import {flock, NativeCursor, NativeDb} from '../native/index.js'
import {activateUtf8, lowercaseAscii, needUtf8Activation} from './fold.js'
import {FileStamp, fileChanged, pathBytes, stampOf, strerror} from './source-file.js'
import {
  bytes, loadAddon, noOverwrite, nulForUpdate, ownSequenceState, reasonOf, runLocked, setTableLock, settleDuplicate,
  stampOfFd, text, tryNulConventions, waitBeforeLockAttempt, warnIfOlderThanSource, withNulDefaults,
} from './file-db.js'
import {OpenOptions, SequenceCursor, SequenceFunction, Table, TableError, TableLog, TableType} from './table.js'

export const DB_SUFFIX = '.db'
/** Postfix's DICT_DB_NELM: the element-count hint for new hash files. */
const HASH_NELEM = 4096
/** Postfix's default berkeley_db_read_buffer_size. */
const DEFAULT_READ_BUFFER = 128 * 1024

type DbKind = 'hash' | 'btree'

interface DbSequenceState {
  table: BerkeleyDbTable
  cursor: NativeCursor
}

export class BerkeleyDbTable implements Table {
  flags: number
  private closed = false

  constructor(
    readonly type: DbKind,
    /** Postfix names a Berkeley DB table by its file: `path.db`. */
    readonly name: string,
    private readonly db: NativeDb,
    private readonly fd: number,
    private stamp: FileStamp,
    dictFlags: number,
    private readonly log: TableLog,
  ) {
    this.flags = withNulDefaults(dictFlags) | DICT_FLAG.FIXED
  }

  private fold(key: string): string {
    return this.flags & DICT_FLAG.FOLD_FIX ? lowercaseAscii(key) : key
  }

  private fail(what: string, err: unknown): never {
    if (err instanceof TableError) throw err
    // Postfix: msg_fatal("error reading %s: %m"); a proxymap client retries.
    throw new TableError('retry', `${what} ${this.name}: ${reasonOf(err)}`)
  }

  /** Run `body` under a shared or exclusive flock() when the table has DICT_FLAG_LOCK. */
  private locked<T>(operation: 'shared' | 'exclusive', body: () => T): T | Promise<T> {
    return runLocked({
      enabled: (this.flags & DICT_FLAG.LOCK) !== 0,
      isClosed: () => this.closed,
      label: this.name,
      setLock: (lockOperation, wait) => setTableLock(flock, this.fd, this.name, lockOperation, wait),
    }, operation, body)
  }

  lookup(key: string): string | undefined | Promise<string | undefined> {
    key = this.fold(key)
    return this.locked('shared', () => {
      try {
        const found = tryNulConventions(this, key, (k) => this.db.get(bytes(k)))
        return found ? text(found) : undefined
      } catch (err) {
        this.fail('error reading', err)
      }
    })
  }

  /** Resolves true when stored; false when an existing key was kept (DUP_IGNORE/DUP_WARN). */
  update(key: string, value: string): boolean | Promise<boolean> {
    key = this.fold(key)
    const nul = nulForUpdate(this)
    const keepExisting = noOverwrite(this.flags)
    const stored = this.locked('exclusive', () => {
      let ok: boolean
      try {
        ok = this.db.put(bytes(key + nul), bytes(value + nul), keepExisting)
      } catch (err) {
        this.fail('error writing', err)
      }
      this.syncIfAsked()
      return ok
    })
    return settleDuplicate(stored, this, this.name, key, this.log)
  }

  delete(key: string): boolean | Promise<boolean> {
    key = this.fold(key)
    return this.locked('exclusive', () => {
      let removed = false
      try {
        removed = tryNulConventions(this, key, (k) => this.db.del(bytes(k))) === true
      } catch (err) {
        this.fail('error deleting from', err)
      }
      this.syncIfAsked()
      return removed
    })
  }

  /** DB->sync() after a write when SYNC_UPDATE is set; our write is not a "change". */
  private syncIfAsked(): void {
    if (this.flags & DICT_FLAG.SYNC_UPDATE) {
      try {
        this.db.sync()
      } catch (err) {
        throw new TableError('retry', `${this.name}: flush dictionary: ${reasonOf(err)}`)
      }
    }
    this.refreshStamp()
  }

  sequence(fn: SequenceFunction, cursor: SequenceCursor): readonly [string, string] | undefined | Promise<readonly [string, string] | undefined> {
    let state = ownSequenceState<DbSequenceState>(cursor, this)
    if (fn === 'next' && !state) return undefined
    if (fn === 'first') {
      state?.cursor.close()
      try {
        state = {table: this, cursor: this.db.cursor()}
      } catch (err) {
        this.fail('error seeking', err)
      }
      cursor.state = state
    }
    const current = state!
    return this.locked('shared', () => {
      let entry: [Buffer, Buffer] | undefined
      try {
        entry = current.cursor.get(fn === 'first')
      } catch (err) {
        this.fail('error seeking', err)
      }
      if (!entry) {
        current.cursor.close()
        if (cursor.state === current) cursor.state = undefined
        return undefined
      }
      return [text(entry[0]), text(entry[1])] as const
    })
  }

  private refreshStamp(): void {
    this.stamp = stampOfFd(this.fd, this.stamp)
  }

  changed(): boolean {
    return fileChanged(this.name, this.stamp)
  }

  close(): void {
    if (this.closed) return
    this.closed = true
    // Postfix: sync, then close; a failing close is only reported.
    const status = this.db.close()
    if (status !== 0) this.log.info(`close database ${this.name}: error ${status} (possible Berkeley DB bug)`)
  }
}

function cacheSizeFrom(options: OpenOptions): number {
  const size = Number.parseInt(options.config.get('berkeley_db_read_buffer_size'), 10)
  return Number.isFinite(size) && size > 0 ? size : DEFAULT_READ_BUFFER
}

/** Wait (without blocking the event loop) for a shared flock() on `fd`. */
async function sharedLockForOpen(fd: number, dbPath: string): Promise<void> {
  for (let attempt = 0; ; attempt++) {
    let got: boolean
    try {
      got = flock(fd, 'shared', false)
    } catch (err) {
      throw new TableError('retry', `shared-lock database ${dbPath} for open: ${reasonOf(err)}`)
    }
    if (got) return
    await waitBeforeLockAttempt(attempt)
  }
}

/** Open as dict_db_open() does; a failed open is a retry error with Postfix's wording. */
async function openBerkeleyDb(kind: DbKind, path: string, options: OpenOptions): Promise<Table> {
  const addon = loadAddon()
  const [compiled, runtime] = [addon.libdbVersion.compiled, addon.libdbVersion.runtime]
  if (compiled.split('.').slice(0, 2).join('.') !== runtime.split('.').slice(0, 2).join('.'))
    throw new TableError('retry', `incorrect version of Berkeley DB: compiled against ${compiled}, run-time linked against ${runtime}`)
  const dbPath = path + DB_SUFFIX
  const readOnly = options.mode === 'read'
  const lockWanted = (options.dictFlags & DICT_FLAG.LOCK) !== 0

  let lockFd = -1
  if (lockWanted) {
    try {
      lockFd = openSync(pathBytes(dbPath), readOnly ? 'r' : 'r+')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new TableError('retry', `open database ${dbPath}: ${strerror(err)}`)
    }
  }
  let db: NativeDb
  try {
    if (lockFd >= 0) await sharedLockForOpen(lockFd, dbPath)
    try {
      db = addon.openDb(pathBytes(pathModule.dirname(dbPath)), pathBytes(pathModule.basename(dbPath)),
        kind === 'hash' ? addon.constants.DB_HASH : addon.constants.DB_BTREE,
        readOnly, !readOnly, cacheSizeFrom(options), kind === 'hash' ? HASH_NELEM : 0)
    } catch (err) {
      throw new TableError('retry', `open database ${dbPath}: ${reasonOf(err)}`)
    }
  } finally {
    if (lockFd >= 0) closeSync(lockFd) // (closing releases the flock)
  }

  let fd: number
  let stamp: FileStamp
  try {
    fd = db.fd()
    stamp = stampOf(fstatSync(fd, {bigint: true}))
  } catch (err) {
    db.close()
    throw new TableError('retry', `open database ${dbPath}: ${reasonOf(err)}`)
  }
  if (lockWanted) await warnIfOlderThanSource(dbPath, stamp.mtimeNs, path, options.log)
  const table = new BerkeleyDbTable(kind, dbPath, db, fd, stamp, options.dictFlags, options.log)
  if (needUtf8Activation(options.config, options.dictFlags)) activateUtf8(table, options.log)
  return table
}

export const hashType: TableType = {
  type: 'hash',
  open: (path, options) => openBerkeleyDb('hash', path, options),
}

export const btreeType: TableType = {
  type: 'btree',
  open: (path, options) => openBerkeleyDb('btree', path, options),
}

