/**
 * Trusted code evaluated once in every fresh QuickJS context, before any user code. It:
 *
 * 1. deep-freezes every intrinsic reachable from `globalThis` (plus the ones only reachable through syntax,
 *    like iterator and generator prototypes), so user code cannot pollute prototypes or built-ins;
 * 2. turns a few inherited data properties (`toString`, `constructor`, Error `name`/`message`, ...) into
 *    accessors so ordinary code like `err.name = "X"` still works on frozen prototypes (the "override mistake");
 * 3. makes the existing globals read-only and remembers them, and returns `reset()`, which deletes every global
 *    user code added, returning false if one cannot be removed (the host then discards the context);
 * 4. returns `compileProcessor(code)` / `compileResolver(code)`, which compile a user body with the isolate's own
 *    `Function` constructor and return an invoker that takes and returns JSON text only.
 *
 * Together this makes a cached context behave like a fresh one for every call: no state survives between
 * calls of the same cached function.
 */
export const PRELUDE = String.raw`(function () {
  "use strict";
  const { getOwnPropertyDescriptor, defineProperty, freeze, getPrototypeOf } = Object;
  const ownKeys = Reflect.ownKeys;
  const deleteProperty = Reflect.deleteProperty;
  const isArray = Array.isArray;
  const parse = JSON.parse;
  const stringify = JSON.stringify;
  const FunctionCtor = Function;

  const tame = (proto, names) => {
    for (const name of names) {
      const d = getOwnPropertyDescriptor(proto, name);
      if (!d || !("value" in d) || !d.writable || !d.configurable) continue;
      const value = d.value;
      defineProperty(proto, name, {
        configurable: false,
        enumerable: d.enumerable,
        get() { return value; },
        set(v) {
          if (this === proto) throw new TypeError("Cannot assign to read only property '" + String(name) + "'");
          if ((typeof this !== "object" && typeof this !== "function") || this === null) return;
          defineProperty(this, name, { value: v, writable: true, enumerable: true, configurable: true });
        }
      });
    }
  };
  tame(Object.prototype, ["constructor", "toString", "toLocaleString", "valueOf", "hasOwnProperty",
    "isPrototypeOf", "propertyIsEnumerable"]);
  tame(Function.prototype, ["toString"]);
  const errorCtors = ["Error", "EvalError", "RangeError", "ReferenceError", "SyntaxError", "TypeError",
    "URIError", "AggregateError", "InternalError"];
  for (const n of errorCtors) {
    const C = globalThis[n];
    if (typeof C === "function") tame(C.prototype, ["name", "message", "constructor", "toString"]);
  }

  const roots = [globalThis];
  const hidden = [
    () => getPrototypeOf(function* () {}),
    () => getPrototypeOf(async function () {}),
    () => getPrototypeOf(async function* () {}),
    () => getPrototypeOf([][Symbol.iterator]()),
    () => getPrototypeOf(new Map()[Symbol.iterator]()),
    () => getPrototypeOf(new Set()[Symbol.iterator]()),
    () => getPrototypeOf(""[Symbol.iterator]()),
    () => getPrototypeOf(/a/[Symbol.matchAll]("")),
    () => getPrototypeOf((function* () {})()),
    () => getPrototypeOf((async function* () {})()),
    () => getPrototypeOf(function () { return arguments; }())
  ];
  for (const h of hidden) { try { roots.push(h()); } catch (e) {} }
  const seen = new Set();
  const queue = roots;
  while (queue.length > 0) {
    const o = queue.pop();
    if (o === null || (typeof o !== "object" && typeof o !== "function") || seen.has(o)) continue;
    seen.add(o);
    if (o !== globalThis) { try { freeze(o); } catch (e) {} }
    queue.push(getPrototypeOf(o));
    for (const k of ownKeys(o)) {
      const d = getOwnPropertyDescriptor(o, k);
      if (d === undefined) continue;
      if ("value" in d) queue.push(d.value); else { queue.push(d.get); queue.push(d.set); }
    }
  }
  for (const k of ownKeys(globalThis)) {
    const d = getOwnPropertyDescriptor(globalThis, k);
    if ("value" in d) defineProperty(globalThis, k, { value: d.value, writable: false, enumerable: d.enumerable, configurable: false });
    else defineProperty(globalThis, k, { get: d.get, set: d.set, enumerable: d.enumerable, configurable: false });
  }
  const baseline = new Set(ownKeys(globalThis));

  const baselineCount = baseline.size;
  const reset = function () {
    // Existing globals are non-configurable, so an unchanged count means nothing was added.
    if (ownKeys(globalThis).length === baselineCount) return true;
    let clean = true;
    for (const k of ownKeys(globalThis)) {
      if (!baseline.has(k) && !deleteProperty(globalThis, k)) clean = false;
    }
    return clean;
  };

  // Returns the JSON text of { value, result }, or 0 when the processor did not return a plain object.
  const compileProcessor = function (code) {
    const fn = FunctionCtor("value", "key", "args", code);
    return function (valueJson, key, argsJson) {
      const value = valueJson === undefined ? undefined : parse(valueJson);
      const args = argsJson === undefined ? undefined : parse(argsJson);
      const out = fn(value, key, args);
      if (out === null || typeof out !== "object" || isArray(out)) return 0;
      return stringify({ value: out.value, result: out.result });
    };
  };

  // Returns the JSON text of { action, value, reason }, or 0 when the resolver did not return an object.
  const compileResolver = function (code) {
    const fn = FunctionCtor("return function resolve(context) {\n" + code + "\n}")();
    return function (contextJson) {
      const out = fn(parse(contextJson));
      if (out === null || typeof out !== "object" || isArray(out)) return 0;
      return stringify({ action: out.action, value: out.value, reason: out.reason });
    };
  };

  return freeze({ reset, compileProcessor, compileResolver });
})()`
