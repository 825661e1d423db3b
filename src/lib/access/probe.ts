// --probe: ask the running service (Postfix's proxymap or ours) to open the table and look
// a probe key up, and say what the status means and what to do next.

import {ServiceClientPool, expectedDialect, serviceSocketPath, type ServiceKind} from '../client/service-client.js'
import type {MainConfig} from '../config/index.js'
import {DICT_FLAG, PROXY_STAT_NAME} from '../protocol/index.js'
import {ProxyStatusError, ProxyTable} from '../tables/proxy.js'
import {TableError} from '../tables/table.js'

export type ProbeStatus = 'OK' | 'NOKEY' | 'RETRY' | 'BAD' | 'DENY' | 'CONFIG' | 'UNREACHABLE'

export interface ProbeResult {
  /** proxymap or proxywrite (the service name as in master.cf). */
  service: string
  socket: string
  key: string
  /** Status of the open request (undefined when the service could not be reached). */
  open?: string
  /** Status of the lookup (only sent when open said OK). */
  lookup?: string
  /** The overall answer: the lookup status, else the open status, else UNREACHABLE. */
  status: ProbeStatus
  /** What the status means, in plain words. */
  meaning: string
  /** What to do next. */
  next: string
  /** Error text when the service could not be reached or spoke something else. */
  error?: string
  /** The service's answer contradicts main.cf as it is now: it still has the lists it read at start-up. */
  staleService?: boolean
}

/** The default probe key: unlikely to exist, so NOKEY is the normal healthy answer. */
export const DEFAULT_PROBE_KEY = 'proxymap-check-access-probe'

// The flags postmap -q opens with, minus FOLD_FIX: the probe key is already lower case.
const PROBE_DICT_FLAGS = DICT_FLAG.LOCK | DICT_FLAG.DUP_WARN | DICT_FLAG.UTF8_REQUEST

export async function probeTable(config: MainConfig, table: string, kind: ServiceKind, key = DEFAULT_PROBE_KEY, timeoutMs = 10_000): Promise<ProbeResult> {
  const service = config.get(kind === 'read' ? 'proxymap_service_name' : 'proxywrite_service_name')
  const socket = serviceSocketPath(config, kind)
  // The same client as `proxymap query`, in whichever dialect the service speaks.
  const pool = new ServiceClientPool('auto', {timeoutMs, expectedDialect: expectedDialect(config)})
  const base = {service, socket, key}
  const quiet = {warning: () => undefined, error: () => undefined, info: () => undefined}
  const answer = (request: 'open' | 'lookup', status: ProbeStatus, open?: string): ProbeResult => ({
    ...base, ...(request === 'open' ? {open: status} : {open, lookup: status}), status, ...explainStatus(status, service, table, request),
  })
  let opened: ProxyTable
  try {
    opened = await ProxyTable.open(table, {mode: kind, dictFlags: PROBE_DICT_FLAGS, config, log: quiet, proxyClients: pool,
      openNested: () => Promise.reject(new Error('no nested tables'))})
  } catch (err) {
    pool.closeAll()
    if (err instanceof ProxyStatusError) return answer('open', (PROXY_STAT_NAME[err.status] ?? String(err.status)) as ProbeStatus)
    return {...base, status: 'UNREACHABLE', error: (err as Error).message, ...explainStatus('UNREACHABLE', service, table, 'open')}
  }
  try {
    const value = await opened.lookup(key)
    return answer('lookup', value === undefined ? 'NOKEY' : 'OK', 'OK')
  } catch (err) {
    if (err instanceof ProxyStatusError) return answer('lookup', (PROXY_STAT_NAME[err.status] ?? String(err.status)) as ProbeStatus, 'OK')
    if (err instanceof TableError) return answer('lookup', err.kind === 'retry' ? 'RETRY' : 'CONFIG', 'OK')
    return {...base, open: 'OK', status: 'UNREACHABLE', error: (err as Error).message, ...explainStatus('UNREACHABLE', service, table, 'lookup')}
  } finally {
    pool.closeAll()
  }
}

/**
 * The probe next to main.cf's verdict. A proxymap process reads proxy_read_maps and
 * proxy_write_maps once, at start-up: after main.cf changed, the running service and
 * main.cf disagree until "postfix reload", and the report says so instead of printing
 * "DENIED" and "access works" side by side.
 */
export function reconcileWithMainCf(probe: ProbeResult, approvedByMainCf: boolean, entry: string, list: string): ProbeResult {
  const answered = probe.status === 'OK' || probe.status === 'NOKEY'
  if (approvedByMainCf && probe.status === 'DENY') {
    return {
      ...probe, staleService: true,
      meaning: `main.cf approves ${entry} (${list}), but the running ${probe.service} service answered DENY: it still has the lists it read when it started, before main.cf changed (or it runs with another configuration directory, or by another Postfix release's rules)`,
      next: `run "postfix reload" (or restart "proxymap serve") so that the ${probe.service} service reads main.cf again, then probe again`,
    }
  }
  if (!approvedByMainCf && answered) {
    return {
      ...probe, staleService: true,
      meaning: `the running ${probe.service} service still answers for ${entry} (${probe.status}), but main.cf as it is now does not approve it: the service has the lists it read when it started, before main.cf changed; after the next "postfix reload" it will answer DENY`,
      next: `list ${entry} in main.cf:${list} (see above) before the next "postfix reload", or leave it out if it was removed on purpose`,
    }
  }
  return probe
}

/** Each status in plain words, with the next step. */
export function explainStatus(status: ProbeStatus, service: string, table: string, request: 'open' | 'lookup'): {meaning: string; next: string} {
  switch (status) {
    case 'OK':
      return {meaning: `the ${service} service opened ${table} and found the probe key: the table works through the proxy`, next: 'nothing to do'}
    case 'NOKEY':
      return {meaning: `the ${service} service opened ${table} and looked the probe key up: not found, which is the normal answer for a probe key; access works`, next: 'nothing to do'}
    case 'RETRY':
      return {
        meaning: `the ${service} service is configured for ${table} but could not ${request === 'open' ? 'open' : 'read'} it: a missing or unreadable file (it runs as mail_owner), or a backend (SQL, LDAP) that is down. Postfix answers "open" with OK even then, and every request with RETRY`,
        next: `look for ${service}'s error in the mail log (e.g. "open database ...: Permission denied" or "No such file"), fix the file or backend, then run "postfix reload"`,
      }
    case 'BAD':
      return {meaning: `the ${service} service rejected the ${request} request as malformed`, next: 'check the table name (type:name) and that you talk to a proxymap service of the same Postfix version'}
    case 'DENY':
      return {
        meaning: `the running ${service} service is not configured for ${table}`,
        next: `list proxy:${table} in main.cf (see above), then run "postfix reload": a running proxymap keeps the list it read at start-up`,
      }
    case 'CONFIG':
      return {
        meaning: `the ${service} service reports a configuration error for ${table}: the table itself is broken (a syntax error in its file, or a map type that the proxymap process does not have, such as a missing dynamicmaps.cf plugin)`,
        next: `read ${service}'s error in the mail log ("unsupported dictionary type", "dynamicmaps.cf: ... skipping"), fix the table, then run "postfix reload"`,
      }
    case 'UNREACHABLE':
      return {
        meaning: `no ${service} service answered for this configuration`,
        next: 'start Postfix ("postfix start") or "proxymap serve -c DIR", and check -c points at the configuration the service uses',
      }
  }
}
