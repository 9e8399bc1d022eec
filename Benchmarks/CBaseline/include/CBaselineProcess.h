#ifndef CBASELINE_PROCESS_H
#define CBASELINE_PROCESS_H

#include <stdint.h>

/// The bytes the process's heap holds allocated now (glibc's mallinfo2 over every arena: chunks in
/// use plus mapped ones), for measuring what a structure costs in memory.
uint64_t cbaseline_heap_in_use(void);

/// The CPU time every thread of the process has used so far, in nanoseconds: in its own code and
/// libraries (user), and in the kernel on its behalf (system: sending, polling, receiving).
typedef struct {
    uint64_t user_ns;
    uint64_t system_ns;
} cbaseline_cpu_time;

/// The process's CPU time so far (getrusage(RUSAGE_SELF)); zeros if it cannot be read.
cbaseline_cpu_time cbaseline_process_cpu_time(void);

#endif
