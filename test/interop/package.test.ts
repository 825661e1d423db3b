// What the npm package ships, installed as an administrator installs it: `npm pack` of
// the checkout (as built by `npm run build`), `npm install -g --prefix DIR` of that
// tarball, and then DIR/bin/proxymap, the manual pages where man(1) finds them, the
// completion script, the docs that every --help cites and the example configuration.

import assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import {after, before, describe, test} from 'node:test'
import {PROJECT_ROOT, runCommand} from '../helpers/postfix.js'
import {freshBundle} from '../../src/lib/cli/bundle.js'

const pkg = JSON.parse(fs.readFileSync(path.join(PROJECT_ROOT, 'package.json'), 'utf8')) as {name: string; man: string[]}
/** Every command of the CLI, as the build's oclif manifest lists them. */
const COMMANDS = Object.keys((JSON.parse(fs.readFileSync(path.join(PROJECT_ROOT, 'oclif.manifest.json'), 'utf8')) as {commands: Record<string, unknown>}).commands)

describe('the npm package', () => {
  let dir: string
  let prefix: string
  let tarball: string
  let installed: string

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pm-package-'))
    prefix = path.join(dir, 'prefix')
    // The checkout is built already (npm test builds first): no prepare script again.
    const packed = await runCommand('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', dir], {cwd: PROJECT_ROOT, timeoutMs: 120_000})
    assert.equal(packed.code, 0, packed.stderr)
    tarball = path.join(dir, (JSON.parse(packed.stdout) as {filename: string}[])[0].filename)
    // --ignore-scripts: without the native addon, as an install without a compiler ends.
    const install = await runCommand('npm', ['install', '-g', '--prefix', prefix, tarball, '--ignore-scripts', '--prefer-offline', '--no-audit', '--no-fund'],
      {cwd: dir, timeoutMs: 300_000})
    assert.equal(install.code, 0, `${install.stdout}\n${install.stderr}`)
    installed = path.join(prefix, 'lib', 'node_modules', pkg.name)
  })

  after(() => {
    if (dir) fs.rmSync(dir, {recursive: true, force: true})
  })

  test('npm pack --dry-run lists the bundle and its code cache, the manual pages, completion, docs, examples and licence, and no tests or spool', async () => {
    const r = await runCommand('npm', ['pack', '--dry-run', '--ignore-scripts', '--json'], {cwd: PROJECT_ROOT, timeoutMs: 120_000})
    assert.equal(r.code, 0, r.stderr)
    const files = (JSON.parse(r.stdout) as {files: {path: string}[]}[])[0].files.map(f => f.path)
    for (const file of ['LICENSE', 'README.md', 'oclif.manifest.json', 'bin/run.js', 'dist/commands/query.js', 'dist/proxymap.cjs', 'dist/proxymap.cjs.cache', 'docs/json-output.md',
      'docs/json-output.schema.json', 'examples/postfix/main.cf', 'completion/proxymap.bash', ...pkg.man.map(m => m.replace(/^\.\//, ''))])
      assert.ok(files.includes(file), `${file} is not in the package: ${files.join(' ')}`)
    assert.deepEqual(files.filter(f => /^(test|src|\.ci)\/|\/spool\/|senders\.lmdb/.test(f)), [])
  })

  test('package.json "man" names a page for proxymap and for every command', () => {
    assert.deepEqual([...pkg.man].sort(), ['./man/proxymap.1', ...COMMANDS.map(c => `./man/proxymap-${c}.1`)].sort())
  })

  test('the installed proxymap runs, and man finds its pages (not Postfix\'s proxymap(8))', async () => {
    const help = await runCommand(path.join(prefix, 'bin', 'proxymap'), ['--help'], {cwd: dir, timeoutMs: 30_000})
    assert.equal(help.code, 0, help.stderr)
    for (const command of COMMANDS) assert.match(help.stdout, new RegExp(`\\b${command}\\b`))
    const env = {...process.env, MANPATH: path.join(prefix, 'share', 'man'), MANWIDTH: '80', MAN_KEEP_FORMATTING: ''}
    // npm links each page of "man" into PREFIX/share/man/man1; man -w names the file behind the link.
    const link = path.join(prefix, 'share', 'man', 'man1', 'proxymap.1')
    assert.ok(fs.lstatSync(link).isSymbolicLink(), `${link} is not npm's link`)
    const where = await runCommand('man', ['-w', 'proxymap'], {env, timeoutMs: 30_000})
    assert.equal(where.stdout.trim(), fs.realpathSync(link), where.stderr)
    assert.equal(fs.realpathSync(link), path.join(installed, 'man', 'proxymap.1'))
    const page = await runCommand('man', ['proxymap-query'], {env, timeoutMs: 30_000})
    assert.equal(page.code, 0, page.stderr)
    assert.match(page.stdout, /proxymap-query - Look keys up in a table/)
    assert.match(page.stdout, /EXAMPLES[\s\S]*\$ proxymap query -c examples\/postfix/)
  })

  test('the installed proxymap answers a query: its bundled commands find oclif and the installed files', async () => {
    assert.ok(freshBundle(installed) !== undefined, 'bin/run.js runs the installed dist/proxymap.cjs, whatever times npm gave the files')
    const proxymap = path.join(prefix, 'bin', 'proxymap')
    const configDir = path.join(installed, 'examples', 'postfix')
    const found = await runCommand(proxymap, ['query', '-c', configDir, 'inline:{alice@example.com=alice}', 'alice@example.com'], {cwd: dir, timeoutMs: 30_000})
    assert.deepEqual([found.code, found.stdout, found.stderr], [0, 'alice\n', ''])
    const usage = await runCommand(proxymap, ['query', '-c', configDir, '--json', 'inline:{a=b}'], {cwd: dir, timeoutMs: 30_000})
    assert.equal(usage.code, 2, usage.stderr)
    assert.match((JSON.parse(usage.stdout) as {error: {message: string}}).error.message, /Missing 1 required arg/)
  })

  test('the installed package has the docs --help cites, the examples, and completion', async () => {
    for (const file of ['docs/json-output.md', 'examples/postfix/main.cf', 'examples/postfix/virtual', 'completion/proxymap.bash', 'LICENSE'])
      assert.ok(fs.existsSync(path.join(installed, file)), `${file} is not installed`)
    const completion = await runCommand(path.join(prefix, 'bin', 'proxymap'), ['completion', 'bash'], {cwd: dir, timeoutMs: 30_000})
    assert.equal(completion.stdout, fs.readFileSync(path.join(installed, 'completion', 'proxymap.bash'), 'utf8'), 'the shipped script is the command\'s')
  })
})

describe('the manual pages and the completion script', () => {
  test('man -l renders every page without a warning, with the --help text', async () => {
    for (const page of pkg.man) {
      const file = path.join(PROJECT_ROOT, page)
      const r = await runCommand('man', ['--warnings=all', '-l', file], {env: {...process.env, MANWIDTH: '80'}, timeoutMs: 30_000})
      assert.equal(r.code, 0, `${page}: ${r.stderr}`)
      assert.equal(r.stderr, '', `${page}: ${r.stderr}`)
      assert.match(r.stdout, /NAME\n\s+proxymap/, page)
    }
    const dump = await runCommand('man', ['-l', path.join(PROJECT_ROOT, 'man', 'proxymap-dump.1')], {env: {...process.env, MANWIDTH: '200'}, timeoutMs: 30_000})
    const help = await runCommand(process.execPath, [path.join(PROJECT_ROOT, 'bin', 'run.js'), 'dump', '--help'], {timeoutMs: 30_000})
    // The same summary and description text (each paragraph's first words suffice).
    for (const words of ['List every key and value of a table', 'TABLE is type:name as in main.cf', 'Exit codes: 0 done']) {
      assert.ok(help.stdout.includes(words), `--help: ${words}`)
      assert.ok(dump.stdout.includes(words), `man page: ${words}`)
    }
  })

  test('bash completes commands, flags and flag values', async () => {
    const complete = async (words: string[]): Promise<string[]> => {
      const script = `source <(${JSON.stringify(process.execPath)} ${JSON.stringify(path.join(PROJECT_ROOT, 'bin', 'run.js'))} completion bash)
COMP_WORDS=(${words.map(w => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}
_proxymap_complete; printf '%s\\n' "\${COMPREPLY[@]}"`
      const r = await runCommand('bash', ['-c', script], {timeoutMs: 30_000})
      assert.equal(r.code, 0, r.stderr)
      return r.stdout.split('\n').filter(Boolean)
    }
    assert.deepEqual(await complete(['proxymap', 'qu']), ['query'])
    assert.deepEqual(await complete(['proxymap', 'c']), ['check-access', 'completion'])
    assert.ok((await complete(['proxymap', 'dump', '--'])).includes('--max-rows'))
    assert.ok(!(await complete(['proxymap', 'dump', '--'])).includes('--no-fold'), 'dump has no -f')
    assert.deepEqual(await complete(['proxymap', 'query', '--output', '']), ['plain', 'table', 'json'])
    assert.deepEqual(await complete(['proxymap', 'check-access', '--postfix-version', '3.1']), ['3.10', '3.11'])
  })
})
