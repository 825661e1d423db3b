// Log records in Postfix's words and shape (msg.c, msg_logger.c): the tag is
// `${syslog_name}/${process_name}[pid]`, and every severity but info is spelled out in
// front of the text, so that existing log tooling reads our lines like Postfix's.

import {spawn} from 'node:child_process'
import os from 'node:os'
import {printableText} from './printable.js'

export type Severity = 'info' | 'warning' | 'error' | 'fatal' | 'panic'

export interface LogSink {
  /** `tag` is `postfix/proxymap[123]`; `text` already carries the `warning: ` prefix. */
  write(severity: Severity, tag: string, text: string): void
}

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec']

/** `Dec 02 02:46:37`: strftime's "%b %d %H:%M:%S", as Postfix's msg_logger writes maillog_file. */
export function maillogTimestamp(date = new Date()): string {
  const day = String(date.getDate()).padStart(2, '0')
  const time = [date.getHours(), date.getMinutes(), date.getSeconds()].map(n => String(n).padStart(2, '0')).join(':')
  return `${MONTHS[date.getMonth()]} ${day} ${time}`
}

/** Full log-file lines on a stream, as Postfix writes maillog_file (e.g. /dev/stderr). */
export class StreamSink implements LogSink {
  private readonly host: string
  /** `hostname` as Postfix logs it: the first label of $myhostname. */
  constructor(private readonly stream: NodeJS.WritableStream = process.stderr, hostname = os.hostname()) {
    this.host = hostname.split('.')[0]
  }
  write(_severity: Severity, tag: string, text: string): void {
    this.stream.write(`${maillogTimestamp()} ${this.host} ${tag}: ${text}\n`)
  }
}

/**
 * A command's own stderr, as Postfix's command-line tools write it (msg_vstream.c):
 * `postmap: warning: ...`, no date and no host.
 */
export class CommandStderrSink implements LogSink {
  constructor(private readonly stream: NodeJS.WritableStream = process.stderr) {}
  write(_severity: Severity, tag: string, text: string): void {
    this.stream.write(`${tag}: ${text}\n`)
  }
}

/**
 * journald on stderr: the record's text with sd-daemon's priority prefix (`<4>warning: ...`);
 * the unit's SyslogIdentifier (postfix/proxymap) and journald supply the tag, pid and date.
 */
export class JournalSink implements LogSink {
  constructor(private readonly stream: NodeJS.WritableStream = process.stderr) {}
  write(severity: Severity, _tag: string, text: string): void {
    this.stream.write(`<${SYSLOG_PRIORITY[severity]}>${text}\n`)
  }
}

/** syslog(3) priorities: LOG_INFO 6, LOG_WARNING 4, LOG_ERR 3, LOG_CRIT 2. */
const SYSLOG_PRIORITY: Record<Severity, number> = {info: 6, warning: 4, error: 3, fatal: 2, panic: 2}

/**
 * Postfix's postlog service (maillog_file): one datagram per record, the whole line
 * without its newline, as msg_logger.c sends it; postlogd appends it to the file.
 */
export class PostlogSink implements LogSink {
  private readonly host: string
  constructor(private readonly send: (line: Buffer) => void, hostname: string) {
    this.host = hostname.split('.')[0]
  }
  write(_severity: Severity, tag: string, text: string): void {
    try {
      this.send(Buffer.from(`${maillogTimestamp()} ${this.host} ${tag}: ${text}`, 'utf8'))
    } catch { /* postlogd busy or gone: Postfix drops the record too */ }
  }
}

/** Keeps records in memory: for tests and for commands that report them. */
export class MemorySink implements LogSink {
  readonly lines: string[] = []
  write(_severity: Severity, tag: string, text: string): void {
    this.lines.push(`${tag}: ${text}`)
  }
}

export class Logger {
  verbose = 0

  constructor(private tag: string, private readonly sinks: LogSink[]) {}

  /** `postfix` + `proxymap` → `postfix/proxymap[pid]`. */
  static tagFor(syslogName: string, processName: string, pid = process.pid): string {
    return `${syslogName}/${processName}[${pid}]`
  }

  setTag(tag: string): void {
    this.tag = tag
  }

  info(text: string): void { this.emit('info', text) }
  warning(text: string): void { this.emit('warning', `warning: ${text}`) }
  error(text: string): void { this.emit('error', `error: ${text}`) }
  fatal(text: string): void { this.emit('fatal', `fatal: ${text}`) }
  /** Only with -v, as Postfix's msg_verbose. */
  debug(text: string): void { if (this.verbose > 0) this.emit('info', text) }

  private emit(severity: Severity, text: string): void {
    // As Postfix's msg_vprintf: no record carries a control character (a newline in a
    // client's table name would forge a log line). Callers turn client bytes into text
    // with printable().
    const line = printableText(text)
    for (const sink of this.sinks) sink.write(severity, this.tag, line)
  }
}

/**
 * syslog (facility mail) through logger(1): Node has no AF_UNIX datagram sockets, and a
 * proxymap daemon logs little (warnings about tables), so a process per record is cheap.
 */
export class SyslogSink implements LogSink {
  write(severity: Severity, tag: string, text: string): void {
    const m = /^(.*)\[(\d+)\]$/.exec(tag)
    const priority = {info: 'info', warning: 'warning', error: 'err', fatal: 'crit', panic: 'crit'}[severity]
    const args = m ? [`--id=${m[2]}`, '-t', m[1]] : ['-t', tag]
    try {
      const child = spawn('logger', [...args, '-p', `mail.${priority}`, '--', text], {stdio: 'ignore'})
      child.on('error', () => undefined)
      child.unref()
    } catch { /* logging must never take the service down */ }
  }
}
