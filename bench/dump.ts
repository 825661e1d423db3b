// `proxymap dump` of a large lmdb table made by real postmap, against Postfix:
//   direct   `proxymap dump lmdb:F` against `postmap -s lmdb:F`
//   proxy    `proxymap dump proxy:lmdb:F` through our `serve` against the same command
//            through real Postfix 3.7's proxymap(8) (3.7's postmap -s refuses proxy:)
// Wall time and peak RSS (VmHWM, /usr/bin/time when present, else sampled from /proc) of the
// listing process, and each server's peak RSS. Runs alternate ours/theirs; medians reported;
// every listing's line count is checked. Goals (issue 15): direct within 1.5x of postmap -s
// and at most 100 MB; through the proxy faster than Postfix's proxymap.
//   npm run bench:dump
// DUMP_ENTRIES (comma-separated sizes, default 200000,1000000), DUMP_PROXY_ENTRIES (sizes
// listed through the proxies, default 200000; 0 for none), DUMP_RUNS (default 3).

import {spawn} from 'node:child_process'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import {pathToFileURL} from 'node:url'
import {PROJECT_BIN, POSTMAP, createPostfixInstance, procMemory, type PostfixInstance} from '../test/helpers/postfix.js'

export interface Listing {
  ms: number
  peakRssKb: number
  lines: number
  code: number | null
}

const TIME = '/usr/bin/time'

/** One listing process, its output counted from a pipe (as a reader of `dump |` sees it). */
export async function measureListing(command: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<Listing> {
  const useTime = fs.existsSync(TIME)
  const report = path.join(os.tmpdir(), `pm-bench-time-${process.pid}-${Math.random().toString(36).slice(2)}`)
  const started = performance.now()
  const child = useTime
    ? spawn(TIME, ['-f', '%M', '-o', report, command, ...args], {stdio: ['ignore', 'pipe', 'inherit'], env})
    : spawn(command, args, {stdio: ['ignore', 'pipe', 'inherit'], env})
  let peak = 0
  let lines = 0
  child.stdout.on('data', (d: Buffer) => {
    for (let i = d.indexOf(10); i !== -1; i = d.indexOf(10, i + 1)) lines++
  })
  const timer = useTime ? undefined : setInterval(() => {
    const m = child.pid === undefined ? undefined : procMemory(child.pid)
    if (m) peak = Math.max(peak, m.peakRssKb)
  }, 10)
  const code = await new Promise<number | null>(resolve => child.once('close', c => resolve(c)))
  const ms = performance.now() - started
  clearInterval(timer)
  if (useTime) {
    peak = Number(fs.readFileSync(report, 'utf8').trim().split('\n').pop())
    fs.rmSync(report, {force: true})
  }
  return {ms, peakRssKb: peak, lines, code}
}

export const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b)
  const m = Math.floor(s.length / 2)
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}

export interface DumpSide {
  /** Median wall time of the runs. */
  ms: number
  /** Highest peak RSS of the listing process over the runs. */
  peakRssKb: number
  /** The server's peak RSS (proxy cells). */
  serverPeakRssKb?: number
  runs: number[]
}

export interface DumpCell {
  entries: number
  path: 'direct' | 'proxy'
  ours: DumpSide
  postfix: DumpSide
}

export interface DumpBenchOptions {
  /** Table sizes listed directly. */
  sizes: number[]
  /** Table sizes listed through the proxies (one request per entry: slower). */
  proxySizes: number[]
  runs: number
  /** Progress lines. */
  log?: (line: string) => void
}

async function side(runs: Listing[], expected: number, label: string): Promise<DumpSide> {
  for (const r of runs) if (r.code !== 0 || r.lines !== expected) throw new Error(`${label}: exit ${r.code}, ${r.lines}/${expected} lines`)
  return {ms: median(runs.map(r => r.ms)), peakRssKb: Math.max(...runs.map(r => r.peakRssKb)), runs: runs.map(r => r.ms)}
}

/** The whole comparison: one lmdb table per size, each cell run ours/theirs alternately. */
export async function benchDump(options: DumpBenchOptions): Promise<DumpCell[]> {
  const log = options.log ?? (() => undefined)
  const real = await createPostfixInstance({prefix: 'pm-bench-dump-pf-'})
  const ours = options.proxySizes.length > 0 ? await createPostfixInstance({prefix: 'pm-bench-dump-ours-'}) : undefined
  const cells: DumpCell[] = []
  try {
    const tables: [number, string][] = []
    for (const entries of [...new Set([...options.sizes, ...options.proxySizes])]) {
      const source = `${real.data}/big-${entries}`
      const out = fs.createWriteStream(source)
      for (let i = 0; i < entries; i++) out.write(`key${i}@example.com\tvalue-${i}-${'x'.repeat(20)}\n`)
      await new Promise(r => out.end(r))
      const t0 = performance.now()
      tables.push([entries, await real.createTable('lmdb', source, undefined, {})])
      log(`postmap lmdb: ${entries} entries in ${Math.round(performance.now() - t0)} ms`)
    }
    const names = tables.map(([, t]) => t)
    for (const [entries, table] of tables.filter(([n]) => options.sizes.includes(n))) {
      const direct: {ours: Listing[]; postfix: Listing[]} = {ours: [], postfix: []}
      for (let r = 0; r < options.runs; r++) {
        const order = r % 2 === 0 ? ['postfix', 'ours'] as const : ['ours', 'postfix'] as const
        for (const who of order) {
          direct[who].push(who === 'ours'
            ? await measureListing(process.execPath, [PROJECT_BIN, 'dump', '-c', real.etc, table])
            : await measureListing(POSTMAP, ['-c', real.etc, '-s', table]))
        }
      }
      cells.push({entries, path: 'direct', ours: await side(direct.ours, entries, 'ours direct'), postfix: await side(direct.postfix, entries, 'postmap -s')})
      log(`direct ${entries}: done`)
    }
    if (ours) {
      await real.approve({read: names})
      await ours.approve({read: names})
      await real.startPostfix()
      await ours.startOurs()
      try {
        for (const [entries, table] of tables.filter(([n]) => options.proxySizes.includes(n))) {
          const runs: {ours: Listing[]; postfix: Listing[]} = {ours: [], postfix: []}
          for (let r = 0; r < options.runs; r++) {
            const order = r % 2 === 0 ? ['postfix', 'ours'] as const : ['ours', 'postfix'] as const
            for (const who of order) {
              const inst: PostfixInstance = who === 'ours' ? ours : real
              runs[who].push(await measureListing(process.execPath, [PROJECT_BIN, 'dump', '-c', inst.etc, `proxy:${table}`]))
            }
          }
          const cell: DumpCell = {entries, path: 'proxy', ours: await side(runs.ours, entries, 'ours proxy'), postfix: await side(runs.postfix, entries, 'Postfix proxymap')}
          cell.ours.serverPeakRssKb = procMemory(ours.ourPid()!)?.peakRssKb
          cell.postfix.serverPeakRssKb = postfixProxymapPeakKb(real)
          cells.push(cell)
          log(`proxy ${entries}: done`)
        }
      } finally {
        await ours.stopOurs()
        await real.stopPostfix()
      }
    }
  } finally {
    await ours?.destroy()
    await real.destroy()
  }
  return cells
}

/** The largest peak RSS among the instance's proxymap(8) processes. */
export function postfixProxymapPeakKb(inst: PostfixInstance): number | undefined {
  const peaks = inst.pids().filter(p => {
    try {
      return fs.readlinkSync(`/proc/${p}/exe`).endsWith('/proxymap')
    } catch {
      return false
    }
  }).map(p => procMemory(p)?.peakRssKb ?? 0)
  return peaks.length > 0 ? Math.max(...peaks) : undefined
}

const mb = (kb: number | undefined): string => (kb === undefined ? '-' : `${Math.round(kb / 1024)} MB`)
const s = (ms: number): string => `${(ms / 1000).toFixed(2)} s`

export function dumpRows(cells: DumpCell[]): string[][] {
  return cells.map(c => [
    `${c.path === 'direct' ? 'direct dump' : 'dump through proxymap'}, ${c.entries.toLocaleString('en-US')} lmdb entries`,
    `${s(c.postfix.ms)}, ${mb(c.postfix.peakRssKb)}${c.postfix.serverPeakRssKb ? ` (server ${mb(c.postfix.serverPeakRssKb)})` : ''}`,
    `${s(c.ours.ms)}, ${mb(c.ours.peakRssKb)}${c.ours.serverPeakRssKb ? ` (server ${mb(c.ours.serverPeakRssKb)})` : ''}`,
    `${(c.postfix.ms / c.ours.ms).toFixed(2)}x`,
  ])
}

async function main(): Promise<void> {
  const sizes = (process.env.DUMP_ENTRIES ?? '200000,1000000').split(',').map(Number)
  const proxySizes = (process.env.DUMP_PROXY_ENTRIES ?? '200000').split(',').map(Number).filter(n => n > 0)
  const runs = Number(process.env.DUMP_RUNS ?? 3)
  const cells = await benchDump({sizes, proxySizes, runs, log: line => console.log(`# ${line}`)})
  console.log(`\n# proxymap dump vs Postfix, median of ${runs} alternating runs (ratio: Postfix time / ours, > 1 is faster)`)
  console.log('| workload | Postfix 3.7 | ours | ratio |')
  console.log('|---|---|---|---|')
  for (const row of dumpRows(cells)) console.log(`| ${row.join(' | ')} |`)
  for (const c of cells.filter(c => c.path === 'direct')) {
    const ok = c.ours.ms <= 1.5 * c.postfix.ms && c.ours.peakRssKb <= 100 * 1024
    console.log(`# direct ${c.entries}: goal (<= 1.5x postmap -s time, <= 100 MB): ${ok ? 'met' : 'NOT met'}`)
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await main()
