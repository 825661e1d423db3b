// What update, delete and dump share on the command side: flags, the stderr log, and
// how a stopped batch is reported.

import * as Flags from '@oclif/core/flags'
import {Logger, CommandStderrSink} from '../log/logger.js'
import {toCliError, type TableOperation} from '../cli/errors.js'
import type {TableLog} from '../tables/table.js'
import {BatchFailure, describeBatchFailure} from './maintain.js'

export const maintainFlags = {
  'no-fold': Flags.boolean({char: 'f', summary: 'Do not fold keys to lower case (postmap -f).', default: false}),
  dialect: dialectFlag(),
}

/** --dialect: which wire dialect to speak to a proxymap service; by default found out. */
export function dialectFlag() {
  return Flags.string({
    summary: 'Protocol dialect of the service: auto, legacy (Postfix <= 3.10) or v2 (Postfix >= 3.11).',
    description: 'auto (the default) asks in the dialect of the Postfix version the configuration belongs to and, '
      + 'if the service rejects that as invalid, once more in the other one.',
    options: ['auto', 'legacy', 'v2'],
    default: 'auto',
  })
}

/** Warnings of the table layer, in Postfix's format, on stderr. */
export function stderrTableLog(): TableLog {
  const log = new Logger('proxymap', [new CommandStderrSink()])
  return {warning: m => log.warning(m), error: m => log.error(m), info: m => log.info(m)}
}

/**
 * Report a batch that stopped (stderr, or one JSON document on stdout) and set the exit
 * code of its cause; the command then returns normally so that nothing else is printed.
 */
export function reportBatchFailure(failure: BatchFailure, json: boolean, operation?: TableOperation): void {
  const cause = toCliError(failure.reason, operation)
  const {text, json: document} = describeBatchFailure(failure, cause.exitCode, cause.hint)
  if (json) process.stdout.write(`${JSON.stringify(document, null, 2)}\n`)
  else {
    process.stderr.write(`proxymap: ${text}\n`)
    if (cause.hint) process.stderr.write(`proxymap: hint: ${cause.hint}\n`)
  }
  process.exitCode = cause.exitCode
}
