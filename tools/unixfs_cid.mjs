// Independent CID oracle for tests: the CID that js-ipfs's UnixFS importer gives a file with
// `--cid-version=1 --raw-leaves` (balanced layout, 262,144-byte chunks, 174 links per node).
// Usage: node tools/unixfs_cid.mjs FILE...   → one CID per line.
import { readFile } from 'node:fs/promises'
import { importer } from 'ipfs-unixfs-importer'
import { MemoryBlockstore } from 'blockstore-core/memory'
import { fixedSize } from 'ipfs-unixfs-importer/chunker'
import { balanced } from 'ipfs-unixfs-importer/layout'

for (const path of process.argv.slice(2)) {
  const content = await readFile(path)
  const blockstore = new MemoryBlockstore()
  let last
  for await (const entry of importer([{ content }], blockstore, {
    cidVersion: 1,
    rawLeaves: true,
    chunker: fixedSize({ chunkSize: 262144 }),
    layout: balanced({ maxChildrenPerNode: 174 }),
    reduceSingleLeafToSelf: true,
    wrapWithDirectory: false,
  })) {
    last = entry
  }
  console.log(last.cid.toString())
}
