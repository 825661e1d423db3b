// pgsql:/path.cf — PostgreSQL tables (Postfix dict_pgsql.c; pgsql_table(5)), read-only.
//
// `hosts`: `unix:/socket/dir`, `/socket/dir`, `inet:host[:port]`, `host[:port]`,
// `postgresql://...` connection URIs; default `localhost` (TCP, as libpq does for a host
// name). Besides `query`, the legacy form and `select_function` (SELECT fn('%s')) work.
//
// TLS: as libpq does it for Postfix (sslmode, sslrootcert, sslcert, sslkey of a URI, else
// PGSSLMODE & co, else "prefer" and ~/.postgresql/): see pgSslAttempts().
//
// Encoding: Postfix 3.7 sets the client encoding to LATIN1, so every key byte is one
// character to the server and every result character must fit in one byte (otherwise the
// server reports an error and the lookup is a RETRY). node-postgres always talks UTF8, so
// we send each byte of the key as the code point of the same value and accept results
// only when every code point is below 256: the same characters reach the server and the
// same bytes come back. Quoting is PQescapeStringConn() with standard_conforming_strings
// on (quotes doubled).

import * as fsp from 'node:fs/promises'
import pg, {type Pool, type PoolClient, type QueryResult} from 'pg'
import {OpenOptions, Table, TableError, TableType} from './table.js'
import {buildLegacyQuery} from './sql/template.js'
import {openSqlTable} from './sql/sql-table.js'
import {checkedPool, HostConnection, HostPool, HostSpec, SqlPoolLimits, sqlPoolLimits, SqlRow} from './sql/host-pool.js'
import {CHARS_COMMA_SP} from '../util/postfix-strings.js'

declare module 'pg' {
  interface PoolConfig {
    /** false, or tls.connect() options */
    ssl?: false | Record<string, unknown>
  }
}

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

/** libpq's sslmode values (Postfix 3.7 leaves TLS to libpq: `postgresql://...?sslmode=`). */
const SSL_MODES: readonly string[] = ['disable', 'allow', 'prefer', 'require', 'verify-ca', 'verify-full']

/** The TLS parameters libpq takes from a URI, else from PGSSL* variables, else its defaults. */
interface PgTls {
  mode: string
  rootcert?: string
  cert?: string
  key?: string
}

const URI_TLS_PARAMS = ['sslmode', 'sslrootcert', 'sslcert', 'sslkey']
/** node-postgres' own TLS switches: not libpq parameters, so libpq refuses such a URI. */
const NOT_LIBPQ_PARAMS = ['ssl', 'uselibpqcompat']

/**
 * Split a connection URI into what node-postgres gets (without the TLS parameters, which
 * it would read with other meanings: its sslmode=require verifies the server) and libpq's
 * TLS settings.
 */
function pgsqlUriTls(uri: string): {connectionString: string; tls: PgTls; unix: boolean} {
  let url: URL
  try {
    url = new URL(uri)
  } catch {
    return {connectionString: uri, tls: libpqTls({}), unix: false}
  }
  for (const name of NOT_LIBPQ_PARAMS)
    if (url.searchParams.has(name)) throw new Error(`invalid URI query parameter: "${name}"`)
  const params: Record<string, string> = {}
  for (const name of URI_TLS_PARAMS) {
    const value = url.searchParams.get(name)
    if (value !== null) params[name] = value
    url.searchParams.delete(name)
  }
  const host = url.searchParams.get('host') ?? decodeURIComponent(url.hostname)
  return {connectionString: url.toString(), tls: libpqTls(params), unix: host.startsWith('/')}
}

function libpqTls(params: Record<string, string>): PgTls {
  const env = process.env
  const mode = params.sslmode ?? env.PGSSLMODE ?? 'prefer'
  const home = env.HOME ? `${env.HOME}/.postgresql` : undefined
  return {
    mode,
    rootcert: params.sslrootcert ?? env.PGSSLROOTCERT ?? (home && `${home}/root.crt`),
    cert: params.sslcert ?? env.PGSSLCERT ?? (home && `${home}/postgresql.crt`),
    key: params.sslkey ?? env.PGSSLKEY ?? (home && `${home}/postgresql.key`),
  }
}

/** libpq stat()s these files: one it cannot reach (missing, or under a home it may not enter) is not there. */
const readIfExists = (file: string | undefined): Promise<Buffer | undefined> =>
  file === undefined ? Promise.resolve(undefined) : fsp.readFile(file).catch(() => undefined)

/**
 * node-postgres `ssl` settings for each connection attempt, in libpq's order: "prefer" (the
 * default) tries TLS and then clear text, "allow" the reverse, "disable" clear text only,
 * "require" and "verify-*" TLS only. A root certificate file that exists means a verified
 * chain in every mode (libpq loads it whenever it is there); verify-ca needs one and
 * verify-full also checks the server name. The client certificate and key are sent when
 * both exist. UNIX-domain connections never use TLS.
 */
async function pgSslAttempts(tls: PgTls, unix: boolean): Promise<(false | Record<string, unknown>)[]> {
  if (unix || tls.mode === 'disable') return [false]
  if (!SSL_MODES.includes(tls.mode)) throw new Error(`invalid sslmode value: "${tls.mode}"`)
  const ca = await readIfExists(tls.rootcert)
  if (!ca && (tls.mode === 'verify-ca' || tls.mode === 'verify-full'))
    throw new Error(`root certificate file "${tls.rootcert ?? ''}" does not exist`)
  const [cert, key] = await Promise.all([readIfExists(tls.cert), readIfExists(tls.key)])
  const ssl: Record<string, unknown> = {rejectUnauthorized: ca !== undefined}
  if (ca) ssl.ca = ca
  if (cert && key) Object.assign(ssl, {cert, key})
  if (tls.mode !== 'verify-full') ssl.checkServerIdentity = (): undefined => undefined
  switch (tls.mode) {
    case 'allow': return [false, ssl]
    case 'prefer': return [ssl, false]
    default: return [ssl]
  }
}

function checkLatin1(text: string, name: string): string {
  for (let i = 0; i < text.length; i++) {
    if (text.charCodeAt(i) > 0xff)
      throw new Error(`pgsql:${name}: query failed: character with value U+${text.codePointAt(i)!.toString(16).toUpperCase().padStart(4, '0')} has no equivalent in encoding "LATIN1"`)
  }
  return text
}

export function pgsqlTypeWith(limits: Partial<SqlPoolLimits> = {}): TableType {
  return {
    type: 'pgsql',
    open(name: string, options: OpenOptions): Promise<Table> {
      const lim = sqlPoolLimits(options.config, options.log, limits)
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

        const openPool = (h: PgsqlHost, connectionString: string | undefined, ssl: false | Record<string, unknown>): Promise<Pool> => {
          const pool = new pg.Pool({
            ...(connectionString !== undefined
              ? {connectionString}
              : {host: h.host, port: h.port, user: user || undefined, password, database: dbname}),
            ssl,
            max: lim.maxConnections,
            idleTimeoutMillis: lim.idleIntervalMs,
            connectionTimeoutMillis: lim.connectTimeoutMs,
            allowExitOnIdle: true,
            types: {getTypeParser: () => identity},
          })
          // An idle client whose server went away: the pool drops it; the next query reconnects.
          pool.on('error', () => {})
          return checkedPool(pool, (p) => p.connect())
        }

        const connect = async (h: PgsqlHost): Promise<HostConnection> => {
          // Postfix's PQsetdbLogin() and PQconnectdb() both leave TLS to libpq's sslmode
          const uri = h.connectionString !== undefined ? pgsqlUriTls(h.connectionString) : undefined
          const attempts = await pgSslAttempts(uri?.tls ?? libpqTls({}), uri?.unix ?? h.unix)
          let pool: Pool | undefined
          let failure: unknown
          for (const ssl of attempts) {
            try {
              pool = await openPool(h, uri?.connectionString, ssl)
              break
            } catch (err) {
              failure = /does not support SSL/i.test((err as Error)?.message ?? '')
                ? new Error('server does not support SSL, but SSL was required') : err
            }
          }
          if (!pool) throw failure
          // pool.query() in two steps, so that destroy() can end the connections in use
          const inUse = new Set<PoolClient>()
          return {
            query: async (sql: string, timeoutMs: number): Promise<readonly SqlRow[]> => {
              let result: QueryResult
              let client: PoolClient | undefined
              let failure: Error | undefined
              try {
                client = await pool.connect()
                inUse.add(client)
                result = await client.query({text: sql, rowMode: 'array', query_timeout: timeoutMs})
              } catch (err) {
                // as pool.query() does: a client whose query failed is not reused
                failure = err as Error
                const message = (err as Error)?.message ?? String(err)
                if (/Query read timeout/i.test(message)) throw new TableError('retry', `pgsql:${name}: query time limit exceeded`)
                throw new Error(`pgsql query failed: fatal error from host ${h.spec}: ERROR:  ${message}`)
              } finally {
                if (client && inUse.delete(client)) client.release(failure ?? false)
              }
              const rows = Array.isArray(result.rows) ? result.rows : []
              return rows.map((row) => row.map((v) => (v === null || v === undefined ? null : checkLatin1(String(v), name))))
            },
            end: () => pool.end(),
            destroy: () => {
              for (const client of inUse) client.release(new Error('the table is closing'))
              inUse.clear()
              return pool.end()
            },
            // pg's own counts: its clients, connecting ones included, and the requests that
            // wait for a client to be free (not those whose new client is connecting)
            stats: () => ({connections: pool.totalCount, busy: inUse.size, queued: pool.waitingCount}),
          }
        }
        const hostPool = new HostPool(hosts, connect,
          (h, err) => `connect to pgsql server ${h.spec}: ${(err as Error)?.message ?? String(err)}`, options.log, lim)
        return {quote: pgsqlQuote, run: (sql) => hostPool.query(sql), close: () => hostPool.close(), poolStats: () => hostPool.poolStats(), lookupTimeoutMs: lim.lookupTimeoutMs}
      }, legacy)
    },
  }
}

export const pgsqlType: TableType = pgsqlTypeWith()
