#include "CBaselinePostgres.h"

#include <postgresql/libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct cbaseline_pg_callerid {
    PGconn *connection;
    /// What the rows read add up to, so that no read can be optimised away.
    uint64_t checksum;
};

cbaseline_pg_callerid *cbaseline_pg_callerid_open(const char *conninfo, const char *schema) {
    cbaseline_pg_callerid *lookup = calloc(1, sizeof *lookup);
    if (!lookup) return NULL;
    lookup->connection = PQconnectdb(conninfo);
    if (PQstatus(lookup->connection) != CONNECTION_OK) {
        cbaseline_pg_callerid_close(lookup);
        return NULL;
    }
    // The schema as an identifier, quoted by libpq.
    char *identifier = PQescapeIdentifier(lookup->connection, schema, strlen(schema));
    char setting[512];
    int written = identifier ? snprintf(setting, sizeof setting, "SET search_path TO %s", identifier) : -1;
    PQfreemem(identifier);
    PGresult *result = written > 0 && (size_t)written < sizeof setting ? PQexec(lookup->connection, setting) : NULL;
    int ready = result && PQresultStatus(result) == PGRES_COMMAND_OK;
    PQclear(result);
    result = ready ? PQprepare(lookup->connection, "lookup",
                               "SELECT c.id, c.name, c.last_contacted, c.source FROM numbers n JOIN contacts c ON c.id = n.contact_id "
                               "WHERE n.e164 = $1 ORDER BY c.last_contacted DESC",
                               1, NULL)
                   : NULL;
    ready = result && PQresultStatus(result) == PGRES_COMMAND_OK;
    PQclear(result);
    if (!ready) {
        cbaseline_pg_callerid_close(lookup);
        return NULL;
    }
    return lookup;
}

int64_t cbaseline_pg_callerid_lookup(cbaseline_pg_callerid *lookup, const char *e164) {
    const char *values[1] = {e164};
    PGresult *result = PQexecPrepared(lookup->connection, "lookup", 1, values, NULL, NULL, 0);
    if (PQresultStatus(result) != PGRES_TUPLES_OK) {
        PQclear(result);
        return -1;
    }
    int rows = PQntuples(result);
    for (int row = 0; row < rows; row++) {
        // In place: the values are read where libpq holds them, as a caller would print them.
        const char *id = PQgetvalue(result, row, 0), *name = PQgetvalue(result, row, 1);
        const char *last = PQgetvalue(result, row, 2), *source = PQgetvalue(result, row, 3);
        lookup->checksum += (uint64_t)PQgetlength(result, row, 1) + (uint64_t)PQgetlength(result, row, 3)
            + (uint64_t)id[0] + (uint64_t)name[0] + (uint64_t)last[0] + (uint64_t)source[0];
    }
    PQclear(result);
    return rows;
}

void cbaseline_pg_callerid_close(cbaseline_pg_callerid *lookup) {
    if (!lookup) return;
    PQfinish(lookup->connection);
    free(lookup);
}
