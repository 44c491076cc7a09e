import { describe, expect, it, layer } from "@effect/vitest"
import { Effect, Either } from "effect"
import fc from "fast-check"
import type { Timestamp } from "../../src/crdt/types.js"
import { Sandbox } from "../../src/layers/Sandbox.js"
import {
  BUILTIN_PROCESSORS,
  BUILTIN_RESOLVERS,
  matchBuiltinProcessor,
  normalizeProcessorCode,
  runBuiltinProcessor
} from "../../src/sandbox/builtins.js"
import type { ResolverContext } from "../../src/sandbox/types.js"

const code = (name: string): string => BUILTIN_PROCESSORS.get(name)!.code

/** Runs a built-in's code through the sandbox: `viaQuickJs` forces the isolate by using a non-built-in name. */
const runBuiltin = (name: string, value: unknown, args: unknown, viaQuickJs = false) =>
  Effect.flatMap(Sandbox, (s) =>
    s.runProcessor({ name: viaQuickJs ? `custom:${name}` : name, code: code(name), value, key: "k", args }))

const EXAMPLES: ReadonlyArray<readonly [string, unknown, unknown, { value: unknown; result: unknown }]> = [
  ["builtin:increment", undefined, 5, { value: 5, result: 5 }],
  ["builtin:increment", 10, 1, { value: 11, result: 11 }],
  ["builtin:decrement", 10, 3, { value: 7, result: 7 }],
  ["builtin:decrement_floor", 2, 5, { value: 0, result: { newValue: 0, wasFloored: true } }],
  ["builtin:decrement_floor", 7, 5, { value: 2, result: { newValue: 2, wasFloored: false } }],
  ["builtin:multiply", undefined, 3, { value: 3, result: 3 }],
  ["builtin:multiply", 4, 2.5, { value: 10, result: 10 }],
  ["builtin:put_if_absent", undefined, "x", { value: "x", result: true }],
  ["builtin:put_if_absent", "old", "x", { value: "old", result: false }],
  ["builtin:replace", "old", "new", { value: "new", result: "old" }],
  ["builtin:replace_if_equals", { a: 1 }, { expected: { a: 1 }, newValue: 2 }, { value: 2, result: true }],
  ["builtin:replace_if_equals", { a: 1 }, { expected: { a: 2 }, newValue: 2 }, { value: { a: 1 }, result: false }],
  ["builtin:delete_if_equals", 5, 5, { value: undefined, result: true }],
  ["builtin:delete_if_equals", 5, 6, { value: 5, result: false }],
  ["builtin:array_push", undefined, 1, { value: [1], result: 1 }],
  ["builtin:array_push", [1, 2], 3, { value: [1, 2, 3], result: 3 }],
  ["builtin:array_pop", [1, 2], undefined, { value: [1], result: 2 }],
  ["builtin:array_pop", undefined, undefined, { value: [], result: undefined }],
  ["builtin:array_remove", [1, { a: 1 }, 3], { a: 1 }, { value: [1, 3], result: true }],
  ["builtin:array_remove", [1, 2], 9, { value: [1, 2], result: false }],
  ["builtin:array_remove", undefined, 9, { value: [], result: false }],
  ["builtin:set_property", { a: { b: 1 } }, { path: "a.c", value: 2 }, { value: { a: { b: 1, c: 2 } }, result: { a: { b: 1, c: 2 } } }],
  ["builtin:set_property", undefined, { path: "x.y", value: true }, { value: { x: { y: true } }, result: { x: { y: true } } }],
  ["builtin:delete_property", { a: { b: 1, c: 2 } }, "a.b", { value: { a: { c: 2 } }, result: true }],
  ["builtin:delete_property", { a: 1 }, "z.b", { value: { a: 1 }, result: false }],
  ["builtin:get", { a: 1 }, undefined, { value: { a: 1 }, result: { a: 1 } }],
  ["builtin:conditional_update", 1, { expected: 1, newValue: 2 }, { value: 2, result: { updated: true, previous: 1 } }],
  ["builtin:conditional_update", 3, { expected: 1, newValue: 2 }, { value: 3, result: { updated: false, current: 3 } }],
  ["builtin:merge", { a: 1, b: 1 }, { b: 2, c: 3 }, { value: { a: 1, b: 2, c: 3 }, result: { a: 1, b: 2, c: 3 } }]
]

layer(Sandbox.Default)("built-in entry processors", (it) => {
  it.effect("every built-in has examples, and both the fast path and QuickJS produce them", () =>
    Effect.gen(function* () {
      const covered = new Set(EXAMPLES.map(([name]) => name))
      expect([...BUILTIN_PROCESSORS.keys()].sort()).toEqual([...covered].sort())
      expect(BUILTIN_PROCESSORS.size).toBe(16)
      for (const [name, value, args, expected] of EXAMPLES) {
        const fast = yield* runBuiltin(name, value, args)
        const isolated = yield* runBuiltin(name, value, args, true)
        expect({ name, out: fast }).toEqual({ name, out: expected })
        expect({ name, out: isolated }).toEqual({ name, out: expected })
      }
    }))

  it.effect("the TypeScript transcriptions agree with the code run in QuickJS (property)", () =>
    Effect.gen(function* () {
      const sandbox = yield* Sandbox
      const path = fc.constantFrom("a", "a.b", "0", "length", "__proto__.polluted", "constructor", "a.__proto__",
        "toString", "x.y.z")
      const json = fc.jsonValue({ maxDepth: 2 })
      const valueArb = fc.oneof(fc.constant(undefined), json, fc.dictionary(fc.constantFrom("a", "b", "0"), json),
        fc.array(json, { maxLength: 3 }), fc.integer())
      const argsArb = fc.oneof(fc.constant(undefined), json, path, fc.integer(),
        fc.record({ path, value: json }), fc.record({ expected: json, newValue: json }))
      const samples = fc.sample(fc.tuple(fc.constantFrom(...BUILTIN_PROCESSORS.keys()), valueArb, argsArb), {
        numRuns: 400,
        seed: 42
      })
      let compared = 0
      for (const [name, value, args] of samples) {
        const builtin = BUILTIN_PROCESSORS.get(name)!
        const fast = runBuiltinProcessor(builtin, value, "k", args)
        const isolated = yield* Effect.either(sandbox.runProcessor({ name: `custom:${name}`, code: builtin.code, value, key: "k", args }))
        if (fast === undefined) continue // not covered: the sandbox runs the real code
        compared++
        const normalized = JSON.parse(JSON.stringify({ value: fast.value, result: fast.result }))
        if (Either.isLeft(isolated)) throw new Error(`${name}(${JSON.stringify(value)}, ${JSON.stringify(args)}): fast path succeeded, QuickJS failed: ${isolated.left.message}`)
        expect({ name, value, args, out: isolated.right }).toEqual({
          name, value, args, out: { value: normalized.value, result: normalized.result }
        })
      }
      expect(compared).toBeGreaterThan(200)
      expect(({} as Record<string, unknown>)["polluted"]).toBeUndefined()
    }))

  it.effect("the fast path never touches host prototypes and falls back to QuickJS when unsure", () =>
    Effect.gen(function* () {
      const out = yield* runBuiltin("builtin:set_property", {}, { path: "__proto__.polluted", value: 1 })
      expect(({} as Record<string, unknown>)["polluted"]).toBeUndefined()
      expect(out.value).toEqual({})
      const viaConstructor = yield* runBuiltin("builtin:set_property", {}, { path: "constructor.x", value: 1 })
      expect((Object as unknown as Record<string, unknown>)["x"]).toBeUndefined()
      expect(viaConstructor.value).toEqual({})
      // QuickJS error text when the code throws (args.path of undefined)
      const failed = yield* Effect.either(runBuiltin("builtin:set_property", {}, undefined))
      expect(Either.isLeft(failed) && failed.left._tag).toBe("SandboxRuntime")
    }))

  it("matching needs the exact body (indentation aside) and name", () => {
    const inc = BUILTIN_PROCESSORS.get("builtin:increment")!
    expect(matchBuiltinProcessor("builtin:increment", inc.code)).toBe(inc)
    expect(matchBuiltinProcessor("builtin:increment", inc.code.replace(/\n\s+/g, "\n\t"))).toBe(inc)
    expect(matchBuiltinProcessor("builtin:increment", inc.code.replace("+ args", "- args"))).toBeUndefined()
    expect(matchBuiltinProcessor("builtin:decrement", inc.code)).toBeUndefined()
    // line breaks are significant (ASI): `return\n{...}` is different code
    expect(normalizeProcessorCode("return {\n}")).not.toBe(normalizeProcessorCode("return\n{\n}"))
  })
})

const ts = (millis: number, counter = 0, nodeId = "n"): Timestamp => ({ millis, counter, nodeId })

const ctx = (overrides: Partial<ResolverContext>): ResolverContext => ({
  mapName: "m",
  key: "k",
  remoteValue: 1,
  remoteTimestamp: ts(2),
  remoteNodeId: "conn-1",
  ...overrides
})

const resolveWith = (name: string, context: ResolverContext) => BUILTIN_RESOLVERS.get(name)!.resolve(context)

describe("built-in conflict resolvers", () => {
  it("have the table's names and priorities", () => {
    expect(Object.fromEntries([...BUILTIN_RESOLVERS.values()].map((r) => [r.name, r.priority]))).toEqual({
      "builtin:lww": 0,
      "builtin:first_write_wins": 100,
      "builtin:immutable": 100,
      "builtin:server_only": 100,
      "builtin:owner_only": 95,
      "builtin:non_negative": 90,
      "builtin:version_increment": 90,
      "builtin:numeric_min": 50,
      "builtin:numeric_max": 50,
      "builtin:array_union": 50,
      "builtin:deep_merge": 50
    })
  })

  it("lww: accept iff no local record or the remote timestamp is newer", () => {
    expect(resolveWith("builtin:lww", ctx({}))).toEqual({ action: "accept", value: 1 })
    expect(resolveWith("builtin:lww", ctx({ localTimestamp: ts(1) })).action).toBe("accept")
    expect(resolveWith("builtin:lww", ctx({ localTimestamp: ts(2) })).action).toBe("local")
    expect(resolveWith("builtin:lww", ctx({ localTimestamp: ts(3) })).action).toBe("local")
    expect(resolveWith("builtin:lww", ctx({ localTimestamp: ts(2, 0, "a"), remoteTimestamp: ts(2, 0, "b") })).action)
      .toBe("accept")
    expect(resolveWith("builtin:lww", ctx({ localTimestamp: ts(2, 1), remoteTimestamp: ts(2, 0) })).action).toBe("local")
    // localeCompare order, not byte order: "a" < "B"
    expect(resolveWith("builtin:lww", ctx({ localTimestamp: ts(2, 0, "a"), remoteTimestamp: ts(2, 0, "B") })).action)
      .toBe("accept")
  })

  it("first_write_wins / immutable", () => {
    expect(resolveWith("builtin:first_write_wins", ctx({ localValue: 1 }))).toEqual({ action: "reject", reason: "Entry already exists" })
    expect(resolveWith("builtin:first_write_wins", ctx({})).action).toBe("accept")
    expect(resolveWith("builtin:first_write_wins", ctx({ localValue: null })).action).toBe("accept")
    expect(resolveWith("builtin:immutable", ctx({ localValue: 0 }))).toEqual({ action: "reject", reason: "Entry is immutable" })
    expect(resolveWith("builtin:immutable", ctx({})).action).toBe("accept")
  })

  it("server_only", () => {
    const rejected = { action: "reject", reason: "Only server can write to this entry" }
    expect(resolveWith("builtin:server_only", ctx({ auth: { roles: ["server"] } })).action).toBe("accept")
    expect(resolveWith("builtin:server_only", ctx({ remoteNodeId: "server:node-1" })).action).toBe("accept")
    expect(resolveWith("builtin:server_only", ctx({ auth: { roles: ["USER"] } }))).toEqual(rejected)
    expect(resolveWith("builtin:server_only", ctx({}))).toEqual(rejected)
  })

  it("owner_only", () => {
    const rejected = { action: "reject", reason: "Only owner can modify this entry" }
    expect(resolveWith("builtin:owner_only", ctx({})).action).toBe("accept")
    expect(resolveWith("builtin:owner_only", ctx({ localValue: { x: 1 } })).action).toBe("accept")
    expect(resolveWith("builtin:owner_only", ctx({ localValue: { ownerId: "u1" }, auth: { userId: "u1" } })).action).toBe("accept")
    expect(resolveWith("builtin:owner_only", ctx({ localValue: { ownerId: "u1" }, auth: { userId: "u2" } }))).toEqual(rejected)
    expect(resolveWith("builtin:owner_only", ctx({ localValue: { ownerId: "u1" } }))).toEqual(rejected)
  })

  it("non_negative", () => {
    const rejected = { action: "reject", reason: "Value cannot be negative" }
    expect(resolveWith("builtin:non_negative", ctx({ remoteValue: 0 })).action).toBe("accept")
    expect(resolveWith("builtin:non_negative", ctx({ remoteValue: 3.5 })).action).toBe("accept")
    expect(resolveWith("builtin:non_negative", ctx({ remoteValue: -1 }))).toEqual(rejected)
    expect(resolveWith("builtin:non_negative", ctx({ remoteValue: "5" }))).toEqual(rejected)
    expect(resolveWith("builtin:non_negative", ctx({ remoteValue: null }))).toEqual(rejected)
  })

  it("version_increment", () => {
    expect(resolveWith("builtin:version_increment", ctx({ remoteValue: { version: 1 } })).action).toBe("accept")
    expect(resolveWith("builtin:version_increment", ctx({ localValue: { version: 4 }, remoteValue: { version: 5 } })).action)
      .toBe("accept")
    expect(resolveWith("builtin:version_increment", ctx({ localValue: { version: 4 }, remoteValue: { version: 7 } })))
      .toEqual({ action: "reject", reason: "Version conflict: expected 5, got 7" })
    expect(resolveWith("builtin:version_increment", ctx({ remoteValue: { a: 1 } })))
      .toEqual({ action: "reject", reason: "Version conflict: expected 1, got undefined" })
  })

  it("numeric_min / numeric_max", () => {
    expect(resolveWith("builtin:numeric_max", ctx({ localValue: 5, remoteValue: 3 }))).toEqual({ action: "merge", value: 5 })
    expect(resolveWith("builtin:numeric_max", ctx({ localValue: 5, remoteValue: 9 }))).toEqual({ action: "merge", value: 9 })
    expect(resolveWith("builtin:numeric_max", ctx({ remoteValue: -3 }))).toEqual({ action: "merge", value: -3 })
    expect(resolveWith("builtin:numeric_min", ctx({ localValue: 5, remoteValue: 3 }))).toEqual({ action: "merge", value: 3 })
    expect(resolveWith("builtin:numeric_min", ctx({ remoteValue: 42 }))).toEqual({ action: "merge", value: 42 })
    // non-numeric remote (e.g. a deletion): no opinion
    expect(resolveWith("builtin:numeric_min", ctx({ localValue: 1, remoteValue: null }))).toEqual({ action: "local" })
  })

  it("array_union", () => {
    expect(resolveWith("builtin:array_union", ctx({ localValue: [1, 2, { a: 1 }], remoteValue: [2, 3, { a: 1 }, 1] })))
      .toEqual({ action: "merge", value: [1, 2, { a: 1 }, 3] })
    expect(resolveWith("builtin:array_union", ctx({ remoteValue: [1, 1] }))).toEqual({ action: "merge", value: [1] })
    expect(resolveWith("builtin:array_union", ctx({ localValue: [1], remoteValue: "x" }))).toEqual({ action: "local" })
  })

  it("deep_merge (remote wins; no prototype pollution)", () => {
    expect(resolveWith("builtin:deep_merge", ctx({
      localValue: { a: 1, n: { x: 1, y: 1 }, arr: [1] },
      remoteValue: { b: 2, n: { y: 2 }, arr: [2] }
    }))).toEqual({ action: "merge", value: { a: 1, b: 2, n: { x: 1, y: 2 }, arr: [2] } })
    expect(resolveWith("builtin:deep_merge", ctx({ remoteValue: { a: 1 } }))).toEqual({ action: "merge", value: { a: 1 } })
    expect(resolveWith("builtin:deep_merge", ctx({ localValue: { a: 1 }, remoteValue: 5 }))).toEqual({ action: "local" })
    const hostile = JSON.parse('{"__proto__": {"polluted": 1}}') as Record<string, unknown>
    const merged = resolveWith("builtin:deep_merge", ctx({ localValue: { a: 1 }, remoteValue: hostile }))
    expect(({} as Record<string, unknown>)["polluted"]).toBeUndefined()
    expect(merged.action).toBe("merge")
    if (merged.action === "merge") {
      expect(Object.getPrototypeOf(merged.value)).toBe(Object.prototype)
      expect(Object.prototype.hasOwnProperty.call(merged.value, "__proto__")).toBe(true)
    }
  })

  it("deep_merge is a right-biased merge: merging twice equals merging once (property)", () => {
    const obj = fc.dictionary(fc.constantFrom("a", "b", "c"), fc.oneof(fc.integer(), fc.dictionary(fc.constantFrom("x", "y"), fc.integer())))
    fc.assert(fc.property(obj, obj, (local, remote) => {
      const once = resolveWith("builtin:deep_merge", ctx({ localValue: local, remoteValue: remote }))
      if (once.action !== "merge") return false
      const twice = resolveWith("builtin:deep_merge", ctx({ localValue: once.value, remoteValue: remote }))
      return twice.action === "merge" && JSON.stringify(twice.value) === JSON.stringify(once.value)
    }))
  })
})
