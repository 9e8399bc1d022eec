import Foundation
import StrongroomCrypto
import StrongroomPhone
import StrongroomStorage

/// A person found by caller ID: who, when last spoken to, where they came from.
public struct CallerMatch: Sendable, Hashable {
    /// The store's id.
    public let id: SubjectID
    /// Lead or contact.
    public let kind: SubjectKind
    /// The CRM's id, if any.
    public let externalID: String?
    /// The decrypted name (nil if the subject has none).
    public let name: String?
    /// When the person was last contacted.
    public let lastContactedAt: Date?
    /// Where the person came from.
    public let source: String?
}

/// Direction of a logged call.
public enum CallDirection: String, Sendable, CaseIterable {
    /// The person called.
    case incoming = "in"
    /// The person was called.
    case outgoing = "out"
}

/// What logging a call did.
public struct CallRecord: Sendable, Hashable {
    /// The person the call was attributed to.
    public let caller: CallerMatch
    /// True when the number was unknown and a new lead was made for it.
    public let createdLead: Bool
    /// False when the same call (number, time, direction) was already logged.
    public let logged: Bool
}

extension Store {
    /// Finds the people holding `number`, newest activity first.
    ///
    /// Normalises the number to E.164, probes the blind index with its truncated tag, keeps only the
    /// candidates whose keyed check matches exactly (truncation collisions are dropped), leaves out
    /// subjects the purpose may not process (restricted, or without consent where caller ID is declared
    /// on consent; each refusal audited), and decrypts only the name, through the audited path.
    public func callerID(number: String, region: String? = nil, context: AccessContext) throws(StoreError) -> [CallerMatch] {
        let e164 = try normalize(number, region: region)
        return try rereadingAfterKeyRotation { () throws(StoreError) in
            if let answer = try callerIDThroughHint(e164, context: context) { return answer }
            if let candidates = try candidatesThroughSQLiteHint(e164) { return try answer(candidates, context: context) }
            return try answer(try subjectsHolding(e164), context: context)
        }
    }

    /// Logs a call: a known number's people get `at` as their last-contacted time (if newer); an
    /// unknown number becomes a new lead (source "Call log") holding it, so the next call is recognised.
    /// Logging the same call (number, time, direction) again changes nothing.
    ///
    /// A call record is processing: it goes through the write path, in one transaction, and is refused
    /// for a person the purpose may not process (restricted, or no consent where the purpose rests on
    /// consent), audited as refused. When every person holding the number is refused, nothing is changed
    /// and `accessRefused` is thrown; otherwise the call is logged for the others only.
    public func recordCall(number: String, at time: Date = Date(), direction: CallDirection = .incoming,
                           region: String? = nil, context: AccessContext) throws(StoreError) -> CallRecord {
        let e164 = try normalize(number, region: region)
        let milliseconds = Store.milliseconds(time)
        let matches = try subjectsHolding(e164)
        // Keyed under the active index's call-record key, so the number is not recoverable from the row;
        // after an index rotation (or from before the call-record key had its own label), a call logged
        // earlier is not recognised as a repeat and is logged again.
        let callKey: [UInt8]
        do throws(CryptoError) {
            callKey = try keyring.phoneIndex.callKey(e164: e164, milliseconds: milliseconds, direction: direction.rawValue)
        } catch { throw .crypto(error) }
        let (subjects, logged) = try writeSubjects(context: context) { (write) throws(StoreError) -> ([SubjectID], Bool) in
            let connection = write.connection
            var subjects: [SubjectID] = []
            for match in matches {
                if try write.admits(match.id, .callRecord) { subjects.append(match.id) }
            }
            if subjects.isEmpty {
                guard matches.isEmpty else { try write.refuse() }
                let lead = NewSubject(metadata: SubjectMetadata(kind: .lead, source: "Call log", lastContactedAt: time),
                                      personal: PersonalData(phones: [LabeledPhone(label: "phone", number: e164)]))
                subjects = [try createOrUpdate([lead], normalizer: phoneNormalizer, in: write)[0].id]
                // A purpose resting on consent may not process a person who just appeared: no lead then.
                try write.require(subjects[0], .callRecord)
            }
            do throws(DatabaseError) {
                guard try connection.scalarInteger("SELECT 1 FROM calls WHERE call_key = ?", [.blob(callKey)]) == nil else {
                    return (subjects, false)
                }
                try connection.run("INSERT INTO calls (call_key, subject_id, at, direction) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                                   [.blob(callKey), .integer(subjects[0].rawValue), .integer(milliseconds), .text(direction.rawValue)])
                for subject in subjects {
                    try connection.run("""
                        UPDATE subjects SET last_contacted_at = ?1
                        WHERE id = ?2 AND (last_contacted_at IS NULL OR last_contacted_at < ?1)
                        """, [.integer(milliseconds), .integer(subject.rawValue)])
                }
            } catch {
                throw .database(error)
            }
            for subject in subjects { write.record(subject, .callRecord, detail: "call \(direction.rawValue) logged") }
            return (subjects, true)
        }
        let probes = try probeTags(e164)
        let refreshed = try withData { (connection) throws(DatabaseError) in try matchingSubjects(probes, in: connection) }
        guard let caller = try answer(refreshed, context: context).first else {
            throw .accessRefused(subjects[0], purpose: context.purpose,
                                 reason: "this purpose may not process the caller's data (restricted, or no consent)")
        }
        return CallRecord(caller: caller, createdLead: matches.isEmpty, logged: logged)
    }

    /// The E.164 form of `number`, or `invalidPhoneNumber`.
    func normalize(_ number: String, region: String?) throws(StoreError) -> String {
        let normalizer = try normalizer(for: region)
        do { return try normalizer.normalize(number).e164 } catch {
            throw .invalidPhoneNumber(reason: error.reason)
        }
    }

    /// The subjects holding `e164`. No match may mean an index rotation finished in another process
    /// (this one's keys no longer find the index's rows): then, if the key database changed since the
    /// keys were loaded, they are reloaded and the index is probed again.
    ///
    /// That check is a key-database read, so where the backend has a data version (SQLite) it is skipped
    /// when it was already made for a miss on the same data (`StoreBackend.dataVersion` unchanged). An index rotation can
    /// hide a number from keys loaded before it only by changing the data: its key changes alone hide
    /// nothing (until the old version's rows are deleted, the old key finds every subject it found),
    /// and the new version's rows, the deletion of the old ones and every subject written meanwhile are
    /// commits to the data. So while the data is as it was when the keys were last found current, a
    /// miss under them is a miss.
    private func subjectsHolding(_ e164: String) throws(StoreError) -> [CallerCandidate] {
        let probes = try probeTags(e164)
        let (candidates, dataVersion) = try withData { (connection) throws(DatabaseError) in
            (try matchingSubjects(probes, in: connection), backend.dataVersion(of: connection))
        }
        guard candidates.isEmpty else { return candidates }
        let alreadyChecked = keysCheckedAtDataVersion.withLock { checked in
            defer { checked = dataVersion }
            return dataVersion != nil && checked == dataVersion
        }
        guard !alreadyChecked, try keyring.reloadIfChanged() else { return [] }
        let reloaded = try probeTags(e164)
        return try withData { (connection) throws(DatabaseError) in try matchingSubjects(reloaded, in: connection) }
    }

    /// The subjects whose index rows seal exactly this number's full tag, with the clear columns and the
    /// name ciphertext an answer needs: one query per index version, joining the candidates of the tag
    /// index's probe with their rows (PostgreSQL's index is covering; SQLite's holds version and tag only,
    /// and each candidate's subject and check are read from `phone_index` by rowid).
    ///
    /// Where the backend checks candidates inside the query (`CallerIDProbe.checksInQuery`, SQLite), only
    /// exact matches' rows are read; otherwise the few candidates' rows come with their checks, which are
    /// made here. `probes`: the number's tags under each index version (`probeTags`).
    private func matchingSubjects(_ probes: [(index: PhoneBlindIndex, tags: PhoneBlindIndex.Tags)],
                                  in connection: any Database) throws(DatabaseError) -> [CallerCandidate] {
        var matches: [CallerCandidate] = []
        let probe = callerIDProbe
        for (index, tags) in probes {
            let (version, tag) = (SQLValue.int(Int(index.version)), SQLValue.integer(tags.truncated))
            let arguments = probe.checksInQuery ? [version, tag, .blob(tags.full)] : [version, tag]
            try connection.forEachRow(probe.sql, arguments) { row in
                let subject = SubjectID(rawValue: row.int64(0))
                guard probe.checksInQuery
                        || row.withBlob(CallerCandidate.columnCount, { index.matches($0, subject: subject, fullTag: tags.full.span) }),
                      !matches.contains(where: { $0.id == subject }) else { return }
                matches.append(CallerCandidate(row))
            }
        }
        return matches
    }

    /// The tags of `e164` under each answering index version: one normally, two while an index rotation
    /// builds the new one.
    private func probeTags(_ e164: String) throws(StoreError) -> [(index: PhoneBlindIndex, tags: PhoneBlindIndex.Tags)] {
        do throws(CryptoError) {
            return try keyring.keys.phoneIndexes.map { (index) throws(CryptoError) in (index, try index.tags(for: e164)) }
        } catch { throw .crypto(error) }
    }

    /// The one field a caller-ID answer decrypts.
    static let nameOnly: [PersonalField] = [.name]

    /// Decrypts the names of `candidates` that may be processed, newest activity first.
    /// `okEntriesCommitted`: see `decrypt`.
    func answer(_ candidates: [CallerCandidate], okEntriesCommitted: Bool = false,
                context: AccessContext) throws(StoreError) -> [CallerMatch] {
        // One person at a time through the decrypt path, which checks and audits each: one the purpose
        // may not process (restricted, or no consent where caller ID rests on consent) or whose key is
        // gone (an erased subject's row in a restored data file) is left out, and the others still answer.
        var matches: [CallerMatch] = []
        matches.reserveCapacity(candidates.count)
        for candidate in candidates {
            let personal: PersonalData
            do {
                personal = try decrypt([candidate], fields: Store.nameOnly, okEntriesCommitted: okEntriesCommitted,
                                       context: context).personal[0]
            } catch .accessRefused, .subjectErased {
                continue
            }
            matches.append(CallerMatch(id: candidate.id, kind: candidate.kind, externalID: candidate.externalID,
                                       name: personal.name, lastContactedAt: candidate.lastContactedAt, source: candidate.source))
        }
        if matches.count > 1 { matches.sort { ($0.lastContactedAt ?? .distantPast) > ($1.lastContactedAt ?? .distantPast) } }
        return matches
    }
}

/// The caller-ID probe's statement for a store's backend, made once at open.
struct CallerIDProbe: Sendable {
    /// The query, over `?1` (index version), `?2` (truncated tag) and, when `checksInQuery`, `?3` (full tag).
    let sql: String
    /// True when the query keeps only exact matches; false when it returns each candidate's `check_mac`
    /// after `CallerCandidate.columns`, for the caller to check.
    let checksInQuery: Bool

    /// The probe returning every candidate with its check, for the caller to check (the caller-ID hint's).
    static let withChecks = CallerIDProbe(exactCheck: nil)

    /// The probe keeping only the rows for which `exactCheck` (`StoreBackend.prepareCallerIDProbe`) holds,
    /// or, without one, returning the candidates with their checks.
    init(exactCheck: String?) {
        let join = "FROM phone_index p JOIN subjects s ON s.id = p.subject_id WHERE p.key_version = ?1 AND p.tag = ?2"
        if let exactCheck {
            sql = "SELECT \(CallerCandidate.columns) \(join) AND \(exactCheck)"
        } else {
            sql = "SELECT \(CallerCandidate.columns), p.check_mac \(join)"
        }
        checksInQuery = exactCheck != nil
    }
}

/// A subject found by the blind index, as read for an answer: only the columns a `CallerMatch` shows,
/// the restriction flag and key version the decrypt path needs, and the name's ciphertext. (Reading the
/// row's other clear columns too cost a tenth of the statement: 7.2 against 6.4 µs, measured in C on a
/// store of a million subjects.)
struct CallerCandidate: SealedSubject {
    let id: SubjectID
    let kind: SubjectKind
    let externalID: String?
    let source: String?
    let lastContactedAt: Date?
    let isRestricted: Bool
    let keyVersion: UInt32
    let nameCiphertext: [UInt8]?

    /// The columns read, in this order, from `phone_index p JOIN subjects s`.
    static let columns = "p.subject_id, " + subjectColumns.dropFirst("s.id, ".count)
    /// The same columns read from `subjects s` alone (the SQLite hint's read by id, `SQLiteCallerIDHint`).
    static let subjectColumns = "s.id, s.kind, s.external_id, s.source, s.last_contacted_at, s.restricted, s.key_version, s.name_ct"
    /// How many: a column selected after them is at this index.
    static let columnCount = columns.split(separator: ",").count

    init(_ row: any Row) {
        id = SubjectID(rawValue: row.int64(0))
        kind = SubjectKind(rawValue: row.text(1) ?? "") ?? .lead
        externalID = row.text(2)
        source = row.text(3)
        lastContactedAt = row.isNull(4) ? nil : Store.date(milliseconds: row.int64(4))
        isRestricted = row.int64(5) != 0
        keyVersion = UInt32(truncatingIfNeeded: row.int64(6))
        nameCiphertext = row.blob(7)
    }

    func ciphertext(of field: PersonalField) -> [UInt8]? {
        field == .name ? nameCiphertext : nil
    }
}
