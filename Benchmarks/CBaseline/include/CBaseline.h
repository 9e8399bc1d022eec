// The plain-SQLite baselines of strongroom-bench, written as a careful C programmer would write them
// against the sqlite3 API: statements prepared once, parameters bound without copies, columns read in
// place, no row mapping. What Strongroom is measured against, so that the ratios are not flattered by
// the overhead of Strongroom's own storage layer on the baseline's side.
#ifndef CBASELINE_H
#define CBASELINE_H

#include <stdint.h>

/// Caller-ID lookups on a plain database: `contacts (id, name, last_contacted, source)` and
/// `numbers (e164, contact_id)` indexed on (e164, contact_id), the numbers to look up in `queries (n, e164)`.
typedef struct cbaseline_callerid cbaseline_callerid;

/// Opens the database at `path`, prepares the lookup and reads every number of `queries` into memory.
/// NULL if the database cannot be opened or lacks the tables.
cbaseline_callerid *cbaseline_callerid_open(const char *path);

/// How many numbers `queries` held.
int64_t cbaseline_callerid_query_count(const cbaseline_callerid *lookup);

/// Looks up the `query`-th number: every matching contact's id, name, last contact and source, newest
/// contact first. Returns the rows found, or -1 on a database error.
int64_t cbaseline_callerid_lookup(cbaseline_callerid *lookup, int64_t query);

/// Closes the database and frees the numbers.
void cbaseline_callerid_close(cbaseline_callerid *lookup);

/// Inserts every row of `source_rows (external_id, name, company, source, phone1, phone2, phone3)` of the
/// database at `source_path` (read into memory first, untimed) into `contacts` and `numbers` of the
/// database at `target_path`, `batch` rows to a transaction, with two prepared INSERTs. Returns the
/// nanoseconds the inserts took, or -1 on a database error.
int64_t cbaseline_import(const char *source_path, const char *target_path, int32_t batch);

/// Reads every contact of the database at `path` in clear, as an export of all of them would: one pass
/// over `contacts` in id order, with each contact's rows of `numbers`, `calls` and `consents` read from
/// cursors ordered by contact id that move along with it (every column read in place). Sets `subjects`
/// to the contacts read; returns the nanoseconds the pass took, or -1 on a database error.
int64_t cbaseline_export_all(const char *path, int64_t *subjects);

// The PostgreSQL baseline and the process measures (heap, CPU time), in their own headers.
#include "CBaselinePostgres.h"
#include "CBaselineProcess.h"

#endif
