// The reference facilitator over HTTP (x402 v2 specification, section 7), on node:http.
//
//   POST /verify     {x402Version, paymentPayload, paymentRequirements} → VerifyResponse (200)
//   POST /settle     same request → SettleResponse (200)
//   GET  /supported  → {kinds, extensions, signers}
// Malformed requests get 400 {"error"}, and an exception in the reference 500 {"error"}, as in
// the reference example facilitator (examples/typescript/facilitator/basic).
//
// Test controls (not part of x402):
//   POST /control {"settle": MODE}           how the following /settle requests behave:
//       "ok"                 settle normally (default)
//       "fail"               the settlement transaction is mined but reverts: the reference
//                            answers {success:false, errorReason:"invalid_exact_evm_transaction_failed"}
//                            with the tx hash; no money moves, nothing is recorded
//       "error"              answer 500 {"error"} without touching the chain
//       "hang"               never answer, and do not settle (outcome unknown to the caller; nothing moved)
//       "hang-after-settle"  settle (money moves, recorded) but never answer
//   POST /control {"balances": {"0xAccount": "123"}}   set token balances on the stub chain
//   GET  /control    current modes;  GET /settled   the settlements recorded so far
//
// Listens on 127.0.0.1, port 0 (or $PORT); the first stdout line is `LISTENING <port>`.
// $FACILITATOR_LOG: a file to which one JSON line is appended per successful settlement
// ({paymentPayload, paymentRequirements, transaction, network, payer, settledAt}), written
// before the /settle answer is sent. Logs go to stderr.

import { appendFileSync } from "node:fs";
import { createServer } from "node:http";
import { createFacilitator, toJson } from "./facilitator-core.mjs";

const SETTLE_MODES = ["ok", "fail", "error", "hang", "hang-after-settle"];
const MAX_BODY = 1 << 20;

const logPath = process.env.FACILITATOR_LOG;
const settled = [];
const { facilitator, chain } = createFacilitator({
  onSettled(record) {
    settled.push(record);
    if (logPath) appendFileSync(logPath, `${toJson(record)}\n`);
  },
});
let settleMode = "ok";
/** Requests deliberately left unanswered (hang modes); kept so they are not collected. */
const hung = [];

function send(res, status, body) {
  const text = toJson(body);
  res.writeHead(status, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(text) });
  res.end(text);
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let length = 0;
    req.on("data", (chunk) => {
      length += chunk.length;
      if (length > MAX_BODY) {
        reject(new Error("request body too large"));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    req.on("error", reject);
  });
}

async function readJson(req) {
  const text = await readBody(req);
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

async function verifyOrSettle(req, res, action) {
  const body = await readJson(req);
  const { paymentPayload, paymentRequirements } = body ?? {};
  if (!paymentPayload || !paymentRequirements) {
    send(res, 400, { error: "Missing paymentPayload or paymentRequirements" });
    return;
  }
  if (action === "settle") {
    const mode = settleMode;
    console.error(`facilitator: settle (mode ${mode})`);
    if (mode === "hang") {
      hung.push(res);
      return;
    }
    if (mode === "error") {
      send(res, 500, { error: "facilitator fault injected (settle mode error)" });
      return;
    }
    const result = await facilitator.settle(paymentPayload, paymentRequirements);
    console.error(`facilitator: settle → ${toJson(result)}`);
    if (mode === "hang-after-settle") {
      hung.push(res);
      return;
    }
    send(res, 200, result);
    return;
  }
  const result = await facilitator.verify(paymentPayload, paymentRequirements);
  console.error(`facilitator: verify → ${toJson(result)}`);
  send(res, 200, result);
}

async function control(req, res) {
  const body = await readJson(req);
  if (!body || typeof body !== "object") {
    send(res, 400, { error: "expected a JSON object" });
    return;
  }
  if (body.settle !== undefined) {
    if (!SETTLE_MODES.includes(body.settle)) {
      send(res, 400, { error: `settle must be one of ${SETTLE_MODES.join(", ")}` });
      return;
    }
    settleMode = body.settle;
    // The stub chain reverts settlement transactions while the mode is "fail".
    chain.revertWrites = settleMode === "fail";
  }
  for (const [address, amount] of Object.entries(body.balances ?? {})) {
    chain.setBalance(address, amount);
  }
  send(res, 200, { settle: settleMode });
}

const server = createServer(async (req, res) => {
  const path = new URL(req.url ?? "/", "http://localhost").pathname;
  const route = `${req.method} ${path}`;
  try {
    switch (route) {
      case "POST /verify":
        return await verifyOrSettle(req, res, "verify");
      case "POST /settle":
        return await verifyOrSettle(req, res, "settle");
      case "GET /supported":
        return send(res, 200, facilitator.getSupported());
      case "POST /control":
        return await control(req, res);
      case "GET /control":
        return send(res, 200, { settle: settleMode });
      case "GET /settled":
        return send(res, 200, settled);
      default:
        return send(res, 404, { error: `no route ${route}` });
    }
  } catch (error) {
    console.error(`facilitator: ${route} failed:`, error);
    if (!res.headersSent) send(res, 500, { error: error instanceof Error ? error.message : String(error) });
  }
});

server.listen(Number(process.env.PORT ?? 0), "127.0.0.1", () => {
  process.stdout.write(`LISTENING ${server.address().port}\n`);
});
