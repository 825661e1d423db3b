// `proxymap check-access` against real main.cf files of private Postfix 3.7 instances: each
// cause of a DENY with its own explanation (text and --json), cross-checked with what real
// Postfix does with the same main.cf (postmap -q through Postfix's proxymap, postconf);
// --probe against Postfix's own proxymap; the fix with --yes and on a real pseudo-terminal;
// no escape codes with NO_COLOR or in a pipe.
import assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as path from 'node:path'
import {after, before, describe, test} from 'node:test'
import {
  POSTCONF, PROJECT_BIN, PROJECT_ROOT, createPostfixInstance, runCommand,
  type PostfixInstance, type RunResult,
} from '../helpers/postfix.js'
import {runOnTerminal} from '../helpers/terminal.js'

const ESC = '\u001b['

interface JsonReport {
  configDir: string
  mainCf: string
  mailOwner: {name: string; uid?: number; gid?: number}
  findings: {code: string; parameter?: string; message: string; hint?: string}[]
  tables: {
    table: string; access: 'read' | 'write'; service: string; parameter: string; approved: boolean
    via?: string[]; usedBy?: string[]
    problems: {code: string; message: string; hint?: string}[]
    files: {path: string; exists: boolean; readable: boolean; writable?: boolean; problem?: {code: string}}[]
    probe?: {status: string; open?: string; lookup?: string; meaning: string; next: string}
  }[]
  fix: {file: string; edits: {parameter: string; before?: string; after: string; added: string[]}[]; applied: boolean} | null
  exitCode: number
}

function plainEnv(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {...process.env, ...extra}
  delete env.FORCE_COLOR
  delete env.MAIL_CONFIG
  return env
}

function checkAccess(pf: PostfixInstance, args: string[], env = plainEnv()): Promise<RunResult> {
  return runCommand(process.execPath, [PROJECT_BIN, 'check-access', '-c', pf.etc, ...args], {cwd: PROJECT_ROOT, env, timeoutMs: 30_000})
}

async function checkJson(pf: PostfixInstance, args: string[]): Promise<{r: RunResult; report: JsonReport}> {
  const r = await checkAccess(pf, ['--json', ...args])
  let report: JsonReport
  try {
    report = JSON.parse(r.stdout) as JsonReport
  } catch {
    throw new Error(`not JSON: stdout=${JSON.stringify(r.stdout)} stderr=${JSON.stringify(r.stderr)}`)
  }
  return {r, report}
}

// eslint-disable-next-line no-control-regex
const stripAnsi = (s: string): string => s.replace(/\u001b\[[0-9;?]*[A-Za-z]/g, '')

const codes = (t: JsonReport['tables'][number]): string[] => t.problems.map(p => p.code)

/** Real Postfix's verdict: postmap -q through Postfix's proxymap (a DENY is fatal there). */
async function realLookup(pf: PostfixInstance, table: string, key: string): Promise<RunResult> {
  return pf.postmap(['-q', key, table], {timeoutMs: 20_000})
}

function onTerminal(args: string[], answer: string, env: NodeJS.ProcessEnv): Promise<RunResult> {
  return runOnTerminal(['check-access', ...args], {env, answer})
}

describe('check-access', () => {
  let pf: PostfixInstance
  let virtual: string
  let other: string

  before(async () => {
    for (const tool of [POSTCONF, '/usr/sbin/postmap']) assert.ok(fs.existsSync(tool), `${tool} is required (real Postfix 3.7)`)
    pf = await createPostfixInstance({prefix: 'proxymap-check-access-'})
    virtual = await pf.createTable('hash', 'virtual', 'alice@example.com alice@mailbox.example.com\n')
    other = await pf.createTable('texthash', 'other', 'bob@example.com bob\n', {build: false})
    await pf.startPostfix()
  })

  after(async () => {
    await pf?.destroy()
  })

  test('approved: names the parameter chain (via $virtual_alias_maps in proxy_read_maps); exit 0', async () => {
    await pf.postconf({virtual_alias_maps: `proxy:${virtual}`, proxy_read_maps: '$virtual_alias_maps', proxy_write_maps: ''})
    await pf.reloadPostfix()
    const text = await checkAccess(pf, [`proxy:${virtual}`])
    assert.equal(text.code, 0, text.stderr)
    assert.match(text.stdout, /approved: proxy:hash:\S+\/virtual for lookups through proxymap, via \$virtual_alias_maps in proxy_read_maps/)
    assert.doesNotMatch(text.stdout + text.stderr, /\u001b\[/)
    const {r, report} = await checkJson(pf, [virtual])
    assert.equal(r.code, 0)
    assert.equal(report.tables[0].approved, true)
    assert.deepEqual(report.tables[0].via, ['proxy_read_maps', 'virtual_alias_maps'])
    assert.equal(report.tables[0].service, 'proxymap')
    assert.equal(report.tables[0].files[0].readable, true)
    assert.equal(report.exitCode, 0)
    assert.equal(report.fix, null)
    // Real Postfix agrees.
    const real = await realLookup(pf, `proxy:${virtual}`, 'alice@example.com')
    assert.equal(real.stdout, 'alice@mailbox.example.com\n', real.stderr)
  })

  test('missing proxy: prefix (through $virtual_alias_maps) and the other list: exit 3, in text and --json', async () => {
    await pf.postconf({virtual_alias_maps: virtual, proxy_read_maps: '$virtual_alias_maps', proxy_write_maps: `proxy:${virtual}`})
    await pf.reloadPostfix()
    const text = await checkAccess(pf, [`proxy:${virtual}`])
    assert.equal(text.code, 3, text.stderr)
    assert.match(text.stdout, /DENIED: proxy:hash:\S+\/virtual for lookups through proxymap/)
    assert.match(text.stdout, /missing-proxy-prefix: proxy_read_maps includes hash:\S+ through \$virtual_alias_maps, but without the proxy: prefix/)
    assert.match(text.stdout, /wrong-list: proxy:hash:\S+ is approved in proxy_write_maps, which is the list of the proxywrite service/)
    // Not on a terminal: the fix is shown on stderr, never asked for, never written.
    assert.match(text.stderr, /^\+proxy_read_maps = \$virtual_alias_maps proxy:hash:\S+\/virtual$/m)
    assert.match(text.stderr, /run again with --yes/)
    assert.doesNotMatch(text.stderr, /Write this change/)
    assert.match(fs.readFileSync(path.join(pf.etc, 'main.cf'), 'utf8'), /^proxy_read_maps = \$virtual_alias_maps$/m)
    const {r, report} = await checkJson(pf, [`proxy:${virtual}`])
    assert.equal(r.code, 3)
    assert.equal(report.exitCode, 3)
    assert.deepEqual(codes(report.tables[0]), ['not-listed', 'missing-proxy-prefix', 'wrong-list'])
    assert.equal(report.fix?.applied, false)
    assert.equal(report.fix?.edits[0].parameter, 'proxy_read_maps')
    // Real Postfix denies it too.
    const real = await realLookup(pf, `proxy:${virtual}`, 'alice@example.com')
    assert.notEqual(real.code, 0)
    assert.match(real.stderr, /proxymap service is not configured for table/)
  })

  test('--write: a table in the read list only is denied for proxywrite (wrong-list)', async () => {
    await pf.postconf({proxy_read_maps: `proxy:${virtual}`, proxy_write_maps: ''})
    const {r, report} = await checkJson(pf, ['--write', virtual])
    assert.equal(r.code, 3)
    assert.equal(report.tables[0].service, 'proxywrite')
    assert.equal(report.tables[0].parameter, 'proxy_write_maps')
    assert.ok(codes(report.tables[0]).includes('wrong-list'))
    assert.match(report.tables[0].problems.find(p => p.code === 'wrong-list')!.message, /updates need proxy_write_maps/)
  })

  test('spacing: inline:{a=b, c=d} vs inline:{a=b,c=d}', async () => {
    await pf.postconf({proxy_read_maps: 'proxy:inline:{a=b, c=d}', proxy_write_maps: ''})
    await pf.reloadPostfix()
    const text = await checkAccess(pf, ['proxy:inline:{a=b,c=d}'])
    assert.equal(text.code, 3)
    assert.match(text.stdout, /spacing: proxy_read_maps lists proxy:inline:\{a=b, c=d\}: the same table with different spacing; proxymap compares names byte for byte/)
    const {report} = await checkJson(pf, ['proxy:inline:{a=b,c=d}'])
    assert.deepEqual(codes(report.tables[0]), ['not-listed', 'spacing'])
    const real = await realLookup(pf, 'proxy:inline:{a=b,c=d}', 'a')
    assert.match(real.stderr, /proxymap service is not configured for table "inline:\{a=b,c=d\}"/)
    assert.equal((await realLookup(pf, 'proxy:inline:{a=b, c=d}', 'a')).stdout, 'b\n')
  })

  test('other path and other type', async () => {
    await pf.postconf({proxy_read_maps: `proxy:hash:/srv/elsewhere/virtual proxy:lmdb:${pf.etc}/virtual`})
    const {r, report} = await checkJson(pf, [virtual])
    assert.equal(r.code, 3)
    assert.deepEqual(codes(report.tables[0]), ['not-listed', 'other-path', 'other-type'])
    assert.match(report.tables[0].problems[1].message, /another path \("\/srv\/elsewhere\/virtual" vs "\S+\/etc\/virtual"\)/)
    assert.match(report.tables[0].problems[2].message, /another table type \(lmdb: vs hash:\)/)
  })

  test('lost defaults: proxy_read_maps overridden without $local_recipient_maps → proxy:unix:passwd.byname denied', async () => {
    await pf.postconf({local_recipient_maps: 'proxy:unix:passwd.byname $alias_maps', proxy_read_maps: `proxy:${virtual}`})
    await pf.reloadPostfix()
    const text = await checkAccess(pf, ['proxy:unix:passwd.byname'])
    assert.equal(text.code, 3)
    assert.match(text.stdout, /main.cf: proxy_read_maps is set in main.cf without its default entries, so these tables are no longer approved: proxy:unix:passwd.byname \(from \$local_recipient_maps\)/)
    assert.match(text.stdout, /lost-default: the default proxy_read_maps approves proxy:unix:passwd.byname through \$local_recipient_maps, but main.cf sets proxy_read_maps without that default entry/)
    const {report} = await checkJson(pf, ['unix:passwd.byname'])
    assert.deepEqual(codes(report.tables[0]), ['not-listed', 'lost-default'])
    assert.equal(report.findings.find(f => f.code === 'lost-defaults')?.parameter, 'proxy_read_maps')
    const real = await realLookup(pf, 'proxy:unix:passwd.byname', 'root')
    assert.match(real.stderr, /proxymap service is not configured for table "unix:passwd.byname"/)
  })

  test('self-reference: proxy_read_maps = $proxy_read_maps ... (Postfix: unreasonable macro call nesting)', async () => {
    await pf.postconf({proxy_read_maps: `$proxy_read_maps proxy:${virtual}`})
    const postconf = await runCommand(POSTCONF, ['-c', pf.etc, '-x', '-h', 'proxy_read_maps'])
    assert.match(postconf.stderr, /unreasonable macro call nesting: "proxy_read_maps"/)
    const text = await checkAccess(pf, [virtual])
    assert.equal(text.code, 3)
    assert.match(text.stdout, /self-reference: proxy_read_maps refers to itself: Postfix reports "unreasonable macro call nesting: "proxy_read_maps""/)
    const {report} = await checkJson(pf, [virtual])
    assert.deepEqual(codes(report.tables[0]), ['self-reference'])
    assert.equal(report.findings.find(f => f.code === 'self-reference')?.parameter, 'proxy_read_maps')
    // The proposed fix puts the default text where the self-reference was.
    const edit = report.fix!.edits[0]
    assert.ok(edit.after.startsWith('$local_recipient_maps $mydestination $virtual_alias_maps'), edit.after)
    assert.ok(edit.after.endsWith(`proxy:${virtual} proxy:${virtual}`), edit.after)
    assert.doesNotMatch(edit.after, /\$proxy_read_maps/)
  })

  test('master.cf -o postscreen_cache_map=proxy:btree:... is invisible to proxymap (--all --write use)', async () => {
    const cache = `btree:${pf.data}/ps_cache`
    await pf.postconf({proxy_read_maps: '', proxy_write_maps: '$postscreen_cache_map'})
    const masterCf = path.join(pf.etc, 'master.cf')
    const saved = fs.readFileSync(masterCf, 'utf8')
    try {
      fs.appendFileSync(masterCf, `smtp      inet  n       -       n       -       1       postscreen\n  -o postscreen_cache_map=proxy:${cache}\n`)
      const {r, report} = await checkJson(pf, ['--all'])
      assert.equal(r.code, 3)
      const t = report.tables.find(x => x.table === cache)
      assert.ok(t, JSON.stringify(report.tables))
      assert.equal(t.access, 'write')
      assert.equal(t.approved, false)
      assert.deepEqual(codes(t), ['not-listed', 'master-cf-override'])
      assert.match(t.problems[1].message, /master.cf line \d+ \(service smtp, postscreen\) sets -o postscreen_cache_map=proxy:btree:\S+; proxymap reads only main.cf, so \$postscreen_cache_map in proxy_write_maps means main.cf's postscreen_cache_map \(btree:\$data_directory\/postscreen_cache\), not this value/)
      assert.match(t.problems[1].hint!, /set postscreen_cache_map = proxy:btree:\S+ in main.cf instead of in master.cf/)
      assert.ok(t.usedBy?.[0].startsWith('postscreen_cache_map (master.cf line'))
      const text = await checkAccess(pf, ['--all', '--write'])
      assert.match(text.stdout, /master-cf-override: master.cf line/)
    } finally {
      fs.writeFileSync(masterCf, saved)
    }
  })

  test('--all finds proxy: tables inside unionmap:{ } and pipemap:{ }', async () => {
    await pf.postconf({
      proxy_read_maps: `proxy:${virtual}`, proxy_write_maps: '',
      transport_maps: `unionmap:{proxy:${virtual}, proxy:${other}}`,
      canonical_maps: `pipemap:{proxy:inline:{x=y}, static:z}`,
    })
    try {
      const {r, report} = await checkJson(pf, ['--all'])
      assert.equal(r.code, 3)
      const byTable = new Map(report.tables.map(t => [t.table, t]))
      assert.equal(byTable.get(virtual)?.approved, true)
      // (address_verify_transport_maps defaults to $transport_maps: a use too, as postconf -x shows)
      assert.deepEqual(byTable.get(virtual)?.usedBy, ['transport_maps', 'address_verify_transport_maps'])
      assert.equal(byTable.get(other)?.approved, false)
      assert.equal(byTable.get('inline:{x=y}')?.approved, false)
      assert.deepEqual(byTable.get('inline:{x=y}')?.usedBy, ['canonical_maps'])
    } finally {
      await pf.postconf({transport_maps: '', canonical_maps: ''})
    }
  })

  test('mail_owner cannot read the file: approved but exit 4; --probe gets RETRY from Postfix\'s proxymap', async () => {
    const secret = await pf.createTable('texthash', 'secret', 'k v\n', {build: false})
    fs.chmodSync(secret.slice('texthash:'.length), 0o600)
    await pf.postconf({proxy_read_maps: `proxy:${secret}`, proxy_write_maps: ''})
    await pf.reloadPostfix()
    const {r, report} = await checkJson(pf, ['--probe', secret])
    assert.equal(r.code, 4, r.stderr)
    const t = report.tables[0]
    assert.equal(t.approved, true)
    assert.deepEqual(codes(t), ['file-unreadable'])
    assert.match(t.problems[0].message, /postfix cannot read \S+\/secret \(owner 0, group 0, mode 0600\)/)
    assert.equal(t.probe?.open, 'OK')
    assert.equal(t.probe?.status, 'RETRY')
    assert.match(t.probe!.meaning, /could not read it/)
    // A directory mail_owner cannot enter.
    const hidden = path.join(pf.dir, 'hidden')
    fs.mkdirSync(hidden, {mode: 0o700})
    fs.writeFileSync(path.join(hidden, 't'), 'k v\n', {mode: 0o644})
    await pf.postconf({proxy_read_maps: `proxy:texthash:${hidden}/t`})
    const d = await checkJson(pf, [`texthash:${hidden}/t`])
    assert.deepEqual(codes(d.report.tables[0]), ['dir-not-traversable'])
    // Writes: a root-owned 0755 directory and a missing table file.
    await pf.postconf({proxy_write_maps: `proxy:lmdb:${pf.etc}/w_lmdb proxy:lmdb:${pf.data}/w_lmdb`})
    const w = await checkJson(pf, ['--write', `lmdb:${pf.etc}/w_lmdb`, `lmdb:${pf.data}/w_lmdb`])
    assert.deepEqual(codes(w.report.tables[0]), ['dir-unwritable'])
    assert.deepEqual(codes(w.report.tables[1]), [])
    assert.equal(w.report.tables[1].files[0].writable, true)
  })

  test('--probe against Postfix\'s proxymap: OK, NOKEY and DENY explained, with colours on a terminal only', async () => {
    await pf.postconf({proxy_read_maps: `proxy:${virtual}`, proxy_write_maps: ''})
    await pf.reloadPostfix()
    const ok = await checkJson(pf, ['--probe', '--probe-key', 'alice@example.com', virtual])
    assert.equal(ok.r.code, 0, ok.r.stderr)
    assert.equal(ok.report.tables[0].probe?.status, 'OK')
    assert.match(ok.report.tables[0].probe!.meaning, /found the probe key/)
    const nokey = await checkAccess(pf, ['--probe', virtual])
    assert.equal(nokey.code, 0)
    assert.match(nokey.stdout, /probe \(proxymap\): open OK, lookup "proxymap-check-access-probe" NOKEY: .*access works/)
    // Denied in main.cf and by the running service.
    const deny = await checkJson(pf, ['--probe', 'proxy:inline:{q=r}'])
    assert.equal(deny.r.code, 3)
    assert.equal(deny.report.tables[0].probe?.status, 'DENY')
    assert.match(deny.report.tables[0].probe!.next, /postfix reload/)
    // main.cf approves it now, but the running service still has the old list: the probe says so.
    await pf.postconf({proxy_read_maps: `proxy:${virtual} proxy:inline:{q=r}`})
    const stale = await checkJson(pf, ['--probe', 'proxy:inline:{q=r}'])
    assert.equal(stale.report.tables[0].approved, true)
    assert.equal(stale.report.tables[0].probe?.status, 'DENY')
    assert.equal(stale.r.code, 3)
    await pf.reloadPostfix()
    assert.equal((await checkAccess(pf, ['--probe', 'proxy:inline:{q=r}'])).code, 0)
    // Colours: on a terminal yes, with NO_COLOR or --no-color no; never in a pipe.
    const tty = await onTerminal(['-c', pf.etc, '--probe', virtual, 'inline:{zz=1}'], 'n\r', plainEnv())
    assert.ok(tty.stdout.includes(`${ESC}32mapproved`), JSON.stringify(tty.stdout))
    assert.ok(tty.stdout.includes(`${ESC}33mNOKEY`), JSON.stringify(tty.stdout))
    assert.ok(tty.stdout.includes(`${ESC}31mDENIED`), JSON.stringify(tty.stdout))
    const noColor = await onTerminal(['-c', pf.etc, '--probe', virtual], 'n\r', plainEnv({NO_COLOR: '1'}))
    assert.match(noColor.stdout, /NOKEY/)
    assert.ok(!noColor.stdout.includes(ESC), JSON.stringify(noColor.stdout))
    const flagOff = await onTerminal(['-c', pf.etc, '--no-color', '--probe', virtual], 'n\r', plainEnv())
    assert.ok(!flagOff.stdout.includes(ESC), JSON.stringify(flagOff.stdout))
    const pipe = await checkAccess(pf, ['--probe', virtual, 'inline:{zz=1}'])
    assert.ok(!(pipe.stdout + pipe.stderr).includes('\u001b'), JSON.stringify(pipe.stdout + pipe.stderr))
  })

  test('--probe with no service running: exit 6 and what to start', async () => {
    const idle = await createPostfixInstance({prefix: 'proxymap-check-access-idle-'})
    try {
      await idle.postconf({proxy_read_maps: `proxy:${virtual}`})
      const {r, report} = await checkJson(idle, ['--probe', virtual])
      assert.equal(r.code, 6)
      assert.equal(report.tables[0].probe?.status, 'UNREACHABLE')
      assert.match(report.tables[0].probe!.next, /postfix start/)
    } finally {
      await idle.destroy()
    }
  })

  test('--yes keeps the defaults when main.cf does not set the list; after reload real postmap -q is approved', async () => {
    const del = await runCommand(POSTCONF, ['-c', pf.etc, '-X', 'proxy_read_maps'])
    assert.equal(del.code, 0, del.stderr)
    const otherTable = `proxy:${other}`
    const denied = await realLookup(pf, otherTable, 'bob@example.com')
    assert.match(denied.stderr, /not configured for table/)
    const r = await checkAccess(pf, ['--yes', otherTable])
    assert.equal(r.code, 0, r.stdout + r.stderr)
    assert.match(r.stdout, /now approved: proxy:texthash:\S+ via proxy_read_maps \(listed there\)/)
    assert.match(r.stderr, /postfix reload/)
    assert.doesNotMatch(r.stderr, /\u001b/)
    const value = await pf.postconfGet('proxy_read_maps')
    assert.ok(value.startsWith('$local_recipient_maps $mydestination $virtual_alias_maps'), value)
    assert.ok(value.endsWith(` ${otherTable}`), value)
    // Postfix reads the file we wrote without complaint.
    const check = await runCommand(POSTCONF, ['-c', pf.etc, '-n'])
    assert.equal(check.stderr, '')
    await pf.reloadPostfix()
    const real = await realLookup(pf, otherTable, 'bob@example.com')
    assert.equal(real.stdout, 'bob\n', real.stderr)
  })

  test('--yes appends to the current value (continuation lines replaced); --json reports the edit', async () => {
    const mainCf = path.join(pf.etc, 'main.cf')
    await pf.postconf({proxy_read_maps: 'x'})
    const text = fs.readFileSync(mainCf, 'utf8').replace(/^proxy_read_maps = x$/m, `proxy_read_maps = proxy:inline:{a=b}\n  proxy:${virtual}\n# comment kept\nmydestination =`)
    fs.writeFileSync(mainCf, text)
    const {r, report} = await checkJson(pf, ['--yes', other])
    assert.equal(r.code, 0, r.stderr)
    assert.equal(report.fix?.applied, true)
    assert.equal(report.fix?.edits[0].before, `proxy:inline:{a=b}  proxy:${virtual}`)
    // The value is written on one line: the indentation of the continuation line is squeezed.
    assert.equal(report.fix?.edits[0].after, `proxy:inline:{a=b} proxy:${virtual} proxy:${other}`)
    assert.equal(report.tables[0].approved, true)
    const now = fs.readFileSync(mainCf, 'utf8')
    assert.match(now, new RegExp(`^proxy_read_maps = proxy:inline:\\{a=b\\} proxy:${virtual.replace(/[/.]/g, '\\$&')} proxy:texthash:\\S+\\n# comment kept\\nmydestination =$`, 'm'))
    // (postconf prints the joined logical line with single spaces)
    assert.equal(await pf.postconfGet('proxy_read_maps'), `proxy:inline:{a=b} proxy:${virtual} proxy:${other}`)
  })

  test('on a real terminal: diff, confirmation prompt; "n" writes nothing, "y" writes main.cf', async () => {
    const mainCf = path.join(pf.etc, 'main.cf')
    await pf.postconf({proxy_read_maps: `proxy:${virtual}`})
    const before = fs.readFileSync(mainCf, 'utf8')
    const no = await onTerminal(['-c', pf.etc, 'inline:{tty=1}'], 'n\r', plainEnv())
    assert.equal(no.code, 3, no.stdout)
    assert.match(stripAnsi(no.stdout), /Write this change to \S+main.cf\?/)
    assert.match(stripAnsi(no.stdout), /\+proxy_read_maps = proxy:hash:\S+ proxy:inline:\{tty=1\}/)
    assert.equal(fs.readFileSync(mainCf, 'utf8'), before)
    const yes = await onTerminal(['-c', pf.etc, 'inline:{tty=1}'], 'y\r', plainEnv())
    assert.equal(yes.code, 0, yes.stdout)
    assert.ok(yes.stdout.includes(ESC), 'colours on a terminal')
    const shown = stripAnsi(yes.stdout)
    assert.match(shown, /Write this change to \S+main.cf\? \(y\/N\)/)
    assert.match(shown, /now approved: proxy:inline:\{tty=1\} via proxy_read_maps/)
    assert.match(shown, /postfix reload/)
    assert.equal(await pf.postconfGet('proxy_read_maps'), `proxy:${virtual} proxy:inline:{tty=1}`)
    await pf.reloadPostfix()
    assert.equal((await realLookup(pf, 'proxy:inline:{tty=1}', 'tty')).stdout, '1\n')
  })

  test('usage: no table and no --all → exit 2', async () => {
    const r = await checkAccess(pf, [])
    assert.equal(r.code, 2)
    assert.match(r.stderr, /name at least one TABLE, or use --all/)
  })
})
