// Test-only payer: builds a signed x402 PaymentPayload with a public test key.
//
// stdin, one of:
//   {"paymentRequired": {…}}                      the decoded PAYMENT-REQUIRED of a 402. The
//       REFERENCE client (x402Client from @x402/core with the exact EVM client scheme from
//       @x402/evm) picks accepts[0] and signs, exactly as a reference buyer would.
//   {"paymentRequirements": {…}, "resource": {…}?, "extensions": {…}?,
//    "authorization": {from?, to?, value?, validAfter?, validBefore?, nonce?}?,
//    "domain": {name?, version?, chainId?, verifyingContract?}?}
//       signs an EIP-3009 TransferWithAuthorization directly with viem, defaults derived from
//       the requirements like the reference client (to = payTo, value = amount,
//       validAfter = now − 600, validBefore = now + maxTimeoutSeconds, random nonce) and
//       overridden field by field, so a test can produce a well-signed but wrong payload.
// Either may add "privateKey": "0x…" (default: Hardhat account #0, a publicly known key).
// stdout: {"paymentPayload": {…}, "header": "<base64 for PAYMENT-SIGNATURE>", "address": "0x…"}

import { x402Client } from "@x402/core/client";
import { encodePaymentSignatureHeader } from "@x402/core/http";
import { authorizationTypes } from "@x402/evm";
import { ExactEvmScheme } from "@x402/evm/exact/client";
import { getAddress, toHex } from "viem";
import { privateKeyToAccount } from "viem/accounts";

/** Hardhat account #0 (0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266): public, test only. */
const HARDHAT_0 = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return Buffer.concat(chunks).toString("utf8");
}

function chainIdOf(network) {
  const m = /^eip155:(\d+)$/.exec(network);
  if (!m) throw new Error(`not an eip155 network: ${network}`);
  return Number(m[1]);
}

async function fromPaymentRequired(account, paymentRequired) {
  const client = new x402Client().register("eip155:*", new ExactEvmScheme(account));
  client.setSpendControls(false);
  return client.createPaymentPayload(paymentRequired);
}

async function fromRequirements(account, input) {
  const req = input.paymentRequirements;
  const now = Math.floor(Date.now() / 1000);
  const authorization = {
    from: account.address,
    to: getAddress(req.payTo),
    value: String(req.amount),
    validAfter: String(now - 600),
    validBefore: String(now + Number(req.maxTimeoutSeconds ?? 60)),
    nonce: toHex(crypto.getRandomValues(new Uint8Array(32))),
    ...(input.authorization ?? {}),
  };
  const domain = {
    name: req.extra?.name,
    version: req.extra?.version,
    chainId: chainIdOf(req.network),
    verifyingContract: getAddress(req.asset),
    ...(input.domain ?? {}),
  };
  const signature = await account.signTypedData({
    domain,
    types: authorizationTypes,
    primaryType: "TransferWithAuthorization",
    message: {
      from: getAddress(authorization.from),
      to: getAddress(authorization.to),
      value: BigInt(authorization.value),
      validAfter: BigInt(authorization.validAfter),
      validBefore: BigInt(authorization.validBefore),
      nonce: authorization.nonce,
    },
  });
  return {
    x402Version: 2,
    ...(input.resource ? { resource: input.resource } : {}),
    accepted: req,
    payload: { signature, authorization },
    ...(input.extensions ? { extensions: input.extensions } : {}),
  };
}

try {
  const input = JSON.parse(await readStdin());
  const account = privateKeyToAccount(input.privateKey ?? HARDHAT_0);
  let paymentPayload;
  if (input.paymentRequired) {
    paymentPayload = await fromPaymentRequired(account, input.paymentRequired);
  } else if (input.paymentRequirements) {
    paymentPayload = await fromRequirements(account, input);
  } else {
    throw new Error('expected {"paymentRequired": …} or {"paymentRequirements": …}');
  }
  const header = encodePaymentSignatureHeader(paymentPayload);
  process.stdout.write(`${JSON.stringify({ paymentPayload, header, address: account.address })}\n`);
} catch (e) {
  process.stderr.write(`sign-for-test.mjs: ${e instanceof Error ? e.stack : String(e)}\n`);
  process.exit(1);
}
