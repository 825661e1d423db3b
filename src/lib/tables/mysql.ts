// mysql:/path.cf — MySQL/MariaDB tables (Postfix dict_mysql.c; mysql_table(5)), read-only.
//
// `hosts` lists servers as `unix:/path`, `inet:host[:port]`, `host[:port]` or `localhost`
// (the default; the client library's UNIX socket). Postfix's failover and idle rules and
// our connection bound are in sql/host-pool.ts. Values are escaped as
// mysql_real_escape_string() does; every column of every row is expanded with
// result_format. Like Postfix's client library we talk utf8mb4 to the server.
//
// option_file/option_group are parsed; of an option file we honour the [client] style
// settings user, password, host, port, socket and database of the named group (defaults
// "client") as defaults under the .cf values. TLS parameters (tls_*) are not supported yet:
// a table that sets them fails to open rather than connect in clear text.

import * as fs from 'node:fs'
import * as mysql from 'mysql2/promise'
import {OpenOptions, Table, TableError, TableType} from './table.js'
import {openSqlTable, utf8Text} from './sql/sql-table.js'
import {checkedPool, DEFAULT_SQL_POOL_LIMITS, HostConnection, HostPool, HostSpec, SqlPoolLimits, SqlRow} from './sql/host-pool.js'
import {CHARS_COMMA_SP} from '../util/postfix-strings.js'

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

/** The [group] section of a my.cnf-style option file (`key = value`, `key`, # and ; comments). */
function readOptionFile(path: string, group: string): Record<string, string> {
  let text: string
  try {
    text = fs.readFileSync(path, 'utf8')
  } catch {
    return {}
  }
  const out: Record<string, string> = {}
  let current = ''
  for (const raw of text.split('\n')) {
    const line = raw.trim()
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue
    const section = /^\[(.*)\]$/.exec(line)
    if (section) {
      current = section[1].trim()
      continue
    }
    if (current !== group) continue
    const eq = line.indexOf('=')
    const k = (eq < 0 ? line : line.slice(0, eq)).trim().replace(/-/g, '_')
    let v = eq < 0 ? '' : line.slice(eq + 1).trim()
    if (/^(['"]).*\1$/.test(v)) v = v.slice(1, -1)
    out[k] = v
  }
  return out
}

const DEFAULT_SOCKET = '/run/mysqld/mysqld.sock'

export function mysqlTypeWith(limits: Partial<SqlPoolLimits> = {}): TableType {
  const lim: SqlPoolLimits = {...DEFAULT_SQL_POOL_LIMITS, ...limits}
  return {
    type: 'mysql',
    open(name: string, options: OpenOptions): Promise<Table> {
      return openSqlTable('mysql', name, options, {lookupFunction: 'dict_mysql_lookup'}, (p) => {
        const user = p.getStr('user', '')
        const password = p.getStr('password', '')
        const dbname = p.getStr('dbname', '', 1)
        const optionFile = p.getStr('option_file', undefined)
        const optionGroup = p.getStr('option_group', 'client')
        for (const tls of ['tls_key_file', 'tls_cert_file', 'tls_CAfile', 'tls_CApath', 'tls_ciphers']) {
          if (p.getStr(tls, undefined) !== undefined)
            throw new TableError('config', `mysql:${name}: ${tls} is not supported by this implementation`)
        }
        p.getBool('tls_verify_cert', undefined)
        const requireResultSet = p.getBool('require_result_set', true)
        const fileOptions = optionFile ? readOptionFile(optionFile, optionGroup || 'client') : {}
        const hostList = p.getStr('hosts', '').split(new RegExp(`[${CHARS_COMMA_SP}]+`)).filter((h) => h.length > 0)
        if (hostList.length === 0) hostList.push('localhost')
        const hosts = hostList.map(parseMysqlHost)

        const connect = async (h: MysqlHost): Promise<HostConnection> => {
          const pool = mysql.createPool({
            ...(h.unix
              ? {socketPath: h.socketPath ?? fileOptions.socket ?? DEFAULT_SOCKET}
              : {host: h.host, port: h.port ?? (Number(fileOptions.port) || 3306)}),
            user: user || fileOptions.user || undefined,
            password: password || fileOptions.password || undefined,
            database: dbname,
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
          await checkedPool(pool, (p) => p.getConnection())
          return {
            query: async (sql: string, timeoutMs: number): Promise<readonly SqlRow[]> => {
              let result: unknown
              try {
                ;[result] = await pool.query({sql: utf8Text.fromBinary(sql), timeout: timeoutMs})
              } catch (err) {
                const e = err as {code?: string; message?: string}
                if (e.code === 'PROTOCOL_SEQUENCE_TIMEOUT')
                  throw new TableError('retry', `mysql:${name}: query time limit exceeded`)
                throw new Error(`mysql:${name}: query failed: ${e.message ?? String(err)}`)
              }
              return rowsOf(result, requireResultSet, name)
            },
            end: () => pool.end(),
          }
        }
        const pool = new HostPool(hosts, connect,
          (h, err) => `connect to mysql server ${h.spec}: ${(err as Error)?.message ?? String(err)}`, options.log, lim)
        return {quote: mysqlQuote, run: (sql) => pool.query(sql), close: () => pool.close(), lookupTimeoutMs: lim.lookupTimeoutMs}
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
