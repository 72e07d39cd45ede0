// The shared service config at work: a stand-in MoleculeService on loopback answers the
// first calls with the codes a test gives it, so a test can count the client's attempts
// and see the deadline the client sent. QuLab itself cannot be made to fail on cue; these
// tests need no QULAB_ADDRESS.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { after, describe, it } from "node:test";

import {
  type ChannelOptions,
  type sendUnaryData,
  type ServerUnaryCall,
  type ServiceError,
  Server,
  ServerCredentials,
  credentials,
  status as Code,
} from "@grpc/grpc-js";

import {
  MoleculeServiceClient,
  MoleculeServiceService,
  type MoleculeServiceServer,
  ParseMoleculeRequest,
  ParseMoleculeResponse,
} from "../src/gen/qulab/v1/molecule.js";
import { channelOptions, isServiceError, serviceConfig, unary } from "../src/index.js";

class ScriptedMolecules {
  calls = 0;
  deadlines: number[] = [];

  constructor(private readonly failures: Code[]) {}

  readonly implementation: MoleculeServiceServer = {
    parseMolecule: (
      call: ServerUnaryCall<ParseMoleculeRequest, ParseMoleculeResponse>,
      callback: sendUnaryData<ParseMoleculeResponse>,
    ) => {
      this.calls += 1;
      this.deadlines.push(Number(call.getDeadline()));
      const code = this.failures[this.calls - 1];
      if (code !== undefined) {
        callback({ code, details: `scripted failure ${this.calls}` });
        return;
      }
      callback(null, ParseMoleculeResponse.fromPartial({ id: call.request.id }));
    },
    parseMolecules: (call) => call.emit("error", { code: Code.UNIMPLEMENTED }),
    encodeMolecule: (_call, callback) => callback({ code: Code.UNIMPLEMENTED }),
  };
}

const servers: Server[] = [];
after(() => servers.forEach((server) => server.forceShutdown()));

/** Starts the stand-in and returns a client of it with `options`. */
async function serve(
  molecules: ScriptedMolecules,
  options: ChannelOptions,
): Promise<MoleculeServiceClient> {
  const server = new Server();
  server.addService(MoleculeServiceService, molecules.implementation);
  const port = await new Promise<number>((resolvePort, reject) =>
    server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (error, bound) =>
      error ? reject(error) : resolvePort(bound),
    ),
  );
  servers.push(server);
  return new MoleculeServiceClient(`127.0.0.1:${port}`, credentials.createInsecure(), options);
}

/** ParseMolecule with no deadline of the caller's: the code it ends with (0 for OK). */
async function parse(client: MoleculeServiceClient): Promise<Code> {
  const request = ParseMoleculeRequest.fromPartial({ smiles: "CCO", id: "x" });
  try {
    await unary<ParseMoleculeResponse>((done) => client.parseMolecule(request, done));
    return Code.OK;
  } catch (error) {
    assert.ok(isServiceError(error), String(error));
    return (error as ServiceError).code;
  }
}

describe("the shared service config", () => {
  it("is clients/service_config.json", () => {
    // dist/test/ -> clients/service_config.json
    const shared = readFileSync(resolve(__dirname, "../../../service_config.json"), "utf8");
    assert.deepEqual(serviceConfig, JSON.parse(shared));
  });

  it("is refused by grpc-js when broken, and accepted as it is", () => {
    const broken = {
      "grpc.service_config": '{"methodConfig": [{"retryPolicy": {"maxAttempts": "many"}}]}',
    };
    assert.throws(
      () => new MoleculeServiceClient("127.0.0.1:1", credentials.createInsecure(), broken),
      "grpc-js accepted a broken service config; this test proves nothing",
    );
    const options = channelOptions();
    new MoleculeServiceClient("127.0.0.1:1", credentials.createInsecure(), options).close();
  });

  it("retries UNAVAILABLE and RESOURCE_EXHAUSTED", async () => {
    const molecules = new ScriptedMolecules([Code.UNAVAILABLE, Code.RESOURCE_EXHAUSTED]);
    const client = await serve(molecules, channelOptions());
    assert.equal(await parse(client), Code.OK);
    assert.equal(molecules.calls, 3);
    client.close();
  });

  it("retries nothing when absent", async () => {
    const molecules = new ScriptedMolecules([Code.UNAVAILABLE]);
    const client = await serve(molecules, {});
    assert.equal(await parse(client), Code.UNAVAILABLE);
    assert.equal(molecules.calls, 1);
    assert.equal(molecules.deadlines[0], Infinity, "a deadline was sent without a config");
    client.close();
  });

  it("does not retry INVALID_ARGUMENT", async () => {
    const molecules = new ScriptedMolecules([Code.INVALID_ARGUMENT]);
    const client = await serve(molecules, channelOptions());
    assert.equal(await parse(client), Code.INVALID_ARGUMENT);
    assert.equal(molecules.calls, 1);
    client.close();
  });

  it("sends its 30 s default timeout as the deadline", async () => {
    const molecules = new ScriptedMolecules([]);
    const client = await serve(molecules, channelOptions());
    const sent = Date.now();
    assert.equal(await parse(client), Code.OK);
    const timeout = molecules.deadlines[0]! - sent;
    assert.ok(timeout > 25_000 && timeout <= 30_500, `deadline ${timeout} ms ahead`);
    client.close();
  });

  // maxAttempts 4 bounds one call; retryThrottling (maxTokens 10, tokenRatio 0.1) then
  // stops retrying once failures have spent half the tokens: each failed attempt costs
  // one, so after the first call's 4 the second call's first failure leaves 5.
  it("bounds retries by maxAttempts and throttles them", async () => {
    const molecules = new ScriptedMolecules(new Array<Code>(100).fill(Code.UNAVAILABLE));
    const client = await serve(molecules, channelOptions());
    for (const [call, attempts] of [4, 1].entries()) {
      const before = molecules.calls;
      assert.equal(await parse(client), Code.UNAVAILABLE);
      assert.equal(molecules.calls - before, attempts, `call ${call + 1}`);
    }
    client.close();
  });
});
