// Memory of `proxymap dump` on a large lmdb table made by real postmap (default 1,000,000
// entries, DUMP_ENTRIES to change): directly on the file and through our proxymap
// service, output read from a pipe. Reports wall time and peak RSS (VmHWM, from /proc) of
// the CLI and of our server, against the goal: at most 150 MB whatever the table size.
//   npx tsc -p . && node --import tsx bench/dump.ts

import {spawn} from 'node:child_process'
import * as fs from 'node:fs'
import {PROJECT_BIN, createPostfixInstance, procMemory} from '../test/helpers/postfix.js'

const ENTRIES = Number(process.env.DUMP_ENTRIES ?? 1_000_000)
const GOAL_MB = 150

const mb = (kb: number): number => Math.round(kb / 1024)
const verdict = (kb: number): string => `${mb(kb)} MB (goal ${GOAL_MB} MB: ${kb / 1024 <= GOAL_MB ? 'ok' : 'OVER'})`

async function measure(args: string[]): Promise<{ms: number; peakRssKb: number; lines: number; code: number | null}> {
  const started = performance.now()
  const child = spawn(process.execPath, args[0].startsWith('--') ? args : [PROJECT_BIN, ...args], {stdio: ['ignore', 'pipe', 'inherit']})
  let peak = 0
  let lines = 0
  child.stdout.on('data', (d: Buffer) => {
    for (let i = d.indexOf(10); i !== -1; i = d.indexOf(10, i + 1)) lines++
  })
  const timer = setInterval(() => {
    const m = child.pid === undefined ? undefined : procMemory(child.pid)
    if (m) peak = Math.max(peak, m.peakRssKb)
  }, 20)
  const code = await new Promise<number | null>(resolve => child.once('close', c => resolve(c)))
  clearInterval(timer)
  return {ms: performance.now() - started, peakRssKb: peak, lines, code}
}

const pf = await createPostfixInstance({prefix: 'pm-bench-dump-'})
try {
  const source = `${pf.data}/big`
  const out = fs.createWriteStream(source)
  for (let i = 0; i < ENTRIES; i++) out.write(`key${i}@example.com\tvalue-${i}-${'x'.repeat(20)}\n`)
  await new Promise(r => out.end(r))
  const t0 = performance.now()
  const table = await pf.createTable('lmdb', source, undefined, {})
  console.log(`postmap lmdb: ${ENTRIES} entries in ${Math.round(performance.now() - t0)} ms`)
  await pf.approve({read: [table], write: []})
  const size = fs.statSync(`${table.slice('lmdb:'.length)}.lmdb`).size
  console.log(`table file: ${mb(size / 1024)} MB`)

  const small = await measure(['dump', '-c', pf.etc, 'inline:{a=b}'])
  console.log(`baseline (1-entry inline table): peak RSS ${mb(small.peakRssKb)} MB`)
  for (const [label, args] of [
    ['direct', ['dump', '-c', pf.etc, table]],
    ['direct --json', ['dump', '--json', '-c', pf.etc, table]],
    // The JS heap capped at 48 MB: the dump must not need more.
    ['direct, --max-old-space-size=48', ['--max-old-space-size=48', PROJECT_BIN, 'dump', '-c', pf.etc, table]],
  ] as const) {
    const r = await measure([...args])
    console.log(`${label}: ${r.lines} lines, exit ${r.code}, ${Math.round(r.ms)} ms, peak RSS ${verdict(r.peakRssKb)}`)
  }

  await pf.startOurs()
  const r = await measure(['dump', '-c', pf.etc, `proxy:${table}`])
  console.log(`through our server: ${r.lines} lines, exit ${r.code}, ${Math.round(r.ms)} ms, client peak RSS ${verdict(r.peakRssKb)}`)
  const server = pf.ourPid() === undefined ? undefined : procMemory(pf.ourPid()!)
  if (server) console.log(`our server (since its start): peak RSS ${verdict(server.peakRssKb)}`)
  await pf.stopOurs()
} finally {
  await pf.destroy()
}
