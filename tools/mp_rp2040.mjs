#!/usr/bin/env node
// Boot MicroPython on an emulated Raspberry Pi Pico (npm rp2040js 1.4.1) and run scripts there.
//
//   node tools/mp_rp2040.mjs --uf2 IMAGE.uf2 --bootrom bootrom.mjs --fs LITTLEFS.img SCRIPT.py [SCRIPT.py ...]
//
// Origin: ../shared/emulators/rp2040/mp_rp2040.mjs, from the emulator kit prepared beside this project; that
// file states no licence of its own, so it is treated as this project's code (rp2040js, which it drives, is
// MIT). Changed here:
//  - the image and the boot ROM are named by path (they stay in ../shared/emulators/rp2040: the ROM is
//    Raspberry Pi's B1 boot ROM, BSD-3-Clause; the UF2 is MicroPython 1.27.0 RPI_PICO, MIT) and the boot
//    ROM is imported by URL, so this file lives in the project and resolves rp2040js from its node_modules;
//  - only a littlefs image is staged (flash offset 0xA0000, the RPI_PICO filesystem): the emulator does
//    not model flash erase/program, so copying files over the REPL, which writes flash, is gone;
//  - several scripts run in one boot, one after another in the same interpreter (raw REPL keeps the
//    globals), and each step's emulated cycles go to stderr as one JSON line:
//      {"mp_rp2040_step": {"script": NAME, "cycles": N, "emulated_ms": N / 125e3, "host_s": S, "ok": BOOL,
//                          "output": THE SCRIPT'S STDOUT}}
//    so a caller can time one piece of work (a signature) in emulated cycles, not host time.
// Kept from the original: the UF2 loader, the USB-CDC raw REPL, and holding the host's OUT reads back until
// there is data (rp2040js's stock USBCDC answers every armed buffer at once with an empty packet, ~14k USB
// interrupts a second, which makes emulated timings ~3x too slow).
//
// Each script's output goes to stdout (CRLF as LF). Exit status: 0 if every script raised nothing; 1 at
// the first script that raised (its traceback on stderr; later scripts do not run); 2 on bad usage.
import fs from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { Simulator, USBCDC, ConsoleLogger, LogLevel } from "rp2040js";

const MHZ = 125;
// RPI_PICO's littlefs partition starts 640 KiB into the 2 MiB flash (MicroPython's rp2 board config)
const FS_FLASH_OFFSET = 0xa0000;
const MAX_EMULATED_S_PER_SCRIPT = 600;

function usage(message) {
  process.stderr.write(`mp_rp2040: ${message}\n`);
  process.stderr.write("usage: node tools/mp_rp2040.mjs --uf2 IMAGE.uf2 --bootrom bootrom.mjs --fs FS.img SCRIPT.py...\n");
  process.exit(2);
}

function parseArgs(argv) {
  const opts = { uf2: null, bootrom: null, fs: null, scripts: [] };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--uf2" || arg === "--bootrom" || arg === "--fs") {
      if (i + 1 >= argv.length) usage(`${arg} needs a path`);
      opts[arg.slice(2)] = argv[++i];
    } else if (arg.startsWith("--")) {
      usage(`unknown option ${arg}`);
    } else {
      opts.scripts.push(arg);
    }
  }
  for (const name of ["uf2", "bootrom", "fs"]) {
    if (!opts[name]) usage(`--${name} is required`);
    if (!fs.existsSync(opts[name])) usage(`--${name} ${opts[name]}: no such file`);
  }
  if (!opts.scripts.length) usage("no script to run");
  for (const script of opts.scripts) if (!fs.existsSync(script)) usage(`${script}: no such file`);
  return opts;
}

const opts = parseArgs(process.argv.slice(2));
const { bootromB1 } = await import(pathToFileURL(path.resolve(opts.bootrom)).href);
const sim = new Simulator();
const clock = sim.clock;
const mcu = sim.rp2040;
mcu.loadBootrom(bootromB1);
mcu.logger = new ConsoleLogger(LogLevel.Error);

// UF2: 512-byte blocks, magic at 0, target address at 12, payload size at 16, payload from 32
const uf2 = fs.readFileSync(opts.uf2);
for (let off = 0; off + 512 <= uf2.length; off += 512) {
  const block = uf2.subarray(off, off + 512);
  if (block.readUInt32LE(0) !== 0x0a324655) continue;
  const addr = block.readUInt32LE(12), size = block.readUInt32LE(16);
  mcu.flash.set(block.subarray(32, 32 + size), addr - 0x10000000);
}
mcu.flash.set(fs.readFileSync(opts.fs), FS_FLASH_OFFSET);

const cdc = new USBCDC(mcu.usbCtrl);
let connected = false;
cdc.onDeviceConnected = () => { connected = true; };
let rx = "";
cdc.onSerialData = (buf) => { rx += Buffer.from(buf).toString("latin1"); };
const txQueue = [];
let pendingRead = null;
mcu.usbCtrl.onEndpointRead = (ep, size) => {
  if (ep === cdc.outEndpoint) pendingRead = { ep, size };
};
function pumpRead() {
  if (!pendingRead || !txQueue.length) return;
  const { ep, size } = pendingRead;
  pendingRead = null;
  mcu.usbCtrl.endpointReadDone(ep, Uint8Array.from(txQueue.splice(0, Math.min(size, txQueue.length))));
}
function send(str) { for (const ch of Buffer.from(str, "latin1")) txQueue.push(ch); }

const cycleNanos = 1000 / MHZ;
function step(n) {
  const core = mcu.core;
  for (let i = 0; i < n; i++) {
    if (core.waiting) {
      const dt = clock.nanosToNextAlarm;
      clock.tick(dt);
      i += dt / cycleNanos;
    } else {
      clock.tick(core.executeInstruction() * cycleNanos);
    }
  }
  pumpRead();
}

function runUntil(pred, what, maxEmulatedSeconds) {
  const start = clock.nanos;
  while (!pred()) {
    step(20000);
    if ((clock.nanos - start) / 1e9 > maxEmulatedSeconds) {
      throw new Error(`timeout waiting for ${what}; rx tail: ${JSON.stringify(rx.slice(-400))}`);
    }
  }
}

const wall0 = Date.now();
mcu.core.PC = 0x10000000;
runUntil(() => connected, "USB connect", 20);
send("\r\n");
runUntil(() => rx.includes(">>> "), "REPL prompt", 20);
process.stderr.write(`mp_rp2040: booted: ${rx.trim().split("\n").slice(-2).join(" | ")}\n`);
rx = "";
send("\r\x03\x03\x01");
runUntil(() => rx.includes("raw REPL; CTRL-B to exit\r\n>"), "raw REPL", 20);

// raw REPL: code, Ctrl-D; the board answers "OK", stdout, \x04, the traceback (empty if none), \x04, ">"
function exec(code, name) {
  rx = "";
  const c0 = mcu.core.cycles, t0 = Date.now();
  send(code + "\x04");
  runUntil(() => /OK[\s\S]*\x04[\s\S]*\x04>$/.test(rx), `the end of ${name}`, MAX_EMULATED_S_PER_SCRIPT);
  const m = /OK([\s\S]*?)\x04([\s\S]*?)\x04>$/.exec(rx);
  const cycles = mcu.core.cycles - c0;
  const report = { script: name, cycles, emulated_ms: cycles / MHZ / 1e3, host_s: (Date.now() - t0) / 1000,
                   ok: !m[2], output: m[1].replace(/\r\n/g, "\n") };
  process.stderr.write(JSON.stringify({ mp_rp2040_step: report }) + "\n");
  return { out: m[1], err: m[2] };
}

let status = 0;
for (const script of opts.scripts) {
  const r = exec(fs.readFileSync(script, "latin1"), path.basename(script));
  process.stdout.write(r.out.replace(/\r\n/g, "\n"));
  if (r.err) {
    process.stderr.write(r.err.replace(/\r\n/g, "\n"));
    status = 1;
    break;
  }
}
process.stderr.write(`mp_rp2040: wall ${(Date.now() - wall0) / 1000} s, emulated ${(clock.nanos / 1e9).toFixed(2)} s\n`);
process.exit(status);
