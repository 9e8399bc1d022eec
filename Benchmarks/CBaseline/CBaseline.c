#include "CBaseline.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/// A string read from the database, owned here.
typedef struct {
    char *bytes;
    int length;
} text;

/// Copies column `column` of the current row of `statement`; a length of -1 when memory ran out.
static text copy_text(sqlite3_stmt *statement, int column) {
    const unsigned char *bytes = sqlite3_column_text(statement, column);
    int length = sqlite3_column_bytes(statement, column);
    text copy = {malloc((size_t)length + 1), length};
    if (!copy.bytes) return (text){NULL, -1};
    if (bytes) memcpy(copy.bytes, bytes, (size_t)length);
    copy.bytes[length] = 0;
    return copy;
}

/// Opens `path` tuned as the benchmark's other databases are (WAL, synchronous NORMAL, memory-mapped).
static sqlite3 *open_database(const char *path) {
    sqlite3 *database = NULL;
    if (sqlite3_open_v2(path, &database, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
        sqlite3_close(database);
        return NULL;
    }
    if (sqlite3_exec(database, "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA mmap_size = 1073741824",
                     NULL, NULL, NULL) != SQLITE_OK) {
        sqlite3_close(database);
        return NULL;
    }
    return database;
}

static int64_t now_nanoseconds(void) {
    struct timespec time;
    clock_gettime(CLOCK_MONOTONIC, &time);
    return (int64_t)time.tv_sec * 1000000000 + time.tv_nsec;
}

struct cbaseline_callerid {
    sqlite3 *database;
    sqlite3_stmt *lookup;
    text *queries;
    int64_t query_count;
    /// What the rows read add up to, so that no read can be optimised away.
    uint64_t checksum;
};

cbaseline_callerid *cbaseline_callerid_open(const char *path) {
    cbaseline_callerid *lookup = calloc(1, sizeof *lookup);
    if (!lookup) return NULL;
    lookup->database = open_database(path);
    sqlite3_stmt *count = NULL, *numbers = NULL;
    if (!lookup->database
        || sqlite3_prepare_v3(lookup->database,
                              "SELECT c.id, c.name, c.last_contacted, c.source FROM numbers n JOIN contacts c ON c.id = n.contact_id "
                              "WHERE n.e164 = ? ORDER BY c.last_contacted DESC",
                              -1, SQLITE_PREPARE_PERSISTENT, &lookup->lookup, NULL) != SQLITE_OK
        || sqlite3_prepare_v2(lookup->database, "SELECT count(*) FROM queries", -1, &count, NULL) != SQLITE_OK
        || sqlite3_step(count) != SQLITE_ROW
        || sqlite3_prepare_v2(lookup->database, "SELECT e164 FROM queries ORDER BY n", -1, &numbers, NULL) != SQLITE_OK) {
        sqlite3_finalize(count);
        cbaseline_callerid_close(lookup);
        return NULL;
    }
    int64_t expected = sqlite3_column_int64(count, 0);
    sqlite3_finalize(count);
    lookup->queries = calloc((size_t)(expected > 0 ? expected : 1), sizeof(text));
    while (lookup->queries && lookup->query_count < expected && sqlite3_step(numbers) == SQLITE_ROW) {
        text number = copy_text(numbers, 0);
        if (number.length < 0) break;
        lookup->queries[lookup->query_count++] = number;
    }
    sqlite3_finalize(numbers);
    if (!lookup->queries || lookup->query_count != expected) {
        cbaseline_callerid_close(lookup);
        return NULL;
    }
    return lookup;
}

int64_t cbaseline_callerid_query_count(const cbaseline_callerid *lookup) {
    return lookup->query_count;
}

int64_t cbaseline_callerid_lookup(cbaseline_callerid *lookup, int64_t query) {
    if (query < 0 || query >= lookup->query_count) return -1;
    const text number = lookup->queries[query];
    sqlite3_stmt *statement = lookup->lookup;
    if (sqlite3_bind_text(statement, 1, number.bytes, number.length, SQLITE_STATIC) != SQLITE_OK) return -1;
    int64_t rows = 0;
    int code;
    while ((code = sqlite3_step(statement)) == SQLITE_ROW) {
        // In place: the name and source are read where SQLite holds them, as a caller would print them.
        const unsigned char *name = sqlite3_column_text(statement, 1);
        const unsigned char *source = sqlite3_column_text(statement, 3);
        lookup->checksum += (uint64_t)sqlite3_column_int64(statement, 0) + (uint64_t)sqlite3_column_int64(statement, 2)
            + (uint64_t)sqlite3_column_bytes(statement, 1) + (uint64_t)sqlite3_column_bytes(statement, 3)
            + (name ? name[0] : 0) + (source ? source[0] : 0);
        rows += 1;
    }
    sqlite3_reset(statement);
    return code == SQLITE_DONE ? rows : -1;
}

void cbaseline_callerid_close(cbaseline_callerid *lookup) {
    if (!lookup) return;
    sqlite3_finalize(lookup->lookup);
    sqlite3_close(lookup->database);
    for (int64_t index = 0; index < lookup->query_count; index++) free(lookup->queries[index].bytes);
    free(lookup->queries);
    free(lookup);
}

/// One row to import: external id, name, company, source, up to three numbers.
typedef struct {
    text fields[7];
} import_row;

static void free_rows(import_row *rows, int64_t count) {
    for (int64_t row = 0; row < count; row++) {
        for (int field = 0; field < 7; field++) free(rows[row].fields[field].bytes);
    }
    free(rows);
}

int64_t cbaseline_import(const char *source_path, const char *target_path, int32_t batch) {
    sqlite3 *source = open_database(source_path);
    sqlite3_stmt *read = NULL;
    import_row *rows = NULL;
    int64_t count = 0, capacity = 0;
    int complete = 1;
    if (!source
        || sqlite3_prepare_v2(source, "SELECT external_id, name, company, source, phone1, phone2, phone3 FROM source_rows ORDER BY rowid",
                              -1, &read, NULL) != SQLITE_OK) {
        sqlite3_close(source);
        return -1;
    }
    while (sqlite3_step(read) == SQLITE_ROW) {
        if (count == capacity) {
            capacity = capacity ? capacity * 2 : 1024;
            import_row *grown = realloc(rows, (size_t)capacity * sizeof *rows);
            if (!grown) {
                complete = 0;
                break;
            }
            rows = grown;
        }
        for (int field = 0; field < 7; field++) {
            rows[count].fields[field] = copy_text(read, field);
            if (rows[count].fields[field].length < 0) complete = 0;
        }
        count += 1;
        if (!complete) break;
    }
    sqlite3_finalize(read);
    sqlite3_close(source);
    if (!complete) {
        free_rows(rows, count);
        return -1;
    }

    sqlite3 *target = open_database(target_path);
    sqlite3_stmt *contact = NULL, *number = NULL, *begin = NULL, *commit = NULL;
    int64_t elapsed = -1;
    // The settings Strongroom's import runs with (SQLiteBackend.dataCheckpointPages and
    // beginBulkWrites): checkpoints 16,384 pages apart and a 64 MiB page cache, and one checkpoint at
    // the end, timed. A careful
    // programmer loading a file would set them too; without them the baseline would be slowed by
    // repeated checkpoints of its random-order index and flatter the ratio.
    if (target
        && sqlite3_exec(target, "PRAGMA wal_autocheckpoint = 16384; PRAGMA cache_size = -65536", NULL, NULL, NULL) == SQLITE_OK
        && sqlite3_prepare_v3(target, "INSERT INTO contacts (external_id, name, company, source) VALUES (?, ?, ?, ?)", -1,
                              SQLITE_PREPARE_PERSISTENT, &contact, NULL) == SQLITE_OK
        && sqlite3_prepare_v3(target, "INSERT INTO numbers (e164, contact_id) VALUES (?, ?)", -1, SQLITE_PREPARE_PERSISTENT,
                              &number, NULL) == SQLITE_OK
        && sqlite3_prepare_v2(target, "BEGIN", -1, &begin, NULL) == SQLITE_OK
        && sqlite3_prepare_v2(target, "COMMIT", -1, &commit, NULL) == SQLITE_OK) {
        int64_t start = now_nanoseconds();
        int failed = 0;
        for (int64_t first = 0; first < count && !failed; first += batch) {
            failed |= sqlite3_step(begin) != SQLITE_DONE;
            sqlite3_reset(begin);
            for (int64_t index = first; index < count && index < first + batch && !failed; index++) {
                const import_row *row = &rows[index];
                for (int field = 0; field < 4; field++) {
                    sqlite3_bind_text(contact, field + 1, row->fields[field].bytes, row->fields[field].length, SQLITE_STATIC);
                }
                failed |= sqlite3_step(contact) != SQLITE_DONE;
                sqlite3_reset(contact);
                sqlite3_int64 id = sqlite3_last_insert_rowid(target);
                for (int field = 4; field < 7 && !failed; field++) {
                    if (row->fields[field].length == 0) continue;
                    sqlite3_bind_text(number, 1, row->fields[field].bytes, row->fields[field].length, SQLITE_STATIC);
                    sqlite3_bind_int64(number, 2, id);
                    failed |= sqlite3_step(number) != SQLITE_DONE;
                    sqlite3_reset(number);
                }
            }
            failed |= sqlite3_step(commit) != SQLITE_DONE;
            sqlite3_reset(commit);
        }
        failed |= sqlite3_exec(target, "PRAGMA wal_checkpoint(PASSIVE)", NULL, NULL, NULL) != SQLITE_OK;
        if (!failed) elapsed = now_nanoseconds() - start;
    }
    sqlite3_finalize(contact);
    sqlite3_finalize(number);
    sqlite3_finalize(begin);
    sqlite3_finalize(commit);
    sqlite3_close(target);
    free_rows(rows, count);
    return elapsed;
}

/// A statement stepped alongside the contacts, over rows ordered by contact id: `row` holds whether it
/// is on a row, whose contact id is column 0.
typedef struct {
    sqlite3_stmt *statement;
    int row;
} merged_cursor;

static void advance(merged_cursor *cursor) {
    cursor->row = sqlite3_step(cursor->statement) == SQLITE_ROW;
}

/// Reads the rows of the cursor that belong to contact `id` (every column, in place), adding their sizes
/// to `checksum`; returns how many there were.
static int64_t read_rows_of(merged_cursor *cursor, sqlite3_int64 id, uint64_t *checksum) {
    int64_t rows = 0;
    while (cursor->row && sqlite3_column_int64(cursor->statement, 0) < id) advance(cursor);
    while (cursor->row && sqlite3_column_int64(cursor->statement, 0) == id) {
        int columns = sqlite3_column_count(cursor->statement);
        for (int column = 1; column < columns; column++) {
            const unsigned char *bytes = sqlite3_column_text(cursor->statement, column);
            *checksum += (uint64_t)sqlite3_column_bytes(cursor->statement, column) + (bytes ? bytes[0] : 0);
        }
        rows += 1;
        advance(cursor);
    }
    return rows;
}

int64_t cbaseline_export_all(const char *path, int64_t *subjects) {
    static const char *const queries[] = {
        "SELECT id, external_id, kind, owner, status, source, created_at, updated_at, last_contacted, restricted, name, company, "
        "emails, address, notes, custom_fields FROM contacts ORDER BY id",
        "SELECT contact_id, label, number, e164 FROM numbers ORDER BY contact_id, position",
        "SELECT contact_id, at, direction FROM calls ORDER BY contact_id, at",
        "SELECT contact_id, id, purpose, state, at, initiator, client, evidence FROM consents ORDER BY contact_id, id",
    };
    sqlite3 *database = open_database(path);
    merged_cursor cursors[4] = {{0}};
    int64_t elapsed = -1;
    int prepared = database != NULL;
    for (int index = 0; index < 4 && prepared; index++) {
        prepared = sqlite3_prepare_v2(database, queries[index], -1, &cursors[index].statement, NULL) == SQLITE_OK;
    }
    if (prepared) {
        uint64_t checksum = 0;
        int64_t count = 0;
        int64_t start = now_nanoseconds();
        // One pass: the contacts in id order, the numbers, calls and consents of each read from their own
        // cursors, which move forward with it (a merge join on the contact id, each table read once).
        for (int index = 1; index < 4; index++) advance(&cursors[index]);
        merged_cursor *contacts = &cursors[0];
        int code;
        while ((code = sqlite3_step(contacts->statement)) == SQLITE_ROW) {
            sqlite3_int64 id = sqlite3_column_int64(contacts->statement, 0);
            for (int column = 1; column < 16; column++) {
                const unsigned char *bytes = sqlite3_column_text(contacts->statement, column);
                checksum += (uint64_t)sqlite3_column_bytes(contacts->statement, column) + (bytes ? bytes[0] : 0);
            }
            for (int index = 1; index < 4; index++) checksum += (uint64_t)read_rows_of(&cursors[index], id, &checksum);
            count += 1;
        }
        if (code == SQLITE_DONE && checksum != 0) {
            elapsed = now_nanoseconds() - start;
            *subjects = count;
        }
    }
    for (int index = 0; index < 4; index++) sqlite3_finalize(cursors[index].statement);
    sqlite3_close(database);
    return elapsed;
}
