// Lines of standard input for the `-` argument of query, update and delete.

import readline from 'node:readline'

/**
 * Every line of `input`, without its newline (CRLF too), in constant memory: readline's
 * async iterator pauses the stream when its queue fills. The iterator is taken at once,
 * because readline drops lines that arrive before anyone iterates, and commands usually
 * open a table (a round trip for proxy:) before they read the first line.
 */
export function inputLines(input: NodeJS.ReadableStream = process.stdin): AsyncGenerator<string> {
  const lines = readline.createInterface({input, crlfDelay: Infinity})[Symbol.asyncIterator]()
  return (async function* () {
    for (let next = await lines.next(); !next.done; next = await lines.next()) yield next.value
  })()
}
