// How `proxymap stats` shows a snapshot: tables for people, key=value lines for programs
// (and for --watch in a pipe: one set of lines per second, each with its time).

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

/** Width of the tables table's other columns and its nine borders (see renderStatsTables). */
const TABLE_COLUMNS_WIDTH = 60

/**
 * Per service: a summary, the requests by type and status, then its tables, the table
 * names wrapped to fit `columns` (the terminal's width).
 */
export function renderStatsTables(snapshot: StatsSnapshot, color: boolean, columns = 80): string {
  const c = makeChalk(color)
  const out = [c.bold(`proxymap serve (pid ${snapshot.pid}), up ${seconds(snapshot.uptimeSeconds)}`)]
  for (const s of snapshot.services) {
    const rejected = s.badRequests + s.unrecognizedRequests + s.malformedInput
    out.push('',
      `${c.bold(s.service)}: ${s.total} requests, ${s.hits} hits, ${s.misses} misses, ${rejected} rejected before a table`,
      `  ${s.openInstances} tables open; connections: ${s.connections.open} open, ${s.connections.accepted} accepted`,
      `  latency: mean ${mean(s.latency)}, p99 <= ${seconds(latencyQuantileBound(s.latency, 0.99))}`)
    const rows = REQUEST_TYPES.map(type => [type,
      ...STATUS_NAMES.map(status => {
        const n = s.requests[type][status]
        return n > 0 ? colorStatus(c, status, String(n)) : '0'
      }),
      String(requestsOf(s, type))])
    out.push(renderTable(rows, {head: ['request', ...STATUS_NAMES, 'total'], color}))
    if (s.tables.length === 0) continue
    const tables = s.tables.map(t => [
      t.table, String(t.total), String(t.hits), String(t.misses), String(failures(t)),
      seconds(latencyQuantileBound(t.latency, 0.99)), String(t.openInstances),
      t.pool ? `${t.pool.connections}/${t.pool.busy}/${t.pool.queued}` : '-',
    ])
    out.push(renderTable(tables, {
      head: ['table', 'reqs', 'hits', 'misses', 'errors', 'p99<=', 'open', 'pool'], color,
      colWidths: [Math.max(20, columns - TABLE_COLUMNS_WIDTH), 6, 6, 8, 8, 8, 6, 9], wordWrap: true, wrapAnywhere: true,
    }))
    if (s.tables.some(t => t.pool)) out.push('  pool: backend connections/busy/queued')
  }
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
