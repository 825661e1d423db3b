// main.cf reading and $name expansion, checked against the real Postfix 3.7 postconf(1):
// every case writes a main.cf, then compares our value with `postconf -c DIR -x -h NAME`.
// postconf must be installed: without it these tests fail (they never skip).

import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { after, describe, test } from 'node:test'
import {
  ConfigError,
  MacroExpansionError,
  POSTFIX_3_7_DEFAULTS,
  PROXYMAP_DAEMON_PARAMETERS,
  loadMainConfig,
  parseMainCf,
  parseMainCfWithWarnings,
  resolveConfigDir,
} from '../../src/lib/config/index.js'
import { POSTCONF } from '../helpers/postfix.js'

const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'proxymap-config-test-'))
after(() => fs.rmSync(scratch, { recursive: true, force: true }))

let caseNumber = 0

/** A config directory holding `mainCf` as main.cf (and an empty master.cf, to quiet postconf). */
function configDir(mainCf: string): string {
  const dir = path.join(scratch, `case-${++caseNumber}`)
  fs.mkdirSync(dir)
  const file = path.join(dir, 'main.cf')
  fs.writeFileSync(file, mainCf)
  fs.writeFileSync(path.join(dir, 'master.cf'), '')
  // Postfix waits up to ~2 s before reading a main.cf modified in the last seconds: backdate it.
  const past = Date.now() / 1000 - 60
  fs.utimesSync(file, past, past)
  return dir
}

interface PostconfRun {
  status: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

function runPostconf(dir: string, args: string[]): PostconfRun {
  const run = spawnSync(POSTCONF, ['-c', dir, ...args], { encoding: 'utf8', timeout: 10_000 })
  if (run.error) throw new Error(`cannot run ${POSTCONF} (real Postfix 3.7 is required): ${run.error.message}`)
  return { status: run.status, signal: run.signal, stdout: run.stdout, stderr: run.stderr }
}

/**
 * Starts postconf at once and resolves when it ends. For runs that fail: Postfix sleeps 1 s
 * before every fatal exit, so those runs are started together when the tests are defined.
 */
function startPostconf(dir: string, args: string[]): Promise<PostconfRun> {
  const run = new Promise<PostconfRun>((resolve, reject) => {
    const child = spawn(POSTCONF, ['-c', dir, ...args], { stdio: ['ignore', 'pipe', 'pipe'], timeout: 10_000 })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk))
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk))
    child.once('error', (error) => reject(new Error(`cannot run ${POSTCONF} (real Postfix 3.7 is required): ${error.message}`)))
    child.once('close', (status, signal) => resolve({ status, signal, stdout, stderr }))
  })
  run.catch(() => undefined) // reported by the test that awaits it, not as an unhandled rejection
  return run
}

// postconf names itself by argv[0] in its messages ("/usr/sbin/postconf: warning: ...").
const postconfMessage = (severity: 'warning' | 'fatal', text: string): RegExpExecArray | null =>
  new RegExp(`^\\S*postconf: ${severity}: (.*)$`, 'm').exec(text)

/** `postconf -x -h NAME...`: one line per name (postconf folds whitespace to single spaces). */
function postconfValues(dir: string, names: string[], overrides: string[] = []): string[] {
  const run = runPostconf(dir, [...overrides.flatMap((o) => ['-o', o]), '-x', '-h', ...names])
  assert.equal(run.status, 0, `postconf failed: ${run.stderr}`)
  const lines = run.stdout.split('\n').slice(0, -1)
  assert.equal(lines.length, names.length, `postconf does not know all of ${names.join(' ')}: ${run.stderr}`)
  return lines
}

/** Starts postconf -x -h NAME, which should fail; resolves to its first warning (its fatal error is "macro processing error"). */
async function postconfExpansionFailure(dir: string, name: string): Promise<string> {
  const run = await startPostconf(dir, ['-x', '-h', name])
  assert.notEqual(run.status, 0, `postconf unexpectedly expanded ${name}: ${run.stdout}`)
  const otherWarnings = /^.*(master\.cf|undefined parameter|unused parameter).*\n/gm
  return postconfMessage('warning', run.stderr.replace(otherWarnings, ''))?.[1] ?? ''
}

// postconf prints values with whitespace folded (pcf_print_line(), PCF_SEPARATORS).
const folded = (value: string): string => value.split(/[ \t\r\n]+/).filter(Boolean).join(' ')

function assertSameAsPostconf(mainCf: string, names: string[], overrides: Record<string, string> = {}): void {
  const dir = configDir(mainCf)
  const expected = postconfValues(dir, names, Object.entries(overrides).map(([k, v]) => `${k}=${v}`))
  const config = loadMainConfig({ configDir: dir, overrides })
  names.forEach((name, index) => {
    assert.equal(folded(config.get(name)), expected[index], `parameter ${name}`)
  })
}

describe('real postconf is available', () => {
  test('postconf 3.7 is installed (required, not optional)', () => {
    const dir = configDir('')
    assert.match(postconfValues(dir, ['mail_version'])[0], /^3\.7\./)
  })
})

describe('main.cf syntax, as Postfix reads it', () => {
  test('continuation lines, comments inside them, blank lines, "#" after a value', () => {
    const mainCf = [
      '# a comment before anything',
      'relay_domains = a.example,',
      '  b.example',
      '# a comment line inside a continuation does not end it',
      '\tc.example',
      '',
      '   ',
      '  d.example',
      'mydestination = $relay_domains # not a comment: only whole lines are comments',
      '   # an indented comment line',
      'virtual_alias_domains=e.example',
      'transport_maps = \thash:/etc/postfix/transport\t ',
      'canonical_maps =',
      'relocated_maps = first',
      'relocated_maps = last setting wins',
    ].join('\n')
    assertSameAsPostconf(mainCf, [
      'relay_domains',
      'mydestination',
      'virtual_alias_domains',
      'transport_maps',
      'canonical_maps',
      'relocated_maps',
    ])
  })

  test('raw values keep the indentation of continuation lines exactly (postconf "unused parameter" warnings)', () => {
    // Parameters that are neither built in nor referenced make postconf print their raw value.
    const mainCf = 'zz_one = alpha\n  beta\n\t\tgamma\nzz_two = x\n# c\n\n \n   y   \nzz_three = a\r\nzz_four=\n'
    const dir = configDir(mainCf)
    const run = runPostconf(dir, ['-n'])
    const rawByName = new Map<string, string>()
    for (const match of run.stderr.matchAll(/^\S*postconf: warning: .*?main\.cf: unused parameter: ([^=\n]+)=(.*)$/gm)) {
      rawByName.set(match[1], match[2])
    }
    assert.equal(rawByName.size, 4, run.stderr)
    const parsed = parseMainCf(mainCf)
    // Postfix logs non-printable characters (here: tabs) as '?'.
    const printable = (value: string): string => value.replace(/[\x00-\x1f\x7f]/g, '?')
    const ours = [...parsed].filter(([name]) => name.startsWith('zz_')).map(([name, value]) => [name, printable(value)] as const)
    assert.deepEqual(new Map(ours), rawByName)
    assert.equal(parsed.get('zz_one'), 'alpha  beta\t\tgamma')
    assert.equal(parsed.get('zz_two'), 'x   y')
  })

  test('a logical line that starts with whitespace is skipped with Postfix\'s warning', () => {
    const mainCf = '   relay_domains = skipped\n  still skipped\nmydestination = kept\n'
    const dir = configDir(mainCf)
    assertSameAsPostconf(mainCf, ['relay_domains', 'mydestination'])
    const config = loadMainConfig({ configDir: dir })
    assert.equal(config.isSet('relay_domains'), false)
    const postconfWarnings = runPostconf(dir, ['-n']).stderr
    assert.equal(config.warnings.length, 1)
    assert.ok(postconfWarnings.includes(`postconf: warning: ${config.warnings[0]}\n`), postconfWarnings)
  })

  test('an overridden entry gives Postfix\'s warning, naming the line and the earlier value', () => {
    const mainCf = '# x\nrelay_domains = one\n\nrelay_domains = two\n  three\nrelay_domains = two  three\n'
    const dir = configDir(mainCf)
    const config = loadMainConfig({ configDir: dir })
    assert.equal(config.raw('relay_domains'), 'two  three')
    assert.deepEqual(config.warnings, [`${dir}/main.cf, line 4: overriding earlier entry: relay_domains=one`])
    assert.ok(runPostconf(dir, ['-n']).stderr.includes(`postconf: warning: ${config.warnings[0]}\n`))
  })

  for (const [description, mainCf] of [
    ['a line without "="', 'relay_domains = ok\nrelay_domains bad\n'],
    ['a line without a name', '# x\n= value\n'],
  ] as const) {
    const dir = configDir(mainCf)
    const postconfRun = startPostconf(dir, ['-n'])
    test(`${description} is a fatal error with Postfix's message`, async () => {
      const run = await postconfRun
      assert.equal(run.status, 1)
      const fatal = postconfMessage('fatal', run.stderr)?.[1]
      assert.ok(fatal, run.stderr)
      assert.throws(
        () => loadMainConfig({ configDir: dir }),
        (error: unknown) => error instanceof ConfigError && error.message === fatal,
      )
    })
  }

  test('parseMainCf is pure and keeps the last setting', () => {
    const parsed = parseMainCfWithWarnings('a = 1\nb = 2\na = 3\n')
    assert.deepEqual([...parsed.parameters], [['a', '3'], ['b', '2']])
    assert.deepEqual(parsed.warnings, ['main.cf, line 3: overriding earlier entry: a=1'])
  })
})

describe('$name expansion, compared with postconf -x', () => {
  test('$name, ${name}, $(name), $$, unknown names', () => {
    assertSameAsPostconf(
      [
        'myhostname = mail.example.com',
        'relay_domains = $mydomain ${mydomain} $(mydomain) $$literal $$$mydomain $mydomain-$myhostname.x',
        'canonical_maps = [$no_such_parameter] ${virtual_maps}',
        'zz_user_defined = user value',
        'relocated_maps = $zz_user_defined',
      ].join('\n'),
      ['relay_domains', 'canonical_maps', 'relocated_maps', 'mydomain'],
    )
  })

  test('${name?value}, ${name:value} and their {braced} and ternary forms', () => {
    assertSameAsPostconf(
      [
        'myhostname = mail.example.com',
        'alias_maps = ${myhostname?hash:/etc/aliases} ${no_such_parameter?not shown}',
        'canonical_maps = ${myhostname:not shown}${no_such_parameter:hash:/etc/postfix/canonical}',
        'relocated_maps = ${myhostname?{proxy:hash:/a}:{proxy:hash:/b}} ${virtual_maps?{x}:{y}} ${myhostname?a:b}',
        'transport_maps = ${ myhostname ? { yes } : { no } } ${canonical_maps?{${myhostname}}}',
        'sender_canonical_maps = ${empty_here?x}${empty_here:{ spaced }}',
        'empty_here =',
      ].join('\n'),
      ['alias_maps', 'canonical_maps', 'relocated_maps', 'transport_maps', 'sender_canonical_maps'],
    )
  })

  test('relational expressions, including the compatibility-level "<level" operators', () => {
    assertSameAsPostconf(
      [
        'compatibility_level = 3.6',
        'relay_domains = ${{$compatibility_level} <level {3.6.1} ? {older} : {newer}} ${{3.10} >level {3.9}?yes}',
        'canonical_maps = ${{10} > {9}} ${{abc} < {abd}?y:n} ${{2} == {02}?same} ${{b} != {a}}',
        'relocated_maps = ${{x}=={x}?{equal}:{different}} ${{x} <= {w} ? {le} : {gt}}',
      ].join('\n'),
      ['relay_domains', 'canonical_maps', 'relocated_maps', 'smtputf8_enable', 'mynetworks_style', 'smtpd_relay_restrictions'],
    )
  })

  test('nested references, overridden defaults and the proxy lists', () => {
    assertSameAsPostconf(
      [
        'virtual_maps = proxy:hash:/etc/postfix/virtual',
        'header_checks = regexp:/etc/postfix/header_checks',
        'data_directory = /srv/data',
        'transport_maps = proxy:lmdb:$config_directory/transport',
        'proxy_read_maps = $local_recipient_maps $virtual_alias_domains $mime_header_checks',
        '  $transport_maps proxy:pcre:${config_directory}/x',
        'address_verify_map = proxy:btree:$data_directory/verify',
      ].join('\n'),
      [
        'proxy_read_maps',
        'proxy_write_maps',
        'virtual_alias_maps',
        'virtual_alias_domains',
        'address_verify_map',
        'postscreen_cache_map',
        'mime_header_checks',
        'config_directory',
      ],
    )
  })

  test('braces and unionmap entries pass through expansion unchanged', () => {
    assertSameAsPostconf(
      'proxy_read_maps = proxy:inline:{alice=inline-alice, bob=inline-bob} { proxy:hash:/x, x=y }\n' +
        '  unionmap:{proxy:hash:/u1, proxy:hash:/u2} pipemap:{proxy:hash:/p1,proxy:hash:/p2}\n',
      ['proxy_read_maps'],
    )
  })

  test('an empty main.cf gives every default of the table, expanded as postconf does', () => {
    const names = [...Object.keys(POSTFIX_3_7_DEFAULTS), 'myhostname', 'mydomain', 'mynetworks']
    assertSameAsPostconf('', names)
    const config = loadMainConfig({ configDir: configDir('') })
    assert.ok(config.get('proxy_read_maps').includes('proxy:unix:passwd.byname'))
  })

  test('the defaults table is exactly postconf -d (raw, unexpanded)', () => {
    const dir = configDir('')
    const run = runPostconf(dir, ['-d', ...Object.keys(POSTFIX_3_7_DEFAULTS)])
    assert.equal(run.status, 0, run.stderr)
    const expected = Object.entries(POSTFIX_3_7_DEFAULTS).map(([name, value]) => folded(`${name} = ${value}`))
    assert.deepEqual(run.stdout.split('\n').slice(0, -1).map(folded), expected)
  })

  test('host-computed defaults follow main.cf (myhostname, mydomain, mynetworks_style, inet_*)', () => {
    const names = ['myhostname', 'mydomain', 'mydestination', 'mynetworks', 'relay_domains']
    assertSameAsPostconf('myhostname = mail.example.com\n', names)
    assertSameAsPostconf('mydomain = example.net\n', names)
    assertSameAsPostconf('mynetworks_style = host\n', names)
    assertSameAsPostconf('mynetworks_style = class\ninet_protocols = ipv4\n', names)
    assertSameAsPostconf('inet_interfaces = loopback-only\ncompatibility_level = 3.6\n', names)
    assertSameAsPostconf('inet_interfaces = 127.0.0.1, ::1\n', names)
  })

  test('overrides win over main.cf, like postconf -o', () => {
    assertSameAsPostconf('relay_domains = from-main-cf\nmydomain = example.org\n', ['relay_domains', 'myhostname'], {
      relay_domains: '$mydomain override',
      mydomain: 'override.example',
    })
  })

  test('config_directory is the directory read, unless main.cf sets it (as in Postfix)', () => {
    assertSameAsPostconf('relay_domains = $config_directory\n', ['config_directory', 'relay_domains'])
    assertSameAsPostconf('config_directory = /elsewhere\n', ['config_directory'])
  })

  const chain = (length: number): string =>
    `relay_domains = $p1\n${Array.from({ length }, (_, i) => `p${i + 1} = $p${i + 2}`).join('\n')}\np${length + 1} = end\n`
  const tooDeep = configDir(chain(100))
  const tooDeepWarning = postconfExpansionFailure(tooDeep, 'relay_domains')
  test('the nesting limit is Postfix\'s: 100 levels of references expand, 101 do not', async () => {
    assertSameAsPostconf(chain(99), ['relay_domains'])
    const warning = await tooDeepWarning
    assert.equal(warning, 'unreasonable macro call nesting: "end"')
    assert.throws(
      () => loadMainConfig({ configDir: tooDeep }).get('relay_domains'),
      (error: unknown) => error instanceof MacroExpansionError && error.postfixMessage === warning,
    )
  })

  const failures: Array<[string, string, string]> = [
    ['self reference', 'proxy_read_maps = $proxy_read_maps proxy:hash:/etc/postfix/x\n', 'proxy_read_maps'],
    ['empty macro name', 'relay_domains = a $ b\n', 'relay_domains'],
    ['$ at the end', 'relay_domains = a $\n', 'relay_domains'],
    ['truncated reference', 'relay_domains = a ${mydomain\n', 'relay_domains'],
    ['bad name', 'relay_domains = ${mydomain x}\n', 'relay_domains'],
    ['bad operator', 'relay_domains = ${{a} ~ {b}}\n', 'relay_domains'],
    ['bad operator suffix', 'relay_domains = ${{a} ==len {b}}\n', 'relay_domains'],
    ['missing right operand', 'relay_domains = ${{a} == b}\n', 'relay_domains'],
    ['garbage after {value}', 'relay_domains = ${mydomain?{x}junk}\n', 'relay_domains'],
    ['garbage after :{value}', 'relay_domains = ${mydomain:{x}junk}\n', 'relay_domains'],
    ['garbage after relational', 'relay_domains = ${{a} == {b} x}\n', 'relay_domains'],
    ['unbalanced braces', 'relay_domains = ${mydomain?{x}\n', 'relay_domains'],
    ['bad compatibility level', 'relay_domains = ${{3.x} <level {2}}\n', 'relay_domains'],
    ['error in a referenced value', 'relay_domains = $virtual_alias_maps\nvirtual_alias_maps = ${x\n', 'relay_domains'],
  ]
  for (const [description, mainCf, name] of failures) {
    const dir = configDir(mainCf)
    const postfixWarning = postconfExpansionFailure(dir, name)
    test(`expansion error with Postfix's message: ${description}`, async () => {
      const warning = await postfixWarning
      assert.notEqual(warning, '')
      const config = loadMainConfig({ configDir: dir })
      assert.throws(
        () => config.get(name),
        (error: unknown) =>
          error instanceof MacroExpansionError &&
          error.postfixMessage === warning &&
          error.message.includes(`parameter ${name}`),
      )
    })
  }

  // postconf expands the parameters of main.cf in hash-table order while checking them, so
  // which member of a reference cycle its warning names varies from run to run.
  const cycle = configDir('relay_domains = $virtual_alias_maps\nvirtual_alias_maps = $relay_domains\n')
  const cycleWarning = postconfExpansionFailure(cycle, 'relay_domains')
  test('expansion error with Postfix\'s message: a reference cycle', async () => {
    const nestingInCycle = /^unreasonable macro call nesting: "(relay_domains|virtual_alias_maps)"$/
    assert.match(await cycleWarning, nestingInCycle)
    assert.throws(
      () => loadMainConfig({ configDir: cycle }).get('relay_domains'),
      (error: unknown) => error instanceof MacroExpansionError && nestingInCycle.test(error.postfixMessage),
    )
  })

  test('a self-reference error names the parameter and says what is wrong', () => {
    const config = loadMainConfig({ configDir: configDir('proxy_read_maps = $proxy_read_maps proxy:hash:/x\n') })
    assert.throws(() => config.get('proxy_read_maps'), /proxy_read_maps.*unreasonable macro call nesting.*refers to itself/)
  })

  const selfReferringOperand = configDir('relay_domains = ${{$relay_domains} == {x}}\n')
  const selfReferringOperandRun = startPostconf(selfReferringOperand, ['-x', '-h', 'relay_domains'])
  test('a relational operand that refers to itself is an error (postconf 3.7 crashes on it)', async () => {
    const dir = selfReferringOperand
    const run = await selfReferringOperandRun
    assert.notEqual(run.status, 0, 'postconf should not be able to expand this')
    assert.throws(() => loadMainConfig({ configDir: dir }).get('relay_domains'), MacroExpansionError)
  })
})

describe('daemon scope: what a proxymap(8) process knows', () => {
  test('parameters proxymap does not define expand to empty unless main.cf sets them', () => {
    const config = loadMainConfig({
      configDir: configDir('transport_maps = proxy:hash:/t\nheader_checks = regexp:/h\nvirtual_maps = hash:/v\n'),
    })
    // postconf knows every default ...
    assert.equal(config.get('address_verify_transport_maps'), 'proxy:hash:/t')
    assert.equal(config.get('mime_header_checks'), 'regexp:/h')
    // ... a proxymap process only its own and the global ones.
    assert.equal(config.getInDaemonScope('address_verify_transport_maps', PROXYMAP_DAEMON_PARAMETERS), '')
    assert.equal(config.getInDaemonScope('mime_header_checks', PROXYMAP_DAEMON_PARAMETERS), '')
    assert.equal(config.getInDaemonScope('virtual_alias_domains', PROXYMAP_DAEMON_PARAMETERS), 'hash:/v')
  })
})

describe('configuration directory', () => {
  test('-c DIR, else MAIL_CONFIG, else /etc/postfix', () => {
    assert.equal(resolveConfigDir('/from/flag', { MAIL_CONFIG: '/from/env' }), '/from/flag')
    assert.equal(resolveConfigDir(undefined, { MAIL_CONFIG: '/from/env' }), '/from/env')
    assert.equal(resolveConfigDir(undefined, {}), '/etc/postfix')
    assert.equal(resolveConfigDir('', { MAIL_CONFIG: '' }), '/etc/postfix')
  })

  test('loadMainConfig reads MAIL_CONFIG when no directory is given', () => {
    const dir = configDir('relay_domains = via-env\n')
    const config = loadMainConfig({ env: { MAIL_CONFIG: dir } })
    assert.equal(config.configDir, dir)
    assert.equal(config.get('relay_domains'), 'via-env')
  })

  const noMainCf = path.join(scratch, 'no-main-cf')
  fs.mkdirSync(noMainCf)
  const noMainCfRun = startPostconf(noMainCf, ['-h', 'relay_domains'])
  test('a missing main.cf says which file was expected and how to choose another', async () => {
    const dir = noMainCf
    assert.match((await noMainCfRun).stderr, /fatal: open .*main\.cf: No such file or directory/)
    assert.throws(
      () => loadMainConfig({ configDir: dir }),
      (error: unknown) =>
        error instanceof ConfigError &&
        error.message.includes(path.join(dir, 'main.cf')) &&
        error.message.includes('-c DIR') &&
        error.message.includes('MAIL_CONFIG'),
    )
  })
})
