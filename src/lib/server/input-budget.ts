// One limit on the request bytes that all connections together hold while their requests
// are incomplete. Each connection is bounded on its own (AttrLimits); this bounds the sum,
// so that many connections each sending most of a large request cannot add up to gigabytes.
// Over the limit, the connection holding the most is closed: real clients send requests of
// a few hundred bytes and never hold much for long.

export interface BudgetHolder {
  /** Ends the holder's connection; `reason` is for the log line. */
  evict(reason: string): void
}

/** Default total: far above what thousands of real clients hold at once. */
export const DEFAULT_INPUT_BUDGET_BYTES = 64 << 20

export class InputBudget {
  private readonly held = new Map<BudgetHolder, number>()
  private total = 0

  constructor(readonly limitBytes = DEFAULT_INPUT_BUDGET_BYTES) {}

  get totalBytes(): number {
    return this.total
  }

  /** Records what `holder` holds now, and evicts the largest holders while over the limit. */
  hold(holder: BudgetHolder, bytes: number): void {
    this.total += bytes - (this.held.get(holder) ?? 0)
    if (bytes > 0) this.held.set(holder, bytes)
    else this.held.delete(holder)
    while (this.total > this.limitBytes) {
      let largest: BudgetHolder | undefined
      let most = 0
      for (const [h, n] of this.held) if (n > most) { largest = h; most = n }
      if (!largest) break
      this.release(largest)
      largest.evict(`unfinished requests of all clients exceed ${this.limitBytes} bytes; this one holds ${most}`)
    }
  }

  release(holder: BudgetHolder): void {
    this.total -= this.held.get(holder) ?? 0
    this.held.delete(holder)
  }
}
