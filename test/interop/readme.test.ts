// The README's examples, run as a reader would run them: from a copy of the checkout's
// examples/postfix served by `proxymap serve` (the README's `npm start`, "in another
// terminal"), with `proxymap` on PATH. Every ```sh block preceded by `<!-- test -->` is
// run, all of them in one shell and in order (a variable set in one block is there in the
// next); in a block, the `# ` lines after a command are its expected stdout, where a line
// `...` stands for any lines and `...` inside a line for any text, and each command must
// exit 0 (examples that show another exit code print it with `echo "exit $?"`).

import assert from 'node:assert/strict'
import * as fs from 'node:fs'
import * as path from 'node:path'
import {after, before, describe, test} from 'node:test'
import {PROJECT_ROOT} from '../helpers/postfix.js'
import {exampleCheckout, runShellSteps, type ExampleCheckout} from '../helpers/example-server.js'

export interface ReadmeStep {
  /** 1-based line of the README where the command starts. */
  line: number
  command: string
  /** Expected stdout lines (`# ` removed); empty: not checked. */
  expected: string[]
}

/** The runnable examples of a Markdown text, in order. */
export function readmeSteps(markdown: string): ReadmeStep[] {
  const lines = markdown.split('\n')
  const steps: ReadmeStep[] = []
  for (let i = 0; i < lines.length; i++) {
    if (lines[i].trim() !== '<!-- test -->') continue
    let j = i + 1
    while (j < lines.length && lines[j].trim() === '') j++
    if (lines[j] !== '```sh') throw new Error(`README line ${i + 1}: <!-- test --> must be followed by a \`\`\`sh block`)
    let current: ReadmeStep | undefined
    for (j++; j < lines.length && lines[j] !== '```'; j++) {
      const text = lines[j]
      if (text === '#' || text.startsWith('# ')) {
        if (!current) throw new Error(`README line ${j + 1}: expected output before any command`)
        current.expected.push(text.slice(2))
      } else if (text.trim() !== '') {
        if (current && current.command.endsWith('\\')) current.command += `\n${text}`
        else steps.push(current = {line: j + 1, command: text, expected: []})
      }
    }
    if (j === lines.length) throw new Error(`README line ${i + 1}: the block never ends`)
    i = j
  }
  return steps
}

/** A regular expression for expected lines: `...` lines for any lines, `...` in a line for any text, any run of blanks for any run of blanks. */
export function expectedPattern(expected: string[]): RegExp {
  const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
  const parts = expected.map(line => line === '...'
    ? '(?:[^\\n]*\\n)*?'
    : `${line.split('...').map(piece => escape(piece).replace(/[ \t]+/g, '[ \\t]+')).join('[^\\n]*?')}\\n`)
  return new RegExp(`^${parts.join('')}$`)
}


describe('README examples', () => {
  const readme = fs.readFileSync(path.join(PROJECT_ROOT, 'README.md'), 'utf8')
  let checkout: ExampleCheckout

  before(async () => {
    checkout = exampleCheckout('pm-readme-')
    // npm start, from the checkout.
    await checkout.serve()
  })

  after(async () => {
    await checkout?.destroy()
  })

  test('the README has runnable examples for querying, maintaining and diagnosing DENY', () => {
    const steps = readmeSteps(readme)
    assert.ok(steps.length >= 15, `only ${steps.length} tested examples`)
    for (const command of ['query', 'update', 'delete', 'dump', 'check-access'])
      assert.ok(steps.some(s => new RegExp(`(proxymap|run\\.js) ${command} `).test(s.command)), `no tested example of ${command}`)
    assert.match(readme, /```sh\nnpm install && npm start\n```/, 'the set-up command stays')
    assert.match(readme, /```sh\nnpm test\n```/, 'the test command stays')
  })

  test('the expected-output matcher is strict where it must be', () => {
    assert.match('a\tb\nc\n', expectedPattern(['a b', 'c']))
    assert.doesNotMatch('a b\nc\nd\n', expectedPattern(['a b', 'c']), 'extra output')
    assert.match('x\ny\nDENIED: t\nz\n', expectedPattern(['...', 'DENIED: t', '...']))
    assert.doesNotMatch('x\nAPPROVED: t\n', expectedPattern(['...', 'DENIED: t', '...']))
    assert.match('lmdb:/tmp/a/senders: 1 updated\n', expectedPattern(['lmdb:.../senders: 1 updated']))
    assert.doesNotMatch('lmdb:/tmp/a/senders: 2 updated\n', expectedPattern(['lmdb:.../senders: 1 updated']))
  })

  test('every tested example prints what the README says, with exit code 0', async () => {
    const steps = readmeSteps(readme)
    const results = await runShellSteps(checkout, steps.map(s => s.command))
    const errors = results.map(r => r.stderr)
    const failures: string[] = []
    steps.forEach((step, i) => {
      const {finished, status, stdout} = results[i]
      const where = `README line ${step.line}: ${step.command}`
      if (!finished) {
        failures.push(`${where}: did not finish (shell output out of step)`)
        return
      }
      if (status !== 0) failures.push(`${where}: exit ${status}\nstdout: ${stdout}\nstderr: ${errors[i]}`)
      if (step.expected.length > 0 && !expectedPattern(step.expected).test(stdout.endsWith('\n') || stdout === '' ? stdout : `${stdout}\n`))
        failures.push(`${where}: printed\n${stdout}\nexpected\n${step.expected.join('\n')}\nstderr: ${errors[i]}`)
      assert.ok(!stdout.includes('\u001b') && !(errors[i] ?? '').includes('\u001b'), `${where}: escape codes in a pipe`)
    })
    assert.deepEqual(failures, [], failures.join('\n\n'))
    console.log(`# ${steps.length} README examples run`)
  })
})
