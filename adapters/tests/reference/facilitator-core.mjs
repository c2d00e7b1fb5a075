// The reference x402 facilitator (x402Facilitator from @x402/core with the exact EVM scheme
// from @x402/evm) over a stub chain that works offline.
//
// Everything that decides whether a payment is valid is the reference code: payload routing,
// scheme/network checks, EIP-712 hashing and ECDSA recovery, recipient, time window, amount,
// the asset-is-a-contract check, the transferWithAuthorization simulation and its diagnosis,
// settlement, receipt and Transfer-event validation. Only the JSON-RPC node behind the
// facilitator's signer is replaced: `StubChain` answers the calls the scheme makes
// (`getCode`, `readContract`, `writeContract`, `sendTransaction`, `waitForTransactionReceipt`)
// by emulating the token contract (Circle's FiatToken v2 EIP-3009 rules), so a payload the
// real token would reject is rejected here too.

import { x402Facilitator } from "@x402/core/facilitator";
import { DEFAULT_ASSETS, authorizationTypes, eip3009ABI } from "@x402/evm";
import { ExactEvmScheme } from "@x402/evm/exact/facilitator";
import { ExactEvmSchemeV1 } from "@x402/evm/exact/v1/facilitator";
import {
  concat,
  decodeFunctionData,
  encodeAbiParameters,
  encodeEventTopics,
  encodeFunctionResult,
  getAddress,
  isAddressEqual,
  keccak256,
  numberToHex,
  recoverTypedDataAddress,
  size,
  verifyTypedData,
} from "viem";

/** The networks the facilitator serves: v2 CAIP-2 ids and the v1 names of the same chains. */
export const NETWORKS_V2 = ["eip155:84532", "eip155:8453"];
export const NETWORKS_V1 = { "base-sepolia": 84532, base: 8453 };

/** The facilitator's own (settling) address, listed in /supported `signers`. Hardhat account #1. */
export const FACILITATOR_ADDRESS = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8";

/** Every account's token balance unless set otherwise: 10^12 base units (1,000,000 USDC). */
export const DEFAULT_BALANCE = 10n ** 12n;

/** Multicall3, which the scheme uses to batch its diagnostic reads. */
const MULTICALL3 = "0xcA11bde05977b3631167028862bE2a173976CA11";
const MULTICALL3_ABI = [
  {
    inputs: [
      { name: "requireSuccess", type: "bool" },
      {
        name: "calls",
        type: "tuple[]",
        components: [
          { name: "target", type: "address" },
          { name: "callData", type: "bytes" },
        ],
      },
    ],
    name: "tryAggregate",
    outputs: [
      {
        name: "returnData",
        type: "tuple[]",
        components: [
          { name: "success", type: "bool" },
          { name: "returnData", type: "bytes" },
        ],
      },
    ],
    stateMutability: "payable",
    type: "function",
  },
];
const TRANSFER_EVENT_ABI = [
  {
    type: "event",
    name: "Transfer",
    inputs: [
      { name: "from", type: "address", indexed: true },
      { name: "to", type: "address", indexed: true },
      { name: "value", type: "uint256", indexed: false },
    ],
  },
];
const AUTHORIZATION_USED_EVENT_ABI = [
  {
    type: "event",
    name: "AuthorizationUsed",
    inputs: [
      { name: "authorizer", type: "address", indexed: true },
      { name: "nonce", type: "bytes32", indexed: true },
    ],
  },
];
/** Any non-empty bytecode: `getCode` only distinguishes contracts from EOAs. */
const CONTRACT_CODE = "0x6080604052348015600f57600080fd5b50";
/** secp256k1 n / 2: OpenZeppelin/Circle ECRecover rejects signatures with a larger `s`. */
const SECP256K1_HALF_N = 0x7fffffffffffffffffffffffffffffff5d576e7357a4501ddfe92f46681b20a0n;

/** A revert of the emulated contract, worded like viem's error so the scheme's parsers match. */
class Revert extends Error {
  constructor(functionName, reason) {
    super(`The contract function "${functionName}" reverted with the following reason:\n${reason}`);
    this.name = "ContractFunctionExecutionError";
    this.reason = reason;
  }
}

const now = () => BigInt(Math.floor(Date.now() / 1000));

/**
 * The in-memory chain state shared by all networks: token balances, used EIP-3009 nonces,
 * and mined transactions. One per process.
 */
export class StubChain {
  constructor() {
    /** `${chainId}:${token}:${account}` (lower case) → balance, when not DEFAULT_BALANCE. */
    this.balances = new Map();
    /** `${chainId}:${token}:${authorizer}:${nonce}` (lower case) of settled authorizations. */
    this.usedNonces = new Set();
    /** tx hash → receipt. */
    this.receipts = new Map();
    /** When true, settlement transactions are mined but revert (no state change). */
    this.revertWrites = false;
  }

  /** The EIP-3009 tokens deployed on `chainId`: the reference's default assets for it. */
  tokens(chainId) {
    return (DEFAULT_ASSETS[`eip155:${chainId}`] ?? []).filter((a) => !a.assetTransferMethod);
  }

  token(chainId, address) {
    return this.tokens(chainId).find((t) => isAddressEqual(t.asset, address));
  }

  balanceOf(chainId, token, account) {
    const key = `${chainId}:${token}:${account}`.toLowerCase();
    return this.balances.has(key) ? this.balances.get(key) : DEFAULT_BALANCE;
  }

  /** Sets `account`'s balance of every token this chain knows (all networks). */
  setBalance(account, amount) {
    for (const chainId of new Set([...Object.values(NETWORKS_V1), ...NETWORKS_V2.map(chainIdOf)])) {
      for (const t of this.tokens(chainId)) {
        this.balances.set(`${chainId}:${t.asset}:${account}`.toLowerCase(), BigInt(amount));
      }
    }
  }

  nonceKey(chainId, token, authorizer, nonce) {
    return `${chainId}:${token}:${authorizer}:${nonce}`.toLowerCase();
  }

  /**
   * Runs `functionName(args)` on contract `address` of chain `chainId`. With `write`, applies
   * the state change and returns the transfer to log; otherwise (eth_call) only the result.
   * Throws Revert where the contract would revert.
   */
  async call(chainId, address, functionName, args, write = false) {
    const token = this.token(chainId, address);
    if (!token) {
      throw new Revert(functionName, `no contract deployed at ${address} on chain ${chainId} (stub chain)`);
    }
    const tokenAddress = getAddress(token.asset);
    switch (functionName) {
      case "name":
        return { result: token.name };
      case "version":
        return { result: token.version };
      case "balanceOf":
        return { result: this.balanceOf(chainId, tokenAddress, getAddress(args[0])) };
      case "authorizationState":
        return {
          result: this.usedNonces.has(this.nonceKey(chainId, tokenAddress, getAddress(args[0]), args[1])),
        };
      case "transferWithAuthorization":
        return this.transferWithAuthorization(chainId, token, args, write);
      default:
        throw new Revert(functionName, `function ${functionName} is not implemented by the stub token`);
    }
  }

  /** FiatToken v2's transferWithAuthorization, in its order of checks and with its messages. */
  async transferWithAuthorization(chainId, token, args, write) {
    const fn = "transferWithAuthorization";
    const [from, to, value, validAfter, validBefore, nonce] = args;
    let signature;
    if (args.length === 9) {
      const [v, r, s] = args.slice(6);
      signature = concat([r, s, numberToHex(v, { size: 1 })]);
    } else {
      signature = args[6];
    }
    const tokenAddress = getAddress(token.asset);
    const t = now();
    if (!(t > validAfter)) throw new Revert(fn, "FiatTokenV2: authorization is not yet valid");
    if (!(t < validBefore)) throw new Revert(fn, "FiatTokenV2: authorization is expired");
    const key = this.nonceKey(chainId, tokenAddress, getAddress(from), nonce);
    if (this.usedNonces.has(key)) throw new Revert(fn, "FiatTokenV2: authorization is used or canceled");
    // SignatureChecker.isValidSignatureNow for an EOA: ECRecover.recover(digest, sig) == from.
    if (size(signature) !== 65) throw new Revert(fn, "ECRecover: invalid signature length");
    const s = BigInt(`0x${signature.slice(66, 130)}`);
    const v = Number.parseInt(signature.slice(130, 132), 16);
    if (s > SECP256K1_HALF_N) throw new Revert(fn, "ECRecover: invalid signature 's' value");
    if (v !== 27 && v !== 28) throw new Revert(fn, "ECRecover: invalid signature 'v' value");
    let recovered;
    try {
      recovered = await recoverTypedDataAddress({
        domain: { name: token.name, version: token.version, chainId, verifyingContract: tokenAddress },
        types: authorizationTypes,
        primaryType: "TransferWithAuthorization",
        message: { from, to, value, validAfter, validBefore, nonce },
        signature,
      });
    } catch {
      throw new Revert(fn, "ECRecover: invalid signature");
    }
    if (!isAddressEqual(recovered, from)) throw new Revert(fn, "FiatTokenV2: invalid signature");
    if (isAddressEqual(to, "0x0000000000000000000000000000000000000000")) {
      throw new Revert(fn, "ERC20: transfer to the zero address");
    }
    const fromBalance = this.balanceOf(chainId, tokenAddress, getAddress(from));
    if (value > fromBalance) throw new Revert(fn, "ERC20: transfer amount exceeds balance");
    if (write) {
      this.usedNonces.add(key);
      const toBalance = this.balanceOf(chainId, tokenAddress, getAddress(to));
      this.balances.set(`${chainId}:${tokenAddress}:${getAddress(from)}`.toLowerCase(), fromBalance - value);
      this.balances.set(`${chainId}:${tokenAddress}:${getAddress(to)}`.toLowerCase(), toBalance + value);
    }
    return {
      result: undefined,
      signature,
      logs: [
        {
          address: tokenAddress,
          topics: encodeEventTopics({ abi: AUTHORIZATION_USED_EVENT_ABI, eventName: "AuthorizationUsed", args: { authorizer: from, nonce } }),
          data: "0x",
        },
        {
          address: tokenAddress,
          topics: encodeEventTopics({ abi: TRANSFER_EVENT_ABI, eventName: "Transfer", args: { from, to } }),
          data: encodeAbiParameters([{ type: "uint256" }], [value]),
        },
      ],
    };
  }

  /** Multicall3.tryAggregate(false, calls) over the emulated contracts. */
  async tryAggregate(chainId, calls) {
    const out = [];
    for (const { target, callData } of calls) {
      try {
        const { functionName, args } = decodeFunctionData({ abi: eip3009ABI, data: callData });
        const { result } = await this.call(chainId, target, functionName, args ?? []);
        const returnData =
          result === undefined ? "0x" : encodeFunctionResult({ abi: eip3009ABI, functionName, result });
        out.push({ success: true, returnData });
      } catch {
        out.push({ success: false, returnData: "0x" });
      }
    }
    return out;
  }

  /** Mines a transaction: a receipt with `status` and `logs`, indexed by `hash`. */
  mine(hash, status, logs) {
    const blockNumber = BigInt(this.receipts.size + 1);
    const blockHash = keccak256(numberToHex(blockNumber, { size: 32 }));
    this.receipts.set(hash, {
      transactionHash: hash,
      status,
      blockNumber,
      blockHash,
      logs: logs.map((log, logIndex) => ({
        ...log,
        blockNumber,
        blockHash,
        transactionHash: hash,
        transactionIndex: 0,
        logIndex,
        removed: false,
      })),
    });
    return hash;
  }
}

export function chainIdOf(network) {
  if (network in NETWORKS_V1) return NETWORKS_V1[network];
  const m = /^eip155:(\d+)$/.exec(network);
  if (!m) throw new Error(`not an EVM network: ${network}`);
  return Number(m[1]);
}

/**
 * The FacilitatorEvmSigner the exact scheme uses, for one chain, backed by `chain`.
 * Shape: @x402/evm's `FacilitatorEvmSigner` (getAddresses, readContract, verifyTypedData,
 * writeContract, sendTransaction, waitForTransactionReceipt, getCode).
 */
export function stubSigner(chain, chainId) {
  return {
    getAddresses: () => [FACILITATOR_ADDRESS],

    // EOAs have no code; the token contracts and Multicall3 do.
    async getCode({ address }) {
      if (isAddressEqual(address, MULTICALL3) || chain.token(chainId, address)) return CONTRACT_CODE;
      return "0x";
    },

    // eth_call: no state change.
    async readContract({ address, functionName, args = [] }) {
      if (isAddressEqual(address, MULTICALL3)) {
        if (functionName !== "tryAggregate") throw new Revert(functionName, "unsupported Multicall3 function");
        return chain.tryAggregate(chainId, args[1]);
      }
      const { result } = await chain.call(chainId, address, functionName, args);
      return result;
    },

    // A real signature check (viem), never a constant.
    async verifyTypedData(args) {
      return verifyTypedData(args);
    },

    // A transaction: the contract call either reverts before broadcast (viem's gas estimation
    // throws the revert reason) or is mined. Hash: keccak256 of the 65-byte signature the
    // contract received (r‖s‖v), i.e. keccak256(payload.signature) for a v=27/28 signature.
    async writeContract({ address, functionName, args = [] }) {
      const outcome = await chain.call(chainId, address, functionName, args, !chain.revertWrites);
      const hash = keccak256(outcome.signature ?? concat([address, numberToHex(chain.receipts.size)]));
      return chain.mine(hash, chain.revertWrites ? "reverted" : "success", chain.revertWrites ? [] : outcome.logs ?? []);
    },

    async sendTransaction({ data }) {
      return chain.mine(keccak256(data), chain.revertWrites ? "reverted" : "success", []);
    },

    async waitForTransactionReceipt({ hash }) {
      const receipt = chain.receipts.get(hash);
      if (!receipt) throw new Error(`transaction ${hash} not found (stub chain)`);
      return receipt;
    },
  };
}

/**
 * Builds the reference facilitator over `chain` (default: a fresh StubChain). `onSettled`
 * receives `{ paymentPayload, paymentRequirements, transaction, network, payer, settledAt }`
 * for every successful settlement, before the settle call returns.
 */
export function createFacilitator({ chain = new StubChain(), onSettled = () => {} } = {}) {
  const facilitator = new x402Facilitator();
  for (const network of NETWORKS_V2) {
    facilitator.register(network, new ExactEvmScheme(stubSigner(chain, chainIdOf(network))));
  }
  for (const [network, chainId] of Object.entries(NETWORKS_V1)) {
    facilitator.registerV1(network, new ExactEvmSchemeV1(stubSigner(chain, chainId)));
  }
  facilitator.onAfterSettle(async ({ paymentPayload, requirements, result }) => {
    if (result?.success) {
      onSettled({
        paymentPayload,
        paymentRequirements: requirements,
        transaction: result.transaction,
        network: result.network,
        payer: result.payer,
        settledAt: Math.floor(Date.now() / 1000),
      });
    }
  });
  return { facilitator, chain };
}

/** JSON.stringify that writes bigints as decimal strings. */
export function toJson(value) {
  return JSON.stringify(value, (_, v) => (typeof v === "bigint" ? v.toString() : v));
}
