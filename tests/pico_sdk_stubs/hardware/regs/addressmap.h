/* Declarations only (see ../../README.md): hardware/regs/addressmap.h. */
#ifndef HARDWARE_REGS_ADDRESSMAP_H
#define HARDWARE_REGS_ADDRESSMAP_H

#define XIP_BASE 0x10000000u

#endif
