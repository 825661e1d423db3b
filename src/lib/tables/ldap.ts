// ldap:/path.cf — LDAP tables (Postfix dict_ldap.c; ldap_table(5)), read-only.
//
// The .cf parameters, %-expansion, `domain` and result_format are the ones the SQL tables
// share (sql/cf-parser.ts, sql/template.ts); keys are escaped as RFC 2253 (search_base)
// and RFC 2254 (query_filter) want. Results are collected as dict_ldap_get_values() does:
// terminal, leaf-only, ordinary and special (DN or LDAP URL valued, searched recursively)
// attributes, every value expanded with result_format and joined with commas. Warnings
// are Postfix's, word for word, because operators grep for them.
//
// Tables with identical connection settings share one connection, as in Postfix, and
// concurrent lookups share it too (LDAP multiplexes them, so no pool of connections is needed;
// identical lookups in flight at once are one lookup: backend-pool.ts). A connection that went away is
// reopened and the search tried once more; any other search error closes it so the next
// lookup starts afresh; connect, bind and search failures are RETRY. Our own addition is
// a time limit per lookup (a recursive lookup runs many searches), past which it is a
// RETRY too.
//
// Not implemented: SASL binds (bind = sasl is refused at open), chase_referrals (parsed;
// referrals are never followed), debuglevel and tls_random_file (parsed, no effect).

import {DICT_FLAG} from '../protocol/constants.js'
import {CHARS_COMMA_SP} from '../util/postfix-strings.js'
import {activateUtf8, isValidUtf8, lowercaseAscii, needUtf8Activation} from './fold.js'
import {OpenOptions, PoolStats, Table, TableError, TableLog, TableType} from './table.js'
import {InFlightLookups} from './backend-pool.js'
import {CfParser} from './sql/cf-parser.js'
import {withTimeLimit, SQL_LOOKUP_TIMEOUT_MS} from './sql/host-pool.js'
import {DomainList, TemplateContext} from './sql/template.js'
import {
  ConnectionSettings, LdapConnectError, LdapConnection, LdapEntry, LdapError, LdapScope, LdapServer, LdapTlsSettings, LdapUrlError, SharedLdapConnection,
  LDAP_DECODING_ERROR, LDAP_NO_SUCH_OBJECT, LDAP_SERVER_DOWN, isLdapUrl, ldapErr2string, parseLdapUrl,
} from './ldap-connection.js'

/** rfc2253_quote(): the key inside a DN (search_base). */
export function rfc2253Quote(raw: string): string {
  return raw.replace(/[ \t"#+,;<>\\]/g, (c) => `\\${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`)
}

/** rfc2254_quote(): the key inside a search filter. */
export function rfc2254Quote(raw: string): string {
  return raw.replace(/[*()\\]/g, (c) => `\\${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`)
}

/** attrdesc_subtype(): 1 when a2 is a1 or a subtype (a1;option), -1 when a1 is a subtype of a2. */
function attrdescSubtype(a1: string, a2: string): number {
  let i = 0
  while (i < a1.length && i < a2.length && a1[i].toLowerCase() === a2[i].toLowerCase()) i++
  if (i === a1.length && (i === a2.length || a2[i] === ';')) return 1
  if (i === a2.length && a1[i] === ';') return -1
  return 0
}

const splitList = (s: string): string[] => s.split(new RegExp(`[${CHARS_COMMA_SP}]+`)).filter((a) => a.length > 0)

/**
 * Upstream Postfix defaults to LDAPv2; Debian's postfix-ldap (what we are compared with,
 * and what most users run) patches that to 3, as does the upstream documentation advice.
 */
const DEFAULT_LDAP_VERSION = 3

interface LdapSettings {
  connection: ConnectionSettings
  /** The server list as Postfix logs it: URLs joined with spaces. */
  serverHost: string
  scope: LdapScope
  searchBase: string
  dynamicBase: boolean
  query: string
  resultFormat: string
  context: TemplateContext
  /** terminal, then leaf-only, then ordinary, then special attributes. */
  attributes: string[]
  numTerminal: number
  numLeaf: number
  numAttributes: number
  recursionLimit: number
  expansionLimit: number
  sizeLimit: number
}

export interface LdapLimits {
  /** How long one lookup (all its searches) may take before it is a RETRY. */
  lookupTimeoutMs: number
}

async function parseSettings(name: string, parser: CfParser, options: OpenOptions): Promise<LdapSettings> {
  const warn = (m: string): void => options.log.warning(m)
  const myname = 'dict_ldap_open'
  const serverHostParam = parser.getStr('server_host', 'localhost', 1)
  const serverPort = parser.getInt('server_port', 389)
  let version = parser.getInt('version', DEFAULT_LDAP_VERSION, 2)
  if (version !== 2 && version !== 3) {
    warn(`${myname}: ${name} Unknown version ${version}, using ${DEFAULT_LDAP_VERSION}.`)
    version = DEFAULT_LDAP_VERSION
  }
  const servers: LdapServer[] = []
  for (const h of splitList(serverHostParam)) {
    if (isLdapUrl(h)) {
      let server: LdapServer
      try {
        server = parseLdapUrl(h).server
      } catch (err) {
        // Postfix names the URL error code with ldap_err2string(), meaningless as that is.
        const code = err instanceof LdapUrlError ? err.code : 5
        options.log.error(`${myname}: error parsing URL ${h}: ${code}: ${ldapErr2string(code)}; skipping`)
        continue
      }
      if (server.scheme !== 'ldap' && version !== 3) {
        warn(`${myname}: URL scheme ${server.scheme} requires protocol version 3`)
        version = 3
      }
      servers.push({...server, url: h})
    } else {
      const colon = h.lastIndexOf(':')
      const url = colon >= 0 ? `ldap://${h}` : `ldap://${h}:${serverPort}`
      servers.push({...parseBareHost(url), url})
    }
  }

  const scopeText = parser.getStr('scope', 'sub', 1)
  const scopes: Record<string, LdapScope> = {one: 'one', base: 'base', sub: 'sub'}
  let scope = scopes[scopeText.toLowerCase()]
  if (!scope) {
    warn(`${myname}: ${name}: Unrecognized value ${scopeText} specified for scope; using sub`)
    scope = 'sub'
  }
  const searchBase = parser.getStr('search_base', '')
  const timeout = parser.getInt('timeout', 10)
  const query = parser.getStr('query_filter', '(mailacceptinggeneralid=%s)')
  const resultFormat = parser.getStr('result_format', undefined) ?? parser.getStr('result_filter', '%s', 1)

  const context = new TemplateContext('ldap', name)
  const dynamicBase = context.parse(searchBase, true)
  if (!context.parse(query, true)) warn(`${myname}: ${name}: Fixed query_filter ${query} is probably useless`)
  context.parse(resultFormat, false)
  const domain = parser.getStr('domain', '')
  if (domain.length > 0) context.domain = await DomainList.create(parser.name, domain, options)

  const attributes = splitList(parser.getStr('terminal_result_attribute', ''))
  const numTerminal = attributes.length
  attributes.push(...splitList(parser.getStr('leaf_result_attribute', '')))
  const numLeaf = attributes.length - numTerminal
  attributes.push(...splitList(parser.getStr('result_attribute', 'maildrop')))
  const numAttributes = attributes.length
  attributes.push(...splitList(parser.getStr('special_result_attribute', '')))

  const bindText = parser.getStr('bind', 'yes', 1)
  const bindModes: Record<string, boolean> = {no: false, none: false, yes: true, simple: true}
  if (bindText.toLowerCase() === 'sasl')
    throw new TableError('config', `${parser.name}: bind = sasl is not supported by this implementation (use bind = yes)`)
  const bind = bindModes[bindText.toLowerCase()]
  if (bind === undefined) throw new TableError('config', `${parser.name}: unsupported parameter value: bind = ${bindText}`)
  const bindDn = parser.getStr('bind_dn', '')
  const bindPw = parser.getStr('bind_pw', '')

  if (parser.getBool('cache', false)) warn(`${myname}: ${name} ignoring cache`)
  if (parser.getInt('cache_expiry', -1) >= 0) warn(`${myname}: ${name} ignoring cache_expiry`)
  if (parser.getInt('cache_size', -1) >= 0) warn(`${myname}: ${name} ignoring cache_size`)
  const recursionLimit = parser.getInt('recursion_limit', 1000, 1)
  const expansionLimit = parser.getInt('expansion_limit', 0)
  const sizeLimit = parser.getInt('size_limit', expansionLimit)
  let dereference = parser.getInt('dereference', 0)
  if (dereference < 0 || dereference > 3) {
    warn(`${myname}: ${name} Unrecognized value ${dereference} specified for dereference; using 0`)
    dereference = 0
  }
  parser.getBool('chase_referrals', false)

  const startTls = parser.getBool('start_tls', false)
  if (startTls && version < 3) {
    warn(`${myname}: ${name} start_tls requires protocol version 3`)
    version = 3
  }
  const tls: LdapTlsSettings = {
    requireCert: parser.getBool('tls_require_cert', false),
    caCertFile: parser.getStr('tls_ca_cert_file', ''),
    caCertDir: parser.getStr('tls_ca_cert_dir', ''),
    cert: parser.getStr('tls_cert', ''),
    key: parser.getStr('tls_key', ''),
    cipherSuite: parser.getStr('tls_cipher_suite', ''),
  }
  parser.getStr('tls_random_file', '')
  parser.getInt('debuglevel', 0)

  return {
    connection: {
      servers, timeoutMs: timeout * 1000, startTls, tls, bind, bindDn, bindPw,
      version: version as 2 | 3, dereference: dereference as 0 | 1 | 2 | 3,
    },
    serverHost: servers.map((s) => s.url).join(' '),
    scope, searchBase, dynamicBase, query, resultFormat, context,
    attributes, numTerminal, numLeaf, numAttributes, recursionLimit, expansionLimit, sizeLimit,
  }
}

function parseBareHost(url: string): LdapServer {
  try {
    return parseLdapUrl(url).server
  } catch {
    // libldap would fail to connect to it; an unresolvable name does the same here.
    return {url, scheme: 'ldap', host: url.slice('ldap://'.length), port: 389}
  }
}

/** The state of one lookup across its recursive searches (Postfix keeps it in statics). */
interface LookupState {
  recursion: number
  expansion: number
  /** The warning that made the lookup fail (Postfix: dict->error = DICT_ERR_RETRY). */
  error?: string
  result: {text: string}
  /**
   * What libldap's error number would say after the walk: the last nested search, or a
   * DECODING_ERROR from asking an entry for an attribute it lacks. Postfix warns about it.
   */
  lastError: number
}

export class LdapTable implements Table {
  readonly type = 'ldap'
  flags: number
  private readonly shared: SharedLdapConnection
  private closed = false
  private readonly inFlight = new InFlightLookups<string | undefined>()

  constructor(
    readonly name: string,
    dictFlags: number,
    private readonly settings: LdapSettings,
    private readonly log: TableLog,
    private readonly limits: LdapLimits,
  ) {
    // db_common_dict_partial() always answers "no" in Postfix 3.7.
    this.flags = dictFlags | DICT_FLAG.FIXED
    this.shared = SharedLdapConnection.acquire(settings.connection)
  }

  lookup(key: string): Promise<string | undefined> {
    // Postfix: "Don't frustrate future attempts to make Postfix UTF-8 transparent."
    if (!(this.flags & DICT_FLAG.UTF8_ACTIVE) && !isValidUtf8(key)) return Promise.resolve(undefined)
    const name = this.flags & DICT_FLAG.FOLD_FIX ? lowercaseAscii(key) : key
    return withTimeLimit(this.inFlight.run(name, () => this.lookupFolded(name)), this.limits.lookupTimeoutMs, `table ldap:${this.name}: lookup "${name}"`)
  }

  private warn(message: string): void {
    this.log.warning(message)
  }

  /** Log why the lookup fails; the first reason becomes the RETRY's message. */
  private fail(state: LookupState, message: string): void {
    this.warn(message)
    state.error ??= message.trimEnd()
  }

  private async lookupFolded(name: string): Promise<string | undefined> {
    const s = this.settings
    const domain = await s.context.checkDomain(name)
    if (domain === 'skip') return undefined
    if (domain === 'retry') throw new TableError('retry', `ldap:${this.name}: 'domain' pattern match failed for '${name}'`)

    const warn = (m: string): void => this.warn(m)
    const base = {text: ''}
    if (!s.context.expand(s.searchBase, name, undefined, base, warn, rfc2253Quote)) return undefined
    const filter = {text: ''}
    if (!s.context.expand(s.query, name, undefined, filter, warn, rfc2254Quote)) return undefined

    const request = {
      base: utf8(base.text), scope: s.scope, filter: utf8(filter.text), attributes: s.attributes, sizeLimit: s.sizeLimit,
    }
    let connection = await this.open()
    let entries: LdapEntry[]
    try {
      try {
        entries = await connection.search(request)
      } catch (err) {
        if (!(err instanceof LdapError) || err.code !== LDAP_SERVER_DOWN) throw err
        // The server went away since the last lookup: reconnect and search once more.
        this.drop(connection)
        connection = await this.open()
        entries = await connection.search(request)
      }
    } catch (err) {
      if (!(err instanceof LdapError)) throw err
      if (err.code === LDAP_NO_SUCH_OBJECT) {
        // A key-dependent base that does not exist just means the key does not.
        if (s.dynamicBase) return undefined
        const message = `dict_ldap_lookup: ${this.name}: Search base '${base.text}' not found: ${err.code}: ${err.message}`
        this.warn(message)
        throw new TableError('retry', message)
      }
      const message = `dict_ldap_lookup: Search error ${err.code}: ${err.message} `
      this.warn(message)
      this.drop(connection)
      throw new TableError('retry', message.trimEnd())
    }
    const state: LookupState = {recursion: 0, expansion: 0, result: {text: ''}, lastError: 0}
    await this.getValues(connection, entries, name, state)
    if (state.lastError !== 0 && state.lastError !== LDAP_DECODING_ERROR)
      this.warn(`dict_ldap_lookup: Had some trouble with entries returned by search: ${ldapErr2string(state.lastError)}`)
    if (state.error) throw new TableError('retry', state.error)
    return state.result.text.length > 0 ? state.result.text : undefined
  }

  /** dict_ldap_get_values(): walk the entries of one search, recursing into special attributes. */
  private async getValues(connection: LdapConnection, entries: LdapEntry[], name: string, state: LookupState): Promise<void> {
    const s = this.settings
    const recursion = ++state.recursion
    const myname = `dict_ldap_get_values[${recursion}]`
    const valuesOf = (entry: LdapEntry, attr: string, st: LookupState): string[] | undefined => {
      const found = entry.attributes.find(([a]) => a.toLowerCase() === attr.toLowerCase())
      if (found && found[1].length > 0) return found[1]
      st.lastError = LDAP_DECODING_ERROR
      return undefined
    }
    // Postfix sets these per entry only when it finds the attributes, so an earlier
    // entry's verdict carries over to later entries that lack them.
    let isLeaf = true
    let isTerminal = false
    let count = 0
    for (const entry of entries) {
      if (!state.error && s.sizeLimit && ++count > s.sizeLimit) {
        this.fail(state, `${myname}: ${this.name}: Query size limit (${s.sizeLimit}) exceeded`)
      }
      for (let i = 0; i < s.numTerminal; i++) {
        const vals = valuesOf(entry, s.attributes[i], state)
        if (!vals) continue
        isTerminal = true
        break
      }
      if (!isTerminal && s.numLeaf > 0) {
        for (let i = s.numAttributes; i < s.attributes.length; i++) {
          const vals = valuesOf(entry, s.attributes[i], state)
          if (!vals) continue
          isLeaf = false
          break
        }
      }
      for (const [attr, rawValues] of entry.attributes) {
        if (state.error || rawValues.length === 0) continue
        // C strings: a value ends at its first NUL.
        const vals = rawValues.map((v) => (v.includes('\0') ? v.slice(0, v.indexOf('\0')) : v))
        let i = 0
        while (i < s.attributes.length && attrdescSubtype(s.attributes[i], attr) <= 0) i++
        if (i < s.numAttributes || isTerminal) {
          if ((isTerminal && i >= s.numTerminal) || (!isLeaf && i < s.numTerminal + s.numLeaf)) continue
          for (const value of vals) {
            if (s.context.expand(s.resultFormat, value, name, state.result, (m) => this.warn(m))
              && s.expansionLimit > 0 && ++state.expansion > s.expansionLimit) {
              this.fail(state, `${myname}: ${this.name}: Expansion limit exceeded for key: '${name}'`)
              break
            }
          }
        } else if (recursion < s.recursionLimit && i < s.attributes.length) {
          for (const value of vals) {
            await this.searchSpecial(connection, value, name, state, myname)
            if (state.error) break
          }
        } else if (recursion >= s.recursionLimit && i < s.attributes.length) {
          this.fail(state, `${myname}: ${this.name}: Recursion limit exceeded for special attribute ${attr}=${vals[0]}`)
        }
      }
    }
    state.recursion--
  }

  /** A DN or LDAP URL found in a special result attribute: search it and collect its values. */
  private async searchSpecial(connection: LdapConnection, value: string, name: string, state: LookupState, myname: string): Promise<void> {
    const s = this.settings
    let request
    if (isLdapUrl(value)) {
      let url
      try {
        url = parseLdapUrl(utf8(value))
      } catch (err) {
        const code = err instanceof LdapUrlError ? err.code : 5
        this.fail(state, `${myname}: malformed URL ${value}: ${ldapErr2string(code)}(${code})`)
        return
      }
      let attributes = s.attributes
      if (url.attributes.length > 0) {
        // Only the attributes both the URL and the table ask for, the more specific spelling.
        attributes = []
        for (const a1 of url.attributes) {
          for (const a2 of s.attributes) {
            const rel = attrdescSubtype(a1, a2)
            if (rel > 0) attributes.push(a2)
            else if (rel < 0) attributes.push(a1)
          }
        }
        if (attributes.length === 0) return
      }
      request = {base: url.dn, scope: url.scope, filter: url.filter ?? '(objectclass=*)', attributes, sizeLimit: s.sizeLimit}
    } else {
      request = {base: utf8(value), scope: 'base' as const, filter: 'objectclass=*', attributes: s.attributes, sizeLimit: s.sizeLimit}
    }
    let entries: LdapEntry[]
    try {
      entries = await connection.search(request)
      state.lastError = 0
    } catch (err) {
      if (!(err instanceof LdapError)) throw err
      state.lastError = err.code
      if (err.code === LDAP_NO_SUCH_OBJECT) {
        this.warn(`${myname}: DN ${value} not found, skipping `)
        return
      }
      this.fail(state, `${myname}: search error ${err.code}: ${err.message} `)
      return
    }
    await this.getValues(connection, entries, name, state)
  }

  /** The shared connection, opened when there is none; a failure is logged and a RETRY. */
  private async open(): Promise<LdapConnection> {
    if (this.closed) throw new TableError('retry', `ldap:${this.name}: table closed`)
    try {
      return await this.shared.get()
    } catch (err) {
      throw this.connectFailure(err)
    }
  }

  /** dict_ldap_connect()'s words for a failed connect; the error is a RETRY. */
  private connectFailure(err: unknown): TableError {
    if (err instanceof TableError) return err
    if (!(err instanceof LdapConnectError)) {
      const message = `dict_ldap_connect: ${this.name}: ${err instanceof Error ? err.message : String(err)}`
      this.warn(message)
      return new TableError('retry', message)
    }
    const c = this.settings.connection
    const e = err.ldap
    let message: string
    if (err.stage === 'starttls' || (err.stage === 'socket' && c.startTls)) {
      message = `dict_ldap_connect: Unable to set STARTTLS: ${e.code}: ${e.message}`
      this.log.error(message)
    } else if (err.stage === 'bind' || c.bind) {
      const dn = c.bindDn.length > 0 ? c.bindDn : 'empty or implicit'
      message = `dict_ldap_connect: Unable to bind to server ${this.settings.serverHost} with dn ${dn}: ${e.code} (${e.message})`
      this.warn(message)
    } else {
      // Without a bind libldap connects at the first search: Postfix reports the search.
      message = `dict_ldap_lookup: Search error ${e.code}: ${e.message} `
      this.warn(message)
    }
    return new TableError('retry', message.trimEnd())
  }

  /** The shared connection of these connection settings (every table with them shows the same). */
  poolStats(): PoolStats {
    return this.shared.stats()
  }

  get sharedPool(): object {
    return this.shared
  }

  private drop(connection: LdapConnection): void {
    this.shared.drop(connection)
  }

  close(): void {
    if (this.closed) return
    this.closed = true
    this.shared.release()
  }
}

/** Byte string to the UTF-8 text ldapts sends. */
function utf8(bin: string): string {
  return Buffer.from(bin, 'latin1').toString('utf8')
}

export function ldapTypeWith(limits: Partial<LdapLimits> = {}): TableType {
  const lim: LdapLimits = {lookupTimeoutMs: SQL_LOOKUP_TIMEOUT_MS, ...limits}
  return {
    type: 'ldap',
    async open(name: string, options: OpenOptions): Promise<Table> {
      if (options.mode !== 'read') throw new TableError('config', `ldap:${name} map requires O_RDONLY access mode`)
      const parser = await CfParser.open(name, options.config, options.log)
      const settings = await parseSettings(name, parser, options)
      const table = new LdapTable(name, options.dictFlags, settings, options.log, lim)
      return needUtf8Activation(options.config, options.dictFlags) ? activateUtf8(table, options.log) : table
    },
  }
}

export const ldapType: TableType = ldapTypeWith()
