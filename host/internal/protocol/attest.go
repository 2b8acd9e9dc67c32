package protocol

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/gokbs/kbs/host/internal/jwe"
	"github.com/gokbs/kbs/host/internal/kbserr"
	"github.com/gokbs/kbs/host/internal/rcar"
	"github.com/gokbs/kbs/host/internal/session"
	"github.com/gokbs/kbs/sdk/token"
	"github.com/gokbs/kbs/sdk/verifier"
)

// Attest checks evidence against the session's challenge and returns an
// attestation token. The session's nonce is consumed first, whatever the
// outcome: a nonce is good for one attempt.
func (s *Service) Attest(ctx context.Context, sessionID string, body []byte) (string, error) {
	if sessionID == "" {
		return "", kbserr.New(kbserr.Unauthenticated, kbserr.AttestationError, "attest without a session: call /kbs/v0/auth first")
	}
	var att Attestation
	if err := json.Unmarshal(body, &att); err != nil {
		return "", kbserr.New(kbserr.Malformed, kbserr.SerdeError, "attestation is not valid JSON: %v", err)
	}
	if err := noDuplicateKeys(body, "runtime-data", "tee-evidence", "init-data"); err != nil {
		return "", kbserr.New(kbserr.Malformed, kbserr.SerdeError, "attestation: %v", err)
	}
	if err := att.check(); err != nil {
		return "", kbserr.New(kbserr.Malformed, kbserr.SerdeError, "attestation: %v", err)
	}
	if !session.ValidID(sessionID) {
		return "", kbserr.New(kbserr.Unauthenticated, kbserr.AttestationError, "unknown or expired session")
	}
	sess, err := s.Sessions.ConsumeNonce(ctx, sessionID)
	switch {
	case errors.Is(err, session.ErrNotFound):
		return "", kbserr.New(kbserr.Unauthenticated, kbserr.AttestationError, "unknown or expired session")
	case errors.Is(err, session.ErrNonceUsed):
		return "", kbserr.New(kbserr.Unauthenticated, kbserr.AttestationError, "the session's nonce was already used: start again with /kbs/v0/auth")
	case err != nil:
		return "", kbserr.New(kbserr.Unavailable, kbserr.AttestationError, "session store: %w", err)
	}
	if !constantTimeEqual(att.RuntimeData.Nonce, sess.Nonce) {
		return "", kbserr.New(kbserr.Unauthenticated, kbserr.AttestationError, "runtime-data nonce does not match the challenge")
	}
	key, err := jwe.ParseTEEPubKey(att.RuntimeData.TEEPubKey)
	if err != nil {
		return "", kbserr.New(kbserr.Malformed, kbserr.SerdeError, "runtime-data tee-pubkey: %v", err)
	}
	// The guest hashes the key as it serialised it; trustee hashes its
	// parsed form. For every key the CoCo guest sends the two are the same
	// bytes; re-marshalling drops unknown members as trustee does.
	keyJSON, err := json.Marshal(key)
	if err != nil {
		return "", kbserr.New(kbserr.Internal, kbserr.InternalError, "encoding tee-pubkey: %v", err)
	}
	submods, err := s.appraiseAll(ctx, sess, &att, keyJSON)
	if err != nil {
		return "", err
	}
	issuer, err := s.Plugins.TokenIssuer()
	if err != nil {
		return "", kbserr.From(err, kbserr.AttestationError)
	}
	issued, err := issuer.Issue(ctx, &token.IssueRequest{Submods: submods})
	if err != nil {
		return "", kbserr.From(fmt.Errorf("issuing the attestation token: %w", err), kbserr.AttestationError)
	}
	if err := s.Sessions.Attest(ctx, sess.ID, issued.Token); err != nil {
		return "", kbserr.New(kbserr.Unavailable, kbserr.AttestationError, "session store: %w", err)
	}
	if r, ok := s.Tokens.(issuedRecorder); ok {
		r.Issued(issued.Token)
	}
	return issued.Token, nil
}

// issuedRecorder is a TokenVerifier that can take the own issuer's fresh
// tokens without verifying them again (tokens.Verifier).
type issuedRecorder interface{ Issued(token string) }

func (a *Attestation) check() error {
	switch {
	case a.RuntimeData == nil:
		return errors.New("missing runtime-data")
	case a.RuntimeData.Nonce == "":
		return errors.New("missing runtime-data.nonce")
	case len(a.RuntimeData.TEEPubKey) == 0:
		return errors.New("missing runtime-data.tee-pubkey")
	case a.TEEEvidence == nil:
		return errors.New("missing tee-evidence")
	case len(a.TEEEvidence.Primary) == 0 || string(a.TEEEvidence.Primary) == "null":
		return errors.New("missing tee-evidence.primary_evidence")
	}
	return nil
}

// appraiseAll verifies the primary evidence and every additional device's,
// and appraises each into an EAR submodule.
func (s *Service) appraiseAll(ctx context.Context, sess *session.Session, att *Attestation, keyJSON json.RawMessage) (map[string]token.Appraisal, error) {
	primaryRD := rcar.Primary(sess.Nonce, keyJSON, att.TEEEvidence.Additional)
	reportData, err := primaryRD.Digest(sess.HashAlg)
	if err != nil {
		return nil, kbserr.New(kbserr.Malformed, kbserr.AttestationError, "runtime data: %v", err)
	}
	var initData *rcar.InitData
	if att.InitData != nil {
		initData, err = rcar.ParseInitData(att.InitData.Format, att.InitData.Body)
		if err != nil {
			return nil, kbserr.New(kbserr.Malformed, kbserr.AttestationError, "init-data: %v", err)
		}
	}
	pieces := []evidencePiece{{tee: sess.TEE, evidence: att.TEEEvidence.Primary, reportData: reportData, runtimeData: primaryRD}}
	if att.TEEEvidence.Additional != "" {
		extra, err := s.additionalPieces(sess, att.TEEEvidence.Additional, keyJSON)
		if err != nil {
			return nil, err
		}
		pieces = append(pieces, extra...)
	}
	submods := make(map[string]token.Appraisal, len(pieces))
	counts := map[string]int{}
	for _, p := range pieces {
		class := TEEClass(p.tee)
		name := class + strconv.Itoa(counts[class])
		counts[class]++
		a, err := s.appraiseOne(ctx, p, initData)
		if err != nil {
			return nil, err
		}
		submods[name] = a
	}
	return submods, nil
}

type evidencePiece struct {
	tee         string
	evidence    json.RawMessage
	reportData  []byte
	runtimeData rcar.RuntimeData
}

// additionalPieces parses the additional_evidence string: a JSON object of
// TEE name to evidence, each bound to the device runtime data (no
// additional-evidence member).
func (s *Service) additionalPieces(sess *session.Session, additional string, keyJSON json.RawMessage) ([]evidencePiece, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(additional), &m); err != nil {
		return nil, kbserr.New(kbserr.Malformed, kbserr.SerdeError, "tee-evidence.additional_evidence is not a JSON object string: %v", err)
	}
	deviceRD := rcar.Device(sess.Nonce, keyJSON)
	digest, err := deviceRD.Digest(sess.HashAlg)
	if err != nil {
		return nil, kbserr.New(kbserr.Malformed, kbserr.AttestationError, "runtime data: %v", err)
	}
	out := make([]evidencePiece, 0, len(m))
	for _, name := range sortedKeys(m) {
		tee, ok := CanonicalTEE(name)
		if !ok {
			return nil, kbserr.New(kbserr.Malformed, kbserr.SerdeError, "additional evidence for unknown TEE %q", name)
		}
		out = append(out, evidencePiece{tee: tee, evidence: m[name], reportData: digest, runtimeData: deviceRD})
	}
	return out, nil
}

// appraiseOne verifies one piece of evidence and runs the attestation
// policy over its claims.
func (s *Service) appraiseOne(ctx context.Context, p evidencePiece, initData *rcar.InitData) (token.Appraisal, error) {
	v, err := s.Plugins.Verifier(p.tee)
	if err != nil {
		return token.Appraisal{}, kbserr.New(kbserr.Unauthenticated, kbserr.AttestationError, "no verifier for %s evidence: %v", p.tee, err)
	}
	req := &verifier.Request{TEE: p.tee, Evidence: p.evidence, ReportData: p.reportData, HashAlgorithm: "sha384"}
	if initData != nil {
		req.InitDataDigest = initData.Digest
	}
	claims, err := v.Verify(ctx, req)
	if err != nil {
		s.observeAttestation(p.tee, "failed")
		return token.Appraisal{}, kbserr.From(fmt.Errorf("%s evidence: %w", p.tee, err), kbserr.AttestationError)
	}
	input := annotatedEvidence(p, claims, initData)
	appraisal, err := s.Appraiser.Appraise(ctx, TEEClass(p.tee), input)
	if err != nil {
		s.observeAttestation(p.tee, "failed")
		return token.Appraisal{}, kbserr.From(fmt.Errorf("attestation policy: %w", err), kbserr.AttestationError)
	}
	s.observeAttestation(p.tee, appraisal.Status)
	appraisal.AnnotatedEvidence = input
	return appraisal, nil
}

func (s *Service) observeAttestation(tee, status string) {
	if s.Observe != nil {
		s.Observe.Attestation(tee, status)
	}
}

// annotatedEvidence arranges claims as trustee's token carries them: the
// TEE's claims under its name, with report_data and init_data moved out
// beside runtime_data_claims and init_data_claims.
func annotatedEvidence(p evidencePiece, claims verifier.Claims, initData *rcar.InitData) map[string]any {
	tee := make(map[string]any, len(claims))
	out := map[string]any{}
	for k, v := range claims {
		switch k {
		case "report_data", "init_data":
			out[k] = v
		default:
			tee[k] = v
		}
	}
	out[p.tee] = tee
	// Plain values, not json.RawMessage: the policy engine reads this map.
	var key any
	_ = json.Unmarshal(p.runtimeData.TEEPubKey, &key) // our own marshalling; cannot fail
	rd := map[string]any{"nonce": p.runtimeData.Nonce, "tee-pubkey": key}
	if p.runtimeData.AdditionalEvidence != nil {
		rd["additional-evidence"] = *p.runtimeData.AdditionalEvidence
	}
	out["runtime_data_claims"] = rd
	if initData != nil {
		out["init_data_claims"] = initData.Claims()
	} else {
		out["init_data_claims"] = nil
	}
	return out
}
