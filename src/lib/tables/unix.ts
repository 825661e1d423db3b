// unix:passwd.byname and unix:group.byname — the system's user and group databases
// through the name service (Postfix 3.7 dict_unix.c).
//
// Node has no getpwnam()/getgrnam(), so lookups run getent(1), which asks the same NSS
// modules (nsswitch.conf) that Postfix's getpwnam() would. getent prints an entry in the
// very format Postfix builds: `name:passwd:uid:gid:gecos:dir:shell` for passwd and
// `name:passwd:gid:member,member,...` for group.

import {execFile} from 'node:child_process'
import {DICT_FLAG} from '../protocol/constants.js'
import {activateUtf8, allAscii, isValidUtf8, lowercaseAscii, needUtf8Activation} from './fold.js'
import {strerror} from './source-file.js'
import {OpenOptions, Table, TableError, TableLog, TableType} from './table.js'

type Database = 'passwd' | 'group'

const GETENT = 'getent'
const GETENT_TIMEOUT_MS = 30_000

/** One run of getent: its stdout (latin1) when it found something, undefined when not. */
function getent(database: Database, key?: string): Promise<string | undefined> {
  const args = key === undefined ? ['--', database] : ['--', database, key]
  return new Promise((resolve, reject) => {
    execFile(GETENT, args, {encoding: 'buffer', timeout: GETENT_TIMEOUT_MS, maxBuffer: 64 << 20},
      (err, stdout) => {
        if (!err) return resolve(stdout.toString('latin1'))
        // 2: not found; 1: bad arguments; 3: enumeration not supported.
        if (typeof err.code === 'number' && err.code >= 1 && err.code <= 3) return resolve(undefined)
        reject(err)
      })
  })
}

/**
 * getent takes a key that strtoul() reads completely as a number for a uid/gid; getpwnam()
 * would take it as a name. Such keys are looked up by enumerating the database instead.
 */
const NUMERIC_KEY = /^[ \t\n\v\f\r]*[+-]?[0-9]+$/

/** getpwnam()/getgrnam() of `name`: the entry line, or undefined. */
async function getByName(database: Database, name: string): Promise<string | undefined> {
  if (!NUMERIC_KEY.test(name)) {
    const out = await getent(database, toText(name))
    if (out === undefined) return undefined
    const line = firstLine(out)
    return line !== '' ? line : undefined
  }
  const all = await getent(database)
  if (all === undefined) return undefined
  for (const line of all.split('\n')) if (line.slice(0, line.indexOf(':')) === name) return line
  return undefined
}

function firstLine(s: string): string {
  const nl = s.indexOf('\n')
  return nl < 0 ? s : s.slice(0, nl)
}

const toText = (bytes: string): string => Buffer.from(bytes, 'latin1').toString('utf8')

/**
 * Postfix checks once per process, after the first miss, whether the database works at
 * all (uid/gid 0 must exist); a success settles the question too.
 */
const sanityChecked: Record<Database, boolean> = {passwd: false, group: false}

const DESCRIPTION: Record<Database, string> = {passwd: 'password', group: 'group'}

/**
 * FIXED; lookup only (Postfix gives no update, delete or sequence). Keys are lowercase()d
 * (ASCII only) when the flags at call time include FOLD_FIX; with the UTF-8 layer active
 * that layer casefolds them instead. A key is a C string (cut at NUL); one that is not
 * valid UTF-8 cannot be passed to getent and is not found. When the very first lookup of
 * the process misses and uid/gid 0 cannot be found either, the lookup fails as RETRY after
 * the warning Postfix logs. A failure to run getent at all is RETRY too.
 */
export class UnixTable implements Table {
  readonly type = 'unix'
  flags: number

  constructor(readonly name: string, private readonly database: Database, dictFlags: number,
    private readonly log: TableLog) {
    this.flags = dictFlags | DICT_FLAG.FIXED
  }

  lookup(key: string): Promise<string | undefined> {
    // Read the fold flag now: the UTF-8 layer clears it only around this synchronous call.
    let name = cString(key)
    if (this.flags & DICT_FLAG.FOLD_FIX) name = lowercaseAscii(name)
    return this.find(name)
  }

  private async find(name: string): Promise<string | undefined> {
    const database = this.database
    let entry: string | undefined
    try {
      entry = name === '' || (!allAscii(name) && !isValidUtf8(name)) ? undefined : await getByName(database, name)
      if (entry !== undefined) {
        sanityChecked[database] = true
        return entry
      }
      if (!sanityChecked[database]) {
        sanityChecked[database] = true
        if ((await getent(database, '0')) === undefined) {
          const message = `cannot access UNIX ${DESCRIPTION[database]} database: no entry for ${database === 'passwd' ? 'uid' : 'gid'} 0`
          this.log.warning(message)
          throw new TableError('retry', message)
        }
      }
      return undefined
    } catch (err) {
      if (err instanceof TableError) throw err
      const message = `cannot access UNIX ${DESCRIPTION[database]} database: ${GETENT}: ${strerror(err)}`
      this.log.warning(message)
      throw new TableError('retry', message)
    }
  }
}

function cString(s: string): string {
  const nul = s.indexOf('\0')
  return nul < 0 ? s : s.slice(0, nul)
}

const DATABASES: Record<string, Database> = {'passwd.byname': 'passwd', 'group.byname': 'group'}

/** Open as dict_unix_open() does: read-only access, and one of the two known names. */
export const unixType: TableType = {
  type: 'unix',
  open(name: string, options: OpenOptions): Table {
    if (options.mode !== 'read')
      throw new TableError('config', `unix:${name} map requires O_RDONLY access mode`)
    const database = Object.prototype.hasOwnProperty.call(DATABASES, name) ? DATABASES[name] : undefined
    if (database === undefined) throw new TableError('config', `unknown table: unix:${name}`)
    const table = new UnixTable(name, database, options.dictFlags, options.log)
    return needUtf8Activation(options.config, options.dictFlags) ? activateUtf8(table, options.log) : table
  },
}
