// Shared flags and error handling for every command: commands stay thin.

import path from 'node:path'
import {Command} from '@oclif/core/command'
import * as Flags from '@oclif/core/flags'
import type {Interfaces} from '@oclif/core'
import {POSTFIX_VERSIONS, choosePostfixVersion, loadMainConfig, resolveConfigDir} from '../config/index.js'
import type {MainConfig, PostfixVersionChoice} from '../config/index.js'
import {CliError, toCliError, type TableOperation} from './errors.js'
import {EXIT} from './exit-codes.js'
import {argvAsksForJson, argvTurnsColorOff, chooseOutput, type OutputFormat} from './output.js'
import {colorEnabled, makeChalk, preloadChalk} from './render.js'

/** --postfix-version, for the commands whose answers depend on the Postfix release's rules (serve, check-access). */
export function postfixVersionFlag() {
  return Flags.string({
    summary: 'Follow this Postfix release\'s approval rules (default: $PROXYMAP_POSTFIX_VERSION, else the installed Postfix\'s, else 3.7).',
    options: [...POSTFIX_VERSIONS],
  })
}

export type BaseFlags<T extends typeof Command> = Interfaces.InferredFlags<(typeof BaseCommand)['baseFlags'] & T['flags']>

export abstract class BaseCommand extends Command {
  static override enableJsonFlag = true

  /** The table operation under way, once known: hints then name the table, its list and -c. */
  protected operation?: TableOperation

  static override baseFlags = {
    'config-dir': Flags.string({
      char: 'c',
      summary: 'Postfix configuration directory (as postmap -c); default $MAIL_CONFIG, else /etc/postfix.',
      helpGroup: 'GLOBAL',
    }),
    color: Flags.boolean({
      summary: 'Colour the output on a terminal (--no-color or NO_COLOR=1 turn it off).',
      allowNo: true,
      default: true,
      helpGroup: 'GLOBAL',
    }),
  }

  /** On a terminal that may be coloured, chalk is loaded before the command runs (makeChalk is synchronous). */
  override async init(): Promise<void> {
    await super.init()
    const colorFlag = !argvTurnsColorOff(this.argv)
    if (colorEnabled(colorFlag, process.stdout) || colorEnabled(colorFlag, process.stderr)) await preloadChalk()
  }

  /** --json, or --output json on a command that has --output (oclif only knows --json). */
  override jsonEnabled(): boolean {
    if (super.jsonEnabled()) return true
    const flags = (this.ctor as typeof BaseCommand).flags as Record<string, unknown> | undefined
    return this.ctor.enableJsonFlag === true && flags?.output !== undefined && argvAsksForJson(this.argv)
  }

  /** JSON is data: never coloured (oclif colours it on a terminal), one document per run. */
  override logJson(json: unknown): void {
    process.stdout.write(`${JSON.stringify(json, null, 2)}\n`)
  }

  /** See chooseOutput(): json, the --output flag, else table only on a terminal where it helps. */
  protected outputFormat(requested: string | undefined, tableOnTerminal: boolean): OutputFormat {
    return chooseOutput(requested, this.jsonEnabled(), tableOnTerminal)
  }

  protected loadConfig(configDir: string | undefined): MainConfig {
    try {
      // Absolute, so that $config_directory-relative paths name the same files whatever
      // the current directory (Postfix daemons chdir to the queue directory anyway).
      return loadMainConfig({configDir: path.resolve(resolveConfigDir(configDir))})
    } catch (err) {
      throw new CliError((err as Error).message, 2)
    }
  }

  /** The release whose rules to follow (see config/postfix-version.ts); a bad $PROXYMAP_POSTFIX_VERSION is a usage error. */
  protected postfixVersion(option: string | undefined, config: MainConfig | undefined): PostfixVersionChoice {
    try {
      return choosePostfixVersion({option, env: process.env, config})
    } catch (err) {
      throw new CliError((err as Error).message, EXIT.USAGE)
    }
  }

  /** No stack traces: say what was wrong and what to do, with the documented exit code. */
  protected override async catch(err: Error & {exitCode?: number; oclif?: {exit?: number}}): Promise<unknown> {
    if (err.oclif !== undefined) {
      // A flag-parser error with --json: our error document, not oclif's dump of its parser
      // state; otherwise oclif's own text (exit 2) and exits keep their handling.
      if (this.jsonEnabled() && (err as {code?: string}).code !== 'EEXIT') {
        const message = err.message.split('\n').map(line => line.trim()).filter(line => line && !line.startsWith('See more help')).join(' ')
        this.logJson({error: {message, hint: `see ${this.config.bin} ${this.id} --help`, exitCode: EXIT.USAGE}})
        this.exit(EXIT.USAGE)
      }
      return super.catch(err)
    }
    const cliError = toCliError(err, this.operation)
    if (this.jsonEnabled()) {
      this.logJson({error: {message: cliError.message, hint: cliError.hint, exitCode: cliError.exitCode}})
    } else {
      // Coloured by its status (RETRY magenta, every other failure red), on a terminal only.
      const c = makeChalk(colorEnabled(!argvTurnsColorOff(this.argv), process.stderr))
      const paint = cliError.exitCode === EXIT.RETRY ? c.magenta : c.red
      process.stderr.write(`proxymap: ${paint(cliError.message)}\n`)
      if (cliError.hint) process.stderr.write(`proxymap: hint: ${cliError.hint}\n`)
    }
    this.exit(cliError.exitCode)
  }
}
