/**
 * How much one Mongrel2 connection may be sent right now.
 *
 * With `download.flow_control` on, Mongrel2 starts each connection with
 * DOWNLOAD_CREDITS (102400 bytes) and returns credits as it writes; it kills
 * a connection whose unwritten bytes would pass that number. The gate keeps
 * the exact count and never lets a frame exceed what is left.
 *
 * Without flow control Mongrel2 gives no feedback at all, yet it kills a
 * connection that has 16 messages waiting. The gate then paces instead:
 * at most PACE_FRAMES frames in any PACE_WINDOW_MS, and the writer merges
 * whatever the app wrote meanwhile into the next frame.
 * Known shortcoming: that pacing is a guess. A client that stops reading
 * while the app keeps writing can still fill Mongrel2's queue and be cut
 * off; only `download.flow_control=1` gives true back-pressure, which is
 * why m2fleet's sample configs turn it on.
 */

/** Mongrel2's initial and maximum credit per connection, in bytes. */
export const DOWNLOAD_CREDITS = 102400;
const PACE_FRAMES = 8;
const PACE_WINDOW_MS = 10;

/** Credit accounting and pacing for one connection. */
export class FlowGate {
  /** True once the connection is known to run under download credits. */
  credited = false;
  #unacked = 0;
  #sentAt: number[] = [];

  /** Switches to credit accounting; `initial` is DOWNLOAD_CREDITS. */
  useCredits(initial: number): void {
    if (this.credited) return;
    this.credited = true;
    const start = Number.isSafeInteger(initial) ? initial : DOWNLOAD_CREDITS;
    this.#unacked = Math.min(DOWNLOAD_CREDITS, Math.max(0, DOWNLOAD_CREDITS - start));
  }

  /** Bytes Mongrel2 reported written (a credits notice). */
  acknowledge(bytes: number): void {
    if (!Number.isSafeInteger(bytes) || bytes <= 0) return;
    this.#unacked = Math.max(0, this.#unacked - bytes);
  }

  /**
   * Largest frame body that may go now: 0 means wait. Without credits it
   * is unlimited in size but paced in count; `wait()` says how long.
   */
  allowance(now: number): number {
    if (this.credited) return DOWNLOAD_CREDITS - this.#unacked;
    return this.wait(now) === 0 ? Number.POSITIVE_INFINITY : 0;
  }

  /** Milliseconds until an uncredited frame may go (0 = now). */
  wait(now: number): number {
    if (this.credited || this.#sentAt.length < PACE_FRAMES) return 0;
    return Math.max(0, this.#sentAt[0]! + PACE_WINDOW_MS - now);
  }

  /**
   * A new request arrived on the connection. Without credits the pacing
   * only has to spread the frames of one response: a client that sent
   * another request has Mongrel2 waiting on it, not a queue of frames, so
   * the count starts over (otherwise a keep-alive client asking in turn
   * would be held to PACE_FRAMES requests per PACE_WINDOW_MS).
   */
  newRequest(): void {
    this.#sentAt = [];
  }

  /** Records a frame of `bytes` body bytes as sent. */
  record(bytes: number, now: number): void {
    if (this.credited) {
      this.#unacked += bytes;
      return;
    }
    this.#sentAt.push(now);
    if (this.#sentAt.length > PACE_FRAMES) this.#sentAt.shift();
  }

  /** Body bytes sent but not yet reported written (credit mode). */
  get unacknowledged(): number {
    return this.#unacked;
  }
}
