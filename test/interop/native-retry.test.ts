// A native addon that cannot be loaded (as during an npm rebuild) is not remembered for the
// life of the server: hash tables answer RETRY while it is missing, the failure is logged
// once, and once the build is back the same process answers the next lookup.

import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {after, before, test} from 'node:test'
import {PROJECT_ROOT, PostfixInstance, createPostfixInstance, requirePostfix, sleep, waitFor} from '../helpers/postfix.js'

const BUILT_ADDON = path.join(PROJECT_ROOT, 'build', 'Release', 'postfix_native.node')
let pf: PostfixInstance
let table: string
let addonDir: string

before(async () => {
  requirePostfix()
  assert.ok(fs.existsSync(BUILT_ADDON), `the addon is built (${BUILT_ADDON})`)
  pf = await createPostfixInstance({prefix: 'pm-native-retry-'})
  table = await pf.createTable('hash', 'virtual', 'alice@example.com alice@mailbox.example.com\n')
  await pf.approve({read: [table]})
  addonDir = fs.mkdtempSync(path.join(os.tmpdir(), 'pm-addon-'))
  fs.chmodSync(addonDir, 0o755)
})

after(async () => {
  await pf?.destroy()
  if (addonDir) fs.rmSync(addonDir, {recursive: true, force: true})
})

test('a failed addon load is tried again: RETRY while it is missing, the answer once it is back, same process', async () => {
  const addon = path.join(addonDir, 'postfix_native.node')
  process.env.PROXYMAP_NATIVE_ADDON = addon
  try {
    await pf.startOurs()
  } finally {
    delete process.env.PROXYMAP_NATIVE_ADDON
  }
  const pid = pf.ourPid()
  const lookup = () => pf.postmap(['-q', 'alice@example.com', `proxy:${table}`])
  try {
    for (let i = 0; i < 3; i++) {
      const missing = await lookup()
      assert.notEqual(missing.code, 0, 'no answer without the addon')
      assert.match(missing.stderr, /lookup error|query error/)
      await sleep(400)
    }
    const warnings = pf.ourStderr().match(/warning: the native addon .* cannot be loaded .*; trying again when next needed/g) ?? []
    assert.equal(warnings.length, 1, `the load failure is logged once:\n${pf.ourStderr()}`)

    fs.copyFileSync(BUILT_ADDON, addon)
    // Bounded: the load is tried again after a second, the table's surrogate too.
    const answered = await waitFor(async () => {
      const r = await lookup()
      return r.code === 0 ? r : undefined
    }, 10_000, () => `still no answer after the addon came back:\n${pf.ourStderr()}`, 200)
    assert.equal(answered.stdout, 'alice@mailbox.example.com\n')
    assert.equal(pf.ourPid(), pid, 'the same server process')
  } finally {
    await pf.stopOurs()
  }
})
