#ifndef CBASELINE_HEAP_H
#define CBASELINE_HEAP_H

#include <stdint.h>

/// The bytes the process's heap holds allocated now (glibc's mallinfo2 over every arena: chunks in
/// use plus mapped ones), for measuring what a structure costs in memory.
uint64_t cbaseline_heap_in_use(void);

#endif
