// Compile contracts/*.sol with solc-js (the npm `solc` pinned in package.json) into the committed artifacts
// cloud/contracts/<Name>.json. Deterministic: same source + same compiler + same settings -> same bytes, which
// tests/chain/test_contract_artifacts.py checks by compiling into a temp dir and comparing.
//
// usage: node scripts/compile_contracts.mjs [--out DIR]     (default DIR: cloud/contracts)
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import solc from 'solc';

const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const CONTRACTS = ['CarbonTraceRegistry', 'NaiveHashStore'];
// shanghai: the newest target every node we meet runs (solc 0.8.37 defaults to osaka).
const EVM_VERSION = 'shanghai';
const OPTIMIZER = { enabled: true, runs: 200 };

function parseOutDir(argv) {
  const at = argv.indexOf('--out');
  if (at === -1) return join(REPO_ROOT, 'cloud', 'contracts');
  if (at + 1 >= argv.length) throw new Error('--out needs a directory');
  return resolve(argv[at + 1]);
}

function compileOne(name) {
  // The source key is repo-relative so the metadata hash in the bytecode does not depend on the checkout path.
  const sourcePath = `contracts/${name}.sol`;
  const source = readFileSync(join(REPO_ROOT, sourcePath), 'utf8');
  const input = {
    language: 'Solidity',
    sources: { [sourcePath]: { content: source } },
    settings: {
      evmVersion: EVM_VERSION,
      optimizer: OPTIMIZER,
      outputSelection: { [sourcePath]: { [name]: ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object', 'evm.deployedBytecode.immutableReferences'] } },
    },
  };
  const output = JSON.parse(solc.compile(JSON.stringify(input)));
  const problems = output.errors || [];
  const errors = problems.filter((p) => p.severity === 'error');
  for (const p of problems) process.stderr.write(p.formattedMessage + '\n');
  if (errors.length > 0) throw new Error(`${sourcePath}: ${errors.length} compile error(s)`);
  const contract = output.contracts[sourcePath][name];
  return {
    contractName: name,
    sourcePath,
    sourceSha256: createHash('sha256').update(source, 'utf8').digest('hex'),
    compiler: { name: 'solc-js', version: solc.version() },
    evmVersion: EVM_VERSION,
    optimizer: OPTIMIZER,
    abi: contract.abi,
    bytecode: '0x' + contract.evm.bytecode.object,
    deployedBytecode: '0x' + contract.evm.deployedBytecode.object,
    // where the deployed code holds immutables (filled in at deployment: the registry's predecessor link), as
    // {id: [{start, length}]} byte ranges; a test masks them to compare deployed code with the artifact
    immutableReferences: contract.evm.deployedBytecode.immutableReferences || {},
  };
}

const outDir = parseOutDir(process.argv.slice(2));
mkdirSync(outDir, { recursive: true });
for (const name of CONTRACTS) {
  const artifact = compileOne(name);
  const target = join(outDir, `${name}.json`);
  writeFileSync(target, JSON.stringify(artifact, null, 2) + '\n');
  process.stdout.write(`${target}: ${(artifact.deployedBytecode.length - 2) / 2} bytes deployed\n`);
}
