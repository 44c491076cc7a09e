/**
 * The Porter-1980 stemmer variant of protocol §4.10, reproduced rule for rule so that stems (and therefore
 * scores and `matchedTerms`) equal the TopGun server's.
 *
 * Why not an npm package: `stemmer` (wooorm) 2.0.1 and `porter-stemmer` 0.9.1 both implement Martin Porter's
 * revised C version (`bli→ble`, extra `logi→log`, longest-suffix-only steps 2–4), which disagrees with this
 * variant on e.g. "possibly", "analogy", "agreement" (see test/search/stem.test.ts).
 */

const A = 97
const E = 101
const I = 105
const O = 111
const U = 117
const Y = 121

const isAeiou = (c: number): boolean => c === A || c === E || c === I || c === O || c === U

/** Consonant test with the `y` rule (a `y` preceded by a consonant is a vowel), iterative over runs of `y`. */
function consonantAt(s: string, i: number): boolean {
  const c = s.charCodeAt(i)
  if (isAeiou(c)) return false
  if (c !== Y) return true
  let j = i
  while (j > 0 && s.charCodeAt(j - 1) === Y) j--
  // s[j] is the first `y` of the run: a consonant at the start or after a vowel; consonancy alternates after it.
  const firstIsConsonant = j === 0 || isAeiou(s.charCodeAt(j - 1))
  return (i - j) % 2 === 0 ? firstIsConsonant : !firstIsConsonant
}

/** m = number of vowel→consonant transitions in s[0, end). */
function measure(s: string, end: number): number {
  let m = 0
  let prevConsonant = true
  for (let i = 0; i < end; i++) {
    const c = s.charCodeAt(i)
    const consonant: boolean = isAeiou(c) ? false : c === Y ? i === 0 || !prevConsonant : true
    if (consonant && i > 0 && !prevConsonant) m++
    prevConsonant = consonant
  }
  return m
}

function hasVowel(s: string, end: number): boolean {
  let prevConsonant = true
  for (let i = 0; i < end; i++) {
    const c = s.charCodeAt(i)
    const consonant: boolean = isAeiou(c) ? false : c === Y ? i === 0 || !prevConsonant : true
    if (!consonant) return true
    prevConsonant = consonant
  }
  return false
}

function endsWithDoubleConsonant(s: string): boolean {
  const n = s.length
  return n >= 2 && s.charCodeAt(n - 1) === s.charCodeAt(n - 2) && consonantAt(s, n - 1)
}

/** consonant–vowel–consonant at the end, last not w/x/y; the outer consonant tests ignore the `y` rule. */
function endsWithCvc(s: string): boolean {
  const n = s.length
  if (n < 3) return false
  const last = s.charCodeAt(n - 1)
  return (
    !isAeiou(s.charCodeAt(n - 3)) &&
    !consonantAt(s, n - 2) &&
    !isAeiou(last) &&
    last !== 119 /* w */ &&
    last !== 120 /* x */ &&
    last !== Y
  )
}

type Rule = readonly [suffix: string, replacement: string]

const STEP2: ReadonlyArray<Rule> = [
  ["ational", "ate"], ["tional", "tion"], ["enci", "ence"], ["anci", "ance"], ["izer", "ize"],
  ["abli", "able"], ["alli", "al"], ["entli", "ent"], ["eli", "e"], ["ousli", "ous"],
  ["ization", "ize"], ["ation", "ate"], ["ator", "ate"], ["alism", "al"], ["iveness", "ive"],
  ["fulness", "ful"], ["ousness", "ous"], ["aliti", "al"], ["iviti", "ive"], ["biliti", "ble"]
]

const STEP3: ReadonlyArray<Rule> = [
  ["icate", "ic"], ["ative", ""], ["alize", "al"], ["iciti", "ic"], ["ical", "ic"], ["ful", ""], ["ness", ""]
]

const STEP4: ReadonlyArray<string> = [
  "al", "ance", "ence", "er", "ic", "able", "ible", "ant", "ement", "ment", "ent", "ion", "ou", "ism", "ate",
  "iti", "ous", "ive", "ize"
]

/** Steps 2 and 3: the first rule whose suffix matches AND whose base has m > 0 wins; failing entries are skipped. */
function replaceFirst(w: string, rules: ReadonlyArray<Rule>): string {
  for (const [suffix, replacement] of rules) {
    if (w.endsWith(suffix)) {
      const baseLength = w.length - suffix.length
      if (measure(w, baseLength) > 0) return w.slice(0, baseLength) + replacement
    }
  }
  return w
}

function step1b(w: string): string {
  // `^(.+?)(eed|ed|ing)$`: the shortest base wins, so `eed` is preferred over `ed`.
  let base: number
  if (w.length > 3 && w.endsWith("eed")) {
    base = w.length - 3
    return measure(w, base) > 0 ? w.slice(0, base) + "ee" : w
  }
  if (w.length > 2 && w.endsWith("ed")) base = w.length - 2
  else if (w.length > 3 && w.endsWith("ing")) base = w.length - 3
  else return w
  if (!hasVowel(w, base)) return w
  const s = w.slice(0, base)
  if (s.endsWith("at") || s.endsWith("bl") || s.endsWith("iz")) return s + "e"
  if (endsWithDoubleConsonant(s)) {
    const last = s.charCodeAt(s.length - 1)
    if (last !== 108 /* l */ && last !== 115 /* s */ && last !== 122 /* z */) return s.slice(0, -1)
    return s
  }
  if (measure(s, s.length) === 1 && endsWithCvc(s)) return s + "e"
  return s
}

function step4(w: string): string {
  for (const suffix of STEP4) {
    if (!w.endsWith(suffix)) continue
    const baseLength = w.length - suffix.length
    if (measure(w, baseLength) <= 1) continue
    if (suffix === "ion") {
      const before = w.charCodeAt(baseLength - 1)
      return before === 115 /* s */ || before === 116 /* t */ ? w.slice(0, baseLength) : w
    }
    return w.slice(0, baseLength)
  }
  return w
}

/** Stems one lower-case word. Words shorter than 3 are returned unchanged. */
export function stem(word: string): string {
  if (word.length < 3) return word
  let w = word
  // 1a
  if (w.endsWith("sses")) w = w.slice(0, -2)
  else if (w.endsWith("ies")) w = w.slice(0, -2)
  else if (w.endsWith("s") && !w.endsWith("ss")) w = w.slice(0, -1)
  w = step1b(w)
  // 1c
  if (w.endsWith("y") && hasVowel(w, w.length - 1)) w = w.slice(0, -1) + "i"
  w = replaceFirst(w, STEP2)
  w = replaceFirst(w, STEP3)
  w = step4(w)
  // 5a
  if (w.endsWith("e")) {
    const baseLength = w.length - 1
    const m = measure(w, baseLength)
    if (m > 1 || (m === 1 && !endsWithCvc(w.slice(0, baseLength)))) w = w.slice(0, baseLength)
  }
  // 5b
  if (w.endsWith("ll") && measure(w, w.length) > 1) w = w.slice(0, -1)
  return w
}
