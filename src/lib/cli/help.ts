// Command descriptions are written as text blocks in the source; oclif wraps them to the
// terminal itself, so the source's own line breaks would be wrapped a second time.

/**
 * Joins the lines of each paragraph (paragraphs are separated by blank lines). A line
 * indented by exactly two spaces starts a new line (a list item, kept flush left as oclif
 * indents the whole description); a more deeply indented line continues the item above.
 */
export function reflow(text: string): string {
  return text.split(/\n[ \t]*\n/).map(paragraph => {
    const lines: string[] = []
    for (const raw of paragraph.split('\n')) {
      const item = /^ {2}\S/.test(raw)
      const line = raw.trim()
      if (line === '') continue
      if (lines.length === 0 || item) lines.push(line)
      else lines[lines.length - 1] += ` ${line}`
    }
    return lines.join('\n')
  }).join('\n\n')
}
