// Runs the reference facilitator's verify (or settle) on a batch of cases.
//
// stdin:  {"cases":[{"paymentPayload":{…},"paymentRequirements":{…}, "action":"verify"|"settle"}…],
//          "balances":{"0xPayer":"123"}}          (action defaults to "verify"; balances optional)
// stdout: {"results":[…]} — one per case, in order: the facilitator's VerifyResponse
//         ({isValid, invalidReason, invalidMessage, payer}) or SettleResponse ({success,
//         errorReason, transaction, network, payer}) exactly as the reference returned it, or
//         {"error": "<message>"} when the reference threw (e.g. no scheme registered for the
//         network). Cases run in order against one stub chain, so a "settle" case uses the
//         nonce for the cases after it.
// Exit 0 unless the input could not be read.

import { createFacilitator, toJson } from "./facilitator-core.mjs";

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return Buffer.concat(chunks).toString("utf8");
}

let input;
try {
  input = JSON.parse(await readStdin());
  if (!input || !Array.isArray(input.cases)) throw new Error('expected {"cases":[…]}');
} catch (e) {
  process.stderr.write(`verify.mjs: bad input: ${e.message}\n`);
  process.exit(2);
}

const { facilitator, chain } = createFacilitator();
for (const [address, amount] of Object.entries(input.balances ?? {})) {
  chain.setBalance(address, amount);
}

const results = [];
for (const c of input.cases) {
  try {
    const action = c.action ?? "verify";
    if (action !== "verify" && action !== "settle") throw new Error(`unknown action ${action}`);
    results.push(await facilitator[action](c.paymentPayload, c.paymentRequirements));
  } catch (e) {
    results.push({ error: e instanceof Error ? e.message : String(e) });
  }
}
process.stdout.write(`${toJson({ results })}\n`);
