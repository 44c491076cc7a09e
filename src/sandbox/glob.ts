/**
 * Resolver `keyPattern` matching (protocol.md §4.13): `*` matches any run of characters (including none),
 * `?` exactly one character, everything else literally; the pattern must cover the whole key.
 * Characters are UTF-16 code units. Iterative with single-star backtracking: O(|pattern| * |key|) worst case,
 * no regular expressions (so no ReDoS from user-supplied patterns).
 */
export const keyPatternMatches = (pattern: string, key: string): boolean => {
  let p = 0
  let k = 0
  let starP = -1 // position in pattern just after the last `*` seen
  let starK = 0 // key position that `*` is currently assumed to extend to
  const pLen = pattern.length
  const kLen = key.length
  while (k < kLen) {
    const pc = p < pLen ? pattern.charCodeAt(p) : -1
    if (pc === 42 /* * */) {
      starP = ++p
      starK = k
    } else if (pc === 63 /* ? */ || (pc !== -1 && pc === key.charCodeAt(k))) {
      p++
      k++
    } else if (starP !== -1) {
      // Let the last `*` swallow one more character and retry from there.
      p = starP
      k = ++starK
    } else {
      return false
    }
  }
  while (p < pLen && pattern.charCodeAt(p) === 42) p++
  return p === pLen
}
