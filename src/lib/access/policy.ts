// The approval check of Postfix 3.7's proxymap (proxy_map_find() in src/proxymap/proxymap.c):
// a request for a table that its service's list does not approve gets DENY and two warnings.

import { PROXYMAP_DAEMON_PARAMETERS, getInDaemonScope, type MainConfig } from '../config/index.js'
import { stripProxyPrefixes } from '../util/postfix-strings.js'
import { approvedTables, type ApprovalParameter } from './approval-list.js'

/** proxymap (read-only, proxy_read_maps) or proxywrite (read-write, proxy_write_maps). */
export type ProxyService = 'read' | 'write'

const PARAMETER_BY_SERVICE: Record<ProxyService, ApprovalParameter> = {
  read: 'proxy_read_maps',
  write: 'proxy_write_maps',
}

export class AccessPolicy {
  constructor(
    private readonly tablesByService: Record<ProxyService, ReadonlySet<string>>,
    private readonly warningsByService: Record<ProxyService, readonly string[]> = { read: [], write: [] },
  ) {}

  /**
   * The lists as a Postfix 3.7 proxymap process computes them at start-up. Like that process,
   * it expands them knowing only the defaults of the parameters proxymap itself defines (see
   * PROXYMAP_DAEMON_PARAMETERS), which is not always what `postconf -x` shows. Throws the
   * configuration's MacroExpansionError when a list cannot be expanded (self-reference).
   */
  static fromConfig(config: MainConfig): AccessPolicy {
    const tables = {} as Record<ProxyService, ReadonlySet<string>>
    const warnings = {} as Record<ProxyService, readonly string[]>
    for (const service of ['read', 'write'] as const) {
      const parameter = PARAMETER_BY_SERVICE[service]
      const approved = approvedTables(getInDaemonScope(config, parameter, PROXYMAP_DAEMON_PARAMETERS), parameter)
      tables[service] = approved.tables
      warnings[service] = approved.warnings
    }
    return new AccessPolicy(tables, warnings)
  }

  /** Whether the service may open `table` (leading proxy: prefixes are ignored, as Postfix does). */
  isApproved(service: ProxyService, table: string): boolean {
    return this.tablesByService[service].has(stripProxyPrefixes(table))
  }

  /** The approved table names of a service, without proxy: prefixes, in list order. */
  approvedTables(service: ProxyService): ReadonlySet<string> {
    return this.tablesByService[service]
  }

  /** The warnings the service's process logs once at start-up about its list. */
  listWarnings(service: ProxyService): readonly string[] {
    return this.warningsByService[service]
  }

  parameterFor(service: ProxyService): ApprovalParameter {
    return PARAMETER_BY_SERVICE[service]
  }

  /** Postfix's two warnings (without the "warning: " tag) for a denied request. */
  denialLog(service: ProxyService, table: string): string[] {
    const name = stripProxyPrefixes(table)
    const access = service === 'read' ? 'read-only' : 'read-write'
    return [
      `request for unapproved table: "${name}"`,
      `to approve this table for ${access} access, list proxy:${name} in main.cf:${this.parameterFor(service)}`,
    ]
  }
}
