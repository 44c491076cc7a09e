/**
 * Latency samples, percentiles and table formatting for the benchmarks.
 * Samples are kept raw (a growable Float64Array) so the percentiles are exact.
 */

/** Growable buffer of latency samples in milliseconds. */
export class Samples {
  private buf = new Float64Array(1024)
  private len = 0

  get count(): number {
    return this.len
  }

  add(ms: number): void {
    if (this.len === this.buf.length) {
      const next = new Float64Array(this.buf.length * 2)
      next.set(this.buf)
      this.buf = next
    }
    this.buf[this.len++] = ms
  }

  /** A sorted copy of the samples. */
  sorted(): Float64Array {
    return this.buf.slice(0, this.len).sort()
  }

  summary(): LatencySummary {
    return summarize(this.sorted())
  }
}

export interface LatencySummary {
  readonly count: number
  readonly p50: number
  readonly p99: number
  readonly max: number
}

/** Nearest-rank percentile (p in [0, 100]) of an ascending array; NaN when empty. */
export const percentile = (sortedAsc: ArrayLike<number>, p: number): number => {
  const n = sortedAsc.length
  if (n === 0) return Number.NaN
  const rank = Math.ceil((p / 100) * n)
  return sortedAsc[Math.min(n - 1, Math.max(0, rank - 1))]!
}

export const summarize = (sortedAsc: ArrayLike<number>): LatencySummary => ({
  count: sortedAsc.length,
  p50: percentile(sortedAsc, 50),
  p99: percentile(sortedAsc, 99),
  max: sortedAsc.length === 0 ? Number.NaN : sortedAsc[sortedAsc.length - 1]!
})

export const median = (values: ReadonlyArray<number>): number =>
  percentile(Float64Array.from(values).sort(), 50)

/** Milliseconds with a precision that suits their magnitude. */
export const formatMs = (ms: number): string =>
  Number.isNaN(ms) ? "-" : ms < 10 ? ms.toFixed(2) : ms < 100 ? ms.toFixed(1) : ms.toFixed(0)

/** Rates as 12.3k / 1.23M. */
export const formatRate = (perSecond: number): string => {
  if (Number.isNaN(perSecond)) return "-"
  if (perSecond >= 1e6) return `${(perSecond / 1e6).toFixed(2)}M`
  if (perSecond >= 1e4) return `${(perSecond / 1e3).toFixed(1)}k`
  if (perSecond >= 1e3) return `${(perSecond / 1e3).toFixed(2)}k`
  return perSecond.toFixed(0)
}

export const formatRatio = (ratio: number): string => (Number.isFinite(ratio) ? `${ratio.toFixed(2)}x` : "-")

/** A fixed-width text table; the first row is the header. */
export const renderTable = (rows: ReadonlyArray<ReadonlyArray<string>>): string => {
  const widths: Array<number> = []
  for (const row of rows) {
    row.forEach((cell, i) => {
      widths[i] = Math.max(widths[i] ?? 0, cell.length)
    })
  }
  const line = (row: ReadonlyArray<string>) =>
    row.map((cell, i) => (i === 0 || i === row.length - 1 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join("  ").trimEnd()
  const out = [line(rows[0] ?? []), widths.map((w) => "-".repeat(w)).join("  ")]
  for (const row of rows.slice(1)) out.push(line(row))
  return out.join("\n")
}
