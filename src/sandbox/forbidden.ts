/**
 * Static forbidden-word check (protocol.md §4.13). Defence in depth and compatibility with the older
 * server's error messages; the QuickJS isolate is the actual security boundary.
 */
export const FORBIDDEN_WORDS: ReadonlyArray<string> = [
  "eval",
  "Function",
  "process",
  "global",
  "require",
  "import",
  "fetch",
  "XMLHttpRequest",
  "setTimeout",
  "setInterval",
  "setImmediate"
]

const PATTERNS: ReadonlyArray<RegExp> = FORBIDDEN_WORDS.map((word) => new RegExp(`\\b${word}\\b`))

/**
 * Returns the error text for the first forbidden pattern (in list order) found in `code`, e.g.
 * `Forbidden pattern detected: \beval\b` (the backslashes are literal), or `undefined` if the code is clean.
 */
export const findForbiddenPattern = (code: string): string | undefined => {
  for (const pattern of PATTERNS) {
    if (pattern.test(code)) return `Forbidden pattern detected: ${pattern.source}`
  }
  return undefined
}
