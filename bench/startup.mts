/**
 * npm run bench:startup — how fast a command and a new daemon start, against Postfix.
 *
 *   query      `proxymap query -c ETC texthash:FILE key` (a whole process, as a shell runs it)
 *              vs `postmap -c ETC -q key texthash:FILE` vs `node -e 0` (Node's own floor)
 *   first lookup
 *              under a real master(8) whose proxymap entry has `-o max_use=1`, so that every
 *              client meets a daemon started for it: the time from connect() to the lookup's
 *              answer (master's fork and exec, the daemon's start, the table's open), ours
 *              (master.cf pointing at bin/run.js serve) vs Postfix's proxymap
 *
 * Each cell is the median of BENCH_RUNS runs (default 15); every answer is checked, so a
 * broken command cannot look fast. Wall-clock times: run on a quiet machine. On a loaded one
 * the query's CPU time (user + system, the mean of the runs: Linux counts children's in
 * clock ticks) says more: the other engineers' load stretches wall time, not CPU time.
 *
 * Environment:
 *   BENCH_RUNS        runs per cell (default 15)
 *   BENCH_TIMEOUT_MS  per run (default 20000)
 *   PFX_KEEP=1        keep the instance directory
 */
import * as fs from 'node:fs'
import net from 'node:net'
import * as path from 'node:path'

import {
  PROJECT_BIN,
  NODE_EXECUTABLE,
  POSTMAP,
  backdate,
  createPostfixInstance,
  processesRunning,
  requirePostfix,
  runCommand,
  waitFor,
  type PostfixInstance,
} from '../test/helpers/postfix.js'
import {AttrDecoder, DICT_FLAG, encodeRequest} from '../src/lib/protocol/index.js'

const RUNS = Number(process.env.BENCH_RUNS ?? 15)
const TIMEOUT_MS = Number(process.env.BENCH_TIMEOUT_MS ?? 20_000)
const DAEMON_DIRECTORY = '/usr/lib/postfix/sbin'
const KEY = 'alice@example.com'
const VALUE = 'alice@mailbox.example.com'

/** CPU time (user + system) of this process's waited-for children so far, in ms (/proc/self/stat cutime + cstime). */
function childrenCpuMs(): number {
  const fields = fs.readFileSync('/proc/self/stat', 'utf8').split(') ')[1]!.split(' ')
  return (Number(fields[13]) + Number(fields[14])) * 10 // USER_HZ is 100 on Linux
}

function mean(values: number[]): number {
  return values.reduce((a, b) => a + b, 0) / values.length
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  return sorted[Math.floor((sorted.length - 1) / 2)]
}

/** Wall-clock and CPU milliseconds of one run. */
async function timedCommand(command: string, args: string[], expected: string): Promise<{ms: number; cpuMs: number}> {
  const cpuBefore = childrenCpuMs()
  const start = performance.now()
  const r = await runCommand(command, args, {timeoutMs: TIMEOUT_MS})
  const ms = performance.now() - start
  if (r.code !== 0 || r.stdout !== expected) throw new Error(`${command} ${args.join(' ')}: exit ${r.code}, ${JSON.stringify(r.stdout)} ${r.stderr}`)
  return {ms, cpuMs: childrenCpuMs() - cpuBefore}
}

/** connect(), the server's announcement, one legacy lookup, its reply: milliseconds from connect() to the reply. */
function firstLookup(socketPath: string, table: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const start = performance.now()
    const decoder = new AttrDecoder()
    let messages = 0
    const socket = net.createConnection({path: socketPath})
    const timer = setTimeout(() => { socket.destroy(); reject(new Error(`no answer from ${socketPath} in ${TIMEOUT_MS} ms`)) }, TIMEOUT_MS)
    socket.on('error', err => { clearTimeout(timer); reject(err) })
    socket.on('data', chunk => {
      for (const message of decoder.push(chunk)) {
        if (++messages === 1) {
          socket.write(encodeRequest({request: 'lookup', dialect: 'legacy', table, instanceFlags: 0, requestFlags: DICT_FLAG.FOLD_FIX, key: KEY}))
          continue
        }
        const ms = performance.now() - start
        clearTimeout(timer)
        socket.end()
        const value = message.find(([name]) => name === 'value')?.[1]
        if (value !== VALUE) reject(new Error(`unexpected reply ${JSON.stringify(message)}`))
        else resolve(ms)
      }
    })
  })
}

/** proxymap daemons of `executable` (not proxywrite's: master started one for startPostfix()'s probe, and it stays). */
function daemonsIn(spool: string, executable: string): number[] {
  return processesRunning(executable, spool).filter(pid => {
    try { return !fs.readFileSync(`/proc/${pid}/cmdline`, 'latin1').includes('proxywrite') } catch { return false }
  })
}

async function setProxymapCommand(pf: PostfixInstance, stock: string, command: string | undefined): Promise<void> {
  const file = path.join(pf.etc, 'master.cf')
  const text = stock.replace(/^(proxymap\s+unix.*?)proxymap$/m, `$1${command ?? 'proxymap'} -o max_use=1`)
  if (text === stock) throw new Error('no proxymap entry in master.cf')
  fs.writeFileSync(file, text)
  await backdate(file)
}

async function daemonFirstLookups(pf: PostfixInstance, table: string, executable: string): Promise<number[]> {
  const times: number[] = []
  await pf.startPostfix()
  try {
    for (let i = 0; i < RUNS; i++) {
      // The previous client's daemon has exited (max_use 1): this connect needs a new one.
      await waitFor(() => daemonsIn(pf.spool, executable).length === 0, TIMEOUT_MS, () => `daemon still running: ${daemonsIn(pf.spool, executable)}`)
      times.push(await firstLookup(pf.socketPath('proxymap'), table))
    }
  } finally {
    await pf.stopPostfix()
  }
  return times
}

async function main(): Promise<void> {
  requirePostfix()
  if (!fs.existsSync(path.join(path.dirname(PROJECT_BIN), '..', 'dist', 'commands', 'query.js'))) throw new Error('run npm run build first')
  const pf = await createPostfixInstance({prefix: 'pm-bench-startup-'})
  try {
    const table = await pf.createTable('texthash', 'virtual', `${KEY}\t${VALUE}\nbob@example.com\tbob\n`, {build: false})
    await pf.approve({read: [table]})
    const file = table.slice('texthash:'.length)

    const rows: {what: string; ours: number; theirs: number; floor?: number}[] = []
    const ours: {ms: number; cpuMs: number}[] = []
    const theirs: {ms: number; cpuMs: number}[] = []
    const node: {ms: number; cpuMs: number}[] = []
    // Interleaved, so that a burst of load elsewhere hits all three alike.
    for (let i = 0; i < RUNS; i++) {
      ours.push(await timedCommand(process.execPath, [PROJECT_BIN, 'query', '-c', pf.etc, table, KEY], `${VALUE}\n`))
      theirs.push(await timedCommand(POSTMAP, ['-c', pf.etc, '-q', KEY, `texthash:${file}`], `${VALUE}\n`))
      node.push(await timedCommand(process.execPath, ['-e', '0'], ''))
    }
    const wall = (runs: {ms: number}[]) => median(runs.map(r => r.ms))
    const cpu = (runs: {cpuMs: number}[]) => mean(runs.map(r => r.cpuMs))
    rows.push({what: 'query (texthash), whole process', ours: wall(ours), theirs: wall(theirs), floor: wall(node)})
    rows.push({what: 'query (texthash), CPU time (mean)', ours: cpu(ours), theirs: cpu(theirs), floor: cpu(node)})

    const masterCf = path.join(pf.etc, 'master.cf')
    const stock = fs.readFileSync(masterCf, 'utf8')
    const launcher = path.join(pf.dir, 'proxymap-ts')
    fs.writeFileSync(launcher, `#!/bin/sh\nexec ${process.execPath} ${PROJECT_BIN} serve "$@"\n`, {mode: 0o755})
    try {
      await setProxymapCommand(pf, stock, undefined)
      const postfixTimes = await daemonFirstLookups(pf, table, `${DAEMON_DIRECTORY}/proxymap`)
      await setProxymapCommand(pf, stock, path.relative(DAEMON_DIRECTORY, launcher))
      const ourTimes = await daemonFirstLookups(pf, table, NODE_EXECUTABLE)
      rows.push({what: 'new daemon under master: connect to answer', ours: median(ourTimes), theirs: median(postfixTimes)})
    } finally {
      fs.writeFileSync(masterCf, stock)
    }

    const ms = (n: number | undefined): string => (n === undefined ? '-' : `${n.toFixed(1)} ms`)
    console.log(`medians of ${RUNS} runs, ${new Date().toISOString()}, load average ${fs.readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`)
    console.log(['', 'ours', 'Postfix', 'ours/Postfix', 'node -e 0'].map((h, i) => (i === 0 ? h.padEnd(44) : h.padStart(13))).join(''))
    for (const r of rows)
      console.log([r.what.padEnd(44), ms(r.ours).padStart(13), ms(r.theirs).padStart(13), `${(r.ours / r.theirs).toFixed(1)}x`.padStart(13), ms(r.floor).padStart(13)].join(''))
  } finally {
    await pf.destroy()
  }
}

await main()
