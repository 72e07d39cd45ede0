package qulab_test

// The shared service config at work: a stand-in MoleculeService on loopback answers the
// first calls with the codes a test gives it, so a test can count the client's attempts.
// QuLab itself cannot be made to fail on cue; these tests need no QULAB_ADDRESS.

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	qulabv1 "qulab.dev/clients/go/gen/qulab/v1"
	"qulab.dev/clients/go/qulab"
)

type scriptedMolecules struct {
	qulabv1.UnimplementedMoleculeServiceServer
	failures []codes.Code // the answers to the first calls, in order; then success
	calls    atomic.Int32
	deadline atomic.Pointer[time.Time] // of the last call; nil if it had none
}

func (s *scriptedMolecules) ParseMolecule(ctx context.Context, request *qulabv1.ParseMoleculeRequest) (*qulabv1.ParseMoleculeResponse, error) {
	call := int(s.calls.Add(1))
	if deadline, ok := ctx.Deadline(); ok {
		s.deadline.Store(&deadline)
	} else {
		s.deadline.Store(nil)
	}
	if call <= len(s.failures) {
		return nil, status.Errorf(s.failures[call-1], "scripted failure %d", call)
	}
	return &qulabv1.ParseMoleculeResponse{Id: request.GetId()}, nil
}

// serve starts the stand-in and returns a client connection to it with opts.
func serve(t *testing.T, molecules *scriptedMolecules, opts ...grpc.DialOption) qulabv1.MoleculeServiceClient {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	server := grpc.NewServer()
	qulabv1.RegisterMoleculeServiceServer(server, molecules)
	go func() { _ = server.Serve(listener) }()
	t.Cleanup(server.Stop)
	opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	conn, err := grpc.NewClient(listener.Addr().String(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return qulabv1.NewMoleculeServiceClient(conn)
}

// parse calls ParseMolecule with no deadline of its own (the test's timeout bounds it).
func parse(t *testing.T, client qulabv1.MoleculeServiceClient) error {
	_, err := client.ParseMolecule(t.Context(), smiles("CCO", "x"))
	return err
}

func TestEmbeddedServiceConfigIsTheSharedFile(t *testing.T) {
	shared, err := os.ReadFile("../../service_config.json")
	if err != nil {
		t.Fatal(err)
	}
	if string(shared) != qulab.ServiceConfig {
		t.Fatal("qulab/service_config.json differs from clients/service_config.json: run `make proto`")
	}
	if !json.Valid(shared) {
		t.Fatal("clients/service_config.json is not JSON")
	}
}

func TestServiceConfigParses(t *testing.T) {
	// grpc.NewClient refuses a default service config it cannot parse...
	broken := grpc.WithDefaultServiceConfig(`{"methodConfig": [{"retryPolicy": {"maxAttempts": "many"}}]}`)
	if conn, err := grpc.NewClient("passthrough:///nowhere", broken, grpc.WithTransportCredentials(insecure.NewCredentials())); err == nil {
		_ = conn.Close()
		t.Fatal("grpc.NewClient accepted a broken service config; this test proves nothing")
	}
	// ...and accepts the shared one.
	client, err := qulab.NewClient("passthrough:///nowhere", grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("the shared service config does not parse: %v", err)
	}
	_ = client.Close()
}

func TestUnavailableAndResourceExhaustedAreRetried(t *testing.T) {
	molecules := &scriptedMolecules{failures: []codes.Code{codes.Unavailable, codes.ResourceExhausted}}
	client := serve(t, molecules, qulab.DialOptions()...)
	if err := parse(t, client); err != nil {
		t.Fatalf("ParseMolecule failed despite the retry policy: %v", err)
	}
	if got := molecules.calls.Load(); got != 3 {
		t.Errorf("%d attempts, want 3", got)
	}
}

func TestWithoutTheServiceConfigNothingIsRetried(t *testing.T) {
	molecules := &scriptedMolecules{failures: []codes.Code{codes.Unavailable}}
	client := serve(t, molecules)
	if err := parse(t, client); status.Code(err) != codes.Unavailable {
		t.Fatalf("err = %v, want Unavailable", err)
	}
	if got := molecules.calls.Load(); got != 1 {
		t.Errorf("%d attempts, want 1", got)
	}
}

func TestDefaultTimeoutIsSentAsTheDeadline(t *testing.T) {
	molecules := &scriptedMolecules{}
	client := serve(t, molecules, qulab.DialOptions()...)
	sent := time.Now()
	if err := parse(t, client); err != nil {
		t.Fatal(err)
	}
	deadline := molecules.deadline.Load()
	if deadline == nil {
		t.Fatal("the call had no deadline")
	}
	if ahead := deadline.Sub(sent); ahead < 25*time.Second || ahead > 31*time.Second {
		t.Errorf("deadline %v ahead, want the config's 30s", ahead)
	}
}

func TestInvalidArgumentIsNotRetried(t *testing.T) {
	molecules := &scriptedMolecules{failures: []codes.Code{codes.InvalidArgument}}
	client := serve(t, molecules, qulab.DialOptions()...)
	if err := parse(t, client); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("err = %v, want InvalidArgument", err)
	}
	if got := molecules.calls.Load(); got != 1 {
		t.Errorf("%d attempts, want 1", got)
	}
}

// maxAttempts 4 bounds one call; retryThrottling (maxTokens 10, tokenRatio 0.1) then stops
// retrying once the failures have spent half the tokens: each failed attempt costs one, so
// after the first call's 4 the second call's first failure leaves 5 and is not retried.
func TestRetriesAreBoundedAndThrottled(t *testing.T) {
	always := make([]codes.Code, 100)
	for i := range always {
		always[i] = codes.Unavailable
	}
	molecules := &scriptedMolecules{failures: always}
	client := serve(t, molecules, qulab.DialOptions()...)
	for call, want := range []int32{4, 1} {
		before := molecules.calls.Load()
		if err := parse(t, client); status.Code(err) != codes.Unavailable {
			t.Fatalf("call %d: err = %v, want Unavailable", call+1, err)
		}
		if got := molecules.calls.Load() - before; got != want {
			t.Errorf("call %d: %d attempts, want %d", call+1, got, want)
		}
	}
}
