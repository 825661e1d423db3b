// A spinner on stderr for waits a person would otherwise wonder about (connecting to the
// service, opening a slow table, a long dump). It shows only after a moment, so quick
// commands print nothing extra, and only on a terminal that may be coloured: ora draws with
// escape codes, and a pipe, NO_COLOR or --no-color must never see one.

import type {Ora} from 'ora'
import {colorEnabled} from './render.js'

/** Waits shorter than this show no spinner. */
export const SPINNER_DELAY_MS = 200

export class DelayedSpinner {
  private spinner: Ora | undefined
  private timer: NodeJS.Timeout | undefined
  private label = ''
  /** Between start() and stop(): whether a spinner that finishes loading should show. */
  private wanted = false

  constructor(private readonly enabled: boolean, private readonly delayMs = SPINNER_DELAY_MS) {}

  /** On stderr when it is a terminal and colours are allowed there (--no-color, NO_COLOR: off). */
  static forStderr(colorFlag: boolean | undefined, allowed = true): DelayedSpinner {
    // A terminal without a width (a bare pty) makes ora clear an unbounded number of lines.
    const width = process.stderr.columns ?? 0
    return new DelayedSpinner(allowed && process.stderr.isTTY === true && width > 0 && colorEnabled(colorFlag, process.stderr))
  }

  /** Shows `text` if the wait lasts longer than the delay (or at once, if already showing). */
  start(text: string): void {
    this.label = text
    this.wanted = true
    if (!this.enabled) return
    if (this.spinner) {
      this.spinner.text = text
      if (!this.spinner.isSpinning) this.spinner.start()
      return
    }
    this.timer ??= setTimeout(() => {
      this.timer = undefined
      // ora is loaded only when a wait is long enough to show it.
      void import('ora').then(({default: ora}) => {
        // discardStdin would swallow keys typed for `-` and the confirmation prompt.
        this.spinner ??= ora({text: this.label, stream: process.stderr, discardStdin: false})
        if (this.wanted && !this.spinner.isSpinning) this.spinner.start(this.label)
      })
    }, this.delayMs)
    this.timer.unref()
  }

  set text(text: string) {
    this.label = text
    if (this.spinner) this.spinner.text = text
  }

  /**
   * Sets the text and lets the spinner's timers run: a file table answers every request
   * without leaving the event loop, so a long loop over it would otherwise never show the
   * spinner (its delay is a timer) nor move it.
   */
  async update(text: string): Promise<void> {
    this.text = text
    if (this.enabled) await new Promise(resolve => setImmediate(resolve))
  }

  /** Clears the line; `finalText` stays there, when the spinner was showing at all. */
  stop(finalText?: string): void {
    this.wanted = false
    if (this.timer) clearTimeout(this.timer)
    this.timer = undefined
    if (!this.spinner?.isSpinning) return
    if (finalText === undefined) this.spinner.stop()
    else this.spinner.stopAndPersist({symbol: '', text: finalText})
  }

  /** Shows `text` while `work` is pending (after the delay), then clears it. */
  async during<T>(text: string, work: Promise<T>): Promise<T> {
    this.start(text)
    try {
      return await work
    } finally {
      this.stop()
    }
  }
}
