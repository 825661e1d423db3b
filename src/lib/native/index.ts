// The project's own native addon (native/postfix_native.cc, built by node-gyp from
// binding.gyp when `npm install`/`npm ci` runs): Berkeley DB 5.3 (libdb) handles for the
// hash and btree table types, LMDB 0.9 (liblmdb, the library Postfix links) environments
// and transactions for the lmdb table type, the engines of the regexp and pcre table types
// and of UTF-8 case folding (native/patterns.cc: the C library's regex, libpcre2-8 and
// ICU, as Postfix links them), and the POSIX calls Node lacks: flock(),
// fcntl() record locks, renameat2(RENAME_EXCHANGE), chroot(), setsid(). The C++ side only forwards calls; decisions
// live here and in the callers. The addon is loaded on first use, so that commands that never touch
// these features work without it.

import {createRequire} from 'node:module'
import {existsSync} from 'node:fs'
import * as path from 'node:path'
import {packageRoot} from '../util/package-root.js'

/** An error thrown by the addon: `errno` is a system errno (>0) or a libdb/LMDB code (<0). */
export interface NativeError extends Error {
  errno: number
  /** errno's name (EWOULDBLOCK, ENOENT, ...) for system errors. */
  code?: string
  /** The strerror()/db_strerror()/mdb_strerror() text, as Postfix prints it. */
  reason: string
  /** For ESTALE from a read that faulted: the signal (SIGBUS, SIGSEGV). */
  signal?: string
}

export interface NativeCursor {
  /** DB_FIRST (first true) or DB_NEXT: the raw key and value, or undefined at the end. */
  get(first: boolean): [Buffer, Buffer] | undefined
  close(): void
}

export interface NativeDb {
  /** The raw value stored under the raw key, or undefined. */
  get(key: Buffer): Buffer | undefined
  /** Store; with noOverwrite, false (and nothing stored) when the key exists (DB_NOOVERWRITE). */
  put(key: Buffer, value: Buffer, noOverwrite: boolean): boolean
  /** Remove; false when the key was not there. */
  del(key: Buffer): boolean
  /** DB->sync(): write cached pages to the file. */
  sync(): void
  /** The descriptor of the database file (Postfix locks this one). */
  fd(): number
  /** A cursor of its own (DB->cursor()); closed with the database at the latest. */
  cursor(): NativeCursor
  /** Close cursors, sync, close the handle and its private environment; 0 or an errno. */
  close(): number
}

/**
 * One LMDB transaction (mdb_txn_begin()) on the environment's unnamed database. It ends
 * with commit() or abort() (also when its environment closes); it has at most one cursor,
 * opened by the first cursorGet() and closed when the transaction ends.
 */
export interface NativeLmdbTxn {
  /** mdb_put(); with noOverwrite (MDB_NOOVERWRITE), false when the key exists (MDB_KEYEXIST). */
  put(key: Buffer, value: Buffer, noOverwrite: boolean): boolean
  /** mdb_del(): false when the key was not there (MDB_NOTFOUND). */
  del(key: Buffer): boolean
  /**
   * mdb_cursor_get() with constants.MDB_FIRST, MDB_NEXT or MDB_SET_RANGE (which needs
   * `key`): the raw key and value, or undefined (MDB_NOTFOUND).
   */
  cursorGet(op: number, key?: Buffer): [Buffer, Buffer] | undefined
  /** mdb_txn_commit(); the transaction has ended even when this throws. */
  commit(): void
  /** mdb_txn_abort(); harmless after the transaction ended. */
  abort(): void
}

/** An LMDB environment (mdb_env_open()) of one file. */
export interface NativeLmdbEnv {
  /** mdb_txn_begin(), MDB_RDONLY when readOnly. */
  begin(readOnly: boolean): NativeLmdbTxn
  /**
   * mdb_get() of a byte string in a read-only transaction begun and ended within the call:
   * the value up to its first NUL (a C string, one char per byte), undefined when not found.
   */
  lookup(key: string): string | undefined
  /** mdb_env_set_mapsize(): no transaction may be active; 0 adopts the file's own size. */
  setMapSize(size: number): void
  /** The current map size (mdb_env_info()). */
  mapSize(): number
  /** mdb_env_get_maxkeysize(): 511 for LMDB 0.9 as Debian builds it. */
  maxKeySize(): number
  /** The descriptor of the database file (mdb_env_get_fd(); Postfix locks this one). */
  fd(): number
  /** mdb_env_sync(force). */
  sync(): void
  /**
   * In one read-only transaction: the first entry (`after` undefined) or the first whose
   * key sorts after `after` (MDB_SET_RANGE, then MDB_NEXT past an equal key); the raw key
   * and value, or undefined at the end.
   */
  seek(after?: Buffer): [Buffer, Buffer] | undefined
  /**
   * As seek(), up to `maxEntries` consecutive entries of one read-only transaction (fewer
   * once `maxBytes` are packed, never none before the end), packed in one Buffer as
   * [u32 LE key length][key][u32 LE value length][value]...; undefined at the end.
   */
  seekBatch(after: Buffer | undefined, maxEntries: number, maxBytes: number): Buffer | undefined
  /** The last committed transaction's id in the file's meta pages (-1: unreadable). */
  lastTxnId(): number
  /**
   * madvise(MADV_DONTNEED) over the map: its file pages leave the process's resident set
   * (the kernel keeps them cached). Not while a transaction is live: false, nothing done.
   */
  releaseMap(): boolean
  /** mdb_env_close() after aborting its live transactions; idempotent. */
  close(): void
}

/** A search's answer when it is more than a rule index: see NativePatternProgram.search(). */
export interface NativeSearchResult {
  /** The index of the matching rule, -1 when none matched. */
  rule: number
  /** Matching errors: [rule index, the engine's error text], in the order they happened. */
  warnings: [number, string][]
  /** search() only: the rule to go on with in searchAsync() (the main thread's share is spent). */
  resume?: number
  /** The search could not be finished (regexec() faulted; see warnings): answer RETRY. */
  failed?: true
  /** searchAsync() only: the matching rule's group offsets (start, end; -1 when unset). */
  offsets?: Int32Array
  /** searchAsync() only: how long the search took in its thread, in nanoseconds. */
  ns?: number
}

/**
 * The compiled patterns and rules of one regexp (engine 0: regcomp()/regexec()) or pcre
 * (engine 1: pcre2_compile()/pcre2_match()) table.
 */
export interface NativePatternProgram {
  /**
   * Compile a pattern with the engine's flags (REG_* or PCRE2_* options): its index and
   * number of groups, or the engine's error text (and, for PCRE2, the offset). PCRE2:
   * keys up to `jitKeyLimit` bytes are matched by the JIT (default -1: never). POSIX: a
   * key without one of `requiredTexts` (NUL-separated texts that every match contains) is
   * no match, without regexec().
   */
  compile(pattern: string, flags: number, jitKeyLimit?: number, requiredTexts?: string):
    {index: number; groups: number} | {error: string; offset?: number}
  /**
   * The table's rules, 7 ints each: kind (0 match, 1 IF, 2 ENDIF), first pattern, first
   * negated (0/1), second pattern (-1: none), second negated, largest $number, ENDIF index
   * (-1: none). search() leaves the matching rule's group offsets in `offsets`.
   */
  setRules(rules: Int32Array, offsets: Int32Array): void
  /**
   * Postfix's first-match search from rule `from`, on this thread but bounded in time:
   * the matching rule's index (or -1) when that is all there is to say.
   */
  search(key: string, from: number): number | NativeSearchResult
  /** The same search in one of the addon's threads, without bounds other than Postfix's own. */
  searchAsync(key: string, from: number): Promise<NativeSearchResult>
  /** PCRE2 only, for tests: the smallest match limit under which the interpreter finishes on `key` (-1: none up to the default). */
  interpreterWork(index: number, key: string): number
}

export interface PostfixNative {
  PatternProgram: new (engine: number) => NativePatternProgram
  /** ICU's ucasemap_utf8FoldCase() (U_FOLD_CASE_DEFAULT) of a byte string, up to its first NUL. */
  casefold(bytes: string): string
  patternConstants: {
    REG_EXTENDED: number
    REG_ICASE: number
    REG_NEWLINE: number
    REG_NOSUB: number
    PCRE2_CASELESS: number
    PCRE2_MULTILINE: number
    PCRE2_DOTALL: number
    PCRE2_EXTENDED: number
    PCRE2_ANCHORED: number
    PCRE2_DOLLAR_ENDONLY: number
    PCRE2_UNGREEDY: number
  }
  /** The PCRE2 and ICU versions linked at run time ("10.42 2022-12-11", "72.1"). */
  patternVersions: {pcre2: string; icu: string}
  /**
   * DB->open() of `file` in a private DB_INIT_MPOOL environment whose home is `home`
   * (Postfix: the directory of the file), with DB_FCNTL_LOCKING as Postfix passes it.
   * `type` is constants.DB_HASH or constants.DB_BTREE; `cacheSize` raises the environment's
   * cache to at least that many bytes; `hashNelem` is DB->set_h_nelem() (0: not set).
   */
  openDb(home: Buffer, file: Buffer, type: number, readOnly: boolean, create: boolean, cacheSize: number, hashNelem: number): NativeDb
  /** flock(fd, op), retried on EINTR: false when op has LOCK_NB and another holds the lock. */
  flock(fd: number, op: number): boolean
  /**
   * mdb_env_open() of the single file `path` (MDB_NOSUBDIR) with MDB_NOLOCK, as Postfix
   * opens it: no lock file; callers serialise with fcntl() locks on fd(). MDB_RDONLY when
   * readOnly, otherwise the file is created (mode 0644) when missing. `mapSize` is set
   * before opening. Throws a NativeError with LMDB's status (such as ENOENT).
   */
  lmdbOpen(path: Buffer, readOnly: boolean, mapSize: number): NativeLmdbEnv
  /**
   * Whole-file fcntl() lock of type F_RDLCK/F_WRLCK/F_UNLCK: F_SETLKW when `wait`,
   * otherwise F_SETLK, which answers false when another process holds a conflicting lock.
   */
  fcntlLock(fd: number, type: number, wait: boolean): boolean
  chroot(path: Buffer): void
  /** renameat2(a, b, RENAME_EXCHANGE): the two names swap files in one step. */
  exchangeFiles(a: Buffer, b: Buffer): void
  /** setsid(): the new session id. */
  setsid(): number
  /** A connected AF_UNIX datagram socket (Node has none): its descriptor. */
  dgramConnect(path: Buffer): number
  /** send() one datagram without blocking. */
  dgramSend(fd: number, bytes: Buffer): number
  /**
   * V8's LowMemoryNotification() (full collections that shrink the heap), then glibc's
   * malloc_trim(0): true when pages went back to the kernel.
   */
  releaseMemory(): boolean
  constants: {
    LOCK_SH: number
    LOCK_EX: number
    LOCK_UN: number
    LOCK_NB: number
    F_RDLCK: number
    F_WRLCK: number
    F_UNLCK: number
    DB_HASH: number
    DB_BTREE: number
    MDB_FIRST: number
    MDB_NEXT: number
    MDB_SET_RANGE: number
    MDB_MAP_FULL: number
    MDB_MAP_RESIZED: number
    MDB_READERS_FULL: number
    MDB_BAD_VALSIZE: number
    ESTALE: number
  }
  /** Berkeley DB version compiled against and linked at run time ("5.3.28"). */
  libdbVersion: {compiled: string; runtime: string}
  /** LMDB version compiled against and linked at run time ("0.9.24"). */
  lmdbVersion: {compiled: string; runtime: string}
}

export class NativeAddonMissingError extends Error {
  constructor(readonly addonPath: string, cause: unknown) {
    super(`the native addon ${addonPath} is missing or cannot be loaded (${(cause as Error)?.message ?? cause}); ` +
      'install the Berkeley DB, LMDB, PCRE2 and ICU headers and a C++ toolchain (Debian: apt-get install libdb5.3-dev liblmdb-dev libpcre2-dev libicu-dev g++ make python3), ' +
      'then run: npm rebuild  (or: npm run build:native)')
    this.name = 'NativeAddonMissingError'
  }
}

/** build/Release at the project root. */
export const NATIVE_ADDON_PATH = path.join(packageRoot(), 'build', 'Release', 'postfix_native.node')

/**
 * Where the addon is loaded from: $PROXYMAP_NATIVE_ADDON (read once, now, before serve
 * cleans the environment as master(8) would), else the build in the project.
 */
export const NATIVE_ADDON_FILE = process.env.PROXYMAP_NATIVE_ADDON || NATIVE_ADDON_PATH

/**
 * A failed load is not the process's fate: during an `npm rebuild` the file is missing or
 * half written for a few seconds. It is tried again on the next use after this long.
 */
export const NATIVE_RETRY_MS = 1000

let loaded: PostfixNative | undefined
let loadError: NativeAddonMissingError | undefined
let failedAt = 0
let failureReported = false

/**
 * The addon, loaded on first use. Throws NativeAddonMissingError when it cannot be loaded;
 * `report` hears of a failure once until a load succeeds.
 */
export function loadNative(report?: (message: string) => void): PostfixNative {
  if (loaded) return loaded
  if (loadError && Date.now() - failedAt < NATIVE_RETRY_MS) throw loadError
  try {
    if (!existsSync(NATIVE_ADDON_FILE)) throw new Error('not built')
    loaded = createRequire(import.meta.url)(NATIVE_ADDON_FILE) as PostfixNative
    loadError = undefined
    failureReported = false
    return loaded
  } catch (err) {
    loadError = new NativeAddonMissingError(NATIVE_ADDON_FILE, err)
    failedAt = Date.now()
    if (report && !failureReported) {
      failureReported = true
      report(`${loadError.message}; trying again when next needed`)
    }
    throw loadError
  }
}

/** True when the addon is loadable (for diagnostics; callers normally just use it). */
export function nativeAvailable(): boolean {
  try {
    loadNative()
    return true
  } catch {
    return false
  }
}

export function isNativeError(err: unknown): err is NativeError {
  return err instanceof Error && typeof (err as Partial<NativeError>).errno === 'number'
}

/**
 * The handle's file was truncated or overwritten while open (a read faulted, or the file's
 * size or mtime moved): the handle answers only this error from then on, and the table
 * must be opened again.
 */
export function isStaleFileError(err: unknown): boolean {
  return isNativeError(err) && err.code === 'ESTALE'
}

// ---------------------------------------------------------------- POSIX helpers

/** Postfix's MYFLOCK_OP_*: none (unlock), shared, exclusive; `wait: false` adds LOCK_NB. */
export type LockOperation = 'none' | 'shared' | 'exclusive'

/**
 * flock() on `fd` (Postfix myflock() with MYFLOCK_STYLE_FLOCK). Blocking unless
 * `wait` is false; then false means another open file holds a conflicting lock.
 */
export function flock(fd: number, operation: LockOperation, wait = true): boolean {
  const n = loadNative()
  const op = operation === 'none' ? n.constants.LOCK_UN : operation === 'shared' ? n.constants.LOCK_SH : n.constants.LOCK_EX
  return n.flock(fd, wait || operation === 'none' ? op : op | n.constants.LOCK_NB)
}

/**
 * A whole-file fcntl() lock (Postfix myflock() with MYFLOCK_STYLE_FCNTL): F_SETLKW when
 * `wait`, F_SETLK otherwise (false: another process holds a conflicting lock).
 */
export function fcntlLock(fd: number, operation: LockOperation, wait = true): boolean {
  const n = loadNative()
  const type = operation === 'none' ? n.constants.F_UNLCK : operation === 'shared' ? n.constants.F_RDLCK : n.constants.F_WRLCK
  return n.fcntlLock(fd, type, wait)
}

/** Swap the files that two names of one file system hold, atomically (Linux renameat2()). */
export function exchangeFiles(a: Buffer, b: Buffer): void {
  loadNative().exchangeFiles(a, b)
}

/** chroot(): a string path is passed as UTF-8; give a Buffer for other bytes. */
export function chroot(dir: string | Buffer): void {
  loadNative().chroot(typeof dir === 'string' ? Buffer.from(dir, 'utf8') : dir)
}

export function setsid(): number {
  return loadNative().setsid()
}

/** Connect an AF_UNIX datagram socket, e.g. to Postfix's postlog service. */
export function dgramConnect(socketPath: string): number {
  return loadNative().dgramConnect(Buffer.from(socketPath, 'utf8'))
}

export function dgramSend(fd: number, bytes: Buffer): number {
  return loadNative().dgramSend(fd, bytes)
}

/** Collect garbage, shrink the heap and give freed pages back to the kernel; false without the addon. */
export function releaseMemory(): boolean {
  try {
    return loadNative().releaseMemory()
  } catch {
    return false
  }
}
