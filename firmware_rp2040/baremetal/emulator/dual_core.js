// The RP2040's two cores in rp2040js, which emulates one: a second CortexM0Core (the class of
// rp2040js's own core) beside the first, with what the RP2040 gives each core of its own in
// the SIO block (datasheet 2.3.1): its CPUID, the inter-core FIFO it reads and the one it
// writes, and its hardware divider; the event signals of the two cores crossed, so that SEV on
// one wakes the other from WFE; and core 1 asleep in the bootrom until core 0 launches it with
// the bootrom's handshake (datasheet 2.8.2). Everything else (memory, the other peripherals,
// the clock) both cores share, as on the chip. Core 1 has no interrupts and no PPB of its own
// here: its use of the PPB is refused.
//
// The cores take turns one instruction at a time, the one behind in time first, so each
// core's cycle count is its elapsed time: a core asleep in WFE does not count, and when an
// event wakes it, it takes the time of the core that sent the event. What is not modelled:
// the bus contention of two cores reading the same SRAM bank or the flash at once.
'use strict';
const { ConsoleLogger, FIFO, LogLevel, RP2040 } = require('rp2040js');

const SIO_START = 0xd0000000;
const SIO_END = 0xe0000000;
const PPB_START = 0xe0000000;
const SEV = 0xbf40;          // the Thumb encoding of SEV, which rp2040js's core only logs
const FIFO_DEPTH = 8;

// The SIO registers each core has its own of (datasheet 2.3.1.7), as offsets in the block
const CPUID = 0x000;
const FIFO_ST = 0x050;       // VLD: a word to read; RDY: room to write; WOF, ROE: sticky errors
const FIFO_WR = 0x054;
const FIFO_RD = 0x058;
const VLD = 1;
const RDY = 2;
const WOF = 4;
const ROE = 8;
const DIV_UDIVIDEND = 0x060;
const DIV_UDIVISOR = 0x064;
const DIV_SDIVIDEND = 0x068;
const DIV_SDIVISOR = 0x06c;
const DIV_QUOTIENT = 0x070;
const DIV_REMAINDER = 0x074;
const DIV_CSR = 0x078;       // READY: the result is there; DIRTY: not yet read (quotient)
const READY = 1;
const DIRTY = 2;

// One core's own SIO registers: its number, the FIFO it reads (rx) and the one it writes
// (tx), its divider. The divider's result is there at once: the firmware waits the 8 cycles
// the hardware takes itself (divider.c), as pico-sdk does. (rp2040js's one divider adds them
// to core 0's count at every write, on top of that wait.)
class CoreSIO {
  constructor(id, rx, tx) {
    Object.assign(this, { id, rx, tx, errors: 0 });
    Object.assign(this, { dividend: 0, divisor: 0, quotient: 0, remainder: 0, csr: 0 });
  }

  // The value of the register at `offset`, or undefined for one that both cores share
  read(offset) {
    switch (offset) {
      case CPUID: return this.id;
      case FIFO_ST: return (this.rx.empty ? 0 : VLD) | (this.tx.full ? 0 : RDY) | this.errors;
      case FIFO_RD:
        if (this.rx.empty) this.errors |= ROE;
        return this.rx.pull();
      case DIV_UDIVIDEND: case DIV_SDIVIDEND: return this.dividend;
      case DIV_UDIVISOR: case DIV_SDIVISOR: return this.divisor;
      case DIV_QUOTIENT:
        this.csr &= ~DIRTY;
        return this.quotient;
      case DIV_REMAINDER: return this.remainder;
      case DIV_CSR: return this.csr;
    }
    return undefined;
  }

  // Writes the register at `offset`; false for one that both cores share
  write(offset, value) {
    switch (offset) {
      case FIFO_ST: this.errors &= ~value; break;    // writing 1 clears a sticky error
      case FIFO_WR:
        if (this.tx.full) this.errors |= WOF;
        else this.tx.push(value);
        break;
      case DIV_UDIVIDEND: case DIV_SDIVIDEND:
        this.dividend = value;
        this.divide(offset === DIV_SDIVIDEND);
        break;
      case DIV_UDIVISOR: case DIV_SDIVISOR:
        this.divisor = value;
        this.divide(offset === DIV_SDIVISOR);
        break;
      case DIV_QUOTIENT: this.quotient = value; this.csr = READY | DIRTY; break;
      case DIV_REMAINDER: this.remainder = value; this.csr = READY | DIRTY; break;
      default: return false;
    }
    return true;
  }

  // Quotient rounded toward zero (from the exact remainder: n / d in floating point can round
  // up to the next integer); by zero, -1 (+1 for a negative signed dividend) and the dividend
  divide(signed) {
    const n = signed ? this.dividend | 0 : this.dividend >>> 0;
    const d = signed ? this.divisor | 0 : this.divisor >>> 0;
    const remainder = d === 0 ? n : n % d;
    this.quotient = (d === 0 ? (n < 0 ? 1 : -1) : (n - remainder) / d) >>> 0;
    this.remainder = remainder >>> 0;
    this.csr = READY | DIRTY;
  }
}

// Core 1 after reset, in the bootrom's wait_for_vector: it sends 0, then answers each word
// core 0 sends with the same word while they follow 1, vector table, stack pointer, entry
// point; a 0 instead of any of them, or anything but 1 first, starts it over with a 0. (It
// drains its FIFO before each 0; words are taken here as they arrive, so there is nothing to
// drain.) Returns the launch.
function* waitForVector(send) {
  for (;;) {
    send(0);
    if ((yield) !== 1) continue;
    send(1);
    const vectorTable = yield;
    if (!vectorTable) continue;
    send(vectorTable);
    const stackPointer = yield;
    if (!stackPointer) continue;
    send(stackPointer);
    const entry = yield;
    if (!entry) continue;
    send(entry);
    return { vectorTable, stackPointer, entry };
  }
}

class DualCoreRP2040 extends RP2040 {
  constructor(cpuHz) {
    super();
    this.logger = new ConsoleLogger(LogLevel.Warn);   // not the SEVs rp2040js logs as info
    this.nanosPerCycle = 1e9 / cpuHz;
    this.cores = [this.core, new this.core.constructor(this)];
    this.busy = [0, 0];         // cycles each core spent running instructions
    const toCore = [new FIFO(FIFO_DEPTH), new FIFO(FIFO_DEPTH)];
    this.sios = [new CoreSIO(0, toCore[0], toCore[1]), new CoreSIO(1, toCore[1], toCore[0])];
    this.running = 0;           // the core whose instruction is being run
    this.time = 0;              // cycles since reset, as far as the clock has been ticked
    this.launched = false;
    this.bootrom = waitForVector((word) => {
      toCore[0].push(word);
      this.event(this.cores[1]);
    });
    this.bootrom.next();
  }

  // Core 1 runs: launched, and not asleep waiting for an event
  get awake1() {
    return this.launched && !this.cores[1].waiting;
  }

  // Wall time in cycles: the least advanced of the cores that are awake
  get now() {
    const [core0, core1] = this.cores;
    if (core0.waiting) return this.awake1 ? core1.cycles : core0.cycles;
    return this.awake1 ? Math.min(core0.cycles, core1.cycles) : core0.cycles;
  }

  // The core that runs next: the one behind in time that is not waiting for an event
  nextCore() {
    const [core0, core1] = this.cores;
    const awake1 = this.awake1;
    if (!core0.waiting && !(awake1 && core1.cycles < core0.cycles)) return core0;
    if (awake1) return core1;
    throw new Error('both cores wait for an event that nothing will send');
  }

  // Runs one instruction of `core`; returns its cycles
  execute(core) {
    this.running = this.cores.indexOf(core);
    const sev = this.readUint16(core.PC & ~1) === SEV;
    const spent = core.executeInstruction();
    this.busy[this.running] += spent;
    if (sev) this.event(core);
    if (!this.launched && !this.sios[1].rx.empty) this.toBootrom(this.sios[1].rx.pull());
    const now = this.now;
    if (now > this.time) {
      this.clock.tick((now - this.time) * this.nanosPerCycle);
      this.time = now;
    }
    return spent;
  }

  // An event from `sender` (SEV, or core 1's bootrom): it sets both cores' event registers,
  // and wakes a core asleep in WFE at the sender's time
  event(sender) {
    for (const core of this.cores) {
      if (core.waiting) {
        core.waiting = false;
        core.cycles = Math.max(core.cycles, sender.cycles);
      } else {
        core.eventRegistered = true;
      }
    }
  }

  toBootrom(word) {
    const { done, value } = this.bootrom.next(word);
    if (!done) return;
    const [core0, core1] = this.cores;
    core1.VTOR = value.vectorTable;
    core1.SP = value.stackPointer;
    core1.PC = value.entry & ~1;      // the Thumb bit is not part of the address
    core1.cycles = core0.cycles;
    this.launched = true;
  }

  readUint32(address) {
    address >>>= 0;
    const sio = this.ownSIO(address);
    const value = sio ? sio.read(address - SIO_START) : undefined;
    return value !== undefined ? value : super.readUint32(address);
  }

  writeUint32(address, value) {
    address >>>= 0;
    const sio = this.ownSIO(address);
    if (!(sio && sio.write(address - SIO_START, value))) super.writeUint32(address, value);
  }

  // The running core's SIO registers if `address` is in the SIO block (null elsewhere); and
  // core 1 may not reach the PPB, which this emulator gives core 0 only
  ownSIO(address) {
    if (address >= SIO_START && address < SIO_END) return this.sios[this.running];
    if (address >= PPB_START && this.running === 1) {
      throw new Error(`core 1 used the PPB at ${address.toString(16)}, which it lacks here`);
    }
    return null;
  }
}

module.exports = { DualCoreRP2040 };
