// The README's first command serves examples/postfix; this runs that configuration
// (copied, so that a server the developer left running does not collide) and makes the
// README's query against it.

import assert from 'node:assert/strict'
import {spawn} from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import {test} from 'node:test'
import {PROJECT_BIN, PROJECT_ROOT, canConnect, runCommand, waitFor} from '../helpers/postfix.js'

test('the example configuration serves its tables with no Postfix involved', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pm-example-'))
  fs.chmodSync(dir, 0o755)
  const etc = path.join(dir, 'postfix')
  fs.cpSync(path.join(PROJECT_ROOT, 'examples', 'postfix'), etc, {recursive: true, filter: src => !src.includes(`${path.sep}spool`)})
  const server = spawn('node', [PROJECT_BIN, 'serve', '-c', etc], {stdio: ['ignore', 'ignore', 'pipe']})
  let stderr = ''
  server.stderr.on('data', d => { stderr += d })
  try {
    const socket = path.join(etc, 'spool', 'private', 'proxymap')
    await waitFor(() => canConnect(socket, 500), 15_000, () => `the example server did not listen on ${socket}: ${stderr}`)
    const virtual = `proxy:texthash:${etc}/virtual`
    const hit = await runCommand('node', [PROJECT_BIN, 'query', '-c', etc, virtual, 'alice@example.com'])
    assert.equal(hit.stdout, 'alice@mailbox.example.com\n', hit.stderr)
    assert.equal(hit.code, 0)
    const transport = await runCommand('node', [PROJECT_BIN, 'query', '-c', etc,
      'proxy:inline:{ example.com=smtp:[mx.example.com], example.net=relay:[relay.example.net] }', 'example.net'])
    assert.equal(transport.stdout, 'relay:[relay.example.net]\n', transport.stderr)
    const miss = await runCommand('node', [PROJECT_BIN, 'query', '-c', etc, virtual, 'nobody@example.com'])
    assert.equal(miss.code, 1)
    const denied = await runCommand('node', [PROJECT_BIN, 'query', '-c', etc, `proxy:texthash:${etc}/main.cf`, 'x'])
    assert.equal(denied.code, 3)
    assert.match(stderr, /warning: request for unapproved table: ".*main\.cf"/)
    // Real Postfix accepts the configuration (mail_owner and default_privs differ) and its
    // own client gets the same answer through our server, as the README says.
    const real = await runCommand('postmap', ['-c', etc, '-q', 'alice@example.com', virtual])
    assert.deepEqual([real.code, real.stdout, real.stderr], [0, 'alice@mailbox.example.com\n', ''])
    // Every proxy: table the example uses is approved, the defaults' tables included.
    const all = await runCommand('node', [PROJECT_BIN, 'check-access', '-c', etc, '--all'])
    assert.equal(all.code, 0, all.stdout + all.stderr)
    assert.doesNotMatch(all.stdout, /DENIED/)
  } finally {
    server.kill('SIGTERM')
    await new Promise(resolve => server.once('exit', resolve))
    fs.rmSync(dir, {recursive: true, force: true})
  }
  assert.match(stderr, /postfix\/proxymap\[\d+\]: listening on /)
})
