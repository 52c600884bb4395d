// Runs the bare-metal tinylm RAM image in rp2040js and reports, as JSON on stdout, what it sent
// on UART0 with the core's cycle count at each byte. Used by tinylm/boards/emulate_rp2040.py.
//
//   node run.js IMAGE.bin INPUT.bin CLOSINGS [--flash FILE@OFFSET]... [--max-cycles N]
//               [--stack-bottom ADDRESS] [--profile]
//
// IMAGE.bin goes to SRAM at 0x20000000 and starts from its vector table. Each --flash file is
// put in the flash at OFFSET (from 0x10000000). INPUT.bin is fed to UART0 one byte at a time,
// each when the firmware has taken the previous one out of the FIFO. The run ends after
// CLOSINGS lines that begin with @ready, @done or @error (every answer ends with one), or after
// --max-cycles. With --stack-bottom, SRAM from there to its end is painted before the start,
// so the deepest stack use can be read back afterwards. With --profile the report also has the
// cycles spent at each instruction address (hexadecimal), for a per-function profile.
'use strict';
const fs = require('fs');
const { RP2040 } = require('rp2040js');

const SRAM_BASE = 0x20000000;
const CPU_HZ = 133e6;          // the clock the firmware's microsecond timer is made to run at
const PAINT = 0xa5;
const CHECK_EVERY = 16;        // instructions between looks at the UART's receive FIFO
const RXFE = 1 << 4;

function parseArgs(argv) {
  const args = { flash: [], maxCycles: 20e9, stackBottom: null, profile: false, positional: [] };
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--flash') {
      const [file, offset] = argv[++i].split('@');
      args.flash.push({ file, offset: Number(offset) });
    } else if (argv[i] === '--max-cycles') args.maxCycles = Number(argv[++i]);
    else if (argv[i] === '--stack-bottom') args.stackBottom = Number(argv[++i]);
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

  const mcu = new RP2040();
  for (const { file, offset } of args.flash) mcu.flash.set(fs.readFileSync(file), offset);
  if (args.stackBottom !== null) mcu.sram.fill(PAINT, args.stackBottom - SRAM_BASE);
  mcu.sram.set(image, 0);
  const vectors = new DataView(image.buffer, image.byteOffset, 8);
  mcu.core.SP = vectors.getUint32(0, true);
  mcu.core.PC = vectors.getUint32(4, true) & ~1;   // the Thumb bit is not part of the address

  const output = [];
  const cycles = [];          // mcu.core.cycles when each output byte was sent
  const fedAt = [];           // mcu.core.cycles when each input byte was put in the FIFO
  let line = '';
  let closed = 0;
  mcu.uart[0].onByte = (value) => {
    output.push(value);
    cycles.push(mcu.core.cycles);
    if (value === 10) {
      if (/^@(ready|done|error)/.test(line)) closed++;
      line = '';
    } else if (line.length < 8) line += String.fromCharCode(value);
  };

  const nanosPerCycle = 1e9 / CPU_HZ;
  let fed = 0;
  let steps = 0;
  const profile = new Map();   // instruction address -> cycles spent there
  while (closed < closings && mcu.core.cycles < args.maxCycles) {
    const pc = mcu.core.PC;
    const spent = mcu.core.executeInstruction();
    if (args.profile) profile.set(pc, (profile.get(pc) || 0) + spent);
    mcu.clock.tick(spent * nanosPerCycle);
    if (++steps % CHECK_EVERY === 0 && fed < input.length && mcu.uart[0].flags & RXFE) {
      mcu.uart[0].feedByte(input[fed++]);
      fedAt.push(mcu.core.cycles);
    }
  }

  let stackUsed = null;
  if (args.stackBottom !== null) {
    let low = args.stackBottom - SRAM_BASE;
    while (low < mcu.sram.length && mcu.sram[low] === PAINT) low++;
    stackUsed = mcu.sram.length - low;
  }
  process.stdout.write(JSON.stringify({
    output: Buffer.from(output).toString('base64'),
    cycles,
    fed_at: fedAt,
    total_cycles: mcu.core.cycles,
    finished: closed >= closings,
    stack_used: stackUsed,
    profile: args.profile
      ? Object.fromEntries([...profile].map(([pc, n]) => [pc.toString(16), n])) : null,
  }));
}

main();
