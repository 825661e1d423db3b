// `proxymap stats --watch`: the snapshot again every second until SIGINT (Ctrl-C), which
// ends it normally. On a terminal the table is drawn over the last one; in a pipe the
// plain lines follow one another, each set stamped with its time.

import type {OutputFormat} from '../cli/output.js'
import type {StatsSnapshot} from '../server/stats.js'
import {renderStatsLines, renderStatsTables} from './stats-view.js'

export const WATCH_INTERVAL_MS = 1000

/** Cursor home, clear the screen: where the next table is drawn. */
const REDRAW = '\x1b[H\x1b[2J'

export interface WatchOptions {
  format: OutputFormat
  color: boolean
  stdout: {isTTY?: boolean; columns?: number; write(text: string): unknown}
}

/** Resolves when SIGINT arrives; rejects with fetch's error when the server stops answering. */
export function watchStats(fetch: () => Promise<StatsSnapshot>, options: WatchOptions): Promise<void> {
  const {stdout} = options
  const draw = (snapshot: StatsSnapshot): void => {
    if (options.format === 'json') stdout.write(`${JSON.stringify(snapshot)}\n`)
    else if (options.format === 'table' && stdout.isTTY) stdout.write(`${REDRAW}${renderStatsTables(snapshot, options.color, stdout.columns)}\n`)
    else if (options.format === 'table') stdout.write(`${renderStatsTables(snapshot, options.color)}\n\n`)
    else stdout.write(`${renderStatsLines(snapshot, `${new Date().toISOString()} `)}\n`)
  }
  return new Promise<void>((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined
    let stopped = false
    const stop = (): void => {
      stopped = true
      clearTimeout(timer)
      resolve()
    }
    process.once('SIGINT', stop)
    const tick = (): void => {
      fetch().then(snapshot => {
        if (stopped) return
        draw(snapshot)
        timer = setTimeout(tick, WATCH_INTERVAL_MS)
      }, (err: unknown) => {
        process.off('SIGINT', stop)
        if (!stopped) reject(err)
      })
    }
    tick()
  })
}
