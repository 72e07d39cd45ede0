// These tests call a real QuLab server at QULAB_ADDRESS: tests/interop/
// test_typescript_client.py starts one and runs them. Without the variable they fail
// rather than skip, so that a run which reached no server cannot pass.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import { credentials, status as Code } from "@grpc/grpc-js";

import {
  HealthCheckResponse_ServingStatus,
  type HealthCheckResponse,
} from "../src/gen/grpc/health/v1/health.js";
import {
  ParseMoleculeRequest,
  type ParseMoleculeResponse,
} from "../src/gen/qulab/v1/molecule.js";
import {
  badRequestOf,
  connect,
  isServiceError,
  type QulabClient,
  statusOf,
  unary,
} from "../src/index.js";

function address(): string {
  const value = process.env.QULAB_ADDRESS;
  assert.ok(value, "QULAB_ADDRESS is not set: these tests need a running QuLab server");
  return value;
}

function smiles(text: string, id = ""): ParseMoleculeRequest {
  return ParseMoleculeRequest.fromPartial({ smiles: text, id });
}

const TEN_SECONDS = () => ({ deadline: Date.now() + 10_000 });

describe("QuLab over @grpc/grpc-js", () => {
  let qulab: QulabClient;
  before(() => {
    qulab = connect(address(), credentials.createInsecure());
  });
  after(() => qulab.close());

  it("reports SERVING on health checks", async () => {
    for (const service of ["", "qulab.v1.MoleculeService"]) {
      const answer = await unary<HealthCheckResponse>((done) =>
        qulab.health.check({ service }, done),
      );
      assert.equal(answer.status, HealthCheckResponse_ServingStatus.SERVING, service);
    }
  });

  it("parses a molecule, with provenance", async () => {
    const answer = await unary<ParseMoleculeResponse>((done) =>
      qulab.molecules.parseMolecule(smiles("OCC"), done),
    );
    assert.equal(answer.molecule?.canonicalSmiles, "CCO");
    assert.equal(answer.molecule?.inchikey, "LFQSCWFLJHTTHZ-UHFFFAOYSA-N");
    assert.ok(answer.provenance?.requestId, "provenance.request_id is empty");
    // Timestamps are kept as {seconds, nanos}: nanosecond precision survives.
    assert.ok((answer.provenance?.finishedTime?.seconds ?? 0) > 0);
  });

  it("refuses a bad SMILES with INVALID_ARGUMENT and a field violation", async () => {
    const failure = await unary<ParseMoleculeResponse>((done) =>
      qulab.molecules.parseMolecule(smiles("C1CC"), done), // ring 1 is never closed
    ).then(
      () => assert.fail("ParseMolecule(C1CC) succeeded"),
      (error: unknown) => error,
    );
    assert.ok(isServiceError(failure), `not a gRPC error: ${String(failure)}`);
    assert.equal(failure.code, Code.INVALID_ARGUMENT, failure.message);
    const details = statusOf(failure);
    assert.ok(details, "no grpc-status-details-bin trailer");
    assert.equal(details.code, Code.INVALID_ARGUMENT);
    const badRequest = badRequestOf(details);
    assert.ok(badRequest, "no google.rpc.BadRequest among the details");
    assert.deepEqual(
      badRequest.fieldViolations.map((v) => v.field),
      ["smiles"],
    );
    assert.ok(badRequest.fieldViolations[0]?.description);
  });

  it("streams ParseMolecules in order, with per-item errors", async () => {
    const inputs = [
      { id: "ethanol", smiles: "OCC", canonical: "CCO" },
      { id: "benzene", smiles: "C1=CC=CC=C1", canonical: "c1ccccc1" },
      { id: "broken", smiles: "C1CC", canonical: undefined },
      { id: "acetic acid", smiles: "OC(C)=O", canonical: "CC(=O)O" },
      { id: "nitrogen", smiles: "N#N", canonical: "N#N" },
    ];
    const stream = qulab.molecules.parseMolecules(TEN_SECONDS());
    for (const input of inputs) {
      stream.write(smiles(input.smiles, input.id));
    }
    stream.end();
    const answers: ParseMoleculeResponse[] = [];
    for await (const answer of stream) {
      answers.push(answer as ParseMoleculeResponse);
    }
    assert.deepEqual(
      answers.map((a) => a.id),
      inputs.map((i) => i.id),
    );
    inputs.forEach((input, i) => {
      const answer = answers[i]!;
      assert.ok(answer.provenance?.requestId, `${input.id}: provenance.request_id is empty`);
      if (input.canonical !== undefined) {
        assert.equal(answer.error, undefined, `${input.id}: ${answer.error?.message}`);
        assert.equal(answer.molecule?.canonicalSmiles, input.canonical, input.id);
        return;
      }
      assert.equal(answer.molecule, undefined);
      assert.ok(answer.error, `${input.id}: no error`);
      assert.equal(answer.error.code, Code.INVALID_ARGUMENT);
      const badRequest = badRequestOf(answer.error);
      assert.ok(badRequest, `${input.id}: no google.rpc.BadRequest in the item's error`);
      assert.deepEqual(
        badRequest.fieldViolations.map((v) => v.field),
        ["smiles"],
      );
    });
  });
});
