// A paid HTTP API guarded by the REFERENCE x402 middleware (@x402/express paymentMiddleware,
// x402ResourceServer with the exact EVM server scheme), which verifies and settles through the
// REFERENCE HTTPFacilitatorClient at $FACILITATOR_URL.
//
//   GET  /weather  $0.001 (1000 base units of USDC on eip155:84532) → JSON weather report
//   POST /report   $0.01  (10000 base units), advertises the payment-identifier extension
//                  → {"sha256": hex of the exact request body bytes, "length", "body"}
//   GET  /free     no payment → JSON
//
// Env: FACILITATOR_URL (required), PAY_TO (default 0x209693Bc6afc0C5328bA36FaF03C514EF312287C),
// FACILITATOR_TIMEOUT_MS (the client's per-request deadline; reference default 90000), PORT
// (default 0). Listens on 127.0.0.1; the first stdout line is `LISTENING <port>`.

import { createHash } from "node:crypto";
import { HTTPFacilitatorClient } from "@x402/core/server";
import { ExactEvmScheme } from "@x402/evm/exact/server";
import { paymentMiddleware, x402ResourceServer } from "@x402/express";
import {
  PAYMENT_IDENTIFIER,
  declarePaymentIdentifierExtension,
  paymentIdentifierResourceServerExtension,
} from "@x402/extensions/payment-identifier";
import express from "express";

const NETWORK = "eip155:84532";
const facilitatorUrl = process.env.FACILITATOR_URL;
if (!facilitatorUrl) {
  console.error("paid-api.mjs: FACILITATOR_URL is required");
  process.exit(2);
}
const payTo = process.env.PAY_TO || "0x209693Bc6afc0C5328bA36FaF03C514EF312287C";
const timeoutMs = process.env.FACILITATOR_TIMEOUT_MS ? Number(process.env.FACILITATOR_TIMEOUT_MS) : undefined;

const facilitatorClient = new HTTPFacilitatorClient({ url: facilitatorUrl, timeoutMs });
const resourceServer = new x402ResourceServer(facilitatorClient)
  .register(NETWORK, new ExactEvmScheme())
  .registerExtension(paymentIdentifierResourceServerExtension);

const routes = {
  "GET /weather": {
    accepts: { scheme: "exact", price: "$0.001", network: NETWORK, payTo },
    description: "Weather report",
    mimeType: "application/json",
  },
  "POST /report": {
    accepts: { scheme: "exact", price: "$0.01", network: NETWORK, payTo },
    description: "Digest of the posted report",
    mimeType: "application/json",
    extensions: { [PAYMENT_IDENTIFIER]: declarePaymentIdentifierExtension(false) },
  },
};

const app = express();
// Keep the exact bytes of a JSON body so /report can digest what was actually sent.
app.use(
  express.json({
    verify: (req, _res, buf) => {
      req.rawBody = Buffer.from(buf);
    },
  }),
);
app.use(paymentMiddleware(routes, resourceServer));

app.get("/weather", (_req, res) => {
  res.json({ report: { weather: "sunny", temperature: 70 } });
});

app.post("/report", (req, res) => {
  const raw = req.rawBody ?? Buffer.alloc(0);
  res.json({
    sha256: createHash("sha256").update(raw).digest("hex"),
    length: raw.length,
    body: req.body ?? null,
  });
});

app.get("/free", (_req, res) => {
  res.json({ free: true });
});

const server = app.listen(Number(process.env.PORT ?? 0), "127.0.0.1", (error) => {
  if (error) {
    console.error("paid-api.mjs: listen failed:", error);
    process.exit(1);
  }
  process.stdout.write(`LISTENING ${server.address().port}\n`);
});
