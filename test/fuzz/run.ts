/**
 * npm run fuzz — the long fuzz campaign (test/fuzz/campaign.ts) against `proxymap serve`, then
 * the same kind of inputs against real Postfix 3.7's proxymap for comparison, and figures:
 * inputs, server deaths, hangs, malformed replies, RSS start/peak/end, inputs/s.
 *
 * Environment:
 *   PROXYMAP_FUZZ_SEED          seed (default: a random one, printed)
 *   PROXYMAP_FUZZ_COUNT         inputs to our server (default 1000000)
 *   PROXYMAP_FUZZ_POSTFIX_COUNT inputs to real Postfix 3.7, legacy dialect (default 10000; 0: none)
 *   PROXYMAP_FUZZ_CONCURRENCY   connections at once (default 8)
 *   PROXYMAP_FUZZ_BIN           another build's bin/run.js to fuzz instead of this checkout's
 *   PROXYMAP_FUZZ_CONNECTIONS   only these connections of the seed (e.g. 384,1002), to reproduce
 *                               a reported defect; prints our server's log
 *   PROXYMAP_FUZZ_LOG           write our server's log (its last 16 MiB) to this file
 *   PFX_KEEP=1                  keep the instance directory
 *
 * Exits 1 when our server died, hung, or sent a malformed reply.
 */
import * as fs from 'node:fs'
import * as path from 'node:path'

import {pidAlive, requirePostfix} from '../helpers/postfix.js'
import {CampaignStats, runCampaign} from './campaign.js'
import {cpuSeconds, createFuzzWorld, fuzzCount, fuzzSeed, probeAll, watchOurServer} from './setup.js'

const envNumber = (name: string, fallback: number): number => {
  const v = process.env[name]
  return v === undefined || v === '' ? fallback : Number(v)
}

/**
 * Postfix 3.7's proxymap kept connections with an unfinished request open past our 10 s
 * bound (measured, ipc_timeout = 1s): a shorter bound counts those hangs sooner.
 */
const POSTFIX_BOUND_MS = 3000

const mb = (kb: number): string => `${(kb / 1024).toFixed(1)} MB`

function figures(who: string, s: CampaignStats): string {
  const rate = s.inputs / (s.elapsedMs / 1000)
  return [
    `${who}: ${s.inputs} inputs on ${s.connections} connections in ${(s.elapsedMs / 1000).toFixed(1)} s (${Math.round(rate)} inputs/s)`,
    `  replies ${s.replies} (OK ${s.statuses[0]}, NOKEY ${s.statuses[1]}, RETRY ${s.statuses[2]}, BAD ${s.statuses[3]}, DENY ${s.statuses[4]}, CONFIG ${s.statuses[5]})`,
    `  closed by the server as predicted ${s.predictedCloses}, on an unfinished request ${s.unfinishedCloses}, abandoned by the client ${s.abandoned}`,
    `  hangs ${s.hangs}, malformed replies ${s.malformed}, connections closed with replies owed ${s.lostReplies}, refused ${s.refusedConnections}`,
  ].join('\n')
}

async function main(): Promise<number> {
  requirePostfix()
  const seed = fuzzSeed()
  const count = fuzzCount(1_000_000)
  const postfixCount = envNumber('PROXYMAP_FUZZ_POSTFIX_COUNT', 10_000)
  const concurrency = envNumber('PROXYMAP_FUZZ_CONCURRENCY', 8)
  const bin = process.env.PROXYMAP_FUZZ_BIN
  const only = process.env.PROXYMAP_FUZZ_CONNECTIONS?.split(',').filter(Boolean).map(Number)
  console.log(`fuzz seed ${seed} (PROXYMAP_FUZZ_SEED=${seed} repeats it), ${count} inputs${bin ? `, server ${bin}` : ''}`)
  if (bin && !fs.existsSync(bin)) throw new Error(`PROXYMAP_FUZZ_BIN: ${bin} does not exist`)

  const {pf, tables, probes} = await createFuzzWorld('pm-fuzz-', bin)
  let failed = false
  try {
    await pf.startOurs()
    const watch = watchOurServer(pf, probes, false)
    let lastReport = 0
    const ours = await runCampaign({
      seed, count, concurrency, sockets: {proxymap: pf.socketPath('proxymap'), proxywrite: pf.socketPath('proxywrite')},
      dialects: ['legacy', 'v2'], tables, probes, truncationSweep: true, stopAtFirstDefect: false, only,
      afterBatch: async (batch, stats) => {
        await watch.check(batch, stats)
        if (stats.elapsedMs - lastReport > 10_000) {
          lastReport = stats.elapsedMs
          console.log(`  ... ${stats.inputs} inputs, ${Math.round(stats.inputs / (stats.elapsedMs / 1000))}/s, RSS ${mb(watch.rssEndKb)}, defects ${stats.defects.length}`)
        }
      },
    })
    await new Promise(r => setTimeout(r, 200))
    const alive = pidAlive(watch.pid) && pf.ourPid() === watch.pid
    const serverCpu = cpuSeconds(watch.pid)
    const clientCpu = process.cpuUsage()
    console.log()
    if (ours.stoppedBy) console.log(`stopped after ${ours.inputs} inputs: ${ours.stoppedBy}`)
    console.log(figures('proxymap serve', ours))
    console.log(`  server deaths ${alive ? 0 : 1} (pid ${watch.pid} ${alive ? 'alive' : `gone: ${JSON.stringify(pf.ourExit())}; the end of its stderr:\n${pf.ourStderr().split('\n').slice(-12).join('\n')}`})`)
    console.log(`  CPU: our server ${serverCpu.toFixed(1)} s, this fuzzer ${((clientCpu.user + clientCpu.system) / 1e6).toFixed(1)} s`)
    console.log(`  RSS start ${mb(watch.rssStartKb)}, peak ${mb(watch.rssPeakKb)}, end ${mb(watch.rssEndKb)}`)
    console.log(`  valid lookups on a fresh connection after a batch that failed: ${watch.probeFailures.length}${watch.probeFailures.length ? ` (first: ${watch.probeFailures[0]})` : ''}`)
    console.log(`  stderr ${watch.stderrChars} characters; lines that are no log lines or tell of a crash: ${watch.badStderrLines}`)
    for (const l of watch.badStderr.slice(0, 5)) console.log(`    ${JSON.stringify(l.slice(0, 200))}`)
    for (const [k, n] of [...ours.defectKinds].sort((x, y) => y[1] - x[1]).slice(0, 12)) console.log(`  ${n} x ${k}`)
    for (const d of ours.defects) console.log(`  defect: ${d}`)
    if (only) console.log(`our server's log:\n${pf.ourStderr()}`)
    if (process.env.PROXYMAP_FUZZ_LOG) fs.writeFileSync(process.env.PROXYMAP_FUZZ_LOG, pf.ourStderr())
    failed = !alive || ours.stoppedBy !== undefined || ours.hangs + ours.malformed + ours.lostReplies + ours.refusedConnections > 0 ||
      watch.badStderrLines + watch.probeFailures.length > 0
    await pf.stopOurs()

    if (postfixCount > 0 && !only) {
      await pf.startPostfix()
      let probeFailures = 0
      const legacyProbes = probes.filter(p => p.dialect === 'legacy')
      const theirs = await runCampaign({
        seed, count: postfixCount, concurrency, sockets: {proxymap: pf.socketPath('proxymap'), proxywrite: pf.socketPath('proxywrite')},
        dialects: ['legacy'], tables, probes: legacyProbes, truncationSweep: true, boundMs: POSTFIX_BOUND_MS,
        afterBatch: async () => {
          if (await probeAll(pf, legacyProbes)) probeFailures++
        },
      })
      await new Promise(r => setTimeout(r, 1000))
      const log = pf.maillog()
      const deaths = log.split('\n').filter(l => /master\[\d+\]: warning: process \S*proxymap pid \d+ (exit status|killed by signal)/.test(l))
      const panics = log.split('\n').filter(l => /proxy(map|write)\[\d+\]: (panic|fatal):/.test(l))
      console.log()
      console.log(figures('Postfix 3.7 proxymap (legacy dialect; what our oracle expects of ours, for comparison)', theirs))
      console.log(`  process deaths in its maillog ${deaths.length} (master restarted them); panic/fatal lines ${panics.length}; valid lookups on a fresh connection that failed after a batch ${probeFailures}`)
      const kinds = new Map<string, number>()
      for (const l of panics) {
        const k = l.replace(/^.*?: (panic|fatal): /, '$1: ').replace(/"[^"]*"/g, '"..."').replace(/\d+/g, 'N').slice(0, 110)
        kinds.set(k, (kinds.get(k) ?? 0) + 1)
      }
      for (const [k, n] of [...kinds].sort((x, y) => y[1] - x[1]).slice(0, 8)) console.log(`    ${n} x ${k}`)
      console.log('  where it differs from what ours must answer (by kind):')
      for (const [k, n] of [...theirs.defectKinds].sort((x, y) => y[1] - x[1]).slice(0, 12)) console.log(`    ${n} x ${k}`)
      for (const d of theirs.defects.slice(0, 3)) console.log(`  e.g. ${d.split('\n')[0]!.slice(0, 300)}`)
      await pf.stopPostfix()
      fs.writeFileSync(path.join(pf.dir, 'postfix-maillog'), log)
    }
  } finally {
    await pf.destroy()
  }
  return failed ? 1 : 0
}

main().then(code => process.exit(code), (e: Error) => {
  console.error(e.stack ?? e.message)
  process.exit(2)
})
