// A table file edited while proxymap serve runs is answered from its new contents on the
// next lookup, for new clients and on a connection that stays open; a missing file that
// appears later is picked up. (Postfix's proxymap exits and waits for master instead.)

import assert from 'node:assert/strict'
import fs from 'node:fs'
import net from 'node:net'
import {after, before, test} from 'node:test'
import {PostfixInstance, createPostfixInstance, requirePostfix, sleep} from '../helpers/postfix.js'

let pf: PostfixInstance
let th: string
let file: string
let later: string

before(async () => {
  requirePostfix()
  pf = await createPostfixInstance({prefix: 'pm-changes-'})
  th = await pf.createTable('texthash', 'virtual', 'alice\told-value\n', {build: false})
  file = th.slice('texthash:'.length)
  later = `texthash:${pf.etc}/appears-later`
  await pf.approve({read: [th, later], write: []})
  await pf.startOurs()
})

after(async () => {
  await pf?.stopOurs()
  await pf?.destroy()
})

function lookupOn(socket: net.Socket, table: string, key: string): Promise<string> {
  return new Promise(resolve => {
    let got = Buffer.alloc(0)
    const onData = (d: Buffer) => {
      got = Buffer.concat([got, d])
      const text = got.toString('latin1')
      if (/status\0\d\0value\0[^\0]*\0\0/.test(text)) {
        socket.off('data', onData)
        resolve(text.replace(/^protocol\0proxymap_protocol\0\0/, ''))
      }
    }
    socket.on('data', onData)
    socket.write(Buffer.from(`request\0lookup\0table\0${table}\0flags\x00524353\0key\0${key}\0\0`, 'latin1'))
  })
}

test('an edited texthash file is answered from its new contents, without a restart', async () => {
  const before = await pf.postmap(['-q', 'alice', `proxy:${th}`])
  assert.equal(before.stdout, 'old-value\n')
  const pid = pf.ourPid()

  const socket = net.createConnection({path: pf.socketPath('proxymap')})
  assert.equal(await lookupOn(socket, th, 'alice'), 'status\x000\0value\0old-value\0\0')

  fs.writeFileSync(file, 'alice\tnew-value\nbob\tadded\n')
  const after = await pf.postmap(['-q', '-', `proxy:${th}`], {input: 'alice\nbob\n'})
  assert.equal(after.stdout, 'alice\tnew-value\nbob\tadded\n')

  // The connection that stayed open sees it too, within the change-check interval.
  await sleep(250)
  assert.equal(await lookupOn(socket, th, 'bob'), 'status\x000\0value\0added\0\0')
  socket.destroy()
  assert.equal(pf.ourPid(), pid, 'same server process')
  assert.match(pf.ourStderr(), /table texthash:.*virtual has changed -- reopening/)
})

test('a table whose file was missing is picked up once the file appears', async () => {
  const missing = await pf.postmap(['-q', 'k', `proxy:${later}`])
  assert.match(missing.stderr, /query error/)
  fs.writeFileSync(later.slice('texthash:'.length), 'k\tv\n')
  fs.utimesSync(later.slice('texthash:'.length), new Date(Date.now() - 10_000), new Date(Date.now() - 10_000))
  await sleep(1100)
  const found = await pf.postmap(['-q', 'k', `proxy:${later}`])
  assert.equal(found.stdout, 'v\n', found.stderr)
})
