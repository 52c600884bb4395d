// Runs the bare-metal tinylm RAM image in rp2040js, with both cores (dual_core.js), and reports,
// as JSON on stdout, what it sent on UART0 with the cycle count at each byte. Used by
// tinylm/boards/emulate_rp2040.py.
//
//   node run.js IMAGE.bin INPUT.bin CLOSINGS [--flash FILE@OFFSET]... [--max-cycles N]
//               [--stack LOW:HIGH]... [--profile]
//
// IMAGE.bin goes to SRAM at 0x20000000 and core 0 starts from its vector table; core 1 waits in
// the bootrom until the firmware launches it. Each --flash file is put in the flash at OFFSET
// (from 0x10000000). INPUT.bin is fed to UART0 one byte at a time, each when the firmware has
// taken the previous one out of the FIFO. The run ends after CLOSINGS lines that begin with
// @ready, @done or @error (every answer ends with one), or after --max-cycles. Cycles are wall
// time: the count of the core behind, both running at once. Each --stack is a stack's SRAM
// (addresses), painted before the start, so that its deepest use can be read back afterwards.
// The report has the cycles each core spent running instructions (`busy`; not asleep in WFE)
// and, with --profile, the cycles spent at each instruction address (hexadecimal) by both
// cores, for a per-function profile.
'use strict';
const fs = require('fs');
const { DualCoreRP2040 } = require('./dual_core');

const SRAM_BASE = 0x20000000;
const CPU_HZ = 133e6;          // the clock the firmware's microsecond timer is made to run at
const PAINT = 0xa5;
const CHECK_EVERY = 16;        // instructions between looks at the UART's receive FIFO
const RXFE = 1 << 4;

function parseArgs(argv) {
  const args = { flash: [], maxCycles: 20e9, stacks: [], profile: false, positional: [] };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--flash') {
      const [file, offset] = argv[++i].split('@');
      args.flash.push({ file, offset: Number(offset) });
    } else if (argv[i] === '--max-cycles') args.maxCycles = Number(argv[++i]);
    else if (argv[i] === '--stack') args.stacks.push(argv[++i].split(':').map(Number));
    else if (argv[i] === '--profile') args.profile = true;
    else args.positional.push(argv[i]);
  }
  if (args.positional.length !== 3) throw new Error('usage: node run.js IMAGE INPUT CLOSINGS ...');
  return args;
}

function main() {
  const args = parseArgs(process.argv.slice(2));
  const [imagePath, inputPath, closingsArg] = args.positional;
  const image = fs.readFileSync(imagePath);
  const input = fs.readFileSync(inputPath);
  const closings = Number(closingsArg);

  const mcu = new DualCoreRP2040(CPU_HZ);
  for (const { file, offset } of args.flash) mcu.flash.set(fs.readFileSync(file), offset);
  for (const [low, high] of args.stacks) mcu.sram.fill(PAINT, low - SRAM_BASE, high - SRAM_BASE);
  mcu.sram.set(image, 0);
  const vectors = new DataView(image.buffer, image.byteOffset, 8);
  mcu.core.SP = vectors.getUint32(0, true);
  mcu.core.PC = vectors.getUint32(4, true) & ~1;   // the Thumb bit is not part of the address

  const output = [];
  const cycles = [];          // the time when each output byte was sent
  const fedAt = [];           // ... when each input byte was put in the FIFO
  let line = '';
  let closed = 0;
  mcu.uart[0].onByte = (value) => {
    output.push(value);
    cycles.push(mcu.now);
    if (value === 10) {
      if (/^@(ready|done|error)/.test(line)) closed++;
      line = '';
    } else if (line.length < 8) line += String.fromCharCode(value);
  };

  let fed = 0;
  let steps = 0;
  const profile = new Map();   // instruction address -> cycles spent there
  while (closed < closings && mcu.now < args.maxCycles) {
    const core = mcu.nextCore();
    const pc = core.PC;
    const spent = mcu.execute(core);
    if (args.profile) profile.set(pc, (profile.get(pc) || 0) + spent);
    if (++steps % CHECK_EVERY === 0 && fed < input.length && mcu.uart[0].flags & RXFE) {
      mcu.uart[0].feedByte(input[fed++]);
      fedAt.push(mcu.now);
    }
  }

  const stacksUsed = args.stacks.map(([low, high]) => {
    let deepest = low - SRAM_BASE;
    while (deepest < high - SRAM_BASE && mcu.sram[deepest] === PAINT) deepest++;
    return high - SRAM_BASE - deepest;
  });
  process.stdout.write(JSON.stringify({
    output: Buffer.from(output).toString('base64'),
    cycles,
    fed_at: fedAt,
    total_cycles: mcu.now,
    busy: mcu.busy,
    finished: closed >= closings,
    stacks_used: stacksUsed,
    profile: args.profile
      ? Object.fromEntries([...profile].map(([pc, n]) => [pc.toString(16), n])) : null,
  }));
}

main();
