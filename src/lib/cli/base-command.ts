// Shared flags and error handling for every command: commands stay thin.

import path from 'node:path'
import {Command, Flags, Interfaces} from '@oclif/core'
import {loadMainConfig, resolveConfigDir} from '../config/index.js'
import type {MainConfig} from '../config/index.js'
import {CliError, toCliError} from './errors.js'

export type BaseFlags<T extends typeof Command> = Interfaces.InferredFlags<(typeof BaseCommand)['baseFlags'] & T['flags']>

export abstract class BaseCommand extends Command {
  static override enableJsonFlag = true

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

  protected loadConfig(configDir: string | undefined): MainConfig {
    try {
      // Absolute, so that $config_directory-relative paths name the same files whatever
      // the current directory (Postfix daemons chdir to the queue directory anyway).
      return loadMainConfig({configDir: path.resolve(resolveConfigDir(configDir))})
    } catch (err) {
      throw new CliError((err as Error).message, 2)
    }
  }

  /** No stack traces: say what was wrong and what to do, with the documented exit code. */
  protected override async catch(err: Error & {exitCode?: number; oclif?: {exit?: number}}): Promise<unknown> {
    // oclif's own parse errors and exits keep their handling.
    if (err.oclif !== undefined) return super.catch(err)
    const cliError = toCliError(err)
    if (this.jsonEnabled()) {
      this.logJson({error: {message: cliError.message, hint: cliError.hint, exitCode: cliError.exitCode}})
    } else {
      process.stderr.write(`proxymap: ${cliError.message}\n`)
      if (cliError.hint) process.stderr.write(`proxymap: hint: ${cliError.hint}\n`)
    }
    this.exit(cliError.exitCode)
  }
}
