// One connection to an LDAP server for the ldap table (Postfix dict_ldap.c on OpenLDAP's
// libldap), on top of ldapts: we open the socket ourselves (ldap://, ldaps://, ldapi://,
// the servers of server_host tried in order, as libldap does), then StartTLS and a simple
// bind as configured. Failures carry libldap's result codes and ldap_err2string() texts,
// because Postfix puts those in its warnings.
//
// The bind password is only ever handed to ldapts; no message here contains it.

import {promises as fsp} from 'node:fs'
import * as net from 'node:net'
import * as path from 'node:path'
import * as tls from 'node:tls'
import {BindRequest, Client, FilterParser, ResultCodeError, SearchRequest as LdapSearchRequest} from 'ldapts'
import type {Filter} from 'ldapts'
import type {PoolStats} from './table.js'

export const LDAP_SUCCESS = 0
export const LDAP_SIZELIMIT_EXCEEDED = 4
export const LDAP_NO_SUCH_OBJECT = 32
export const LDAP_SERVER_DOWN = -1
export const LDAP_DECODING_ERROR = -4
export const LDAP_TIMEOUT = -5
export const LDAP_FILTER_ERROR = -7
export const LDAP_PARAM_ERROR = -9
export const LDAP_CONNECT_ERROR = -11

/** OpenLDAP 2.5 ldap_err2string(). */
const ERROR_TEXT: Record<number, string> = {
  0: 'Success', 1: 'Operations error', 2: 'Protocol error', 3: 'Time limit exceeded', 4: 'Size limit exceeded',
  5: 'Compare False', 6: 'Compare True', 7: 'Authentication method not supported', 8: 'Strong(er) authentication required',
  10: 'Referral', 11: 'Administrative limit exceeded', 12: 'Critical extension is unavailable', 13: 'Confidentiality required',
  14: 'SASL bind in progress', 16: 'No such attribute', 17: 'Undefined attribute type', 18: 'Inappropriate matching',
  19: 'Constraint violation', 20: 'Type or value exists', 21: 'Invalid syntax', 32: 'No such object', 33: 'Alias problem',
  34: 'Invalid DN syntax', 35: 'Entry is a leaf', 36: 'Alias dereferencing problem', 48: 'Inappropriate authentication',
  49: 'Invalid credentials', 50: 'Insufficient access', 51: 'Server is busy', 52: 'Server is unavailable',
  53: 'Server is unwilling to perform', 54: 'Loop detected', 64: 'Naming violation', 65: 'Object class violation',
  66: 'Operation not allowed on non-leaf', 67: 'Operation not allowed on RDN', 68: 'Already exists',
  69: 'Cannot modify object class', 71: 'Operation affects multiple DSAs', 80: 'Other (e.g., implementation specific) error',
  [-1]: "Can't contact LDAP server", [-2]: 'Local error', [-3]: 'Encoding error', [-4]: 'Decoding error', [-5]: 'Timed out',
  [-6]: 'Unknown authentication method', [-7]: 'Bad search filter', [-8]: 'User cancelled operation',
  [-9]: 'Bad parameter to an ldap routine', [-10]: 'Out of memory', [-11]: 'Connect error', [-12]: 'Not Supported',
  [-13]: 'Control not found', [-14]: 'No results returned', [-15]: 'More results to return', [-16]: 'Client Loop',
  [-17]: 'Referral Limit Exceeded',
}

export function ldapErr2string(code: number): string {
  return ERROR_TEXT[code] ?? 'Unknown error'
}

/** A failed LDAP operation: libldap's result code (negative: client-side). */
export class LdapError extends Error {
  constructor(readonly code: number, readonly detail?: string) {
    super(ldapErr2string(code))
    this.name = 'LdapError'
  }
}

/** What ldapts threw, as the result code libldap would have reported. */
export function asLdapError(err: unknown): LdapError {
  if (err instanceof LdapError) return err
  if (err instanceof ResultCodeError) return new LdapError(err.code, err.message)
  const message = err instanceof Error ? err.message : String(err)
  if (/timed out|timeout/i.test(message)) return new LdapError(LDAP_TIMEOUT, message)
  return new LdapError(LDAP_SERVER_DOWN, message)
}

// ------------------------------------------------------------------------------ URLs

export type LdapScope = 'base' | 'one' | 'sub' | 'children'

export interface LdapServer {
  /** As it appears in Postfix's server list (messages). */
  readonly url: string
  readonly scheme: 'ldap' | 'ldaps' | 'ldapi'
  readonly host: string
  readonly port: number
  /** ldapi: the socket path. */
  readonly socketPath?: string
}

export interface LdapUrl {
  server: LdapServer
  dn: string
  attributes: string[]
  scope: LdapScope
  filter?: string
}

/** A malformed LDAP URL, with libldap's LDAP_URL_ERR_* code. */
export class LdapUrlError extends Error {
  constructor(readonly code: number) {
    super(`LDAP URL error ${code}`)
    this.name = 'LdapUrlError'
  }
}
const URL_ERR_BADSCHEME = 3
const URL_ERR_BADENCLOSURE = 4
const URL_ERR_BADURL = 5
const URL_ERR_BADHOST = 6
const URL_ERR_BADATTRS = 7
const URL_ERR_BADSCOPE = 8
const URL_ERR_BADFILTER = 9
const URL_ERR_BADEXTS = 10

/** The debian build's LDAPI_SOCK. */
const DEFAULT_LDAPI_SOCKET = '/var/run/slapd/ldapi'

function stripUrlPrefix(s: string): string {
  let u = s
  if (u.startsWith('<')) u = u.slice(1)
  if (/^URL:/i.test(u)) u = u.slice(4)
  return u
}

/** libldap ldap_is_ldap_url(). */
export function isLdapUrl(s: string): boolean {
  return /^(ldap|ldaps|ldapi|cldap):\/\//i.test(stripUrlPrefix(s))
}

function percentDecode(s: string, code: number): string {
  try {
    return decodeURIComponent(s)
  } catch {
    throw new LdapUrlError(code)
  }
}

/**
 * libldap ldap_url_parse() for the parts Postfix uses: the server, and for DN-or-URL
 * attribute values the dn, attributes, scope (default base) and filter. Throws on a
 * malformed URL.
 */
export function parseLdapUrl(raw: string): LdapUrl {
  let u = stripUrlPrefix(raw)
  if (raw.startsWith('<')) {
    if (!u.endsWith('>')) throw new LdapUrlError(URL_ERR_BADENCLOSURE)
    u = u.slice(0, -1)
  }
  const m = /^(ldap|ldaps|ldapi|cldap):\/\/([^/?]*)(?:\/([^?]*)(?:\?([^?]*)(?:\?([^?]*)(?:\?([^?]*)(?:\?([^?]*))?)?)?)?)?$/i.exec(u)
  if (!m) throw new LdapUrlError(isLdapUrl(u) ? URL_ERR_BADURL : URL_ERR_BADSCHEME)
  const scheme = m[1].toLowerCase()
  if (scheme === 'cldap') throw new LdapUrlError(URL_ERR_BADSCHEME)
  const hostPart = m[2]
  let host = 'localhost'
  let port = scheme === 'ldaps' ? 636 : 389
  let socketPath: string | undefined
  if (scheme === 'ldapi') {
    socketPath = hostPart ? percentDecode(hostPart, URL_ERR_BADHOST) : DEFAULT_LDAPI_SOCKET
  } else if (hostPart) {
    const hp = /^(\[[^\]]*\]|[^:]*)(?::(.*))?$/.exec(hostPart)
    if (!hp) throw new LdapUrlError(URL_ERR_BADHOST)
    if (hp[2] !== undefined && !/^\d*$/.test(hp[2])) throw new LdapUrlError(URL_ERR_BADURL)
    if (hp[1]) host = percentDecode(hp[1].replace(/^\[|\]$/g, ''), URL_ERR_BADHOST)
    if (hp[2]) port = Number(hp[2])
  }
  const scopeText = (m[5] ?? '').toLowerCase()
  const scopes: Record<string, LdapScope> = {'': 'base', base: 'base', one: 'one', onelevel: 'one', sub: 'sub', subtree: 'sub',
    children: 'children', subord: 'children', subordinate: 'children', subordinates: 'children'}
  const scope = scopes[scopeText]
  if (!scope) throw new LdapUrlError(URL_ERR_BADSCOPE)
  // libldap knows no extension, so a critical one makes the URL unusable.
  if (m[7] && m[7].split(',').some((e) => e.startsWith('!'))) throw new LdapUrlError(URL_ERR_BADEXTS)
  const attrs = m[4] ? m[4].split(',').map((a) => percentDecode(a, URL_ERR_BADATTRS)).filter((a) => a.length > 0) : []
  return {
    server: {url: u, scheme: scheme as LdapServer['scheme'], host, port, socketPath},
    dn: m[3] ? percentDecode(m[3], URL_ERR_BADURL) : '',
    attributes: attrs,
    scope,
    filter: m[6] ? percentDecode(m[6], URL_ERR_BADFILTER) : undefined,
  }
}

// ------------------------------------------------------------------------------ TLS

export interface LdapTlsSettings {
  requireCert: boolean
  caCertFile: string
  caCertDir: string
  cert: string
  key: string
  cipherSuite: string
}

/** The Node TLS options of dict_ldap_set_tls_options(); unreadable files are an error. */
/** Read when connecting (the server loop must not wait on the disk meanwhile). */
export async function tlsOptionsFor(settings: LdapTlsSettings, host: string): Promise<tls.ConnectionOptions> {
  const read = (file: string): Promise<Buffer> => fsp.readFile(file)
  const ca: Buffer[] = []
  if (settings.caCertFile) ca.push(await read(settings.caCertFile))
  else if (settings.caCertDir) {
    for (const entry of await fsp.readdir(settings.caCertDir, {withFileTypes: true})) {
      const full = path.join(settings.caCertDir, entry.name)
      if (!(entry.isFile() || (entry.isSymbolicLink() && (await fsp.stat(full)).isFile()))) continue
      const pem = await read(full)
      if (pem.includes('-----BEGIN CERTIFICATE-----')) ca.push(pem)
    }
  }
  return {
    ...(ca.length > 0 ? {ca} : {}),
    ...(settings.cert ? {cert: await read(settings.cert)} : {}),
    ...(settings.key ? {key: await read(settings.key)} : {}),
    ...(settings.cipherSuite ? {ciphers: settings.cipherSuite} : {}),
    // tls_require_cert = no: OpenLDAP's TLS_NEVER checks neither the chain nor the name.
    rejectUnauthorized: settings.requireCert,
    ...(settings.requireCert ? {} : {checkServerIdentity: () => undefined}),
    // With StartTLS the socket exists already: `host` is then what the certificate is checked against.
    host,
    ...(net.isIP(host) ? {} : {servername: host}),
  }
}

// ------------------------------------------------------------------------------ connection

export interface ConnectionSettings {
  servers: readonly LdapServer[]
  /** Per-operation (and connect) limit, Postfix `timeout`; 0: none. */
  timeoutMs: number
  startTls: boolean
  tls?: LdapTlsSettings
  bind: boolean
  bindDn: string
  bindPw: string
  version: 2 | 3
  dereference: 0 | 1 | 2 | 3
}

/** Where connecting failed: dict_ldap_connect() words each differently. */
export class LdapConnectError extends Error {
  constructor(readonly stage: 'socket' | 'starttls' | 'bind', readonly ldap: LdapError) {
    super(ldap.message)
    this.name = 'LdapConnectError'
  }
}

const DEREF: readonly ('never' | 'search' | 'find' | 'always')[] = ['never', 'search', 'find', 'always']

export interface SearchRequest {
  base: string
  scope: LdapScope
  filter: string
  attributes: readonly string[]
  /** 0: no limit. More entries than this is LDAP_SIZELIMIT_EXCEEDED, as the server says it. */
  sizeLimit: number
}

/** One entry: attribute descriptions in the server's order, values as byte strings. */
export interface LdapEntry {
  dn: string
  attributes: [string, string[]][]
}

async function openSocket(server: LdapServer, settings: ConnectionSettings): Promise<net.Socket> {
  const tlsOptions = server.scheme === 'ldaps' ? await tlsOptionsFor(settings.tls!, server.host) : undefined
  return new Promise((resolve, reject) => {
    let socket: net.Socket
    const ready = server.scheme === 'ldaps' ? 'secureConnect' : 'connect'
    if (server.scheme === 'ldapi') socket = net.connect(server.socketPath!)
    else if (server.scheme === 'ldaps') {
      socket = tls.connect({host: server.host, port: server.port, ...tlsOptions})
    } else socket = net.connect({host: server.host, port: server.port})
    const timer = settings.timeoutMs > 0
      ? setTimeout(() => fail(new Error('connect timed out')), settings.timeoutMs)
      : undefined
    const fail = (err: Error): void => {
      clearTimeout(timer)
      socket.destroy()
      reject(err)
    }
    socket.once('error', fail)
    socket.once(ready, () => {
      clearTimeout(timer)
      socket.removeListener('error', fail)
      resolve(socket)
    })
  })
}

export class LdapConnection {
  /** Searches waiting for their answer: other tables' lookups share the connection. */
  private inFlight = 0
  private closing = false

  private constructor(private readonly client: Client, readonly server: LdapServer, private readonly settings: ConnectionSettings,
    private readonly socket: net.Socket) {}

  /** Connect to the first server that answers, then StartTLS and bind as configured. */
  static async open(settings: ConnectionSettings): Promise<LdapConnection> {
    let socket: net.Socket | undefined
    let server: LdapServer | undefined
    for (const s of settings.servers) {
      try {
        socket = await openSocket(s, settings)
        server = s
        break
      } catch {
        // libldap moves on to the next server of the list.
      }
    }
    if (!socket || !server) throw new LdapConnectError('socket', new LdapError(LDAP_SERVER_DOWN))
    let handedOver = false
    const client = new Client({
      url: 'ldap://127.0.0.1',
      timeout: settings.timeoutMs,
      createConnection: (() => {
        // ldapts reconnects on its own after a close; we want the table to decide that.
        if (handedOver) {
          const dead = new net.Socket()
          setImmediate(() => dead.destroy(new Error('connection lost')))
          return dead
        }
        handedOver = true
        return socket
      }) as unknown as typeof net.connect,
    })
    // ldapts 8.2 leaves derefAliases out of the requests it builds, and asks the server for
    // a 10 s time limit; libldap sends `dereference` and `timeout`.
    const internals = client as unknown as {_send(message: unknown): Promise<unknown>}
    const send = internals._send.bind(client)
    internals._send = (message: unknown) => {
      if (message instanceof LdapSearchRequest) {
        message.derefAliases = DEREF[settings.dereference]
        message.timeLimit = Math.floor(settings.timeoutMs / 1000)
      }
      return send(message)
    }
    // The socket is already open: ldapts takes it over at once.
    await (client as unknown as {_connect(): Promise<void>})._connect()
    const connection = new LdapConnection(client, server, settings, socket)
    if (settings.startTls) {
      try {
        await client.startTLS(await tlsOptionsFor(settings.tls!, server.host))
      } catch (err) {
        connection.close()
        const e = asLdapError(err)
        throw new LdapConnectError('starttls', e.code === LDAP_SERVER_DOWN || e.code === LDAP_TIMEOUT ? new LdapError(LDAP_CONNECT_ERROR) : e)
      }
    }
    if (settings.bind) {
      try {
        await connection.simpleBind()
      } catch (err) {
        connection.close()
        throw new LdapConnectError('bind', asLdapError(err))
      }
    }
    return connection
  }

  private async simpleBind(): Promise<void> {
    const {bindDn, bindPw, version, timeoutMs} = this.settings
    // timeout = 0: Postfix waits zero seconds for the answer, which never has come by then.
    if (timeoutMs === 0) throw new LdapError(LDAP_TIMEOUT)
    if (version === 3) return this.client.bind(bindDn, bindPw)
    // ldapts always says version 3; Postfix's default is an LDAPv2 bind, which a server may refuse.
    const internals = this.client as unknown as {_nextMessageId(): number; _sendBind(req: BindRequest): Promise<void>}
    const request = new BindRequest({messageId: internals._nextMessageId(), dn: bindDn, password: bindPw})
    ;(request as unknown as {version: number}).version = 2
    await internals._sendBind(request)
  }

  /** Searches sent and not answered yet, of every table that shares the connection. */
  get searching(): number {
    return this.inFlight
  }

  get alive(): boolean {
    return !this.closing && this.client.isConnected
  }

  async search(request: SearchRequest): Promise<LdapEntry[]> {
    let filter: Filter
    try {
      filter = FilterParser.parseString(request.filter)
    } catch {
      throw new LdapError(LDAP_FILTER_ERROR)
    }
    // timeout = 0 makes Postfix hand libldap a zero time limit, which it refuses.
    if (this.settings.timeoutMs === 0) throw new LdapError(LDAP_PARAM_ERROR)
    if (!this.client.isConnected) throw new LdapError(LDAP_SERVER_DOWN)
    let result
    this.inFlight++
    try {
      result = await this.client.search(request.base, {
        scope: request.scope,
        filter,
        attributes: [...request.attributes],
        explicitBufferAttributes: [...request.attributes],
        // One more than the limit: "more than the limit" is what the server reports as exceeded.
        sizeLimit: request.sizeLimit > 0 ? request.sizeLimit + 1 : 0,
      })
    } catch (err) {
      throw asLdapError(err)
    } finally {
      if (--this.inFlight === 0 && this.closing) this.unbind()
    }
    if (request.sizeLimit > 0 && result.searchEntries.length > request.sizeLimit) throw new LdapError(LDAP_SIZELIMIT_EXCEEDED)
    return result.searchEntries.map((entry) => {
      const attributes: [string, string[]][] = []
      for (const [name, raw] of Object.entries(entry)) {
        if (name === 'dn') continue
        const values = (Array.isArray(raw) ? raw : [raw]).map((v) =>
          Buffer.isBuffer(v) ? v.toString('latin1') : Buffer.from(String(v), 'utf8').toString('latin1'))
        attributes.push([name, values])
      }
      return {dn: String(entry.dn), attributes}
    })
  }

  /**
   * Postfix drops a connection after a search error and reconnects for the next lookup; its
   * lookups take turns, ours share the connection, so the searches still waiting on it
   * (another table's, or another key's) get their answers before it goes.
   */
  close(): void {
    this.closing = true
    if (this.inFlight === 0) this.unbind()
  }

  /** No table uses the connection any more: searches still waiting fail at once. */
  closeNow(): void {
    this.closing = true
    if (this.inFlight === 0) this.unbind()
    else this.socket.destroy()
  }

  private unbind(): void {
    void this.client.unbind().catch(() => {})
  }
}

/**
 * The connection of all tables with identical connection settings, as Postfix's
 * dict_ldap_conn_find() shares one: opened when first needed (once, for every lookup that
 * waits), dropped after a failure, closed when the last table lets go.
 */
export class SharedLdapConnection {
  private static readonly byKey = new Map<string, SharedLdapConnection>()
  private connection?: LdapConnection
  private connecting?: Promise<LdapConnection>
  private users = 0
  /** Lookups waiting for the connection being opened. */
  private waiting = 0

  private constructor(private readonly key: string, private readonly settings: ConnectionSettings) {}

  static acquire(settings: ConnectionSettings): SharedLdapConnection {
    const key = JSON.stringify(settings)
    let shared = SharedLdapConnection.byKey.get(key)
    if (!shared) {
      shared = new SharedLdapConnection(key, settings)
      SharedLdapConnection.byKey.set(key, shared)
    }
    shared.users++
    return shared
  }

  /** The open connection; throws LdapConnectError when it cannot be opened. */
  get(): Promise<LdapConnection> {
    if (this.connection?.alive) return Promise.resolve(this.connection)
    if (this.connection) this.drop(this.connection)
    this.connecting ??= LdapConnection.open(this.settings).then((c) => {
      this.connecting = undefined
      if (this.users === 0) {
        c.close()
        throw new LdapConnectError('socket', new LdapError(LDAP_SERVER_DOWN))
      }
      this.connection = c
      return c
    }, (err: unknown) => {
      this.connecting = undefined
      throw err
    })
    this.waiting++
    return this.connecting.finally(() => this.waiting--)
  }

  /** Shared by every table with these connection settings. */
  stats(): PoolStats {
    const open = this.connection?.alive ? 1 : 0
    return {connections: open + (this.connecting ? 1 : 0), busy: this.connection?.searching ?? 0, queued: this.waiting}
  }

  /** Close `connection` so that the next lookup starts afresh (unless another did already). */
  drop(connection: LdapConnection): void {
    if (this.connection === connection) this.connection = undefined
    connection.close()
  }

  release(): void {
    if (--this.users > 0) return
    SharedLdapConnection.byKey.delete(this.key)
    const connection = this.connection
    this.connection = undefined
    connection?.closeNow()
  }
}
