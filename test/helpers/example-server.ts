// A copy of the checkout's examples/postfix, served by `proxymap serve` as the README's
// `npm start` serves it "in another terminal", with `proxymap` on PATH as `npm link` puts
// it there: where the README's and the --help examples run as a reader runs them.

import * as fs from 'node:fs'
import * as os from 'node:os'
import * as path from 'node:path'
import type {ChildProcess} from 'node:child_process'
import {PROJECT_BIN, PROJECT_ROOT, canConnect, runCommand, spawnTracked, waitFor} from './postfix.js'

export interface ExampleCheckout {
  /** The directory standing for the checkout: examples/postfix, bin/, path/proxymap. */
  dir: string
  /** examples/postfix in it, absolute. */
  configDir: string
  /** The environment of a reader: `proxymap` on PATH, no colour settings, no MAIL_CONFIG. */
  env: NodeJS.ProcessEnv
  /** Starts `proxymap serve -c examples/postfix` there (or `command` as a shell line) and waits for its socket. */
  serve(command?: string): Promise<void>
  /** What the server printed on stderr so far. */
  serverLog(): string
  /** Stops the server (when it was started) and removes the directory. */
  destroy(): Promise<void>
}

export function exampleCheckout(prefix = 'pm-example-'): ExampleCheckout {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix))
  // The server runs as mail_owner (nobody): it must reach the tables.
  fs.chmodSync(dir, 0o755)
  fs.cpSync(path.join(PROJECT_ROOT, 'examples', 'postfix'), path.join(dir, 'examples', 'postfix'),
    {recursive: true, filter: src => !src.split(path.sep).includes('spool')})
  // ./bin/run.js as in the checkout (Node runs the real file, so it finds dist/ and node_modules/).
  fs.symlinkSync(path.join(PROJECT_ROOT, 'bin'), path.join(dir, 'bin'))
  fs.mkdirSync(path.join(dir, 'path'))
  fs.writeFileSync(path.join(dir, 'path', 'proxymap'), `#!/bin/sh\nexec ${JSON.stringify(process.execPath)} ${JSON.stringify(PROJECT_BIN)} "$@"\n`, {mode: 0o755})
  const env: NodeJS.ProcessEnv = {...process.env, PATH: `${path.join(dir, 'path')}:${process.env.PATH}`, TMPDIR: dir, HOME: dir}
  for (const name of ['NO_COLOR', 'FORCE_COLOR', 'MAIL_CONFIG', 'COLUMNS']) delete env[name]
  let server: ChildProcess | undefined
  let log = ''
  const configDir = path.join(dir, 'examples', 'postfix')
  return {
    dir, configDir, env,
    async serve(command) {
      server = command === undefined
        ? spawnTracked(process.execPath, [PROJECT_BIN, 'serve', '-c', 'examples/postfix'], {cwd: dir, env, stdio: ['ignore', 'ignore', 'pipe']})
        : spawnTracked('bash', ['-c', `exec ${command}`], {cwd: dir, env, stdio: ['ignore', 'ignore', 'pipe']})
      server.stderr?.on('data', (d: Buffer) => { log += d })
      const socket = path.join(configDir, 'spool', 'private', 'proxymap')
      await waitFor(() => canConnect(socket, 500), 20_000, () => `the example server did not listen on ${socket}: ${log}`)
    },
    serverLog: () => log,
    async destroy() {
      if (server && server.exitCode === null) {
        server.kill('SIGTERM')
        await new Promise(resolve => server!.once('exit', resolve))
      }
      fs.rmSync(dir, {recursive: true, force: true})
    },
  }
}

export interface ShellStepResult {
  /** False when the shell's output fell out of step before this command's status. */
  finished: boolean
  status: number
  stdout: string
  stderr: string
}

const SEPARATOR = '\u001e'

/**
 * Runs `commands` one after the other in one bash in the checkout, as a reader types them
 * (each sees what the ones before left behind), and gives each its own output and status.
 */
export async function runShellSteps(checkout: ExampleCheckout, commands: string[]): Promise<ShellStepResult[]> {
  const script = commands.map((c, i) => `${c}\nprintf '${SEPARATOR}%d %d${SEPARATOR}' ${i} $?\nprintf '${SEPARATOR}' >&2\n`).join('')
  const r = await runCommand('bash', ['-c', script], {cwd: checkout.dir, env: checkout.env, timeoutMs: 240_000})
  if (r.timedOut) throw new Error(`the examples timed out; stdout=${r.stdout} stderr=${r.stderr}`)
  const outputs = r.stdout.split(SEPARATOR)
  const errors = r.stderr.split(SEPARATOR)
  return commands.map((_, i) => {
    const [index, status] = (outputs[2 * i + 1] ?? '').split(' ').map(Number)
    return {finished: index === i, status, stdout: outputs[2 * i] ?? '', stderr: errors[i] ?? ''}
  })
}
