#ifndef CPOSTGRESQL_SHIM_H
#define CPOSTGRESQL_SHIM_H
// Debian's libpq-dev puts the client header under postgresql/; naming the folder here keeps the
// build working when pkg-config is absent (SwiftPM then only warns).
#include <postgresql/libpq-fe.h>
#endif
