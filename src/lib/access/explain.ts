// `check-access`: why a table is (not) approved for the proxymap / proxywrite service, in the
// terms a Postfix administrator can act on: through which parameter it is approved, and for
// a denied table the near misses (spacing, case, missing proxy: prefix, another path or type,
// the other service's list), lost defaults, self-reference, master.cf -o settings that
// proxymap cannot see, and what Postfix's `postconf -x` shows but a proxymap process does not.
//
// The verdict itself is AccessPolicy's (the exact approval rules of proxymap); this module
// only adds explanations around it.

import path from 'node:path'
import {
  MacroExpansionError, POSTFIX_3_7_DEFAULTS, PROXYMAP_DAEMON_PARAMETERS, HOST_COMPUTED_PARAMETERS,
  expandMacros, loadMainConfig, type ParameterLookup, type PostfixMainConfig,
} from '../config/index.js'
import {balancedLength, splitOutsideBraces, stripProxyPrefixes} from '../util/postfix-strings.js'
import {approvedTables, type ApprovalParameter} from './approval-list.js'
import {checkFileAccess, lookupUser, tableFiles, type FileAccess, type UserIds} from './file-access.js'
import {isProxymapLine, readMasterCfOverrides, type MasterCfOverride} from './master-cf-overrides.js'
import {AccessPolicy, type ProxyService} from './policy.js'
import {selfReferencePattern} from './main-cf-edit.js'

export type ProblemCode =
  | 'not-listed' | 'missing-proxy-prefix' | 'spacing' | 'case' | 'other-path' | 'other-type'
  | 'wrong-list' | 'lost-default' | 'self-reference' | 'macro-error' | 'master-cf-override'
  | 'daemon-scope' | 'list-syntax' | 'mail-owner-unknown'
  | 'file-missing' | 'file-unreadable' | 'file-unwritable' | 'dir-not-traversable' | 'dir-unwritable' | 'not-a-file'

export interface Problem {
  code: ProblemCode
  message: string
  /** The next step. */
  hint?: string
}

export interface TableCheck {
  /** The table as the service sees it: type:name without proxy: prefixes. */
  table: string
  /** read: lookups through proxymap; write: updates through proxywrite. */
  access: ProxyService
  /** The service name (proxymap_service_name / proxywrite_service_name). */
  service: string
  /** The list that must approve it. */
  parameter: ApprovalParameter
  approved: boolean
  /**
   * How it is approved: the parameter chain from the list down to the parameter whose
   * value holds the proxy: entry, e.g. ["proxy_read_maps", "virtual_alias_maps"].
   */
  via?: string[]
  /** With --all: the main.cf (or master.cf) parameters that use the table. */
  usedBy?: string[]
  /** Why not (when denied) and other findings (near misses, file problems). */
  problems: Problem[]
  /** The table's files, checked as mail_owner. */
  files: FileAccess[]
}

export interface ConfigFinding {
  code: 'lost-defaults' | 'self-reference' | 'macro-error' | 'list-syntax' | 'main-cf-warning'
  parameter?: string
  message: string
  hint?: string
}

export interface AccessReport {
  configDir: string
  mainCf: string
  mailOwner: {name: string; uid?: number; gid?: number}
  findings: ConfigFinding[]
  tables: TableCheck[]
}

export interface TableRequest {
  table: string
  access: ProxyService
  usedBy?: string[]
}

const LISTS: Record<ProxyService, ApprovalParameter> = {read: 'proxy_read_maps', write: 'proxy_write_maps'}
const OTHER: Record<ProxyService, ProxyService> = {read: 'write', write: 'read'}
/** The parameters that proxy_write_maps lists by default: their tables are written through proxywrite. */
const WRITE_PARAMETERS = new Set(['smtp_sasl_auth_cache_name', 'lmtp_sasl_auth_cache_name', 'address_verify_map', 'postscreen_cache_map'])

/** One word of an (expanded) list, as authorize_proxied_maps() walks it. */
interface ListEntry {
  word: string
  proxied: boolean
  /** Without proxy: prefixes. */
  table: string
}

/** Every table word of a list, proxied or not, looking into { } groups and unionmap/pipemap. */
export function listEntries(list: string): ListEntry[] {
  const entries: ListEntry[] = []
  const walk = (text: string): void => {
    for (let word of splitOutsideBraces(text)) {
      if (word.startsWith('{')) {
        if (balancedLength(word) !== word.length) continue
        const first = splitOutsideBraces(word.slice(1, -1))[0]
        if (first === undefined) continue
        word = first
      }
      const nested = ['unionmap:', 'pipemap:'].find(p => stripProxyPrefixes(word).startsWith(p))
      if (nested !== undefined) {
        const inner = stripProxyPrefixes(word).slice(nested.length)
        if (inner.startsWith('{') && balancedLength(inner) === inner.length) walk(inner.slice(1, -1))
        if (!word.startsWith('proxy:')) continue
      }
      const table = stripProxyPrefixes(word)
      if (table.includes(':')) entries.push({word, proxied: word.startsWith('proxy:'), table})
    }
  }
  walk(list)
  return entries
}

/** The $name references written in a value (the names only), in order. */
function references(value: string): string[] {
  const names: string[] = []
  for (const match of value.matchAll(/\$(?:\{|\()?([A-Za-z0-9_]+)/g)) if (!names.includes(match[1])) names.push(match[1])
  return names
}

/** Whether `name`'s value refers to `target`, directly or through other parameters. */
function refersTo(name: string, target: string, lookup: ParameterLookup, seen = new Set<string>()): boolean {
  if (seen.has(name)) return false
  seen.add(name)
  return references(lookup(name) ?? '').some(r => r === target || refersTo(r, target, lookup, seen))
}

/** Names of a value's references with a leading $ for messages: "$virtual_alias_maps". */
const dollar = (names: string[]): string => names.map(n => `$${n}`).join(' → ')

function safeExpand(text: string, lookup: ParameterLookup): string | undefined {
  try {
    return expandMacros(text, lookup)
  } catch (err) {
    if (err instanceof MacroExpansionError) return undefined
    throw err
  }
}

/**
 * The parameter chain through which `name`'s value contains an entry matching `match`:
 * [name] when the value holds it literally, [name, ref, ...] when it comes from $ref.
 */
function trace(name: string, lookup: ParameterLookup, match: (e: ListEntry) => boolean, seen = new Set<string>()): string[] | undefined {
  const raw = lookup(name)
  if (raw === undefined || seen.has(name)) return undefined
  seen.add(name)
  const expanded = safeExpand(raw, lookup)
  if (expanded === undefined || !listEntries(expanded).some(match)) return undefined
  for (const reference of references(raw)) {
    const value = lookup(reference)
    if (value === undefined) continue
    const sub = safeExpand(value, lookup)
    if (sub !== undefined && listEntries(sub).some(match)) {
      const deeper = trace(reference, lookup, match, new Set(seen))
      if (deeper !== undefined) return [name, ...deeper]
    }
  }
  return [name]
}

/** Postfix's view of `config` with a table: main.cf first, then what the lookup falls back to. */
function daemonLookup(config: PostfixMainConfig): ParameterLookup {
  return (reference) => {
    const raw = config.raw(reference)
    if (raw !== undefined) return raw
    if (!PROXYMAP_DAEMON_PARAMETERS.has(reference)) return undefined
    if (reference === 'config_directory') return config.configDir
    if (HOST_COMPUTED_PARAMETERS.has(reference)) return config.get(reference)
    return Object.hasOwn(POSTFIX_3_7_DEFAULTS, reference) ? POSTFIX_3_7_DEFAULTS[reference] : undefined
  }
}

/** What `postconf -x` sees: every default known. */
function postconfLookup(config: PostfixMainConfig): ParameterLookup {
  return (reference) => config.raw(reference) ?? config.defaultValue(reference)
}

const withDefault = (lookup: ParameterLookup, parameter: string): ParameterLookup => (reference) =>
  reference === parameter ? POSTFIX_3_7_DEFAULTS[parameter] : lookup(reference)

const squeeze = (s: string): string => s.replace(/\s+/g, '')
const typeOf = (t: string): string => t.slice(0, t.indexOf(':'))
const nameOf = (t: string): string => t.slice(t.indexOf(':') + 1)

interface ServiceView {
  access: ProxyService
  parameter: ApprovalParameter
  service: string
  config: PostfixMainConfig
  /** undefined when the list cannot be expanded (self-reference and other macro errors). */
  policy?: AccessPolicy
  expansionError?: MacroExpansionError
  lookup: ParameterLookup
  entries: ListEntry[]
}

export interface ExplainOptions {
  configDir: string
  /** For tests: a different user to check files as (default: main.cf's mail_owner). */
  mailOwner?: string
}

/** Explains access for each requested table. */
export function explainAccess(options: ExplainOptions, requests: TableRequest[]): AccessReport {
  const base = loadMainConfig({configDir: options.configDir})
  const overrides = readMasterCfOverrides(options.configDir)
  const views = {read: serviceView(base, overrides, 'read'), write: serviceView(base, overrides, 'write')}
  const findings = configFindings(base, views)
  const ownerName = options.mailOwner ?? safeExpand(base.raw('mail_owner') ?? 'postfix', postconfLookup(base)) ?? 'postfix'
  const owner = lookupUser(ownerName)
  const tables = requests.map(request => explainTable(request, views, overrides, owner, ownerName))
  return {
    configDir: base.configDir,
    mainCf: base.mainCfPath,
    mailOwner: {name: ownerName, ...(owner ? {uid: owner.uid, gid: owner.gid} : {})},
    findings,
    tables,
  }
}

/** The proxymap/proxywrite process sees main.cf plus the -o settings of its own master.cf line. */
function serviceView(base: PostfixMainConfig, overrides: MasterCfOverride[], access: ProxyService): ServiceView {
  const serviceName = base.get(access === 'read' ? 'proxymap_service_name' : 'proxywrite_service_name')
  const own = overrides.filter(o => isProxymapLine(o) && o.service === serviceName)
  const config = own.length === 0 ? base : loadMainConfig({configDir: base.configDir, overrides: Object.fromEntries(own.map(o => [o.name, o.value]))})
  const parameter = LISTS[access]
  const lookup = daemonLookup(config)
  let policy: AccessPolicy | undefined
  let expansionError: MacroExpansionError | undefined
  try {
    policy = AccessPolicy.fromConfig(config)
  } catch (err) {
    if (!(err instanceof MacroExpansionError)) throw err
    expansionError = err
  }
  // A broken list breaks only its own service: check that the other one expands.
  if (policy === undefined) {
    const ownExpanded = safeExpand(lookup(parameter) ?? '', lookup)
    if (ownExpanded !== undefined) {
      // The other list was the broken one; this one is fine.
      policy = new AccessPolicy({[access]: approvedTables(ownExpanded, parameter).tables, [OTHER[access]]: new Set<string>()} as Record<ProxyService, Set<string>>)
      expansionError = undefined
    }
  }
  const expanded = policy === undefined ? '' : safeExpand(lookup(parameter) ?? '', lookup) ?? ''
  return {access, parameter, service: serviceName, config, policy, expansionError, lookup, entries: listEntries(expanded)}
}

function configFindings(base: PostfixMainConfig, views: Record<ProxyService, ServiceView>): ConfigFinding[] {
  const findings: ConfigFinding[] = base.warnings.map(w => ({code: 'main-cf-warning' as const, message: w}))
  for (const view of Object.values(views)) {
    const {parameter} = view
    if (view.expansionError) {
      const selfRef = selfReferencePattern(parameter).test(view.config.raw(parameter) ?? '')
      findings.push({
        code: selfRef ? 'self-reference' : 'macro-error',
        parameter,
        message: selfRef
          ? `${parameter} refers to itself ("${parameter} = $${parameter} ..."); Postfix stops with "${view.expansionError.postfixMessage}" and "fatal: macro processing error", so the ${view.service} service approves nothing`
          : `${parameter} cannot be expanded: ${view.expansionError.postfixMessage}; the ${view.service} service approves nothing`,
        hint: selfRef
          ? `replace $${parameter} with the entries it should keep (the default is: ${POSTFIX_3_7_DEFAULTS[parameter]})`
          : `fix the $name references in ${parameter}`,
      })
      continue
    }
    for (const warning of view.policy?.listWarnings(view.access) ?? []) findings.push({code: 'list-syntax', parameter, message: warning})
    // Lost defaults: the list is set, and tables its default approved are no longer approved.
    if (view.config.isSet(parameter) && view.policy) {
      const byDefault = safeExpand(POSTFIX_3_7_DEFAULTS[parameter], view.lookup)
      if (byDefault === undefined) continue
      const lost = [...approvedTables(byDefault, parameter).tables].filter(t => !view.policy!.isApproved(view.access, t))
      if (lost.length > 0) {
        const from = lost.map(t => {
          const chain = trace(parameter, withDefault(view.lookup, parameter), e => e.proxied && e.table === t)
          return `proxy:${t}${chain && chain.length > 1 ? ` (from ${dollar(chain.slice(1))})` : ''}`
        })
        findings.push({
          code: 'lost-defaults',
          parameter,
          message: `${parameter} is set in main.cf without its default entries, so these tables are no longer approved: ${from.join(', ')}`,
          hint: `keep the defaults: start the value with the default text (${POSTFIX_3_7_DEFAULTS[parameter].slice(0, 60)}...) and add your entries after it`,
        })
      }
    }
  }
  return findings
}

function explainTable(request: TableRequest, views: Record<ProxyService, ServiceView>, overrides: MasterCfOverride[], owner: UserIds | undefined, ownerName: string): TableCheck {
  const table = stripProxyPrefixes(request.table)
  const view = views[request.access]
  const other = views[OTHER[request.access]]
  const {parameter} = view
  const approved = view.policy?.isApproved(request.access, table) ?? false
  const check: TableCheck = {
    table, access: request.access, service: view.service, parameter, approved,
    ...(request.usedBy ? {usedBy: request.usedBy} : {}),
    problems: [], files: [],
  }
  const exact = (e: ListEntry): boolean => e.proxied && e.table === table
  if (approved) {
    check.via = trace(parameter, view.lookup, exact) ?? [parameter]
  } else {
    check.problems.push(...denialReasons(table, view, other, overrides))
  }
  // Files, as mail_owner.
  if (owner === undefined) {
    check.problems.push({code: 'mail-owner-unknown', message: `mail_owner "${ownerName}" is not a user on this host; file access was not checked`, hint: 'set mail_owner in main.cf to the postfix user'})
  } else {
    for (const file of tableFiles(table)) {
      const access = checkFileAccess(file, owner, request.access === 'write')
      check.files.push(access)
      if (access.problem) check.problems.push({code: access.problem.code, message: access.problem.message, hint: access.problem.hint})
    }
  }
  return check
}

function denialReasons(table: string, view: ServiceView, other: ServiceView, overrides: MasterCfOverride[]): Problem[] {
  const {parameter, service, lookup} = view
  const problems: Problem[] = []
  const add = `add proxy:${table} to ${parameter} in main.cf (check-access offers to do it), then run "postfix reload"`
  if (view.expansionError) {
    const selfRef = selfReferencePattern(parameter).test(view.config.raw(parameter) ?? '')
    problems.push({
      code: selfRef ? 'self-reference' : 'macro-error',
      message: selfRef
        ? `${parameter} refers to itself: Postfix reports "${view.expansionError.postfixMessage}" and the ${service} service cannot start, so no table is approved`
        : `${parameter} cannot be expanded (${view.expansionError.postfixMessage}), so the ${service} service approves nothing`,
      hint: selfRef ? `write the entries instead of $${parameter} (check-access puts the default text in its place)` : `fix ${parameter}`,
    })
    return problems
  }
  // Near misses in the service's own list.
  for (const entry of view.entries) {
    const chain = trace(parameter, lookup, e => e.word === entry.word) ?? [parameter]
    const where = chain.length > 1 ? `${parameter} includes ${entry.word} through ${dollar(chain.slice(1))}` : `${parameter} lists ${entry.word}`
    if (entry.table === table && !entry.proxied) {
      const holder = chain[chain.length - 1]
      problems.push({
        code: 'missing-proxy-prefix',
        message: `${where}, but without the proxy: prefix; only proxy: entries approve a table`,
        hint: holder !== parameter
          ? `write ${holder} = ...proxy:${table}... in main.cf (then clients use the proxy too), or add proxy:${table} to ${parameter}`
          : `write proxy:${table} in ${parameter}`,
      })
    } else if (!entry.proxied) {
      continue
    } else if (squeeze(entry.table) === squeeze(table)) {
      problems.push({code: 'spacing', message: `${where}: the same table with different spacing; proxymap compares names byte for byte ("${entry.table}" vs "${table}")`, hint: `use exactly one spelling in main.cf and in the client's parameter`})
    } else if (entry.table.toLowerCase() === table.toLowerCase()) {
      problems.push({code: 'case', message: `${where}: the same name in another case; proxymap compares names byte for byte ("${entry.table}" vs "${table}")`, hint: 'use exactly one spelling'})
    } else if (typeOf(entry.table) === typeOf(table) && nameOf(entry.table).startsWith('/') && nameOf(table).startsWith('/') &&
      (path.basename(nameOf(entry.table)) === path.basename(nameOf(table)) || path.normalize(nameOf(entry.table)) === path.normalize(nameOf(table)))) {
      problems.push({code: 'other-path', message: `${where}: the same table type with another path ("${nameOf(entry.table)}" vs "${nameOf(table)}")`, hint: 'use the same absolute path everywhere; proxymap compares names byte for byte'})
    } else if (typeOf(entry.table) === typeOf(table) && nameOf(entry.table).startsWith('/') && !nameOf(table).startsWith('/') &&
      (path.resolve(nameOf(table)) === path.normalize(nameOf(entry.table)) || path.basename(nameOf(entry.table)) === path.basename(nameOf(table)))) {
      problems.push({code: 'other-path', message: `${where}: the same table type with an absolute path, but "${nameOf(table)}" is relative; proxymap compares names byte for byte (and would open a relative name from its own working directory)`, hint: `use the absolute path: proxy:${typeOf(table)}:${nameOf(entry.table)}`})
    } else if (typeOf(entry.table) !== typeOf(table) && nameOf(entry.table) === nameOf(table)) {
      problems.push({code: 'other-type', message: `${where}: the same file with another table type (${typeOf(entry.table)}: vs ${typeOf(table)}:)`, hint: 'use the same type everywhere'})
    }
  }
  // The other service's list.
  if (other.policy?.isApproved(other.access, table)) {
    const chain = trace(other.parameter, other.lookup, e => e.proxied && e.table === table) ?? [other.parameter]
    problems.push({
      code: 'wrong-list',
      message: `proxy:${table} is approved in ${other.parameter}${chain.length > 1 ? ` (through ${dollar(chain.slice(1))})` : ''}, which is the list of the ${other.service} service; ${view.access === 'write' ? 'updates' : 'lookups through proxymap'} need ${parameter}`,
      hint: add,
    })
  }
  // Lost defaults.
  if (view.config.isSet(parameter)) {
    const defaultLookup = withDefault(lookup, parameter)
    const chain = trace(parameter, defaultLookup, e => e.proxied && e.table === table)
    if (chain !== undefined) {
      problems.push({
        code: 'lost-default',
        message: `the default ${parameter} approves proxy:${table}${chain.length > 1 ? ` through ${dollar(chain.slice(1))}` : ''}, but main.cf sets ${parameter} without that default entry`,
        hint: `append to the default instead of replacing it (${parameter} = ${POSTFIX_3_7_DEFAULTS[parameter].split(' ').slice(0, 2).join(' ')} ... your entries), or ${add}`,
      })
    }
  }
  // What postconf -x shows but a proxymap process does not.
  const postconf = postconfLookup(view.config)
  const postconfChain = trace(parameter, postconf, e => e.proxied && e.table === table)
  if (postconfChain !== undefined) {
    const unknown = postconfChain.slice(1).find(name => view.config.raw(name) === undefined && !PROXYMAP_DAEMON_PARAMETERS.has(name))
    problems.push({
      code: 'daemon-scope',
      message: `"postconf -x ${parameter}" shows proxy:${table} (through ${dollar(postconfChain.slice(1))}), but the ${service} process does not: ${unknown ? `${unknown} is not a proxymap parameter, so unless main.cf sets it, it is empty there` : 'proxymap knows fewer defaults than postconf'}`,
      hint: unknown ? `set ${unknown} explicitly in main.cf, or ${add}` : add,
    })
  }
  // master.cf -o settings that name the table (outside proxymap's own line).
  for (const o of overrides) {
    if (isProxymapLine(o)) continue
    if (!listEntries(o.value).some(e => e.table === table)) continue
    const inList = refersTo(parameter, o.name, lookup)
    const mainValue = view.config.raw(o.name) ?? POSTFIX_3_7_DEFAULTS[o.name]
    problems.push({
      code: 'master-cf-override',
      message: `master.cf line ${o.line} (service ${o.service}, ${o.command}) sets ${o.text}; proxymap reads only main.cf, so ${inList ? `$${o.name} in ${parameter} means main.cf's ${o.name}${mainValue !== undefined ? ` (${mainValue || 'empty'})` : ''}, not this value` : 'this setting does not approve anything'}`,
      hint: `set ${o.name} = ${o.value} in main.cf instead of in master.cf, or ${add}`,
    })
  }
  problems.unshift({
    code: 'not-listed',
    message: `${parameter} (the list of the ${service} service) does not approve proxy:${table}`,
    hint: add,
  })
  return problems
}

/**
 * Every proxy: table main.cf uses (and master.cf -o settings use), for --all: the values of all
 * parameters main.cf sets, expanded, plus parameters whose default uses proxy: (local_recipient_maps),
 * looking inside unionmap/pipemap and { } groups. The two approval lists are not uses.
 */
export function tablesInUse(configDir: string): TableRequest[] {
  const config = loadMainConfig({configDir})
  const uses = new Map<string, TableRequest>()
  const note = (parameter: string, value: string | undefined, label = parameter): void => {
    if (value === undefined || !value.includes('proxy:')) return
    const access: ProxyService = WRITE_PARAMETERS.has(parameter) ? 'write' : 'read'
    for (const entry of listEntries(value)) {
      if (!entry.proxied) continue
      const key = `${access} ${entry.table}`
      const use = uses.get(key) ?? {table: entry.table, access, usedBy: []}
      if (!use.usedBy!.includes(label)) use.usedBy!.push(label)
      uses.set(key, use)
    }
  }
  const lookup = postconfLookup(config)
  const names = new Set([...config.setNames(), ...Object.keys(POSTFIX_3_7_DEFAULTS)])
  for (const name of names) {
    if (name === 'proxy_read_maps' || name === 'proxy_write_maps') continue
    const raw = config.raw(name) ?? POSTFIX_3_7_DEFAULTS[name]
    if (raw === undefined) continue
    note(name, safeExpand(raw, lookup) ?? raw)
  }
  for (const o of readMasterCfOverrides(configDir)) {
    if (isProxymapLine(o) || o.name === 'proxy_read_maps' || o.name === 'proxy_write_maps') continue
    note(o.name, safeExpand(o.value, lookup) ?? o.value, `${o.name} (master.cf line ${o.line}, ${o.service} -o)`)
  }
  return [...uses.values()]
}

/** Exit status of a report (see check-access's description). */
export function worstProblem(report: AccessReport): 'denied' | 'file' | 'ok' {
  if (report.tables.some(t => !t.approved)) return 'denied'
  if (report.tables.some(t => t.files.some(f => f.problem))) return 'file'
  return 'ok'
}
