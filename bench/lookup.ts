/**
 * npm run bench — lookup throughput of real Postfix clients (`postmap -q -`) through `proxy:`,
 * against (a) Postfix's own proxymap(8) and (b) our `proxymap serve`, on the same tables.
 *
 * Two private instances (test/helpers/postfix.ts) run side by side: real master(8) on one, our
 * server on the other; both approve the same table names (the files live in the first one).
 * For each number of concurrent clients the runs alternate between the servers, and every
 * client's output is checked (exit 0, one line per key, exact byte count), so a broken server
 * cannot look fast.
 *
 * Environment:
 *   BENCH_LOOKUPS     lookups per level, split over the clients (default 100000)
 *   BENCH_RUNS        runs per cell, the median is reported (default 3)
 *   BENCH_CLIENTS     concurrent client processes per level (default 1,2,4,8)
 *   BENCH_TYPES       table types: texthash, lmdb, pcre, regexp (default texthash)
 *   BENCH_TABLE_SIZE  entries in the table (default 100000); distinct keys for pcre/regexp
 *   BENCH_PATTERN_RULES  rules of the pcre/regexp tables (default 500): header_checks-like
 *                     Subject rules with a $1, then a catch-all; one key in 11 matches none
 *                     of the rules before the catch-all, the others one rule each, spread
 *                     evenly over the table
 *   BENCH_SERVERS     postfix,ours (default both; ours only when built)
 *   BENCH_OUR_ARGS    extra arguments for `proxymap serve`, space-separated
 *   BENCH_TIMEOUT_MS  per client process (default 120000): real clients retry forever
 *   PFX_KEEP=1        keep the instance directories
 */
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import {pathToFileURL} from 'node:url'

import {
  BUILT_SERVE_COMMAND,
  POSTCONF,
  POSTMAP,
  createPostfixInstance,
  descendantPids,
  procMemory,
  requirePostfix,
  runCommand,
  spawnTracked,
  type PostfixInstance,
} from '../test/helpers/postfix.js'

// ---------------------------------------------------------------------------- settings

function intEnv(name: string, fallback: number): number {
  const raw = process.env[name]
  if (raw === undefined || raw === '') return fallback
  const n = Number(raw)
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer, got "${raw}"`)
  return n
}

function listEnv(name: string, fallback: string): string[] {
  return (process.env[name] ?? fallback)
    .split(/[\s,]+/)
    .map((s) => s.trim())
    .filter(Boolean)
}

const LOOKUPS = intEnv('BENCH_LOOKUPS', 100_000)
const RUNS = intEnv('BENCH_RUNS', 3)
const TABLE_SIZE = intEnv('BENCH_TABLE_SIZE', 100_000)
const TIMEOUT_MS = intEnv('BENCH_TIMEOUT_MS', 120_000)
const CLIENTS = listEnv('BENCH_CLIENTS', '1,2,4,8').map((c) => {
  const n = Number(c)
  if (!Number.isInteger(n) || n <= 0) throw new Error(`BENCH_CLIENTS: bad number "${c}"`)
  return n
})
const PATTERN_RULES = intEnv('BENCH_PATTERN_RULES', 500)
const TYPES = listEnv('BENCH_TYPES', 'texthash')
const KNOWN_TYPES = ['texthash', 'lmdb', 'pcre', 'regexp']
for (const t of TYPES) if (!KNOWN_TYPES.includes(t)) throw new Error(`BENCH_TYPES: unsupported type "${t}" (${KNOWN_TYPES.join(', ')})`)
const SERVERS = listEnv('BENCH_SERVERS', 'postfix,ours')
const OUR_ARGS = listEnv('BENCH_OUR_ARGS', '')

type ServerName = 'postfix' | 'ours'

// ---------------------------------------------------------------------------- fixtures

/** The keys of a table and the value each must get. */
export interface Fixture {
  key: (i: number) => string
  value: (i: number) => string
}

export const ADDRESSES: Fixture = {
  key: (i) => `user${String(i).padStart(6, '0')}@example.com`,
  value: (i) => `mailbox-${String(i).padStart(6, '0')}@backend.example.net`,
}

/** Key i meets rule i % (rules * 1.1), or none of them (the catch-all) past the last one. */
const patternRule = (i: number): number => i % Math.floor(PATTERN_RULES * 1.1)
const SUBJECTS: Fixture = {
  key: (i) => (patternRule(i) < PATTERN_RULES
    ? `Subject: Buy cheap${patternRule(i)}${i % 2 ? 'pills' : 'watches'} now, offer ${i}`
    : `Subject: Minutes of the meeting ${i}`),
  value: (i) => (patternRule(i) < PATTERN_RULES ? `REJECT rule ${patternRule(i)}: ${i % 2 ? 'pills' : 'watches'}` : 'DUNNO'),
}

/** A header_checks-like table: rule r rejects "cheap<r>pills" and "cheap<r>watches" Subjects. */
function patternTable(): string {
  const rules = Array.from({length: PATTERN_RULES}, (_, r) => `/^Subject: .*cheap${r}(pills|watches)/ REJECT rule ${r}: $1`)
  return [...rules, '/^/ DUNNO', ''].join('\n')
}
export const key = ADDRESSES.key
export const value = ADDRESSES.value

/** Deterministic shuffle (mulberry32), so that runs are comparable; `seed` picks the order. */
export function shuffled(n: number, seed = 1): number[] {
  const rand = (): number => {
    seed = (seed + 0x6d2b79f5) | 0
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  const a = Array.from({length: n}, (_, i) => i)
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1))
    ;[a[i], a[j]] = [a[j]!, a[i]!]
  }
  return a
}

export interface KeyFile {
  path: string
  keys: number
  /** Exact size of a correct `postmap -q -` output: "key\tvalue\n" per key. */
  expectedBytes: number
}

/** Splits `lookups` keys over n clients (distinct slices of a shuffled order, wrapping around). */
export function writeKeyFiles(dir: string, fixture: Fixture, order: number[], n: number, lookups = LOOKUPS): KeyFile[] {
  const files: KeyFile[] = []
  let next = 0
  for (let c = 0; c < n; c++) {
    const count = Math.floor(lookups / n) + (c < lookups % n ? 1 : 0)
    const lines: string[] = []
    let expectedBytes = 0
    for (let j = 0; j < count; j++) {
      const i = order[next++ % order.length]!
      lines.push(fixture.key(i))
      expectedBytes += Buffer.byteLength(fixture.key(i)) + 1 + Buffer.byteLength(fixture.value(i)) + 1
    }
    const file = path.join(dir, `keys-${fixture === ADDRESSES ? 'addresses' : 'subjects'}-${n}-${c}`)
    fs.writeFileSync(file, lines.join('\n') + '\n')
    files.push({path: file, keys: count, expectedBytes})
  }
  return files
}

// ---------------------------------------------------------------------------- measuring

interface ClientResult {
  lines: number
  bytes: number
  code: number | null
  signal: NodeJS.Signals | null
  stderr: string
  timedOut: boolean
}

/** One real `postmap -q - proxy:TABLE < keyfile`, counting its output without keeping it. */
export function runClient(inst: PostfixInstance, table: string, file: KeyFile): Promise<ClientResult> {
  const fd = fs.openSync(file.path, 'r')
  return new Promise((resolve, reject) => {
    const child = spawnTracked(POSTMAP, ['-c', inst.etc, '-q', '-', `proxy:${table}`], {
      cwd: inst.dir,
      env: {...process.env, MAIL_CONFIG: inst.etc},
      stdio: [fd, 'pipe', 'pipe'],
    })
    fs.closeSync(fd)
    let lines = 0
    let bytes = 0
    let stderr = ''
    let timedOut = false
    child.stdout!.on('data', (d: Buffer) => {
      bytes += d.length
      for (let i = d.indexOf(10); i !== -1; i = d.indexOf(10, i + 1)) lines++
    })
    child.stderr!.on('data', (d: Buffer) => {
      if (stderr.length < 4096) stderr += d.toString()
    })
    const timer = setTimeout(() => {
      timedOut = true
      child.kill('SIGKILL')
    }, TIMEOUT_MS)
    child.once('error', (e) => {
      clearTimeout(timer)
      reject(e)
    })
    child.once('close', (code, signal) => {
      clearTimeout(timer)
      resolve({lines, bytes, code, signal, stderr, timedOut})
    })
  })
}

/** n concurrent clients; returns elapsed seconds, or throws when any output is wrong. */
export async function measure(inst: PostfixInstance, table: string, files: KeyFile[]): Promise<number> {
  const t0 = performance.now()
  const results = await Promise.all(files.map((f) => runClient(inst, table, f)))
  const seconds = (performance.now() - t0) / 1000
  results.forEach((r, i) => {
    const f = files[i]!
    if (r.code !== 0 || r.lines !== f.keys || r.bytes !== f.expectedBytes) {
      throw new Error(
        `client ${i + 1}/${files.length}: exit ${r.code ?? r.signal}${r.timedOut ? ` (killed after ${TIMEOUT_MS} ms)` : ''}, ` +
          `${r.lines}/${f.keys} lines, ${r.bytes}/${f.expectedBytes} bytes; stderr: ${r.stderr.trim() || '(empty)'}`,
      )
    }
  })
  return seconds
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b)
  const m = Math.floor(s.length / 2)
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2
}

// ---------------------------------------------------------------------------- reporting

const fmtInt = (n: number): string => Math.round(n).toLocaleString('en-US')
const fmtMb = (kb: number): string => `${(kb / 1024).toFixed(1)} MB`

function ourMemory(inst: PostfixInstance): string | undefined {
  const pid = inst.ourPid()
  if (pid === undefined) return undefined
  const procs = [pid, ...descendantPids(pid)].map(procMemory).filter((m) => m !== undefined)
  if (procs.length === 0) return undefined
  const main = procs[0]!
  let text = `peak RSS (VmHWM) of our server, pid ${pid}: ${fmtMb(main.peakRssKb)} (now ${fmtMb(main.rssKb)})`
  if (procs.length > 1) {
    const sum = procs.reduce((a, m) => a + m.peakRssKb, 0)
    text += `; with ${procs.length - 1} child process(es): ${fmtMb(sum)} summed`
  }
  return text
}

function postfixMemory(inst: PostfixInstance): string | undefined {
  const proxymaps = inst
    .pids()
    .filter((p) => {
      try {
        return fs.readlinkSync(`/proc/${p}/exe`).endsWith('/proxymap')
      } catch {
        return false
      }
    })
    .map(procMemory)
    .filter((m) => m !== undefined)
  if (proxymaps.length === 0) return undefined
  const max = Math.max(...proxymaps.map((m) => m.peakRssKb))
  const sum = proxymaps.reduce((a, m) => a + m.peakRssKb, 0)
  return `peak RSS (VmHWM) of Postfix proxymap: ${proxymaps.length} process(es), max ${fmtMb(max)}, sum ${fmtMb(sum)}`
}

// ---------------------------------------------------------------------------- main

interface Cell {
  times: number[]
  error?: string
}

async function main(): Promise<number> {
  requirePostfix()
  const wantOurs = SERVERS.includes('ours')
  const wantPostfix = SERVERS.includes('postfix')
  let oursUnavailable: string | undefined
  if (wantOurs && !fs.existsSync(BUILT_SERVE_COMMAND)) {
    oursUnavailable = `${path.relative(process.cwd(), BUILT_SERVE_COMMAND)} not built (src/commands/serve.ts missing or npm run build failed)`
  }
  const runOurs = wantOurs && oursUnavailable === undefined

  const version = (await runCommand(POSTCONF, ['-d', '-h', 'mail_version'])).stdout.trim()
  console.log(
    `# proxymap lookup benchmark ${new Date().toISOString()} — ${os.cpus().length} CPUs, load ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}, node ${process.version}, Postfix ${version}`,
  )
  console.log(
    `# real \`postmap -q -\` clients through proxy:, ${fmtInt(LOOKUPS)} lookups per level split over the clients ` +
      `(all hits, table of ${fmtInt(TABLE_SIZE)} entries; pcre/regexp: ${PATTERN_RULES} rules), median of ${RUNS} run(s)`,
  )
  if (oursUnavailable) console.log(`# ours: not measured: ${oursUnavailable}`)

  const real = await createPostfixInstance({prefix: 'proxymap-bench-pf-'})
  const ours = runOurs ? await createPostfixInstance({prefix: 'proxymap-bench-ours-'}) : undefined
  let failures = 0
  try {
    // Fixtures, in the real instance; names are shared by both servers.
    const src = Array.from({length: TABLE_SIZE}, (_, i) => `${ADDRESSES.key(i)}\t${ADDRESSES.value(i)}\n`).join('')
    const tables: Record<string, string> = {}
    for (const type of TYPES) {
      if (type === 'lmdb') tables[type] = await real.createTable('lmdb', 'bench', src)
      else if (type === 'texthash') tables[type] = await real.createTable('texthash', 'bench-th', src, {build: false})
      else tables[type] = await real.createTable(type, `bench.${type}`, patternTable(), {build: false})
    }
    const keyDir = path.join(real.dir, 'bench')
    fs.mkdirSync(keyDir)
    const order = shuffled(TABLE_SIZE)
    const fixtureOf = (type: string): Fixture => (type === 'pcre' || type === 'regexp' ? SUBJECTS : ADDRESSES)
    const keyFilesOf = new Map([ADDRESSES, SUBJECTS].map((f) => [f, new Map(CLIENTS.map((n) => [n, writeKeyFiles(keyDir, f, order, n)]))]))
    const all = Object.values(tables)

    const servers: {name: ServerName; inst: PostfixInstance}[] = []
    if (wantPostfix) {
      await real.approve({read: all})
      await real.startPostfix()
      servers.push({name: 'postfix', inst: real})
    }
    if (ours) {
      await ours.approve({read: all})
      try {
        await ours.startOurs(OUR_ARGS)
        servers.push({name: 'ours', inst: ours})
      } catch (e) {
        failures++
        console.log(`# ours: FAILED to start: ${(e as Error).message}`)
      }
    }

    for (const type of TYPES) {
      const table = tables[type]!
      const keyFiles = keyFilesOf.get(fixtureOf(type))!
      // Warm-up and gate at the highest concurrency: Postfix's master forks one proxymap per
      // concurrent client and each loads the table on its first open; measure steady state.
      const gateFiles = keyFiles.get(Math.max(...CLIENTS))!
      const cells = new Map<string, Cell>()
      const broken = new Map<ServerName, string>()

      // Warm-up and correctness gate (unmeasured).
      for (const {name, inst} of servers) {
        try {
          await measure(inst, table, gateFiles)
        } catch (e) {
          broken.set(name, `gate: ${(e as Error).message}`)
        }
      }

      for (const n of CLIENTS) {
        for (let r = 0; r < RUNS; r++) {
          // Alternate who goes first, so that drift in machine load hits both alike.
          const turn = r % 2 === 0 ? servers : [...servers].reverse()
          for (const {name, inst} of turn) {
            const cell = cells.get(`${name}/${n}`) ?? {times: []}
            cells.set(`${name}/${n}`, cell)
            if (broken.has(name)) continue
            try {
              cell.times.push(await measure(inst, table, keyFiles.get(n)!))
            } catch (e) {
              cell.error = (e as Error).message
              broken.set(name, `${n} client(s): ${cell.error}`)
            }
          }
        }
      }

      console.log(`\n## proxy:${type}  (${table})`)
      const header = ['clients', 'Postfix lookups/s', 'ours lookups/s', 'ours/Postfix', 'Postfix runs (s)', 'ours runs (s)']
      const rows: string[][] = [header]
      for (const n of CLIENTS) {
        const rate = (name: ServerName): number | undefined => {
          const c = cells.get(`${name}/${n}`)
          return c && !c.error && c.times.length === RUNS ? LOOKUPS / median(c.times) : undefined
        }
        const shown = (name: ServerName): string => {
          if (!servers.some((s) => s.name === name)) return '-'
          const v = rate(name)
          return v === undefined ? 'FAIL' : fmtInt(v)
        }
        const runs = (name: ServerName): string => (cells.get(`${name}/${n}`)?.times ?? []).map((t) => t.toFixed(2)).join(' ') || '-'
        const p = rate('postfix')
        const o = rate('ours')
        rows.push([
          String(n),
          shown('postfix'),
          shown('ours'),
          p !== undefined && o !== undefined ? `${(o / p).toFixed(2)}x` : '-',
          runs('postfix'),
          runs('ours'),
        ])
      }
      const widths = header.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)))
      for (const row of rows) console.log(row.map((c, i) => (i < 4 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd())
      for (const [name, why] of broken) {
        failures++
        console.log(`# ${name}: FAILED on proxy:${type}: ${why}`)
      }
    }

    console.log('')
    if (wantPostfix) console.log(`# ${postfixMemory(real) ?? 'Postfix proxymap memory: no process found'}`)
    if (ours && ours.ourPid() !== undefined) console.log(`# ${ourMemory(ours) ?? 'our server memory: /proc not readable'}`)
    if (ours) {
      const stopped = await ours.stopOurs()
      if (stopped.forced || stopped.code !== 0) {
        console.log(`# ours: did not stop cleanly on SIGTERM: ${JSON.stringify(stopped)}`)
      }
      const warnings = ours
        .ourStderr()
        .split('\n')
        .filter((l) => /warning|error|fatal|panic/i.test(l))
      if (warnings.length > 0) console.log(`# ours: ${warnings.length} warning/error line(s) on stderr, first: ${warnings[0]}`)
    }
  } finally {
    await ours?.destroy()
    await real.destroy()
  }
  return failures > 0 ? 1 : 0
}

// Run as a script (npm run bench), not when bench/all.mts imports the measuring functions.
if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  main().then(
    (code) => process.exit(code),
    (e: unknown) => {
      console.error(e instanceof Error ? (e.stack ?? e.message) : e)
      process.exit(2)
    },
  )
}
