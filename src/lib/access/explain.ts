// `check-access`: why a table is (not) approved for the proxymap / proxywrite service, in the
// terms a Postfix administrator can act on: through which parameter it is approved, and for
// a denied table the near misses (spacing, case, missing proxy: prefix, another path or type,
// the other service's list), lost defaults, self-reference, master.cf -o settings that
// proxymap cannot see, and what Postfix's `postconf -x` shows but a proxymap process does not.
//
// The verdict itself is the approval walk's (the exact approval rules of proxymap, in the
// configuration's Postfix release: postfix-version.ts); this module only adds explanations
// around it, in that release's terms: with 3.11's rules a table may be approved through a
// restriction class or a /file/name element, and with older rules check-access says when
// 3.11 would approve a denied table.

import path from 'node:path'
import {
  MacroExpansionError, HOST_COMPUTED_PARAMETERS, approvalRulesFor, choosePostfixVersion, daemonScopeLookup,
  describePostfixVersion, expandMacros, loadMainConfig, type ApprovalRules, type ParameterLookup,
  type PostfixMainConfig, type PostfixVersionChoice,
} from '../config/index.js'
import {balancedLength, splitOutsideBraces, stripProxyPrefixes} from '../util/postfix-strings.js'
import {cString, logicalLines} from '../util/source-text.js'
import {RESTRICTION_CLASSES, approvedTables, readIncludeFile, type ApprovalParameter, type ApprovedTables, type IncludeReader} from './approval-list.js'
import {checkFileAccess, lookupUser, tableFiles, type FileAccess, type UserIds} from './file-access.js'
import {isProxymapLine, readMasterCfOverrides, type MasterCfOverride} from './master-cf-overrides.js'
import {RestrictionClassError, restrictionClassNames, serviceApprovals, type ProxyService} from './policy.js'
import {selfReferencePattern} from './main-cf-edit.js'
import {defaultRegistry} from '../tables/registry.js'
import {didYouMean} from '../util/suggest.js'

export type ProblemCode =
  | 'not-listed' | 'missing-proxy-prefix' | 'spacing' | 'case' | 'other-path' | 'other-type'
  | 'wrong-list' | 'lost-default' | 'self-reference' | 'macro-error' | 'master-cf-override'
  | 'daemon-scope' | 'list-syntax' | 'mail-owner-unknown' | 'newer-release-only' | 'include-unreadable' | 'unknown-type'
  | 'file-missing' | 'file-unreadable' | 'file-unwritable' | 'dir-not-traversable' | 'dir-unwritable' | 'not-a-file'

export interface Problem {
  code: ProblemCode
  message: string
  /** The next step. */
  hint?: string
  /**
   * A near miss (missing proxy: prefix, spacing, case, path or type) written in the list's
   * own value: the word as it stands there, which the fix replaces by the right entry.
   */
  entry?: string
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
   * value holds the proxy: entry, e.g. ["proxy_read_maps", "virtual_alias_maps"]; with
   * Postfix 3.11's rules it may start with smtpd_restriction_classes and the class name
   * (["smtpd_restriction_classes", "my_class", ...]) and end with the /file/name elements
   * read on the way (["proxy_read_maps", "virtual_alias_maps", "/etc/postfix/more"]).
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
  code: 'lost-defaults' | 'self-reference' | 'macro-error' | 'list-syntax' | 'list-file' | 'main-cf-warning'
  parameter?: string
  message: string
  hint?: string
}

export interface AccessReport {
  configDir: string
  mainCf: string
  /** Whose rules the report follows, and why (see config/postfix-version.ts). */
  postfixVersion: PostfixVersionChoice
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
  /** The /file/name elements (3.11) read on the way to this word, outermost first. */
  files: string[]
}

/**
 * Every table word of a list, proxied or not, looking into { } groups and unionmap/pipemap,
 * and with 3.11's list walk into /file/name elements.
 */
export function listEntries(list: string, listWalk: ApprovalRules['listWalk'] = '3.7', readFile: IncludeReader = readIncludeFile): ListEntry[] {
  const entries: ListEntry[] = []
  const walk = (text: string, files: string[]): void => {
    for (let word of splitOutsideBraces(text)) {
      if (word.startsWith('{')) {
        if (balancedLength(word) !== word.length) continue
        const first = splitOutsideBraces(word.slice(1, -1))[0]
        if (first === undefined) continue
        word = first
      }
      if (listWalk === '3.11' && word.startsWith('/')) {
        if (files.includes(word)) continue
        const content = readFile(word)
        if ('text' in content) for (const line of logicalLines(content.text, word, () => undefined)) walk(cString(line.text), [...files, word])
        continue
      }
      const nested = ['unionmap:', 'pipemap:'].find(p => stripProxyPrefixes(word).startsWith(p))
      if (nested !== undefined) {
        const inner = stripProxyPrefixes(word).slice(nested.length)
        if (inner.startsWith('{') && balancedLength(inner) === inner.length) walk(inner.slice(1, -1), files)
        if (!word.startsWith('proxy:')) continue
      }
      const table = stripProxyPrefixes(word)
      if (table.includes(':')) entries.push({word, proxied: word.startsWith('proxy:'), table, files})
    }
  }
  walk(list, [])
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

/** A chain for messages: "$virtual_alias_maps → $x → /etc/postfix/more" (files as they are). */
const dollar = (names: string[]): string => names.map(n => (n.startsWith('/') ? n : `$${n}`)).join(' → ')

function safeExpand(text: string, lookup: ParameterLookup): string | undefined {
  try {
    return expandMacros(text, lookup)
  } catch (err) {
    if (err instanceof MacroExpansionError) return undefined
    throw err
  }
}

/** Finds where list entries come from, with one view of the parameters (a daemon's, or postconf's). */
class Tracer {
  constructor(
    readonly lookup: ParameterLookup,
    private readonly listWalk: ApprovalRules['listWalk'],
    private readonly readFile: IncludeReader,
  ) {}

  expand(text: string): string | undefined {
    return safeExpand(text, this.lookup)
  }

  entries(list: string): ListEntry[] {
    return listEntries(list, this.listWalk, this.readFile)
  }

  /** The same view, except that `parameter` has its default value `value`. */
  withValue(parameter: string, value: string): Tracer {
    return new Tracer(r => (r === parameter ? value : this.lookup(r)), this.listWalk, this.readFile)
  }

  /**
   * The chain through which `name`'s value contains an entry matching `match`: [name] when
   * the value holds it literally, [name, ref, ...] when it comes from $ref, followed by the
   * /file/name elements (3.11) that hold it.
   */
  trace(name: string, match: (e: ListEntry) => boolean, seen = new Set<string>()): string[] | undefined {
    const raw = this.lookup(name)
    if (raw === undefined || seen.has(name)) return undefined
    seen.add(name)
    const expanded = this.expand(raw)
    const found = expanded === undefined ? undefined : this.entries(expanded).find(match)
    if (found === undefined) return undefined
    for (const reference of references(raw)) {
      const value = this.lookup(reference)
      if (value === undefined) continue
      const sub = this.expand(value)
      if (sub !== undefined && this.entries(sub).some(match)) {
        const deeper = this.trace(reference, match, new Set(seen))
        if (deeper !== undefined) return [name, ...deeper]
      }
    }
    return [name, ...found.files]
  }
}

/** A /file/name reader that reads each file once per report. */
function cachedReader(read: IncludeReader): IncludeReader {
  const cache = new Map<string, ReturnType<IncludeReader>>()
  return (file) => {
    let content = cache.get(file)
    if (content === undefined) cache.set(file, content = read(file))
    return content
  }
}

/** What `postconf -x` sees: every default of the release known. */
function postconfLookup(config: PostfixMainConfig, rules: ApprovalRules): ParameterLookup {
  return (reference) => {
    const raw = config.raw(reference)
    if (raw !== undefined) return raw
    if (reference === 'config_directory' || HOST_COMPUTED_PARAMETERS.has(reference)) return config.defaultValue(reference)
    return Object.hasOwn(rules.defaults, reference) ? rules.defaults[reference] : undefined
  }
}

const squeeze = (s: string): string => s.replace(/\s+/g, '')
const typeOf = (t: string): string => t.slice(0, t.indexOf(':'))
const nameOf = (t: string): string => t.slice(t.indexOf(':') + 1)

interface ServiceView {
  access: ProxyService
  parameter: ApprovalParameter
  service: string
  config: PostfixMainConfig
  rules: ApprovalRules
  /** undefined when the list (or, 3.11, a restriction class) cannot be expanded: Postfix stops. */
  approvals?: ApprovedTables
  expansionError?: MacroExpansionError
  /** The daemon's view of the parameters. */
  tracer: Tracer
  readFile: IncludeReader
  /** 3.11 proxymap: the classes of smtpd_restriction_classes, whose values it also reads. */
  classNames: string[]
  /** The table words the service reads, each with the parameter (or class) it is read from. */
  entries: {entry: ListEntry; top: string}[]
}

/** Whether the service approves the table (nothing, when its process could not start). */
const approves = (view: ServiceView, table: string): boolean => view.approvals?.tables.has(table) ?? false

/**
 * Where the service reads an entry matching `match`: the chain from its list, or
 * [smtpd_restriction_classes, class, ...] for a 3.11 restriction class (the list comes first,
 * as Postfix reads it first).
 */
function sourceChain(view: ServiceView, match: (e: ListEntry) => boolean): string[] | undefined {
  const fromList = view.tracer.trace(view.parameter, match)
  if (fromList !== undefined) return fromList
  for (const className of view.classNames) {
    const chain = view.tracer.trace(className, match)
    if (chain !== undefined) return [RESTRICTION_CLASSES, ...chain]
  }
  return undefined
}

/** "proxy_read_maps includes W through $x → /file", "restriction class C (smtpd_restriction_classes) lists W". */
function describeSource(chain: string[], word: string): string {
  if (chain[0] === RESTRICTION_CLASSES) {
    const [, className, ...rest] = chain
    const holder = `restriction class ${className} (in ${RESTRICTION_CLASSES})`
    return rest.length > 0 ? `${holder} includes ${word} through ${dollar(rest)}` : `${holder} lists ${word}`
  }
  return chain.length > 1 ? `${chain[0]} includes ${word} through ${dollar(chain.slice(1))}` : `${chain[0]} lists ${word}`
}

export interface ExplainOptions {
  configDir: string
  /** For tests: a different user to check files as (default: main.cf's mail_owner). */
  mailOwner?: string
  /** Whose rules to follow (default: chosen as `check-access` without --postfix-version does). */
  postfixVersion?: PostfixVersionChoice
}

/** Explains access for each requested table. */
export function explainAccess(options: ExplainOptions, requests: TableRequest[]): AccessReport {
  const base = loadMainConfig({configDir: options.configDir})
  const postfixVersion = options.postfixVersion ?? choosePostfixVersion({env: process.env, config: base})
  const rules = approvalRulesFor(postfixVersion.version)
  const readFile = cachedReader(readIncludeFile)
  const overrides = readMasterCfOverrides(options.configDir)
  const views = {read: serviceView(base, overrides, 'read', rules, readFile), write: serviceView(base, overrides, 'write', rules, readFile)}
  const findings = configFindings(base, views)
  const ownerName = options.mailOwner ?? safeExpand(base.raw('mail_owner') ?? 'postfix', postconfLookup(base, rules)) ?? 'postfix'
  const owner = lookupUser(ownerName)
  const context: TableContext = {views, overrides, owner, ownerName, postfixVersion, readFile}
  const tables = requests.map(request => explainTable(request, context))
  return {
    configDir: base.configDir,
    mainCf: base.mainCfPath,
    postfixVersion,
    mailOwner: {name: ownerName, ...(owner ? {uid: owner.uid, gid: owner.gid} : {})},
    findings,
    tables,
  }
}

/** The proxymap/proxywrite process sees main.cf plus the -o settings of its own master.cf line. */
function serviceView(base: PostfixMainConfig, overrides: MasterCfOverride[], access: ProxyService, rules: ApprovalRules, readFile: IncludeReader): ServiceView {
  const serviceName = base.get(access === 'read' ? 'proxymap_service_name' : 'proxywrite_service_name')
  const own = overrides.filter(o => isProxymapLine(o) && o.service === serviceName)
  const config = own.length === 0 ? base : loadMainConfig({configDir: base.configDir, overrides: Object.fromEntries(own.map(o => [o.name, o.value]))})
  const parameter = LISTS[access]
  const tracer = new Tracer(daemonScopeLookup(config, rules.daemonParameters, rules.defaults), rules.listWalk, readFile)
  let approvals: ApprovedTables | undefined
  let expansionError: MacroExpansionError | undefined
  try {
    approvals = serviceApprovals(config, access, rules, readFile)
  } catch (err) {
    if (!(err instanceof MacroExpansionError)) throw err
    expansionError = err
  }
  const classNames = rules.restrictionClasses && access === 'read'
    ? restrictionClassNames(tracer.expand(tracer.lookup(RESTRICTION_CLASSES) ?? '') ?? '')
    : []
  const entries: ServiceView['entries'] = []
  if (approvals !== undefined) {
    for (const top of [parameter, ...classNames]) {
      const value = tracer.lookup(top)
      if (value === undefined) continue
      for (const entry of tracer.entries(tracer.expand(value) ?? '')) entries.push({entry, top})
    }
  }
  return {access, parameter, service: serviceName, config, rules, approvals, expansionError, tracer, readFile, classNames, entries}
}

function configFindings(base: PostfixMainConfig, views: Record<ProxyService, ServiceView>): ConfigFinding[] {
  const findings: ConfigFinding[] = base.warnings.map(w => ({code: 'main-cf-warning' as const, message: w}))
  for (const view of Object.values(views)) {
    const {parameter, rules} = view
    const defaultText = rules.defaults[parameter]
    if (view.expansionError instanceof RestrictionClassError) {
      const {className} = view.expansionError
      findings.push({
        code: 'macro-error',
        parameter: className,
        message: `restriction class ${className} (listed in ${RESTRICTION_CLASSES}) cannot be expanded: ${view.expansionError.postfixMessage}; a Postfix ${rules.version} proxymap reads the classes at start-up and stops there, so the ${view.service} service approves nothing`,
        hint: `fix the $name references in ${className}`,
      })
      continue
    }
    if (view.expansionError) {
      const selfRef = selfReferencePattern(parameter).test(view.config.raw(parameter) ?? '')
      findings.push({
        code: selfRef ? 'self-reference' : 'macro-error',
        parameter,
        message: selfRef
          ? `${parameter} refers to itself ("${parameter} = $${parameter} ..."); Postfix stops with "${view.expansionError.postfixMessage}" and "fatal: macro processing error", so the ${view.service} service approves nothing`
          : `${parameter} cannot be expanded: ${view.expansionError.postfixMessage}; the ${view.service} service approves nothing`,
        hint: selfRef
          ? `replace $${parameter} with the entries it should keep (the default is: ${defaultText})`
          : `fix the $name references in ${parameter}`,
      })
      continue
    }
    // Syntax errors ("bad ..."), and with 3.11's rules the /file/name elements it could not read.
    for (const warning of view.approvals?.warnings ?? []) {
      findings.push({code: warning.startsWith('bad ') ? 'list-syntax' : 'list-file', parameter, message: warning})
    }
    // Lost defaults: the list is set, and tables its default approved are no longer approved.
    if (view.config.isSet(parameter) && view.approvals) {
      const byDefault = view.tracer.expand(defaultText)
      if (byDefault === undefined) continue
      const lost = [...approvedTables(byDefault, parameter, rules, view.readFile).tables].filter(t => !approves(view, t))
      if (lost.length > 0) {
        const withDefault = view.tracer.withValue(parameter, defaultText)
        const from = lost.map(t => {
          const chain = withDefault.trace(parameter, e => e.proxied && e.table === t)
          return `proxy:${t}${chain && chain.length > 1 ? ` (from ${dollar(chain.slice(1))})` : ''}`
        })
        findings.push({
          code: 'lost-defaults',
          parameter,
          message: `${parameter} is set in main.cf without its default entries, so these tables are no longer approved: ${from.join(', ')}`,
          hint: `keep the defaults: start the value with the default text and add your entries after it: ${parameter} = ${defaultText} ...your entries`,
        })
      }
    }
  }
  return findings
}

interface TableContext {
  views: Record<ProxyService, ServiceView>
  overrides: MasterCfOverride[]
  owner: UserIds | undefined
  ownerName: string
  postfixVersion: PostfixVersionChoice
  readFile: IncludeReader
}

function explainTable(request: TableRequest, context: TableContext): TableCheck {
  const {views, owner, ownerName} = context
  const table = stripProxyPrefixes(request.table)
  const view = views[request.access]
  const {parameter} = view
  const approved = approves(view, table)
  const check: TableCheck = {
    table, access: request.access, service: view.service, parameter, approved,
    ...(request.usedBy ? {usedBy: request.usedBy} : {}),
    problems: [], files: [],
  }
  // A type no service has: which list misses it does not matter.
  const unknownType = unknownTypeProblem(table)
  if (unknownType) check.problems.push(unknownType)
  const exact = (e: ListEntry): boolean => e.proxied && e.table === table
  if (approved) {
    check.via = sourceChain(view, exact) ?? [parameter]
  } else if (!unknownType) {
    check.problems.push(...denialReasons(table, view, views[OTHER[request.access]], context))
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

/** A type no proxymap has: approving the table cannot help, the service would answer RETRY. */
function unknownTypeProblem(table: string): Problem | undefined {
  const type = typeOf(table)
  if (!table.includes(':') || defaultRegistry.has(type)) return undefined
  const known = defaultRegistry.typeNames().filter(name => name !== 'proxy')
  return {
    code: 'unknown-type',
    message: `"${type}" is not a table type (Postfix: "unsupported dictionary type: ${type}"): listed or not, the service cannot open ${table} and answers RETRY`,
    hint: `${didYouMean(type, known)}correct the type in main.cf and in the client; the table types are: ${known.join(', ')}`,
  }
}

function denialReasons(table: string, view: ServiceView, other: ServiceView, context: TableContext): Problem[] {
  const {parameter, service, tracer, rules} = view
  const problems: Problem[] = []
  const add = `add proxy:${table} to ${parameter} in main.cf (check-access offers to do it), then run "postfix reload"`
  const exact = (e: ListEntry): boolean => e.proxied && e.table === table
  if (view.expansionError instanceof RestrictionClassError) {
    const {className} = view.expansionError
    problems.push({
      code: 'macro-error',
      message: `restriction class ${className} (in ${RESTRICTION_CLASSES}) cannot be expanded (${view.expansionError.postfixMessage}): a Postfix ${rules.version} proxymap stops at start-up, so no table is approved`,
      hint: `fix ${className}`,
    })
    return problems
  }
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
  // Near misses in what the service reads: its list (and, 3.11, its restriction classes).
  for (const {entry, top} of view.entries) {
    const traced = tracer.trace(top, e => e.word === entry.word) ?? [top]
    const chain = top === parameter ? traced : [RESTRICTION_CLASSES, ...traced]
    const where = describeSource(chain, entry.word)
    const found = problems.length
    if (entry.table === table && !entry.proxied) {
      const holder = chain[chain.length - 1]
      problems.push({
        code: 'missing-proxy-prefix',
        message: `${where}, but without the proxy: prefix; only proxy: entries approve a table`,
        hint: holder.startsWith('/')
          ? `write proxy:${table} in ${holder} (then clients use the proxy too), or add proxy:${table} to ${parameter}`
          : holder !== parameter
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
    } else if (typeOf(entry.table) === typeOf(table) && !nameOf(entry.table).startsWith('/') && nameOf(table).startsWith('/') &&
      path.basename(nameOf(entry.table)) === path.basename(nameOf(table))) {
      problems.push({code: 'other-path', message: `${where}: the same table type with a relative path ("${nameOf(entry.table)}"), but clients name it by its absolute path ("${nameOf(table)}"); proxymap compares names byte for byte`, hint: `write the absolute path in ${parameter}: proxy:${table}`})
    } else if (typeOf(entry.table) !== typeOf(table) && nameOf(entry.table) === nameOf(table)) {
      problems.push({code: 'other-type', message: `${where}: the same file with another table type (${typeOf(entry.table)}: vs ${typeOf(table)}:)`, hint: 'use the same type everywhere'})
    }
    if (problems.length > found && chain.length === 1 && chain[0] === parameter) problems[found].entry = entry.word
  }
  // The other service's list (or, 3.11, a restriction class, which approves for proxymap only).
  if (approves(other, table)) {
    const chain = sourceChain(other, exact) ?? [other.parameter]
    const wanted = view.access === 'write' ? 'updates' : 'lookups through proxymap'
    problems.push({
      code: 'wrong-list',
      message: chain[0] === RESTRICTION_CLASSES
        ? `proxy:${table} is approved for the ${other.service} service only: ${describeSource(chain, `proxy:${table}`)}, and Postfix ${other.rules.version} approves the tables of restriction classes for lookups (proxymap), never for ${wanted}; ${wanted} need ${parameter}`
        : `proxy:${table} is approved in ${other.parameter}${chain.length > 1 ? ` (through ${dollar(chain.slice(1))})` : ''}, which is the list of the ${other.service} service; ${wanted} need ${parameter}`,
      hint: add,
    })
  }
  // 3.11: /file/name elements that proxymap could not read may be where the table is listed.
  for (const warning of new Set(view.approvals?.warnings.filter(w => /^(open|read) \//.test(w)) ?? [])) {
    const file = warning.replace(/^(open|read) (\S+): .*$/, '$2')
    problems.push({
      code: 'include-unreadable',
      message: `what the ${service} service reads names the file ${file}, but proxymap could not read it ("${warning}"), so no table listed in it is approved`,
      hint: `make ${file} readable (a Postfix ${rules.version} proxymap reads it at start-up, before it gives up root), then run "postfix reload"; or ${add}`,
    })
  }
  // What the rules of Postfix 3.11 would approve, when older rules are in force.
  if (rules.version !== '3.11') problems.push(...newerReleaseReasons(table, view, context))
  // Lost defaults.
  if (view.config.isSet(parameter)) {
    const defaultText = rules.defaults[parameter]
    const chain = tracer.withValue(parameter, defaultText).trace(parameter, exact)
    if (chain !== undefined) {
      problems.push({
        code: 'lost-default',
        message: `the default ${parameter} approves proxy:${table}${chain.length > 1 ? ` through ${dollar(chain.slice(1))}` : ''}, but main.cf sets ${parameter} without that default entry`,
        hint: `append to the default instead of replacing it (${parameter} = ${defaultText} ...your entries), or ${add}`,
      })
    }
  }
  // What postconf -x shows but a proxymap process does not.
  const postconf = new Tracer(postconfLookup(view.config, rules), rules.listWalk, context.readFile)
  const postconfChain = postconf.trace(parameter, exact)
  if (postconfChain !== undefined) {
    const unknown = postconfChain.slice(1).find(name => !name.startsWith('/') && view.config.raw(name) === undefined && !rules.daemonParameters.has(name))
    problems.push({
      code: 'daemon-scope',
      message: `"postconf -x ${parameter}" shows proxy:${table} (through ${dollar(postconfChain.slice(1))}), but the ${service} process does not: ${unknown ? `${unknown} is not a proxymap parameter, so unless main.cf sets it, it is empty there` : 'proxymap knows fewer defaults than postconf'}`,
      hint: unknown ? `set ${unknown} explicitly in main.cf, or ${add}` : add,
    })
  }
  // master.cf -o settings that name the table (outside proxymap's own line).
  for (const o of context.overrides) {
    if (isProxymapLine(o)) continue
    if (!listEntries(o.value).some(e => e.table === table)) continue
    const inList = refersTo(parameter, o.name, tracer.lookup)
    const mainValue = view.config.raw(o.name) ?? rules.defaults[o.name]
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
 * A table that Postfix 3.11's proxymap would approve on this main.cf, while the older rules
 * in force deny it: through a restriction class, a /file/name element, or 3.11's longer
 * default list. Says which, and how to approve it for the older release.
 */
function newerReleaseReasons(table: string, view: ServiceView, context: TableContext): Problem[] {
  const rules311 = approvalRulesFor('3.11')
  let newer: ApprovedTables
  try {
    newer = serviceApprovals(view.config, view.access, rules311, context.readFile)
  } catch (err) {
    if (err instanceof MacroExpansionError) return []
    throw err
  }
  const origin = newer.origins.get(table)
  if (origin === undefined) return []
  const newerView: ServiceView = {
    ...view, rules: rules311,
    tracer: new Tracer(daemonScopeLookup(view.config, rules311.daemonParameters, rules311.defaults), rules311.listWalk, context.readFile),
    classNames: view.access === 'read' ? restrictionClassNames(getClasses(view.config, rules311)) : [],
  }
  const chain = sourceChain(newerView, e => e.proxied && e.table === table) ?? [origin]
  const inForce = `the rules in force are ${describePostfixVersion(context.postfixVersion)}`
  const add = `add proxy:${table} to ${view.parameter} in main.cf (check-access offers to do it), then run "postfix reload"`
  const orNewer = 'or, if this configuration belongs to Postfix 3.11, run with --postfix-version 3.11'
  if (chain[0] === RESTRICTION_CLASSES) {
    const className = chain[1]
    return [{
      code: 'newer-release-only',
      message: `${describeSource(chain, `proxy:${table}`)}: Postfix 3.11 approves the tables of restriction classes for proxymap, but Postfix ${view.rules.version} approves only what ${view.parameter} lists (${inForce})`,
      hint: `add $${className} to ${view.parameter} (every release then approves its tables), ${orNewer}`,
    }]
  }
  const file = chain.find(name => name.startsWith('/'))
  if (file !== undefined) {
    return [{
      code: 'newer-release-only',
      message: `${describeSource(chain, `proxy:${table}`)}: Postfix 3.11 reads /file/name elements and approves the proxy: tables listed in them, but Postfix ${view.rules.version} does not read ${file} (${inForce})`,
      hint: `${add}; ${orNewer}`,
    }]
  }
  return [{
    code: 'newer-release-only',
    message: `Postfix 3.11's proxymap approves proxy:${table} here${chain.length > 1 ? ` (${view.parameter} through ${dollar(chain.slice(1))})` : ''}: its default ${view.parameter} lists more parameters, and it knows more defaults; Postfix ${view.rules.version} does not (${inForce})`,
    hint: `${add}; ${orNewer}`,
  }]
}

/** smtpd_restriction_classes as a proxymap of `rules`' release sees it. */
function getClasses(config: PostfixMainConfig, rules: ApprovalRules): string {
  const lookup = daemonScopeLookup(config, rules.daemonParameters, rules.defaults)
  return safeExpand(lookup(RESTRICTION_CLASSES) ?? '', lookup) ?? ''
}

/**
 * Every proxy: table main.cf uses (and master.cf -o settings use), for --all: the values of all
 * parameters main.cf sets, expanded, plus parameters whose default uses proxy: (local_recipient_maps),
 * looking inside unionmap/pipemap and { } groups. The two approval lists are not uses.
 */
export function tablesInUse(configDir: string, rules: ApprovalRules = approvalRulesFor('3.7')): TableRequest[] {
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
  const lookup = postconfLookup(config, rules)
  const names = new Set([...config.setNames(), ...Object.keys(rules.defaults)])
  for (const name of names) {
    if (name === 'proxy_read_maps' || name === 'proxy_write_maps') continue
    const raw = config.raw(name) ?? rules.defaults[name]
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
