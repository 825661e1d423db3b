// The fuzzed server's world, shared by test/interop/fuzz.test.ts and `npm run fuzz`: a
// private Postfix instance with tables of several kinds approved for reading and one lmdb
// table for writing, the probes whose replies real Postfix gave (hostile-requests.test.ts),
// and the check run after every batch against our server.

import * as fs from 'node:fs'

import {PostfixInstance, createPostfixInstance, pidAlive, procMemory} from '../helpers/postfix.js'
import {CampaignStats, Probe, probeOnce} from './campaign.js'
import type {FuzzTables} from './mutator.js'

export const SEED_ENV = 'PROXYMAP_FUZZ_SEED'
export const COUNT_ENV = 'PROXYMAP_FUZZ_COUNT'

/** The seed from $PROXYMAP_FUZZ_SEED, else a fresh one (printed by the callers). */
export function fuzzSeed(): number {
  const given = process.env[SEED_ENV]
  if (given !== undefined && given !== '') {
    const n = Number(given)
    if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new Error(`${SEED_ENV} must be an integer 0..4294967295: ${given}`)
    return n
  }
  return Math.floor(Math.random() * 0x100000000)
}

export function fuzzCount(fallback: number): number {
  const given = process.env[COUNT_ENV]
  if (given === undefined || given === '') return fallback
  const n = Number(given)
  if (!Number.isInteger(n) || n < 1) throw new Error(`${COUNT_ENV} must be a positive integer: ${given}`)
  return n
}

export const PROBE_TABLE = 'inline:{a=1,b=2}'
/** A key of the writable table that the fuzzer's requests do not name. */
const PROBE_KEY = 'probe-key'
const b = (s: string): Buffer => Buffer.from(s, 'latin1')

/**
 * Valid lookups and the replies real 3.7 (legacy) and 3.11 (v2) give them; the writable
 * table's, in the instance made by createFuzzWorld.
 */
export function fuzzProbes(writable: string): Probe[] {
  return [
    {service: 'proxymap', dialect: 'legacy', request: b(`request\0lookup\0table\0${PROBE_TABLE}\0flags\x00524353\0key\0a\0\0`), reply: 'status\x000\0value\x001\0\0'},
    {service: 'proxymap', dialect: 'legacy', request: b(`request\0lookup\0table\0${PROBE_TABLE}\0flags\x00524353\0key\0c\0\0`), reply: 'status\x001\0value\0\0\0'},
    {service: 'proxymap', dialect: 'v2', request: b(`request\0lookup\0table\0${PROBE_TABLE}\0instance_flags\x000\0flags\x00524353\0key\0a\0\0`), reply: 'status\x000\0flags\x00524353\0value\x001\0\0'},
    {service: 'proxywrite', dialect: 'legacy', request: b(`request\0lookup\0table\0${writable}\0flags\x00524353\0key\0${PROBE_KEY}\0\0`), reply: 'status\x000\0value\0ok\0\0'},
  ]
}

export interface FuzzWorld {
  pf: PostfixInstance
  tables: FuzzTables
  probes: Probe[]
}

/** ipc_timeout of the fuzzed servers: how long an unfinished request may keep a connection. */
export const IPC_TIMEOUT_S = 1

/** `ourBin`: another build's bin/run.js to serve with (default: this checkout's). */
export async function createFuzzWorld(prefix: string, ourBin?: string): Promise<FuzzWorld> {
  const pf = await createPostfixInstance({
    prefix,
    main: {ipc_timeout: `${IPC_TIMEOUT_S}s`, service_throttle_time: '1s'},
    ...(ourBin ? {ourCommand: (i: PostfixInstance) => [process.execPath, ourBin, 'serve', '-c', i.etc]} : {}),
  })
  const writable = await pf.createTable('lmdb', `${pf.data}/fuzz`, `k0 v0\nk1 v1\na 1\n${PROBE_KEY} ok\n`)
  await pf.writeFile('fuzz.re', '/^a/ A\n/^(b)(.*)$/ B$1$2\n')
  const tables: FuzzTables = {
    read: [PROBE_TABLE, 'static:fuzz', `regexp:${pf.etc}/fuzz.re`, `texthash:${pf.etc}/missing`, writable],
    write: [writable],
    other: [`texthash:${pf.etc}/unapproved`, 'inline:{a=1}', 'static:other'],
  }
  await pf.approve({read: [...tables.read], write: [...tables.write]})
  return {pf, tables, probes: fuzzProbes(writable)}
}

/** CPU seconds (user + system) a live process has used, from /proc/PID/stat. */
export function cpuSeconds(pid: number): number {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8')
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    return (Number(fields[11]) + Number(fields[12])) / 100
  } catch {
    return NaN
  }
}

export interface ServerWatch {
  pid: number
  rssStartKb: number
  rssPeakKb: number
  rssEndKb: number
  /** Lines of our stderr that are not Postfix-style log lines, or that tell of a crash (the first 20). */
  badStderr: string[]
  badStderrLines: number
  /** Probes after a batch that did not get their reply. */
  probeFailures: string[]
  stderrChars: number
  check: (batch: number, stats: CampaignStats) => Promise<void>
}

// Every line our server writes is a Postfix log line; anything else (a stack trace, Node's
// own warnings) or a word of a crash is a defect.
const LOG_LINE = /^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \S+ \S+\/(proxymap|proxywrite)\[\d+\]: /
const CRASH = /Unhandled|uncaught|RangeError|TypeError|ReferenceError|panic:|fatal:|FATAL|heap out of memory/i

/**
 * Watches our running server: after every batch the same pid is alive, each probe on a fresh
 * connection gets real Postfix's reply, and the stderr written since is clean. Throws when
 * the server is gone and, when `strict`, at the first other failure (else counts them); RSS
 * (VmRSS, VmHWM) is sampled each time.
 */
export function watchOurServer(pf: PostfixInstance, probes: readonly Probe[], strict = true): ServerWatch {
  const pid = pf.ourPid()
  if (pid === undefined) throw new Error('our server is not running')
  const mem = procMemory(pid)!
  let seen = 0
  const watch: ServerWatch = {
    pid, rssStartKb: mem.rssKb, rssPeakKb: mem.peakRssKb, rssEndKb: mem.rssKb, badStderr: [], badStderrLines: 0, probeFailures: [], stderrChars: 0,
    check: async (batch) => {
      const now = pf.ourPid()
      if (now !== pid || !pidAlive(pid)) throw new Error(`after batch ${batch}: our server (pid ${pid}) is gone: ${JSON.stringify(pf.ourExit())}`)
      const defect = await probeAll(pf, probes)
      if (defect) {
        if (strict) throw new Error(`after batch ${batch}: ${defect}`)
        watch.probeFailures.push(`after batch ${batch}: ${defect}`)
      }
      const m = procMemory(pid)
      if (m) {
        watch.rssPeakKb = Math.max(watch.rssPeakKb, m.peakRssKb)
        watch.rssEndKb = m.rssKb
      }
      const total = pf.ourStderrLength()
      const all = pf.ourStderr()
      const fresh = all.slice(Math.max(0, all.length - (total - seen)))
      seen = total
      watch.stderrChars = total
      // The last line may still be on its way.
      const lines = fresh.split('\n')
      for (const line of lines.slice(0, -1)) {
        if (!LOG_LINE.test(line) || CRASH.test(line.replace(LOG_LINE, '').replace(/"[^"]*"/g, '""'))) {
          watch.badStderrLines++
          if (watch.badStderr.length < 20) watch.badStderr.push(line)
        }
      }
      seen -= lines[lines.length - 1]!.length
      if (strict && watch.badStderr.length > 0) throw new Error(`after batch ${batch}: our stderr has lines that are no log lines or tell of a crash:\n${watch.badStderr.join('\n')}`)
    },
  }
  return watch
}

/** Each probe on a fresh connection to its service: the first wrong answer, if any. */
export async function probeAll(pf: PostfixInstance, probes: readonly Probe[]): Promise<string | undefined> {
  for (const probe of probes) {
    const defect = await probeOnce(pf.socketPath(probe.service), probe)
    if (defect) return `a valid ${probe.dialect} lookup on a fresh ${probe.service} connection: ${defect}`
  }
  return undefined
}
