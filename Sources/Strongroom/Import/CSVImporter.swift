import Foundation
import StrongroomStorage
import StrongroomPhone

/// Imports the CSV format of `strongroom import`: a header row naming the columns (any order)
/// `external_id, kind, name, company, email, phone, mobile, work_phone, address, notes, source, owner,
/// last_contacted`; other columns become custom fields. RFC 4180 quoting, UTF-8, a BOM tolerated.
/// A row whose external id is stored updates that subject with the values it has: a column absent from
/// the file, or an empty cell, keeps the stored value (clearing is `Store.update`'s job, a deliberate
/// rectification, not a side effect of a sync that left a cell blank); see `Store.write`.
/// A value longer than the store's `maxFieldBytes` (UTF-8 bytes) makes its row a rejected row: never stored.
public struct CSVImporter: Sendable {
    /// The columns with a meaning of their own, in `KnownColumn`'s order; any other column is a custom field.
    public static let knownColumns = ["external_id", "kind", "name", "company", "email", "phone", "mobile",
                                      "work_phone", "address", "notes", "source", "owner", "last_contacted"]
    /// Phone columns and the label each number gets.
    static let phoneColumns = [("phone", "phone"), ("mobile", "mobile"), ("work_phone", "work")]
    /// `phoneColumns` as known columns, each with its label.
    static let phoneKnownColumns = phoneColumns.compactMap { column, label in KnownColumn(name: column).map { ($0, label) } }

    /// A column of `knownColumns`, by its place there: a row's known values are kept in an array at these
    /// places (`subject(from:columns:)`), where a dictionary by name hashed every cell and every lookup
    /// (a third of the time an import spent reading rows, 2026-12-07).
    enum KnownColumn: Int, CaseIterable, Sendable {
        case externalID, kind, name, company, email, phone, mobile, workPhone, address, notes, source, owner, lastContacted

        /// The column named `name` in `knownColumns`, if it is one.
        init?(name: String) {
            guard let position = CSVImporter.knownColumns.firstIndex(of: name) else { return nil }
            self.init(rawValue: position)
        }
    }

    /// A file's header: its columns' names, each with its known column (nil for a custom field), found once per file.
    struct Columns: Sendable {
        let names: [String]
        let known: [KnownColumn?]

        init(_ names: [String]) {
            self.names = names
            known = names.map(KnownColumn.init(name:))
        }
    }

    let store: Store
    let options: ImportOptions

    /// An importer into `store`.
    public init(store: Store, options: ImportOptions = ImportOptions()) {
        self.store = store
        self.options = options
    }

    /// Imports `bytes` (a whole CSV file), calling `progress(rowsWritten)` after each batch.
    /// Throws `ImportError` for the file (a bad header, or a strict import's bad rows) and `StoreError`
    /// for the store (its refusal or failure, as the store threw it): two kinds, so the signature is untyped.
    public func run(_ bytes: [UInt8], context: AccessContext, progress: (Int) -> Void = { _ in }) throws -> ImportReport {
        var reader = CSVReader(bytes: bytes)
        // A header that does not parse is a bad header (a usage error), like one that names nothing known.
        let first: CSVRecord?
        do throws(CSVError) { first = try reader.next() } catch { throw ImportError.badHeader("line \(error.line): \(error.reason)") }
        guard let header = first else { throw ImportError.badHeader("the file is empty") }
        let columns = header.fields.map { $0.trimmingBlanks().lowercased() }
        guard Set(columns).count == columns.count else { throw ImportError.badHeader("a column appears twice") }
        guard columns.allSatisfy({ $0.utf8.count <= store.maxFieldBytes }) else {
            throw ImportError.badHeader("a column name is longer than \(store.maxFieldBytes) bytes")
        }
        guard columns.contains(where: { ["name", "email", "phone", "mobile", "work_phone"].contains($0) }) else {
            throw ImportError.badHeader("no name, email or phone column")
        }
        // The batches are a bulk write: on SQLite, a larger page cache meanwhile.
        // (The rows' errors are an `ImportError` or a `StoreError`: carried out in a `Result`.)
        return try store.bulkWriting { () throws(StoreError) in
            Result { try importRows(from: &reader, columns: Columns(columns), context: context, progress: progress) }
        }.get()
    }

    /// Imports the rows after the header, whose `columns` `run` has checked, in batches.
    private func importRows(from reader: inout CSVReader, columns: Columns, context: AccessContext,
                            progress: (Int) -> Void) throws -> ImportReport {
        let normalizer = try store.normalizer(for: options.region)
        var report = ImportReport()
        var batch: [ReadRow] = []
        var rowsDone = 0
        // Whether a batch's stored rows are read before its write: once a write has found a subject
        // stored that a row keeps numbers or custom fields of (a re-import). Until then the write's own
        // lookup of the batch's external ids, in its transaction, tells: one probe a batch, not two.
        var readingStoredFirst = false

        /// Merges the batch's rows over the stored subjects' numbers and custom fields they keep.
        func mergeOverStored() throws {
            // A row carrying some of a stored subject's numbers or custom fields keeps the others.
            let stored = try storedRows(mergedInto: batch)
            // Nothing stored to merge over (a new file's batch): the rows stay as read.
            if !stored.isEmpty {
                batch = try batch.compactMap { row in
                    switch try merged(row.subject, over: stored, context: context) {
                    case .success(let subject):
                        // Numbers merged with stored ones are normalised again by the write.
                        // A row merged over a stored subject's is no longer what was sealed ahead (and updates it).
                        return ReadRow(line: row.line, subject: subject, numbers: subject.personal.phones == row.subject.personal.phones ? row.numbers : nil,
                                       sealed: subject == row.subject ? row.sealed : nil)
                    case .failure(let problem):
                        let rejected = ImportReport.RejectedRow(line: row.line, reason: problem.message)
                        if options.strict { throw ImportError.rejectedRows([rejected]) }
                        report.rejected.append(rejected)
                        return nil
                    }
                }
            }
        }

        func flush() throws {
            // A restricted subject's row is refused alone (and audited as refused), not the batch; with
            // --strict, the batch is refused (accessRefused), as any bad row refuses a strict import.
            // The new subjects' keys are not cached: the import does not read them back.
            func write(unlessStored mergingUnread: Set<String>) throws -> [WriteResult]? {
                try store.write(batch.map(\.subject), numbers: batch.map(\.numbers), sealedAhead: batch.map(\.sealed), region: options.region,
                                skippingRefused: !options.strict, cachingNewKeys: false, unlessStored: mergingUnread, context: context)
            }
            let results: [WriteResult]
            if !readingStoredFirst, let written = try write(unlessStored: CSVImporter.externalIDs(mergedOverStoredBy: batch)) {
                results = written
            } else {
                readingStoredFirst = true
                try mergeOverStored()
                guard !batch.isEmpty, let written = try write(unlessStored: []) else { return }
                results = written
            }
            for (row, result) in zip(batch, results) {
                if let erasedAt = result.erasedAt {
                    report.rejected.append(.erased(line: row.line, at: erasedAt))
                } else if result.refused {
                    report.rejected.append(.init(line: row.line, reason: "the subject's processing is restricted: row not applied"))
                } else if result.created {
                    report.created += 1
                } else {
                    report.updated += 1
                }
            }
            rowsDone += batch.count
            batch.removeAll(keepingCapacity: true)
            progress(rowsDone)
        }

        let readBatch: @Sendable (inout CSVReader) -> ReadBatch = { [self] reader in
            readRows(from: &reader, columns: columns, normalizer: normalizer, upTo: options.strict ? .max : options.batchSize)
        }
        if options.strict {
            let read = readBatch(&reader)
            report.unindexed = read.unindexed
            report.rejected = read.rejected
            var pending: [ReadRow] = []
            for row in read.rows {
                // Checked before anything is written, so that the file is refused as a whole (the
                // write path checks again, and refuses the batch, should an erasure come meanwhile).
                if let externalID = row.subject.metadata.externalID, let erased = try store.tombstone(ofExternalID: externalID) {
                    report.rejected.append(.erased(line: row.line, at: erased.erasedAt))
                } else {
                    pending.append(row)
                }
            }
            guard report.rejected.isEmpty else { throw ImportError.rejectedRows(report.rejected.sorted { $0.line < $1.line }) }
            for start in stride(from: 0, to: pending.count, by: options.batchSize) {
                batch = Array(pending[start..<min(start + options.batchSize, pending.count)])
                try flush()
            }
            return report
        }
        // Three stages on two cores: while this thread writes batch k (its rows, keys, index rows, audit
        // entries, commit), other threads seal batch k+1's rows as new subjects (keys, fields,
        // blind-index rows) under ids taken for them ahead (`Store.sealAhead`), then read batch k+2
        // from the file (parsing, validation, phone normalisation). A batch is read before its ids are
        // taken, so that a new file's subjects get consecutive ids, as when one thread did everything.
        // Sealing ahead only while the import creates at least as many subjects as it updates: an
        // update is sealed under its stored key in its transaction, so a re-import's rows sealed ahead
        // would be wasted work (and ids). Reports keep file order: a batch's read problems are reported
        // before its write's, as when one thread did both.
        let readAhead = ReadAhead(reader: reader, readBatch: readBatch) { [store] batch, ids in
            var sealed = batch
            let subjects = store.sealAhead(batch.rows.map(\.subject), ids: ids, numbers: batch.rows.map(\.numbers), normalizer: normalizer)
            for position in sealed.rows.indices { sealed.rows[position].sealed = subjects[position] }
            return sealed
        }
        var sealingAhead = true
        /// Ids for `batch`'s rows, taken ahead, while sealing ahead pays.
        func idsAhead(for batch: ReadBatch) throws -> [SubjectID]? {
            sealingAhead && !batch.rows.isEmpty ? try store.reserveSubjectIDsAhead(batch.rows.count) : nil
        }
        var read = readAhead.readNow()
        read = readAhead.sealNow(read, under: try idsAhead(for: read))
        var next = readAhead.readNow()
        // The batch written last, held until the other threads let go of it (`ReadAhead.start`).
        var written = ReadBatch()
        while true {
            report.rejected += read.rejected
            report.unindexed += read.unindexed
            guard !read.rows.isEmpty else { break }
            batch = read.rows
            let (rows, createdBefore) = (batch.count, report.created)
            readAhead.start(sealing: next, under: try idsAhead(for: next), releasing: written)
            written = ReadBatch()
            do { try flush() } catch {
                _ = readAhead.finish()
                throw error
            }
            sealingAhead = (report.created - createdBefore) * 2 >= rows
            written = read
            (read, next) = readAhead.finish()
        }
        return report
    }

    /// A good row read from the file.
    struct ReadRow: Sendable {
        /// The line where it starts.
        let line: Int
        /// What it says.
        let subject: NewSubject
        /// Its numbers in E.164, in the order of `subject.personal.phones`; nil for one that cannot be normalised.
        let numbers: [String?]?
        /// It sealed as a new subject ahead of its batch's transaction (`Store.sealAhead`), if it was.
        var sealed: SealedNewSubject? = nil
    }

    /// Rows read from the file by `readRows`, with the problems found in them.
    struct ReadBatch: Sendable {
        /// The good rows, in file order.
        var rows: [ReadRow] = []
        /// Rows refused by the reading (malformed, invalid values), in file order.
        var rejected: [ImportReport.RejectedRow] = []
        /// Numbers that will be stored but not indexed, in file order.
        var unindexed: [ImportReport.UnindexedNumber] = []
    }

    /// Reads records from `reader` until `limit` good rows are read or the file ends.
    private func readRows(from reader: inout CSVReader, columns: Columns, normalizer: PhoneNormalizer,
                          upTo limit: Int) -> ReadBatch {
        var read = ReadBatch()
        while read.rows.count < limit {
            let record: CSVRecord
            do {
                guard let next = try reader.next() else { break }
                record = next
            } catch {
                read.rejected.append(.init(line: error.line, reason: error.reason))
                continue
            }
            // A blank line is not a row (spreadsheets leave them): skipped, not reported.
            if record.fields == [""] { continue }
            switch subject(from: record, columns: columns) {
            case .failure(let reason):
                read.rejected.append(.init(line: record.line, column: reason.column, reason: reason.message))
            case .success(let subject):
                // Normalised here, on the reading thread, once: the write indexes these.
                var numbers: [String?] = []
                for phone in subject.personal.phones ?? [] {
                    do { numbers.append(try normalizer.normalize(phone.number).e164) } catch {
                        numbers.append(nil)
                        let column = CSVImporter.phoneColumns.first { $0.1 == phone.label }?.0 ?? phone.label
                        read.unindexed.append(.init(line: record.line, column: column, reason: error.reason))
                    }
                }
                read.rows.append(ReadRow(line: record.line, subject: subject, numbers: numbers))
            }
        }
        return read
    }

    private struct RowProblem: Error {
        let message: String
        var column: String?
    }

    /// `subject` with its phone numbers and custom fields merged over those of the stored subject with
    /// its external id (in `stored`, from `storedRows`), so that a number label (`phone`, `mobile`,
    /// `work`) or a custom field the row does not carry keeps its stored value: each of the two is sealed
    /// as one list, so the row's part alone would replace the whole. The stored lists are read through
    /// the audited decrypt path (purpose and restriction checked, an audit entry), only for a row that
    /// carries numbers but not all three labels, or custom fields; they are read before the batch's
    /// transaction, so a number another writer changes in between is overwritten by the row, as the
    /// row's other values are.
    private func merged(_ subject: NewSubject, over stored: [String: EncryptedSubject],
                        context: AccessContext) throws -> Result<NewSubject, RowProblem> {
        guard CSVImporter.mergesOverStored(subject), let externalID = subject.metadata.externalID,
              let stored = stored[externalID] else { return .success(subject) }
        let personal: PersonalData
        do {
            personal = try store.decrypt([stored], fields: [.phones, .customFields], detail: "import: numbers and custom fields kept",
                                         context: context).personal[0]
        } catch {
            guard case StoreError.accessRefused(_, _, let reason) = error else { throw error }
            return .failure(RowProblem(message: "the stored numbers and custom fields it would keep cannot be read (\(reason)): row not applied"))
        }
        var merged = subject
        if let phones = subject.personal.phones {
            let labels = Set(phones.map(\.label))
            merged.personal.phones = (personal.phones ?? []).filter { !labels.contains($0.label) } + phones
        }
        if let custom = subject.personal.customFields {
            merged.personal.customFields = (personal.customFields ?? [:]).merging(custom) { _, imported in imported }
        }
        return .success(merged)
    }

    /// Whether a row's numbers or custom fields are merged over the stored subject's (see `merged`): it
    /// has an external id, and numbers without all three labels, or custom fields.
    private static func mergesOverStored(_ subject: NewSubject) -> Bool {
        let phones = subject.personal.phones
        // Asked of every row read: no set made per row.
        let carriesEveryLabel = phones.map { phones in CSVImporter.phoneColumns.allSatisfy { _, label in phones.contains { $0.label == label } } } ?? false
        return subject.metadata.externalID != nil && ((phones != nil && !carriesEveryLabel) || subject.personal.customFields != nil)
    }

    /// The statement `storedRows` runs, its external ids left for `StoreBackend.forEachRow` to compare.
    static let storedRowsByExternalID = """
        SELECT \(Store.summaryColumns), \(PersonalField.phones.column), \(PersonalField.customFields.column)
        FROM subjects WHERE external_id
        """

    /// The external ids of those of `rows` that `merged` merges over a stored subject, if one is stored.
    private static func externalIDs(mergedOverStoredBy rows: [ReadRow]) -> Set<String> {
        Set(rows.lazy.filter { CSVImporter.mergesOverStored($0.subject) }.compactMap(\.subject.metadata.externalID))
    }

    /// The stored rows (numbers and custom fields still sealed) of the subjects whose rows `merged`
    /// merges over them, by external id: one statement for a batch, not a round trip per row.
    private func storedRows(mergedInto rows: [ReadRow]) throws -> [String: EncryptedSubject] {
        let externalIDs = CSVImporter.externalIDs(mergedOverStoredBy: rows)
        guard !externalIDs.isEmpty else { return [:] }
        return try store.withData { (connection) throws(DatabaseError) in
            var stored: [String: EncryptedSubject] = [:]
            try store.backend.forEachRow(CSVImporter.storedRowsByExternalID, matchingAny: Array(externalIDs), on: connection) { row in
                let subject = Store.encryptedSubject(from: row, fields: [.phones, .customFields])
                if let externalID = subject.summary.metadata.externalID { stored[externalID] = subject }
            }
            return stored
        }
    }

    /// The subject a record describes, or why it cannot be imported.
    private func subject(from record: CSVRecord, columns: Columns) -> Result<NewSubject, RowProblem> {
        guard record.fields.count == columns.names.count else {
            return .failure(RowProblem(message: "has \(record.fields.count) fields, the header has \(columns.names.count)"))
        }
        // The known columns' values (nil where absent or blank), at their `KnownColumn` places.
        var known = [String?](repeating: nil, count: KnownColumn.allCases.count)
        var custom: [String: String] = [:]
        for (position, value) in record.fields.enumerated() {
            let column = columns.names[position]
            // Checked here, before anything is written, with the limit the store enforces on every
            // write (`PersonalData.checkValueSizes`), so an oversized value rejects its row alone.
            let bytes = value.utf8.count
            guard bytes <= store.maxFieldBytes else {
                return .failure(RowProblem(message: "\(column) is \(bytes) bytes, over the limit of \(store.maxFieldBytes) bytes per field",
                                           column: column))
            }
            // A NUL character (U+0000) is no CRM's data: refused in every column, not only where a
            // store would refuse it (`SubjectMetadata.checkTexts`), so that the row alone is skipped.
            guard !value.holdsNUL else {
                return .failure(RowProblem(message: "\(column) holds a NUL character (U+0000)", column: column))
            }
            let trimmed = value.trimmingBlanks()
            if let knownColumn = columns.known[position] {
                if !trimmed.isEmpty { known[knownColumn.rawValue] = trimmed }
            } else if !trimmed.isEmpty, !column.isEmpty {
                custom[column] = value
            }
        }
        func value(_ column: KnownColumn) -> String? { known[column.rawValue] }
        var kind = options.defaultKind
        if let text = value(.kind) {
            guard let parsed = SubjectKind(rawValue: text.lowercased()) else {
                return .failure(RowProblem(message: "kind must be lead or contact", column: "kind"))
            }
            kind = parsed
        }
        var lastContacted: Date?
        if let text = value(.lastContacted) {
            guard let date = Timestamp.parse(text) else {
                return .failure(RowProblem(message: "last_contacted is not an RFC 3339 time or a date (YYYY-MM-DD)", column: "last_contacted"))
            }
            lastContacted = date
        }
        let phones = CSVImporter.phoneKnownColumns.compactMap { column, label in
            value(column).map { LabeledPhone(label: label, number: $0) }
        }
        guard value(.name) != nil || value(.email) != nil || !phones.isEmpty else {
            return .failure(RowProblem(message: "has no name, email or phone number"))
        }
        return .success(NewSubject(
            metadata: SubjectMetadata(kind: kind, externalID: value(.externalID), owner: value(.owner), status: nil,
                                      source: value(.source), lastContactedAt: lastContacted),
            personal: PersonalData(name: value(.name), company: value(.company), emails: value(.email).map { [$0] },
                                   phones: phones.isEmpty ? nil : phones, address: value(.address), notes: value(.notes),
                                   customFields: custom.isEmpty ? nil : custom)))
    }
}

extension CSVError {
    /// The line the error is on.
    var line: Int {
        switch self {
        case .unterminatedQuote(let line), .unexpectedQuote(let line), .invalidUTF8(let line): return line
        }
    }

    /// A short reason, without content.
    var reason: String {
        switch self {
        case .unterminatedQuote: return "a quoted field is never closed"
        case .unexpectedQuote: return "a quote inside an unquoted field, or text after a closing quote"
        case .invalidUTF8: return "not valid UTF-8"
        }
    }
}

extension String {
    /// The string without leading and trailing blanks: tabs, Unicode space separators (category Zs) and
    /// the zero-width space (U+200B), the set `CharacterSet.whitespaces` holds (the test suite compares
    /// them), without Foundation's bridging, which cost an import a
    /// quarter of its time when every cell was trimmed through it. A string with no blank at either
    /// end (nearly every cell) is returned as it is, without a copy.
    func trimmingBlanks() -> String {
        let scalars = unicodeScalars
        func isBlank(_ scalar: Unicode.Scalar) -> Bool {
            scalar.isASCII ? scalar == " " || scalar == "\t" : scalar.properties.generalCategory == .spaceSeparator || scalar == "\u{200B}"
        }
        guard let first = scalars.first, let last = scalars.last, isBlank(first) || isBlank(last) else { return self }
        var start = scalars.startIndex
        var end = scalars.endIndex
        while start < end, isBlank(scalars[start]) { scalars.formIndex(after: &start) }
        while end > start, isBlank(scalars[scalars.index(before: end)]) { scalars.formIndex(before: &end) }
        return String(scalars[start..<end])
    }
}
