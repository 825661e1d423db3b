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
//   (DUP_IGNORE), warned about (DUP_WARN) or an error.
// - SYNC_UPDATE (proxywrite sets it): Postfix writes in place and syncs after each update
//   and delete, which a kill in the middle of a multi-page sync leaves unreadable. We
//   apply each group of writes to a shadow copy (`path.db.proxymap-tmp` or `...-tmp2`,
//   kept while the table is open and brought up to date by replaying the groups it
//   missed), which libdb syncs, and swap it with `path.db` in one rename under the file's
//   exclusive flock(); each write is answered after the swap (see commitGroup). Without
//   SYNC_UPDATE (`proxymap update` on the file, as postmap -i), writes go in place and
//   reach the file at close.
// - locking (DICT_FLAG_LOCK): flock() on the database file's own descriptor — shared
//   around each read and cursor step, exclusive around each write and its sync — as
//   Postfix does on Linux (myflock() with INTERNAL_LOCK = flock). A lock is never held
//   across an await: when it is not free at once we poll for it asynchronously instead
//   of blocking the event loop, and the operation itself then runs synchronously.
// - sequence: each caller has its own libdb cursor (Postfix keeps one per table), stepped
//   with DB_FIRST/DB_NEXT; hash files come back in hash order, btree in key order. Keys
//   and values are returned as C strings (up to the first NUL), as Postfix does.
// - changed(): the file's identity, size or mtime differ from what we last saw (our own
//   writes, renames included, update what we saw). Like Postfix, each table has a private page cache, so a
//   table opened before another process rewrote the file must be reopened.
// - files changed in place: libdb maps a read-only file smaller than its mmap size (10 MB),
//   as in Postfix, and a read past the end of such a file once truncated faults (SIGBUS);
//   the addon catches that (and faults on garbage pages) and closes the handle. A
//   read-only handle whose read faulted, or whose file's size or mtime moved since it was
//   opened, answers nothing from that read: a lookup opens the file again and reads once
//   more; a file shorter than its meta page says is not opened. When that fails, the read
//   is a retry error and changed() tells the service to reopen the table.

import {BigIntStats, closeSync, fstatSync, fsyncSync, futimesSync, openSync, promises as fsp, read, readFileSync, statSync, unlinkSync} from 'node:fs'
import {promisify} from 'node:util'
import * as pathModule from 'node:path'
import {DICT_FLAG} from '../protocol/constants.js'
import {exchangeFiles, flock, isStaleFileError, NativeCursor, NativeDb, NativeError} from '../native/index.js'
import {activateUtf8, lowercaseAscii, needUtf8Activation} from './fold.js'
import {FileStamp, fileChanged, noteOwnReplacement, pathBytes, sameStamp, stampOf, strerror} from './source-file.js'
import {
  bytes, copyOwnership, GroupCommit, loadAddon, lockFileUnderPath, noOverwrite, nulForUpdate, ownSequenceState, PendingWrite,
  reasonOf, runLocked, setTableLock, settleDuplicate, stampOfFd, text, tryNulConventions,
  waitBeforeLockAttempt, warnIfOlderThanSource, withNulDefaults,
} from './file-db.js'
import {OpenOptions, SequenceCursor, SequenceFunction, Table, TableError, TableLog, TableType} from './table.js'

export const DB_SUFFIX = '.db'
/** The copy that a group of proxywrite updates is applied to before it replaces `path.db`. */
export const SHADOW_SUFFIX = '.proxymap-tmp'
/** The names of the shadows (see commitGroup). */
const SHADOW_SUFFIXES = [SHADOW_SUFFIX, `${SHADOW_SUFFIX}2`]
const SHADOWS = SHADOW_SUFFIXES.length
/** How long after an exchange that no commit followed its directory is synced. */
const DIRECTORY_SYNC_DELAY_MS = 1000
/** Postfix's DICT_DB_NELM: the element-count hint for new hash files. */
const HASH_NELEM = 4096
/** Postfix's default berkeley_db_read_buffer_size. */
const DEFAULT_READ_BUFFER = 128 * 1024

type DbKind = 'hash' | 'btree'

interface DbSequenceState {
  table: BerkeleyDbTable
  /** The handle the cursor reads: after a commit replaced the file, the old one (a snapshot). */
  db: NativeDb
  cursor: NativeCursor
}

/** Opens `file` of the table's directory (the table's own file, or its shadow copy). */
export type DbOpener = (file: string, create: boolean) => NativeDb

/** The outcome of one write of a group: its reply. */
type WriteResult = {ok: true; value: boolean} | {ok: false; error: unknown}

/** A copy that SYNC_UPDATE writes go to before it replaces the table (see commitGroup). */
interface Shadow {
  db: NativeDb
  /** Where it is: the table's name and one of SHADOW_SUFFIXES. */
  path: string
  /** The shadow file as we left it: a write by another process shows as a change. */
  stamp: FileStamp
  /** The writes of the commits since it was the table: in the table, not yet in the shadow. */
  behind: PendingWrite<NativeDb>[]
  /** The number of the exchange that made it a shadow (0: a copy): it is written only once a directory fsync() covers that one. */
  exchange: number
  /** A second descriptor of its file, which the commit locks (flock() locks belong to an open file; the handle's own is locked by lookups once it is the table). */
  lockFd: number
  /** We hold its exclusive flock(). */
  locked: boolean
}

/** Copies of a file that another process keeps changing without the lock, before we use the last one. */
const COPY_ATTEMPTS = 5

/** Replaced handles kept for cursors still reading them; beyond this, the oldest is closed. */
const MAX_RETIRED_HANDLES = 16

/**
 * The files each table's commits in this process swapped out of its name, by any instance
 * (instances differ by flags, and one that the service replaced still finishes its
 * commits). A `postmap -i` opens the file under the name, waits for its flock(), and then
 * opens the name again for writing: when we swapped the file out meanwhile, it holds the
 * lock of a file that is no longer the table while it writes the one that is. A commit
 * therefore waits for the locks of all of them (through descriptors of its own). Such a
 * postmap may wait for its lock for as long as our commits keep taking it, so a file is
 * forgotten only when it has been out of the name for a while and no other process holds
 * or waits for its lock (/proc/locks; where that cannot be read, when its lock is free).
 */
interface ReplacedFile {
  fd: number
  dev: bigint
  ino: bigint
  /** When it last left the name. */
  replacedAt: number
}
const replacedFiles = new Map<string, ReplacedFile[]>()
/** How long a replaced file is waited for at least: a postmap that opened it locks it at once. */
const REPLACED_FILE_MS = 10_000
/** Beyond this, replaced files that nobody locks are forgotten before their time. */
const MAX_REPLACED_FILES = 16

function rememberReplaced(name: string, fd: number, path: string): void {
  let files = replacedFiles.get(name)
  if (!files) replacedFiles.set(name, files = [])
  try {
    const st = fstatSync(fd, {bigint: true})
    const known = files.find((f) => f.ino === st.ino && f.dev === st.dev)
    if (known) known.replacedAt = Date.now()
    else files.push({fd: secondDescriptor(fd, path), dev: st.dev, ino: st.ino, replacedAt: Date.now()})
  } catch {
    // (not waited for; as with a file replaced by another process)
  }
}

function forgetUnusedReplacedFiles(files: ReplacedFile[]): void {
  const now = Date.now()
  const due = (f: ReplacedFile, i: number): boolean => now - f.replacedAt > REPLACED_FILE_MS || i < files.length - MAX_REPLACED_FILES
  if (!files.some(due)) return
  const lockedElsewhere = inodesLockedByOtherProcesses()
  for (const [i, file] of [...files.entries()].reverse()) {
    if (!due(file, i) || lockedElsewhere?.has(file.ino)) continue
    let free = false
    try {
      free = flock(file.fd, 'exclusive', false)
      if (free) flock(file.fd, 'none')
    } catch {
      free = true
    }
    if (!free) continue
    files.splice(i, 1)
    closeSync(file.fd)
  }
}

/** The inodes of the files that another process holds or waits for a lock on; undefined when /proc/locks cannot be read. */
function inodesLockedByOtherProcesses(): Set<bigint> | undefined {
  let text: string
  try {
    text = readFileSync('/proc/locks', 'latin1')
  } catch {
    return undefined
  }
  const inodes = new Set<bigint>()
  for (const line of text.split('\n')) {
    // "1: FLOCK  ADVISORY  WRITE 4242 fe:00:1474572 0 EOF", a waiter's with "->" after the number
    const fields = line.trim().split(/\s+/).filter((f) => f !== '->')
    if (fields.length < 6 || fields[4] === String(process.pid)) continue
    const ino = fields[5].split(':')[2]
    if (ino && /^\d+$/.test(ino)) inodes.add(BigInt(ino))
  }
  return inodes
}

/**
 * Wait for the locks of the files replaced lately but those in `own` (locked already);
 * returns the unlocker, and whether another process held one (a postmap that wrote the table).
 */
async function lockReplacedFiles(name: string, own: Set<bigint>): Promise<{unlock: () => void; waited: boolean}> {
  const locked: number[] = []
  const unlock = (): void => {
    for (const fd of locked.splice(0)) flock(fd, 'none')
  }
  let waited = false
  const files = replacedFiles.get(name) ?? []
  // (before any is locked: the test for a free lock takes and drops it through our descriptor)
  forgetUnusedReplacedFiles(files)
  try {
    // (no other commit of this table runs meanwhile, so none of these is forgotten)
    for (const file of [...files]) {
      if (own.has(file.ino)) continue
      for (let attempt = 0; !flock(file.fd, 'exclusive', false); attempt++) {
        waited = true
        await waitBeforeLockAttempt(attempt)
      }
      locked.push(file.fd)
    }
  } catch (err) {
    unlock()
    throw err
  }
  return {unlock, waited}
}

/**
 * Set the mtime of a file we just wrote a little before the kernel's own (which ticks in
 * jiffies): a write by another process in the same tick then still changes the mtime, and
 * our stamps see it.
 */
function markOwnWrite(fd: number): void {
  const st = fstatSync(fd, {bigint: true})
  futimesSync(fd, Number(st.atimeNs) / 1e9, Number(st.mtimeNs - OWN_WRITE_MTIME_SHIFT_NS) / 1e9)
}
/** (more than the precision of futimes()' seconds as a double) */
const OWN_WRITE_MTIME_SHIFT_NS = 10_000n

export class BerkeleyDbTable implements Table {
  flags: number
  private closed = false
  /** The file changed under the open handle: only reopening helps. */
  private stale = false
  private readonly commits = new GroupCommit<NativeDb>((group) => this.commitGroup(group))
  /** Live cursors per handle, so that a replaced handle is closed when its last cursor ends. */
  private readonly cursorCount = new Map<NativeDb, number>()
  private readonly retired: NativeDb[] = []
  private warnedInPlace = false
  /**
   * The handles of files we made (copies) and wrote only as shadows: their page caches hold
   * what the files hold. A handle opened by name may have cached pages before a postmap
   * wrote the file in the same mtime tick, so it never becomes a shadow.
   */
  private readonly ownHandles = new WeakSet<NativeDb>()
  /** The shadows, the next one to use first (see commitGroup). */
  private readonly shadows: Shadow[] = []
  private directoryFd = -1
  /** Exchanges made, and how many of them a directory fsync() has made durable (see commitGroup). */
  private exchanges = 0
  private exchangesOnDisk = 0
  /** A directory fsync() to come, for exchanges that no commit has synced since. */
  private directoryTimer: NodeJS.Timeout | undefined

  constructor(
    readonly type: DbKind,
    /** Postfix names a Berkeley DB table by its file: `path.db`. */
    readonly name: string,
    private db: NativeDb,
    private fd: number,
    private stamp: FileStamp,
    dictFlags: number,
    private readonly log: TableLog,
    private readonly openFile: DbOpener,
  ) {
    this.flags = withNulDefaults(dictFlags) | DICT_FLAG.FIXED
  }

  private fold(key: string): string {
    return this.flags & DICT_FLAG.FOLD_FIX ? lowercaseAscii(key) : key
  }

  private fail(what: string, err: unknown): never {
    if (err instanceof TableError) throw err
    if (isStaleFileError(err) && !this.stale) {
      this.stale = true
      this.log.warning(`${what} ${this.name}: ${reasonOf(err)}`)
    }
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
        const found = tryNulConventions(this, key, (k) => this.readingAgainIfStale(() => this.db.get(bytes(k))))
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
    const put = (db: NativeDb): boolean => {
      try {
        return db.put(bytes(key + nul), bytes(value + nul), keepExisting)
      } catch (err) {
        this.fail('error writing', err)
      }
    }
    const stored = this.flags & DICT_FLAG.SYNC_UPDATE ? this.commits.submit(put)
      : this.locked('exclusive', () => {
        const ok = put(this.db)
        this.refreshStamp()
        return ok
      })
    return settleDuplicate(stored, this, this.name, key, this.log)
  }

  delete(key: string): boolean | Promise<boolean> {
    key = this.fold(key)
    // The NUL convention is learnt from the file the delete runs on, and kept by the table.
    const del = (db: NativeDb): boolean => {
      try {
        return tryNulConventions(this, key, (k) => db.del(bytes(k))) === true
      } catch (err) {
        this.fail('error deleting from', err)
      }
    }
    if (this.flags & DICT_FLAG.SYNC_UPDATE) return this.commits.submit(del)
    return this.locked('exclusive', () => {
      const removed = del(this.db)
      this.refreshStamp()
      return removed
    })
  }

  /**
   * SYNC_UPDATE (proxywrite forces it): Postfix writes the file in place and DB->sync()s
   * after each update, and a process killed in the middle of a sync that writes several
   * pages (a page split, a hash expansion) leaves a file that libdb cannot read. Instead, a
   * group of writes goes to a shadow copy of the file in the same directory, which is
   * synced (DB->sync(): written and fdatasync()ed) and then swapped with the original in
   * one rename (RENAME_EXCHANGE) while we hold the original's exclusive flock() (what
   * Postfix's own readers and writers take), so the file under the name is always a
   * complete one: the old or the new. The writes are answered then.
   *
   * The replaced file becomes a shadow again, behind by the groups committed since: it is
   * brought up to date by replaying them when it is next used. A shadow is written only
   * once a directory fsync() has made the exchange that took it out of the name durable,
   * so that even a system crash never leaves a half-written file under the name. There are
   * two shadows, used in turn, so that one directory fsync() covers two commits' exchanges
   * (and one runs a second after the last exchange if no commit follows): a system crash
   * may lose the last two groups answered; a kill loses nothing.
   *
   * A shadow is made by copying the table only when there is none yet, when a sequence
   * still reads the replaced file, or when another process changed the table or the
   * shadow (a real `postmap -i`): what the name holds once the lock is ours is then the
   * base of the change.
   */
  private async commitGroup(group: PendingWrite<NativeDb>[]): Promise<void> {
    const table = await this.lockTable()
    let unlockReplaced = (): void => undefined
    let shadow: Shadow | undefined
    try {
      for (let attempt = 1; ; attempt++) {
        shadow = this.shadows[0]
        // (rather than wait for the directory, make the second shadow)
        if (shadow && shadow.exchange > this.exchangesOnDisk && this.shadows.length < SHADOWS) shadow = undefined
        // A `postmap -i` that locked one of these files while it was the table writes the
        // table now: its lock is released once it is done.
        let postmapWrote = false
        for (const other of [...this.shadows]) postmapWrote = await this.lockShadow(other) || postmapWrote
        unlockReplaced()
        // (the file we locked as the table, and our shadows, are locked already)
        const ours = new Set([fstatSync(table.fd, {bigint: true}).ino, ...this.shadows.map((s) => stampOfFd(s.db.fd(), s.stamp).ino)])
        const replaced = await lockReplacedFiles(this.name, ours)
        unlockReplaced = replaced.unlock
        postmapWrote ||= replaced.waited
        const from = fstatSync(table.fd, {bigint: true})
        // A process that held one of those locks wrote the table (whatever its stamp says).
        if (postmapWrote || !sameStamp(stampOf(from), this.stamp)) {
          // Another process changed the table: our handle's pages and the shadows are stale.
          this.dropShadows()
          this.reopen()
          shadow = undefined
        } else if (shadow && !this.shadowIntact(shadow)) {
          this.dropShadows()
          shadow = undefined
        }
        if (!shadow) {
          const made = await this.copyToShadow(table.fd, from)
          if (typeof made === 'string') {
            this.commitInPlace(group, from, made)
            return
          }
          shadow = made
        }
        if (shadow.exchange > this.exchangesOnDisk) this.syncDirectory()
        const results = this.applyToShadow(shadow, group)
        if (!results) continue // (the shadow was dropped; a copy is made)
        // Postfix writes a hash or btree file's pages at DB->sync()/close() time, and
        // postmap -d closes after it has released its lock: a table that changed while we
        // worked is copied again, so that such a change is neither torn nor lost.
        const now = fstatSync(table.fd, {bigint: true})
        if ((now.mtimeNs !== from.mtimeNs || now.size !== from.size) && attempt < COPY_ATTEMPTS) {
          this.dropShadows()
          continue
        }
        // Another instance of the table (other flags, another process) may have put its own
        // shadow under the name while it held the lock; only ours may be exchanged.
        if (!this.shadowNamed(shadow)) {
          this.dropShadows()
          continue
        }
        this.swapWithShadow(shadow, group, results, await this.putShadowInPlace(shadow.path))
        shadow = undefined
        results.forEach((r, i) => (r.ok ? group[i].resolve(r.value) : group[i].reject(r.error)))
        return
      }
    } catch (err) {
      this.dropShadows()
      if (err instanceof TableError) throw err
      throw new TableError('retry', `${this.name}: flush dictionary: ${reasonOf(err)}`)
    } finally {
      await table.release()
      for (const other of this.shadows) this.unlockShadow(other)
      unlockReplaced()
    }
  }

  /**
   * Swap the shadow and the table; true when the replaced file stays under the shadow's
   * name. A file system without RENAME_EXCHANGE gets a plain rename (a copy per commit).
   */
  private async putShadowInPlace(shadowPath: string): Promise<boolean> {
    const shadowIno = statSync(pathBytes(shadowPath), {bigint: true}).ino
    let exchanged = false
    try {
      exchangeFiles(pathBytes(shadowPath), pathBytes(this.name))
      exchanged = true
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      if (code !== 'EINVAL' && code !== 'ENOSYS' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP') throw err
    }
    if (!exchanged) await fsp.rename(pathBytes(shadowPath), pathBytes(this.name))
    noteOwnReplacement(this.name, shadowIno)
    return exchanged
  }

  /**
   * The exclusive flock() of the file under the table's name. Usually that is our handle's
   * file, locked through a new descriptor of its own (flock() locks belong to an open
   * file, and lookups lock the handle's descriptor); when it is busy or another file took
   * the name, wait for the lock as a Postfix writer would (see lockFileUnderPath).
   */
  private async lockTable(): Promise<{fd: number; release(): Promise<void>}> {
    let fd = -1
    try {
      fd = secondDescriptor(this.db.fd(), this.name)
      if (flock(fd, 'exclusive', false)) {
        const locked = fstatSync(fd, {bigint: true})
        const named = statSync(pathBytes(this.name), {bigint: true, throwIfNoEntry: false})
        if (named?.dev === locked.dev && named.ino === locked.ino && locked.nlink > 0n) {
          const lockedFd = fd
          return {fd, release: async () => closeSync(lockedFd)} // (closing releases the lock)
        }
      }
    } catch {
      // (the general way below reports what fails)
    }
    if (fd >= 0) closeSync(fd)
    const handle = await lockFileUnderPath(this.name, true, () => this.closed, this.name)
    return {fd: handle.fd, release: () => handle.close()} // (closing releases the lock)
  }

  /**
   * fsync() the table's directory: the exchanges made so far survive a system crash. It
   * runs on the event loop, as DB->sync() does: a hop to the thread pool costs a single
   * client more than the sync, and on a busy machine far more.
   */
  private syncDirectory(): void {
    const through = this.exchanges
    try {
      if (this.directoryFd < 0) this.directoryFd = openSync(pathBytes(pathModule.dirname(this.name)), 'r')
      fsyncSync(this.directoryFd)
    } catch (err) {
      throw new TableError('retry', `${this.name}: flush directory: ${reasonOf(err)}`)
    }
    this.exchangesOnDisk = Math.max(this.exchangesOnDisk, through)
  }

  /** When no commit follows, the last exchanges are made durable a moment later all the same. */
  private syncDirectoryLater(): void {
    if (this.directoryTimer) return
    this.directoryTimer = setTimeout(() => {
      this.directoryTimer = undefined
      if (this.closed || this.exchangesOnDisk >= this.exchanges) return
      try {
        this.syncDirectory()
      } catch (err) {
        this.log.warning((err as Error).message)
      }
    }, DIRECTORY_SYNC_DELAY_MS)
    this.directoryTimer.unref()
  }

  /** Wait (without blocking the event loop) for the exclusive flock() of a shadow file; true when another process held it. */
  private async lockShadow(shadow: Shadow): Promise<boolean> {
    if (shadow.locked) return false
    let waited = false
    for (let attempt = 0; ; attempt++) {
      if (this.closed || !this.shadows.includes(shadow)) throw new TableError('retry', `${this.name}: table is closed`)
      if (flock(shadow.lockFd, 'exclusive', false)) break
      waited = true
      await waitBeforeLockAttempt(attempt)
    }
    shadow.locked = true
    return waited
  }

  private unlockShadow(shadow: Shadow): void {
    if (!shadow.locked) return
    shadow.locked = false
    flock(shadow.lockFd, 'none')
  }

  /** The shadow file is still ours under its name, as we left it (no process that had it open as the table wrote it). */
  private shadowIntact(shadow: Shadow): boolean {
    return !fileChanged(shadow.path, shadow.stamp) && sameStamp(stampOfFd(shadow.db.fd(), shadow.stamp), shadow.stamp)
  }

  /** The shadow's name still holds our shadow file. */
  private shadowNamed(shadow: Shadow): boolean {
    const named = statSync(pathBytes(shadow.path), {bigint: true, throwIfNoEntry: false})
    const own = fstatSync(shadow.db.fd(), {bigint: true})
    return named !== undefined && named.dev === own.dev && named.ino === own.ino
  }

  /**
   * A new shadow, locked: a copy of the locked table (`tableFd`) under a name no shadow
   * uses. Answers why, when the copy cannot be made where the table is (the caller then
   * writes in place).
   */
  private async copyToShadow(tableFd: number, from: BigIntStats): Promise<Shadow | string> {
    const path = SHADOW_SUFFIXES.map((suffix) => this.name + suffix).find((p) => !this.shadows.some((s) => s.path === p))!
    // The name may still hold a replaced file that a sequence reads: never write it.
    await fsp.unlink(pathBytes(path)).catch(() => undefined)
    let copy: fsp.FileHandle
    try {
      copy = await fsp.open(pathBytes(path), 'wx', 0o600)
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code
      if (code !== 'EACCES' && code !== 'EPERM' && code !== 'EROFS') throw err
      return `cannot create ${path}: ${strerror(err)}`
    }
    try {
      await copyOwnership(copy, from)
      await copyContents(tableFd, copy)
      // Flush the copied pages off the event loop: DB->sync() fdatasync()s the copy
      // synchronously, and should then have only this group's pages to write, so that a
      // big table does not stall the lookups of other tables meanwhile.
      await copy.datasync()
    } catch (err) {
      await fsp.unlink(pathBytes(path)).catch(() => undefined)
      throw err
    } finally {
      await copy.close()
    }
    let db: NativeDb
    try {
      db = this.openFile(pathModule.basename(path), false)
    } catch (err) {
      throw new TableError('retry', `open database ${this.name}: ${reasonOf(err)}`)
    }
    this.ownHandles.add(db)
    const shadow: Shadow = {
      db, path, lockFd: secondDescriptor(db.fd(), path), stamp: stampOfFd(db.fd(), this.stamp), behind: [], locked: false,
      exchange: 0,
    }
    this.shadows.unshift(shadow)
    await this.lockShadow(shadow)
    return shadow
  }

  /** Close the shadows (copies are made again when needed); `remove`: unlink their files too, where their names still hold them. */
  private dropShadows(remove = false): void {
    const ours: string[] = []
    for (const shadow of this.shadows.splice(0)) {
      if (remove && !fileChanged(shadow.path, stampOfFd(shadow.db.fd(), shadow.stamp))) ours.push(shadow.path)
      this.unlockShadow(shadow)
      closeSync(shadow.lockFd)
      this.closeHandle(shadow.db)
    }
    // (only now: libdb opens a file by the name it was opened with when it closes it)
    for (const path of ours) {
      try {
        unlinkSync(pathBytes(path))
      } catch {
        // (left for the next commit, which replaces it)
      }
    }
  }

  /**
   * Bring the shadow up to date (the groups it is behind by), then apply each write of
   * `group` in order (a write that fails fails alone), then DB->sync() it (pages written,
   * fdatasync()). Undefined when the shadow could not replay what the table holds: the
   * shadows were dropped.
   */
  private applyToShadow(shadow: Shadow, group: PendingWrite<NativeDb>[]): WriteResult[] | undefined {
    try {
      for (const w of shadow.behind) w.apply(shadow.db)
    } catch {
      this.dropShadows()
      return undefined
    }
    shadow.behind = []
    const results = group.map((w): WriteResult => {
      try {
        return {ok: true, value: w.apply(shadow.db)}
      } catch (error) {
        return {ok: false, error}
      }
    })
    try {
      shadow.db.sync()
      markOwnWrite(shadow.db.fd())
    } catch (err) {
      // The copy may be incomplete: it is not used.
      this.dropShadows()
      throw new TableError('retry', `${this.name}: flush dictionary: ${reasonOf(err)}`)
    }
    return results
  }

  /**
   * After the exchange: the shadow's handle reads the table, and the replaced file, now
   * under the shadow's name, becomes the last shadow, behind by `group` (as the other one
   * is now) — unless a sequence still reads it, for which it stays as it is, or it has no
   * name left (a new shadow is then copied).
   */
  private swapWithShadow(shadow: Shadow, group: PendingWrite<NativeDb>[], results: WriteResult[], replacedKept: boolean): void {
    const replaced = this.db
    this.db = shadow.db
    this.fd = this.db.fd()
    // (before its lock goes: a postmap -i waiting for it writes the table at once)
    this.refreshStamp()
    rememberReplaced(this.name, replaced.fd(), shadow.path)
    this.unlockShadow(shadow)
    closeSync(shadow.lockFd)
    this.shadows.splice(this.shadows.indexOf(shadow), 1)
    const committed = group.filter((_, i) => results[i].ok)
    for (const other of this.shadows) other.behind.push(...committed)
    this.exchanges++
    this.syncDirectoryLater()
    if (this.cursorCount.get(replaced)) {
      this.retire(replaced)
      return
    }
    if (!replacedKept || !this.ownHandles.has(replaced)) {
      this.closeHandle(replaced)
      return
    }
    let lockFd: number
    try {
      lockFd = secondDescriptor(replaced.fd(), shadow.path)
    } catch {
      this.closeHandle(replaced)
      return
    }
    const next: Shadow = {db: replaced, path: shadow.path, lockFd, stamp: stampOfFd(replaced.fd(), this.stamp), behind: committed, locked: false, exchange: this.exchanges}
    this.shadows.push(next)
  }

  /**
   * Where the copy cannot be made (a table file that postfix may write in a directory it
   * may not), write in place and sync, as Postfix does, with a warning (once): such a
   * table is not safe against a crash in the middle of a sync. The caller holds the lock.
   */
  private commitInPlace(group: PendingWrite<NativeDb>[], locked: BigIntStats, why: string): void {
    if (!this.warnedInPlace) {
      this.warnedInPlace = true
      this.log.warning(`${this.name}: ${why}; updating in place, which a crash in the middle of a write can leave unreadable`)
    }
    if (this.stamp.dev !== locked.dev || this.stamp.ino !== locked.ino) this.reopen()
    this.dropShadows()
    const results = group.map((w) => {
      try {
        return {ok: true as const, value: w.apply(this.db)}
      } catch (error) {
        return {ok: false as const, error}
      }
    })
    try {
      this.db.sync()
    } catch (err) {
      throw new TableError('retry', `${this.name}: flush dictionary: ${reasonOf(err)}`)
    }
    this.refreshStamp()
    results.forEach((r, i) => (r.ok ? group[i].resolve(r.value) : group[i].reject(r.error)))
  }

  /**
   * A handle whose file was changed in place (or whose read faulted) answers nothing from
   * that read: the file is opened again as it is now and the read done once more there.
   * When the file cannot be opened (being rewritten, truncated, garbage), the read fails.
   */
  private readingAgainIfStale<T>(read: () => T): T {
    try {
      return read()
    } catch (err) {
      if (!isStaleFileError(err)) throw err
      try {
        this.reopen()
      } catch {
        throw err
      }
      if ((err as NativeError).signal) this.log.warning(`${this.name}: ${(err as NativeError).reason} -- reopening`)
      else this.log.info(`table ${this.type}:${this.name.slice(0, -DB_SUFFIX.length)} has changed -- reopening`)
      return read()
    }
  }

  /** Open the file now under the name; the old handle stays for the cursors still on it. */
  private reopen(): void {
    const old = this.db
    this.db = this.openFile(pathModule.basename(this.name), false)
    this.fd = this.db.fd()
    this.refreshStamp()
    if (!this.cursorCount.get(old)) {
      this.closeHandle(old)
      return
    }
    this.retire(old)
  }

  /** Keep a replaced handle for the cursors still on it. */
  private retire(db: NativeDb): void {
    this.retired.push(db)
    if (this.retired.length > MAX_RETIRED_HANDLES) this.closeHandle(this.retired.shift()!)
  }

  private closeHandle(db: NativeDb): void {
    this.cursorCount.delete(db)
    const status = db.close()
    if (status !== 0) this.log.info(`close database ${this.name}: error ${status} (possible Berkeley DB bug)`)
  }

  private endCursor(state: DbSequenceState): void {
    state.cursor.close()
    const left = (this.cursorCount.get(state.db) ?? 1) - 1
    if (left > 0) {
      this.cursorCount.set(state.db, left)
      return
    }
    this.cursorCount.delete(state.db)
    const at = this.retired.indexOf(state.db)
    if (at >= 0) {
      this.retired.splice(at, 1)
      this.closeHandle(state.db)
    }
  }

  sequence(fn: SequenceFunction, cursor: SequenceCursor): readonly [string, string] | undefined | Promise<readonly [string, string] | undefined> {
    let state = ownSequenceState<DbSequenceState>(cursor, this)
    if (fn === 'next' && !state) return undefined
    if (fn === 'first') {
      if (state) this.endCursor(state)
      try {
        state = {table: this, db: this.db, cursor: this.db.cursor()}
      } catch (err) {
        this.fail('error seeking', err)
      }
      this.cursorCount.set(this.db, (this.cursorCount.get(this.db) ?? 0) + 1)
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
        this.endCursor(current)
        if (cursor.state === current) cursor.state = undefined
        return undefined
      }
      return [text(entry[0]), text(entry[1])] as const
    })
  }

  private refreshStamp(): void {
    this.stamp = stampOfFd(this.fd, this.stamp)
  }

  broken(): boolean {
    return this.stale
  }

  changed(): boolean {
    return this.stale || fileChanged(this.name, this.stamp)
  }

  watchedFile(): {path: string; stamp: FileStamp} {
    return {path: this.name, stamp: this.stamp}
  }

  close(): void {
    if (this.closed) return
    this.closed = true
    for (const db of this.retired.splice(0)) this.closeHandle(db)
    // Postfix: sync, then close; a failing close is only reported.
    this.closeHandle(this.db)
    // (last: libdb opens a file by the name it was opened with when it closes it)
    this.dropShadows(true)
    clearTimeout(this.directoryTimer)
    if (this.directoryFd >= 0) {
      if (this.exchangesOnDisk < this.exchanges) {
        try {
          fsyncSync(this.directoryFd)
        } catch {
          // (the table is closed all the same)
        }
      }
      closeSync(this.directoryFd)
    }
  }
}

/**
 * A new open file of the file that descriptor `fd` is open on: through /proc, or where
 * there is none (a chroot), through `path` if that still names the same file.
 */
function secondDescriptor(fd: number, path: string): number {
  try {
    return openSync(`/proc/self/fd/${fd}`, 'r')
  } catch {
    const second = openSync(pathBytes(path), 'r')
    const [a, b] = [fstatSync(fd, {bigint: true}), fstatSync(second, {bigint: true})]
    if (a.dev === b.dev && a.ino === b.ino) return second
    closeSync(second)
    throw new TableError('retry', `${path}: the file was replaced`)
  }
}

const readDescriptor = promisify(read)

/** Copy the whole of file descriptor `from` into `to`, through a fixed buffer. */
async function copyContents(from: number, to: fsp.FileHandle): Promise<void> {
  const buffer = Buffer.allocUnsafe(1 << 20)
  for (let position = 0; ;) {
    const {bytesRead} = await readDescriptor(from, buffer, 0, buffer.length, position)
    if (bytesRead === 0) return
    for (let written = 0; written < bytesRead;) written += (await to.write(buffer, written, bytesRead - written, position + written)).bytesWritten
    position += bytesRead
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
  const addon = loadAddon(options.log)
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
  const cacheSize = cacheSizeFrom(options)
  const openFile: DbOpener = (file, create) => addon.openDb(pathBytes(pathModule.dirname(dbPath)), pathBytes(file),
    kind === 'hash' ? addon.constants.DB_HASH : addon.constants.DB_BTREE, readOnly, create, cacheSize, kind === 'hash' ? HASH_NELEM : 0)
  let db: NativeDb
  try {
    if (lockFd >= 0) await sharedLockForOpen(lockFd, dbPath)
    try {
      db = openFile(pathModule.basename(dbPath), !readOnly)
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
  const table = new BerkeleyDbTable(kind, dbPath, db, fd, stamp, options.dictFlags, options.log, openFile)
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

