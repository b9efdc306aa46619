// Command noteverify checks a cosigned checkpoint with golang.org/x/mod/sumdb/note, as an
// independent implementation of C2SP signed-note and tlog-cosignature would: the log's
// Ed25519 signature through note.NewVerifier, and each witness's cosignature/v1 through a
// note.Verifier written here from the spec, with nothing of the project's code.
//
//	noteverify -log LOG_VKEY [-witness WITNESS_VKEY ...] NOTE_FILE
//
// It prints one line per signature that verified and exits 0 only when the log's signature
// and every given witness's cosignature verify; otherwise it says why and exits 1.
//
// A witness verifier key is NAME+HEX_ID+base64(0x04 || 32-byte Ed25519 public key), its id
// SHA-256(NAME || "\n" || 0x04 || key)[:4]. A cosignature's bytes (after the 4-byte id) are
// an 8-byte big-endian timestamp and an Ed25519 signature over
// "cosignature/v1\ntime <timestamp>\n" followed by the whole checkpoint body.
package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

const algCosignatureV1 = 0x04

// cosignatureVerifier is a note.Verifier for one witness's Ed25519 cosignature/v1 key.
type cosignatureVerifier struct {
	name string
	hash uint32
	key  ed25519.PublicKey
}

func (v *cosignatureVerifier) Name() string    { return v.name }
func (v *cosignatureVerifier) KeyHash() uint32 { return v.hash }

// Verify checks sig (timestamp || Ed25519 signature) over the cosigned message built from
// msg, the note's text: its body, final newline included.
func (v *cosignatureVerifier) Verify(msg, sig []byte) bool {
	if len(sig) != 8+ed25519.SignatureSize {
		return false
	}
	timestamp := binary.BigEndian.Uint64(sig[:8])
	// The spec forbids a zero timestamp from a witness, and one above 2^63 - 1.
	if timestamp == 0 || timestamp > 1<<63-1 {
		return false
	}
	var signed bytes.Buffer
	signed.WriteString("cosignature/v1\n")
	signed.WriteString("time " + strconv.FormatUint(timestamp, 10) + "\n")
	signed.Write(msg)
	return ed25519.Verify(v.key, signed.Bytes(), sig[8:])
}

func newCosignatureVerifier(vkey string) (*cosignatureVerifier, error) {
	parts := strings.SplitN(vkey, "+", 3)
	if len(parts) != 3 {
		return nil, errors.New("a witness key is NAME+ID+KEY")
	}
	name, hexID, b64 := parts[0], parts[1], parts[2]
	if name == "" || strings.ContainsAny(name, " \t\n") {
		return nil, errors.New("bad witness name")
	}
	id, err := hex.DecodeString(hexID)
	if err != nil || len(id) != 4 {
		return nil, errors.New("a witness key id is 8 hex digits")
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(raw) != 1+ed25519.PublicKeySize || raw[0] != algCosignatureV1 {
		return nil, errors.New("not an Ed25519 cosignature/v1 key (type byte 0x04)")
	}
	sum := sha256.Sum256(append([]byte(name+"\n"), raw...))
	if !bytes.Equal(sum[:4], id) {
		return nil, errors.New("the key id does not match the name and key")
	}
	return &cosignatureVerifier{
		name: name,
		hash: binary.BigEndian.Uint32(id),
		key:  ed25519.PublicKey(raw[1:]),
	}, nil
}

type repeated []string

func (r *repeated) String() string     { return strings.Join(*r, ",") }
func (r *repeated) Set(v string) error { *r = append(*r, v); return nil }

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "noteverify: "+format+"\n", args...)
	os.Exit(1)
}

func main() {
	logKey := flag.String("log", "", "the log's note verifier key")
	var witnessKeys repeated
	flag.Var(&witnessKeys, "witness", "a witness's cosignature/v1 verifier key (repeatable)")
	flag.Parse()
	if *logKey == "" || flag.NArg() != 1 {
		fail("usage: noteverify -log VKEY [-witness VKEY ...] NOTE_FILE")
	}
	msg, err := os.ReadFile(flag.Arg(0))
	if err != nil {
		fail("%v", err)
	}
	logVerifier, err := note.NewVerifier(*logKey)
	if err != nil {
		fail("log key: %v", err)
	}
	verifiers := []note.Verifier{logVerifier}
	for _, vkey := range witnessKeys {
		v, err := newCosignatureVerifier(vkey)
		if err != nil {
			fail("witness key %q: %v", vkey, err)
		}
		verifiers = append(verifiers, v)
	}
	n, err := note.Open(msg, note.VerifierList(verifiers...))
	if err != nil {
		fail("%v", err)
	}
	verified := map[string]bool{}
	for _, sig := range n.Sigs {
		fmt.Printf("verified %s+%08x\n", sig.Name, sig.Hash)
		verified[fmt.Sprintf("%s+%08x", sig.Name, sig.Hash)] = true
	}
	for _, v := range verifiers {
		id := fmt.Sprintf("%s+%08x", v.Name(), v.KeyHash())
		if !verified[id] {
			fail("no signature by %s", id)
		}
	}
	fmt.Println("ok")
}
