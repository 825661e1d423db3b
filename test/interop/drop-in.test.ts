// The drop-in claim, tested with real Postfix 3.7 programs: postmap -q, postmap -q - and
// postalias -q give the same stdout, stderr and exit code against `proxymap serve` as
// against Postfix's own proxymap, on the same configuration and the same table files.
// Then our `proxymap query` against Postfix's own proxymap answers as postmap -q does.

import assert from 'node:assert/strict'
import {after, before, test} from 'node:test'
import {PROJECT_BIN, PostfixInstance, RunResult, createPostfixInstance, requirePostfix, runCommand} from '../helpers/postfix.js'

interface ClientCase {
  name: string
  tool: 'postmap' | 'postalias'
  args: string[]
  input?: string
}

let pf: PostfixInstance
let th: string
let missing: string
const cases: ClientCase[] = []

before(async () => {
  requirePostfix()
  pf = await createPostfixInstance({prefix: 'pm-dropin-', main: {smtputf8_enable: 'yes'}})
  th = await pf.createTable('texthash', 'virtual', [
    '# a comment',
    'alice@example.com\talice@mailbox.example.com',
    'bob@example.com   bob@mailbox.example.com, archive@example.org',
    'UPPER@example.com upper-case key in the file',
    'carol@example.com carol',
    '    continued on a second line',
    '',
  ].join('\n'), {build: false})
  missing = `texthash:${pf.etc}/does-not-exist`
  const inlineListed = 'inline:{alice=inline-alice, bob=inline-bob}'
  await pf.approve({read: [th, missing, inlineListed, 'static:{static result}'], write: []})
  const q = (name: string, key: string, table: string, extra: string[] = []): ClientCase =>
    ({name, tool: 'postmap', args: [...extra, '-q', key, `proxy:${table}`]})
  cases.push(
    q('hit', 'alice@example.com', th),
    q('miss', 'nobody@example.com', th),
    q('upper-case key folds to a hit', 'ALICE@Example.COM', th),
    q('key upper-case in the file', 'UPPER@example.com', th),
    q('continuation line', 'carol@example.com', th),
    q('no folding with -f', 'ALICE@example.com', th, ['-f']),
    q('unlisted table: DENY', 'alice', `texthash:${pf.etc}/not-listed`),
    q('listed with different spacing: DENY', 'alice', 'inline:{alice=inline-alice,bob=inline-bob}'),
    q('listed inline table, exact spelling', 'bob', inlineListed),
    q('static table', 'anything', 'static:{static result}'),
    q('listed table whose file is missing: RETRY', 'alice', missing),
    {name: 'postmap -q - (several keys, one connection)', tool: 'postmap', args: ['-q', '-', `proxy:${th}`],
      input: 'alice@example.com\nnobody@example.com\nBOB@example.com\n\ncarol@example.com\n'},
    {name: 'postmap -q - all misses', tool: 'postmap', args: ['-q', '-', `proxy:${th}`], input: 'x\ny\n'},
    {name: 'postalias -q', tool: 'postalias', args: ['-q', 'alice@example.com', `proxy:${th}`]},
    {name: 'postalias -q miss', tool: 'postalias', args: ['-q', 'zed', `proxy:${th}`]},
  )
})

after(async () => {
  await pf?.destroy()
})

async function runAll(): Promise<RunResult[]> {
  const results: RunResult[] = []
  for (const c of cases) results.push(await pf[c.tool](c.args, {input: c.input, timeoutMs: 15_000}))
  return results
}

/** The warnings a server logged about tables, without timestamps, hosts and pids. */
function tableWarnings(log: string): string[] {
  return log.split('\n').map(l => /\]: (warning: .*)$/.exec(l)?.[1]).filter((w): w is string => !!w)
    .filter(w => /unapproved table|to approve this table|is unavailable/.test(w)).sort()
}

test('real Postfix clients get the same answers from proxymap serve as from Postfix\'s proxymap', async () => {
  await pf.startPostfix()
  const theirs = await runAll()
  await pf.stopPostfix()
  const theirWarnings = tableWarnings(pf.maillog())

  await pf.startOurs()
  const ours = await runAll()
  const stopped = await pf.stopOurs()
  const ourWarnings = tableWarnings(pf.ourStderr())

  for (let i = 0; i < cases.length; i++) {
    const what = `${cases[i].name}: ${cases[i].tool} ${cases[i].args.join(' ')}`
    assert.equal(theirs[i].timedOut, false, `Postfix timed out: ${what}`)
    assert.equal(ours[i].timedOut, false, `ours timed out: ${what}`)
    assert.deepEqual({stdout: ours[i].stdout, stderr: ours[i].stderr, code: ours[i].code},
      {stdout: theirs[i].stdout, stderr: theirs[i].stderr, code: theirs[i].code}, what)
  }
  // The cases mean what they say (so that "same as Postfix" is not "same nothing").
  const byName = (n: string) => theirs[cases.findIndex(c => c.name === n)]
  assert.equal(byName('hit').stdout, 'alice@mailbox.example.com\n')
  assert.equal(byName('miss').code, 1)
  assert.match(byName('unlisted table: DENY').stderr, /proxymap service is not configured for table/)
  assert.match(byName('listed with different spacing: DENY').stderr, /not configured/)
  assert.match(byName('listed table whose file is missing: RETRY').stderr, /query error/)
  assert.equal(byName('postmap -q - (several keys, one connection)').stdout.split('\n').length, 4)

  // Same warnings in the log, in Postfix's words.
  assert.ok(theirWarnings.length >= 4, theirWarnings.join('\n'))
  assert.deepEqual(ourWarnings.filter(w => !/is unavailable/.test(w)), theirWarnings.filter(w => !/is unavailable/.test(w)))
  assert.equal(stopped.socketsLeft.length, 0, 'our server removes its sockets on SIGTERM')
  assert.equal(stopped.code, 0)
})

test('proxymap query against Postfix\'s own proxymap answers as postmap -q does', async () => {
  await pf.startPostfix()
  try {
    const singleKeyCases = cases.filter(c => c.tool === 'postmap' && c.args[0] === '-q' && c.args[1] !== '-')
    for (const c of singleKeyCases) {
      const [, key, table] = c.args
      const theirs = await pf.postmap(c.args, {timeoutMs: 15_000})
      const ours = await runCommand('node', [PROJECT_BIN, 'query', '-c', pf.etc, table, key], {timeoutMs: 15_000})
      assert.equal(ours.stdout, theirs.stdout, `${c.name}: stdout`)
      if (theirs.code === 0) assert.equal(ours.code, 0, `${c.name}: ${ours.stderr}`)
      else if (/not configured/.test(theirs.stderr)) {
        assert.equal(ours.code, 3, `${c.name}: DENY is exit 3; ${ours.stderr}`)
        assert.match(ours.stderr, /proxymap service is not configured for table/)
      } else if (/query error/.test(theirs.stderr)) assert.equal(ours.code, 4, `${c.name}: RETRY is exit 4; ${ours.stderr}`)
      else assert.equal(ours.code, 1, `${c.name}: not found is exit 1; ${ours.stderr}`)
    }
    const input = 'alice@example.com\nnobody@example.com\nBOB@example.com\n'
    const theirs = await pf.postmap(['-q', '-', `proxy:${th}`], {input})
    const ours = await runCommand('node', [PROJECT_BIN, 'query', '-c', pf.etc, `proxy:${th}`, '-'], {input, timeoutMs: 15_000})
    assert.equal(ours.stdout, theirs.stdout)
    assert.equal(ours.code, theirs.code)
    const json = await runCommand('node', [PROJECT_BIN, 'query', '--json', '-c', pf.etc, `proxy:${th}`, 'alice@example.com', 'nobody'], {timeoutMs: 15_000})
    assert.deepEqual(JSON.parse(json.stdout).results, [
      {key: 'alice@example.com', found: true, value: 'alice@mailbox.example.com'},
      {key: 'nobody', found: false},
    ])
  } finally {
    await pf.stopPostfix()
  }
})
