// Package qulab connects to a QuLab server with the gRPC service config every QuLab
// client shares, and reads the error details QuLab sends.
//
// The messages and stubs are generated into qulab.dev/clients/go/gen/qulab/v1 by
// `make proto` at the repository root (buf generate; never edit them by hand). The
// google.rpc messages (Status, BadRequest) are genproto's, the health service grpc-go's:
// the same packages grpc-go's own status and health code use.
package qulab

import (
	_ "embed" // for ServiceConfig

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	qulabv1 "qulab.dev/clients/go/gen/qulab/v1"
)

// ServiceConfig is the shared gRPC service config, clients/service_config.json: per-method
// timeouts, retries of UNAVAILABLE and RESOURCE_EXHAUSTED with exponential backoff, and
// retry throttling.
//
// It is embedded so that a built program needs no file beside it. Go's embed cannot reach
// outside this module, so scripts/proto.py writes this copy of the shared file whenever it
// generates the code, and its drift check (`make check`, tests/interop) fails when the copy
// differs from the original: edit clients/service_config.json, then run `make proto`.
//
//go:embed service_config.json
var ServiceConfig string

// DialOptions are the options every connection to QuLab should have: the shared service
// config as the default (a config from the name resolver, if any, takes precedence).
// Transport credentials are the caller's to add.
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{grpc.WithDefaultServiceConfig(ServiceConfig)}
}

// Client is one connection to QuLab and a stub for each of its services.
type Client struct {
	Conn       *grpc.ClientConn
	Molecules  qulabv1.MoleculeServiceClient
	Structures qulabv1.StructureServiceClient
	Spectra    qulabv1.SpectrumServiceClient
	Units      qulabv1.UnitServiceClient
	Server     qulabv1.ServerServiceClient
	Health     grpc_health_v1.HealthClient
}

// NewClient makes a Client for target (e.g. "localhost:50051", "dns:///qulab:50051") with
// DialOptions followed by opts, which must include transport credentials. Like
// grpc.NewClient it does not connect until the first call, and it fails if the service
// config does not parse.
func NewClient(target string, opts ...grpc.DialOption) (*Client, error) {
	conn, err := grpc.NewClient(target, append(DialOptions(), opts...)...)
	if err != nil {
		return nil, err
	}
	return &Client{
		Conn:       conn,
		Molecules:  qulabv1.NewMoleculeServiceClient(conn),
		Structures: qulabv1.NewStructureServiceClient(conn),
		Spectra:    qulabv1.NewSpectrumServiceClient(conn),
		Units:      qulabv1.NewUnitServiceClient(conn),
		Server:     qulabv1.NewServerServiceClient(conn),
		Health:     grpc_health_v1.NewHealthClient(conn),
	}, nil
}

// Close closes the connection.
func (c *Client) Close() error {
	return c.Conn.Close()
}

// BadRequest is the google.rpc.BadRequest among a status's details (which fields were
// wrong, and why), or nil. For a failed call, pass status.Convert(err); for a failed item
// of a stream or batch, status.FromProto(item.GetError()).
func BadRequest(s *status.Status) *errdetails.BadRequest {
	for _, detail := range s.Details() {
		if br, ok := detail.(*errdetails.BadRequest); ok {
			return br
		}
	}
	return nil
}
