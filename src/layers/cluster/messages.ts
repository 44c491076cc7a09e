import { Schema } from "effect"
import { TimestampSchema } from "../../protocol/schema.js"

/**
 * Node-to-node messages (architecture.md "Seams"). A Schema union so every transport (in-memory
 * simulation, PostgreSQL change rows) encodes and validates them the same way; new subsystems add
 * members here.
 */
export const GcReport = Schema.TaggedStruct("GcReport", {
  /** Round identifier chosen by the reporting node's view of the leader epoch. */
  epoch: Schema.Number,
  minHlc: TimestampSchema
})
export const GcCommit = Schema.TaggedStruct("GcCommit", {
  epoch: Schema.Number,
  safeTimestamp: TimestampSchema
})
export const TopicPublish = Schema.TaggedStruct("TopicPublish", {
  topic: Schema.String,
  data: Schema.Unknown,
  publisherId: Schema.String
})
export const CounterState = Schema.TaggedStruct("CounterState", {
  name: Schema.String,
  p: Schema.Record({ key: Schema.String, value: Schema.Number }),
  n: Schema.Record({ key: Schema.String, value: Schema.Number })
})
export const ClusterMessage = Schema.Union(GcReport, GcCommit, TopicPublish, CounterState)
export type ClusterMessage = typeof ClusterMessage.Type
