// mysql:/path.cf — MySQL/MariaDB tables (Postfix dict_mysql.c; mysql_table(5)), read-only.
//
// `hosts` lists servers as `unix:/path`, `inet:host[:port]`, `host[:port]` or `localhost`
// (the default; the client library's UNIX socket). Postfix's failover and idle rules and
// our connection bound are in sql/host-pool.ts. Values are escaped as
// mysql_real_escape_string() does; every column of every row is expanded with
// result_format. Like Postfix's client library we talk utf8mb4 to the server.
//
// Option files are read as libmariadb reads them (readClientOptions()): of their settings
// we honour user, port, socket and the ssl-*/tls-version ones. TLS (tls_* parameters, or
// ssl-* options) follows libmariadb 3.3's rules as measured with postmap: see
// mysqlTlsSettings() and mysql2Ssl().

import * as fsp from 'node:fs/promises'
import * as nodeTls from 'node:tls'
import * as mysql from 'mysql2/promise'
import type {SslOptions} from 'mysql2'
import {OpenOptions, Table, TableError, TableType} from './table.js'
import {openSqlTable, utf8Text} from './sql/sql-table.js'
import {checkedPool, HostConnection, HostPool, HostSpec, SqlPoolLimits, sqlPoolLimits, SqlRow} from './sql/host-pool.js'
import {CHARS_COMMA_SP} from '../util/postfix-strings.js'
import {pathBytes, strerror} from './source-file.js'
import type {CfParser} from './sql/cf-parser.js'

/** mysql_real_escape_string() with the default (backslash-escaping) SQL mode. */
export function mysqlQuote(raw: string): string {
  return raw.replace(/[\0\n\r\\'"\x1a]/g, (c) => ({'\0': '\\0', '\n': '\\n', '\r': '\\r', '\x1a': '\\Z'})[c] ?? `\\${c}`)
}

interface MysqlHost extends HostSpec {
  socketPath?: string
  host?: string
  port?: number
}

/** host_init(): `unix:` and `localhost` are UNIX-domain, anything else inet with an optional port. */
export function parseMysqlHost(spec: string): MysqlHost {
  let d = spec
  let unix = false
  if (d.startsWith('unix:')) {
    d = d.slice(5)
    unix = true
  } else if (d.startsWith('inet:')) {
    d = d.slice(5)
  }
  let port: number | undefined
  const colon = d.lastIndexOf(':')
  if (colon >= 0) {
    const p = d.slice(colon + 1)
    port = /^\d+$/.test(p) ? Number(p) : p === 'mysql' ? 3306 : undefined
    d = d.slice(0, colon)
  }
  if (d.toLowerCase() === 'localhost') return {spec, unix: true, port}
  return unix ? {spec, unix, socketPath: d} : {spec, unix, host: d, port}
}

/**
 * my.cnf-style settings as libmariadb (the client library of Debian's postfix-mysql) reads
 * them; keys with `_` spelled `-`; undefined: a key without a value.
 */
export type ClientOptions = Map<string, string | undefined>

/** libmariadb reads these groups of every option file, and then option_group. */
const ALWAYS_READ_GROUPS = ['client', 'client-server', 'client-mariadb']

/**
 * The option files Postfix's connection reads (measured with postmap): option_file alone
 * when one is set; otherwise, while option_group is not empty (it is "client" by default),
 * libmariadb's default files, the per-user ~/.my.cnf included; none with "option_group =".
 */
export async function readClientOptions(optionFile: string | undefined, optionGroup: string): Promise<ClientOptions> {
  const options: ClientOptions = new Map()
  const groups = new Set(optionGroup ? [...ALWAYS_READ_GROUPS, optionGroup] : ALWAYS_READ_GROUPS)
  if (optionFile) await readOptionFile(optionFile, groups, options, 0)
  else if (optionGroup) for (const file of defaultOptionFiles()) await readOptionFile(file, groups, options, 0)
  return options
}

function defaultOptionFiles(): string[] {
  const dirs = ['/etc', '/etc/mysql']
  const home = process.env.MARIADB_HOME || process.env.MYSQL_HOME
  if (home && !dirs.includes(home)) dirs.push(home)
  const files = dirs.map((dir) => `${dir}/my.cnf`)
  if (process.env.HOME) files.push(`${process.env.HOME}/.my.cnf`)
  return files
}

const C_SPACE = '[ \\t\\n\\v\\f\\r]'
const trimStartC = (s: string): string => s.replace(new RegExp(`^${C_SPACE}+`), '')
const trimEndC = (s: string): string => s.replace(new RegExp(`${C_SPACE}+$`), '')

async function readOptionFile(file: string, groups: ReadonlySet<string>, into: ClientOptions, depth: number): Promise<void> {
  if (depth >= 64) return
  let text: string
  try {
    text = (await fsp.readFile(pathBytes(file))).toString('latin1')
  } catch {
    return
  }
  let inGroup: boolean | undefined
  const lines = text.split('\n')
  for (const [index, raw] of lines.entries()) {
    const line = trimStartC(raw)
    if (line.startsWith('!')) {
      // "!include FILE"; libmariadb 3.3's "!includedir DIR" reads DIR/my.cnf only (measured)
      const space = line.indexOf(' ')
      if (space < 0) continue
      const directive = line.slice(1, space)
      const target = trimEndC(line.slice(space + 1))
      if (directive === 'include') await readOptionFile(target, groups, into, depth + 1)
      else if (directive === 'includedir') await readOptionFile(`${target}/my.cnf`, groups, into, depth + 1)
      continue
    }
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue
    if (line.startsWith('[')) {
      const close = line.indexOf(']')
      if (close < 0) return // libmariadb stops reading the file here
      inGroup = groups.has(trimEndC(line.slice(1, close)))
      continue
    }
    if (inGroup === undefined) return // an option before any [group]: so does it
    if (!inGroup) continue
    const eq = line.indexOf('=')
    if (eq < 0) {
      // libmariadb looks such a key up with its newline, so it matches no option (measured:
      // a bare "ssl-verify-server-cert" changes nothing), except on an unterminated last line
      const unterminated = index === lines.length - 1 && trimEndC(line) === line
      if (unterminated) into.set(optionKey(line), undefined)
    } else into.set(optionKey(trimEndC(line.slice(0, eq))), optionValue(line.slice(eq + 1)))
  }
}

const optionKey = (key: string): string => key.replaceAll('_', '-')

const OPTION_ESCAPES: Record<string, string> = {n: '\n', t: '\t', r: '\r', b: '\b', s: ' ', '"': '"', "'": "'", '\\': '\\'}

/** Trimmed, one pair of quotes dropped, \n \t \r \b \s \" \' \\ decoded (others kept as written). */
function optionValue(raw: string): string {
  let value = trimEndC(trimStartC(raw))
  if (value.startsWith("'") || value.startsWith('"')) {
    value = value.slice(1)
    if (value.endsWith("'") || value.endsWith('"')) value = value.slice(0, -1)
  }
  return value.replace(/\\([\s\S])/g, (all, c: string) => OPTION_ESCAPES[c] ?? all)
}

/** C atoi(): the leading decimal number, 0 when there is none. */
const atoi = (s: string | undefined): number => Number(/^[ \t\n\v\f\r]*([+-]?\d+)/.exec(s ?? '')?.[1] ?? 0)

/** The TLS settings of a connection, the .cf parameters overridden by the option files. */
export interface MysqlTls {
  key?: string
  cert?: string
  ca?: string
  capath?: string
  ciphers?: string
  /** tls_verify_cert / ssl-verify-server-cert: TLS required, chain and server name checked. */
  verify: boolean
  /** tls-version of an option file: "TLSv1.2,TLSv1.3". */
  versions?: string
}

const TLS_FILE_OPTIONS = [['ssl-key', 'key'], ['ssl-cert', 'cert'], ['ssl-ca', 'ca'], ['ssl-capath', 'capath'], ['ssl-cipher', 'ciphers']] as const

/**
 * Whether and how a connection uses TLS (undefined: it does not). Postfix calls
 * mysql_ssl_set() when any tls_* file or tls_ciphers is set, which turns TLS on; so does
 * tls_verify_cert = yes alone, and "no" alone does not (measured). libmariadb reads the
 * option files when it connects, after Postfix's settings, so their ssl-* settings win.
 */
export function mysqlTlsSettings(p: CfParser, file: ClientOptions): MysqlTls | undefined {
  const tls: MysqlTls = {
    key: p.getStr('tls_key_file', undefined),
    cert: p.getStr('tls_cert_file', undefined),
    ca: p.getStr('tls_CAfile', undefined),
    capath: p.getStr('tls_CApath', undefined),
    ciphers: p.getStr('tls_ciphers', undefined),
    verify: p.getBool('tls_verify_cert', false),
  }
  let on = [tls.key, tls.cert, tls.ca, tls.capath, tls.ciphers].some((v) => v !== undefined) || tls.verify
  for (const [option, field] of TLS_FILE_OPTIONS) {
    if (!file.has(option)) continue
    tls[field] = file.get(option)
    on ||= tls[field] !== undefined
  }
  // a boolean option: "ssl-verify-server-cert" without "= 1" is off
  if (file.has('ssl-verify-server-cert')) {
    tls.verify = atoi(file.get('ssl-verify-server-cert')) !== 0
    on ||= tls.verify
  }
  tls.versions = file.get('tls-version')
  return on ? tls : undefined
}

/** OpenSSL's CApath lookup: only files named by subject hash (`openssl rehash`) count. */
async function hashedCertificates(dir: string): Promise<Buffer[]> {
  let names: string[]
  try {
    names = (await fsp.readdir(pathBytes(dir), {encoding: 'latin1'})).filter((n) => /^[0-9a-f]{8}\.\d+$/.test(n)).sort()
  } catch {
    return []
  }
  const certs: Buffer[] = []
  for (const n of names) {
    const cert = await fsp.readFile(pathBytes(`${dir}/${n}`)).catch(() => undefined)
    if (cert) certs.push(cert)
  }
  return certs
}

const TLS_VERSIONS = ['TLSv1', 'TLSv1.1', 'TLSv1.2', 'TLSv1.3'] as const

/**
 * libmariadb's cipher list restricts TLS 1.2 and older only, and a list with TLS_ names
 * sets the TLS 1.3 suites; Node drops TLS 1.3 for a list without TLS_ names, so those get
 * Node's default TLS 1.3 suites added (measured: tls_ciphers = AES128-SHA still gives TLSv1.3).
 */
function nodeCiphers(list: string): string {
  if (list.split(/[:, ]/).some((c) => c.startsWith('TLS_'))) return list
  const tls13 = nodeTls.DEFAULT_CIPHERS.split(':').filter((c) => c.startsWith('TLS_'))
  return [...tls13, list].join(':')
}

/** Handshake failures, and OpenSSL's errors from building the context (bad key, no cipher match). */
function isTlsFailure(err: unknown): boolean {
  const e = err as {code?: unknown; library?: unknown}
  return err instanceof TlsError || e.code === 'HANDSHAKE_SSL_ERROR' || e.library !== undefined
    || (typeof e.code === 'string' && /^ERR_(OSSL|SSL|TLS)_/.test(e.code))
}

/** "error:0A0000B9:SSL routines::no cipher match" → "no cipher match", as libmariadb reports it. */
const openSslReason = (message: string): string => message.replace(/^error:[0-9A-Fa-f]+:[^:]*:[^:]*:/, '')

/** A handshake error as libmariadb words it (so that our warnings read like Postfix's). */
class TlsError extends Error {
  readonly code = 'HANDSHAKE_SSL_ERROR'
}

/**
 * mysql2's `ssl` for these settings. libmariadb verifies the chain whenever a CA file or
 * directory is given, even with tls_verify_cert = no (then only the server name goes
 * unchecked); with tls_verify_cert = yes it also checks the name, against the system CAs
 * when none is given; with neither it encrypts without checking anything. A missing
 * certificate from tls_cert_file/tls_key_file is read from the other file. Files are read
 * when connecting, and an unreadable one fails only a connection that starts TLS (a server
 * without TLS is used in clear text, as by Postfix, unless tls_verify_cert = yes).
 */
async function mysql2Ssl(settings: MysqlTls): Promise<SslOptions> {
  const ssl: SslOptions = {
    rejectUnauthorized: settings.verify || settings.ca !== undefined || settings.capath !== undefined,
    verifyIdentity: settings.verify,
  }
  // without tls_ciphers, OpenSSL's DEFAULT order (Node's own prefers AES128 for TLS 1.2)
  ssl.ciphers = nodeCiphers(settings.ciphers ?? 'DEFAULT')
  if (settings.versions !== undefined) {
    const listed = TLS_VERSIONS.filter((v) => settings.versions!.split(/[, ]+/).includes(v))
    if (listed.length > 0) [ssl.minVersion, ssl.maxVersion] = [listed[0], listed.at(-1)]
  }
  const read = (file: string): Promise<Buffer> => fsp.readFile(pathBytes(file))
  try {
    if (settings.ca !== undefined || settings.capath !== undefined) {
      const ca: Buffer[] = []
      if (settings.ca !== undefined) ca.push(await read(settings.ca))
      if (settings.capath !== undefined) ca.push(...await hashedCertificates(settings.capath))
      ssl.ca = ca
    }
    const certFile = settings.cert ?? settings.key
    const keyFile = settings.key ?? settings.cert
    if (certFile !== undefined) ssl.cert = await read(certFile)
    if (keyFile !== undefined) ssl.key = await read(keyFile)
  } catch (err) {
    // mysql2 reads `ca` only when the server has agreed to TLS
    const failure = new TlsError(strerror(err))
    Object.defineProperty(ssl, 'ca', {enumerable: true, get: () => { throw failure }})
  }
  return ssl
}

const DEFAULT_SOCKET = '/run/mysqld/mysqld.sock'

/** End a connection whose query is in progress: its query fails at once. */
function closeNow(connection: mysql.PoolConnection): void {
  connection.destroy()
  // destroy() only half-closes, and the server reads no FIN before its query ends
  ;(connection.connection as unknown as {stream?: {destroy(): void}}).stream?.destroy()
}

interface CountedPool {
  pool: mysql.Pool
  /** The pool's connections that have logged in and are not closed yet. */
  loggedIn: ReadonlySet<unknown>
}

/**
 * mysql2's pool has no public counts: a connection counts from the pool's 'connection'
 * event (logged in) to the close of its socket (server gone, destroyed or pool ended).
 */
function countLoggedIn(pool: mysql.Pool): ReadonlySet<unknown> {
  const loggedIn = new Set<unknown>()
  pool.on('connection', (connection) => {
    const socket = (connection as unknown as {stream?: NodeJS.EventEmitter & {destroyed?: boolean}}).stream
    if (!socket || socket.destroyed) return
    loggedIn.add(connection)
    socket.once('close', () => loggedIn.delete(connection))
  })
  return loggedIn
}

export function mysqlTypeWith(limits: Partial<SqlPoolLimits> = {}): TableType {
  return {
    type: 'mysql',
    open(name: string, options: OpenOptions): Promise<Table> {
      const lim = sqlPoolLimits(options.config, options.log, limits)
      return openSqlTable('mysql', name, options, {lookupFunction: 'dict_mysql_lookup'}, async (p) => {
        const user = p.getStr('user', '')
        const password = p.getStr('password', '')
        const dbname = p.getStr('dbname', '', 1)
        const optionFile = p.getStr('option_file', undefined)
        const optionGroup = p.getStr('option_group', 'client')
        const requireResultSet = p.getBool('require_result_set', true)
        const fileOptions = await readClientOptions(optionFile, optionGroup)
        const tls = mysqlTlsSettings(p, fileOptions)
        const hostList = p.getStr('hosts', '').split(new RegExp(`[${CHARS_COMMA_SP}]+`)).filter((h) => h.length > 0)
        if (hostList.length === 0) hostList.push('localhost')
        const hosts = hostList.map(parseMysqlHost)
        const filePort = atoi(fileOptions.get('port'))

        const openPool = async (h: MysqlHost, ssl: SslOptions | undefined): Promise<CountedPool> => {
          const pool = mysql.createPool({
            ...(h.unix
              ? {socketPath: h.socketPath ?? fileOptions.get('socket') ?? DEFAULT_SOCKET}
              : {host: h.host, port: h.port ?? (filePort || 3306)}),
            // Postfix passes its (possibly empty) password, never NULL: an option file's
            // password is not used, its user is when the .cf has none (measured).
            user: user || fileOptions.get('user') || undefined,
            password: password || undefined,
            database: dbname,
            ssl,
            connectionLimit: lim.maxConnections,
            maxIdle: lim.maxConnections,
            idleTimeout: lim.idleIntervalMs,
            connectTimeout: lim.connectTimeoutMs,
            charset: 'UTF8MB4_GENERAL_CI',
            flags: ['MULTI_RESULTS'],
            rowsAsArray: true,
            dateStrings: true,
            supportBigNumbers: true,
            bigNumberStrings: true,
            typeCast: (field, next) => {
              const buf = field.buffer()
              void next
              return buf === null ? null : buf
            },
          })
          const loggedIn = countLoggedIn(pool)
          return {pool: await checkedPool(pool, (p) => p.getConnection()), loggedIn}
        }

        const connect = async (h: MysqlHost): Promise<HostConnection> => {
          let counted: CountedPool
          if (!tls) counted = await openPool(h, undefined)
          else {
            try {
              counted = await openPool(h, await mysql2Ssl(tls))
            } catch (err) {
              const code = (err as {code?: string}).code
              // libmariadb talks clear text to a server without TLS unless it must verify
              if (code === 'HANDSHAKE_NO_SSL_SUPPORT' && !tls.verify) counted = await openPool(h, undefined)
              else if (code === 'HANDSHAKE_NO_SSL_SUPPORT') throw new TlsError('SSL is required, but the server does not support it')
              else if (isTlsFailure(err)) throw new TlsError(openSslReason((err as Error).message))
              else throw err
            }
          }
          const {pool, loggedIn} = counted
          // pool.query() in two steps, so that destroy() can end the connections in use
          const inUse = new Set<mysql.PoolConnection>()
          let waiting = 0
          return {
            query: async (sql: string, timeoutMs: number): Promise<readonly SqlRow[]> => {
              let result: unknown
              let connection: mysql.PoolConnection | undefined
              // Our own time limit: mysql2's leaves its timer running when the connection dies.
              let timedOut = false
              let timer: NodeJS.Timeout | undefined
              try {
                waiting++
                try {
                  connection = await pool.getConnection()
                } finally {
                  waiting--
                }
                inUse.add(connection)
                const running = connection
                timer = setTimeout(() => { timedOut = true; closeNow(running) }, timeoutMs)
                timer.unref()
                ;[result] = await connection.query({sql: utf8Text.fromBinary(sql)})
              } catch (err) {
                if (timedOut) throw new TableError('retry', `mysql:${name}: query time limit exceeded`)
                throw new Error(`mysql:${name}: query failed: ${(err as Error)?.message ?? String(err)}`)
              } finally {
                clearTimeout(timer)
                if (connection && inUse.delete(connection)) connection.release()
              }
              return rowsOf(result, requireResultSet, name)
            },
            end: () => pool.end(),
            destroy: () => {
              for (const connection of inUse) closeNow(connection)
              inUse.clear()
              return pool.end()
            },
            stats: () => {
              // mysql2 opens a connection for a request when none is free and the limit
              // allows; the other requests wait for a connection to be released
              const opening = Math.min(waiting, Math.max(0, lim.maxConnections - loggedIn.size))
              return {connections: loggedIn.size + opening, busy: inUse.size, queued: waiting - opening}
            },
          }
        }
        const describe = (err: unknown): string =>
          err instanceof TlsError ? `TLS/SSL error: ${err.message}` : (err as Error)?.message ?? String(err)
        const pool = new HostPool(hosts, connect,
          (h, err) => `connect to mysql server ${h.spec}: ${describe(err)}`, options.log, lim)
        return {quote: mysqlQuote, run: (sql) => pool.query(sql), close: () => pool.close(), poolStats: () => pool.poolStats(), lookupTimeoutMs: lim.lookupTimeoutMs}
      })
    },
  }
}

/** The result sets of one query: the first that returns data; more than one is an error. */
function rowsOf(result: unknown, requireResultSet: boolean, name: string): SqlRow[] {
  const isRowSet = (r: unknown): r is unknown[][] => Array.isArray(r) && r.every((row) => Array.isArray(row))
  let sets: unknown[][][]
  if (isRowSet(result)) sets = [result]
  else if (Array.isArray(result)) sets = result.filter(isRowSet) // CALL: row sets plus a status
  else sets = []
  if (Array.isArray(result) && !isRowSet(result) && sets.length > 1)
    throw new Error(`mysql:${name}: query failed: multiple result sets returning data are not supported`)
  if (sets.length === 0) {
    if (requireResultSet) throw new Error(`mysql:${name}: query failed: query returned no result set(require_result_set = yes)`)
    return []
  }
  return sets[0].map((row) => row.map((v) => (v === null || v === undefined ? null : Buffer.isBuffer(v) ? v.toString('latin1') : utf8Text.toBinary(String(v)))))
}

export const mysqlType: TableType = mysqlTypeWith()
