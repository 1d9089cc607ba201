#!/usr/bin/env node
// A behavioural smoke test of evm/out/*.json on a local anvil (npm @foundry-rs/anvil), with no
// dependency beyond Node: raw JSON-RPC over the built-in fetch, ABI encoding by the small helpers
// below, keccak-256 by anvil's own web3_sha3. It deploys the three contracts from the committed
// artifacts, anchors and reads back, settles batches, checks a replay is rejected on chain, and
// prints the gas of the anchor and settle transactions. Exits non-zero on any failed check.
//
//   node evm/smoke.mjs

import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const EVM_DIR = dirname(fileURLToPath(import.meta.url));
const REPO_ROOT = dirname(EVM_DIR);
const require = createRequire(import.meta.url);

const DEADLINE_MS = 120_000;

// ---------------------------------------------------------------------------------------------
// Checks

let passed = 0;
let failed = 0;
function check(ok, what, detail = '') {
  if (ok) {
    passed++;
    console.log(`ok    ${what}`);
  } else {
    failed++;
    console.log(`FAIL  ${what}${detail ? `: ${detail}` : ''}`);
  }
  return ok;
}
function checkEq(actual, expected, what) {
  return check(actual === expected, what, `got ${String(actual)}, expected ${String(expected)}`);
}

// ---------------------------------------------------------------------------------------------
// anvil

function anvilBinary() {
  const arch = { x64: 'amd64', arm64: 'arm64' }[process.arch];
  const name = process.platform === 'win32' ? 'anvil.exe' : 'anvil';
  try {
    const p = require.resolve(`@foundry-rs/anvil-${process.platform}-${arch}/bin/${name}`);
    if (existsSync(p)) return p;
  } catch {
    // fall through to the npm wrapper
  }
  const wrapper = join(REPO_ROOT, 'node_modules', '.bin', 'anvil');
  if (existsSync(wrapper)) return wrapper;
  throw new Error('anvil not found: run `npm ci` at the repository root');
}

let anvil = null;
const anvilRunning = () => anvil !== null && anvil.exitCode === null && anvil.signalCode === null;
function stopAnvil() {
  if (anvilRunning()) anvil.kill('SIGTERM');
}
process.on('exit', stopAnvil);

// SIGTERM, then waits up to 5 s for anvil to exit, then SIGKILL.
async function stopAnvilAndWait() {
  if (!anvilRunning()) return;
  const exited = new Promise((res) => anvil.once('exit', res));
  anvil.kill('SIGTERM');
  const timer = setTimeout(() => anvilRunning() && anvil.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(timer);
}

// Starts anvil on 127.0.0.1 with port 0 (the kernel picks a free one) and reads the port back.
function startAnvil() {
  const bin = anvilBinary();
  return new Promise((resolve, reject) => {
    anvil = spawn(bin, ['--host', '127.0.0.1', '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const timer = setTimeout(() => reject(new Error(`anvil did not start in 20 s:\n${out}`)), 20_000);
    const onData = (chunk) => {
      out += chunk;
      const m = out.match(/Listening on 127\.0\.0\.1:(\d+)/);
      if (m) {
        clearTimeout(timer);
        resolve({ bin, url: `http://127.0.0.1:${m[1]}` });
      }
    };
    anvil.stdout.setEncoding('utf8').on('data', onData);
    anvil.stderr.setEncoding('utf8').on('data', onData);
    anvil.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    anvil.on('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`anvil exited (${code ?? signal}) before listening:\n${out}`));
    });
  });
}

// ---------------------------------------------------------------------------------------------
// JSON-RPC

let RPC_URL = '';
let rpcId = 0;
class RpcError extends Error {
  constructor(method, error) {
    super(`${method}: ${error.message}`);
    this.code = error.code;
    this.data = error.data;
  }
}
async function rpc(method, params = []) {
  const res = await fetch(RPC_URL, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ jsonrpc: '2.0', id: ++rpcId, method, params }),
  });
  const body = await res.json();
  if (body.error) throw new RpcError(method, body.error);
  return body.result;
}

// ---------------------------------------------------------------------------------------------
// ABI encoding (only the types these contracts use)

const strip = (hex) => (hex.startsWith('0x') ? hex.slice(2) : hex);
const word = (n) => BigInt(n).toString(16).padStart(64, '0');
const hexOfUtf8 = (s) => Buffer.from(s, 'utf8').toString('hex');

async function keccak(hexData) {
  return rpc('web3_sha3', ['0x' + strip(hexData)]);
}

function isDynamic(type) {
  return type === 'string' || type === 'bytes' || type.endsWith('[]');
}

function encodeStatic(type, value) {
  if (type === 'address') return strip(value).toLowerCase().padStart(64, '0');
  if (type === 'bytes32') {
    const h = strip(value);
    if (h.length !== 64) throw new Error(`bytes32 must be 32 bytes: ${value}`);
    return h.toLowerCase();
  }
  if (type === 'bool') return word(value ? 1 : 0);
  if (/^uint\d+$/.test(type)) {
    const v = BigInt(value);
    if (v < 0n) throw new Error(`${type} must be non-negative: ${value}`);
    return word(v);
  }
  throw new Error(`unsupported static type ${type}`);
}

function encodeDynamic(type, value) {
  if (type === 'string' || type === 'bytes') {
    const h = type === 'string' ? hexOfUtf8(value) : strip(value);
    const padded = h.padEnd(Math.ceil(h.length / 64) * 64, '0');
    return word(h.length / 2) + padded;
  }
  if (type.endsWith('[]')) {
    const inner = type.slice(0, -2);
    if (isDynamic(inner)) throw new Error(`unsupported nested dynamic type ${type}`);
    return word(value.length) + value.map((v) => encodeStatic(inner, v)).join('');
  }
  throw new Error(`unsupported dynamic type ${type}`);
}

function encodeArgs(types, values) {
  if (types.length !== values.length) throw new Error(`expected ${types.length} arguments, got ${values.length}`);
  let head = '';
  let tail = '';
  const headSize = 32 * types.length;
  types.forEach((t, i) => {
    if (isDynamic(t)) {
      head += word(headSize + tail.length / 2);
      tail += encodeDynamic(t, values[i]);
    } else {
      head += encodeStatic(t, values[i]);
    }
  });
  return head + tail;
}

function decodeArgs(types, hex) {
  const h = strip(hex);
  const at = (i) => h.slice(i * 64, (i + 1) * 64);
  return types.map((t, i) => {
    const w = at(i);
    if (t === 'address') return '0x' + w.slice(24);
    if (t === 'bytes32') return '0x' + w;
    if (t === 'bool') return BigInt('0x' + w) !== 0n;
    if (/^uint\d+$/.test(t)) return BigInt('0x' + w);
    if (t === 'string') {
      const off = Number(BigInt('0x' + w)) * 2;
      const len = Number(BigInt('0x' + h.slice(off, off + 64))) * 2;
      return Buffer.from(h.slice(off + 64, off + 64 + len), 'hex').toString('utf8');
    }
    throw new Error(`unsupported output type ${t}`);
  });
}

const signature = (item) => `${item.name}(${item.inputs.map((i) => i.type).join(',')})`;

// A contract handle from an evm/out artifact: selectors and topics computed from its ABI.
async function loadArtifact(name) {
  const artifact = JSON.parse(readFileSync(join(EVM_DIR, 'out', `${name}.json`), 'utf8'));
  const fns = new Map();
  const events = new Map();
  const errors = new Map();
  for (const item of artifact.abi) {
    if (item.type === 'function') {
      const sig = signature(item);
      fns.set(item.name, { sig, selector: (await keccak(hexOfUtf8(sig))).slice(2, 10), item });
    } else if (item.type === 'event') {
      const sig = signature(item);
      events.set(item.name, { sig, topic: await keccak(hexOfUtf8(sig)), item });
    } else if (item.type === 'error') {
      const sig = signature(item);
      errors.set((await keccak(hexOfUtf8(sig))).slice(2, 10), { sig, item });
    }
  }
  const ctor = artifact.abi.find((i) => i.type === 'constructor');
  return { name, artifact, fns, events, errors, ctorTypes: ctor ? ctor.inputs.map((i) => i.type) : [] };
}

function calldata(c, fn, args) {
  const f = c.fns.get(fn);
  if (!f) throw new Error(`${c.name} has no function ${fn}`);
  return '0x' + f.selector + encodeArgs(f.item.inputs.map((i) => i.type), args);
}

// ---------------------------------------------------------------------------------------------
// Transactions

async function receiptOf(hash) {
  for (let i = 0; i < 100; i++) {
    const r = await rpc('eth_getTransactionReceipt', [hash]);
    if (r) return r;
    await new Promise((res) => setTimeout(res, 50));
  }
  throw new Error(`no receipt for ${hash}`);
}

async function send(from, to, data, gas) {
  const tx = { from, data };
  if (to) tx.to = to;
  if (gas) tx.gas = '0x' + gas.toString(16);
  const hash = await rpc('eth_sendTransaction', [tx]);
  return receiptOf(hash);
}

async function deploy(c, from, args = []) {
  const data = c.artifact.bytecode + encodeArgs(c.ctorTypes, args);
  const r = await send(from, null, data);
  if (r.status !== '0x1') throw new Error(`deploying ${c.name} failed: ${JSON.stringify(r)}`);
  const code = await rpc('eth_getCode', [r.contractAddress, 'latest']);
  check(code === c.artifact.deployedBytecode, `${c.name}: code on chain equals the artifact's deployedBytecode`,
    `${code.length} vs ${c.artifact.deployedBytecode.length} hex chars`);
  return { ...c, address: r.contractAddress, deployGas: BigInt(r.gasUsed) };
}

async function call(c, fn, args = [], from) {
  const out = await rpc('eth_call', [{ from, to: c.address, data: calldata(c, fn, args) }, 'latest']);
  return decodeArgs(c.fns.get(fn).item.outputs.map((o) => o.type), out);
}

async function transact(c, from, fn, args = [], gas) {
  return send(from, c.address, calldata(c, fn, args), gas);
}

// The custom error a call reverts with: "Name(args)" with decoded arguments, or a description.
async function revertOf(c, from, fn, args, errorSources = [c]) {
  try {
    await rpc('eth_call', [{ from, to: c.address, data: calldata(c, fn, args) }, 'latest']);
    return null;
  } catch (e) {
    if (!(e instanceof RpcError)) throw e;
    const data = typeof e.data === 'string' ? e.data : e.data?.data;
    if (typeof data !== 'string' || data.length < 10) return `revert without data (${e.message})`;
    for (const src of errorSources) {
      const err = src.errors.get(data.slice(2, 10));
      if (err) {
        const vals = decodeArgs(err.item.inputs.map((i) => i.type), data.slice(10));
        return `${err.item.name}(${vals.map((v) => (typeof v === 'string' ? v.toLowerCase() : String(v))).join(',')})`;
      }
    }
    return `unknown revert data ${data}`;
  }
}

function logsOf(receipt, c, event) {
  const topic = c.events.get(event).topic;
  return receipt.logs.filter((l) => l.address.toLowerCase() === c.address.toLowerCase() && l.topics[0] === topic);
}

const addr = (n) => '0x' + n.toString(16).padStart(40, '0');
const topicOf = (type, v) => '0x' + encodeStatic(type, v);
const h32 = (s) => '0x' + Buffer.from(s.padEnd(32, '\0').slice(0, 32), 'latin1').toString('hex');

// ---------------------------------------------------------------------------------------------
// The scenario

async function main() {
  const started = Date.now();
  const { bin, url } = await startAnvil();
  RPC_URL = url;
  console.log(`anvil: ${bin}`);
  console.log(`anvil: ${await rpc('web3_clientVersion')} at ${url}`);

  const [acct0, acct1] = (await rpc('eth_accounts')).map((a) => a.toLowerCase());

  const Anchor = await deploy(await loadArtifact('FedpoolAnchor'), acct0);
  const Payouts = await deploy(await loadArtifact('FedpoolPayouts'), acct0);
  const Token = await deploy(await loadArtifact('FedpoolRewardToken'), acct0, [
    'fedpool reward',
    'FPR',
    acct0,
    1_000_000,
  ]);

  // The ABI the Rust side will rely on.
  for (const [c, sigs] of [
    [Anchor, ['anchor(bytes32,uint64)', 'count()', 'anchorAt(uint256)']],
    [Payouts, ['settle(bytes32,uint64,address,address[],uint256[])', 'isSettled(address,bytes32,uint64)']],
  ]) {
    const have = [...c.fns.values()].map((f) => f.sig);
    for (const s of sigs) check(have.includes(s), `${c.name} has ${s}`);
  }
  check(Anchor.events.get('Anchored')?.sig === 'Anchored(uint256,address,bytes32,uint64)', 'Anchored event signature');
  check(
    Payouts.events.get('Settled')?.sig === 'Settled(address,bytes32,uint64,address,uint256,uint256)',
    'Settled event signature',
  );

  // --- Anchoring -----------------------------------------------------------------------------
  const root1 = '0x' + 'ab'.repeat(32);
  const root2 = '0x' + '5c'.repeat(32);
  checkEq((await call(Anchor, 'count'))[0], 0n, 'anchor: count() is 0 before any anchor');
  checkEq(await revertOf(Anchor, acct0, 'anchorAt', [0]), 'AnchorIndexOutOfRange(0,0)', 'anchor: anchorAt(0) on an empty log reverts');

  const [predicted] = await call(Anchor, 'anchor', [root1, 7], acct0);
  checkEq(predicted, 0n, 'anchor: anchor() returns index 0 for the first anchor');
  const a1 = await transact(Anchor, acct0, 'anchor', [root1, 7]);
  checkEq(a1.status, '0x1', 'anchor: first anchor transaction succeeds');
  const a1Block = await rpc('eth_getBlockByNumber', [a1.blockNumber, false]);
  {
    const [root, heads, blockNumber, timestamp, submitter] = await call(Anchor, 'anchorAt', [0]);
    checkEq(root, root1, 'anchor: anchorAt(0).root');
    checkEq(heads, 7n, 'anchor: anchorAt(0).heads');
    checkEq(blockNumber, BigInt(a1.blockNumber), 'anchor: anchorAt(0).blockNumber is the transaction\'s block');
    checkEq(timestamp, BigInt(a1Block.timestamp), 'anchor: anchorAt(0).timestamp is that block\'s timestamp');
    checkEq(submitter, acct0, 'anchor: anchorAt(0).submitter');
  }
  {
    const logs = logsOf(a1, Anchor, 'Anchored');
    checkEq(logs.length, 1, 'anchor: one Anchored event');
    const l = logs[0];
    checkEq(l.topics[1], topicOf('uint256', 0), 'anchor: Anchored.index (indexed)');
    checkEq(l.topics[2], topicOf('address', acct0), 'anchor: Anchored.submitter (indexed)');
    const [root, heads] = decodeArgs(['bytes32', 'uint64'], l.data);
    check(root === root1 && heads === 7n, 'anchor: Anchored data is (root, heads)');
  }
  // Anyone may anchor: a second account, recorded as the submitter.
  const a2 = await transact(Anchor, acct1, 'anchor', [root2, 9]);
  checkEq(a2.status, '0x1', 'anchor: a second account may anchor too');
  checkEq((await call(Anchor, 'count'))[0], 2n, 'anchor: count() is 2');
  {
    const [root, heads, , , submitter] = await call(Anchor, 'anchorAt', [1]);
    check(root === root2 && heads === 9n && submitter === acct1, 'anchor: anchorAt(1) is the second account\'s anchor');
  }
  checkEq(await revertOf(Anchor, acct0, 'anchorAt', [2]), 'AnchorIndexOutOfRange(2,2)', 'anchor: anchorAt(count()) reverts');

  // --- Token ---------------------------------------------------------------------------------
  checkEq((await call(Token, 'decimals'))[0], 0n, 'token: decimals() is 0');
  checkEq((await call(Token, 'totalSupply'))[0], 1_000_000n, 'token: totalSupply() is 1,000,000');
  checkEq((await call(Token, 'balanceOf', [acct0]))[0], 1_000_000n, 'token: the initial holder has the whole supply');
  checkEq((await call(Token, 'name'))[0], 'fedpool reward', 'token: name()');
  checkEq((await call(Token, 'symbol'))[0], 'FPR', 'token: symbol()');
  check(!Token.fns.has('mint') && !Token.fns.has('owner'), 'token: no mint() or owner() in the ABI');

  // --- Settlement ----------------------------------------------------------------------------
  const model = h32('fedpool/model/adult-income');
  const p1 = addr(0x1001);
  const p2 = addr(0x1002);
  const balance = async (a) => (await call(Token, 'balanceOf', [a]))[0];
  const errs = [Payouts, Token];

  checkEq(
    await revertOf(Payouts, acct0, 'settle', [model, 1, Token.address, [p1, p2], [600]], errs),
    'LengthMismatch(2,1)',
    'settle: unequal lengths revert',
  );
  checkEq(
    await revertOf(Payouts, acct0, 'settle', [model, 1, Token.address, [], []], errs),
    'EmptyBatch()',
    'settle: an empty batch reverts',
  );
  checkEq(
    await revertOf(Payouts, acct0, 'settle', [model, 1, Token.address, [p1, p2], [600, 400]], errs),
    `ERC20InsufficientAllowance(${Payouts.address.toLowerCase()},0,600)`,
    'settle: without an allowance the token refuses',
  );
  checkEq(
    await revertOf(Payouts, acct0, 'settle', [model, 1, acct1, [p1], [1]], errs),
    `SafeERC20FailedOperation(${acct1})`,
    'settle: a token address without code is refused',
  );
  checkEq((await call(Payouts, 'isSettled', [acct0, model, 1]))[0], false, 'settle: a reverted batch is not marked settled');

  const approve = await transact(Token, acct0, 'approve', [Payouts.address, 2_000_000]);
  checkEq(approve.status, '0x1', 'token: approve the payouts contract');
  checkEq(
    await revertOf(Payouts, acct0, 'settle', [model, 1, Token.address, [p1, p2], [999_999, 2]], errs),
    `ERC20InsufficientBalance(${acct0},1,2)`,
    'settle: a batch beyond the payer\'s balance reverts',
  );
  {
    const r = await transact(Payouts, acct0, 'settle', [model, 1, Token.address, [p1, p2], [999_999, 2]], 300_000n);
    checkEq(r.status, '0x0', 'settle: that batch, mined, reverts on chain');
    checkEq(await balance(p1), 0n, 'settle: ... and its first payment is undone with it');
    checkEq((await call(Payouts, 'isSettled', [acct0, model, 1]))[0], false, 'settle: ... and the batch is not marked settled');
  }

  checkEq(
    await revertOf(Payouts, acct0, 'settle', [model, 1, Token.address, [p1, addr(0)], [600, 400]], errs),
    `ERC20InvalidReceiver(${addr(0)})`,
    'settle: a batch paying the zero address reverts whole',
  );

  const s1 = await transact(Payouts, acct0, 'settle', [model, 1, Token.address, [p1, p2], [600, 400]]);
  checkEq(s1.status, '0x1', 'settle: batch (model, nonce 1) paying 600 and 400 succeeds');
  checkEq(await balance(p1), 600n, 'settle: payee 1 holds 600');
  checkEq(await balance(p2), 400n, 'settle: payee 2 holds 400');
  checkEq(await balance(acct0), 999_000n, 'settle: the payer holds 999,000');
  checkEq(await balance(Payouts.address), 0n, 'settle: the payouts contract holds nothing');
  checkEq((await call(Payouts, 'isSettled', [acct0, model, 1]))[0], true, 'settle: isSettled(payer, model, 1)');
  checkEq((await call(Payouts, 'isSettled', [acct1, model, 1]))[0], false, 'settle: isSettled is per payer');
  {
    const logs = logsOf(s1, Payouts, 'Settled');
    checkEq(logs.length, 1, 'settle: one Settled event');
    const l = logs[0];
    check(
      l.topics[1] === topicOf('address', acct0) && l.topics[2] === model && l.topics[3] === topicOf('uint64', 1),
      'settle: Settled topics are (payer, modelId, nonce)',
    );
    const [token, total, count] = decodeArgs(['address', 'uint256', 'uint256'], l.data);
    check(
      token === Token.address.toLowerCase() && total === 1000n && count === 2n,
      'settle: Settled data is (token, total 1000, count 2)',
      `${token} ${total} ${count}`,
    );
    checkEq(logsOf(s1, Token, 'Transfer').length, 2, 'settle: two Transfer events, one per payee');
  }

  // Replay: rejected by eth_call with the custom error, and on chain when mined anyway.
  const replayArgs = [model, 1, Token.address, [p1, p2], [600, 400]];
  checkEq(
    await revertOf(Payouts, acct0, 'settle', replayArgs, errs),
    `BatchAlreadySettled(${acct0},${model},1)`,
    'replay: eth_call reverts with BatchAlreadySettled(payer, modelId, nonce)',
  );
  const replay = await transact(Payouts, acct0, 'settle', replayArgs, 300_000n);
  checkEq(replay.status, '0x0', 'replay: the mined replay transaction reverts on chain');
  check((await balance(p1)) === 600n && (await balance(p2)) === 400n, 'replay: balances unchanged');

  // Another nonce of the same model settles fine.
  const s2 = await transact(Payouts, acct0, 'settle', [model, 2, Token.address, [p1, p2], [600, 400]]);
  checkEq(s2.status, '0x1', 'settle: nonce 2 of the same model succeeds');
  check((await balance(p1)) === 1200n && (await balance(p2)) === 800n, 'settle: nonce 2 paid 600 and 400 again');

  // A batch is keyed by payer too: another payer may use the same (model, nonce).
  await transact(Token, acct0, 'transfer', [acct1, 1000]);
  await transact(Token, acct1, 'approve', [Payouts.address, 1000]);
  const s3 = await transact(Payouts, acct1, 'settle', [model, 1, Token.address, [p1], [5]]);
  checkEq(s3.status, '0x1', 'settle: another payer may settle its own (model, nonce 1)');
  checkEq(await balance(p1), 1205n, 'settle: that payer\'s batch paid');

  // 50 fresh payees.
  const many = Array.from({ length: 50 }, (_, i) => addr(0x2000 + i));
  const amounts = many.map((_, i) => 10 + i);
  const s50 = await transact(Payouts, acct0, 'settle', [model, 3, Token.address, many, amounts]);
  checkEq(s50.status, '0x1', 'settle: a batch of 50 payees succeeds');
  check((await balance(many[0])) === 10n && (await balance(many[49])) === 59n, 'settle: first and last of 50 paid');
  {
    const [, total, count] = decodeArgs(['address', 'uint256', 'uint256'], logsOf(s50, Payouts, 'Settled')[0].data);
    check(total === BigInt(amounts.reduce((a, b) => a + b, 0)) && count === 50n, 'settle: Settled total and count for 50');
  }

  // --- Gas -------------------------------------------------------------------------------------
  const gas = (r) => BigInt(r.gasUsed).toLocaleString('en-US');
  console.log('');
  console.log('gas used (transaction total, including the 21,000 base and calldata):');
  console.log(`  deploy FedpoolAnchor                         ${Anchor.deployGas.toLocaleString('en-US')}`);
  console.log(`  deploy FedpoolPayouts                        ${Payouts.deployGas.toLocaleString('en-US')}`);
  console.log(`  deploy FedpoolRewardToken                    ${Token.deployGas.toLocaleString('en-US')}`);
  console.log(`  anchor, first (empty log)                    ${gas(a1)}`);
  console.log(`  anchor, second                               ${gas(a2)}`);
  console.log(`  settle, 2 payees, both new holders           ${gas(s1)}`);
  console.log(`  settle, 2 payees, both already holders       ${gas(s2)}`);
  console.log(`  settle, 50 payees, all new holders           ${gas(s50)}`);
  console.log(`  replayed settle (reverted on chain)          ${gas(replay)}`);
  console.log(`elapsed: ${((Date.now() - started) / 1000).toFixed(1)} s`);
}

const deadline = setTimeout(() => {
  console.log(`FAIL  smoke did not finish in ${DEADLINE_MS / 1000} s`);
  stopAnvil();
  process.exit(1);
}, DEADLINE_MS);

try {
  await main();
} catch (e) {
  failed++;
  console.log(`FAIL  ${e.stack ?? e}`);
} finally {
  clearTimeout(deadline);
  await stopAnvilAndWait();
}
console.log('');
console.log(`evm smoke: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
