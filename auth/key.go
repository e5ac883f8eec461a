package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
)

// minRSABits refuses RSA keys that can be factored: a token signed with
// one proves nothing.
const minRSABits = 2048

// verifier is the key a token's signature is checked with and the only
// algorithms it may be checked by: binding them is what stops the
// key-confusion attacks (alg none, or HS256 "signed" with a public key).
type verifier struct {
	key     any // []byte for HMAC, else the public key type jwt expects
	methods []string
}

// secretVerifier checks HMAC tokens with secret.
func secretVerifier(secret string) verifier {
	return verifier{key: []byte(secret), methods: []string{"HS256", "HS384", "HS512"}}
}

// loadVerifier reads the PEM public key (or certificate) in path. Errors
// name the key, auth.public_key_file.
func loadVerifier(path string) (verifier, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return verifier{}, fmt.Errorf("auth.public_key_file: %w", err)
	}
	pub, err := parsePublicKey(data)
	if err != nil {
		return verifier{}, fmt.Errorf("auth.public_key_file: %s: %w", path, err)
	}
	v, err := verifierFor(pub)
	if err != nil {
		return verifier{}, fmt.Errorf("auth.public_key_file: %s: %w", path, err)
	}
	return v, nil
}

// parsePublicKey returns the key of the first PEM block in data that is a
// public key (PKIX, or PKCS #1 for RSA) or a certificate, skipping blocks
// of other types. A private key is refused rather than skipped: the file
// is meant to be shareable, and one that is not should be noticed.
func parsePublicKey(data []byte) (crypto.PublicKey, error) {
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return nil, errors.New("no PEM block of type PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE")
		}
		var pub crypto.PublicKey
		var err error
		switch block.Type {
		case "PUBLIC KEY":
			pub, err = x509.ParsePKIXPublicKey(block.Bytes)
		case "RSA PUBLIC KEY":
			pub, err = x509.ParsePKCS1PublicKey(block.Bytes)
		case "CERTIFICATE":
			var cert *x509.Certificate
			if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
				pub = cert.PublicKey
			}
		case "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "ENCRYPTED PRIVATE KEY", "OPENSSH PRIVATE KEY":
			return nil, fmt.Errorf("holds a %s: give the public key only", block.Type)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%s block: %w", block.Type, err)
		}
		return pub, nil
	}
}

// verifierFor binds a public key to the algorithms of its type.
func verifierFor(pub crypto.PublicKey) (verifier, error) {
	switch k := pub.(type) {
	case *rsa.PublicKey:
		if bits := k.N.BitLen(); bits < minRSABits {
			return verifier{}, fmt.Errorf("an RSA key of %d bits is too small; use at least %d", bits, minRSABits)
		}
		return verifier{key: k, methods: []string{"RS256", "RS384", "RS512"}}, nil
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return verifier{key: k, methods: []string{"ES256"}}, nil
		case elliptic.P384():
			return verifier{key: k, methods: []string{"ES384"}}, nil
		}
		return verifier{}, fmt.Errorf("an ECDSA key on curve %s: use P-256 (ES256) or P-384 (ES384)", k.Curve.Params().Name)
	case ed25519.PublicKey:
		return verifier{key: k, methods: []string{"EdDSA"}}, nil
	}
	return verifier{}, fmt.Errorf("a %T key: use RSA, ECDSA P-256 or P-384, or Ed25519", pub)
}
