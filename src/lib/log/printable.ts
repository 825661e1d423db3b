// Postfix passes every log message through printable() (msg_output.c, printable.c): a byte
// that is not printable ASCII becomes '?', except the bytes of a UTF-8 character when
// util_utf8_enable is on (smtputf8_enable = yes, the default). Client-supplied text — table
// names, keys, values, attribute names — therefore cannot forge or break log lines.

const QUESTION = '?'

function printableAscii(code: number): boolean {
  return code >= 0x20 && code < 0x7f
}

/**
 * printable(bytes, '?') for a binary string (one char per byte, as the protocol layer
 * carries client data), returned as text for the logger: printable ASCII stays, a UTF-8
 * lead byte (0xc2..0xfe) followed by continuation bytes (0x80..0xbf) stays as that
 * character, every other byte becomes '?'.
 */
export function printable(bytes: string): string {
  let out = ''
  let plainFrom = 0
  for (let i = 0; i < bytes.length; i++) {
    const ch = bytes.charCodeAt(i)
    if (printableAscii(ch)) continue
    out += bytes.slice(plainFrom, i)
    const next = bytes.charCodeAt(i + 1)
    if (ch >= 0xc2 && ch <= 0xfe && next >= 0x80 && next < 0xc0) {
      let end = i + 1
      while (end < bytes.length && bytes.charCodeAt(end) >= 0x80 && bytes.charCodeAt(end) < 0xc0) end++
      // Postfix passes such a run through unchanged; a log line is text, so a run that is
      // not valid UTF-8 (over-long, too many continuation bytes) shows as U+FFFD here.
      out += Buffer.from(bytes.slice(i, end), 'latin1').toString('utf8')
      i = end - 1
    } else {
      out += QUESTION
    }
    plainFrom = i + 1
  }
  return plainFrom === 0 ? bytes : out + bytes.slice(plainFrom)
}

/**
 * The logger's own guard for text that is already characters: ASCII control characters
 * (and DEL) become '?', as printable() treats their bytes; other characters are written as
 * UTF-8, which printable() lets through.
 */
export function printableText(text: string): string {
  // eslint-disable-next-line no-control-regex
  return /[\x00-\x1f\x7f\ud800-\udfff]/.test(text) ? text.replace(/[\x00-\x1f\x7f]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, QUESTION) : text
}
