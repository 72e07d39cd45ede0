// Command example parses one molecule with QuLab, then streams a few through
// ParseMolecules, printing what comes back.
//
//	QULAB_ADDRESS=localhost:50051 go run ./example
//
// It connects without TLS, as to a server on loopback; over a network, use
// credentials.NewTLS instead of insecure.NewCredentials.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	qulabv1 "qulab.dev/clients/go/gen/qulab/v1"
	"qulab.dev/clients/go/qulab"
)

func main() {
	address := os.Getenv("QULAB_ADDRESS")
	if address == "" {
		address = "localhost:50051"
	}
	client, err := qulab.NewClient(address, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	answer, err := client.Molecules.ParseMolecule(ctx, request("aspirin", "CC(=O)Oc1ccccc1C(=O)O"))
	if err != nil {
		log.Fatalf("ParseMolecule: %v", err)
	}
	molecule := answer.GetMolecule()
	fmt.Printf("aspirin: %s %s %s (request %s)\n", molecule.GetCanonicalSmiles(),
		molecule.GetFormula(), molecule.GetInchikey(), answer.GetProvenance().GetRequestId())

	molecules := []*qulabv1.ParseMoleculeRequest{
		request("ethanol", "OCC"),
		request("benzene", "C1=CC=CC=C1"),
		request("broken", "C1CC"), // ring 1 is never closed
		request("caffeine", "CN1C=NC2=C1C(=O)N(C(=O)N2C)C"),
	}
	if err := stream(ctx, client, molecules); err != nil {
		log.Fatalf("ParseMolecules: %v", err)
	}
}

// stream sends the requests while it reads the answers, which come back in the same
// order; an item that fails carries its own error and the stream goes on.
func stream(ctx context.Context, client *qulab.Client, requests []*qulabv1.ParseMoleculeRequest) error {
	calls, err := client.Molecules.ParseMolecules(ctx)
	if err != nil {
		return err
	}
	sent := make(chan error, 1)
	go func() {
		for _, r := range requests {
			if err := calls.Send(r); err != nil {
				sent <- err
				return
			}
		}
		sent <- calls.CloseSend()
	}()
	for {
		answer, err := calls.Recv()
		if errors.Is(err, io.EOF) {
			return <-sent
		}
		if err != nil {
			return err
		}
		if answer.GetError() != nil {
			failure := status.FromProto(answer.GetError())
			fmt.Printf("%s: %v: %s\n", answer.GetId(), failure.Code(), failure.Message())
			if badRequest := qulab.BadRequest(failure); badRequest != nil {
				for _, violation := range badRequest.GetFieldViolations() {
					fmt.Printf("  field %q: %s\n", violation.GetField(), violation.GetReason())
				}
			}
			continue
		}
		fmt.Printf("%s: %s\n", answer.GetId(), answer.GetMolecule().GetCanonicalSmiles())
	}
}

func request(id, smiles string) *qulabv1.ParseMoleculeRequest {
	return &qulabv1.ParseMoleculeRequest{Input: &qulabv1.ParseMoleculeRequest_Smiles{Smiles: smiles}, Id: id}
}
