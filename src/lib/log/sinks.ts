// Where a server's records go, as Postfix's daemons decide it: with maillog_file set, through
// the postlog service (or the file itself when no postlogd listens); otherwise syslog. A
// standalone `serve` also writes them to its stderr, and when that stderr is journald's
// (systemd sets $JOURNAL_STREAM to its device:inode) only there, as plain lines with a
// priority prefix: journald adds the date, host and tag, and forwards to syslog once.

import fs from 'node:fs'
import path from 'node:path'
import type {MainConfig} from '../config/index.js'
import {dgramConnect, dgramSend, nativeAvailable} from '../native/index.js'
import {JournalSink, LogSink, PostlogSink, StreamSink, SyslogSink} from './logger.js'

/** Under master(8): maillog_file (postlogd, else the file), otherwise syslog. */
export function daemonLogSinks(config: MainConfig, env: NodeJS.ProcessEnv = process.env): LogSink[] {
  const maillog = config.get('maillog_file')
  if (!maillog) return [new SyslogSink()]
  const hostname = env.POSTLOG_HOSTNAME || config.get('myhostname')
  // Connected now, before the privilege drop and the chroot, and kept for the life of the
  // process, as Postfix's daemons do.
  const service = env.POSTLOG_SERVICE
    || path.join(config.get('queue_directory'), 'public', config.get('postlog_service_name') || 'postlog')
  if (nativeAvailable()) {
    try {
      const fd = dgramConnect(service)
      return [new PostlogSink(line => { dgramSend(fd, line) }, hostname)]
    } catch { /* no postlogd listening: write the file ourselves */ }
  }
  return [new StreamSink(maillogStream(maillog), hostname)]
}

/** True when fd 2 is the stream systemd connected to journald for this service. */
export function stderrIsJournal(env: NodeJS.ProcessEnv = process.env): boolean {
  const [dev, ino] = (env.JOURNAL_STREAM ?? '').split(':')
  if (!dev || !ino) return false
  try {
    const st = fs.fstatSync(2, {bigint: true})
    return st.dev === BigInt(dev) && st.ino === BigInt(ino)
  } catch {
    return false
  }
}

/**
 * A standalone server: stderr, plus maillog_file when it is set (and is not stderr itself),
 * or syslog when a syslog socket exists; under journald, the journal alone.
 */
export function standaloneLogSinks(config: MainConfig, env: NodeJS.ProcessEnv = process.env): LogSink[] {
  if (stderrIsJournal(env)) return [new JournalSink(process.stderr)]
  const sinks: LogSink[] = [new StreamSink(process.stderr, config.get('myhostname'))]
  const maillog = config.get('maillog_file')
  if (maillog) {
    if (!sameFileAsStderr(maillog)) sinks.push(...daemonLogSinks(config, env))
  } else if (fs.existsSync('/dev/log')) {
    sinks.push(new SyslogSink())
  }
  return sinks
}

function sameFileAsStderr(file: string): boolean {
  if (file === '/dev/stderr' || file === '/dev/fd/2' || file === '/proc/self/fd/2') return true
  try {
    const a = fs.statSync(file)
    const b = fs.fstatSync(2)
    return a.dev === b.dev && a.ino === b.ino
  } catch {
    return false
  }
}

function maillogStream(file: string): NodeJS.WritableStream {
  // /dev/stdout and the like are written as they are, as postlogd does for containers.
  const fd = fs.openSync(file, 'a', 0o644)
  return fs.createWriteStream('', {fd})
}
