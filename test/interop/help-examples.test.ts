// Every example of every command's --help, as printed (at the 80 columns of a pipe, wrapped
// lines and all), run as a reader runs them: from a copy of the checkout, with serve's own
// example serving examples/postfix "in another terminal" and `proxymap` on PATH, in one
// shell and in the order query, update, dump, delete, check-access, completion (HOME is the
// copy's). Each must exit 0
// (an example showing a failure prints its code with `echo "exit $?"`). Examples naming
// /etc/postfix are for a real installation and are not run, but every table name in every
// example must reach the program as printed: absolute, and braces not expanded by the shell.

import assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as path from 'node:path'
import {after, before, describe, test} from 'node:test'
import {PROJECT_BIN, runCommand} from '../helpers/postfix.js'
import {exampleCheckout, runShellSteps, type ExampleCheckout} from '../helpers/example-server.js'

/** The order the examples build on each other (update creates what delete deletes). */
const COMMANDS = ['serve', 'query', 'update', 'dump', 'delete', 'check-access', 'stats', 'install-master', 'install-systemd', 'completion'] as const

/** The commands of the EXAMPLES section of a --help text, continuation lines kept as printed. */
export function helpExamples(help: string): string[] {
  const lines = help.split('\n')
  const start = lines.indexOf('EXAMPLES')
  if (start < 0) return []
  const examples: string[] = []
  for (const line of lines.slice(start + 1)) {
    if (/^\S/.test(line)) break // the next section
    const last = examples.length - 1
    // A wrapped line continues the previous one (oclif ends it with " \\"); a command is
    // indented by 4 under a description, or by 2 with "$ " without one.
    if (last >= 0 && examples[last].endsWith('\\') && /^ {3,}\S/.test(line)) examples[last] += `\n${line}`
    else if (/^ {4}\S/.test(line) || /^ {2}\$ /.test(line)) examples.push(line.trim().replace(/^\$ /, ''))
  }
  return examples
}

const realInstallation = (command: string): boolean => command.includes('/etc/postfix')

describe('--help examples', () => {
  let checkout: ExampleCheckout
  const examples = new Map<string, string[]>()

  before(async () => {
    checkout = exampleCheckout('pm-help-')
    for (const command of COMMANDS) {
      const r = await runCommand(process.execPath, [PROJECT_BIN, command, '--help'], {cwd: checkout.dir, env: checkout.env, timeoutMs: 30_000})
      assert.equal(r.code, 0, r.stderr)
      examples.set(command, helpExamples(r.stdout))
    }
    const serve = examples.get('serve')!.find(e => !realInstallation(e))
    assert.ok(serve, 'serve has an example for the checkout (the README\'s npm start)')
    await checkout.serve(serve)
  })

  after(async () => {
    await checkout?.destroy()
  })

  test('every command has examples, and the table commands several that run from the checkout', () => {
    for (const command of COMMANDS) assert.ok(examples.get(command)!.length > 0, `${command} has no examples`)
    for (const command of ['query', 'update', 'dump', 'delete', 'check-access'])
      assert.ok(examples.get(command)!.filter(e => !realInstallation(e)).length >= 3, `${command}: fewer than 3 examples run from the checkout`)
  })

  test('the parser reads wrapped examples as the shell does', () => {
    const help = 'EXAMPLES\n  A description.\n\n    $ proxymap query -c \\\n      examples/postfix k\n\n    printf x | proxymap q -\n\n  $ proxymap serve \\\n    -c x\n\nFLAGS\n    $ not this\n'
    assert.deepEqual(helpExamples(help), ['proxymap query -c \\\n      examples/postfix k', 'printf x | proxymap q -', 'proxymap serve \\\n    -c x'])
  })

  test('every table name reaches the program as printed: absolute, braces intact', async () => {
    // `proxymap` and `postfix` as shell functions that write down their arguments.
    const argsFile = path.join(checkout.dir, 'example-args')
    const stubs = `proxymap() { printf '%s\\0' "$@" > ${argsFile}; }; postfix() { :; }; systemctl() { :; }\n`
    const failures: string[] = []
    for (const [command, list] of examples) {
      for (const example of list) {
        fs.rmSync(argsFile, {force: true})
        const r = await runCommand('bash', ['-c', `${stubs}${example}`], {cwd: checkout.dir, env: checkout.env, input: '', timeoutMs: 10_000})
        assert.ok(fs.existsSync(argsFile), `${command}: the example did not run proxymap: ${example} ${r.stderr}`)
        const args = fs.readFileSync(argsFile, 'utf8').split('\0')
        for (const arg of args) if (arg.includes('\\\n')) failures.push(`${command}: the help's line wrap is inside a quoted argument (${JSON.stringify(arg)}) in: ${example}`)
        const tables = args.filter(a => /^(proxy:)*[a-z0-9]+:/.test(a) && !a.startsWith('-'))
        if (tables.length === 0 && !['serve', 'stats', 'install-master', 'install-systemd', 'completion'].includes(command) && !example.includes('--all'))
          failures.push(`${command}: no table in: ${example}`)
        for (const table of tables) {
          const name = table.replace(/^(proxy:)*[a-z0-9]+:/, '')
          if (!name.startsWith('/') && !name.startsWith('{')) failures.push(`${command}: relative table name ${table} in: ${example}`)
          if (name.startsWith('{') && !name.endsWith('}')) failures.push(`${command}: braces split by the shell (${table}) in: ${example}`)
        }
      }
    }
    assert.deepEqual(failures, [], failures.join('\n'))
  })

  test('every example for the checkout runs as printed, with exit code 0', async () => {
    const steps = COMMANDS.filter(c => c !== 'serve').flatMap(command => examples.get(command)!.filter(e => !realInstallation(e)).map(example => ({command, example})))
    const results = await runShellSteps(checkout, steps.map(s => s.example))
    const failures: string[] = []
    steps.forEach((step, i) => {
      const {finished, status, stdout, stderr} = results[i]
      const where = `${step.command} --help: ${step.example}`
      if (!finished) failures.push(`${where}: did not finish`)
      else if (status !== 0) failures.push(`${where}: exit ${status}\nstdout: ${stdout}\nstderr: ${stderr}`)
      else if (/(^|\n)proxymap: (?!main\.cf changed|nothing written)/.test(stderr)) failures.push(`${where}: complained\nstderr: ${stderr}`)
    })
    assert.deepEqual(failures, [], failures.join('\n\n'))
    console.log(`# ${steps.length} --help examples run`)
  })
})
