// The plain-PostgreSQL caller-ID baseline of strongroom-bench, written as a careful C programmer would
// write it against libpq: the lookup prepared once, one round trip (PQexecPrepared) per lookup, the
// columns read in place from the result, no row mapping.
#ifndef CBASELINE_POSTGRES_H
#define CBASELINE_POSTGRES_H

#include <stdint.h>

/// Caller-ID lookups on a plain schema: `contacts (id, name, last_contacted, source)` and
/// `numbers (e164, contact_id)` indexed on (e164, contact_id).
typedef struct cbaseline_pg_callerid cbaseline_pg_callerid;

/// Connects with the libpq connection string `conninfo`, makes `schema` the search path and prepares
/// the lookup. NULL if the server cannot be reached or the statement not prepared.
cbaseline_pg_callerid *cbaseline_pg_callerid_open(const char *conninfo, const char *schema);

/// Looks up the E.164 number `e164`: every matching contact's id, name, last contact and source, newest
/// contact first. Returns the rows found, or -1 on a database error.
int64_t cbaseline_pg_callerid_lookup(cbaseline_pg_callerid *lookup, const char *e164);

/// Closes the connection.
void cbaseline_pg_callerid_close(cbaseline_pg_callerid *lookup);

#endif
