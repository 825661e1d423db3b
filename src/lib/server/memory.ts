// A server that had a thousand clients for a minute should not keep their memory for a
// week. V8 collects garbage when it next allocates much, which an idle server does not, and
// glibc keeps freed pages; so once many connections have gone and the server is quiet for a
// moment, collect and hand the pages back. Nothing here runs on the request path.

import {releaseMemory} from '../native/index.js'

/** Closed connections after which a release is worth its few milliseconds. */
const CLOSES_WORTH_RELEASING = 16
/** Quiet time (no connection closed) before the release runs... */
const QUIET_MS = 1000
/** ...unless closes keep coming for this long. */
const LONGEST_WAIT_MS = 30_000

export class MemoryReleaser {
  private closes = 0
  private firstPending = 0
  private lastClose = 0
  private timer: NodeJS.Timeout | undefined
  private stopped = false

  /** A connection ended. */
  connectionClosed(now = Date.now()): void {
    if (this.stopped) return // the process is stopping: its connections ending is no reason
    if (this.closes++ === 0) this.firstPending = now
    this.lastClose = now
    if (this.closes >= CLOSES_WORTH_RELEASING && !this.timer) this.schedule(QUIET_MS)
  }

  private schedule(ms: number): void {
    this.timer = setTimeout(() => {
      this.timer = undefined
      const now = Date.now()
      const quietFor = now - this.lastClose
      if (quietFor < QUIET_MS && now - this.firstPending < LONGEST_WAIT_MS) this.schedule(QUIET_MS - quietFor)
      else this.release()
    }, ms)
    this.timer.unref()
  }

  release(): void {
    clearTimeout(this.timer)
    this.timer = undefined
    this.closes = 0
    releaseMemory()
  }

  stop(): void {
    this.stopped = true
    clearTimeout(this.timer)
    this.timer = undefined
  }
}
