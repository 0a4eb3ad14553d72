// Command verify_token checks a flotilla access token with Go's standard library only,
// for an app that verifies tokens itself.
//
//	go run verify_token.go JWKS_URL ISSUER AUDIENCE TOKEN
//
// JWKS_URL is https://SITE/login/.well-known/jwks.json. Prints the claims as JSON and
// exits 0, or prints `refused: REASON` on stderr and exits 1.
package main

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

const leeway = 30 // seconds of clock skew allowed on exp and nbf

var b64 = base64.RawURLEncoding // JWT parts and JWK members: base64url without padding

// Verifier checks tokens signed by one login service. It keeps the service's public keys
// for 5 minutes, and fetches them again sooner when a token names a key it lacks.
type Verifier struct {
	JWKSURL, Issuer, Audience string

	mu      sync.Mutex
	keys    map[string]ed25519.PublicKey
	fetched time.Time
}

// Verify returns the token's claims, or an error that says why the token is refused.
func (v *Verifier) Verify(token string) (map[string]any, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, errors.New("malformed token: not three dot-separated parts")
	}
	var header struct{ Alg, Kid string }
	if err := decodePart(parts[0], &header); err != nil {
		return nil, errors.New("malformed header")
	}
	if header.Alg != "EdDSA" {
		return nil, fmt.Errorf("algorithm %q not allowed", header.Alg)
	}
	key, err := v.key(header.Kid)
	if err != nil {
		return nil, err
	}
	sig, err := b64.DecodeString(parts[2])
	if err != nil || !ed25519.Verify(key, []byte(parts[0]+"."+parts[1]), sig) {
		return nil, errors.New("bad signature")
	}

	var c struct { // a claim of the wrong JSON type fails to decode, as malformed
		Iss, Sub      string
		Aud           json.RawMessage // a string, or an array of strings
		Exp, Nbf, Iat *float64        // seconds since 1970
	}
	if err := decodePart(parts[1], &c); err != nil {
		return nil, errors.New("malformed claims")
	}
	required := []struct {
		name    string
		present bool
	}{{"exp", c.Exp != nil}, {"nbf", c.Nbf != nil}, {"iat", c.Iat != nil},
		{"iss", c.Iss != ""}, {"sub", c.Sub != ""}, {"aud", c.Aud != nil}}
	for _, claim := range required {
		if !claim.present {
			return nil, fmt.Errorf("missing claim %q", claim.name)
		}
	}
	now := float64(time.Now().UnixNano()) / 1e9
	switch {
	case now > *c.Exp+leeway:
		return nil, errors.New("token expired")
	case now < *c.Nbf-leeway:
		return nil, errors.New("token not valid yet (nbf)")
	case c.Iss != v.Issuer:
		return nil, fmt.Errorf("wrong issuer %q", c.Iss)
	case !hasAudience(c.Aud, v.Audience):
		return nil, fmt.Errorf("wrong audience %s", c.Aud)
	}
	var claims map[string]any // every claim, numbers kept as they were written
	payload, _ := b64.DecodeString(parts[1])
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	return claims, dec.Decode(&claims)
}

// key returns the public key named kid, fetching the key set when it is old or lacks kid.
func (v *Verifier) key(kid string) (ed25519.PublicKey, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	age := time.Since(v.fetched)
	if _, known := v.keys[kid]; age > 5*time.Minute || (!known && age > 30*time.Second) {
		keys, err := fetchKeys(v.JWKSURL)
		if err != nil {
			return nil, fmt.Errorf("cannot fetch the keys: %w", err)
		}
		v.keys, v.fetched = keys, time.Now()
	}
	if key, ok := v.keys[kid]; ok {
		return key, nil
	}
	return nil, fmt.Errorf("unknown key id %q", kid)
}

// fetchKeys reads a JWKS and keeps its Ed25519 signing keys by kid.
func fetchKeys(url string) (map[string]ed25519.PublicKey, error) {
	client := http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s answered %s", url, resp.Status)
	}
	var set struct {
		Keys []struct{ Kty, Crv, Kid, X, Use string }
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&set); err != nil {
		return nil, err
	}
	keys := map[string]ed25519.PublicKey{}
	for _, k := range set.Keys {
		x, err := b64.DecodeString(k.X)
		if k.Kty == "OKP" && k.Crv == "Ed25519" && k.Kid != "" && (k.Use == "" || k.Use == "sig") &&
			err == nil && len(x) == ed25519.PublicKeySize {
			keys[k.Kid] = ed25519.PublicKey(x)
		}
	}
	return keys, nil
}

func decodePart(part string, into any) error {
	raw, err := b64.DecodeString(part)
	if err != nil {
		return err
	}
	return json.Unmarshal(raw, into)
}

func hasAudience(aud json.RawMessage, want string) bool {
	var one string
	if json.Unmarshal(aud, &one) == nil {
		return one == want
	}
	var many []string
	if json.Unmarshal(aud, &many) == nil {
		for _, a := range many {
			if a == want {
				return true
			}
		}
	}
	return false
}

func main() {
	if len(os.Args) != 5 {
		fmt.Fprintln(os.Stderr, "usage: go run verify_token.go JWKS_URL ISSUER AUDIENCE TOKEN")
		os.Exit(2)
	}
	v := &Verifier{JWKSURL: os.Args[1], Issuer: os.Args[2], Audience: os.Args[3]}
	claims, err := v.Verify(os.Args[4])
	if err != nil {
		fmt.Fprintln(os.Stderr, "refused:", err)
		os.Exit(1)
	}
	out, _ := json.MarshalIndent(claims, "", "  ") // claims decoded from JSON encode again
	fmt.Println(string(out))
}
