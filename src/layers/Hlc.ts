import { Clock, Effect } from "effect"
import { HLC } from "../crdt/hlc.js"
import { ServerConfig } from "./ServerConfig.js"

/**
 * The node's hybrid logical clock. It reads Effect's `Clock`, so `TestClock` drives it in tests.
 * The HLC itself is plain code: callers on hot paths use `clock.now()` / `clock.update()` directly.
 */
export class Hlc extends Effect.Service<Hlc>()("tessera/Hlc", {
  effect: Effect.gen(function* () {
    const config = yield* ServerConfig
    const clock = yield* Effect.clock
    const hlc = new HLC(config.nodeId, () => clock.unsafeCurrentTimeMillis())
    return {
      clock: hlc,
      nodeId: config.nodeId,
      /** Wall-clock milliseconds from the same Effect clock (TestClock-aware). */
      wallMillis: (): number => clock.unsafeCurrentTimeMillis()
    } as const
  })
}) {}

export { Clock }
