/**
 * The wire protocol (protocol.md): message schemas, frame codec, inbound BATCH envelope, op
 * validation. Knows nothing about services.
 */
export * from "./schema.js"
export * from "./codec.js"
export * from "./batch.js"
export * from "./client-op.js"
export * from "./decode.js"
