/**
 * Linear-time evaluation of user-supplied patterns (protocol.md §4.9.2 `like` and `regex`).
 *
 * JavaScript's RegExp backtracks, so a pattern such as `(a+)+$` can pin the event loop for minutes on a short
 * input. Static "nested quantifier" checks miss many exponential shapes (`(a|a)*`, `(a|ab)*c`) and all the
 * polynomial ones (`%a%a%a%a` as a LIKE), so every user pattern runs on re2js, a pure-JS port of RE2/Go regexp
 * that matches in time linear in the input (automaton simulation, no backtracking).
 *
 * Semantics: the pattern is first checked with `new RegExp` (compiling is not the dangerous part; matching is),
 * so what JavaScript rejects is "invalid" exactly as for the client. It is then translated to RE2 syntax
 * (`RE2JS.translateRegExp` for `\uXXXX`, `\cX`, `[^]`, … plus the fix-ups below for JavaScript's `.`, `\s` and
 * escapes that mean a literal letter in JavaScript but an operator in RE2). Features a linear engine cannot run —
 * backreferences, lookahead, lookbehind, repeat counts above 1000 — make the pattern unusable: the leaf is
 * false, as for an invalid pattern. Remaining difference: RE2 works on code points where non-unicode JavaScript
 * works on UTF-16 code units (`^.$` matches one astral character in RE2, not in JavaScript).
 */
import { RE2JS } from "re2js"

export interface SafePattern {
  test(input: string): boolean
}

/** JavaScript's `.` without the `s` flag: anything but a line terminator. */
const JS_DOT = "[^\\n\\r\\x{2028}\\x{2029}]"
/** JavaScript's `\s` members (WhiteSpace + LineTerminator), as the inside of an RE2 class. */
const JS_SPACE_MEMBERS =
  "\\t\\n\\x{0b}\\f\\r \\x{a0}\\x{1680}\\x{2000}-\\x{200a}\\x{2028}\\x{2029}\\x{202f}\\x{205f}\\x{3000}\\x{feff}"
/**
 * Letter escapes RE2 reads as JavaScript does. Any other escaped letter is an identity escape (the letter itself)
 * in non-unicode JavaScript but an operator or an error in RE2 (`\A`, `\z`, `\Q`, `\p`, …), except `\k`, a
 * named backreference, which stays and makes RE2 refuse the pattern.
 */
const SAME_LETTER_ESCAPES = new Set(["d", "D", "w", "W", "b", "B", "n", "r", "t", "f", "v", "x", "k"])
const isAsciiLetter = (ch: string): boolean => (ch >= "a" && ch <= "z") || (ch >= "A" && ch <= "Z")

/**
 * Rewrites the output of `RE2JS.translateRegExp` so that `.`, `\s`, `\S` and the literal-letter escapes mean
 * what they mean in JavaScript.
 */
function alignWithJavaScript(re2Source: string): string {
  let out = ""
  let inClass = false
  for (let i = 0; i < re2Source.length; i++) {
    const ch = re2Source[i]!
    if (ch === "\\") {
      const next = re2Source[i + 1]
      i++
      if (next === undefined) return out + "\\" // dangling backslash: let RE2 reject it
      if (next === "s") out += inClass ? JS_SPACE_MEMBERS : `[${JS_SPACE_MEMBERS}]`
      else if (next === "S" && !inClass) out += `[^${JS_SPACE_MEMBERS}]`
      else if (next !== "S" && isAsciiLetter(next) && !SAME_LETTER_ESCAPES.has(next)) out += next
      else out += "\\" + next
      continue
    }
    if (inClass) {
      if (ch === "]") inClass = false
      out += ch
      continue
    }
    if (ch === "[") {
      inClass = true
      out += ch
      // A leading "]" (after an optional "^") is a literal in RE2 syntax; translateRegExp already rewrote the
      // JavaScript forms "[]" and "[^]", so copy it through without closing the class.
      if (re2Source[i + 1] === "^") out += re2Source[++i]
      if (re2Source[i + 1] === "]") out += "\\" + re2Source[++i]
      continue
    }
    out += ch === "." ? JS_DOT : ch
  }
  return out
}

function compileRe2(source: string, caseInsensitive: boolean): SafePattern | undefined {
  try {
    const re = RE2JS.compile(source, caseInsensitive ? RE2JS.CASE_INSENSITIVE : 0)
    return { test: (input) => re.test(input) }
  } catch {
    return undefined
  }
}

function isValidJavaScript(source: string, flags: string): boolean {
  try {
    new RegExp(source, flags)
    return true
  } catch {
    return false
  }
}

/** `new RegExp(pattern).test(v)` semantics in linear time; `undefined` when the pattern cannot be used. */
export function compileRegexPattern(pattern: string): SafePattern | undefined {
  if (!isValidJavaScript(pattern, "")) return undefined
  return compileRe2(alignWithJavaScript(RE2JS.translateRegExp(pattern) as string), false)
}

/** Characters the client escapes in a LIKE pattern. `*` and `?` are deliberately absent: they stay operators. */
const LIKE_ESCAPED = new Set([".", "+", "^", "$", "{", "}", "(", ")", "[", "]", "|", "\\"])

/**
 * SQL-like pattern, exactly as the client builds it: escape the listed metacharacters, `%` → `.*`,
 * `_` → `.`, anchored, case-insensitive. Returns `undefined` when the resulting expression is invalid
 * (e.g. `%*` becomes `.**`, which JavaScript rejects too).
 */
export function compileLikePattern(pattern: string): SafePattern | undefined {
  let js = ""
  let re2 = ""
  for (const ch of pattern) {
    if (LIKE_ESCAPED.has(ch)) {
      js += "\\" + ch
      re2 += "\\" + ch
    } else if (ch === "%") {
      js += ".*"
      re2 += JS_DOT + "*"
    } else if (ch === "_") {
      js += "."
      re2 += JS_DOT
    } else {
      js += ch
      // "*" and "?" stay operators; every other remaining character is a literal for RE2 too.
      re2 += ch
    }
  }
  if (!isValidJavaScript(`^${js}$`, "i")) return undefined
  return compileRe2(`^(?:${re2})$`, true)
}
