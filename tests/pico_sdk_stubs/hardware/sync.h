/* Declarations only (see ../README.md): hardware/sync.h. */
#ifndef HARDWARE_SYNC_H
#define HARDWARE_SYNC_H

void __dmb(void);

#endif
