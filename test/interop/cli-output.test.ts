// Issue #7's promises about output, checked on every command against a real private Postfix
// instance served by our `proxymap serve` (and Postfix's own proxymap for --probe is in
// check-access.test.ts): every --json document parses and has the shape documented in
// docs/json-output.md / docs/json-output.schema.json, also for failures; in a pipe and with
// NO_COLOR no escape code reaches stdout or stderr; on a real pseudo-terminal the tables,
// colours and the spinner appear; a missing socket says which path and what to start.

import assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as net from 'node:net'
import * as os from 'node:os'
import * as path from 'node:path'
import {after, before, describe, test} from 'node:test'
import {PROJECT_BIN, PROJECT_ROOT, createPostfixInstance, requirePostfix, runCommand, type PostfixInstance, type RunResult} from '../helpers/postfix.js'
import {shapeErrors} from '../helpers/json-schema.js'
import {runOnTerminal} from '../helpers/terminal.js'

const ESC = '\u001b'

/** The environment of a person with no colour preferences (and not a CI job: ora checks CI). */
function plainEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {...process.env, TERM: 'xterm-256color', ...extra}
  for (const name of ['FORCE_COLOR', 'MAIL_CONFIG', 'CI', ...(extra.NO_COLOR ? [] : ['NO_COLOR'])]) delete env[name]
  return env
}

/** Our CLI in a pipe (stdout and stderr are pipes, stdin /dev/null unless input is given). */
function proxymap(args: string[], opts: {input?: string; env?: NodeJS.ProcessEnv} = {}): Promise<RunResult> {
  return runCommand(process.execPath, [PROJECT_BIN, ...args], {cwd: PROJECT_ROOT, env: opts.env ?? plainEnv(), input: opts.input, timeoutMs: 30_000})
}

function onTerminal(args: string[], env: NodeJS.ProcessEnv = plainEnv()): Promise<RunResult> {
  return runOnTerminal(args, {env})
}

/** The one JSON document on stdout, checked against its documented shape. */
function document(r: RunResult, shape: string): Record<string, unknown> {
  let parsed: Record<string, unknown>
  try {
    parsed = JSON.parse(r.stdout) as Record<string, unknown>
  } catch {
    throw new Error(`stdout is not one JSON document (exit ${r.code}): stdout=${JSON.stringify(r.stdout)} stderr=${JSON.stringify(r.stderr)}`)
  }
  assert.deepEqual(shapeErrors(shape, parsed), [], `${shape}: ${r.stdout}`)
  assert.ok(!r.stdout.includes(ESC), 'JSON is never coloured')
  return parsed
}

function noEscapes(r: RunResult, what: string): void {
  assert.ok(!r.stdout.includes(ESC), `${what}: escape code on stdout: ${JSON.stringify(r.stdout)}`)
  assert.ok(!r.stderr.includes(ESC), `${what}: escape code on stderr: ${JSON.stringify(r.stderr)}`)
}

// eslint-disable-next-line no-control-regex
const stripAnsi = (s: string): string => s.replace(/\u001b\[[0-9;?]*[A-Za-z]/g, '')

describe('the shape checker itself', () => {
  test('rejects what the documentation does not promise', () => {
    const good = {table: 't', results: [{key: 'a', found: true, value: 'b'}, {key: 'c', found: false}], found: 1, missing: 1}
    assert.deepEqual(shapeErrors('query', good), [])
    assert.notDeepEqual(shapeErrors('query', {...good, extra: 1}), [], 'undocumented field')
    assert.notDeepEqual(shapeErrors('query', {...good, results: [{key: 'a', found: true}]}), [], 'found without value')
    assert.notDeepEqual(shapeErrors('query', {...good, results: [{key: 'c', found: false, value: ''}]}), [], 'value when not found')
    assert.notDeepEqual(shapeErrors('update', {table: 't', updated: -1}), [], 'negative count')
    assert.notDeepEqual(shapeErrors('error', {error: {message: 'm'}}), [], 'no exit code')
    assert.notDeepEqual(shapeErrors('dump', {table: 't', entries: [{key: 'k'}], count: 1}), [], 'entry without value')
  })
})

describe('proxymap output, against our server on a private Postfix instance', () => {
  let pf: PostfixInstance
  let virtual: string
  let senders: string
  let denied: string
  let idle: string

  before(async () => {
    requirePostfix()
    pf = await createPostfixInstance({prefix: 'pm-cli-output-'})
    virtual = await pf.createTable('texthash', 'virtual', 'alice@example.com alice@mailbox.example.com\nbob@example.com bob@mailbox.example.com\n', {build: false})
    senders = await pf.createTable('lmdb', `${pf.data}/senders`, 'alice@example.com OK\ncarol@example.com REJECT\n')
    denied = await pf.createTable('texthash', 'other', 'x y\n', {build: false})
    await pf.postconf({virtual_alias_maps: `proxy:${virtual}`})
    await pf.approve({read: [virtual, senders], write: [senders]})
    await pf.startOurs()
    // A configuration whose service is not running: the socket is missing.
    idle = fs.mkdtempSync(path.join(os.tmpdir(), 'pm-cli-output-idle-'))
    fs.writeFileSync(path.join(idle, 'main.cf'), `queue_directory = ${idle}/spool\nproxy_read_maps = proxy:${virtual}\n`)
  })

  after(async () => {
    await pf?.destroy()
    if (idle) fs.rmSync(idle, {recursive: true, force: true})
  })

  test('query --json / --output json: documented shape, exit 0 on a hit and 1 when nothing is found', async () => {
    const r = await proxymap(['query', '-c', pf.etc, '--json', `proxy:${virtual}`, 'alice@example.com', 'nobody@example.com'])
    assert.equal(r.code, 0, r.stderr)
    const doc = document(r, 'query')
    assert.deepEqual(doc.results, [{key: 'alice@example.com', found: true, value: 'alice@mailbox.example.com'}, {key: 'nobody@example.com', found: false}])
    assert.equal(doc.found, 1)
    assert.equal(doc.missing, 1)
    for (const flag of [['--output', 'json'], ['-o', 'json'], ['--output=json']]) {
      const miss = await proxymap(['query', '-c', pf.etc, ...flag, `proxy:${virtual}`, 'nobody@example.com'])
      assert.equal(miss.code, 1, `${flag.join(' ')}: ${miss.stderr}`)
      assert.equal(document(miss, 'query').missing, 1)
    }
    const fromStdin = await proxymap(['query', '-c', pf.etc, '--json', `proxy:${virtual}`, '-'], {input: 'bob@example.com\nzed\n'})
    assert.equal((document(fromStdin, 'query').results as unknown[]).length, 2)
  })

  test('query: plain in a pipe is postmap -q\'s output; table only when asked for', async () => {
    const one = await proxymap(['query', '-c', pf.etc, `proxy:${virtual}`, 'alice@example.com'])
    assert.equal(one.stdout, 'alice@mailbox.example.com\n')
    const many = await proxymap(['query', '-c', pf.etc, `proxy:${virtual}`, 'alice@example.com', 'nobody', 'bob@example.com'])
    const theirs = await pf.postmap(['-q', '-', virtual], {input: 'alice@example.com\nnobody\nbob@example.com\n'})
    assert.equal(many.stdout, theirs.stdout)
    assert.equal(many.stdout, 'alice@example.com\talice@mailbox.example.com\nbob@example.com\tbob@mailbox.example.com\n')
    noEscapes(many, 'query in a pipe')
    const table = await proxymap(['query', '-c', pf.etc, '--output', 'table', `proxy:${virtual}`, 'alice@example.com', 'nobody'])
    assert.equal(table.code, 0)
    assert.match(table.stdout, /│ key +│ status │ value +│/)
    assert.match(table.stdout, /│ alice@example\.com +│ OK +│ alice@mailbox\.example\.com │/)
    assert.match(table.stdout, /│ nobody +│ NOKEY +│ +│/)
    noEscapes(table, 'query --output table in a pipe')
  })

  test('errors with --json: DENY, a missing socket, a usage error; the documented error shape and exit code', async () => {
    const deny = await proxymap(['query', '-c', pf.etc, '--json', `proxy:${denied}`, 'x'])
    assert.equal(deny.code, 3)
    const e = document(deny, 'error').error as {message: string; hint: string; exitCode: number}
    assert.match(e.message, /not configured for table/)
    assert.match(e.hint, /proxy_read_maps/)
    assert.equal(e.exitCode, 3)

    const socket = path.join(idle, 'spool', 'private', 'proxymap')
    const missing = await proxymap(['query', '-c', idle, '--json', `proxy:${virtual}`, 'x'])
    assert.equal(missing.code, 6)
    const m = document(missing, 'error').error as {message: string}
    assert.ok(m.message.includes(socket), m.message)
    assert.match(m.message, /not running/)
    const text = await proxymap(['query', '-c', idle, `proxy:${virtual}`, 'x'])
    assert.equal(text.code, 6)
    assert.equal(text.stdout, '')
    assert.ok(text.stderr.includes(`no service socket at ${socket}`), text.stderr)
    assert.match(text.stderr, /not running for this configuration \(start it with "proxymap serve -c DIR"/)
    assert.doesNotMatch(text.stderr, /\n\s+at /, 'no stack trace')

    for (const args of [['query', '--json', `proxy:${virtual}`], ['dump', '--json', '--bogus', 'inline:{a=b}'], ['query', '--json', '-o', 'xml', 'inline:{a=b}', 'a']]) {
      const usage = await proxymap(args)
      assert.equal(usage.code, 2, `${args.join(' ')}: ${usage.stdout}`)
      assert.equal((document(usage, 'error').error as {exitCode: number}).exitCode, 2)
    }
  })

  test('update, delete, dump --json: documented shapes, failures included, exit codes as documented', async () => {
    const proxy = `proxy:${senders}`
    let r = await proxymap(['update', '-c', pf.etc, '--json', proxy, 'dave@example.com', 'OK'])
    assert.equal(r.code, 0, r.stderr)
    assert.deepEqual(document(r, 'update'), {table: proxy, updated: 1})
    r = await proxymap(['update', '-c', pf.etc, '-o', 'json', proxy, '-'], {input: 'erin@example.com OK\nbroken-line-without-value\nfrank OK\n'})
    assert.equal(r.code, 2)
    const failed = document(r, 'update') as {updated: number; failed: {line: number; exitCode: number}}
    assert.equal(failed.updated, 1)
    assert.equal(failed.failed.line, 2)
    assert.equal(failed.failed.exitCode, 2)
    // Refused when the table is opened, before any entry: the error document.
    r = await proxymap(['update', '-c', pf.etc, '--json', `proxy:${virtual}`, 'k', 'v'])
    assert.equal(r.code, 3, 'texthash is not in proxy_write_maps')
    assert.equal((document(r, 'error') as {error: {exitCode: number}}).error.exitCode, 3)

    r = await proxymap(['delete', '-c', pf.etc, '--json', proxy, 'dave@example.com', 'nobody@example.com'])
    assert.equal(r.code, 0, r.stderr)
    assert.deepEqual(document(r, 'delete'), {table: proxy, deleted: 1, missing: 1, missingKeys: ['nobody@example.com']})
    r = await proxymap(['delete', '-c', pf.etc, '--output', 'json', proxy, 'nobody@example.com'])
    assert.equal(r.code, 1)
    document(r, 'delete')

    r = await proxymap(['dump', '-c', pf.etc, '--json', proxy])
    assert.equal(r.code, 0, r.stderr)
    const dump = document(r, 'dump') as {entries: {key: string}[]; count: number}
    assert.deepEqual(dump.entries.map(e => e.key).sort(), ['alice@example.com', 'carol@example.com', 'erin@example.com'])
    assert.equal(dump.count, 3)
    r = await proxymap(['dump', '-c', pf.etc, '-o', 'json', `proxy:${denied}`])
    assert.equal(r.code, 3)
    document(r, 'error')
  })

  test('check-access and install-master --json: documented shapes (approved, denied with the fix, probe)', async () => {
    let r = await proxymap(['check-access', '-c', pf.etc, '--json', '--probe', `proxy:${virtual}`])
    assert.equal(r.code, 0, r.stdout)
    const ok = document(r, 'checkAccess') as {tables: {approved: boolean; probe: {status: string}}[]; fix: unknown}
    assert.equal(ok.tables[0].approved, true)
    assert.equal(ok.tables[0].probe.status, 'NOKEY')
    assert.equal(ok.fix, null)
    r = await proxymap(['check-access', '-c', pf.etc, '--output', 'json', '--write', '--all', `proxy:${denied}`])
    assert.equal(r.code, 3)
    const deny = document(r, 'checkAccess') as {tables: {approved: boolean}[]; fix: {applied: boolean}; exitCode: number}
    assert.equal(deny.fix.applied, false)
    assert.equal(deny.exitCode, 3)

    const masterCf = fs.readFileSync(path.join(pf.etc, 'master.cf'), 'utf8')
    r = await proxymap(['install-master', '-c', pf.etc, '--json'])
    assert.equal(r.code, 0, r.stderr)
    const plan = document(r, 'installMaster') as {applied: boolean; services: string[]}
    assert.equal(plan.applied, false)
    assert.deepEqual(plan.services, ['proxymap', 'proxywrite'])
    assert.equal(fs.readFileSync(path.join(pf.etc, 'master.cf'), 'utf8'), masterCf, 'a plan writes nothing')
  })

  test('no escape codes in a pipe or with NO_COLOR, in every format of every command', async () => {
    const proxy = `proxy:${senders}`
    const runs: string[][] = []
    for (const output of [[], ['--output', 'plain'], ['--output', 'table']]) {
      runs.push(
        ['query', '-c', pf.etc, ...output, `proxy:${virtual}`, 'alice@example.com', 'nobody'],
        ['update', '-c', pf.etc, ...output, proxy, 'grace@example.com', 'OK'],
        ['delete', '-c', pf.etc, ...output, proxy, 'grace@example.com', 'nobody'],
        ['dump', '-c', pf.etc, ...output, proxy],
        ['check-access', '-c', pf.etc, ...output, '--probe', `proxy:${virtual}`, `proxy:${denied}`],
      )
    }
    runs.push(['install-master', '-c', pf.etc], ['query', '-c', pf.etc, `proxy:${denied}`, 'x'], ['query', '-c', idle, `proxy:${virtual}`, 'x'])
    for (const args of runs) {
      const piped = await proxymap(args)
      assert.ok(!piped.timedOut && piped.code !== 2, `${args.join(' ')}: exit ${piped.code}: ${piped.stderr}`)
      noEscapes(piped, `${args.join(' ')} in a pipe`)
      const noColor = await proxymap(args, {env: plainEnv({NO_COLOR: '1', FORCE_COLOR: '3'})})
      noEscapes(noColor, `${args.join(' ')} with NO_COLOR (and FORCE_COLOR)`)
    }
    // check-access in a pipe: the lines, without the box table people get on a terminal.
    const report = await proxymap(['check-access', '-c', pf.etc, `proxy:${virtual}`, `proxy:${denied}`])
    assert.match(report.stdout, /approved: proxy:texthash:\S+\/virtual/)
    assert.doesNotMatch(report.stdout, /┌/)
  })

  test('on a terminal: tables and status colours by default where they help; none with NO_COLOR or --no-color', async () => {
    const args = ['query', '-c', pf.etc, `proxy:${virtual}`, 'alice@example.com', 'nobody']
    const tty = await onTerminal(args)
    assert.equal(tty.code, 0, tty.stdout)
    assert.ok(tty.stdout.includes(`${ESC}[32mOK`), `OK in green: ${JSON.stringify(tty.stdout)}`)
    assert.ok(tty.stdout.includes(`${ESC}[33mNOKEY`), `NOKEY in yellow: ${JSON.stringify(tty.stdout)}`)
    assert.match(stripAnsi(tty.stdout), /│ alice@example\.com +│ OK +│ alice@mailbox\.example\.com │/)
    // One key: the value alone, as postmap -q, also on a terminal.
    const one = await onTerminal(['query', '-c', pf.etc, `proxy:${virtual}`, 'alice@example.com'])
    assert.equal(one.stdout.replace(/\r\n/g, '\n'), 'alice@mailbox.example.com\n')
    for (const env of [plainEnv({NO_COLOR: '1'}), undefined]) {
      const plain = await onTerminal(env ? args : [...args, '--no-color'], env)
      assert.match(plain.stdout, /│ nobody +│ NOKEY +│/)
      assert.ok(!plain.stdout.includes(ESC), JSON.stringify(plain.stdout))
    }
    const access = await onTerminal(['check-access', '-c', pf.etc, `proxy:${virtual}`, `proxy:${denied}`])
    assert.match(stripAnsi(access.stdout), /│ verdict +│/)
    assert.ok(access.stdout.includes(`${ESC}[31mdenied`), JSON.stringify(access.stdout))
    // Errors in red on a terminal; the same words without colour in a pipe (above).
    const deny = await onTerminal(['query', '-c', pf.etc, `proxy:${denied}`, 'x'])
    assert.equal(deny.code, 3)
    assert.ok(deny.stdout.includes(`proxymap: ${ESC}[31mproxymap service is not configured for table`), JSON.stringify(deny.stdout))
    const denyNoColor = await onTerminal(['query', '-c', pf.etc, '--no-color', `proxy:${denied}`, 'x'])
    assert.ok(!denyNoColor.stdout.includes(ESC), JSON.stringify(denyNoColor.stdout))
    const dump = await onTerminal(['dump', '-c', pf.etc, '--output', 'table', `proxy:${senders}`])
    assert.match(stripAnsi(dump.stdout), /│ alice@example\.com +│ OK +│/)
    assert.match(dump.stdout, /\d entries/)
  })

  test('a slow service: a spinner on a terminal\'s stderr after a moment; never in a pipe or with NO_COLOR', async () => {
    // A socket that accepts and says nothing for 1.5 s, then hangs up: the client waits.
    const slow = fs.mkdtempSync(path.join(os.tmpdir(), 'pm-cli-output-slow-'))
    fs.mkdirSync(path.join(slow, 'spool', 'private'), {recursive: true})
    fs.writeFileSync(path.join(slow, 'main.cf'), `queue_directory = ${slow}/spool\n`)
    const server = net.createServer(socket => { setTimeout(() => socket.destroy(), 1500) })
    await new Promise<void>(resolve => server.listen(path.join(slow, 'spool', 'private', 'proxymap'), resolve))
    try {
      const args = ['query', '-c', slow, `proxy:${virtual}`, 'alice@example.com']
      const tty = await onTerminal(args)
      assert.equal(tty.code, 6, tty.stdout)
      assert.match(tty.stdout, /opening proxy:texthash:/, 'the spinner names the wait')
      assert.ok(tty.stdout.includes(ESC), 'ora draws on the terminal')
      assert.match(tty.stdout, /connection closed by .*\/spool\/private\/proxymap/)
      const piped = await proxymap(args)
      assert.equal(piped.code, 6)
      assert.doesNotMatch(piped.stderr, /opening/)
      noEscapes(piped, 'slow query in a pipe')
      const noColor = await onTerminal(args, plainEnv({NO_COLOR: '1'}))
      assert.doesNotMatch(noColor.stdout, /opening/)
      assert.ok(!noColor.stdout.includes(ESC), JSON.stringify(noColor.stdout))
      // A quick answer shows no spinner at all, even on a terminal.
      const quick = await onTerminal(['query', '-c', pf.etc, `proxy:${virtual}`, 'alice@example.com'])
      assert.doesNotMatch(quick.stdout, /opening/)
    } finally {
      server.close()
      fs.rmSync(slow, {recursive: true, force: true})
    }
  })

  test('--help of every command has examples and names its exit codes', async () => {
    for (const command of ['query', 'update', 'delete', 'dump', 'check-access', 'install-master', 'serve']) {
      const r = await proxymap([command, '--help'])
      assert.equal(r.code, 0, r.stderr)
      assert.match(r.stdout, /EXAMPLES\n[\s\S]*?\$ proxymap /, `${command} --help has examples`)
      if (command !== 'serve') assert.match(r.stdout, /Exit codes|--json/, `${command} --help documents its output`)
      noEscapes(r, `${command} --help`)
    }
  })
})
