#include "CBaselineProcess.h"

#include <malloc.h>
#include <sys/resource.h>

uint64_t cbaseline_heap_in_use(void) {
    struct mallinfo2 info = mallinfo2();
    return (uint64_t)info.uordblks + (uint64_t)info.hblkhd;
}

cbaseline_cpu_time cbaseline_process_cpu_time(void) {
    cbaseline_cpu_time time = {0, 0};
    struct rusage usage;
    if (getrusage(RUSAGE_SELF, &usage) != 0) return time;
    time.user_ns = (uint64_t)usage.ru_utime.tv_sec * 1000000000u + (uint64_t)usage.ru_utime.tv_usec * 1000u;
    time.system_ns = (uint64_t)usage.ru_stime.tv_sec * 1000000000u + (uint64_t)usage.ru_stime.tv_usec * 1000u;
    return time;
}
