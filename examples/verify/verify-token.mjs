#!/usr/bin/env node
// Checks a flotilla access token with jose, for an app that verifies tokens itself.
//
//   npm install                                   (jose 5, as package.json says)
//   node verify-token.mjs JWKS_URL ISSUER AUDIENCE TOKEN
//
// JWKS_URL is https://SITE/login/.well-known/jwks.json. Prints the claims as JSON and
// exits 0, or prints `refused: REASON` on stderr and exits 1.
import { createRemoteJWKSet, errors, jwtVerify } from 'jose';

/** Returns verify(token): the token's claims, or a jose error thrown when it is refused. */
function verifier(jwksUrl, issuer, audience) {
  // Keeps the key set for 10 minutes; a token signed by a key it lacks fetches it again.
  const keys = createRemoteJWKSet(new URL(jwksUrl));
  return async function verify(token) {
    const { payload } = await jwtVerify(token, keys, {
      algorithms: ['EdDSA'],
      issuer,
      audience,
      clockTolerance: 30, // seconds of clock skew allowed on exp and nbf
      requiredClaims: ['exp', 'iat', 'nbf', 'iss', 'aud', 'sub'],
    });
    return payload;
  };
}

function reason(err) {
  if (err instanceof errors.JWTExpired) return 'token expired';
  const claim = err instanceof errors.JWTClaimValidationFailed ? err.claim : null;
  if (claim === 'aud' && err.reason === 'check_failed') return 'wrong audience';
  return err.message; // signature, issuer, nbf, unknown kid, malformed, keys out of reach, ...
}

const args = process.argv.slice(2);
if (args.length !== 4) {
  console.error('usage: node verify-token.mjs JWKS_URL ISSUER AUDIENCE TOKEN');
  process.exit(2);
}
const [jwksUrl, issuer, audience, token] = args;
try {
  const claims = await verifier(jwksUrl, issuer, audience)(token);
  console.log(JSON.stringify(claims, null, 2));
} catch (err) {
  console.error(`refused: ${reason(err)}`);
  process.exitCode = 1;
}
