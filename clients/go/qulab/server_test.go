package qulab_test

// These tests call a real QuLab server at QULAB_ADDRESS: tests/interop/test_go_client.py
// starts one and runs them. Without the variable they fail rather than skip, so that a run
// which reached no server cannot pass.

import (
	"context"
	"errors"
	"io"
	"os"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	qulabv1 "qulab.dev/clients/go/gen/qulab/v1"
	"qulab.dev/clients/go/qulab"
)

const parseMolecule = "/qulab.v1.MoleculeService/ParseMolecule"

func connect(t *testing.T) *qulab.Client {
	t.Helper()
	address := os.Getenv("QULAB_ADDRESS")
	if address == "" {
		t.Fatal("QULAB_ADDRESS is not set: these tests need a running QuLab server")
	}
	client, err := qulab.NewClient(address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("NewClient(%q): %v", address, err)
	}
	t.Cleanup(func() { _ = client.Close() })
	return client
}

func context10s(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestHealthIsServing(t *testing.T) {
	client := connect(t)
	for _, service := range []string{"", "qulab.v1.MoleculeService"} {
		answer, err := client.Health.Check(context10s(t), &grpc_health_v1.HealthCheckRequest{Service: service})
		if err != nil {
			t.Fatalf("Check(%q): %v", service, err)
		}
		if answer.GetStatus() != grpc_health_v1.HealthCheckResponse_SERVING {
			t.Errorf("Check(%q) = %v, want SERVING", service, answer.GetStatus())
		}
	}
}

func TestParseMolecule(t *testing.T) {
	client := connect(t)
	answer, err := client.Molecules.ParseMolecule(context10s(t), smiles("OCC", ""))
	if err != nil {
		t.Fatalf("ParseMolecule: %v", err)
	}
	if got := answer.GetMolecule().GetCanonicalSmiles(); got != "CCO" {
		t.Errorf("canonical SMILES of OCC = %q, want CCO", got)
	}
	if answer.GetProvenance().GetRequestId() == "" {
		t.Error("provenance.request_id is empty")
	}
	if answer.GetMolecule().GetInchikey() != "LFQSCWFLJHTTHZ-UHFFFAOYSA-N" {
		t.Errorf("InChIKey of ethanol = %q", answer.GetMolecule().GetInchikey())
	}
}

// The shared service config is what the connection runs with, once it has resolved
// (before the first call it may still be empty).
func TestServiceConfigIsApplied(t *testing.T) {
	client := connect(t)
	if _, err := client.Health.Check(context10s(t), &grpc_health_v1.HealthCheckRequest{}); err != nil {
		t.Fatalf("Check: %v", err)
	}
	config := client.Conn.GetMethodConfig(parseMolecule)
	if config.Timeout == nil || *config.Timeout != 30*time.Second {
		t.Errorf("ParseMolecule timeout = %v, want 30s", config.Timeout)
	}
	policy := config.RetryPolicy
	if policy == nil {
		t.Fatal("ParseMolecule has no retry policy")
	}
	if policy.MaxAttempts != 4 {
		t.Errorf("MaxAttempts = %d, want 4", policy.MaxAttempts)
	}
	for _, code := range []codes.Code{codes.Unavailable, codes.ResourceExhausted} {
		if _, ok := policy.RetryableStatusCodes[code]; !ok {
			t.Errorf("%v is not retried", code)
		}
	}
	if _, ok := policy.RetryableStatusCodes[codes.InvalidArgument]; ok {
		t.Error("INVALID_ARGUMENT is retried")
	}
	health := client.Conn.GetMethodConfig("/grpc.health.v1.Health/Check")
	if health.Timeout == nil || *health.Timeout != 5*time.Second {
		t.Errorf("health check timeout = %v, want 5s", health.Timeout)
	}
}

func TestBadSmilesIsInvalidArgumentWithFieldViolation(t *testing.T) {
	client := connect(t)
	// Ring 1 is never closed.
	_, err := client.Molecules.ParseMolecule(context10s(t), smiles("C1CC", ""))
	if err == nil {
		t.Fatal("ParseMolecule(C1CC) succeeded")
	}
	failure, ok := status.FromError(err)
	if !ok {
		t.Fatalf("not a gRPC status: %v", err)
	}
	if failure.Code() != codes.InvalidArgument {
		t.Fatalf("code = %v, want InvalidArgument (%v)", failure.Code(), err)
	}
	var badRequest *errdetails.BadRequest
	for _, detail := range failure.Details() {
		if d, ok := detail.(*errdetails.BadRequest); ok {
			badRequest = d
		}
	}
	if badRequest == nil {
		t.Fatalf("no google.rpc.BadRequest in the details: %v", failure.Details())
	}
	assertSmilesViolation(t, badRequest)
	if !proto.Equal(qulab.BadRequest(failure), badRequest) {
		t.Error("qulab.BadRequest found another detail than status.Details")
	}
}

func TestParseMoleculesStreamKeepsOrderAndReportsErrorsPerItem(t *testing.T) {
	client := connect(t)
	inputs := []struct{ id, smiles, canonical string }{
		{"ethanol", "OCC", "CCO"},
		{"benzene", "C1=CC=CC=C1", "c1ccccc1"},
		{"broken", "C1CC", ""},
		{"acetic acid", "OC(C)=O", "CC(=O)O"},
		{"nitrogen", "N#N", "N#N"},
	}
	stream, err := client.Molecules.ParseMolecules(context10s(t))
	if err != nil {
		t.Fatalf("ParseMolecules: %v", err)
	}
	sent := make(chan error, 1)
	go func() {
		for _, input := range inputs {
			if err := stream.Send(smiles(input.smiles, input.id)); err != nil {
				sent <- err
				return
			}
		}
		sent <- stream.CloseSend()
	}()
	var answers []*qulabv1.ParseMoleculeResponse
	for {
		answer, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("Recv after %d answers: %v", len(answers), err)
		}
		answers = append(answers, answer)
	}
	if err := <-sent; err != nil {
		t.Fatalf("Send: %v", err)
	}
	if len(answers) != len(inputs) {
		t.Fatalf("%d answers to %d requests", len(answers), len(inputs))
	}
	for i, input := range inputs {
		answer := answers[i]
		if answer.GetId() != input.id {
			t.Errorf("answer %d is for %q, want %q (order lost)", i, answer.GetId(), input.id)
		}
		if answer.GetProvenance().GetRequestId() == "" {
			t.Errorf("%s: provenance.request_id is empty", input.id)
		}
		if input.canonical != "" {
			if answer.GetError() != nil {
				t.Errorf("%s: unexpected error %v", input.id, answer.GetError())
			}
			if got := answer.GetMolecule().GetCanonicalSmiles(); got != input.canonical {
				t.Errorf("%s: canonical SMILES %q, want %q", input.id, got, input.canonical)
			}
			continue
		}
		if answer.GetMolecule() != nil {
			t.Errorf("%s: has a molecule beside its error", input.id)
		}
		itemStatus := status.FromProto(answer.GetError())
		if itemStatus.Code() != codes.InvalidArgument {
			t.Fatalf("%s: item code = %v, want InvalidArgument", input.id, itemStatus.Code())
		}
		badRequest := qulab.BadRequest(itemStatus)
		if badRequest == nil {
			t.Fatalf("%s: no google.rpc.BadRequest in the item's error: %v", input.id, itemStatus.Details())
		}
		assertSmilesViolation(t, badRequest)
	}
}

func assertSmilesViolation(t *testing.T, badRequest *errdetails.BadRequest) {
	t.Helper()
	violations := badRequest.GetFieldViolations()
	if len(violations) != 1 || violations[0].GetField() != "smiles" {
		t.Fatalf("field violations = %v, want one for smiles", violations)
	}
	if violations[0].GetDescription() == "" {
		t.Error("the violation does not say what is wrong")
	}
}

func smiles(text, id string) *qulabv1.ParseMoleculeRequest {
	return &qulabv1.ParseMoleculeRequest{Input: &qulabv1.ParseMoleculeRequest_Smiles{Smiles: text}, Id: id}
}
