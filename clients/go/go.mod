// The QuLab Go client. Its pins are this file's require lines: the runtime
// (google.golang.org/grpc, google.golang.org/protobuf, genproto's google.rpc) and, as `tool`
// lines, the code generators scripts/proto.py builds into .tools/bin with `go install tool`:
// protoc-gen-go (from google.golang.org/protobuf, so generated code and runtime always
// match) and protoc-gen-go-grpc. To change one: go get [-tool] MODULE@VERSION && go mod
// tidy, then `make proto` at the repository root.

module qulab.dev/clients/go

go 1.26.0

tool (
	google.golang.org/grpc/cmd/protoc-gen-go-grpc
	google.golang.org/protobuf/cmd/protoc-gen-go
)

require (
	google.golang.org/genproto/googleapis/rpc v0.0.0-20260817212433-ac3dfec99bb1
	google.golang.org/grpc v1.85.0
	google.golang.org/protobuf v1.36.12
)

require (
	golang.org/x/net v0.60.0 // indirect
	golang.org/x/sys v0.48.0 // indirect
	golang.org/x/text v0.42.0 // indirect
	google.golang.org/grpc/cmd/protoc-gen-go-grpc v1.6.2 // indirect
)
