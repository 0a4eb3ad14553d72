#!/usr/bin/env python3
"""Checks a flotilla access token with PyJWT, for an app that verifies tokens itself.

    pip install "pyjwt[crypto]"            (or Debian's python3-jwt python3-cryptography)
    python3 verify_token.py JWKS_URL ISSUER AUDIENCE TOKEN

JWKS_URL is https://SITE/login/.well-known/jwks.json. Prints the claims as JSON and exits
0, or prints `refused: REASON` on stderr and exits 1.
"""
import json
import sys

import jwt


def verifier(jwks_url, issuer, audience):
    """Returns verify(token): the token's claims, or jwt.PyJWTError when it is refused."""
    # Keeps the key set for 5 minutes; a token signed by a key it lacks fetches it again.
    keys = jwt.PyJWKClient(jwks_url)

    def verify(token):
        key = keys.get_signing_key_from_jwt(token).key  # by the kid of the token's header
        return jwt.decode(token, key, algorithms=["EdDSA"], issuer=issuer, audience=audience,
                          leeway=30,  # seconds of clock skew allowed on exp, nbf and iat
                          options={"require": ["exp", "iat", "nbf", "iss", "aud", "sub"]})

    return verify


def main():
    if len(sys.argv) != 5:
        print(f"usage: {sys.argv[0]} JWKS_URL ISSUER AUDIENCE TOKEN", file=sys.stderr)
        sys.exit(2)
    jwks_url, issuer, audience, token = sys.argv[1:]
    try:
        claims = verifier(jwks_url, issuer, audience)(token)
    except jwt.ExpiredSignatureError:
        sys.exit("refused: token expired")
    except jwt.InvalidAudienceError:
        sys.exit("refused: wrong audience")
    except jwt.PyJWTError as refusal:  # signature, issuer, nbf, unknown kid, malformed, ...
        sys.exit(f"refused: {refusal}")
    print(json.dumps(claims, indent=2))


if __name__ == "__main__":
    main()
