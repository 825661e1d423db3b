// Log lines as Postfix writes them: maillog_file records carry strftime's "%b %d %H:%M:%S"
// (msg_logger.c), a zero-padded day unlike syslog's space-padded one.

import assert from 'node:assert/strict'
import {test} from 'node:test'
import {PassThrough} from 'node:stream'
import {Logger, StreamSink, maillogTimestamp} from '../../src/lib/log/logger.js'

test('maillog timestamps pad the day with a zero, as Postfix\'s "%b %d"', () => {
  assert.equal(maillogTimestamp(new Date(2026, 11, 2, 7, 21, 10)), 'Dec 02 07:21:10')
  assert.equal(maillogTimestamp(new Date(2026, 0, 31, 23, 5, 9)), 'Jan 31 23:05:09')
})

test("a server's stream lines: date, first label of the host name, tag, text", () => {
  const out = new PassThrough()
  let text = ''
  out.on('data', d => (text += String(d)))
  new Logger('postfix/proxymap[42]', [new StreamSink(out, 'mx1.example.com')]).warning('x')
  assert.match(text, /^[A-Z][a-z]{2} \d\d \d\d:\d\d:\d\d mx1 postfix\/proxymap\[42\]: warning: x\n$/)
})
