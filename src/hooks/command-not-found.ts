// "proxymap qurey ...": say which command was meant, in a pipe too. @oclif/plugin-not-found
// suggests only on a terminal (3.x, the last for Node 20 and @oclif/core 4, asks y/n there).

import type {Hook} from '@oclif/core'
import {EXIT} from '../lib/cli/exit-codes.js'
import {didYouMean} from '../lib/util/suggest.js'

const hook: Hook.CommandNotFound = async function ({id, config}) {
  // With topicSeparator " ", "qurey x" arrives as "qurey:x".
  const typed = id.split(':')[0]
  const commands = config.commands.filter(c => !c.hidden).map(c => c.id)
  process.stderr.write(`proxymap: "${typed}" is not a proxymap command; ${didYouMean(typed, commands)}the commands are: ${commands.join(', ')} (see ${config.bin} --help)\n`)
  this.exit(EXIT.USAGE)
}

export default hook
