// Backend concurrency through our proxymap server, with real Postfix clients: 12 concurrent
// `postmap -q KEY proxy:socketmap:...` (8 of one key and 4 others) reach
// a socketmap server (test/helpers/held-socketmap.ts, holding its answers until the test
// lets them go) as 5 requests on 5 connections at once, and every client gets its answer.
// So one open table is shared by every client, identical lookups are joined across clients,
// and distinct ones do not wait for each other.
//
// Needs Postfix and `npm run build` (startOurs runs the built CLI).
//
// Run: node --import tsx --test test/interop/backend-pool.test.ts

import assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as path from 'node:path'
import {after, before, test} from 'node:test'

import {HeldSocketmap} from '../helpers/held-socketmap.js'
import {PostfixInstance, createPostfixInstance, requirePostfix, waitFor} from '../helpers/postfix.js'

let pf: PostfixInstance
let backend: HeldSocketmap

before(async () => {
  requirePostfix()
  pf = await createPostfixInstance({prefix: 'pm-backendpool-'})
  const socketDir = path.join(pf.dir, 'sockmap')
  await fs.promises.mkdir(socketDir, {mode: 0o755})
  backend = new HeldSocketmap(path.join(socketDir, 'held.sock'))
  // our proxymap runs as mail_owner
  await backend.listen(0o666)
})

after(async () => {
  await backend?.close()
  await pf?.destroy()
})

test('identical lookups of several clients reach the backend once; distinct ones each get a connection', async () => {
  const table = `socketmap:unix:${backend.socketPath}:held`
  await pf.approve({read: [table]})
  await pf.startOurs()
  try {
    // (postmap asks for no case folding of a socketmap table: keys differing in case are distinct)
    const same = Array(8).fill('same@example.com')
    const others = ['a@example.com', 'b@example.com', 'c@example.com', 'd@example.com']
    const clients = [...same, ...others].map((k) => pf.postmap(['-q', k, `proxy:${table}`], {timeoutMs: 60_000}))
    await waitFor(() => backend.requests.length === 5 || undefined, 30_000, () => `the backend saw ${backend.requests.join(', ')}`)
    assert.equal(backend.open, 5)
    backend.letGo()
    const results = await Promise.all(clients)
    const expected = [...same, ...others].map((k) => `held=${k}`)
    assert.deepEqual(results.map((r) => r.stdout.trim()), expected, results.map((r) => r.stderr).join(''))
    assert.deepEqual([...backend.requests].sort(), ['same@example.com', ...others].map((k) => `held ${k}`).sort())
    assert.equal(backend.accepted, 5)
  } finally {
    await pf.stopOurs()
  }
})
