// Hardhat 2 is used only as a local JSON-RPC node for tests (`hardhat node`, see tests/chain/conftest.py).
// Contracts are compiled by scripts/compile_contracts.mjs with solc-js, so there is no `solidity` section and
// hardhat never downloads a compiler; its cache/artifacts dirs go under node_modules, out of the source tree.
// CommonJS (.cjs) because package.json is "type": "module".
module.exports = {
  networks: {
    hardhat: {
      chainId: 31337,
      // the EVM version the artifacts are compiled for
      hardfork: 'shanghai',
    },
  },
  paths: {
    cache: 'node_modules/.cache/hardhat/cache',
    artifacts: 'node_modules/.cache/hardhat/artifacts',
  },
};
