// SIGHUP on a standalone server, as `postfix reload` is to master(8): read main.cf again
// and serve by it (approval lists, parameters, the release whose rules apply), keeping the
// sockets, the connections and the open tables that are still approved. A main.cf that
// cannot be used leaves the running configuration in place.

import {
  approvalRulesFor, choosePostfixVersion, loadMainConfig, type PostfixVersionChoice,
} from '../config/index.js'
import type {Logger} from '../log/logger.js'
import {cleanEnvironment} from '../tables/environ.js'
import type {RunningServer} from './standalone.js'

export interface ReloadOptions {
  configDir: string
  log: Logger
  server: RunningServer
  /** The choice made at start-up: an explicit one (option, environment) stands. */
  choice: PostfixVersionChoice
}

/** Returns the release choice now in force. */
export function reloadConfiguration({configDir, log, server, choice}: ReloadOptions): PostfixVersionChoice {
  try {
    const config = loadMainConfig({configDir})
    const next = choice.source === 'option' || choice.source === 'environment'
      ? choice : choosePostfixVersion({option: undefined, env: {}, config})
    server.reload(config, approvalRulesFor(next.version))
    cleanEnvironment(config)
    log.info(`reload -- version ${next.mailVersion ?? next.version}, configuration ${configDir}`)
    return next
  } catch (err) {
    log.warning(`${(err as Error).message} -- keeping the current configuration`)
    return choice
  }
}
