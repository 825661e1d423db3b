// How `proxymap stats` shows a snapshot: tables for people, key=value lines for programs
// (and for --watch in a pipe: one set of lines per second, each with its time).

import type {ChalkInstance} from 'chalk'
import {colorStatus, makeChalk, renderTable} from '../cli/render.js'
import {
  type CountersSnapshot, type LatencySnapshot, REQUEST_TYPES, STATUS_NAMES, type StatsSnapshot, latencyQuantileBound,
} from '../server/stats.js'

function seconds(value: number | undefined): string {
  if (value === undefined) return '-'
  if (!Number.isFinite(value)) return `>${seconds(10)}`
  if (value < 0.001) return `${Math.round(value * 1e6)}us`
  if (value < 1) return `${+(value * 1000).toPrecision(3)}ms`
  return `${+value.toPrecision(3)}s`
}

function mean(latency: LatencySnapshot): string {
  return latency.count === 0 ? '-' : seconds(latency.sumSeconds / latency.count)
}

function byStatus(counters: CountersSnapshot): Record<string, number> {
  const sums: Record<string, number> = {}
  for (const status of STATUS_NAMES) sums[status] = REQUEST_TYPES.reduce((n, type) => n + counters.requests[type][status], 0)
  return sums
}

function requestsOf(counters: CountersSnapshot, type: (typeof REQUEST_TYPES)[number]): number {
  return STATUS_NAMES.reduce((n, status) => n + counters.requests[type][status], 0)
}

/** Replies other than OK and NOKEY. */
function failures(counters: CountersSnapshot): number {
  const sums = byStatus(counters)
  return sums.RETRY + sums.BAD + sums.DENY + sums.CONFIG
}

function statusCells(c: ChalkInstance, counters: CountersSnapshot): string[] {
  const sums = byStatus(counters)
  return STATUS_NAMES.map(status => sums[status] > 0 ? colorStatus(c, status, String(sums[status])) : '0')
}

/** The snapshot as two tables: the services, then the tables they have served. */
export function renderStatsTables(snapshot: StatsSnapshot, color: boolean): string {
  const c = makeChalk(color)
  const services = snapshot.services.map(s => [
    s.service, String(s.total), ...statusCells(c, s), String(s.hits), String(s.misses),
    String(s.badRequests + s.unrecognizedRequests + s.malformedInput), String(s.openInstances),
    `${s.connections.open}/${s.connections.accepted}`, mean(s.latency), seconds(latencyQuantileBound(s.latency, 0.99)),
  ])
  const head = `proxymap serve (pid ${snapshot.pid}), up ${seconds(snapshot.uptimeSeconds)}`
  const out = [c.bold(head), renderTable(services, {
    head: ['service', 'requests', ...STATUS_NAMES, 'hits', 'misses', 'rejected', 'tables', 'conns', 'mean', 'p99<='], color,
  })]
  const tables = snapshot.services.flatMap(s => s.tables.map(t => [
    s.service, t.table, String(requestsOf(t, 'lookup')), String(t.hits), String(t.misses),
    String(requestsOf(t, 'update') + requestsOf(t, 'delete')), String(failures(t)),
    mean(t.latency), seconds(latencyQuantileBound(t.latency, 0.99)), String(t.openInstances),
    t.pool ? `${t.pool.connections}/${t.pool.busy}/${t.pool.queued}` : '-',
  ]))
  if (tables.length > 0) out.push(renderTable(tables, {
    head: ['service', 'table', 'lookups', 'hits', 'misses', 'writes', 'errors', 'mean', 'p99<=', 'inst', 'pool c/b/q'], color,
  }))
  return out.join('\n')
}

function countersLine(counters: CountersSnapshot): string {
  const sums = byStatus(counters)
  return [`requests=${counters.total}`, ...STATUS_NAMES.map(s => `${s}=${sums[s]}`), `hits=${counters.hits}`, `misses=${counters.misses}`,
    `mean=${mean(counters.latency)}`, `p99<=${seconds(latencyQuantileBound(counters.latency, 0.99))}`].join(' ')
}

/** One key=value line per service and per table (`prefix`: e.g. the time, for --watch). */
export function renderStatsLines(snapshot: StatsSnapshot, prefix = ''): string {
  const lines: string[] = []
  for (const s of snapshot.services) {
    lines.push(`${prefix}service=${s.service} ${countersLine(s)} bad=${s.badRequests} unrecognized=${s.unrecognizedRequests} malformed=${s.malformedInput} instances=${s.openInstances} connections=${s.connections.open} accepted=${s.connections.accepted}`)
    for (const t of s.tables) {
      const pool = t.pool ? ` pool_connections=${t.pool.connections} pool_busy=${t.pool.busy} pool_queued=${t.pool.queued}` : ''
      lines.push(`${prefix}service=${s.service} table=${t.table} ${countersLine(t)} instances=${t.openInstances}${pool}`)
    }
  }
  return lines.join('\n')
}
