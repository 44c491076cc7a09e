/**
 * Candidate pruning for live-query fan-out (behavior.md §3.14): the subscriptions of one map, indexed by their
 * equality constraint (`where: { f: c }`, `where: { f: { $eq: c } }`, or a predicate `eq` at the top level or
 * directly under a top-level `and`). A subscription whose filter requires `value[f] === c` can only be affected
 * by a change in which the old or the new value has `f === c`; all other subscriptions are always candidates.
 *
 * Contract for callers:
 * - `oldValue` must be the key's previously *visible* value (`undefined` if it had none: absent, tombstoned,
 *   expired) and `newValue` its new visible value. With exactly those, every subscription that holds the key
 *   (whose filter matched `oldValue`) and every one that may now contain it (matching `newValue`) is returned.
 * - Changes in which neither value matches a subscription's filter cannot alter its window, even a limited one,
 *   so pruning them is exact; but if the caller cannot supply the true old value (e.g. it was already
 *   overwritten), it must also notify the subscriptions that currently hold the key (`LiveQuery.has(key)`):
 *   those may need a LEAVE.
 * - A subscription is returned at most once per call.
 */
import type { CompiledQuery, Scalar } from "./compile.js"
import { fieldOf } from "./values.js"

interface Entry<S> {
  readonly sub: S
  readonly field?: string
  readonly value?: Scalar
}

export class SubscriptionIndex<S> {
  private readonly entries = new Map<string, Entry<S>>()
  /** field → constant → subscription id → subscription. Map keys compare with SameValueZero, like `===`. */
  private readonly byEquality = new Map<string, Map<Scalar, Map<string, S>>>()
  private readonly unconstrained = new Map<string, S>()

  get size(): number {
    return this.entries.size
  }

  /** Registers (or replaces) subscription `id`. */
  add(id: string, q: CompiledQuery, sub: S): void {
    this.remove(id)
    const eq = q.equality
    if (eq === undefined) {
      this.unconstrained.set(id, sub)
      this.entries.set(id, { sub })
      return
    }
    let byValue = this.byEquality.get(eq.field)
    if (byValue === undefined) this.byEquality.set(eq.field, (byValue = new Map()))
    let subs = byValue.get(eq.value)
    if (subs === undefined) byValue.set(eq.value, (subs = new Map()))
    subs.set(id, sub)
    this.entries.set(id, { sub, field: eq.field, value: eq.value })
  }

  remove(id: string): boolean {
    const entry = this.entries.get(id)
    if (entry === undefined) return false
    this.entries.delete(id)
    if (entry.field === undefined) {
      this.unconstrained.delete(id)
      return true
    }
    const byValue = this.byEquality.get(entry.field)!
    const subs = byValue.get(entry.value!)!
    subs.delete(id)
    if (subs.size === 0) byValue.delete(entry.value!)
    if (byValue.size === 0) this.byEquality.delete(entry.field)
    return true
  }

  /** Every subscription that could be affected by the key changing from `oldValue` to `newValue`. */
  *candidates(oldValue: unknown, newValue: unknown): IterableIterator<S> {
    yield* this.unconstrained.values()
    for (const [field, byValue] of this.byEquality) {
      const before = fieldOf(oldValue, field)
      const after = fieldOf(newValue, field)
      const oldSubs = before === undefined ? undefined : byValue.get(before as Scalar)
      if (oldSubs !== undefined) yield* oldSubs.values()
      if (after !== undefined && !Object.is(after, before)) {
        const newSubs = byValue.get(after as Scalar)
        if (newSubs !== undefined && newSubs !== oldSubs) yield* newSubs.values()
      }
    }
  }
}
