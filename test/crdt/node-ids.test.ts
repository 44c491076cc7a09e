import { describe, expect, it } from "vitest"
import * as fc from "fast-check"
import { NodeIdInterner, NodeIdTable } from "../../src/crdt/node-ids.js"

describe("NodeIdTable", () => {
  it("matches a reference-counted model through any sequence of acquires and releases", () => {
    const id = fc.constantFrom("a", "b", "c", "d")
    const step = fc.oneof(fc.record({ acquire: id }), fc.record({ release: fc.nat(20) }))
    fc.assert(
      fc.property(fc.array(step, { maxLength: 200 }), (steps) => {
        const table = new NodeIdTable()
        const held: Array<{ id: string; index: number }> = []
        for (const s of steps) {
          if ("acquire" in s) {
            // Equal ids from different decodes are different string objects.
            const index = table.acquire(`${s.acquire}`.padEnd(1))
            for (const h of held) expect(h.id === s.acquire).toBe(h.index === index)
            held.push({ id: s.acquire, index })
          } else if (held.length > 0) {
            const [h] = held.splice(s.release % held.length, 1)
            table.release(h!.index)
          }
          for (const h of held) expect(table.at(h.index)).toBe(h.id)
          expect(table.size).toBe(new Set(held.map((h) => h.id)).size)
        }
      }),
      { numRuns: 300 }
    )
  })

  it("does not hand out the index of an id that was dropped and reused (the last-id shortcut)", () => {
    const table = new NodeIdTable()
    const a = table.acquire("a")
    table.release(a) // "a" is gone; its index is free
    const b = table.acquire("b") // reuses it
    expect(b).toBe(a)
    const a2 = table.acquire("a")
    expect(a2).not.toBe(b)
    expect(table.at(b)).toBe("b")
    expect(table.at(a2)).toBe("a")
  })
})

describe("NodeIdInterner", () => {
  it("returns one string per id, also for the id seen last", () => {
    const interner = new NodeIdInterner(2)
    const first = interner.intern(["n", "1"].join(""))
    expect(interner.intern(["n", "1"].join(""))).toBe(first)
    expect(interner.intern(["n", "2"].join(""))).toBe("n2")
    expect(interner.intern(["n", "1"].join(""))).toBe(first)
    expect(interner.intern("n3")).toBe("n3") // past the bound: not shared, still correct
  })
})
