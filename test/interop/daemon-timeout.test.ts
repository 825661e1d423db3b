// daemon_timeout: Postfix's watchdog kills a daemon whose request takes longer; ours
// answers that one request RETRY (logging why) and keeps serving everyone else.

import assert from 'node:assert/strict'
import net from 'node:net'
import {after, before, test} from 'node:test'
import {PostfixInstance, createPostfixInstance, requirePostfix} from '../helpers/postfix.js'

let pf: PostfixInstance
let backend: net.Server
let port = 0
let th: string

before(async () => {
  requirePostfix()
  // A socketmap backend that takes 5 s to answer anything.
  backend = net.createServer(sock => {
    sock.on('data', () => setTimeout(() => sock.write('4:OK x,'), 5000))
    sock.on('error', () => undefined)
  })
  await new Promise<void>(resolve => backend.listen(0, '127.0.0.1', resolve))
  port = (backend.address() as net.AddressInfo).port
  pf = await createPostfixInstance({prefix: 'pm-watchdog-', main: {daemon_timeout: '1s'}})
  th = await pf.createTable('texthash', 'virtual', 'alice\talice-box\n', {build: false})
  await pf.approve({read: [th, `socketmap:inet:127.0.0.1:${port}:slow`], write: []})
  await pf.startOurs()
})

after(async () => {
  await pf?.stopOurs()
  await pf?.destroy()
  backend?.close()
})

test('a request over daemon_timeout is answered RETRY, and the server keeps serving', async () => {
  const started = Date.now()
  const slow = await pf.postmap(['-q', 'k', `proxy:socketmap:inet:127.0.0.1:${port}:slow`], {timeoutMs: 15_000})
  const took = Date.now() - started
  assert.match(slow.stderr, /query error/, slow.stderr)
  assert.ok(took < 4000, `answered after ${took} ms, before the backend's 5 s`)
  const hit = await pf.postmap(['-q', 'alice', `proxy:${th}`])
  assert.equal(hit.stdout, 'alice-box\n')
  assert.ok(pf.ourPid(), 'still running')
  assert.match(pf.ourStderr(), /warning: lookup socketmap:.*: no answer within daemon_timeout \(1s\) -- replying RETRY/)
})
