// Parses one molecule with QuLab, then streams a few through ParseMolecules, printing
// what comes back.
//
//   npm run example                      # builds, then runs dist/examples/parse.js
//   QULAB_ADDRESS=qulab:50051 npm run example
//
// It connects without TLS, as to a server on loopback; over a network, use
// credentials.createSsl() instead of credentials.createInsecure().
import { credentials, status } from "@grpc/grpc-js";

import {
  ParseMoleculeRequest,
  type ParseMoleculeResponse,
} from "../src/gen/qulab/v1/molecule.js";
import { badRequestOf, connect, unary } from "../src/index.js";

function request(id: string, smiles: string): ParseMoleculeRequest {
  return ParseMoleculeRequest.fromPartial({ id, smiles });
}

async function main(): Promise<void> {
  const address = process.env.QULAB_ADDRESS || "localhost:50051";
  const qulab = connect(address, credentials.createInsecure());
  try {
    const answer = await unary<ParseMoleculeResponse>((done) =>
      qulab.molecules.parseMolecule(request("aspirin", "CC(=O)Oc1ccccc1C(=O)O"), done),
    );
    const molecule = answer.molecule;
    console.log(
      `aspirin: ${molecule?.canonicalSmiles} ${molecule?.formula} ${molecule?.inchikey}` +
        ` (request ${answer.provenance?.requestId})`,
    );

    // Answers come back in request order; an item that fails carries its own error and
    // the stream goes on.
    const stream = qulab.molecules.parseMolecules({ deadline: Date.now() + 30_000 });
    stream.write(request("ethanol", "OCC"));
    stream.write(request("benzene", "C1=CC=CC=C1"));
    stream.write(request("broken", "C1CC")); // ring 1 is never closed
    stream.write(request("caffeine", "CN1C=NC2=C1C(=O)N(C(=O)N2C)C"));
    stream.end();
    for await (const item of stream as AsyncIterable<ParseMoleculeResponse>) {
      if (item.error) {
        console.log(`${item.id}: ${status[item.error.code]}: ${item.error.message}`);
        for (const violation of badRequestOf(item.error)?.fieldViolations ?? []) {
          console.log(`  field "${violation.field}": ${violation.reason}`);
        }
        continue;
      }
      console.log(`${item.id}: ${item.molecule?.canonicalSmiles}`);
    }
  } finally {
    qulab.close();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
