import Foundation
import StrongroomCrypto
import StrongroomStorage

/// The data keys' rotation: each subject gets a fresh key, every field and consent-ledger seal is
/// re-encrypted under it (decrypted through the audited path, purpose `key-rotation`), and the old key
/// is destroyed. A batch moves its rows in sets: one read of the rows, one of the ledger, one of the
/// keys' versions, the new keys in one statement, the fields and the ledger's seals in multi-row
/// `UPDATE … FROM (VALUES …)` statements, the old keys destroyed in multi-row `DELETE`s: a fixed
/// number of round trips per batch on PostgreSQL, not a number per subject.
struct DataKeyRotation {
    let store: Store
    let context: AccessContext
    private var keyring: Keyring { store.keyring }

    /// Rotates one subject's data key.
    func rotate(_ subject: SubjectID) throws(StoreError) -> RotationReport {
        // Not retried: the caller who asked for this subject hears of a change made meanwhile.
        guard try reencrypt(RotationStatements.subjectToReencrypt, [.integer(subject.rawValue)], batch: 1, retries: 0).count == 1 else {
            throw try store.notFoundOrErased(subject)
        }
        return RotationReport(kind: .data, fromVersion: 0, toVersion: 0, items: 1, resumed: false)
    }

    /// Rotates every subject's data key, `batchSize` subjects to a batch, or resumes the rotation in
    /// progress. Subjects created meanwhile get fresh keys anyway.
    func rotateAll(batchSize: Int, progress: (Int, Int) -> Void) throws(StoreError) -> RotationReport {
        let total = try store.count()
        var walk = try RotationWalk.begin(.data, of: store, context: context) { _ in (0, total) }
        try walk.announce(" for all subjects")
        try walk.run(progress: progress) { cursor, _, batch throws(StoreError) in
            let done = try reencrypt(RotationStatements.subjectsToReencrypt, [.integer(cursor), .int(batchSize)], batch: batch, retries: 5)
            return done.last.map { RotationWalk.Batch(last: $0.rawValue, count: done.count) }
        }
        try walk.finish("\(walk.done) subjects re-encrypted under fresh keys")
        return RotationReport(kind: .data, fromVersion: 0, toVersion: 0, items: walk.done, resumed: walk.resumed)
    }

    /// Re-encrypts under fresh keys the subjects `select` reads (with `values`); returns them. A subject
    /// changed by another writer meanwhile rolls the batch back: the same subjects (those of the id range
    /// read) are read again and retried, up to `retries` times.
    private func reencrypt(_ select: String, _ values: [SQLValue], batch: Int, retries: Int) throws(StoreError) -> [SubjectID] {
        var (select, values, attempt) = (select, values, 0)
        while true {
            let (rows, consents) = try read(select, values)
            guard let first = rows.first?.id, let last = rows.last?.id else { return [] }
            do throws(StoreError) {
                try reencrypt(rows, consents: consents, batch: batch)
                return rows.map(\.id)
            } catch .concurrentChange where attempt < retries {
                // Not the cursor's query again: at the end of the walk it would take in subjects created
                // since, which their writers may be changing in turn.
                (select, values, attempt) = (RotationStatements.subjectsToReencryptAgain, [.integer(first.rawValue), .integer(last.rawValue)],
                                             attempt + 1)
            }
        }
    }

    /// The subjects `select` reads (with `values`), with every field's ciphertext, and their consent ledgers.
    private func read(_ select: String, _ values: [SQLValue]) throws(StoreError) -> ([EncryptedSubject], [SubjectID: [ConsentRow]]) {
        try store.withData { (connection) throws(DatabaseError) in
            let rows = try connection.rows(select, values) { Store.encryptedSubject(from: $0, fields: PersonalField.allCases) }
            return (rows, try store.consentRows(of: rows.map(\.id), in: connection))
        }
    }

    /// Re-encrypts `rows` (with their ledgers, `consents`), read in id order, under fresh keys. Safe to
    /// repeat after a crash at any point: keys first (committed in the key database), then the data that
    /// uses them, then the old keys go; a key left by a run that crashed before its data committed is
    /// unused and replaced.
    private func reencrypt(_ rows: [EncryptedSubject], consents: [SubjectID: [ConsentRow]], batch: Int) throws(StoreError) {
        guard let first = rows.first?.id, let last = rows.last?.id else { return }
        let oldVersions = Dictionary(uniqueKeysWithValues: rows.map { ($0.id, $0.keyVersion) })
        let existing = try keyring.database.read { (tables) throws(DatabaseError) in try tables.subjectKeyVersions(from: first, through: last) }
            .filter { oldVersions[$0.subject] != nil }
        // Keys newer than the data's: left by a run that crashed before its data committed.
        let leftByACrash = existing.filter { $0.version > oldVersions[$0.subject]! }
        if !leftByACrash.isEmpty {
            try keyring.database.transaction { (tables) throws(DatabaseError) in try tables.deleteSubjectKeys(leftByACrash, from: first, through: last) }
        }
        let newKeys = try makeKeys(for: rows)
        try keyring.cacheSubjectKeys(oldVersions)
        // The consent ledger's sealed parts are under the same key: they are re-encrypted with the fields.
        let (plaintexts, opened) = try store.decrypt(rows, fields: PersonalField.allCases, extra: consents.mapValues { $0.flatMap(\.sealedValues) },
                                                     detail: "consent ledger", context: context.forKeyRotation)
        let sealed = try seal(rows, plaintexts, consents: consents, opened: opened, under: newKeys)
        try write(sealed, newVersions: newKeys.mapValues(\.version), number: batch)
        let replaced = existing.filter { $0.version <= oldVersions[$0.subject]! }
        try keyring.database.transaction { (tables) throws(DatabaseError) in try tables.deleteSubjectKeys(replaced, from: first, through: last) }
        rows.forEach { keyring.forget($0.id, versions: [$0.keyVersion]) }
    }

    /// A fresh key for each of `rows`' subjects, one version above the one its data uses.
    private func makeKeys(for rows: [EncryptedSubject]) throws(StoreError) -> [SubjectID: KeyHandle] {
        var made: [SubjectID: KeyHandle] = [:]
        for (version, group) in Dictionary(grouping: rows, by: { $0.keyVersion + 1 }) {
            let ids = group.map(\.id)
            let keys = try keyring.createSubjectKeys(for: ids, version: version)
            for (id, key) in zip(ids, keys) { made[id] = key }
        }
        return made
    }
}

extension Store {
    /// Rotates one subject's data key: a fresh key, every field re-encrypted under it (decrypted through
    /// the audited path, purpose `key-rotation`), the old key destroyed.
    @discardableResult
    public func rotateDataKey(of subject: SubjectID, context: AccessContext) throws(StoreError) -> RotationReport {
        try DataKeyRotation(store: self, context: context).rotate(subject)
    }

    /// Rotates every subject's data key, in batches walked by subject id with the position committed
    /// after each, so an interrupted run resumes where it stopped. Subjects created meanwhile get
    /// fresh keys anyway.
    public func rotateAllDataKeys(batchSize: Int = 200, context: AccessContext,
                                  progress: (Int, Int) -> Void = { _, _ in }) throws(StoreError) -> RotationReport {
        try DataKeyRotation(store: self, context: context).rotateAll(batchSize: batchSize, progress: progress)
    }
}
