import { Data, Effect } from "effect"
import * as jose from "jose"
import { ServerConfig } from "./ServerConfig.js"

/** An authenticated identity: all token claims, `userId` = `sub`, roles default `["USER"]` (protocol.md §2.2). */
export interface Principal {
  readonly userId?: string
  readonly roles: ReadonlyArray<string>
  readonly claims: Readonly<Record<string, unknown>>
}

export const anonymousPrincipal: Principal = { roles: ["USER"], claims: {} }

export const DEV_JWT_SECRET = "topgun-secret-dev"

export class AuthFailed extends Data.TaggedError("AuthFailed")<{ readonly message: string }> {}

export class ConfigInvalid extends Data.TaggedError("ConfigInvalid")<{ readonly setting: string; readonly message: string }> {}

/** Maps jose error codes to the jsonwebtoken-style messages TopGun clients and logs are used to. */
const describeJoseError = (error: unknown): string => {
  if (error instanceof jose.errors.JWTExpired) return "jwt expired"
  if (error instanceof jose.errors.JWSSignatureVerificationFailed) return "invalid signature"
  if (error instanceof jose.errors.JWTClaimValidationFailed) {
    if (error.claim === "nbf") return "jwt not active"
    if (error.claim === "iss") return "jwt issuer invalid"
    if (error.claim === "aud") return "jwt audience invalid"
    return `jwt claim invalid: ${error.claim}`
  }
  if (error instanceof jose.errors.JWSInvalid || error instanceof jose.errors.JWTInvalid) return "jwt malformed"
  if (error instanceof jose.errors.JOSEAlgNotAllowed) return "invalid algorithm"
  return "Invalid token"
}

/**
 * JWT verification with `jose`: HS256 with a shared secret, or RS256 when the secret is a PEM public key.
 * Production refuses a missing, default or short secret at startup.
 */
export class Auth extends Effect.Service<Auth>()("tessera/Auth", {
  effect: Effect.gen(function* () {
    const config = yield* ServerConfig
    const secret = config.jwtSecret.replace(/\\n/g, "\n")
    const isPem = secret.includes("-----BEGIN")
    if (config.production) {
      if (config.jwtSecretIsDefault || secret === DEV_JWT_SECRET || secret.length === 0) {
        return yield* new ConfigInvalid({ setting: "JWT_SECRET", message: "JWT_SECRET must be set to a non-default secret when NODE_ENV=production" })
      }
      if (!isPem && secret.length < 32) {
        return yield* new ConfigInvalid({ setting: "JWT_SECRET", message: "JWT_SECRET must be at least 32 characters for HS256 when NODE_ENV=production" })
      }
      if (config.noAuth) {
        return yield* new ConfigInvalid({ setting: "TOPGUN_NO_AUTH", message: "no-auth mode is not allowed when NODE_ENV=production" })
      }
    } else if (config.jwtSecretIsDefault) {
      yield* Effect.logWarning(`JWT_SECRET is not set; using the development default "${DEV_JWT_SECRET}" (refused when NODE_ENV=production)`)
    }
    const key: Awaited<ReturnType<typeof jose.importSPKI>> | Uint8Array = isPem
      ? yield* Effect.tryPromise({
        try: () => jose.importSPKI(secret, "RS256"),
        catch: (e) => new ConfigInvalid({ setting: "JWT_SECRET", message: `invalid RSA public key: ${String(e)}` })
      })
      : new TextEncoder().encode(secret)
    const verifyOptions: jose.JWTVerifyOptions = {
      algorithms: [isPem ? "RS256" : "HS256"],
      ...(config.jwtIssuer !== undefined ? { issuer: config.jwtIssuer } : {}),
      ...(config.jwtAudience !== undefined ? { audience: config.jwtAudience } : {})
    }

    const verify = (token: unknown): Effect.Effect<Principal, AuthFailed> =>
      typeof token !== "string" || token.length === 0
        ? Effect.fail(new AuthFailed({ message: "jwt must be provided" }))
        : Effect.tryPromise({
          try: () => jose.jwtVerify(token, key, verifyOptions),
          catch: (e) => new AuthFailed({ message: describeJoseError(e) })
        }).pipe(Effect.map(({ payload }) => principalFromClaims(payload)))

    return { verify, noAuth: config.noAuth } as const
  })
}) {}

export const principalFromClaims = (claims: Record<string, unknown>): Principal => {
  const roles = Array.isArray(claims.roles) && claims.roles.every((r) => typeof r === "string")
    ? (claims.roles as string[])
    : ["USER"]
  return typeof claims.sub === "string" ? { userId: claims.sub, roles, claims } : { roles, claims }
}
