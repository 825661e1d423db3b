// Where the search of a slow regexp table runs (src/lib/tables/pattern-rules.ts): a lone
// client's lookups, one per turn of the event loop, are answered on the main thread (no
// Promise, no thread switch); a lookup that comes while another was searched in the same
// turn goes to the addon's threads. The table is slow by construction (well over the 50 µs
// average that makes a table slow, well under the 2 ms after which a search on the main
// thread goes on in a thread): 200 rules that regexec() must each try (the key holds the
// texts they require).
//
// Run: node --import tsx --test test/unit/pattern-scheduling.test.ts

import {after, test} from 'node:test'
import assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'

import {regexpType} from '../../src/lib/tables/regexp.js'
import {makeConfig, openWith, writeTable} from '../differential/pattern-helpers.js'

const RULES = 200
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pm-sched-'))
after(() => fs.rmSync(dir, {recursive: true, force: true}))

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

test("a lone client's lookups of a slow table run on the main thread; overlapping ones in threads", async () => {
  const rules = Array.from({length: RULES}, (_, r) => `/^Subject: .*cheap(${r})x(pills|watches)/ rule ${r} $2`)
  const file = writeTable(path.join(dir, 'slow.re'), [...rules, '/^/ none', ''].join('\n'))
  const table = await openWith(regexpType, file, 0, makeConfig(dir, {compatibility_level: '3.6'}), [])
  const key = (i: number): string => `Subject: Buy cheap${i}pills, max ${i}`
  let onMainThread = 0
  for (let i = 0; i < 40; i++) {
    await nextTurn()
    const found = table.lookup(key(i))
    if (!(found instanceof Promise)) onMainThread++
    assert.equal(await found, 'none')
  }
  console.log(`${onMainThread} of 40 lone lookups answered on the main thread`)
  // A search that runs over 2 ms on a loaded machine goes on in a thread: not all of them
  // (before, all but the first few, until the average cost passed 50 µs).
  assert.ok(onMainThread >= 10, `only ${onMainThread} of 40 lone lookups were answered on the main thread`)
  await nextTurn()
  const first = table.lookup(key(1))
  const second = table.lookup(key(2))
  assert.ok(!(first instanceof Promise), 'the first lookup of the turn runs on the main thread')
  assert.ok(second instanceof Promise, 'the table is slow, and the second lookup of the turn goes to a thread')
  assert.equal(await second, 'none')
})
