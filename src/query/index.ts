/** Live-query engine: pure, synchronous evaluation of TopGun queries (protocol.md §4.9). */
export { compileQuery, type CompiledQuery, type CompileResult, type EqualityConstraint, type Scalar } from "./compile.js"
export {
  MAX_ARRAY_OPERAND,
  MAX_PATTERN_LENGTH,
  MAX_PREDICATE_DEPTH,
  MAX_PREDICATE_NODES
} from "./match.js"
export { MAX_SORT_FIELDS, type SortField } from "./sort.js"
export {
  afterCursor,
  CURSOR_TTL_MS,
  cursorStatus,
  decodeCursor,
  encodeCursor,
  MAX_CURSOR_LENGTH,
  resolveCursor,
  type CursorPosition,
  type CursorStatus,
  type ResolvedCursor
} from "./cursor.js"
export { runQuery, type QueryRunResult, type RunOptions } from "./run.js"
export { LiveQuery, type ChangeType, type QueryUpdate } from "./live.js"
export { SubscriptionIndex } from "./subscription-index.js"
export { compareSortValues, compareValues, type Row } from "./values.js"
export { compileLikePattern, compileRegexPattern, type SafePattern } from "./safe-regex.js"
export { TopK } from "./top-k.js"
export { referencedFields, unreadableFields } from "./fields.js"
