// The fuzz suite (issue #12, item 7), CI size: at least 10^5 mutated requests of both
// dialects (test/fuzz/mutator.ts), pipelined on several connections at once, against
// `proxymap serve`. Every reply must be the complete, well-formed reply its request gets
// (test/fuzz/oracle.ts), every connection answered or closed by the server within a bound,
// the server the same live process throughout, a valid lookup on a fresh connection answered
// correctly after every batch, its stderr nothing but log lines, its RSS bounded.
//
// PROXYMAP_FUZZ_SEED repeats a run (the seed is in every failure message and the
// diagnostics), PROXYMAP_FUZZ_COUNT changes its size. `npm run fuzz` (test/fuzz/run.ts) is
// the long run, with real Postfix 3.7's proxymap for comparison.

import assert from 'node:assert/strict'
import {after, test} from 'node:test'
import {PostfixInstance, requirePostfix} from '../helpers/postfix.js'
import {runCampaign} from '../fuzz/campaign.js'
import {COUNT_ENV, SEED_ENV, createFuzzWorld, fuzzCount, fuzzSeed, watchOurServer} from '../fuzz/setup.js'

const instances: PostfixInstance[] = []
after(async () => {
  for (const pf of instances) await pf.destroy()
})

const MB = 1024
/** RSS may grow this much while fuzzed (buffers for strings of up to 1 MiB, V8's heap)... */
const PEAK_GROWTH_KB = 256 * MB
/** ...and keep this much of it afterwards. */
const END_GROWTH_KB = 96 * MB

test('fuzz: 10^5 mutated requests, no death, no hang, no malformed reply, bounded RSS, clean stderr', {timeout: 15 * 60_000}, async (t) => {
  requirePostfix()
  const seed = fuzzSeed()
  const count = fuzzCount(100_000)
  const {pf, tables, probes} = await createFuzzWorld('pm-fuzz-test-')
  instances.push(pf)
  await pf.startOurs()
  const watch = watchOurServer(pf, probes)
  const stats = await runCampaign({
    seed, count, sockets: {proxymap: pf.socketPath('proxymap'), proxywrite: pf.socketPath('proxywrite')},
    dialects: ['legacy', 'v2'], tables, probes, truncationSweep: true, stopAtFirstDefect: true,
    afterBatch: watch.check,
  })
  const repeat = `seed ${seed} (${SEED_ENV}=${seed} ${COUNT_ENV}=${count} repeats it)`
  assert.equal(stats.stoppedBy, undefined, `${repeat}: stopped after ${stats.inputs} inputs`)
  const rate = Math.round(stats.inputs / (stats.elapsedMs / 1000))
  t.diagnostic(`seed ${seed}: ${stats.inputs} inputs on ${stats.connections} connections in ${(stats.elapsedMs / 1000).toFixed(1)} s (${rate}/s); ` +
    `replies ${stats.replies} (OK ${stats.statuses[0]}, NOKEY ${stats.statuses[1]}, RETRY ${stats.statuses[2]}, BAD ${stats.statuses[3]}, DENY ${stats.statuses[4]}, CONFIG ${stats.statuses[5]}); ` +
    `closed as predicted ${stats.predictedCloses}, on an unfinished request ${stats.unfinishedCloses}; hangs ${stats.hangs}, malformed ${stats.malformed}, replies owed at a close ${stats.lostReplies}`)
  t.diagnostic(`RSS start ${(watch.rssStartKb / MB).toFixed(1)} MB, peak ${(watch.rssPeakKb / MB).toFixed(1)} MB, end ${(watch.rssEndKb / MB).toFixed(1)} MB; stderr ${watch.stderrChars} characters`)
  assert.deepEqual(stats.defects, [], repeat)
  assert.ok(stats.inputs >= count, `${stats.inputs} inputs sent`)
  assert.equal(stats.hangs + stats.malformed + stats.lostReplies + stats.refusedConnections, 0)
  assert.equal(pf.ourPid(), watch.pid, 'the same server process throughout')
  assert.ok(watch.rssPeakKb - watch.rssStartKb < PEAK_GROWTH_KB, `peak RSS ${watch.rssPeakKb} kB from ${watch.rssStartKb} kB`)
  assert.ok(watch.rssEndKb - watch.rssStartKb < END_GROWTH_KB, `RSS at the end ${watch.rssEndKb} kB from ${watch.rssStartKb} kB`)
})
