#!/usr/bin/env node
// Run a script under real MicroPython (the WebAssembly port from npm
// `@micropython/micropython-webassembly-pyscript`) with a CPython-like exit status.
//
//   node tools/mpy_run.mjs [--lib DIR]... [--heap N[k|m]] [--mem-report] SCRIPT.py [ARG...]
//   node tools/mpy_run.mjs [--lib DIR]... -c CODE [ARG...]
//   node tools/mpy_run.mjs [--lib DIR]... [- | nothing]        (code read from stdin)
//
// --lib DIR   copies DIR's .py/.mpy files into the MicroPython filesystem under /lib (on sys.path),
//             keeping subfolders. A DIR that is itself a package (has __init__.py) lands in
//             /lib/<its name>/, otherwise its contents land in /lib/ (so `--lib firmware` gives
//             /lib/carbontrace_device/... and `--lib carbontrace_protocol` gives /lib/carbontrace_protocol/...).
// --heap N    initial MicroPython GC heap in bytes (k/m suffixes). This port grows the heap on demand,
//             so it is a starting size, not a hard limit: --mem-report shows how far it grew.
// --mem-report  after the run, print one JSON line to stderr: {"mp_run_mem": {...}}: heap_initial,
//             alloc_bytes (bytes the script allocated: this port never collects garbage while Python code
//             runs, it grows the heap and collects only when control returns to JS, so this is total
//             allocation, an upper bound of the live peak), heap_used_after (still in use once the run's
//             garbage is collected: modules, interned strings).
//
// Exit status: 0 on normal end; SystemExit(code) gives code (None -> 0, a non-int prints it and gives 1);
// an uncaught exception prints MicroPython's traceback to stderr and gives 1. The package's own CLI
// always exits 0 and crashes when stdin is a pipe, hence this runner.

import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const PACKAGE = path.join(
  HERE, "..", "node_modules", "@micropython", "micropython-webassembly-pyscript", "micropython.mjs",
);
const LIB_ROOT = "/lib";
const SCRIPT_PATH = "/main_script.py";
const SKIP_DIRS = new Set(["__pycache__", "node_modules", ".git", ".venv"]);

function usage(message) {
  process.stderr.write(`mpy_run: ${message}\n`);
  process.stderr.write("usage: node tools/mpy_run.mjs [--lib DIR]... [--heap N] [--mem-report] (SCRIPT.py | -c CODE | -) [ARG...]\n");
  process.exit(2);
}

function parseSize(text) {
  const match = /^(\d+)([kKmM]?)$/.exec(text);
  if (!match) usage(`bad heap size ${JSON.stringify(text)}`);
  const scale = { "": 1, k: 1024, m: 1024 * 1024 }[match[2].toLowerCase()];
  return Number(match[1]) * scale;
}

function parseArgs(argv) {
  const opts = { libs: [], heap: 256 * 1024, memReport: false, code: null, scriptName: null, args: [] };
  let i = 0;
  while (i < argv.length) {
    const arg = argv[i];
    if (arg === "--lib") {
      if (i + 1 >= argv.length) usage("--lib needs a directory");
      opts.libs.push(argv[i + 1]);
      i += 2;
    } else if (arg === "--heap") {
      if (i + 1 >= argv.length) usage("--heap needs a size");
      opts.heap = parseSize(argv[i + 1]);
      i += 2;
    } else if (arg === "--mem-report") {
      opts.memReport = true;
      i += 1;
    } else if (arg === "-c") {
      if (i + 1 >= argv.length) usage("-c needs code");
      opts.code = argv[i + 1];
      opts.scriptName = "-c";
      opts.args = argv.slice(i + 2);
      return opts;
    } else if (arg === "-") {
      opts.code = fs.readFileSync(0, "utf8");
      opts.scriptName = "-";
      opts.args = argv.slice(i + 1);
      return opts;
    } else if (arg.startsWith("--")) {
      usage(`unknown option ${arg}`);
    } else {
      opts.code = fs.readFileSync(arg, "utf8");
      opts.scriptName = arg;
      opts.args = argv.slice(i + 1);
      return opts;
    }
  }
  opts.code = fs.readFileSync(0, "utf8");
  opts.scriptName = "-";
  return opts;
}

function mkdirs(FS, dir) {
  let current = "";
  for (const part of dir.split("/").filter(Boolean)) {
    current += "/" + part;
    try {
      FS.mkdir(current);
    } catch (err) {
      if (!FS.analyzePath(current).exists) throw err;
    }
  }
}

function copyTree(FS, hostDir, mpDir) {
  mkdirs(FS, mpDir);
  for (const entry of fs.readdirSync(hostDir, { withFileTypes: true })) {
    const hostPath = path.join(hostDir, entry.name);
    if (entry.isDirectory()) {
      if (!SKIP_DIRS.has(entry.name) && !entry.name.startsWith(".")) copyTree(FS, hostPath, `${mpDir}/${entry.name}`);
    } else if (entry.name.endsWith(".py") || entry.name.endsWith(".mpy")) {
      FS.writeFile(`${mpDir}/${entry.name}`, fs.readFileSync(hostPath));
    }
  }
}

function installLib(FS, hostDir) {
  if (!fs.statSync(hostDir, { throwIfNoEntry: false })?.isDirectory()) usage(`--lib ${hostDir}: not a directory`);
  const isPackage = fs.existsSync(path.join(hostDir, "__init__.py")) || fs.existsSync(path.join(hostDir, "__init__.mpy"));
  const target = isPackage ? `${LIB_ROOT}/${path.basename(path.resolve(hostDir))}` : LIB_ROOT;
  copyTree(FS, hostDir, target);
}

// MicroPython writes one byte per callback; collect them and write whole chunks.
function byteSink(stream) {
  let chunk = [];
  const flush = () => {
    if (chunk.length) {
      stream.write(Buffer.from(chunk));
      chunk = [];
    }
  };
  const sink = (bytes) => {
    for (const b of bytes) {
      chunk.push(b);
      if (b === 10 || chunk.length >= 4096) flush();
    }
  };
  return { sink, flush };
}

// The script runs through exec() so its traceback names the script and SystemExit's code can be read
// back as a value (the JS side only sees the exception's type and text).
const WRAPPER = `
import gc
_mp_run_alloc = 0
def _mp_run_main():
    import sys
    sys.argv.clear()
    for _arg in _mp_run_argv:
        sys.argv.append(_arg)
    _globals = {"__name__": "__main__", "__file__": _mp_run_name}
    global _mp_run_alloc
    _start = gc.mem_alloc()
    try:
        exec(compile(open(${JSON.stringify(SCRIPT_PATH)}).read(), _mp_run_name, "exec"), _globals)
    except SystemExit as exc:
        return exc.args[0] if exc.args else None
    finally:
        _mp_run_alloc = gc.mem_alloc() - _start
    return None
_mp_run_result = _mp_run_main()
`;

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const { loadMicroPython } = await import(PACKAGE);
  const out = byteSink(process.stdout);
  const err = byteSink(process.stderr);
  let capture = null; // when set, stdout goes here (to read mem_info's text)
  const mp = await loadMicroPython({
    heapsize: opts.heap,
    linebuffer: false,
    stdout: (bytes) => (capture ? capture.push(...bytes) : out.sink(bytes)),
    stderr: err.sink,
  });
  for (const dir of opts.libs) installLib(mp.FS, dir);
  mp.FS.writeFile(SCRIPT_PATH, opts.code);
  mp.globals.set("_mp_run_name", opts.scriptName);
  mp.globals.set("_mp_run_argv", [opts.scriptName, ...opts.args]);

  let exitCode = 0;
  try {
    mp.runPython(WRAPPER);
    const result = mp.globals.get("_mp_run_result");
    if (result === null || result === undefined) {
      exitCode = 0;
    } else if (typeof result === "number" && Number.isInteger(result)) {
      exitCode = result & 0xff;
    } else {
      out.flush();
      err.sink(Buffer.from(`${String(result)}\n`));
      exitCode = 1;
    }
  } catch (error) {
    if (error?.name !== "PythonError") throw error;
    out.flush();
    err.sink(Buffer.from(error.message.endsWith("\n") ? error.message : `${error.message}\n`));
    exitCode = 1;
  }
  out.flush();

  if (opts.memReport) {
    // The run's garbage is collected once control is back in JS; what stays is the script's globals,
    // modules and interned strings.
    capture = [];
    mp.runPython("import micropython\nmicropython.mem_info()");
    const text = Buffer.from(capture).toString("utf8");
    capture = null;
    const gcLine = /GC: total: (\d+), used: (\d+)/.exec(text);
    const report = {
      heap_initial: opts.heap,
      alloc_bytes: mp.globals.get("_mp_run_alloc"),
      heap_used_after: gcLine ? Number(gcLine[2]) : null,
    };
    err.sink(Buffer.from(`${JSON.stringify({ mp_run_mem: report })}\n`));
  }
  err.flush();
  process.exitCode = exitCode;
}

main().catch((error) => {
  process.stderr.write(`mpy_run: ${error?.stack ?? error}\n`);
  process.exitCode = 70;
});
