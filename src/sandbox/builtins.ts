/**
 * Built-in entry processors (behavior.md §3.21) and built-in conflict resolvers (behavior.md §3.22),
 * as plain TypeScript.
 *
 * Processors: the TopGun client sends its built-ins as ordinary `{ name, code, args }`, and the spec says the
 * server treats them like any other processor. `code` below is the processor body for each built-in;
 * `run` is a TypeScript transcription of exactly that body. The sandbox may use `run` as a fast path only when
 * both the name and the (line-trimmed) code match, so the outcome is what QuickJS would compute; a `run` that
 * throws means "not sure" and the caller falls back to QuickJS (which also yields QuickJS's exact error text,
 * and sloppy-mode semantics for e.g. assignments to primitives).
 *
 * Resolvers: server-side configuration only (not registrable over the wire), keyed by their `builtin:*` name.
 */
import type { Timestamp } from "../crdt/types.js"
import type { ProcessorOutput, ResolverContext, ResolverResult } from "./types.js"

// ---------------------------------------------------------------------------------------------------------------
// Entry processors

/* eslint-disable @typescript-eslint/no-explicit-any -- these transcribe untyped JS processor bodies */
export interface BuiltinProcessor {
  /** `builtin:<lowercase>` */
  readonly name: string
  /** Processor body, as sent by the client. */
  readonly code: string
  /** Same semantics as `code` on JSON inputs (`value` is a private deep copy; it may be mutated). */
  readonly run: (value: any, key: string, args: any) => ProcessorOutput
}

/** Signals "the transcription might diverge here; run the real code in QuickJS instead". */
class NotCovered extends Error {}

const UNSAFE_PROPERTY_NAMES = new Set(["__proto__", "constructor", "prototype"])

/** Reads `obj[part]` only when that is plainly an own data property (or absent): never walks into prototypes. */
const ownSlot = (obj: any, part: string): any => {
  if (obj === null || (typeof obj !== "object") || UNSAFE_PROPERTY_NAMES.has(part)) throw new NotCovered()
  if (Object.prototype.hasOwnProperty.call(obj, part)) return obj[part]
  if (part in obj) throw new NotCovered() // inherited (e.g. "toString", "length" of a string): leave to QuickJS
  return undefined
}

const isSpreadable = (v: unknown): boolean =>
  v === undefined || v === null || (typeof v === "object" && !Array.isArray(v))

const sameJson = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b)

const processor = (
  upperName: string,
  code: string,
  run: (value: any, key: string, args: any) => ProcessorOutput
): readonly [string, BuiltinProcessor] => {
  const name = `builtin:${upperName.toLowerCase()}`
  return [name, { name, code, run }]
}

export const BUILTIN_PROCESSORS: ReadonlyMap<string, BuiltinProcessor> = new Map([
  processor(
    "INCREMENT",
    `
      const current = value ?? 0;
      const newValue = current + args;
      return { value: newValue, result: newValue };
    `,
    (value, _key, args) => {
      const newValue = (value ?? 0) + args
      return { value: newValue, result: newValue }
    }
  ),
  processor(
    "DECREMENT",
    `
      const current = value ?? 0;
      const newValue = current - args;
      return { value: newValue, result: newValue };
    `,
    (value, _key, args) => {
      const newValue = (value ?? 0) - args
      return { value: newValue, result: newValue }
    }
  ),
  processor(
    "DECREMENT_FLOOR",
    `
      const current = value ?? 0;
      const target = current - args;
      const newValue = Math.max(0, target);
      return {
        value: newValue,
        result: { newValue, wasFloored: target < 0 }
      };
    `,
    (value, _key, args) => {
      const target = (value ?? 0) - args
      const newValue = Math.max(0, target)
      return { value: newValue, result: { newValue, wasFloored: target < 0 } }
    }
  ),
  processor(
    "MULTIPLY",
    `
      const current = value ?? 1;
      const newValue = current * args;
      return { value: newValue, result: newValue };
    `,
    (value, _key, args) => {
      const newValue = (value ?? 1) * args
      return { value: newValue, result: newValue }
    }
  ),
  processor(
    "PUT_IF_ABSENT",
    `
      if (value !== undefined && value !== null) {
        return { value, result: false };
      }
      return { value: args, result: true };
    `,
    (value, _key, args) =>
      value !== undefined && value !== null ? { value, result: false } : { value: args, result: true }
  ),
  processor(
    "REPLACE",
    `
      const oldValue = value;
      return { value: args, result: oldValue };
    `,
    (value, _key, args) => ({ value: args, result: value })
  ),
  processor(
    "REPLACE_IF_EQUALS",
    `
      if (JSON.stringify(value) === JSON.stringify(args.expected)) {
        return { value: args.newValue, result: true };
      }
      return { value, result: false };
    `,
    (value, _key, args) => {
      const expected = ownSlot(args, "expected")
      return sameJson(value, expected) ? { value: ownSlot(args, "newValue"), result: true } : { value, result: false }
    }
  ),
  processor(
    "DELETE_IF_EQUALS",
    `
      if (JSON.stringify(value) === JSON.stringify(args)) {
        return { value: undefined, result: true };
      }
      return { value, result: false };
    `,
    (value, _key, args) => (sameJson(value, args) ? { value: undefined, result: true } : { value, result: false })
  ),
  processor(
    "ARRAY_PUSH",
    `
      const arr = value ?? [];
      arr.push(args);
      return { value: arr, result: arr.length };
    `,
    (value, _key, args) => {
      const arr = value ?? []
      if (!Array.isArray(arr)) throw new NotCovered()
      arr.push(args)
      return { value: arr, result: arr.length }
    }
  ),
  processor(
    "ARRAY_POP",
    `
      if (!value || value.length === 0) {
        return { value: value ?? [], result: undefined };
      }
      const arr = [...value];
      const popped = arr.pop();
      return { value: arr, result: popped };
    `,
    (value) => {
      if (!Array.isArray(value) && value) throw new NotCovered()
      if (!value || value.length === 0) return { value: value ?? [], result: undefined }
      const arr = [...value]
      const popped = arr.pop()
      return { value: arr, result: popped }
    }
  ),
  processor(
    "ARRAY_REMOVE",
    `
      if (!value) {
        return { value: [], result: false };
      }
      const idx = value.findIndex(v => JSON.stringify(v) === JSON.stringify(args));
      if (idx === -1) {
        return { value, result: false };
      }
      const arr = [...value];
      arr.splice(idx, 1);
      return { value: arr, result: true };
    `,
    (value, _key, args) => {
      if (!value) return { value: [], result: false }
      if (!Array.isArray(value)) throw new NotCovered()
      const idx = value.findIndex((v) => sameJson(v, args))
      if (idx === -1) return { value, result: false }
      const arr = [...value]
      arr.splice(idx, 1)
      return { value: arr, result: true }
    }
  ),
  processor(
    "SET_PROPERTY",
    `
      const obj = value ?? {};
      const parts = args.path.split('.');
      let current = obj;
      for (let i = 0; i < parts.length - 1; i++) {
        current[parts[i]] = current[parts[i]] ?? {};
        current = current[parts[i]];
      }
      current[parts[parts.length - 1]] = args.value;
      return { value: obj, result: obj };
    `,
    (value, _key, args) => {
      const obj = value ?? {}
      const path = ownSlot(args, "path")
      if (typeof path !== "string") throw new NotCovered()
      const parts = path.split(".")
      let current = obj
      for (let i = 0; i < parts.length - 1; i++) {
        const next = ownSlot(current, parts[i]!) ?? {}
        current[parts[i]!] = next
        current = next
      }
      const last = parts[parts.length - 1]!
      ownSlot(current, last) // guards the final assignment too
      current[last] = ownSlot(args, "value")
      return { value: obj, result: obj }
    }
  ),
  processor(
    "DELETE_PROPERTY",
    `
      if (!value) return { value, result: false };
      const parts = args.split('.');
      let current = value;
      for (let i = 0; i < parts.length - 1; i++) {
        if (!current[parts[i]]) return { value, result: false };
        current = current[parts[i]];
      }
      const lastPart = parts[parts.length - 1];
      const existed = lastPart in current;
      delete current[lastPart];
      return { value, result: existed };
    `,
    (value, _key, args) => {
      if (!value) return { value, result: false }
      if (typeof args !== "string") throw new NotCovered()
      const parts = args.split(".")
      let current = value
      for (let i = 0; i < parts.length - 1; i++) {
        const next = ownSlot(current, parts[i]!)
        if (!next) return { value, result: false }
        current = next
      }
      const lastPart = parts[parts.length - 1]!
      ownSlot(current, lastPart) // objects only, own properties only
      const existed = Object.prototype.hasOwnProperty.call(current, lastPart)
      if (Array.isArray(current) && lastPart === "length") throw new NotCovered()
      delete current[lastPart]
      return { value, result: existed }
    }
  ),
  processor(
    "GET",
    `
      return { value, result: value };
    `,
    (value) => ({ value, result: value })
  ),
  processor(
    "CONDITIONAL_UPDATE",
    `
      if (JSON.stringify(value) === JSON.stringify(args.expected)) {
        return { value: args.newValue, result: { updated: true, previous: value } };
      }
      return { value, result: { updated: false, current: value } };
    `,
    (value, _key, args) => {
      const expected = ownSlot(args, "expected")
      return sameJson(value, expected)
        ? { value: ownSlot(args, "newValue"), result: { updated: true, previous: value } }
        : { value, result: { updated: false, current: value } }
    }
  ),
  processor(
    "MERGE",
    `
      const current = value ?? {};
      const merged = { ...current, ...args };
      return { value: merged, result: merged };
    `,
    (value, _key, args) => {
      // Spreading primitives differs between engines (QuickJS skips string indices): leave those to QuickJS.
      if (!isSpreadable(value) || !isSpreadable(args)) throw new NotCovered()
      const merged = { ...(value ?? {}), ...args }
      return { value: merged, result: merged }
    }
  )
])
/* eslint-enable @typescript-eslint/no-explicit-any */

/** Indentation-insensitive form of a processor body (line breaks are kept: they matter for ASI). */
export const normalizeProcessorCode = (code: string): string => {
  const lines = code.split(/\r\n|\r|\n/)
  const kept: Array<string> = []
  for (const line of lines) {
    const trimmed = line.trim()
    if (trimmed.length > 0) kept.push(trimmed)
  }
  return kept.join("\n")
}

const NORMALIZED_CODE: ReadonlyMap<string, string> = new Map(
  Array.from(BUILTIN_PROCESSORS.values(), (p) => [p.name, normalizeProcessorCode(p.code)] as const)
)

/** The built-in whose name and body both match, if any. */
export const matchBuiltinProcessor = (name: string, code: string): BuiltinProcessor | undefined => {
  const expected = NORMALIZED_CODE.get(name)
  if (expected === undefined || normalizeProcessorCode(code) !== expected) return undefined
  return BUILTIN_PROCESSORS.get(name)
}

/**
 * Runs a matched built-in on a private deep copy of `value`. `undefined` means "not covered, run the code in
 * QuickJS"; the caller still pushes the output through the JSON boundary (NaN → null, undefined → absent).
 */
export const runBuiltinProcessor = (
  builtin: BuiltinProcessor,
  value: unknown,
  key: string,
  args: unknown
): ProcessorOutput | undefined => {
  try {
    const copy = value === undefined ? undefined : JSON.parse(JSON.stringify(value))
    const argsCopy = args === undefined ? undefined : JSON.parse(JSON.stringify(args))
    return builtin.run(copy, key, argsCopy)
  } catch {
    return undefined
  }
}

// ---------------------------------------------------------------------------------------------------------------
// Conflict resolvers

export interface BuiltinResolver {
  readonly name: string
  readonly priority: number
  readonly resolve: (context: ResolverContext) => ResolverResult
}

const collator = new Intl.Collator("en")

/** HLC total order (protocol.md §4.1.2). */
const compareTimestamps = (a: Timestamp, b: Timestamp): number =>
  a.millis !== b.millis
    ? a.millis - b.millis
    : a.counter !== b.counter
    ? a.counter - b.counter
    : collator.compare(a.nodeId, b.nodeId)

const ACCEPT_REMOTE = (context: ResolverContext): ResolverResult => ({ action: "accept", value: context.remoteValue })
const LOCAL: ResolverResult = { action: "local" }
const reject = (reason: string): ResolverResult => ({ action: "reject", reason })

const hasLocalValue = (context: ResolverContext): boolean =>
  context.localValue !== undefined && context.localValue !== null

const isPlainObject = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v)

const field = (v: unknown, name: string): unknown =>
  isPlainObject(v) && Object.prototype.hasOwnProperty.call(v, name) ? v[name] : undefined

/** Own-property define, so keys like "__proto__" stay plain data. */
const setOwn = (target: Record<string, unknown>, k: string, v: unknown): void => {
  Object.defineProperty(target, k, { value: v, writable: true, enumerable: true, configurable: true })
}

const deepMerge = (local: Record<string, unknown>, remote: Record<string, unknown>): Record<string, unknown> => {
  const out: Record<string, unknown> = {}
  for (const k of Object.keys(local)) setOwn(out, k, local[k])
  for (const k of Object.keys(remote)) {
    const l = Object.prototype.hasOwnProperty.call(out, k) ? out[k] : undefined
    const r = remote[k]
    setOwn(out, k, isPlainObject(l) && isPlainObject(r) ? deepMerge(l, r) : r)
  }
  return out
}

/** Duplicates: primitives by SameValueZero, objects/arrays by JSON text. */
const arrayUnion = (left: ReadonlyArray<unknown>, right: ReadonlyArray<unknown>): Array<unknown> => {
  const primitives = new Set<unknown>()
  const objects = new Set<string>()
  const out: Array<unknown> = []
  for (const item of [...left, ...right]) {
    if (typeof item === "object" && item !== null) {
      const text = JSON.stringify(item)
      if (objects.has(text)) continue
      objects.add(text)
    } else {
      if (primitives.has(item)) continue
      primitives.add(item)
    }
    out.push(item)
  }
  return out
}

const isNumber = (v: unknown): v is number => typeof v === "number" && !Number.isNaN(v)

const numericMerge = (pick: (a: number, b: number) => number, absent: number) => (context: ResolverContext): ResolverResult => {
  // A non-numeric remote value (including a deletion) is not ours to judge: fall through.
  if (!isNumber(context.remoteValue)) return LOCAL
  const local = isNumber(context.localValue) ? context.localValue : absent
  return { action: "merge", value: pick(local, context.remoteValue) }
}

const resolver = (
  name: string,
  priority: number,
  resolve: (context: ResolverContext) => ResolverResult
): readonly [string, BuiltinResolver] => [name, { name, priority, resolve }]

export const BUILTIN_RESOLVERS: ReadonlyMap<string, BuiltinResolver> = new Map([
  resolver("builtin:lww", 0, (context) =>
    context.localTimestamp === undefined || compareTimestamps(context.remoteTimestamp, context.localTimestamp) > 0
      ? ACCEPT_REMOTE(context)
      : LOCAL),
  resolver("builtin:first_write_wins", 100, (context) =>
    hasLocalValue(context) ? reject("Entry already exists") : ACCEPT_REMOTE(context)),
  resolver("builtin:immutable", 100, (context) =>
    hasLocalValue(context) ? reject("Entry is immutable") : ACCEPT_REMOTE(context)),
  resolver("builtin:server_only", 100, (context) => {
    const roles = field(context.auth, "roles")
    const isServer = (Array.isArray(roles) && roles.includes("server")) ||
      (typeof context.remoteNodeId === "string" && context.remoteNodeId.startsWith("server:"))
    return isServer ? ACCEPT_REMOTE(context) : reject("Only server can write to this entry")
  }),
  resolver("builtin:owner_only", 95, (context) => {
    if (!hasLocalValue(context)) return ACCEPT_REMOTE(context)
    const ownerId = field(context.localValue, "ownerId")
    if (ownerId === undefined || ownerId === null) return ACCEPT_REMOTE(context)
    return ownerId === field(context.auth, "userId") ? ACCEPT_REMOTE(context) : reject("Only owner can modify this entry")
  }),
  resolver("builtin:non_negative", 90, (context) =>
    typeof context.remoteValue === "number" && context.remoteValue >= 0
      ? ACCEPT_REMOTE(context)
      : reject("Value cannot be negative")),
  resolver("builtin:version_increment", 90, (context) => {
    const localVersion = field(context.localValue, "version")
    const expected = ((localVersion ?? 0) as number) + 1
    const got = field(context.remoteValue, "version")
    return got === expected ? ACCEPT_REMOTE(context) : reject(`Version conflict: expected ${expected}, got ${String(got)}`)
  }),
  resolver("builtin:numeric_min", 50, numericMerge(Math.min, Number.POSITIVE_INFINITY)),
  resolver("builtin:numeric_max", 50, numericMerge(Math.max, Number.NEGATIVE_INFINITY)),
  resolver("builtin:array_union", 50, (context) => {
    if (!Array.isArray(context.remoteValue)) return LOCAL
    const local = Array.isArray(context.localValue) ? context.localValue : []
    return { action: "merge", value: arrayUnion(local, context.remoteValue) }
  }),
  resolver("builtin:deep_merge", 50, (context) => {
    if (!isPlainObject(context.remoteValue)) return LOCAL
    const local = context.localValue
    return { action: "merge", value: isPlainObject(local) ? deepMerge(local, context.remoteValue) : context.remoteValue }
  })
])
