// The approval check of Postfix's proxymap (proxy_map_find() in src/proxymap/proxymap.c): a
// request for a table that its service's list does not approve gets DENY and two warnings.
// What the list approves follows the rules of the configuration's Postfix release
// (config/postfix-version.ts): 3.11 also approves the tables of smtpd_restriction_classes for
// the read service, and reads /file/name elements.

import {
  approvalRulesFor, daemonScopeLookup, expandMacros, getInDaemonScope, MacroExpansionError,
  type ApprovalRules, type MainConfig,
} from '../config/index.js'
import {stripProxyPrefixes} from '../util/postfix-strings.js'
import {ApprovalWalk, RESTRICTION_CLASSES, readIncludeFile, type ApprovalParameter, type ApprovedTables, type IncludeReader} from './approval-list.js'

/** proxymap (read-only, proxy_read_maps) or proxywrite (read-write, proxy_write_maps). */
export type ProxyService = 'read' | 'write'

const PARAMETER_BY_SERVICE: Record<ProxyService, ApprovalParameter> = {
  read: 'proxy_read_maps',
  write: 'proxy_write_maps',
}

/** A restriction class whose value cannot be expanded: a 3.11 proxymap stops there. */
export class RestrictionClassError extends MacroExpansionError {
  constructor(readonly className: string, postfixMessage: string, message: string) {
    super(postfixMessage, message)
    this.name = 'RestrictionClassError'
  }
}

/** The class names of smtpd_restriction_classes, split as mystrtok() does (no brace groups). */
export function restrictionClassNames(value: string): string[] {
  // CHARS_COMMA_SP: ", \t\r\n"
  return value.split(/[, \t\r\n]+/).filter((word) => word !== '')
}

/**
 * What one service's process approves at start-up. Throws the configuration's
 * MacroExpansionError when its list (or, 3.11, a restriction class) cannot be expanded: Postfix
 * stops there with a fatal error.
 */
export function serviceApprovals(config: MainConfig, service: ProxyService, rules: ApprovalRules = approvalRulesFor('3.7'),
  readFile: IncludeReader = readIncludeFile): ApprovedTables {
  const parameter = PARAMETER_BY_SERVICE[service]
  const walk = new ApprovalWalk(rules, readFile)
  walk.add(getInDaemonScope(config, parameter, rules.daemonParameters, rules.defaults), parameter)
  if (rules.restrictionClasses && service === 'read') {
    const lookup = daemonScopeLookup(config, rules.daemonParameters, rules.defaults)
    for (const className of restrictionClassNames(getInDaemonScope(config, RESTRICTION_CLASSES, rules.daemonParameters, rules.defaults))) {
      const value = lookup(className)
      if (value === undefined) continue
      let expanded: string
      try {
        expanded = expandMacros(value, lookup)
      } catch (error) {
        if (!(error instanceof MacroExpansionError)) throw error
        throw new RestrictionClassError(className, error.postfixMessage,
          `cannot expand restriction class ${className} (listed in ${RESTRICTION_CLASSES}) of ${config.configDir}/main.cf: ${error.postfixMessage}`)
      }
      walk.add(expanded, RESTRICTION_CLASSES)
    }
  }
  return walk.result
}

export class AccessPolicy {
  constructor(
    private readonly tablesByService: Record<ProxyService, ReadonlySet<string>>,
    private readonly warningsByService: Record<ProxyService, readonly string[]> = { read: [], write: [] },
    /** The rules the lists were read with. */
    readonly rules: ApprovalRules = approvalRulesFor('3.7'),
    private readonly originsByService: Record<ProxyService, ReadonlyMap<string, string>> = { read: new Map(), write: new Map() },
  ) {}

  /**
   * The lists as a proxymap process of the rules' release computes them at start-up (Postfix
   * 3.7's unless told). Like that process, it expands them knowing only the defaults of the
   * parameters proxymap itself defines (rules.daemonParameters), which is not always what
   * `postconf -x` shows. Throws the configuration's MacroExpansionError when a list cannot be
   * expanded (self-reference).
   */
  static fromConfig(config: MainConfig, rules: ApprovalRules = approvalRulesFor('3.7'), readFile: IncludeReader = readIncludeFile): AccessPolicy {
    const read = serviceApprovals(config, 'read', rules, readFile)
    const write = serviceApprovals(config, 'write', rules, readFile)
    return new AccessPolicy({read: read.tables, write: write.tables}, {read: read.warnings, write: write.warnings}, rules,
      {read: read.origins, write: write.origins})
  }

  /** Whether the service may open `table` (leading proxy: prefixes are ignored, as Postfix does). */
  isApproved(service: ProxyService, table: string): boolean {
    return this.tablesByService[service].has(stripProxyPrefixes(table))
  }

  /** The approved table names of a service, without proxy: prefixes, in the order found. */
  approvedTables(service: ProxyService): ReadonlySet<string> {
    return this.tablesByService[service]
  }

  /** Where Postfix 3.11 would say an approved table came from: the list, smtpd_restriction_classes or a /file/name. */
  originOf(service: ProxyService, table: string): string | undefined {
    return this.originsByService[service].get(stripProxyPrefixes(table))
  }

  /** The warnings the service's process logs once at start-up about its list. */
  listWarnings(service: ProxyService): readonly string[] {
    return this.warningsByService[service]
  }

  parameterFor(service: ProxyService): ApprovalParameter {
    return PARAMETER_BY_SERVICE[service]
  }

  /** Postfix's two warnings (without the "warning: " tag) for a denied request; the same words in 3.7 to 3.11. */
  denialLog(service: ProxyService, table: string): string[] {
    const name = stripProxyPrefixes(table)
    const access = service === 'read' ? 'read-only' : 'read-write'
    return [
      `request for unapproved table: "${name}"`,
      `to approve this table for ${access} access, list proxy:${name} in main.cf:${this.parameterFor(service)}`,
    ]
  }
}
