import { describe, expect, layer } from "@effect/vitest"
import { Effect, Either, Layer } from "effect"
import { Sandbox, SandboxConfig, type SandboxError } from "../../src/layers/Sandbox.js"

const run = (code: string, value: unknown = undefined, args: unknown = undefined, name = "test") =>
  Effect.flatMap(Sandbox, (s) => s.runProcessor({ name, code, value, key: "k1", args }))

const runEither = (code: string, value?: unknown, args?: unknown, name?: string) =>
  Effect.either(run(code, value, args, name))

const resolve = (code: string, context: Record<string, unknown> = {}) =>
  Effect.flatMap(Sandbox, (s) => s.runResolver({ name: "r", code, context }))

const expectFailure = <A>(result: Either.Either<A, SandboxError>, tag: SandboxError["_tag"], message?: string) => {
  if (Either.isRight(result)) throw new Error(`expected ${tag}, got success ${JSON.stringify(result.right)}`)
  expect(result.left._tag).toBe(tag)
  if (message !== undefined) expect(result.left.message).toBe(message)
}

/** After every abuse: an ordinary processor still runs in the same layer. */
const stillWorks = Effect.gen(function* () {
  const out = yield* run("return { value: (value ?? 0) + args, result: key }", 41, 1, "sanity")
  expect(out).toEqual({ value: 42, result: "k1" })
})

layer(Sandbox.Default)("Sandbox processors", (it) => {
  it.effect("runs a trivial processor with value, key and args", () =>
    Effect.gen(function* () {
      expect(yield* run("return { value: value + 1, result: 'ok' }", 1)).toEqual({ value: 2, result: "ok" })
      expect(yield* run("return { value: args.a * 2, result: [key, value] }", undefined, { a: 21 })).toEqual({
        value: 42,
        result: ["k1", null] // undefined inside an array becomes null at the JSON boundary
      })
    }))

  it.effect("undefined value means delete; result is optional", () =>
    Effect.gen(function* () {
      const out = yield* run("return { value: undefined }", { a: 1 })
      expect(out.value).toBeUndefined()
      expect(out.result).toBeUndefined()
      expect(yield* run("return {}", 5)).toEqual({ value: undefined, result: undefined })
      // absent input really is undefined inside, not null
      expect(yield* run("return { value: typeof value, result: value === undefined }")).toEqual({
        value: "undefined",
        result: true
      })
    }))

  it.effect("inputs are deep copies: mutating them inside does not touch the host", () =>
    Effect.gen(function* () {
      const value = { list: [1, 2] }
      const out = yield* run("value.list.push(3); return { value }", value)
      expect(out.value).toEqual({ list: [1, 2, 3] })
      expect(value).toEqual({ list: [1, 2] })
    }))

  it.effect("non-object returns fail with the spec message", () =>
    Effect.gen(function* () {
      const message = "Processor must return { value, result? } object"
      for (const body of ["return 5", "return null", "return 'x'", "", "return [1]"]) {
        expectFailure(yield* runEither(body, 1), "SandboxRuntime", message)
      }
      yield* stillWorks
    }))

  it.effect("thrown errors surface their message", () =>
    Effect.gen(function* () {
      expectFailure(yield* runEither("throw new Error('boom')"), "SandboxRuntime", "boom")
      expectFailure(yield* runEither("throw 'plain'"), "SandboxRuntime", "plain")
      expectFailure(yield* runEither("return value.x.y", undefined), "SandboxRuntime")
      yield* stillWorks
    }))

  it.effect("syntax errors are SandboxSyntax", () =>
    Effect.gen(function* () {
      expectFailure(yield* runEither("return { value: "), "SandboxSyntax")
      expectFailure(yield* runEither("let value = 1; return { value }"), "SandboxSyntax") // clashes with the parameter
      yield* stillWorks
    }))

  it.effect("an infinite loop is stopped by the time limit", () =>
    Effect.gen(function* () {
      const started = performance.now()
      expectFailure(yield* runEither("while (true) {}"), "SandboxTimeout", "Processor execution timed out")
      const elapsed = performance.now() - started
      expect(elapsed).toBeGreaterThanOrEqual(95)
      expect(elapsed).toBeLessThan(1000)
      // catching the interrupt is impossible
      expectFailure(yield* runEither("for (;;) { try { while (true) {} } catch (e) {} }"), "SandboxTimeout")
      yield* stillWorks
    }))

  it.effect("a memory bomb hits the memory limit", () =>
    Effect.gen(function* () {
      expectFailure(
        yield* runEither("let a = []; while (true) a.push('x'.repeat(1e6))"),
        "SandboxMemory",
        "Processor memory limit exceeded"
      )
      yield* stillWorks
      // many small objects (QuickJS can abort the whole WASM instance here: only that instance is lost)
      const objects = yield* runEither("let s = []; while (true) s.push({ a: 1, b: [1, 2, 3] })", undefined, undefined, "objs")
      expect(Either.isLeft(objects)).toBe(true)
      if (Either.isLeft(objects)) expect(["SandboxMemory", "SandboxRuntime", "SandboxTimeout"]).toContain(objects.left._tag)
      yield* stillWorks
      expectFailure(yield* runEither("return { value: new Uint8Array(1e9).length }"), "SandboxMemory")
      // the same code again gets a fresh instance and fails the same way
      expectFailure(yield* runEither("return { value: new Uint8Array(1e9).length }"), "SandboxMemory")
      // a huge input fails that execution only
      const big = yield* runEither("return { value: value.length }", "x".repeat(20 * 1024 * 1024), undefined, "big")
      expect(Either.isLeft(big)).toBe(true)
      yield* stillWorks
    }))

  it.effect("deep recursion fails cleanly (stack limit)", () =>
    Effect.gen(function* () {
      const result = yield* runEither("const f = (n) => f(n + 1) + 1; return { value: f(0) }")
      expect(Either.isLeft(result)).toBe(true)
      yield* stillWorks
    }))

  it.effect("no host capabilities are reachable", () =>
    Effect.gen(function* () {
      // Obfuscated so the forbidden-word list does not catch them first: this tests the isolate itself.
      const probes = [
        "return { value: typeof globalThis['pro' + 'cess'] }",
        "return { value: typeof globalThis['req' + 'uire'] }",
        "return { value: typeof globalThis['set' + 'Timeout'] }",
        "return { value: typeof globalThis['fe' + 'tch'] }",
        "return { value: typeof globalThis.std + typeof globalThis.os }",
        "return { value: typeof this['pro' + 'cess'] }"
      ]
      for (const code of probes) {
        const out = yield* run(code)
        expect(out.value).toMatch(/^(undefined)+$/)
      }
      const escape = yield* runEither("return { value: this.constructor.constructor('return pro' + 'cess')() }")
      if (Either.isRight(escape)) expect(escape.right.value).toBeUndefined()
      else expect(escape.left._tag).toBe("SandboxRuntime")
      const names = (yield* run("return { value: Object.getOwnPropertyNames(globalThis) }")).value as Array<string>
      for (const hostName of ["process", "require", "module", "Buffer", "setTimeout", "fetch", "std", "os"]) {
        expect(names).not.toContain(hostName)
      }
      yield* stillWorks
    }))

  it.effect("forbidden words are rejected before compiling", () =>
    Effect.gen(function* () {
      expectFailure(yield* runEither("return { value: process.env }"), "SandboxForbidden",
        "Forbidden pattern detected: \\bprocess\\b")
      expectFailure(yield* runEither("return { value: require('fs') }"), "SandboxForbidden",
        "Forbidden pattern detected: \\brequire\\b")
      expectFailure(yield* runEither("return { value: globalThis.process }"), "SandboxForbidden",
        "Forbidden pattern detected: \\bprocess\\b")
      expectFailure(yield* runEither("return { value: this.constructor.constructor('return process')() }"),
        "SandboxForbidden", "Forbidden pattern detected: \\bprocess\\b")
      yield* stillWorks
    }))

  it.effect("prototype pollution affects neither the host nor the next call", () =>
    Effect.gen(function* () {
      const code = "const before = ({}).polluted; Object.prototype.polluted = 1; Array.prototype.push = null;" +
        "return { value: [before, ({}).polluted, typeof [].push] }"
      const first = yield* run(code)
      expect(first.value).toEqual([null, null, "function"])
      expect(({} as Record<string, unknown>)["polluted"]).toBeUndefined()
      expect(yield* run(code)).toEqual(first)
      expectFailure(
        yield* runEither("Object.defineProperty(Object.prototype, 'x', { value: 1 }); return { value: 1 }"),
        "SandboxRuntime"
      )
      expect(({} as Record<string, unknown>)["x"]).toBeUndefined()
      yield* stillWorks
    }))

  it.effect("globals stashed by a call do not survive into the next call (cached context is reset)", () =>
    Effect.gen(function* () {
      const code = "globalThis.counter = (globalThis.counter || 0) + 1; leaked = (typeof leaked === 'undefined');" +
        "return { value: counter, result: leaked }"
      expect(yield* run(code)).toEqual({ value: 1, result: true })
      expect(yield* run(code)).toEqual({ value: 1, result: true })
      // ordinary code on frozen intrinsics still works (override-mistake taming)
      const err = yield* run("const e = new Error('m'); e.name = 'Custom'; const o = {}; o.toString = () => 'o';" +
        "return { value: [e.name, String(e), String(o)] }")
      expect(err.value).toEqual(["Custom", "Custom: m", "o"])
    }))

  it.effect("the cache is keyed by (name, code), not name alone", () =>
    Effect.gen(function* () {
      expect((yield* run("return { value: 1 }", undefined, undefined, "same")).value).toBe(1)
      expect((yield* run("return { value: 2 }", undefined, undefined, "same")).value).toBe(2)
    }))

  it.effect("huge results are rejected without crashing", () =>
    Effect.gen(function* () {
      const result = yield* runEither("return { value: 'x'.repeat(1.5e6) }")
      expectFailure(result, "SandboxRuntime")
      if (Either.isLeft(result)) expect(result.left.message).toContain("too large")
      yield* stillWorks
    }))

  it.effect("values that are not JSON become JSON (NaN → null, functions dropped)", () =>
    Effect.gen(function* () {
      const out = yield* run("return { value: { n: NaN, f: () => 1, d: new Date(0) }, result: Infinity }")
      expect(out).toEqual({ value: { n: null, d: "1970-01-01T00:00:00.000Z" }, result: null })
    }))

  it.effect("validateCode: length, forbidden words (exact text), syntax", () =>
    Effect.gen(function* () {
      const sandbox = yield* Sandbox
      yield* sandbox.validateCode("return { value: value + 1 }", 100)
      const tooLong = yield* Effect.either(sandbox.validateCode("x".repeat(101), 100))
      expectFailure(tooLong, "SandboxSyntax")
      for (const word of ["eval", "Function", "process", "global", "require", "import", "fetch",
        "XMLHttpRequest", "setTimeout", "setInterval", "setImmediate"]) {
        const r = yield* Effect.either(sandbox.validateCode(`return { value: ${word} }`, 1000))
        expectFailure(r, "SandboxForbidden", `Forbidden pattern detected: \\b${word}\\b`)
      }
      // word boundaries: globalThis / evaluate are fine
      yield* sandbox.validateCode("return { value: globalThis.evaluate }", 1000)
      expectFailure(yield* Effect.either(sandbox.validateCode("return {", 1000)), "SandboxSyntax")
      // validation never runs the code
      yield* sandbox.validateCode("while (true) {}", 1000)
      yield* sandbox.validateCode("return context.remoteValue", 1000, "resolver")
      expectFailure(yield* Effect.either(sandbox.validateCode("let context = 1", 1000, "resolver")), "SandboxSyntax")
    }))
})

layer(Sandbox.Default)("Sandbox resolvers", (it) => {
  const ctx = { mapName: "m", key: "k", localValue: 1, remoteValue: 2 }

  it.effect("accept / merge / reject / local", () =>
    Effect.gen(function* () {
      expect(yield* resolve("return { action: 'accept', value: context.remoteValue }", ctx)).toEqual({
        action: "accept",
        value: 2
      })
      expect(yield* resolve("return { action: 'merge', value: context.localValue + context.remoteValue }", ctx))
        .toEqual({ action: "merge", value: 3 })
      expect(yield* resolve("return { action: 'reject', reason: 'no ' + context.key }", ctx)).toEqual({
        action: "reject",
        reason: "no k"
      })
      expect(yield* resolve("return { action: 'local' }", ctx)).toEqual({ action: "local" })
      // the name `resolve` is bound, as in `function resolve(context) { ... }`
      expect(yield* resolve("return typeof resolve === 'function' ? { action: 'local' } : null", ctx)).toEqual({
        action: "local"
      })
      // a reject without a reason still rejects (fail closed)
      expect(yield* resolve("return { action: 'reject' }", ctx)).toEqual({
        action: "reject",
        reason: "Rejected by resolver"
      })
    }))

  it.effect("invalid returns, throws and limits are failures", () =>
    Effect.gen(function* () {
      for (const body of ["return 5", "return null", "return { action: 'nope' }", "return {}",
        "return { action: 'merge' }", "throw new Error('x')", "while (true) {}"]) {
        const r = yield* Effect.either(resolve(body, ctx))
        expect(Either.isLeft(r)).toBe(true)
      }
      expect(yield* resolve("return { action: 'local' }", ctx)).toEqual({ action: "local" })
    }))
})

const smallLayer = Sandbox.Default.pipe(
  Layer.provide(SandboxConfig.layer({ maxResultBytes: 1000, cacheSize: 3, timeLimitMs: 50 }))
)

layer(smallLayer)("Sandbox with a custom SandboxConfig", (it) => {
  it.effect("uses the provided limits", () =>
    Effect.gen(function* () {
      const sandbox = yield* Sandbox
      expect(sandbox.config.maxResultBytes).toBe(1000)
      const big = yield* runEither("return { value: 'x'.repeat(2000) }")
      expectFailure(big, "SandboxRuntime")
      const started = performance.now()
      expectFailure(yield* runEither("while (true) {}"), "SandboxTimeout")
      expect(performance.now() - started).toBeLessThan(500)
      yield* stillWorks
    }))

  it.effect("least recently used compiled functions are evicted", () =>
    Effect.gen(function* () {
      const sandbox = yield* Sandbox
      for (let i = 0; i < 6; i++) yield* run(`return { value: ${i} }`, undefined, undefined, `p${i}`)
      expect(sandbox.cachedCount()).toBe(3)
      expect((yield* run("return { value: 1 }", undefined, undefined, "p1")).value).toBe(1)
    }))
})

describe("SandboxConfig", () => {
  layer(Sandbox.Default)("without a SandboxConfig in context", (it) => {
    it.effect("falls back to the spec defaults", () =>
      Effect.gen(function* () {
        expect((yield* Sandbox).config).toEqual(SandboxConfig.defaults)
        expect(SandboxConfig.defaults.memoryLimitBytes).toBe(8 * 1024 * 1024)
        expect(SandboxConfig.defaults.timeLimitMs).toBe(100)
      }))
  })
})

layer(Sandbox.Default.pipe(Layer.provide(SandboxConfig.layer({ timeLimitMs: 5000 }))))("Sandbox with a long time limit", (it) => {
  it.effect("an object bomb runs into the memory cap (possibly aborting its instance) without hurting the host", () =>
    Effect.gen(function* () {
      const result = yield* runEither("let s = []; while (true) s.push({ a: 1, b: [1, 2, 3] })", undefined, undefined, "objs")
      if (Either.isRight(result)) throw new Error("expected a failure")
      expect(["SandboxMemory", "SandboxRuntime"]).toContain(result.left._tag)
      yield* stillWorks
      // and the same code compiles into a fresh instance next time
      const again = yield* runEither("let s = []; while (true) s.push({ a: 1, b: [1, 2, 3] })", undefined, undefined, "objs")
      expect(Either.isLeft(again)).toBe(true)
      yield* stillWorks
    }))
})
