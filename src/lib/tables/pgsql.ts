// pgsql:/path.cf — PostgreSQL tables (Postfix dict_pgsql.c; pgsql_table(5)), read-only.
//
// `hosts`: `unix:/socket/dir`, `/socket/dir`, `inet:host[:port]`, `host[:port]`,
// `postgresql://...` connection URIs; default `localhost` (TCP, as libpq does for a host
// name). Besides `query`, the legacy form and `select_function` (SELECT fn('%s')) work.
//
// Encoding: Postfix 3.7 sets the client encoding to LATIN1, so every key byte is one
// character to the server and every result character must fit in one byte (otherwise the
// server reports an error and the lookup is a RETRY). node-postgres always talks UTF8, so
// we send each byte of the key as the code point of the same value and accept results
// only when every code point is below 256: the same characters reach the server and the
// same bytes come back. Quoting is PQescapeStringConn() with standard_conforming_strings
// on (quotes doubled).

import pg, {type QueryResult} from 'pg'
import {OpenOptions, Table, TableError, TableType} from './table.js'
import {buildLegacyQuery} from './sql/template.js'
import {openSqlTable} from './sql/sql-table.js'
import {checkedPool, DEFAULT_SQL_POOL_LIMITS, HostConnection, HostPool, HostSpec, SqlPoolLimits, SqlRow} from './sql/host-pool.js'
import {CHARS_COMMA_SP} from '../util/postfix-strings.js'

export const pgsqlQuote = (raw: string): string => raw.replaceAll("'", "''")

interface PgsqlHost extends HostSpec {
  host?: string
  port?: number
  connectionString?: string
}

/** host_init() of dict_pgsql.c. */
export function parsePgsqlHost(spec: string): PgsqlHost {
  if (spec.startsWith('postgresql:')) return {spec, unix: false, connectionString: spec}
  let d = spec
  if (d.startsWith('unix:') || d.startsWith('inet:')) d = d.slice(5)
  if (d.length > 0 && !d.startsWith('/')) {
    const colon = d.lastIndexOf(':')
    let port: number | undefined
    if (colon >= 0) {
      port = Number(d.slice(colon + 1)) || undefined
      d = d.slice(0, colon)
    }
    return {spec, unix: false, host: d, port}
  }
  return {spec, unix: true, host: d || undefined}
}

const identity = (v: string): string => v

function checkLatin1(text: string, name: string): string {
  for (let i = 0; i < text.length; i++) {
    if (text.charCodeAt(i) > 0xff)
      throw new Error(`pgsql:${name}: query failed: character with value U+${text.codePointAt(i)!.toString(16).toUpperCase().padStart(4, '0')} has no equivalent in encoding "LATIN1"`)
  }
  return text
}

export function pgsqlTypeWith(limits: Partial<SqlPoolLimits> = {}): TableType {
  const lim: SqlPoolLimits = {...DEFAULT_SQL_POOL_LIMITS, ...limits}
  return {
    type: 'pgsql',
    open(name: string, options: OpenOptions): Promise<Table> {
      const legacy = (p: Parameters<typeof buildLegacyQuery>[0]): string => {
        const fn = p.getStr('select_function', undefined)
        return fn !== undefined ? `SELECT ${fn}('%s')` : buildLegacyQuery(p)
      }
      return openSqlTable('pgsql', name, options, {lookupFunction: 'dict_pgsql_lookup'}, (p) => {
        const user = p.getStr('user', '')
        const password = p.getStr('password', '')
        const dbname = p.getStr('dbname', '', 1)
        const hostList = p.getStr('hosts', '').split(new RegExp(`[${CHARS_COMMA_SP}]+`)).filter((h) => h.length > 0)
        if (hostList.length === 0) hostList.push('localhost')
        const hosts = hostList.map(parsePgsqlHost)

        const connect = async (h: PgsqlHost): Promise<HostConnection> => {
          const pool = new pg.Pool({
            ...(h.connectionString
              ? {connectionString: h.connectionString}
              : {host: h.host, port: h.port, user: user || undefined, password, database: dbname}),
            max: lim.maxConnections,
            idleTimeoutMillis: lim.idleIntervalMs,
            connectionTimeoutMillis: lim.connectTimeoutMs,
            allowExitOnIdle: true,
            types: {getTypeParser: () => identity},
          })
          // An idle client whose server went away: the pool drops it; the next query reconnects.
          pool.on('error', () => {})
          await checkedPool(pool, (p) => p.connect())
          return {
            query: async (sql: string, timeoutMs: number): Promise<readonly SqlRow[]> => {
              let result: QueryResult
              try {
                result = await pool.query({text: sql, rowMode: 'array', query_timeout: timeoutMs})
              } catch (err) {
                const message = (err as Error)?.message ?? String(err)
                if (/Query read timeout/i.test(message)) throw new TableError('retry', `pgsql:${name}: query time limit exceeded`)
                throw new Error(`pgsql query failed: fatal error from host ${h.spec}: ERROR:  ${message}`)
              }
              const rows = Array.isArray(result.rows) ? result.rows : []
              return rows.map((row) => row.map((v) => (v === null || v === undefined ? null : checkLatin1(String(v), name))))
            },
            end: () => pool.end(),
          }
        }
        const pool = new HostPool(hosts, connect,
          (h, err) => `connect to pgsql server ${h.spec}: ${(err as Error)?.message ?? String(err)}`, options.log, lim)
        return {quote: pgsqlQuote, run: (sql) => pool.query(sql), close: () => pool.close(), lookupTimeoutMs: lim.lookupTimeoutMs}
      }, legacy)
    },
  }
}

export const pgsqlType: TableType = pgsqlTypeWith()
