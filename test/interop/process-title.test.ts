// proxymap serve shows in ps and pgrep under Postfix's program name, as Postfix's proxymap
// does (the daemons under master(8) are compared with Postfix's own in master.test.ts).

import assert from 'node:assert/strict'
import fs from 'node:fs'
import {after, before, test} from 'node:test'
import {PostfixInstance, createPostfixInstance, requirePostfix, runCommand} from '../helpers/postfix.js'

let pf: PostfixInstance

before(async () => {
  requirePostfix()
  pf = await createPostfixInstance({prefix: 'pm-title-'})
})

after(async () => {
  await pf?.destroy()
})

test('standalone serve: "proxymap serve ..." in ps, named proxymap for pgrep', async () => {
  await pf.startOurs()
  try {
    const pid = pf.ourPid()!
    assert.equal((await runCommand('ps', ['-o', 'args=', '-p', String(pid)])).stdout.trim(), `proxymap serve -c ${pf.etc}`)
    assert.equal(fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim(), 'proxymap')
    assert.ok((await runCommand('pgrep', ['-x', 'proxymap'])).stdout.split('\n').map(Number).includes(pid), 'pgrep -x proxymap finds it')
  } finally {
    await pf.stopOurs()
  }
})
