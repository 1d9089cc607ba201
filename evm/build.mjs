#!/usr/bin/env node
// Compiles evm/src/*.sol with the pinned solc (npm `solc`, the JS build) and writes
// evm/out/<Contract>.json: { contractName, abi, bytecode, deployedBytecode, compiler, sourceHash }.
//
//   node evm/build.mjs           write evm/out/*.json
//   node evm/build.mjs --check   compile in memory; exit 1 naming every contract whose committed
//                                evm/out/<Contract>.json differs from what the sources give
//
// The output is deterministic: the same sources, compiler and settings give the same bytes.
// Source unit names are relative ("src/FedpoolAnchor.sol", "@openzeppelin/contracts/..."), never
// absolute paths, so the metadata hash at the end of the bytecode does not depend on the checkout.

import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, normalize, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const solc = require('solc');

const EVM_DIR = dirname(fileURLToPath(import.meta.url));
const REPO_ROOT = dirname(EVM_DIR);
const NODE_MODULES = join(REPO_ROOT, 'node_modules');
const OUT_DIR = join(EVM_DIR, 'out');

// The pinned compiler; package.json pins the same exact version of npm `solc`.
const SOLC_VERSION = '0.8.37';

// Source files, in the fixed order used for `sourceHash`, and the contract each one defines.
const SOURCES = [
  { file: 'src/FedpoolAnchor.sol', contract: 'FedpoolAnchor' },
  { file: 'src/FedpoolPayouts.sol', contract: 'FedpoolPayouts' },
  { file: 'src/FedpoolRewardToken.sol', contract: 'FedpoolRewardToken' },
];

// Everything here except outputSelection is recorded in each artifact as compiler.settings.
const SETTINGS = {
  optimizer: { enabled: true, runs: 200 },
  evmVersion: 'cancun',
};

function fail(message) {
  console.error(`evm/build: ${message}`);
  process.exit(1);
}

// Resolves an import that is not one of our sources (e.g. "@openzeppelin/contracts/...") from
// the repository's node_modules, refusing anything that would escape it.
function findImport(path) {
  const full = normalize(join(NODE_MODULES, path));
  if (!full.startsWith(NODE_MODULES + sep)) return { error: `import outside node_modules: ${path}` };
  if (!existsSync(full)) {
    return { error: `not found: ${path} (looked in ${full}; run \`npm ci\` at the repository root)` };
  }
  return { contents: readFileSync(full, 'utf8') };
}

function compile() {
  const listed = new Set(SOURCES.map(({ file }) => file));
  const unlisted = readdirSync(join(EVM_DIR, 'src'))
    .filter((f) => f.endsWith('.sol') && !listed.has(`src/${f}`));
  if (unlisted.length > 0) fail(`evm/src/${unlisted.join(', evm/src/')}: not in SOURCES in evm/build.mjs`);

  const version = solc.version();
  if (!version.startsWith(SOLC_VERSION + '+')) {
    fail(`npm solc is ${version}, expected ${SOLC_VERSION}; run \`npm ci\` at the repository root`);
  }

  const sources = {};
  const hash = createHash('sha256');
  for (const { file } of SOURCES) {
    const bytes = readFileSync(join(EVM_DIR, file));
    hash.update(bytes);
    sources[file] = { content: bytes.toString('utf8') };
  }
  const sourceHash = hash.digest('hex');

  const input = {
    language: 'Solidity',
    sources,
    settings: {
      ...SETTINGS,
      outputSelection: Object.fromEntries(
        SOURCES.map(({ file }) => [file, { '*': ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object'] }]),
      ),
    },
  };
  const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImport }));

  let errors = 0;
  for (const d of output.errors ?? []) {
    const text = (d.formattedMessage ?? d.message).trimEnd();
    if (d.severity === 'error') {
      errors++;
      console.error(text);
    } else {
      console.warn(text);
    }
  }
  if (errors > 0) fail(`${errors} compiler error(s)`);

  const artifacts = new Map();
  for (const { file, contract } of SOURCES) {
    const c = output.contracts?.[file]?.[contract];
    if (!c) fail(`${contract}: no output for ${file}`);
    const bytecode = c.evm.bytecode.object;
    const deployedBytecode = c.evm.deployedBytecode.object;
    if (!bytecode || !deployedBytecode) fail(`${contract}: empty bytecode (abstract contract?)`);
    const artifact = {
      contractName: contract,
      abi: c.abi,
      bytecode: '0x' + bytecode,
      deployedBytecode: '0x' + deployedBytecode,
      compiler: { version, settings: SETTINGS },
      sourceHash,
    };
    artifacts.set(contract, JSON.stringify(artifact, null, 2) + '\n');
  }
  return artifacts;
}

// Names the fields in which a committed artifact differs from a fresh one.
function whatDiffers(committed, fresh) {
  let a;
  try {
    a = JSON.parse(committed);
  } catch {
    return 'not valid JSON';
  }
  const b = JSON.parse(fresh);
  const keys = [...new Set([...Object.keys(a), ...Object.keys(b)])];
  const differ = keys.filter((k) => JSON.stringify(a[k]) !== JSON.stringify(b[k]));
  return differ.length > 0 ? `${differ.join(', ')} ${differ.length === 1 ? 'differs' : 'differ'} from what evm/src gives` : 'formatting differs';
}

const args = process.argv.slice(2);
const unknown = args.filter((a) => a !== '--check');
if (unknown.length > 0) fail(`unknown argument(s): ${unknown.join(' ')} (usage: node evm/build.mjs [--check])`);
const check = args.includes('--check');

const artifacts = compile();

if (check) {
  const stale = [];
  for (const [contract, text] of artifacts) {
    const path = join(OUT_DIR, `${contract}.json`);
    if (!existsSync(path)) {
      stale.push(`${contract} (evm/out/${contract}.json is missing)`);
    } else {
      const committed = readFileSync(path, 'utf8');
      if (committed !== text) stale.push(`${contract} (evm/out/${contract}.json: ${whatDiffers(committed, text)})`);
    }
  }
  const extra = existsSync(OUT_DIR)
    ? readdirSync(OUT_DIR).filter((f) => f.endsWith('.json') && !artifacts.has(f.slice(0, -'.json'.length)))
    : [];
  for (const f of extra) stale.push(`${f.slice(0, -'.json'.length)} (evm/out/${f} has no source)`);
  if (stale.length > 0) {
    for (const s of stale) console.error(`evm/build --check: stale: ${s}`);
    console.error('evm/build --check: run `node evm/build.mjs` and commit evm/out/');
    process.exit(1);
  }
  console.log(`evm/build --check: ${artifacts.size} artifacts match the sources (solc ${solc.version()})`);
} else {
  mkdirSync(OUT_DIR, { recursive: true });
  for (const [contract, text] of artifacts) {
    const path = join(OUT_DIR, `${contract}.json`);
    const before = existsSync(path) ? readFileSync(path, 'utf8') : null;
    if (before !== text) writeFileSync(path, text);
    console.log(`evm/out/${contract}.json ${before === text ? 'unchanged' : 'written'}`);
  }
}
