/**
 * Message-level validation of a decoded frame: look up the schema by `type` (one table built once),
 * then decode with it. Much cheaper than trying a 40-member union.
 */
import { Either, ParseResult, Schema } from "effect"
import { type ClientMessage, clientMessageSchemas, type HttpSyncRequest, HttpSyncRequestSchema } from "./schema.js"

export type DecodeClientMessageResult =
  | { readonly _tag: "Ok"; readonly message: ClientMessage }
  | { readonly _tag: "Invalid"; readonly details: ReadonlyArray<string> }
  | { readonly _tag: "UnknownType"; readonly type: string }

type Decoder = (u: unknown) => Either.Either<ClientMessage, ParseResult.ParseError>

const decoders: ReadonlyMap<string, Decoder> = new Map(
  Object.entries(clientMessageSchemas).map(([type, schema]) => [
    type,
    Schema.decodeUnknownEither(schema as Schema.Schema<ClientMessage, unknown>, {
      errors: "all",
      onExcessProperty: "ignore"
    })
  ])
)

/** Whether `type` is a client → server message type this module knows. */
export function isClientMessageType(type: string): type is ClientMessage["type"] {
  return decoders.has(type)
}

/**
 * Validates a decoded frame (the `value` of `decodeFrame`). Server → client types and unknown types
 * are `UnknownType`; schema failures are `Invalid` with one `path: message` line per issue.
 */
export function decodeClientMessage(value: unknown): DecodeClientMessageResult {
  const type = typeof value === "object" && value !== null ? (value as { type?: unknown }).type : undefined
  if (typeof type !== "string") return { _tag: "Invalid", details: ["type: expected a string"] }
  const decode = decoders.get(type)
  if (decode === undefined) return { _tag: "UnknownType", type }
  const result = decode(value)
  if (Either.isRight(result)) return { _tag: "Ok", message: result.right }
  return { _tag: "Invalid", details: formatIssues(result.left) }
}

/** `path: message` lines, e.g. `payload.query.limit: expected an integral number`. */
export function formatIssues(error: ParseResult.ParseError): ReadonlyArray<string> {
  return ParseResult.ArrayFormatter.formatErrorSync(error).map((issue) =>
    issue.path.length === 0 ? issue.message : `${issue.path.map(String).join(".")}: ${issue.message}`
  )
}

const decodeHttpSync = Schema.decodeUnknownEither(HttpSyncRequestSchema, { errors: "all", onExcessProperty: "ignore" })

/** Validates a decoded `POST /sync` body (§3.12); failures → 400 `{error:"Invalid request body", details}`. */
export function decodeHttpSyncRequest(
  value: unknown
): { readonly _tag: "Ok"; readonly request: HttpSyncRequest } | { readonly _tag: "Invalid"; readonly details: ReadonlyArray<string> } {
  const result = decodeHttpSync(value)
  return Either.isRight(result)
    ? { _tag: "Ok", request: result.right }
    : { _tag: "Invalid", details: formatIssues(result.left) }
}
